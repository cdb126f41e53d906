"""Loose models of what CPAPI really sends, for the endpoints the backend reads.

They ignore unknown fields, accept the API's type looseness (a `conid` that is sometimes a string,
numbers that are sometimes formatted strings) and stay inside this package; `_mapping` turns them
into core's domain models.
"""

from __future__ import annotations

from typing import Final, TypeVar

from ibkr_gateway_core.errors import ErrorCode, GatewayError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

WireNumber = int | float | str
"""A number as CPAPI spells it: JSON number, or a string such as `"1,300"` or `"C171.02"`."""


class WireModel(BaseModel):
    """Base of every wire model: unknown fields are ignored, aliases are the CPAPI spellings.

    Schemas are built on first use (`defer_build`): a command reads a few endpoints, not all of them.
    """

    model_config = ConfigDict(defer_build=True, extra="ignore", frozen=True)


class WireAuthStatus(WireModel):
    """`/iserver/auth/status`, and `iserver.authStatus` inside `/tickle`."""

    authenticated: bool = False
    competing: bool = False
    connected: bool = False
    message: str | None = None
    fail: str | None = None


class WireTickleIserver(WireModel):
    """The `iserver` object inside a `/tickle` answer."""

    auth_status: WireAuthStatus | None = Field(default=None, alias="authStatus")


class WireTickle(WireModel):
    """`/tickle`; the `session` id is read but never shown."""

    sso_expires: int | None = Field(default=None, alias="ssoExpires")
    collission: bool = False
    """Spelled this way by IBKR."""
    iserver: WireTickleIserver | None = None


class WireIserverAccounts(WireModel):
    """`/iserver/accounts`: the brokerage session's accounts and its paper flag."""

    accounts: list[str] = Field(default_factory=list[str])
    aliases: dict[str, str | None] = Field(default_factory=dict[str, str | None])
    is_paper: bool | None = Field(default=None, alias="isPaper")
    selected_account: str | None = Field(default=None, alias="selectedAccount")
    allow_features: dict[str, object] = Field(default_factory=dict[str, object], alias="allowFeatures")
    acct_props: dict[str, object] = Field(default_factory=dict[str, object], alias="acctProps")

    @property
    def is_advisor(self) -> bool:
        """An advisor (FA) login: `allowFA`, or an account with child accounts."""
        if self.allow_features.get("allowFA") is True:
            return True
        return any(_OBJECT_MAP.validate_python(p).get("hasChildAccounts") is True for p in self._props())

    def _props(self) -> list[object]:
        return [props for props in self.acct_props.values() if isinstance(props, dict)]


class WireAccountSwitch(WireModel):
    """`POST /iserver/account`: `{"set": true, "acctId": ...}`, or a message such as "Account already set"."""

    set: bool | None = None
    acct_id: str | None = Field(default=None, alias="acctId")
    message: str | None = None
    error: str | None = None


class WirePortfolioAccount(WireModel):
    """One element of `/portfolio/accounts` (and the body of `/portfolio/{id}/meta`)."""

    id: str | None = None
    account_id: str | None = Field(default=None, alias="accountId")
    account_title: str | None = Field(default=None, alias="accountTitle")
    display_name: str | None = Field(default=None, alias="displayName")
    account_alias: str | None = Field(default=None, alias="accountAlias")
    currency: str | None = None
    account_type: str | None = Field(default=None, alias="type")

    @property
    def key(self) -> str | None:
        """The account id, whichever field carries it."""
        return self.account_id or self.id


class WireSubaccountsPage(WireModel):
    """`/portfolio/subaccounts2?page=N`: one page of a large advisor structure."""

    metadata: dict[str, object] = Field(default_factory=dict[str, object])
    subaccounts: list[WirePortfolioAccount] = Field(default_factory=list[WirePortfolioAccount])


class WireSummaryValue(WireModel):
    """One metric of `/portfolio/{id}/summary`."""

    amount: WireNumber | None = None
    currency: str | None = None
    is_null: bool = Field(default=False, alias="isNull")
    timestamp: int | None = None
    """Milliseconds since the epoch."""
    value: str | None = None


