"""Domain models: what the gateway returns, independent of how CPAPI spells it.

Models are frozen and refuse unknown fields. Money and quantities are `Decimal` and serialise as
strings, so no float rounding reaches an agent; currencies are ISO 4217 codes.
"""

# Field types are objects, not text (no `from __future__ import annotations`): pydantic would compile each
# from its text when the class is made, about 60,000 instructions a field at every start-up.
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""ISO 4217 currency code, upper case."""

AccountId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
"""An IBKR account id such as `DU1234567` (paper) or `U1234567` (live)."""

ContractId = Annotated[int, Field(gt=0, lt=10**12)]
"""An IBKR contract id (conid), e.g. 265598 for AAPL on NASDAQ."""

AccountMode = Literal["paper", "live", "unknown"]
AssetClass = Literal["stock", "etf", "option", "future", "forex", "index", "bond", "fund", "crypto", "other"]
OrderSide = Literal["buy", "sell"]
OrderType = Literal["limit", "market", "stop", "stop_limit", "trailing_stop"]
OrderStatus = Literal["pending_submit", "submitted", "pending_cancel", "filled", "cancelled", "inactive", "unknown"]
DataStatus = Literal["live", "delayed", "frozen", "unavailable"]


class DomainModel(BaseModel):
    """Base of every domain model: immutable and closed."""

    # defer_build: a schema is built on first use, so importing the registry stays cheap (CLI start-up)
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")


class Money(DomainModel):
    """An exact amount in one currency."""

    amount: Decimal
    currency: Currency


class HealthStatus(DomainModel):
    """Liveness of the gateway itself; no broker call is made."""

    gateway: Literal["ok"] = "ok"
    version: str
    backend: str
    """Configured backend: `fake` (embedded simulator) or `client_portal_gateway`."""
    read_only: bool
    """True while no write scope is enabled for the caller."""


class PacingBudget(DomainModel):
    """One of IBKR's pacing budgets as the gateway keeps it: use, queue and penalty box now."""

    endpoint: str
    """The CPAPI path it applies to (without query); `*` is the global rate over every path."""
    limit: int
    """Requests allowed per window (0 for a budget that only caps concurrency)."""
    window_seconds: float
    used: int
    """Requests sent within the current window."""
    queued: int
    """Calls waiting for a slot now."""
    in_flight: int
    max_concurrent: int | None = None
    """At most this many at once (IBKR serves 5 history requests at a time)."""
    boxed_for_seconds: float
    """Time left in IBKR's penalty box after a 429 (0 when the endpoint may be called)."""


class BrokerSessionStatus(DomainModel):
    """State of the broker (Client Portal) session, without any session material."""

    status: Literal["usable", "manual_action_required", "unavailable"]
    backend: str
    authenticated: bool
    connected: bool
    competing: bool
    checked_at: datetime
    message: str | None = None
    user_action: str | None = None
    error_code: str | None = None
    pacing: list[PacingBudget] = Field(default_factory=list[PacingBudget])
    """Each pacing budget with its queue (empty when the backend does not pace: fake mode, or pacing off)."""


class SessionCheck(DomainModel):
    """One precondition of a usable broker session."""

    name: str
    satisfied: bool
    detail: str


class SessionRequirements(DomainModel):
    """What must be true before broker calls work, and what a person must do now."""

    usable: bool
    manual_action: str
    """`none` when the session is usable; otherwise the one step a person must take."""
    checks: list[SessionCheck]


class BrokerAccount(DomainModel):
    """One account visible in the broker session."""

    account_id: str
    account_label: str | None = None
    account_mode: AccountMode
    """From the broker's own `isPaper` signal, cross-checked with the account-id prefix."""
    base_currency: Currency | None = None
    account_type: str | None = None


