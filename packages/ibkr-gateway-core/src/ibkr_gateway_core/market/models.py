"""Domain models of the trading-desk reads.

P&L, account metadata, options, scanner, calendar, FX, order history, transactions, depth,
fundamentals and news.

Like `models`, they are frozen and closed; money, prices and quantities are `Decimal` (strings in
JSON). A field the broker did not send is None, never a guess.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field

from ..models import AccountMode, AssetClass, Currency, DomainModel, OrderRecord

OptionRight = Literal["call", "put"]


class DailyPnl(DomainModel):
    """Today's P&L of one account, from the broker's partitioned P&L (`/iserver/account/pnl/partitioned`)."""

    account_id: str
    available: bool
    """False when the broker had no P&L for the account yet (CPAPI answers empty until its P&L stream runs)."""
    daily_pnl: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    net_liquidation: Decimal | None = None
    market_value: Decimal | None = None
    excess_liquidity: Decimal | None = None
    received_at: datetime


class CurrencyPnl(DomainModel):
    """Realised and unrealised P&L in one currency, from the account ledger."""

    currency: str
    """An ISO code, or `BASE` for the account's base-currency total."""
    realized_pnl: Decimal | None = None
    unrealized_pnl: Decimal | None = None


class PnlBreakdown(DomainModel):
    """Daily, unrealised and realised P&L of one account, with the ledger's per-currency split."""

    account_id: str
    daily_pnl: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    realized_pnl: Decimal | None = None
    """From the ledger's `BASE` row: realised today, in the base currency."""
    currencies: list[CurrencyPnl]
    received_at: datetime
    warnings: list[str] = Field(default_factory=list[str])


class AccountMetadata(DomainModel):
    """What the broker says about one account: mode, type, currency and what it may trade."""

    account_id: str
    account_mode: AccountMode
    title: str | None = None
    account_type: str | None = None
    """The broker's type word, e.g. `DEMO` (paper) or `INDIVIDUAL`."""
    base_currency: Currency | None = None
    trading_type: str | None = None
    business_type: str | None = None
    ib_entity: str | None = None
    customer_type: str | None = None
    advisor_client: bool | None = None
    supports_fractions: bool | None = None
    allowed_asset_types: list[str] = Field(default_factory=list[str])
    """Security types the session may trade, e.g. `STK`, `OPT` (from `/iserver/accounts`)."""


class OptionExpirations(DomainModel):
    """Option expiry months of one underlying (`/iserver/secdef/search` sections)."""

    underlying_contract_id: int
    symbol: str
    months: list[str]
    """CPAPI month codes, nearest first, e.g. `JUL24`."""
    exchanges: list[str]


class OptionStrikes(DomainModel):
    """Strikes of one underlying's options for one month (`/iserver/secdef/strikes`)."""

    underlying_contract_id: int
    month: str
    calls: list[Decimal]
    puts: list[Decimal]


class OptionQuote(DomainModel):
    """One option of a chain: contract, quote, greeks and implied volatility (None when not sent)."""

    contract_id: int
    right: OptionRight
    strike: Decimal
    expiry: date | None = None
    multiplier: Decimal | None = None
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    delta: Decimal | None = None
    gamma: Decimal | None = None
    theta: Decimal | None = None
    vega: Decimal | None = None
    implied_volatility_percent: Decimal | None = None
    data_status: Literal["live", "delayed", "frozen", "unavailable"]


class OptionChain(DomainModel):
    """Options of one underlying for one month, around the money."""

    underlying_contract_id: int
    symbol: str
    month: str
    underlying_price: Decimal | None = None
    expiries: list[date]
    """Every expiry date within the month the broker listed (weeklies included)."""
    options: list[OptionQuote]
    """Sorted by expiry, strike, then right."""
    warnings: list[str] = Field(default_factory=list[str])
    received_at: datetime


class OptionGreeks(DomainModel):
    """Greeks and implied volatility of one option contract, from the snapshot's option fields."""

    contract_id: int
    symbol: str | None = None
    right: OptionRight | None = None
    strike: Decimal | None = None
    expiry: date | None = None
    last: Decimal | None = None
    delta: Decimal | None = None
    gamma: Decimal | None = None
    theta: Decimal | None = None
    vega: Decimal | None = None
    implied_volatility_percent: Decimal | None = None
    data_status: Literal["live", "delayed", "frozen", "unavailable"]
    received_at: datetime
    warnings: list[str] = Field(default_factory=list[str])


class ScanType(DomainModel):
    """One scanner the broker offers."""

    code: str
    name: str
    instruments: list[str]


class ScannerInstrument(DomainModel):
    """One instrument family a scan may cover, e.g. `STK` (US stocks)."""

    code: str
    name: str


class ScannerLocation(DomainModel):
    """One market a scan may cover, e.g. `STK.US.MAJOR`."""

    code: str
    name: str


