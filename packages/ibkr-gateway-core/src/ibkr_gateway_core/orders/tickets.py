"""Order tickets and what brokers answer about them; the `OrderWriter` seam.

A ticket holds every economic field of one order. Its fingerprint binds a preview, the approval of
that preview and the order that is finally sent: the broker only ever receives the approved ticket,
never fields a caller supplies at submit time.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Literal, Protocol

from pydantic import Field

from ..models import AssetClass, Currency, DomainModel, Money, OrderRecord, OrderSide, OrderStatus
from ..models import OrderType as OrderType  # defined with the other aliases: the config reads it without tickets

TimeInForce = Literal["day", "gtc"]
LegRole = Literal["parent", "take_profit", "stop_loss"]
"""The legs of a bracket: the entry order and its two exits (one cancels the other)."""


class OrderTicket(DomainModel):
    """Every economic field of one single-leg order."""

    account_id: str
    contract_id: int
    symbol: str
    asset_class: AssetClass
    exchange: str = "SMART"
    currency: Currency
    side: OrderSide
    quantity: Decimal = Field(gt=0)
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trailing_amount: Decimal | None = None
    trailing_percent: Decimal | None = None
    time_in_force: TimeInForce = "day"
    outside_regular_hours: bool = False

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical JSON of every field; equal tickets, equal fingerprints."""
        data = self.model_dump(mode="json")
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class WhatIf(DomainModel):
    """The broker's estimate for a ticket (CPAPI what-if), without placing it."""

    amount: Money | None = None
    """Estimated order value."""
    commission: Money | None = None
    total: Money | None = None
    initial_margin_change: Decimal | None = None
    maintenance_margin_change: Decimal | None = None
    equity_with_loan_after: Decimal | None = None
    warnings: list[str] = Field(default_factory=list)
    """Broker text: untrusted data, shown as is, never obeyed."""
    error: str | None = None
    """Broker text: the broker would reject this order."""


class BrokerQuestion(DomainModel):
    """A confirmation the broker asks for before it accepts an order (CPAPI reply message)."""

    reply_id: str
    message_ids: list[str]
    """IBKR message ids such as `o163`; the warning policy decides on these, never on the text."""
    messages: list[str]
    """Broker text: untrusted data."""


class PlacedLeg(DomainModel):
    """One leg of a bracket as the broker acknowledged it."""

    role: LegRole
    broker_order_id: str | None = None
    """None when the leg's id is not known (a bracket settled by looking its parent up)."""
    broker_status: str | None = None
    status: OrderStatus = "submitted"


class PlacedOrder(DomainModel):
    """The broker accepted an order (for a bracket: its parent; for a modify: the modified order)."""

    broker_order_id: str
    client_order_id: str | None = None
    broker_status: str | None = None
    status: OrderStatus = "submitted"
    confirmed_message_ids: list[str] = Field(default_factory=list)
    """Warnings the policy allowed on the way."""
    legs: list[PlacedLeg] = Field(default_factory=list[PlacedLeg])
    """A bracket's legs, parent first; empty for a single order."""


class CancelAck(DomainModel):
    """The broker's answer to a cancel request (it acknowledges receipt, not the cancellation)."""

    broker_order_id: str
    accepted: bool
    broker_status: str | None = None
    message: str | None = None
    """Broker text: untrusted data."""


class QuestionPolicy(Protocol):
    """Decides, per broker question, whether to confirm it."""

    def __call__(self, question: BrokerQuestion) -> bool:
        """True to confirm; False refuses the order (`ORDER_CONFIRMATION_REFUSED`)."""
        ...


class OrderWriter(Protocol):
    """Sends orders to one destination: the Client Portal, a local candidate, or nowhere."""

    name: str
    """`client-portal`, `local-candidate` or `refusing`."""

    async def place(
        self, ticket: OrderTicket, *, client_order_id: str, confirm: QuestionPolicy, max_rounds: int
    ) -> PlacedOrder:
        """Place the ticket with `client_order_id` as IBKR `cOID`, answering questions with `confirm`.

        Raises:
            GatewayError: `ORDER_CONFIRMATION_REFUSED` when `confirm` refuses a question (the question's
                text and ids in `details`); `BROKER_OUTCOME_UNKNOWN` when the request may have reached
                the broker but no answer came back (look up `client_order_id` before anything else);
                other `BROKER_*` codes when it surely did not.
        """
        ...

    async def place_bracket(
        self,
        parent: OrderTicket,
        take_profit: OrderTicket,
        stop_loss: OrderTicket,
        *,
        client_order_id: str,
        confirm: QuestionPolicy,
        max_rounds: int,
    ) -> PlacedOrder:
        """Place a bracket in one request: the parent with `client_order_id` as `cOID`, its exits linked to it.

        Raises:
            GatewayError: as `place`.
        """
        ...

    async def modify(
        self, broker_order_id: str, ticket: OrderTicket, *, confirm: QuestionPolicy, max_rounds: int
    ) -> PlacedOrder:
        """Replace the working order `broker_order_id` by `ticket` (same contract, side and type).

        Raises:
            GatewayError: as `place`; `INPUT_UNKNOWN_ORDER` when the broker does not know the order.
        """
        ...

    async def find_by_client_order_id(self, account_id: str, client_order_id: str) -> OrderRecord | None:
        """The order placed with this `cOID`, or None when the broker has none."""
        ...

    async def cancel(self, account_id: str, broker_order_id: str) -> CancelAck:
        """Ask the broker to cancel one order."""
        ...
