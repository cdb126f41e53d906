"""Inputs of the order operations: previews, approvals, paper and live writes, kill switch, limits.

They hold only what a caller may choose. The operator's per-call switches (`--enable-preview`,
`--enable-paper`, `--enable-live`, ...) are never arguments: the CLI passes them to `Gateway.call`
as switches, and other callers get the config's equivalents.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated, Final, Literal, Self

from pydantic import BeforeValidator, Field, model_validator

from ..models import AccountId, ContractId, Currency, OrderSide
from ..requests import AccountInput, OperationInput
from .tickets import OrderType, TimeInForce

IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="Caller-chosen key, unique per intended order: a retry with the same key never sends twice.",
    ),
]
"""1 to 128 printable ASCII characters, no spaces or control characters."""

RecordId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
"""A preview, approval or broker order id."""


MAX_ORDER_NUMBER: Final = Decimal(10) ** 12
"""Quantities and prices are below this; anything larger is a typo or an attack, refused as input."""

_PLAIN_NUMBER: Final = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,20})?")
"""ASCII digits, an optional sign and fraction: no `1_000`, no spaces, no exponent, no other scripts' digits."""


def _plain_number(value: object) -> object:
    """A quantity or price: a plain decimal number (text, integer or finite float) below `MAX_ORDER_NUMBER`."""
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, str):
        if not _PLAIN_NUMBER.fullmatch(value):
            raise ValueError("must be a plain decimal number such as 100 or 12.5 (ASCII digits, no separators)")
        number = Decimal(value)
    elif isinstance(value, int):
        if abs(value) >= MAX_ORDER_NUMBER:
            raise ValueError(f"must be below {MAX_ORDER_NUMBER:,.0f}")
        return Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            return value  # the shape gate refuses it with its order code
        number = value
    else:
        return value  # pydantic reports the type
    if abs(number) >= MAX_ORDER_NUMBER or number.as_tuple().exponent < -20:  # type: ignore[operator]
        raise ValueError(f"must be below {MAX_ORDER_NUMBER:,.0f} with at most 20 decimal places")
    return number


OrderNumber = Annotated[Decimal, BeforeValidator(_plain_number)]
"""A quantity or a price as the order inputs accept it."""


def _order_type(value: object) -> object:
    """Accept the CLI spelling (`stop-limit`) as well as the model's (`stop_limit`)."""
    return value.strip().lower().replace("-", "_") if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


class OrderPreviewInput(AccountInput):
    """One single-leg order to preview: nothing is sent to the broker but a what-if."""

    symbol: Annotated[str | None, BeforeValidator(_upper)] = Field(
        default=None, min_length=1, max_length=32, description="Symbol, e.g. AAPL; or pass contract_id."
    )
    contract_id: ContractId | None = Field(default=None, description="IBKR contract id (conid) instead of a symbol.")
    side: Annotated[OrderSide, BeforeValidator(_lower)] = Field(description="buy or sell.")
    quantity: OrderNumber = Field(description="Shares or contracts, positive.")
    order_type: Annotated[OrderType, BeforeValidator(_order_type)] = Field(
        default="limit", description="limit, market, stop, stop_limit or trailing_stop."
    )
    limit_price: OrderNumber | None = Field(default=None, description="Limit price (limit and stop_limit orders).")
    stop_price: OrderNumber | None = Field(default=None, description="Stop trigger price (stop and stop_limit orders).")
    trailing_amount: OrderNumber | None = Field(default=None, description="Trailing offset as an amount.")
    trailing_percent: OrderNumber | None = Field(default=None, description="Trailing offset in percent.")
    currency: Annotated[Currency, BeforeValidator(_upper)] = Field(default="USD", description="Order currency.")
    time_in_force: Annotated[TimeInForce, BeforeValidator(_lower)] = Field(default="day", description="day or gtc.")
    exchange: Annotated[str | None, BeforeValidator(_upper)] = Field(
        default=None, max_length=16, description="Routing exchange; SMART when omitted."
    )
    outside_regular_hours: bool = Field(default=False, description="Allow execution outside regular trading hours.")

    @model_validator(mode="after")
    def _one_contract(self) -> Self:
        if (self.symbol is None) == (self.contract_id is None):
            raise ValueError("pass exactly one of symbol and contract_id")
        return self


