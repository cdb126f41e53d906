"""Pure functions from CPAPI order, execution and what-if answers to core's domain models.

Live orders, order status and trades spell the same facts differently (`BUY` vs `B`, `Limit` vs
`LIMIT`, prices as strings, three time formats); these functions give each one domain spelling.
What-if answers are formatted strings (`"2,055.00 USD"`), read into `Decimal` and `Money`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from ibkr_gateway_core.models import Execution, Money, OrderRecord, OrderSide, OrderStatus

from ._mapping import ms_to_datetime, required, text_or_none, to_decimal
from ._wire import WireNumber

if TYPE_CHECKING:  # the order models load with the first order read or write (`_wire`)
    from ibkr_gateway_core.orders import WhatIf

    from ._wire_orders import WireLiveOrder, WireOrderStatus, WireTrade, WireWhatIf, WireWhatIfChange

ORDER_STATUSES: Final[Mapping[str, OrderStatus]] = {
    "pendingsubmit": "pending_submit",
    "presubmitted": "submitted",
    "submitted": "submitted",
    "pendingcancel": "pending_cancel",
    "filled": "filled",
    "cancelled": "cancelled",
    "inactive": "inactive",
}
"""Broker status word (case and spaces ignored) → order status; anything else is `unknown`."""

ORDER_TYPES: Final[Mapping[str, str]] = {
    "lmt": "limit",
    "limit": "limit",
    "mkt": "market",
    "market": "market",
    "stp": "stop",
    "stop": "stop",
    "stop_limit": "stop_limit",
    "stoplimit": "stop_limit",
    "stp_lmt": "stop_limit",
    "midprice": "midprice",
    "trail": "trailing_stop",
    "trailing_stop": "trailing_stop",
    "traillmt": "trailing_stop_limit",
    "moc": "market_on_close",
    "loc": "limit_on_close",
}
"""CPAPI order-type spellings (`LMT`, `Limit`, `LIMIT`, `Stop Limit`…) → one lower-case name."""

_FORMATTED_AMOUNT: Final = re.compile(r"^(?:(?P<pre>[A-Z]{3})\s+)?(?P<number>[-+]?[0-9.,]+)(?:\s*(?P<post>[A-Z]{3}))?$")
"""A what-if amount: `2,055.00`, `2,055.00 USD` or `USD 2,055.00`."""


def order_status(word: str | None) -> OrderStatus:
    """Order status from the broker's word (`PreSubmitted` → submitted)."""
    key = (word or "").replace(" ", "").replace("_", "").lower()
    return ORDER_STATUSES.get(key, "unknown")


def order_side(word: str | None) -> OrderSide | None:
    """`BUY`/`B` → buy, `SELL`/`S` → sell."""
    key = (word or "").strip().upper()
    if key in ("BUY", "B", "BOT"):
        return "buy"
    if key in ("SELL", "S", "SLD"):
        return "sell"
    return None


def order_type(word: str | None) -> str | None:
    """One lower-case order-type name for the broker's many spellings."""
    if not word:
        return None
    key = word.strip().lower().replace(" ", "_")
    return ORDER_TYPES.get(key, key)


def _compact_time(value: str | None, pattern: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, pattern).replace(tzinfo=UTC)
    except ValueError:
        return None


def to_order_record(row: WireLiveOrder, account_id: str) -> OrderRecord:
    """An order from a live-orders row."""
    return OrderRecord(
        account_id=row.account_id or account_id,
        broker_order_id=str(row.order_id),
        client_order_id=text_or_none(row.order_ref),
        contract_id=int(row.conid) if row.conid is not None else None,
        symbol=text_or_none(row.ticker) or text_or_none(row.description1),
        side=order_side(row.side),
        order_type=order_type(row.orig_order_type or row.order_type),
        quantity=to_decimal(row.total_size),
        filled_quantity=to_decimal(row.filled_quantity),
        remaining_quantity=to_decimal(row.remaining_quantity),
        limit_price=to_decimal(row.price),
        stop_price=to_decimal(row.aux_price if row.aux_price is not None else row.stop_price),
        average_fill_price=to_decimal(row.avg_price),
        time_in_force=text_or_none(row.time_in_force),
        status=order_status(row.status),
        broker_status=text_or_none(row.status),
        updated_at=ms_to_datetime(row.last_execution_ms),
    )


