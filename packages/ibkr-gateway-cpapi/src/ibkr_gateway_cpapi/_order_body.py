"""The CPAPI order ticket for a core `OrderTicket`: checked first, then built as the exact JSON body.

Placement and what-if send the same body (what-if without `cOID`, so a preview never registers the
client order id). Money and quantities are `Decimal` up to here and become JSON numbers only in the
body; a value that a JSON number cannot carry exactly is refused rather than rounded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from ibkr_gateway_core.errors import ErrorCode, GatewayError

if TYPE_CHECKING:  # annotations only: an accounts read loads no order ticket
    from ibkr_gateway_core.orders import OrderTicket, OrderType

CPAPI_ORDER_TYPES: Final[Mapping[OrderType, str]] = {
    "limit": "LMT",
    "market": "MKT",
    "stop": "STP",
    "stop_limit": "STOP_LIMIT",
    "trailing_stop": "TRAIL",
}
"""Core order type → CPAPI `orderType`."""

MAX_CLIENT_ORDER_ID_LENGTH: Final = 128

_ACCOUNT_ID: Final = re.compile(r"^[A-Za-z0-9]{1,32}$")
"""IBKR account ids are letters and digits; anything else could escape the URL path segment."""

_CLIENT_ORDER_ID: Final = re.compile(r"^[\x21-\x7e]+$")
"""Printable ASCII without spaces."""

_EXACT_DIGITS: Final = 15
"""Significant digits a JSON number (an IEEE double) carries exactly."""


def _invalid(message: str, field: str) -> GatewayError:
    return GatewayError(ErrorCode.ORDER_VALIDATION_FAILED, message, details={"field": field})


def check_account_id(account_id: str) -> str:
    """`account_id` if it is a plausible IBKR account id (it becomes a URL path segment).

    Raises:
        GatewayError: `ORDER_VALIDATION_FAILED`.
    """
    if not _ACCOUNT_ID.match(account_id):
        raise _invalid("The account id must be letters and digits only.", "account_id")
    return account_id


def check_client_order_id(client_order_id: str) -> str:
    """`client_order_id` if CPAPI can carry it as `cOID`: 1 to 128 printable ASCII characters, no spaces.

    Raises:
        GatewayError: `ORDER_VALIDATION_FAILED`.
    """
    if not 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID_LENGTH or not _CLIENT_ORDER_ID.match(client_order_id):
        raise _invalid(
            f"The client order id must be 1 to {MAX_CLIENT_ORDER_ID_LENGTH} printable ASCII characters without spaces.",
            "client_order_id",
        )
    return client_order_id


def _check_number(value: Decimal, field: str) -> None:
    if not value.is_finite() or value <= 0:
        raise _invalid(f"{field} must be a positive, finite number.", field)
    if len(value.normalize().as_tuple().digits) > _EXACT_DIGITS:
        raise _invalid(f"{field} has more significant digits than the broker accepts exactly.", field)


def _require(value: Decimal | None, field: str, order_type: str) -> Decimal:
    if value is None:
        raise _invalid(f"A {order_type} order needs {field}.", field)
    return value


def _prices(ticket: OrderTicket) -> dict[str, Decimal | None]:
    return {
        "limit_price": ticket.limit_price,
        "stop_price": ticket.stop_price,
        "trailing_amount": ticket.trailing_amount,
        "trailing_percent": ticket.trailing_percent,
    }


def _forbid(ticket: OrderTicket, *fields: str) -> None:
    prices = _prices(ticket)
    for field in fields:
        if prices[field] is not None:
            raise _invalid(f"A {ticket.order_type} order takes no {field}.", field)


def validate_ticket(ticket: OrderTicket) -> None:
    """Refuse a ticket whose prices do not fit its order type, before anything is sent.

    Raises:
        GatewayError: `ORDER_VALIDATION_FAILED` with the offending field in `details`.
    """
    check_account_id(ticket.account_id)
    if ticket.contract_id <= 0:
        raise _invalid("The contract id must be a positive IBKR conid.", "contract_id")
    match ticket.order_type:
        case "limit":
            _require(ticket.limit_price, "limit_price", "limit")
            _forbid(ticket, "stop_price", "trailing_amount", "trailing_percent")
        case "market":
            _forbid(ticket, "limit_price", "stop_price", "trailing_amount", "trailing_percent")
        case "stop":
            _require(ticket.stop_price, "stop_price", "stop")
            _forbid(ticket, "limit_price", "trailing_amount", "trailing_percent")
        case "stop_limit":
            _require(ticket.limit_price, "limit_price", "stop_limit")
            _require(ticket.stop_price, "stop_price", "stop_limit")
            _forbid(ticket, "trailing_amount", "trailing_percent")
        case "trailing_stop":
            if (ticket.trailing_amount is None) == (ticket.trailing_percent is None):
                raise _invalid(
                    "A trailing_stop order needs exactly one of trailing_amount and trailing_percent.",
                    "trailing_amount",
                )
            _forbid(ticket, "limit_price")
    for field, value in {"quantity": ticket.quantity, **_prices(ticket)}.items():
        if value is not None:
            _check_number(value, field)


def json_number(value: Decimal) -> int | float:
    """A checked `Decimal` as a JSON number: an int when whole, else the float whose shortest repr is `value`."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)  # exact on the wire: at most 15 significant digits (checked by validate_ticket)