class WireLedgerEntry(WireModel):
    """One currency (or `BASE`) of `/portfolio/{id}/ledger`."""

    currency: str | None = None
    secondkey: str | None = None
    cashbalance: WireNumber | None = None
    settledcash: WireNumber | None = None
    exchangerate: WireNumber | None = None
    timestamp: int | None = None
    """Seconds since the epoch (not milliseconds, unlike most of CPAPI)."""


class WirePosition(WireModel):
    """One row of `/portfolio/{id}/positions/{page}`; the secdef part is missing while "cold"."""

    acct_id: str | None = Field(default=None, alias="acctId")
    conid: int | str
    contract_desc: str | None = Field(default=None, alias="contractDesc")
    position: WireNumber
    mkt_price: WireNumber | None = Field(default=None, alias="mktPrice")
    mkt_value: WireNumber | None = Field(default=None, alias="mktValue")
    currency: str | None = None
    avg_cost: WireNumber | None = Field(default=None, alias="avgCost")
    avg_price: WireNumber | None = Field(default=None, alias="avgPrice")
    realized_pnl: WireNumber | None = Field(default=None, alias="realizedPnl")
    unrealized_pnl: WireNumber | None = Field(default=None, alias="unrealizedPnl")
    asset_class: str | None = Field(default=None, alias="assetClass")
    ticker: str | None = None
    name: str | None = None
    stock_type: str | None = Field(default=None, alias="type")
    """`COMMON`, `ETF`, `ADR`… once the row is warm."""


class WireSection(WireModel):
    """One entry of `sections` in a secdef search result."""

    sec_type: str | None = Field(default=None, alias="secType")


class WireSearchResult(WireModel):
    """One element of `/iserver/secdef/search`; `conid` arrives as a string here."""

    conid: int | str
    symbol: str | None = None
    company_name: str | None = Field(default=None, alias="companyName")
    company_header: str | None = Field(default=None, alias="companyHeader")
    description: str | None = None
    """The listing exchange, e.g. `NASDAQ`."""
    sections: list[WireSection] = Field(default_factory=list[WireSection])


class WireContractInfo(WireModel):
    """`/iserver/contract/{conid}/info` (snake case)."""

    con_id: int | str
    symbol: str | None = None
    company_name: str | None = None
    instrument_type: str | None = None
    exchange: str | None = None
    listing_exchange: str | None = None
    currency: str | None = None
    local_symbol: str | None = None
    category: str | None = None
    industry: str | None = None


class WireSnapshotRow(WireModel):
    """One element of `/iserver/marketdata/snapshot`; field codes are the JSON keys."""

    conid: int | str
    updated_ms: int | None = Field(default=None, alias="_updated")
    last: WireNumber | None = Field(default=None, alias="31")
    bid: WireNumber | None = Field(default=None, alias="84")
    ask_size: WireNumber | None = Field(default=None, alias="85")
    ask: WireNumber | None = Field(default=None, alias="86")
    volume_formatted: WireNumber | None = Field(default=None, alias="87")
    bid_size: WireNumber | None = Field(default=None, alias="88")
    symbol: str | None = Field(default=None, alias="55")
    availability: str | None = Field(default=None, alias="6509")
    last_size: WireNumber | None = Field(default=None, alias="7059")
    volume: WireNumber | None = Field(default=None, alias="7762")

    @property
    def has_prices(self) -> bool:
        """False for the pre-flight answer, which carries only `conid` and `conidEx`."""
        return any(value is not None for value in (self.last, self.bid, self.ask))


class WireBar(WireModel):
    """One bar of `/iserver/marketdata/history`; `t` is milliseconds."""

    o: WireNumber
    h: WireNumber
    low: WireNumber = Field(alias="l")
    c: WireNumber
    v: WireNumber = 0
    t: int


class WireHistory(WireModel):
    """`/iserver/marketdata/history`."""

    symbol: str | None = None
    text: str | None = None
    price_factor: WireNumber | None = Field(default=None, alias="priceFactor")
    data: list[WireBar] = Field(default_factory=list[WireBar])


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


WireModelT = TypeVar("WireModelT", bound=WireModel)

