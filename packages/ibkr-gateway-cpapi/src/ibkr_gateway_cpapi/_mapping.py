"""Pure functions from CPAPI wire models to core's domain models.

No I/O and no clock reads: whatever time a mapping needs is passed in. Numbers go through
`Decimal(str(x))`, so a float the broker sent never rounds twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Final, TypeVar

from ibkr_gateway_core.models import (
    AccountMode,
    AccountSummary,
    AssetClass,
    BrokerAccount,
    CashBalance,
    ContractCandidate,
    DataStatus,
    Execution,
    HistoricalBar,
    HistoricalBars,
    MarketSnapshot,
    OrderRecord,
    OrderSide,
    OrderStatus,
    Position,
)

from ._wire import (
    WireContractInfo,
    WireHistory,
    WireIserverAccounts,
    WireLedgerEntry,
    WireLiveOrder,
    WireNumber,
    WireOrderStatus,
    WirePortfolioAccount,
    WirePosition,
    WireSearchResult,
    WireSnapshotRow,
    WireSummaryValue,
    WireTrade,
)

_T = TypeVar("_T")

_CURRENCY: Final = re.compile(r"^[A-Z]{3}$")
_SCALED: Final = re.compile(r"^([0-9.]+)([KMB])$")
_SCALES: Final = {"K": Decimal(1_000), "M": Decimal(1_000_000), "B": Decimal(1_000_000_000)}

SEC_TYPES: Final[Mapping[str, AssetClass]] = {
    "STK": "stock",
    "ETF": "etf",
    "OPT": "option",
    "FUT": "future",
    "CASH": "forex",
    "IND": "index",
    "BOND": "bond",
    "FUND": "fund",
    "CRYPTO": "crypto",
}
"""CPAPI `secType` / `assetClass` / `instrument_type` → asset class; anything else is `other`."""

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

PAPER_PREFIXES: Final = ("DU", "DF")
LIVE_PREFIXES: Final = ("U", "F", "I")

AVAILABILITY: Final[Mapping[str, DataStatus]] = {
    "R": "live",
    "D": "delayed",
    "Z": "frozen",
    "Y": "frozen",
    "N": "unavailable",
}
"""First character of snapshot field 6509 → data status."""


def to_decimal(value: WireNumber | None) -> Decimal | None:
    """A CPAPI number as `Decimal`: JSON numbers, `"1,300"`, `"+2.37"`, `"41.2M"`; None when absent."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return Decimal(int(value))  # JSON `150.0` shares are 150, not "150.0"
    text = str(value).strip().replace(",", "")
    if not text or text.upper() in ("N/A", "NAN", "-"):
        return None
    scaled = _SCALED.match(text.upper())
    try:
        if scaled:
            return Decimal(scaled.group(1)) * _SCALES[scaled.group(2)]
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def parse_last(value: WireNumber | None) -> tuple[Decimal | None, bool, bool]:
    """Field 31: the price, whether it is the prior close (`C` prefix), whether halted (`H` prefix)."""
    if value is None:
        return None, False, False
    text = str(value).strip()
    prior_close = text.startswith("C")
    halted = text.startswith("H")
    return to_decimal(text.lstrip("CH")), prior_close, halted


def data_status(availability: str | None) -> DataStatus:
    """Data status from field 6509 (`RpB` → live, `DPB` → delayed)."""
    if not availability:
        return "unavailable"
    return AVAILABILITY.get(availability[0], "unavailable")


def ms_to_datetime(value: int | None) -> datetime | None:
    """Milliseconds since the epoch as an aware UTC datetime."""
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


def _required(value: _T | None, what: str) -> _T:
    """`value`, or a `ValueError` naming what the broker left out (the backend reports it as invalid)."""
    if value is None:
        raise ValueError(f"the broker sent no {what}")
    return value


def _currency(value: str | None) -> str | None:
    return value if value is not None and _CURRENCY.match(value) else None


