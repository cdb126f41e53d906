"""Handlers of the trading-desk reads.

P&L, metadata, session renew, options, scanner, calendar, FX, order history, transactions, depth,
fundamentals, news and transfers.

`Gateway.call` checks scope, input and account and audits the call; these handlers only do the
work, through the backend's `MarketBackend` reads. What no CPAPI endpoint offers (news, transfer
history) is refused with `BACKEND_UNSUPPORTED`: the gateway never invents data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from ..backend import Backend
from ..errors import ErrorCode, GatewayError
from ..models import BrokerSessionStatus, OrderRecord
from ..requests import AccountInput, ContractInput, NoInput
from .backend import MarketBackend
from .models import (
    AccountMetadata,
    CurrencyRate,
    DailyPnl,
    Fundamentals,
    MarketDepth,
    MarketHolidays,
    MarketSchedule,
    NewsArticle,
    NewsList,
    OptionChain,
    OptionExpirations,
    OptionGreeks,
    OptionStrikes,
    OrdersHistory,
    PnlBreakdown,
    ScannerParams,
    ScannerResult,
    TransactionHistory,
    TransferHistory,
)
from .requests import (
    CurrencyRateInput,
    DepthInput,
    NewsArticleInput,
    NewsListInput,
    OptionChainInput,
    OptionStrikesInput,
    OrdersHistoryInput,
    ScannerRunInput,
    ScheduleInput,
    TransactionsInput,
    UnderlyingInput,
)

_STATUS_FILTERS: Final = {
    "open": ["pending_submit", "pre_submitted", "submitted", "pending_cancel"],
    "filled": ["filled"],
    "cancelled": ["cancelled"],
    "inactive": ["inactive"],
    "all": [],
}
"""Our status word → CPAPI `filters` of `/iserver/account/orders`."""

_STATUS_KEPT: Final = {
    "open": {"pending_submit", "submitted", "pending_cancel"},
    "filled": {"filled"},
    "cancelled": {"cancelled"},
    "inactive": {"inactive"},
}
"""Our status word → the order statuses it keeps (the filter is applied again on our side)."""

HISTORY_NOTE: Final = (
    "CPAPI keeps the orders of the current brokerage session and recent days only; "
    "older fills are in `ibkr_executions_list` (7 days) and `ibkr_transactions_list` (Portfolio Analyst)."
)


class MarketDesk:
    """The trading-desk reads behind the Gateway."""

    def __init__(self, *, backend: Callable[[], Backend], clock: Callable[[], datetime]) -> None:
        self._backend = backend
        self._clock = clock

    def handlers(self) -> dict[str, Callable[[Any], Awaitable[Any]]]:
        """Operation name → handler, for `Gateway.call`."""
        return {
            "renew_session": self._renew_session,
            "account_metadata": self._account_metadata,
            "pnl_daily": self._pnl_daily,
            "pnl_breakdown": self._pnl_breakdown,
            "option_expirations": self._option_expirations,
            "option_strikes": self._option_strikes,
            "options_chain": self._options_chain,
            "option_greeks": self._option_greeks,
            "scanner_params": self._scanner_params,
            "scanner_run": self._scanner_run,
            "market_schedule": self._market_schedule,
            "market_holidays": self._market_holidays,
            "currency_rate": self._currency_rate,
            "orders_history": self._orders_history,
            "transactions": self._transactions,
            "transfer_history": self._transfer_history,
            "market_depth": self._market_depth,
            "fundamentals": self._fundamentals,
            "news_list": self._news_list,
            "news_article": self._news_article,
        }

    def _market(self, what: str) -> MarketBackend:
        backend = self._backend()
        if not isinstance(backend, MarketBackend):
            raise GatewayError(
                ErrorCode.BACKEND_UNSUPPORTED,
                f"The {backend.name!r} backend does not offer {what}.",
            )
        return backend

    async def _renew_session(self, _: NoInput) -> BrokerSessionStatus:
        # Operator only (`Gateway.call` refuses anyone else): it can take the session from another IBKR platform.
        return await self._market("session renewal").renew_session()

    async def _account_metadata(self, args: AccountInput) -> AccountMetadata:
        return await self._market("account metadata").account_metadata(args.account_id)

    async def _pnl_daily(self, args: AccountInput) -> DailyPnl:
        return await self._market("P&L").daily_pnl(args.account_id)

    async def _pnl_breakdown(self, args: AccountInput) -> PnlBreakdown:
        return await self._market("P&L").pnl_breakdown(args.account_id)

    async def _option_expirations(self, args: UnderlyingInput) -> OptionExpirations:
        return await self._market("option chains").option_expirations(args.symbol, args.contract_id)

    async def _option_strikes(self, args: OptionStrikesInput) -> OptionStrikes:
        return await self._market("option chains").option_strikes(args.contract_id, args.month)

    async def _options_chain(self, args: OptionChainInput) -> OptionChain:
        return await self._market("option chains").option_chain(args)

    async def _option_greeks(self, args: ContractInput) -> OptionGreeks:
        return await self._market("option greeks").option_greeks(args.contract_id)

    async def _scanner_params(self, _: NoInput) -> ScannerParams:
        return await self._market("market scanners").scanner_params()

    async def _scanner_run(self, args: ScannerRunInput) -> ScannerResult:
        result = await self._market("market scanners").scanner_run(args)
        return result.model_copy(update={"rows": result.rows[: args.limit]})

    async def _market_schedule(self, args: ScheduleInput) -> MarketSchedule:
        return await self._market("trading schedules").market_schedule(args.symbol, args.exchange)

    async def _market_holidays(self, args: ScheduleInput) -> MarketHolidays:
        schedule = await self._market("trading schedules").market_schedule(args.symbol, args.exchange)
        return holidays_from(schedule)

    async def _currency_rate(self, args: CurrencyRateInput) -> CurrencyRate:
        if args.base == args.quote:
            return CurrencyRate(base=args.base, quote=args.quote, rate=Decimal(1), received_at=self._clock())
        return await self._market("exchange rates").currency_rate(args.base, args.quote)

    async def _orders_history(self, args: OrdersHistoryInput) -> OrdersHistory:
        if args.since is not None and args.until is not None and args.since > args.until:
            raise GatewayError(ErrorCode.INPUT_INVALID_TIME_RANGE, "since must not be after until.")
        orders = await self._market("order history").order_history(args.account_id, _STATUS_FILTERS[args.status])
        kept = [order for order in orders if _keeps(order, args)]
        kept.sort(key=lambda order: order.updated_at.timestamp() if order.updated_at else 0.0, reverse=True)
        return OrdersHistory(
            account_id=args.account_id,
            orders=kept[: args.limit],
            truncated=len(kept) > args.limit,
            note=HISTORY_NOTE,
        )

    async def _transactions(self, args: TransactionsInput) -> TransactionHistory:
        return await self._market("transaction history").transactions(
            args.account_id, args.contract_id, args.currency, args.days
        )

    async def _transfer_history(self, args: AccountInput) -> TransferHistory:
        raise GatewayError(
            ErrorCode.BACKEND_UNSUPPORTED,
            "The Client Portal Web API offers no history of cash deposits, withdrawals or transfers. "
            "Transfers of a position appear among its Portfolio Analyst transactions (`ibkr_transactions_list`).",
        )

    async def _market_depth(self, args: DepthInput) -> MarketDepth:
        depth = await self._market("market depth").market_depth(args.account_id, args.contract_id, args.exchange)
        return depth.model_copy(update={"bids": depth.bids[: args.levels], "asks": depth.asks[: args.levels]})

    async def _fundamentals(self, args: ContractInput) -> Fundamentals:
        return await self._market("fundamentals").fundamentals(args.contract_id)

    async def _news_list(self, args: NewsListInput) -> NewsList:
        raise GatewayError(
            ErrorCode.BACKEND_UNSUPPORTED,
            f"The Client Portal Web API offers no news headlines (asked for {args.symbol}); "
            "news needs the TWS API or a news provider outside this gateway.",
        )

    async def _news_article(self, args: NewsArticleInput) -> NewsArticle:
        raise GatewayError(
            ErrorCode.BACKEND_UNSUPPORTED,
            "The Client Portal Web API offers no news articles; news needs the TWS API or a news provider "
            "outside this gateway.",
        )


def _keeps(order: OrderRecord, args: OrdersHistoryInput) -> bool:
    if args.status != "all" and order.status not in _STATUS_KEPT[args.status]:
        return False
    if args.since is not None and (order.updated_at is None or order.updated_at < args.since):
        return False
    return not (args.until is not None and order.updated_at is not None and order.updated_at > args.until)


def holidays_from(schedule: MarketSchedule) -> MarketHolidays:
    """Closed weekdays and early closes of a published schedule; nothing beyond what it covers."""
    days = sorted(schedule.days, key=lambda day: day.date)
    closes = [
        max(s.closes_at.time() for s in day.sessions if s.kind == "regular")
        for day in days
        if day.open and any(s.kind == "regular" for s in day.sessions)
    ]
    usual = max(set(closes), key=closes.count) if closes else None
    early = [
        day.date
        for day in days
        if usual is not None
        and day.open
        and any(s.kind == "regular" for s in day.sessions)
        and max(s.closes_at.time() for s in day.sessions if s.kind == "regular") < usual
    ]
    return MarketHolidays(
        symbol=schedule.symbol,
        exchange=schedule.exchange,
        covered_from=days[0].date if days else None,
        covered_to=days[-1].date if days else None,
        holidays=[day.date for day in days if not day.open and day.date.weekday() < 5],
        early_closes=early,
    )