_DEFERRED: Final = ConfigDict(defer_build=True)
"""Adapters, like the models, build their validators on first use."""
_POSITIONS: Final = TypeAdapter(list[WirePosition], config=_DEFERRED)
_SEARCH: Final = TypeAdapter(list[WireSearchResult], config=_DEFERRED)
_SNAPSHOT: Final = TypeAdapter(list[WireSnapshotRow], config=_DEFERRED)
_TRADES: Final = TypeAdapter(list[WireTrade], config=_DEFERRED)
_PORTFOLIO_ACCOUNTS: Final = TypeAdapter(list[WirePortfolioAccount], config=_DEFERRED)
_OBJECT_MAP: Final = TypeAdapter(dict[str, object], config=_DEFERRED)
_ORDER_REPLIES: Final = TypeAdapter(list[WireOrderReply], config=_DEFERRED)


def invalid_response(what: str) -> GatewayError:
    """The error for a body that does not have the shape CPAPI documents; never echoes the body."""
    return GatewayError(ErrorCode.BROKER_RESPONSE_INVALID, f"The broker's {what} response has an unexpected shape.")


def parse(model: type[WireModelT], data: object, what: str) -> WireModelT:
    """Validate one object.

    Raises:
        GatewayError: `BROKER_RESPONSE_INVALID` when the body does not fit.
    """
    try:
        return model.model_validate(data)
    except ValidationError:
        raise invalid_response(what) from None


def _parse_list(adapter: TypeAdapter[list[WireModelT]], data: object, what: str) -> list[WireModelT]:
    try:
        return adapter.validate_python(data)
    except ValidationError:
        raise invalid_response(what) from None


def parse_positions(data: object) -> list[WirePosition]:
    """Validate a positions page (decoded JSON, or the rows `positions_from_json` already read)."""
    return _parse_list(_POSITIONS, data, "positions")


def positions_from_json(content: bytes) -> list[WirePosition]:
    """A positions page read straight from its body: the rows `parse_positions` makes of the decoded JSON.

    One pass over the bytes instead of building every field of every row as Python data first (a page
    holds some 40 fields per row, of which 15 are kept). Raises `ValueError` (a pydantic
    `ValidationError`) for any body that is not a list of positions; the client then reads it as usual.
    """
    return _POSITIONS.validate_json(content)


def parse_search(data: object) -> list[WireSearchResult]:
    """Validate a secdef search answer."""
    return _parse_list(_SEARCH, data, "contract search")


def parse_snapshot(data: object) -> list[WireSnapshotRow]:
    """Validate a market-data snapshot answer."""
    return _parse_list(_SNAPSHOT, data, "market snapshot")


def parse_trades(data: object) -> list[WireTrade]:
    """Validate an executions answer."""
    return _parse_list(_TRADES, data, "executions")


def parse_order_replies(data: object) -> list[WireOrderReply]:
    """Validate a placement or reply answer: an array, or one bare object (IBKR's docs show both)."""
    items: object = data
    if isinstance(data, dict):
        items = [_OBJECT_MAP.validate_python(data)]
    return _parse_list(_ORDER_REPLIES, items, "order")


def parse_portfolio_accounts(data: object) -> list[WirePortfolioAccount]:
    """Validate `/portfolio/accounts`."""
    return _parse_list(_PORTFOLIO_ACCOUNTS, data, "portfolio accounts")


def parse_keyed(model: type[WireModelT], data: object, what: str) -> dict[str, WireModelT]:
    """Validate an object keyed by name (summary metrics, ledger currencies), skipping odd entries.

    Raises:
        GatewayError: `BROKER_RESPONSE_INVALID` when the body is not an object at all.
    """
    try:
        raw = _OBJECT_MAP.validate_python(data)
    except ValidationError:
        raise invalid_response(what) from None
    entries: dict[str, WireModelT] = {}
    for key, value in raw.items():
        try:
            entries[key] = model.model_validate(value)
        except ValidationError:
            continue  # CPAPI mixes scalar flags into these objects; only metric objects matter
    return entries


def error_text(data: object) -> str | None:
    """The `error` string of a CPAPI error body, if `data` is one."""
    if not isinstance(data, dict):
        return None
    try:
        value = _OBJECT_MAP.validate_python(data, strict=True).get("error")
    except ValidationError:
        return None
    return value if isinstance(value, str) else None
