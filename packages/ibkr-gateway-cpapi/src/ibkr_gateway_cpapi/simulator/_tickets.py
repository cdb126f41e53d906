"""Order tickets as CPAPI receives them, and the question rules that make it ask before accepting one.

A question rule is a predicate over a parsed ticket and its contract; when it matches (and its
message id is not suppressed) placement answers with a reply prompt instead of an acknowledgement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from ._book import Side, SimContract
from ._json import as_array, as_object
from ._session import SimHttpError, error_body

ORDER_TYPES: Final = frozenset({"LMT", "MKT", "STP", "STOP_LIMIT", "TRAIL", "MIDPRICE", "MOC", "LOC"})
"""Ticket order types the simulator accepts."""

PRICED_ORDER_TYPES: Final = frozenset({"LMT", "STOP_LIMIT", "LOC"})
"""Order types that need `price`."""

STOP_IN_PRICE_TYPES: Final = frozenset({"STP", "TRAIL"})
"""Order types whose `price` is the stop price (CPAPI: "for STP|TRAIL this is the stop price")."""

TRAILING_TYPES: Final = frozenset({"amt", "%"})

TIFS: Final = frozenset({"DAY", "GTC", "IOC", "OPG", "PAX"})


@dataclass(frozen=True, slots=True)
class OrderTicket:
    """One validated placement ticket."""

    account_id: str
    conid: int
    side: Side
    order_type: str
    quantity: Decimal
    price: Decimal | None
    aux_price: Decimal | None
    tif: str
    c_oid: str | None
    outside_rth: bool
    trailing_amount: Decimal | None = None
    trailing_type: str | None = None
    """`amt` or `%`."""
    parent_c_oid: str | None = None
    """`parentId`: a bracket exit names its parent's `cOID`."""

    def reference_price(self, contract: SimContract) -> Decimal:
        """The price a preview or a limit check uses: the limit, else the side's quote, else last."""
        if self.price is not None:
            return self.price
        quote = contract.ask if self.side == "BUY" else contract.bid
        return quote or contract.last or contract.prior_close or Decimal(0)


@dataclass(frozen=True, slots=True)
class QuestionRule:
    """A reply prompt CPAPI raises for some tickets; `message_id` is IBKR's suppressible id."""

    message_id: str
    message: str
    """Prompt text; `{side}`, `{quantity}`, `{symbol}`, `{exchange}` and `{price}` are filled in."""
    applies: Callable[[OrderTicket, SimContract], bool]
    accounts: frozenset[str] | None = None
    """Only these accounts get the question; None means every account."""

    @classmethod
    def always(cls, message_id: str, message: str, *, accounts: frozenset[str] | None = None) -> QuestionRule:
        """A prompt raised for every ticket, e.g. an id no warning policy knows (`o99999`)."""
        return cls(message_id, message, lambda ticket, contract: True, accounts)

    def render(self, ticket: OrderTicket, contract: SimContract) -> str:
        """The prompt for one ticket."""
        return self.message.format(
            side=ticket.side,
            quantity=ticket.quantity,
            symbol=contract.symbol,
            exchange=contract.listing_exchange,
            price=ticket.reference_price(contract),
        )


def _price_off_market(limit_pct: Decimal) -> Callable[[OrderTicket, SimContract], bool]:
    def check(ticket: OrderTicket, contract: SimContract) -> bool:
        if ticket.price is None or not contract.last:
            return False
        return abs(ticket.price - contract.last) / contract.last * 100 > limit_pct

    return check


def _no_realtime_data(ticket: OrderTicket, contract: SimContract) -> bool:
    return not contract.availability.startswith("R")


def _size_over(limit: Decimal) -> Callable[[OrderTicket, SimContract], bool]:
    return lambda ticket, contract: ticket.quantity > limit


def _value_over(limit: Decimal) -> Callable[[OrderTicket, SimContract], bool]:
    return lambda ticket, contract: ticket.quantity * ticket.reference_price(contract) > limit


_CONFIRM: Final = "\nAre you sure you want to submit this order?"

DEFAULT_QUESTION_RULES: Final[Sequence[QuestionRule]] = (
    QuestionRule(
        "o163",
        'The following order "{side} {quantity} {symbol} {exchange} @ {price}" price exceeds \n'
        "the Percentage constraint of 3%." + _CONFIRM,
        _price_off_market(Decimal(3)),
    ),
    QuestionRule(
        "o354",
        "You are submitting an order without market data. We strongly recommend against this as it may result "
        "in erroneous and unexpected trades." + _CONFIRM,
        _no_realtime_data,
    ),
    QuestionRule(
        "o383",
        'The following order "{side} {quantity} {symbol} {exchange} @ {price}" size exceeds the Size Limit of 500.'
        + _CONFIRM,
        _size_over(Decimal(500)),
    ),
    QuestionRule(
        "o451",
        'The following order "{side} {quantity} {symbol} {exchange} @ {price}" value estimate exceeds \n'
        "the Total Value Limit of 100,000 USD." + _CONFIRM,
        _value_over(Decimal(100_000)),
    ),
)
"""The prompts a paper account gets by default: price off market, no market data, size, total value."""