def _text(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def account_mode(is_paper: bool | None, account_id: str) -> AccountMode:
    """Paper or live from the broker's `isPaper`, cross-checked with the id prefix; `unknown` if they disagree."""
    if is_paper is None:
        return "unknown"
    looks_paper = account_id.startswith(PAPER_PREFIXES)
    looks_live = not looks_paper and account_id.startswith(LIVE_PREFIXES)
    if is_paper and looks_paper:
        return "paper"
    if not is_paper and looks_live:
        return "live"
    return "unknown"


def asset_class(sec_type: str | None, *, is_etf: bool = False) -> AssetClass:
    """Asset class from a CPAPI security type; an ETF flag turns a stock into `etf`."""
    mapped: AssetClass = SEC_TYPES.get((sec_type or "").upper(), "other")
    if mapped == "stock" and is_etf:
        return "etf"
    return mapped


def info_says_etf(*labels: str | None) -> bool:
    """True when a contract's category, industry or stock type names it an ETF."""
    return any(label is not None and "ETF" in label.upper().split() for label in labels)


def to_broker_account(
    account_id: str, iserver: WireIserverAccounts, portfolio: WirePortfolioAccount | None
) -> BrokerAccount:
    """One account from `/iserver/accounts` (mode) and `/portfolio/accounts` (currency, title, type)."""
    label = None
    if portfolio is not None:
        label = _text(portfolio.account_title) or _text(portfolio.display_name) or _text(portfolio.account_alias)
    alias = iserver.aliases.get(account_id)
    if label is None and alias and alias != account_id:
        label = alias
    return BrokerAccount(
        account_id=account_id,
        account_label=label,
        account_mode=account_mode(iserver.is_paper, account_id),
        base_currency=_currency(portfolio.currency) if portfolio else None,
        account_type=_text(portfolio.account_type) if portfolio else None,
    )


_SUMMARY_FIELDS: Final = {
    "net_liquidation": "netliquidation",
    "total_cash": "totalcashvalue",
    "buying_power": "buyingpower",
    "available_funds": "availablefunds",
    "excess_liquidity": "excessliquidity",
    "initial_margin": "initmarginreq",
    "maintenance_margin": "maintmarginreq",
    "gross_position_value": "grosspositionvalue",
}
"""Summary field → CPAPI metric key (the total, not the `-c`/`-s` segment variants)."""


def summary_currency(metrics: Mapping[str, WireSummaryValue]) -> str | None:
    """The currency the summary is stated in, from its money metrics."""
    for key in ("netliquidation", "totalcashvalue", "availablefunds", "buyingpower"):
        metric = metrics.get(key)
        if metric is not None and _currency(metric.currency):
            return metric.currency
    return None


def to_account_summary(account_id: str, metrics: Mapping[str, WireSummaryValue], currency: str) -> AccountSummary:
    """Key balances from `/portfolio/{id}/summary`; `currency` is the summary's own or the account's."""
    values: dict[str, Decimal | None] = {}
    stamps: list[int] = []
    for field, key in _SUMMARY_FIELDS.items():
        metric = metrics.get(key)
        if metric is None or metric.is_null:
            values[field] = None
            continue
        values[field] = to_decimal(metric.amount)
        if metric.timestamp:
            stamps.append(metric.timestamp)
    return AccountSummary(
        account_id=account_id,
        currency=currency,
        as_of=ms_to_datetime(max(stamps)) if stamps else None,
        **values,
    )


def to_cash_balances(ledger: Mapping[str, WireLedgerEntry]) -> list[CashBalance]:
    """Cash per currency from `/portfolio/{id}/ledger`, without the synthetic `BASE` row."""
    balances: list[CashBalance] = []
    for key, entry in sorted(ledger.items()):
        currency = _currency(entry.currency) or _currency(entry.secondkey) or _currency(key)
        cash = to_decimal(entry.cashbalance)
        if key.upper() == "BASE" or currency is None or cash is None:
            continue
        balances.append(
            CashBalance(
                currency=currency,
                cash=cash,
                settled_cash=to_decimal(entry.settledcash),
                exchange_rate=to_decimal(entry.exchangerate),
            )
        )
    return balances


def to_position(row: WirePosition, account_id: str) -> Position:
    """One position; the symbol falls back to `contractDesc` while the row is still cold."""
    symbol = _text(row.ticker) or _text(row.contract_desc) or str(row.conid)
    return Position(
        account_id=row.acct_id or account_id,
        contract_id=int(row.conid),
        symbol=symbol,
        description=_text(row.name) or _text(row.contract_desc),
        asset_class=asset_class(row.asset_class, is_etf=info_says_etf(row.stock_type)),
        quantity=_required(to_decimal(row.position), "position size"),
        currency=row.currency or "",
        market_price=to_decimal(row.mkt_price),
        market_value=to_decimal(row.mkt_value),
        average_cost=to_decimal(row.avg_cost if row.avg_cost is not None else row.avg_price),
        unrealized_pnl=to_decimal(row.unrealized_pnl),
        realized_pnl=to_decimal(row.realized_pnl),
    )


def primary_sec_type(result: WireSearchResult) -> str | None:
    """The security type a search result stands for: STK when it has one, else its first section."""
    kinds = [section.sec_type for section in result.sections if section.sec_type]
    if "STK" in kinds:
        return "STK"
    return kinds[0] if kinds else None


def to_search_candidate(result: WireSearchResult, info: WireContractInfo | None) -> ContractCandidate:
    """A search candidate, enriched by contract info when it was fetched; never a unique match here."""
    sec_type = primary_sec_type(result)
    is_etf = info is not None and info_says_etf(info.category, info.industry)
    return ContractCandidate(
        contract_id=int(result.conid),
        symbol=_text(result.symbol) or (info.symbol if info and info.symbol else str(result.conid)),
        company_name=_text(result.company_name) or (info.company_name if info else None),
        description=_text(result.company_header),
        asset_class=asset_class(sec_type, is_etf=is_etf),
        exchange=_text(result.description) or (_contract_exchange(info) if info else None),
        currency=_currency(info.currency) if info else None,
        is_unique_match=False,
    )


def _contract_exchange(info: WireContractInfo) -> str | None:
    return _text(info.listing_exchange) or _text(info.exchange)


def to_contract_candidate(info: WireContractInfo) -> ContractCandidate:
    """One contract looked up by id: an exact match by construction."""
    return ContractCandidate(
        contract_id=int(info.con_id),
        symbol=_text(info.symbol) or _text(info.local_symbol) or str(info.con_id),
        company_name=_text(info.company_name),
        description=_text(info.local_symbol),
        asset_class=asset_class(info.instrument_type, is_etf=info_says_etf(info.category, info.industry)),
        exchange=_contract_exchange(info),
        currency=_currency(info.currency),
        is_unique_match=True,
    )


def to_market_snapshot(
    row: WireSnapshotRow, *, contract_id: int, currency: str | None, received_at: datetime
) -> MarketSnapshot:
    """A quote from one snapshot row; `received_at` is when the gateway got it."""
    last, prior_close, halted = parse_last(row.last)
    warnings: list[str] = []
    status = data_status(row.availability) if row.has_prices else "unavailable"
    if not row.has_prices:
        warnings.append("The broker returned no prices for this contract yet.")
    if prior_close:
        warnings.append("The last price is the prior close.")
    if halted:
        warnings.append("The contract is halted.")
    if status == "delayed":
        warnings.append("Market data is delayed.")
    source = ms_to_datetime(row.updated_ms)
    staleness = max((received_at - source).total_seconds(), 0.0) if source is not None else None
    volume = to_decimal(row.volume) if row.volume is not None else to_decimal(row.volume_formatted)
    return MarketSnapshot(
        contract_id=contract_id,
        symbol=_text(row.symbol),
        currency=_currency(currency),
        bid=to_decimal(row.bid),
        ask=to_decimal(row.ask),
        last=last,
        bid_size=to_decimal(row.bid_size),
        ask_size=to_decimal(row.ask_size),
        volume=volume,
        last_is_prior_close=prior_close,
        data_status=status,
        source_timestamp=source,
        received_at=received_at,
        staleness_seconds=staleness,
        warnings=warnings,
    )


def to_historical_bars(
    history: WireHistory, *, contract_id: int, period: str, bar: str, outside_regular_hours: bool
) -> HistoricalBars:
    """Bars from `/iserver/marketdata/history`; `data` prices are already unscaled."""
    bars = [
        HistoricalBar(
            timestamp=datetime.fromtimestamp(item.t / 1000, tz=UTC),
            open=_required(to_decimal(item.o), "bar price"),
            high=_required(to_decimal(item.h), "bar price"),
            low=_required(to_decimal(item.low), "bar price"),
            close=_required(to_decimal(item.c), "bar price"),
            volume=to_decimal(item.v) or Decimal(0),  # indices report no volume
        )
        for item in history.data
    ]
    return HistoricalBars(
        contract_id=contract_id,
        symbol=_text(history.symbol),
        duration=period,
        bar_size=bar,
        outside_regular_hours=outside_regular_hours,
        bars=bars,
    )


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
        client_order_id=_text(row.order_ref),
        contract_id=int(row.conid) if row.conid is not None else None,
        symbol=_text(row.ticker) or _text(row.description1),
        side=order_side(row.side),
        order_type=order_type(row.orig_order_type or row.order_type),
        quantity=to_decimal(row.total_size),
        filled_quantity=to_decimal(row.filled_quantity),
        remaining_quantity=to_decimal(row.remaining_quantity),
        limit_price=to_decimal(row.price),
        stop_price=to_decimal(row.aux_price if row.aux_price is not None else row.stop_price),
        average_fill_price=to_decimal(row.avg_price),
        time_in_force=_text(row.time_in_force),
        status=order_status(row.status),
        broker_status=_text(row.status),
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
        client_order_id=_text(status.order_ref),
        contract_id=int(status.conid) if status.conid is not None else None,
        symbol=_text(status.symbol),
        side=order_side(status.side),
        order_type=order_type(status.order_type),
        quantity=total,
        filled_quantity=filled,
        remaining_quantity=remaining,
        limit_price=to_decimal(status.limit_price),
        stop_price=to_decimal(status.stop_price),
        average_fill_price=to_decimal(status.average_price),
        time_in_force=_text(status.tif),
        status=order_status(status.order_status),
        broker_status=_text(status.order_status),
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
        client_order_id=_text(trade.order_ref),
        contract_id=int(trade.conid),
        symbol=_text(trade.symbol),
        side=_required(side, "execution side"),
        quantity=_required(to_decimal(trade.size), "execution size"),
        price=_required(to_decimal(trade.price), "execution price"),
        commission=to_decimal(trade.commission),
        net_amount=to_decimal(trade.net_amount),
        exchange=_text(trade.exchange),
        executed_at=_required(executed_at, "execution time"),
    )
