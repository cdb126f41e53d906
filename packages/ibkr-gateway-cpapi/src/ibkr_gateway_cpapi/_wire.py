"""Loose models of what CPAPI really sends, for the endpoints the backend reads.

They ignore unknown fields, accept the API's type looseness (a `conid` that is sometimes a string,
numbers that are sometimes formatted strings) and stay inside this package; `_mapping` turns them
into core's domain models.
"""

# Field types are objects, not text (no `from __future__ import annotations`): pydantic would compile each
# from its text when the class is made, about 60,000 instructions a field at every start-up.
import importlib
from typing import TYPE_CHECKING, Final, TypeVar

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


WireModelT = TypeVar("WireModelT", bound=WireModel)

_DEFERRED: Final = ConfigDict(defer_build=True)
"""Adapters, like the models, build their validators on first use."""
_POSITIONS: Final = TypeAdapter(list[WirePosition], config=_DEFERRED)
_PORTFOLIO_ACCOUNTS: Final = TypeAdapter(list[WirePortfolioAccount], config=_DEFERRED)
_OBJECT_MAP: Final = TypeAdapter(dict[str, object], config=_DEFERRED)


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


_LAZY: Final = {
    **dict.fromkeys(
        ("WireBar", "WireContractInfo", "WireHistory", "WireSearchResult", "WireSection", "WireSnapshotRow"),
        "._wire_market",
    ),
    **dict.fromkeys(("parse_search", "parse_snapshot"), "._wire_market"),
    **dict.fromkeys(
        (
            "WireCancelAck",
            "WireLiveOrder",
            "WireLiveOrders",
            "WireOrderReply",
            "WireOrderStatus",
            "WireTrade",
            "WireWhatIf",
            "WireWhatIfAmount",
            "WireWhatIfChange",
            "parse_order_replies",
            "parse_trades",
        ),
        "._wire_orders",
    ),
}
"""The market and order models, and their parsers, live in modules of their own, imported on first use:
each model class costs about as much to define as to import a small module, and an account read needs none."""

if TYPE_CHECKING:
    from ._wire_market import WireBar as WireBar
    from ._wire_market import WireContractInfo as WireContractInfo
    from ._wire_market import WireHistory as WireHistory
    from ._wire_market import WireSearchResult as WireSearchResult
    from ._wire_market import WireSection as WireSection
    from ._wire_market import WireSnapshotRow as WireSnapshotRow
    from ._wire_market import parse_search as parse_search
    from ._wire_market import parse_snapshot as parse_snapshot
    from ._wire_orders import WireCancelAck as WireCancelAck
    from ._wire_orders import WireLiveOrder as WireLiveOrder
    from ._wire_orders import WireLiveOrders as WireLiveOrders
    from ._wire_orders import WireOrderReply as WireOrderReply
    from ._wire_orders import WireOrderStatus as WireOrderStatus
    from ._wire_orders import WireTrade as WireTrade
    from ._wire_orders import WireWhatIf as WireWhatIf
    from ._wire_orders import WireWhatIfAmount as WireWhatIfAmount
    from ._wire_orders import WireWhatIfChange as WireWhatIfChange
    from ._wire_orders import parse_order_replies as parse_order_replies
    from ._wire_orders import parse_trades as parse_trades
else:

    def __getattr__(name: str) -> object:
        home = _LAZY.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, __package__), name)
        globals()[name] = value
        return value
