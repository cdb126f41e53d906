"""The trading-desk reads a backend may offer beyond `Backend`.

P&L, options, scanner, calendar, FX, order history, transactions, depth and fundamentals.

A backend that lacks them (a test stub, a future broker) still works for everything else; the
operations that need them refuse with `BACKEND_UNSUPPORTED` instead of inventing data.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..models import BrokerSessionStatus, OrderRecord
from .models import (
    AccountMetadata,
    CurrencyRate,
    DailyPnl,
    Fundamentals,
    MarketDepth,
    MarketSchedule,
    OptionChain,
    OptionExpirations,
    OptionGreeks,
    OptionStrikes,
    PnlBreakdown,
    ScannerParams,
    ScannerResult,
    TransactionHistory,
)
from .requests import OptionChainInput, ScannerRunInput


@runtime_checkable
class MarketBackend(Protocol):
    """Reads of a trading desk. Every method raises `GatewayError` with a broker or input code on failure."""

    async def renew_session(self) -> BrokerSessionStatus:
        """Re-open the brokerage session (taking it back from a competing login) and report its state."""
        ...

    async def account_metadata(self, account_id: str) -> AccountMetadata:
        """What the broker says about one account."""
        ...

    async def daily_pnl(self, account_id: str) -> DailyPnl:
        """The partitioned P&L of one account."""
        ...

    async def pnl_breakdown(self, account_id: str) -> PnlBreakdown:
        """Daily, unrealised and realised P&L with the ledger's per-currency split."""
        ...

    async def option_expirations(self, symbol: str, contract_id: int | None) -> OptionExpirations:
        """Option months of one underlying."""
        ...

    async def option_strikes(self, contract_id: int, month: str) -> OptionStrikes:
        """Strikes of one underlying's options for one month."""
        ...

    async def option_chain(self, request: OptionChainInput) -> OptionChain:
        """A chain around the money with quotes, greeks and implied volatility."""
        ...

    async def option_greeks(self, contract_id: int) -> OptionGreeks:
        """Greeks and implied volatility of one option."""
        ...

    async def scanner_params(self) -> ScannerParams:
        """What a market scan accepts."""
        ...

    async def scanner_run(self, request: ScannerRunInput) -> ScannerResult:
        """Run one market scan."""
        ...

    async def market_schedule(self, symbol: str, exchange: str | None) -> MarketSchedule:
        """The trading schedule of one symbol's exchange."""
        ...

    async def currency_rate(self, base: str, quote: str) -> CurrencyRate:
        """One exchange rate."""
        ...

    async def order_history(self, account_id: str, filters: list[str]) -> list[OrderRecord]:
        """Orders of one account in the broker's order book, with CPAPI status filters."""
        ...

    async def transactions(self, account_id: str, contract_id: int, currency: str, days: int) -> TransactionHistory:
        """Portfolio Analyst transactions of one account and contract."""
        ...

    async def market_depth(self, account_id: str, contract_id: int, exchange: str | None) -> MarketDepth:
        """The order book of one contract."""
        ...

    async def fundamentals(self, contract_id: int) -> Fundamentals:
        """Key company figures from the snapshot fields and contract details."""
        ...