class ScannerFilter(DomainModel):
    """One filter a scan may take."""

    code: str
    name: str
    kind: str | None = None


class ScannerParams(DomainModel):
    """What `scanner_run` accepts (`/iserver/scanner/params`), trimmed to codes and names."""

    scan_types: list[ScanType]
    instruments: list[ScannerInstrument]
    locations: list[ScannerLocation]
    filters: list[ScannerFilter]


class ScannerRow(DomainModel):
    """One contract a scan returned."""

    rank: int
    contract_id: int
    symbol: str | None = None
    company_name: str | None = None
    asset_class: AssetClass
    exchange: str | None = None
    scan_value: str | None = None
    """The scan's own column (e.g. a percent change), as the broker formats it; broker text."""


class ScannerResult(DomainModel):
    """The contracts a market scan returned, best first."""

    scan_code: str
    instrument: str
    location: str
    column_name: str | None = None
    rows: list[ScannerRow]


class TradingSession(DomainModel):
    """One trading window of one day, in the exchange's time zone."""

    kind: Literal["regular", "extended"]
    opens_at: datetime
    closes_at: datetime


class TradingDay(DomainModel):
    """The schedule of one day at one exchange."""

    date: date
    open: bool
    sessions: list[TradingSession]


class MarketSchedule(DomainModel):
    """The trading schedule of one contract's exchange (`/trsrv/secdef/schedule`)."""

    symbol: str
    exchange: str
    time_zone: str | None = None
    is_open_now: bool | None = None
    """None when the schedule does not cover now."""
    current_session: TradingSession | None = None
    next_session: TradingSession | None = None
    days: list[TradingDay]
    checked_at: datetime


class MarketHolidays(DomainModel):
    """Weekdays without trading in the schedule the broker published (about a month ahead)."""

    symbol: str
    exchange: str
    covered_from: date | None = None
    covered_to: date | None = None
    holidays: list[date]
    early_closes: list[date]
    """Days whose regular session ends earlier than the schedule's usual close."""


class CurrencyRate(DomainModel):
    """An exchange rate: one unit of `base` costs `rate` units of `quote` (`/iserver/exchangerate`)."""

    base: Currency
    quote: Currency
    rate: Decimal
    received_at: datetime


class OrdersHistory(DomainModel):
    """Orders of one account in the broker's current order book, filtered, newest first."""

    account_id: str
    orders: list[OrderRecord]
    truncated: bool
    """True when more orders matched than `limit`."""
    note: str
    """What the history covers (CPAPI keeps orders of the current and recent brokerage sessions only)."""


class Transaction(DomainModel):
    """One Portfolio Analyst transaction (a trade, dividend or transfer of a contract)."""

    date: date
    kind: str
    """The broker's type word, e.g. `Buy`, `Sell`, `Dividend`."""
    description: str | None = None
    contract_id: int | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    amount: Decimal | None = None
    currency: str | None = None
    fx_rate: Decimal | None = None


class TransactionHistory(DomainModel):
    """Portfolio Analyst transactions of one account and one contract (`/pa/transactions`)."""

    account_id: str
    contract_id: int
    currency: Currency
    days: int
    transactions: list[Transaction]
    """Newest first."""


class TransferHistory(DomainModel):
    """Cash and position transfers of one account (no CPAPI endpoint offers them today)."""

    account_id: str
    transfers: list[Transaction]


class DepthLevel(DomainModel):
    """One price level of the book."""

    price: Decimal
    size: Decimal


class MarketDepth(DomainModel):
    """The order book of one contract (CPAPI websocket topic `sbd`), best prices first."""

    contract_id: int
    exchange: str | None = None
    bids: list[DepthLevel]
    asks: list[DepthLevel]
    received_at: datetime


class Fundamentals(DomainModel):
    """Key figures of one company from the broker's snapshot fields and contract details."""

    contract_id: int
    symbol: str | None = None
    company_name: str | None = None
    industry: str | None = None
    category: str | None = None
    market_cap: Decimal | None = None
    pe_ratio: Decimal | None = None
    eps: Decimal | None = None
    dividend_amount: Decimal | None = None
    dividend_yield_percent: Decimal | None = None
    ex_dividend_date: str | None = None
    """As the broker formats it."""
    week52_high: Decimal | None = None
    week52_low: Decimal | None = None
    average_volume_90d: Decimal | None = None
    received_at: datetime


class NewsHeadline(DomainModel):
    """One news headline (no CPAPI endpoint offers news today)."""

    article_id: str
    headline: str
    published_at: datetime | None = None
    provider: str | None = None


class NewsList(DomainModel):
    """Headlines about one symbol."""

    symbol: str
    headlines: list[NewsHeadline]


class NewsArticle(DomainModel):
    """The text of one news article."""

    article_id: str
    headline: str | None = None
    body: str