class AccountSummary(DomainModel):
    """Key balances and margin figures of one account."""

    account_id: str
    currency: Currency
    net_liquidation: Decimal | None = None
    total_cash: Decimal | None = None
    buying_power: Decimal | None = None
    available_funds: Decimal | None = None
    excess_liquidity: Decimal | None = None
    initial_margin: Decimal | None = None
    maintenance_margin: Decimal | None = None
    gross_position_value: Decimal | None = None
    as_of: datetime | None = None


class CashBalance(DomainModel):
    """Cash in one currency, from the account ledger."""

    currency: Currency
    cash: Decimal
    settled_cash: Decimal | None = None
    exchange_rate: Decimal | None = None


class Position(DomainModel):
    """One position of one account, as the broker reports it now."""

    account_id: str
    contract_id: int
    symbol: str
    description: str | None = None
    asset_class: AssetClass
    quantity: Decimal
    currency: Currency
    market_price: Decimal | None = None
    market_value: Decimal | None = None
    average_cost: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    realized_pnl: Decimal | None = None


class PortfolioSnapshot(DomainModel):
    """Summary, cash and positions of one account at one moment."""

    account_id: str
    base_currency: Currency
    summary: AccountSummary
    cash: list[CashBalance]
    positions: list[Position]
    as_of: datetime


class ContractCandidate(DomainModel):
    """A contract that matches a search."""

    contract_id: int
    symbol: str
    company_name: str | None = None
    description: str | None = None
    asset_class: AssetClass
    exchange: str | None = None
    currency: Currency | None = None
    is_unique_match: bool


class MarketSnapshot(DomainModel):
    """A quote for one contract."""

    contract_id: int
    symbol: str | None = None
    currency: Currency | None = None
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    bid_size: Decimal | None = Field(
        default=None,
        description="Size at the bid as IBKR reports it (field 88), unconverted: for US stocks IBKR's field "
        "table says lots of 100 shares (divided by 100); otherwise shares or contracts.",
    )
    ask_size: Decimal | None = Field(
        default=None,
        description="Size at the ask as IBKR reports it (field 85), unconverted: for US stocks lots of 100 "
        "shares (divided by 100); otherwise shares or contracts.",
    )
    volume: Decimal | None = Field(
        default=None,
        description="Day volume in shares (contracts for derivatives): IBKR's raw field 7762, else its "
        "formatted field 87 with K/M expanded.",
    )
    last_is_prior_close: bool = False
    """True when the broker marked the last price as the prior close (`C` prefix)."""
    data_status: DataStatus
    source_timestamp: datetime | None = None
    received_at: datetime
    staleness_seconds: float | None = None
    warnings: list[str] = Field(default_factory=list)


class HistoricalBar(DomainModel):
    """One OHLCV bar."""

    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Field(
        description="The bar's volume as IBKR's history answer gives it (`v`), unconverted. IBKR does not "
        "document the unit; for US stocks it has been reported in lots of 100 shares. 0 for indices."
    )


class HistoricalBars(DomainModel):
    """Bars for one contract over one period."""

    contract_id: int
    symbol: str | None = None
    duration: str
    bar_size: str
    outside_regular_hours: bool
    bars: list[HistoricalBar]


class OrderRecord(DomainModel):
    """An order as the broker reports it (read-only view)."""

    account_id: str
    broker_order_id: str
    client_order_id: str | None = None
    contract_id: int | None = None
    symbol: str | None = None
    side: OrderSide | None = None
    order_type: str | None = None
    quantity: Decimal | None = None
    filled_quantity: Decimal | None = None
    remaining_quantity: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    average_fill_price: Decimal | None = None
    time_in_force: str | None = None
    status: OrderStatus
    broker_status: str | None = None
    """The broker's own status word, e.g. `PreSubmitted`."""
    updated_at: datetime | None = None


class Execution(DomainModel):
    """One fill."""

    execution_id: str
    account_id: str
    broker_order_id: str | None = None
    client_order_id: str | None = None
    contract_id: int
    symbol: str | None = None
    side: OrderSide
    quantity: Decimal
    price: Decimal
    commission: Decimal | None = None
    net_amount: Decimal | None = None
    exchange: str | None = None
    executed_at: datetime
