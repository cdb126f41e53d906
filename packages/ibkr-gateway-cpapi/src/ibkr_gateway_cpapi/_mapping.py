"""Pure functions from CPAPI wire models to core's domain models (orders: `_order_mapping`).

No I/O and no clock reads: whatever time a mapping needs is passed in. Numbers go through
`Decimal(str(x))`, so a float the broker sent never rounds twice.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Final, TypeVar

from ibkr_gateway_core.models import (
    AccountMode,
    AccountSummary,
    AssetClass,
    BrokerAccount,
    CashBalance,
    ContractCandidate,
    DataStatus,
    HistoricalBar,
    HistoricalBars,
    MarketSnapshot,
    Position,
)
from pydantic import ConfigDict, TypeAdapter

from ._wire import (
    WireIserverAccounts,
    WireLedgerEntry,
    WireNumber,
    WirePortfolioAccount,
    WirePosition,
    WireSummaryValue,
)

if TYPE_CHECKING:  # the market models load with the market reads (`_wire`)
    from ._wire_market import WireContractInfo, WireHistory, WireSearchResult, WireSnapshotRow

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
    if type(value) is float:  # the common case first: a JSON number with a fraction (or `150.0`)
        return _float_decimal(value)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):  # a float subclass
        return _float_decimal(float(value))
    text = value.strip().replace(",", "")
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


@functools.lru_cache(maxsize=8192)
def _float_decimal(value: float) -> Decimal | None:
    """A float as `Decimal` (None when not finite), remembered: a positions page repeats most numbers read after read.

    Decimals are immutable, so sharing one is safe; `-0.0` and `0.0` share a key and both map to `0`.
    """
    if not math.isfinite(value):
        return None
    if value.is_integer():
        return Decimal(int(value))  # JSON `150.0` shares are 150, not "150.0"
    return Decimal(repr(value))  # the shortest text that reads back


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


def required(value: _T | None, what: str) -> _T:
    """`value`, or a `ValueError` naming what the broker left out (the backend reports it as invalid)."""
    if value is None:
        raise ValueError(f"the broker sent no {what}")
    return value


def _currency(value: str | None) -> str | None:
    return value if value is not None and _CURRENCY.match(value) else None


def text_or_none(value: str | None) -> str | None:
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
        names = (portfolio.account_title, portfolio.display_name, portfolio.account_alias)
        label = next((name for name in map(text_or_none, names) if name), None)
    alias = iserver.aliases.get(account_id)
    if label is None and alias and alias != account_id:
        label = alias
    return BrokerAccount(
        account_id=account_id,
        account_label=label,
        account_mode=account_mode(iserver.is_paper, account_id),
        base_currency=_currency(portfolio.currency) if portfolio else None,
        account_type=text_or_none(portfolio.account_type) if portfolio else None,
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
    return Position.model_validate(_position_fields(row, account_id))


def to_positions(rows: Sequence[WirePosition], account_id: str) -> list[Position]:
    """Every position of a read, validated in one pass (the same checks as `to_position`, row by row)."""
    return _POSITIONS.validate_python([_position_fields(row, account_id) for row in rows])


_POSITIONS: Final = TypeAdapter(list[Position], config=ConfigDict(defer_build=True))
"""Built on first use, like the wire adapters: most commands read no positions."""


def _position_fields(row: WirePosition, account_id: str) -> dict[str, object]:
    contract_desc = text_or_none(row.contract_desc)
    ticker, name, avg_cost = row.ticker, row.name, row.avg_cost
    return {  # text_or_none inline for the ticker and name: an empty text falls back as None would
        "account_id": row.acct_id or account_id,
        "contract_id": int(row.conid),
        "symbol": (ticker.strip() if ticker is not None else "") or contract_desc or str(row.conid),
        "description": (name.strip() if name is not None else "") or contract_desc,
        "asset_class": _position_kind(row.asset_class, row.stock_type),
        "quantity": required(to_decimal(row.position), "position size"),
        "currency": row.currency or "",
        "market_price": to_decimal(row.mkt_price),
        "market_value": to_decimal(row.mkt_value),
        "average_cost": to_decimal(avg_cost if avg_cost is not None else row.avg_price),
        "unrealized_pnl": to_decimal(row.unrealized_pnl),
        "realized_pnl": to_decimal(row.realized_pnl),
    }


@functools.lru_cache(maxsize=256)
def _position_kind(sec_type: str | None, stock_type: str | None) -> AssetClass:
    """A position's asset class; the ETF flag matters only for a stock. Remembered: every row of a page asks."""
    kind = asset_class(sec_type)
    return "etf" if kind == "stock" and info_says_etf(stock_type) else kind


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
        symbol=text_or_none(result.symbol) or (info.symbol if info and info.symbol else str(result.conid)),
        company_name=text_or_none(result.company_name) or (info.company_name if info else None),
        description=text_or_none(result.company_header),
        asset_class=asset_class(sec_type, is_etf=is_etf),
        exchange=text_or_none(result.description) or (_contract_exchange(info) if info else None),
        currency=_currency(info.currency) if info else None,
        is_unique_match=False,
    )


def _contract_exchange(info: WireContractInfo) -> str | None:
    return text_or_none(info.listing_exchange) or text_or_none(info.exchange)


def to_contract_candidate(info: WireContractInfo) -> ContractCandidate:
    """One contract looked up by id: an exact match by construction."""
    return ContractCandidate(
        contract_id=int(info.con_id),
        symbol=text_or_none(info.symbol) or text_or_none(info.local_symbol) or str(info.con_id),
        company_name=text_or_none(info.company_name),
        description=text_or_none(info.local_symbol),
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
        symbol=text_or_none(row.symbol),
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
            open=required(to_decimal(item.o), "bar price"),
            high=required(to_decimal(item.h), "bar price"),
            low=required(to_decimal(item.low), "bar price"),
            close=required(to_decimal(item.c), "bar price"),
            volume=to_decimal(item.v) or Decimal(0),  # indices report no volume
        )
        for item in history.data
    ]
    return HistoricalBars(
        contract_id=contract_id,
        symbol=text_or_none(history.symbol),
        duration=period,
        bar_size=bar,
        outside_regular_hours=outside_regular_hours,
        bars=bars,
    )
