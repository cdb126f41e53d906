"""CPAPI's order answers as loose models (`_wire` re-exports them, loaded with the first order read or write)."""

from __future__ import annotations

from typing import Final

from pydantic import Field, TypeAdapter

from ._wire import _DEFERRED, _OBJECT_MAP, WireModel, WireNumber, _parse_list  # pyright: ignore[reportPrivateUsage]


class WireLiveOrder(WireModel):
    """One order of `/iserver/account/orders`; prices are strings."""

    acct: str | None = None
    account: str | None = None
    order_id: int | str = Field(alias="orderId")
    conid: int | str | None = None
    ticker: str | None = None
    description1: str | None = None
    side: str | None = None
    order_type: str | None = Field(default=None, alias="orderType")
    orig_order_type: str | None = Field(default=None, alias="origOrderType")
    total_size: WireNumber | None = Field(default=None, alias="totalSize")
    filled_quantity: WireNumber | None = Field(default=None, alias="filledQuantity")
    remaining_quantity: WireNumber | None = Field(default=None, alias="remainingQuantity")
    price: WireNumber | None = None
    aux_price: WireNumber | None = Field(default=None, alias="auxPrice")
    stop_price: WireNumber | None = None
    avg_price: WireNumber | None = Field(default=None, alias="avgPrice")
    time_in_force: str | None = Field(default=None, alias="timeInForce")
    status: str | None = None
    order_ref: str | None = None
    last_execution_ms: int | None = Field(default=None, alias="lastExecutionTime_r")

    @property
    def account_id(self) -> str | None:
        """The account, whichever field carries it."""
        return self.acct or self.account


class WireLiveOrders(WireModel):
    """`/iserver/account/orders`."""

    orders: list[WireLiveOrder] = Field(default_factory=list[WireLiveOrder])
    snapshot: bool | None = None


class WireOrderStatus(WireModel):
    """`/iserver/account/order/status/{id}` (snake case)."""

    order_id: int | str
    account: str | None = None
    conid: int | str | None = None
    symbol: str | None = None
    side: str | None = None
    order_type: str | None = None
    total_size: WireNumber | None = None
    cum_fill: WireNumber | None = None
    limit_price: WireNumber | None = None
    stop_price: WireNumber | None = None
    average_price: WireNumber | None = None
    tif: str | None = None
    order_status: str | None = None
    order_ref: str | None = None
    order_time: str | None = None
    """`YYMMDDhhmmss`, UTC."""


class WireTrade(WireModel):
    """One execution of `/iserver/account/trades`."""

    execution_id: str
    account: str | None = None
    account_code: str | None = Field(default=None, alias="accountCode")
    order_id: int | str | None = None
    order_ref: str | None = None
    conid: int | str
    symbol: str | None = None
    side: str
    size: WireNumber
    price: WireNumber
    commission: WireNumber | None = None
    net_amount: WireNumber | None = None
    exchange: str | None = None
    trade_time: str | None = None
    """`YYYYMMDD-hh:mm:ss`, UTC."""
    trade_time_r: int | None = None
    """Milliseconds since the epoch."""

    @property
    def account_id(self) -> str | None:
        """The account, whichever field carries it."""
        return self.account or self.account_code


class WireWhatIfAmount(WireModel):
    """The `amount` block of a what-if answer: formatted strings such as `"2,055.00 USD"`."""

    amount: WireNumber | None = None
    commission: WireNumber | None = None
    total: WireNumber | None = None


class WireWhatIfChange(WireModel):
    """One `equity` / `initial` / `maintenance` / `position` block: formatted strings."""

    current: WireNumber | None = None
    change: WireNumber | None = None
    after: WireNumber | None = None


class WireWhatIf(WireModel):
    """`/iserver/account/{acct}/orders/whatif`."""

    amount: WireWhatIfAmount | None = None
    equity: WireWhatIfChange | None = None
    initial: WireWhatIfChange | None = None
    maintenance: WireWhatIfChange | None = None
    position: WireWhatIfChange | None = None
    warn: str | None = None
    error: str | None = None


class WireOrderReply(WireModel):
    """One element of a placement or reply answer: an acknowledgement, a question, or an error."""

    order_id: int | str | None = None
    order_status: str | None = None
    local_order_id: str | None = None
    id: str | None = None
    """Reply id of a question."""
    message: list[str] | str | None = None
    message_ids: list[str] = Field(default_factory=list[str], alias="messageIds")
    error: str | None = None
    text: str | None = None
    warning_message: str | None = None


class WireCancelAck(WireModel):
    """`DELETE /iserver/account/{acct}/order/{id}`: receipt of the request, not the cancellation."""

    msg: str | None = None
    order_id: int | str | None = None
    order_status: str | None = None
    conid: int | str | None = None
    account: str | None = None
    error: str | None = None


_TRADES: Final = TypeAdapter(list[WireTrade], config=_DEFERRED)
_ORDER_REPLIES: Final = TypeAdapter(list[WireOrderReply], config=_DEFERRED)


def parse_trades(data: object) -> list[WireTrade]:
    """Validate an executions answer."""
    return _parse_list(_TRADES, data, "executions")


def parse_order_replies(data: object) -> list[WireOrderReply]:
    """Validate a placement or reply answer: an array, or one bare object (IBKR's docs show both)."""
    items: object = data
    if isinstance(data, dict):
        items = [_OBJECT_MAP.validate_python(data)]
    return _parse_list(_ORDER_REPLIES, items, "order")