def _decimal(value: object, key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SimHttpError(400, error_body(f"Invalid value for {key}"))
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise SimHttpError(400, error_body(f"Invalid value for {key}")) from None
    if not number.is_finite() or number <= 0:
        raise SimHttpError(400, error_body(f"Invalid value for {key}"))
    return number


def _conid(raw: Mapping[str, object]) -> int:
    conid, conidex = raw.get("conid"), raw.get("conidex")
    if (conid is None) == (conidex is None):
        raise SimHttpError(400, error_body("Exactly one of conid and conidex is required"))
    text = str(conid if conid is not None else conidex).split("@", 1)[0]
    if not text.isdigit():
        raise SimHttpError(400, error_body("Invalid conid"))
    return int(text)


def parse_ticket(raw: object, account_id: str) -> OrderTicket:
    """Validate one ticket the way CPAPI does (case-sensitive keys, `conid` xor `conidex`).

    Raises:
        SimHttpError: 400 with an `error` body naming the problem.
    """
    ticket = as_object(raw)
    if ticket is None:
        raise SimHttpError(400, error_body("Each order must be an object"))
    for key in ("orderType", "side", "tif", "quantity"):
        if key not in ticket:
            raise SimHttpError(400, error_body(f"Missing required field: {key}"))
    if ticket.get("acctId") not in (None, account_id):
        raise SimHttpError(400, error_body("acctId does not match the account in the path"))
    conid = _conid(ticket)
    order_type, side, tif = str(ticket["orderType"]), str(ticket["side"]), str(ticket["tif"])
    if order_type not in ORDER_TYPES:
        raise SimHttpError(400, error_body(f"Invalid orderType: {order_type}"))
    if side not in ("BUY", "SELL"):
        raise SimHttpError(400, error_body(f"Invalid side: {side}"))
    if tif not in TIFS:
        raise SimHttpError(400, error_body(f"Invalid tif: {tif}"))
    price = _decimal(ticket["price"], "price") if ticket.get("price") is not None else None
    if order_type in PRICED_ORDER_TYPES and price is None:
        raise SimHttpError(400, error_body(f"price is required for {order_type} orders"))
    aux = _decimal(ticket["auxPrice"], "auxPrice") if ticket.get("auxPrice") is not None else None
    if order_type == "STOP_LIMIT" and aux is None:
        raise SimHttpError(400, error_body("auxPrice is required for STOP_LIMIT orders"))
    if order_type in STOP_IN_PRICE_TYPES:
        price, aux = None, price if price is not None else aux
        if order_type == "STP" and aux is None:
            raise SimHttpError(400, error_body("price is required for STP orders"))
    trailing_amount, trailing_type = _trailing(ticket, order_type)
    c_oid = ticket.get("cOID")
    parent = ticket.get("parentId")
    return OrderTicket(
        account_id=account_id,
        conid=conid,
        side="BUY" if side == "BUY" else "SELL",
        order_type=order_type,
        quantity=_decimal(ticket["quantity"], "quantity"),
        price=price,
        aux_price=aux,
        tif=tif,
        c_oid=str(c_oid) if c_oid is not None else None,
        outside_rth=ticket.get("outsideRTH") is True,
        trailing_amount=trailing_amount,
        trailing_type=trailing_type,
        parent_c_oid=str(parent) if parent is not None else None,
    )


def _trailing(ticket: Mapping[str, object], order_type: str) -> tuple[Decimal | None, str | None]:
    if order_type != "TRAIL":
        return None, None
    if ticket.get("trailingAmt") is None or ticket.get("trailingType") is None:
        raise SimHttpError(400, error_body("trailingAmt and trailingType are required for TRAIL orders"))
    trailing_type = str(ticket["trailingType"])
    if trailing_type not in TRAILING_TYPES:
        raise SimHttpError(400, error_body(f"Invalid trailingType: {trailing_type}"))
    return _decimal(ticket["trailingAmt"], "trailingAmt"), trailing_type


def ticket_list(body: object) -> list[object]:
    """The tickets of a placement body: `{"orders": [...]}` or a bare array.

    Raises:
        SimHttpError: 400 when the body is neither or holds no ticket.
    """
    wrapper = as_object(body)
    orders = as_array(wrapper.get("orders") if wrapper is not None else body)
    if not orders:
        raise SimHttpError(400, error_body('Expected {"orders": [...]} with at least one order'))
    return orders