def to_order_record_from_status(status: WireOrderStatus, account_id: str) -> OrderRecord:
    """An order from `/iserver/account/order/status/{id}`."""
    total = to_decimal(status.total_size)
    filled = to_decimal(status.cum_fill)
    remaining = total - filled if total is not None and filled is not None else None
    return OrderRecord(
        account_id=status.account or account_id,
        broker_order_id=str(status.order_id),
        client_order_id=text_or_none(status.order_ref),
        contract_id=int(status.conid) if status.conid is not None else None,
        symbol=text_or_none(status.symbol),
        side=order_side(status.side),
        order_type=order_type(status.order_type),
        quantity=total,
        filled_quantity=filled,
        remaining_quantity=remaining,
        limit_price=to_decimal(status.limit_price),
        stop_price=to_decimal(status.stop_price),
        average_fill_price=to_decimal(status.average_price),
        time_in_force=text_or_none(status.tif),
        status=order_status(status.order_status),
        broker_status=text_or_none(status.order_status),
        updated_at=_compact_time(status.order_time, "%y%m%d%H%M%S"),
    )


def to_execution(trade: WireTrade, account_id: str) -> Execution:
    """One fill from `/iserver/account/trades`."""
    executed_at = ms_to_datetime(trade.trade_time_r) or _compact_time(trade.trade_time, "%Y%m%d-%H:%M:%S")
    side = order_side(trade.side)
    return Execution(
        execution_id=trade.execution_id,
        account_id=trade.account_id or account_id,
        broker_order_id=str(trade.order_id) if trade.order_id is not None else None,
        client_order_id=text_or_none(trade.order_ref),
        contract_id=int(trade.conid),
        symbol=text_or_none(trade.symbol),
        side=required(side, "execution side"),
        quantity=required(to_decimal(trade.size), "execution size"),
        price=required(to_decimal(trade.price), "execution price"),
        commission=to_decimal(trade.commission),
        net_amount=to_decimal(trade.net_amount),
        exchange=text_or_none(trade.exchange),
        executed_at=required(executed_at, "execution time"),
    )


def order_from_executions(trades: Sequence[WireTrade], account_id: str) -> OrderRecord:
    """An order known only from its fills (it left live orders): `filled`, with what executed.

    `quantity` stays unknown: the fills say how much executed, not how much was ordered. CPAPI's
    trades rows usually carry no order id; the record then names the first fill instead
    (`execution:<execution_id>`), which no order endpoint accepts.
    """
    first = trades[0]
    filled = sum((required(to_decimal(t.size), "execution size") for t in trades), Decimal(0))
    cost = sum(
        (required(to_decimal(t.size), "execution size") * required(to_decimal(t.price), "price") for t in trades),
        Decimal(0),
    )
    times = [ms_to_datetime(t.trade_time_r) or _compact_time(t.trade_time, "%Y%m%d-%H:%M:%S") for t in trades]
    known_times = [t for t in times if t is not None]
    return OrderRecord(
        account_id=first.account_id or account_id,
        broker_order_id=str(first.order_id) if first.order_id is not None else f"execution:{first.execution_id}",
        client_order_id=text_or_none(first.order_ref),
        contract_id=int(first.conid),
        symbol=text_or_none(first.symbol),
        side=order_side(first.side),
        filled_quantity=filled,
        average_fill_price=cost / filled if filled else None,
        status="filled",
        updated_at=max(known_times) if known_times else None,
    )


def formatted_amount(value: WireNumber | None) -> tuple[Decimal | None, str | None]:
    """A what-if figure and its currency suffix (or prefix), if any: `"2,055.00 USD"` → (2055.00, USD)."""
    if value is None or isinstance(value, bool):
        return None, None
    if not isinstance(value, str):
        return to_decimal(value), None
    match = _FORMATTED_AMOUNT.match(value.strip())
    if match is None:
        return None, None
    return to_decimal(match.group("number")), match.group("pre") or match.group("post")


def _money(value: WireNumber | None, currency: str) -> Money | None:
    amount, suffix = formatted_amount(value)
    return None if amount is None else Money(amount=amount, currency=suffix or currency)


def _change(block: WireWhatIfChange | None) -> Decimal | None:
    return formatted_amount(block.change)[0] if block is not None else None


def to_what_if(answer: WireWhatIf, currency: str) -> WhatIf:
    """The broker's estimate; amounts without a currency of their own are in `currency` (the ticket's)."""
    from ibkr_gateway_core.orders import WhatIf  # with the first preview: reads define no order ticket

    amounts = answer.amount
    warning = text_or_none(answer.warn)
    return WhatIf(
        amount=_money(amounts.amount, currency) if amounts else None,
        commission=_money(amounts.commission, currency) if amounts else None,
        total=_money(amounts.total, currency) if amounts else None,
        initial_margin_change=_change(answer.initial),
        maintenance_margin_change=_change(answer.maintenance),
        equity_with_loan_after=formatted_amount(answer.equity.after)[0] if answer.equity else None,
        warnings=[warning] if warning else [],
        error=text_or_none(answer.error),
    )