class ApprovalCreateInput(AccountInput):
    """Approve one preview, for one account, once."""

    preview_id: RecordId = Field(description="The preview to approve, from orders preview.")
    ttl_seconds: int | None = Field(default=None, description="Lifetime in seconds (default from the config).")
    mode: Annotated[Literal["paper", "live"] | None, BeforeValidator(_lower)] = Field(
        default=None,
        description="paper or live: the only submit the approval allows (default: the account's mode at the broker).",
    )
    fingerprint: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = Field(
        default=None,
        description="The preview fingerprint the approver saw; when given, an order changed since is refused.",
    )


class ApprovalListInput(OperationInput):
    """Approvals, newest first."""

    account_id: AccountId | None = Field(default=None, description="Only approvals for this account.")
    limit: Annotated[int, Field(ge=1, le=500)] = Field(default=50, description="How many, 1 to 500.")


class ApprovalRevokeInput(OperationInput):
    """Revoke an unused approval."""

    approval_id: RecordId = Field(description="The approval to revoke.")
    reason: Annotated[str, Field(max_length=500)] = Field(default="revoked", description="Why; kept in the record.")


class PreviewListInput(OperationInput):
    """Previews, newest first, with their status."""

    account_id: AccountId | None = Field(default=None, description="Only previews for this account.")
    pending_only: bool = Field(default=False, description="Only previews still waiting for a person's decision.")
    limit: Annotated[int, Field(ge=1, le=500)] = Field(default=50, description="How many, 1 to 500.")


class PreviewDenyInput(OperationInput):
    """Deny one preview: it can never be approved, and its unused approvals are revoked."""

    preview_id: RecordId = Field(description="The preview to deny.")
    reason: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        default="denied", description="Why; kept in the record and shown to the agent."
    )


class OrderSubmitInput(AccountInput):
    """Submit the order of an approved preview."""

    approval_id: RecordId = Field(description="The approval from approvals create; its preview is what is sent.")
    idempotency_key: IdempotencyKey


class OrderCancelInput(AccountInput):
    """Cancel one order."""

    broker_order_id: RecordId = Field(description="Broker order id of the order to cancel.")
    idempotency_key: IdempotencyKey


class KillSwitchChangeInput(OperationInput):
    """Open or close the live kill switch."""

    reason: Annotated[str, Field(min_length=1, max_length=500)] = Field(description="Why; kept and audited.")


class BracketPreviewInput(AccountInput):
    """A bracket to preview: a limit entry and two exits on the other side, one cancelling the other."""

    symbol: Annotated[str | None, BeforeValidator(_upper)] = Field(
        default=None, min_length=1, max_length=32, description="Symbol, e.g. AAPL; or pass contract_id."
    )
    contract_id: ContractId | None = Field(default=None, description="IBKR contract id (conid) instead of a symbol.")
    side: Annotated[OrderSide, BeforeValidator(_lower)] = Field(description="Side of the entry: buy or sell.")
    quantity: Decimal = Field(description="Shares or contracts of every leg, positive.")
    limit_price: Decimal = Field(description="Limit price of the entry (parent) order.")
    take_profit_price: Decimal = Field(description="Limit price of the take-profit exit.")
    stop_loss_price: Decimal = Field(description="Stop trigger price of the stop-loss exit.")
    currency: Annotated[Currency, BeforeValidator(_upper)] = Field(default="USD", description="Order currency.")
    time_in_force: Annotated[TimeInForce, BeforeValidator(_lower)] = Field(
        default="day", description="day or gtc, for every leg."
    )
    exchange: Annotated[str | None, BeforeValidator(_upper)] = Field(
        default=None, max_length=16, description="Routing exchange; SMART when omitted."
    )

    @model_validator(mode="after")
    def _one_contract(self) -> Self:
        if (self.symbol is None) == (self.contract_id is None):
            raise ValueError("pass exactly one of symbol and contract_id")
        return self


class ModifyPreviewInput(AccountInput):
    """A change to one working order: its price, quantity or time in force."""

    broker_order_id: RecordId = Field(description="Broker order id of the working order to change.")
    quantity: Decimal | None = Field(default=None, description="New total quantity.")
    limit_price: Decimal | None = Field(default=None, description="New limit price (limit and stop_limit orders).")
    stop_price: Decimal | None = Field(default=None, description="New stop price (stop and stop_limit orders).")
    time_in_force: Annotated[TimeInForce | None, BeforeValidator(_lower)] = Field(
        default=None, description="New time in force: day or gtc."
    )

    @model_validator(mode="after")
    def _some_change(self) -> Self:
        if all(v is None for v in (self.quantity, self.limit_price, self.stop_price, self.time_in_force)):
            raise ValueError("pass at least one of quantity, limit_price, stop_price and time_in_force")
        return self