def order_body(ticket: OrderTicket, client_order_id: str | None) -> dict[str, object]:
    """The `{"orders": [ticket]}` body of placement (with `cOID`) and what-if (without).

    Raises:
        GatewayError: `ORDER_VALIDATION_FAILED` for a ticket `validate_ticket` refuses.
    """
    return {"orders": [ticket_json(ticket, client_order_id)]}


def ticket_json(ticket: OrderTicket, client_order_id: str | None) -> dict[str, object]:
    """One CPAPI ticket object for a core ticket (with `cOID` when given).

    Raises:
        GatewayError: `ORDER_VALIDATION_FAILED` for a ticket `validate_ticket` refuses.
    """
    validate_ticket(ticket)
    order: dict[str, object] = {"acctId": ticket.account_id, "conid": ticket.contract_id}
    if client_order_id is not None:
        order["cOID"] = check_client_order_id(client_order_id)
    order_type = CPAPI_ORDER_TYPES[ticket.order_type]
    order["orderType"] = order_type
    if ticket.exchange.upper() != "SMART":
        order["listingExchange"] = ticket.exchange
    order["side"] = "BUY" if ticket.side == "buy" else "SELL"
    order["tif"] = ticket.time_in_force.upper()
    order["quantity"] = json_number(ticket.quantity)
    order["outsideRTH"] = ticket.outside_regular_hours
    match ticket.order_type:
        case "limit":
            order["price"] = json_number(_require(ticket.limit_price, "limit_price", "limit"))
        case "market":
            pass
        case "stop":  # CPAPI: "for STP|TRAIL [price] is the stop price"
            order["price"] = json_number(_require(ticket.stop_price, "stop_price", "stop"))
        case "stop_limit":
            order["price"] = json_number(_require(ticket.limit_price, "limit_price", "stop_limit"))
            order["auxPrice"] = json_number(_require(ticket.stop_price, "stop_price", "stop_limit"))
        case "trailing_stop":
            if ticket.stop_price is not None:
                order["price"] = json_number(ticket.stop_price)
            if ticket.trailing_amount is not None:
                order["trailingAmt"] = json_number(ticket.trailing_amount)
                order["trailingType"] = "amt"
            else:
                order["trailingAmt"] = json_number(_require(ticket.trailing_percent, "trailing_percent", "trailing"))
                order["trailingType"] = "%"
    return order


def bracket_body(
    parent: OrderTicket, take_profit: OrderTicket, stop_loss: OrderTicket, client_order_id: str
) -> dict[str, object]:
    """The `{"orders": [parent, take_profit, stop_loss]}` body of a bracket placement.

    The parent carries `cOID`; each exit carries `parentId` equal to it and no `cOID` of its own, as CPAPI
    documents for brackets (IBKR then treats the two exits as one-cancels-the-other).

    Raises:
        GatewayError: `ORDER_VALIDATION_FAILED` for a leg `validate_ticket` refuses, or legs of different
            accounts or contracts.
    """
    for leg in (take_profit, stop_loss):
        if (leg.account_id, leg.contract_id) != (parent.account_id, parent.contract_id):
            raise _invalid("Every leg of a bracket must be for the parent's account and contract.", "contract_id")
    orders: list[dict[str, object]] = [ticket_json(parent, client_order_id)]
    orders += [{**ticket_json(leg, None), "parentId": client_order_id} for leg in (take_profit, stop_loss)]
    return {"orders": orders}


def modify_body(ticket: OrderTicket) -> dict[str, object]:
    """The single ticket object a modify sends: the whole order again, with the changed values (no `cOID`).

    Raises:
        GatewayError: `ORDER_VALIDATION_FAILED` for a ticket `validate_ticket` refuses.
    """
    return ticket_json(ticket, None)
