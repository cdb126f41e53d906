"""The read operations behind the Gateway: broker reads and audit reads.

`Gateway.call` checks scope, input and account and audits the call; these handlers only do the work.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from .audit.log import load_checkpoint_key
from .call_context import CURRENT_CALL, Switch
from .errors import ErrorCode, GatewayError
from .models import (
    HealthStatus,
    PortfolioSnapshot,
    SessionCheck,
    SessionRequirements,
)
from .registry import OPERATIONS, AuditTail
from .scopes import Scope

if TYPE_CHECKING:  # annotations only: each operation's models load with the operation (CLI start-up)
    from .audit.checkpoint import Checkpoint
    from .audit.log import AuditExport, AuditExportStream, AuditLog, VerifyReport
    from .backend import Backend
    from .capabilities import Capabilities
    from .config import GatewayConfig
    from .models import (
        AccountSummary,
        BrokerAccount,
        BrokerSessionStatus,
        ContractCandidate,
        Execution,
        HistoricalBars,
        MarketSnapshot,
        OrderRecord,
        Position,
    )
    from .principal import Principal
    from .requests import (
        AccountInput,
        AuditExportInput,
        AuditTailInput,
        AuditVerifyInput,
        BarsInput,
        ContractInput,
        ContractQueryInput,
        ExecutionsInput,
        NoInput,
        OrderLookupInput,
        PositionsInput,
    )

_WRITE_SCOPES: Final = frozenset(
    {
        Scope.ORDERS_PREVIEW,
        Scope.ORDERS_PAPER_SUBMIT,
        Scope.ORDERS_PAPER_CANCEL,
        Scope.ORDERS_PAPER_MODIFY,
        Scope.APPROVALS_CREATE,
        Scope.ORDERS_LIVE_SUBMIT,
        Scope.ORDERS_LIVE_CANCEL,
        Scope.ORDERS_LIVE_MODIFY,
    }
)


@functools.cache
def _package_version() -> str:
    from importlib.metadata import version

    return version("ibkr-gateway-core")


class ReadDesk:
    """Broker and audit reads, and the visible-accounts cache the account check uses."""

    def __init__(
        self,
        config: GatewayConfig,
        audit: AuditLog,
        *,
        backend: Callable[[], Backend],
        default_principal: Principal,
        clock: Callable[[], datetime],
        kill_switch: Callable[[], Awaitable[str]],
    ) -> None:
        self.config = config
        self.audit = audit
        self._backend = backend
        self._default_principal = default_principal
        self._clock = clock
        self._kill_switch = kill_switch
        self._accounts: list[BrokerAccount] | None = None
        self.verify_progress: Callable[[int, int], None] | None = None
        """Called with (rows checked, rows expected) while `audit_verify` runs; the CLI shows it on a terminal."""

    def handlers(self) -> dict[str, Callable[[Any], Awaitable[Any]]]:
        """Operation name → handler, for `Gateway.call`."""
        return {
            "capabilities": self._capabilities,
            "health": self._health,
            "backend_status": self._backend_status,
            "session_requirements": self._session_requirements,
            "list_accounts": self._list_accounts,
            "account_summary": self._account_summary,
            "portfolio_snapshot": self._portfolio_snapshot,
            "list_positions": self._list_positions,
            "search_contracts": self._search_contracts,
            "resolve_contract": self.resolve_contract,
            "market_snapshot": self._market_snapshot,
            "historical_bars": self._historical_bars,
            "list_orders": self._list_orders,
            "order_status": self._order_status,
            "list_executions": self._list_executions,
            "audit_tail": self._audit_tail,
            "audit_export": self._audit_export,
            "audit_verify": self._audit_verify,
            "audit_checkpoint": self._audit_checkpoint,
        }

    async def visible_accounts(self) -> list[BrokerAccount]:
        """The accounts of the broker session, fetched once and refreshed by `list_accounts`."""
        if self._accounts is None:
            self._accounts = await self._backend().list_accounts()
        return self._accounts

    async def _capabilities(self, args: NoInput) -> Capabilities:
        from .capabilities import build_capabilities

        return build_capabilities(
            principal=_caller(self._default_principal),
            config=self.config,
            health=await self._health(args),
            tool_scopes={op.tool: op.scope for op in OPERATIONS.values()},
            kill_switch=await self._kill_switch(),
        )

    async def _health(self, _: NoInput) -> HealthStatus:
        return HealthStatus(
            version=_package_version(),
            backend=self.config.broker.backend,
            read_only=not (_caller(self._default_principal).scopes & _WRITE_SCOPES),
        )

    async def _backend_status(self, _: NoInput) -> BrokerSessionStatus:
        return await self._backend().session_status()

    async def _session_requirements(self, _: NoInput) -> SessionRequirements:
        status = await self._backend().session_status()
        reachable = status.status != "unavailable"
        server = "IBKR's Web API" if status.backend == "cpapi_oauth" else "The Client Portal Gateway"
        checks = [
            SessionCheck(
                name="gateway_reachable",
                satisfied=reachable,
                detail=f"{server} answers." if reachable else f"{server} does not answer.",
            ),
            SessionCheck(
                name="brokerage_session_authenticated",
                satisfied=status.authenticated,
                detail=_login_detail(status),
            ),
            SessionCheck(
                name="no_competing_session",
                satisfied=not status.competing,
                detail="No other session." if not status.competing else "Another session of this user is active.",
            ),
            SessionCheck(
                name="connected",
                satisfied=status.connected,
                detail="Connected to IBKR." if status.connected else "Not connected to IBKR's servers.",
            ),
        ]
        usable = status.status == "usable"
        return SessionRequirements(
            usable=usable,
            manual_action="none" if usable else (status.user_action or "Log in to the Client Portal Gateway."),
            checks=checks,
        )

    async def _list_accounts(self, _: NoInput) -> list[BrokerAccount]:
        self._accounts = await self._backend().list_accounts()
        return self._accounts

    async def _account_summary(self, args: AccountInput) -> AccountSummary:
        return await self._backend().account_summary(args.account_id)

    async def _portfolio_snapshot(self, args: PositionsInput) -> PortfolioSnapshot:
        summary = await self._backend().account_summary(args.account_id)
        cash = await self._backend().cash_balances(args.account_id)
        positions = await self._backend().positions(args.account_id, fresh=args.fresh)
        return PortfolioSnapshot(
            account_id=args.account_id,
            base_currency=summary.currency,
            summary=summary,
            cash=cash,
            positions=positions,
            as_of=summary.as_of or self._clock(),
        )

    async def _list_positions(self, args: PositionsInput) -> list[Position]:
        return await self._backend().positions(args.account_id, fresh=args.fresh)

    async def _search_contracts(self, args: ContractQueryInput) -> list[ContractCandidate]:
        return await self._candidates(args)

    async def resolve_contract(self, args: ContractQueryInput) -> ContractCandidate:
        """The one contract the query means; `INPUT_AMBIGUOUS_CONTRACT` lists the candidates otherwise."""
        candidates = await self._candidates(args)
        unique = [candidate for candidate in candidates if candidate.is_unique_match]
        if len(unique) == 1:
            return unique[0]
        if not candidates:
            raise GatewayError(ErrorCode.INPUT_UNKNOWN_CONTRACT, f"No contract matches {args.query!r}.")
        listed = "; ".join(
            f"{c.contract_id} {c.symbol} {c.company_name or ''} {c.exchange or ''} {c.currency or ''}".strip()
            for c in candidates[:10]
        )
        raise GatewayError(
            ErrorCode.INPUT_AMBIGUOUS_CONTRACT,
            f"{args.query!r} matches {len(candidates)} contracts: {listed}.",
            details={"candidates": [c.contract_id for c in candidates[:10]]},
        )

    async def _candidates(self, args: ContractQueryInput) -> list[ContractCandidate]:
        """Search, filter, and flag the single exact-symbol match as unique."""
        found = await self._backend().search_contracts(args.query)
        kept = [
            candidate
            for candidate in found
            if (args.asset_class is None or candidate.asset_class == args.asset_class)
            and (args.currency is None or candidate.currency == args.currency)
            and (args.exchange is None or (candidate.exchange or "").upper() == args.exchange.upper())
        ]
        exact = [candidate for candidate in kept if candidate.symbol.upper() == args.query.upper()]
        unique_id = exact[0].contract_id if len(exact) == 1 else None
        return [
            candidate.model_copy(update={"is_unique_match": candidate.contract_id == unique_id}) for candidate in kept
        ]

    async def _market_snapshot(self, args: ContractInput) -> MarketSnapshot:
        return await self._backend().market_snapshot(args.contract_id)

    async def _historical_bars(self, args: BarsInput) -> HistoricalBars:
        bars = await self._backend().historical_bars(
            args.contract_id, period=args.duration, bar=args.bar_size, outside_regular_hours=args.outside_regular_hours
        )
        return bars

    async def _list_orders(self, args: AccountInput) -> list[OrderRecord]:
        return await self._backend().live_orders(args.account_id)

    async def _order_status(self, args: OrderLookupInput) -> OrderRecord:
        wanted = args.broker_order_id
        for order in await self._backend().live_orders(args.account_id):
            if wanted in (order.broker_order_id, order.client_order_id):
                return order
        if wanted.isdigit():
            found = await self._backend().order_status(args.account_id, wanted)
            if found.account_id == args.account_id:
                return found
        raise GatewayError(ErrorCode.INPUT_UNKNOWN_ORDER, f"No order {wanted!r} in account {args.account_id!r}.")

    async def _list_executions(self, args: ExecutionsInput) -> list[Execution]:
        return await self._backend().executions(args.account_id, args.days)

    async def _audit_tail(self, args: AuditTailInput) -> AuditTail:
        return AuditTail(events=await self.audit.tail(args.limit))

    async def _audit_export(self, args: AuditExportInput) -> AuditExport | AuditExportStream:
        call = CURRENT_CALL.get()
        if call is not None and call.has(Switch.STREAM_OUTPUT):
            return await self.audit.export_stream(args.limit)
        return await self.audit.export(args.limit)

    async def _audit_verify(self, args: AuditVerifyInput) -> VerifyReport:
        public_key = load_checkpoint_key(self.config).public_key() if args.checkpoint is not None else None
        report = await self.audit.verify(
            checkpoint=args.checkpoint, checkpoint_key=public_key, progress=self.verify_progress
        )
        report.raise_if_invalid()
        return report

    async def _audit_checkpoint(self, _: NoInput) -> Checkpoint:
        ctx = CURRENT_CALL.get()
        own = ctx.audit_event_id if ctx is not None else None  # the event of this very call comes next
        return await self.audit.checkpoint(load_checkpoint_key(self.config), own_event_id=own)


def _caller(default: Principal) -> Principal:
    """The principal of the call being served (the default outside `call`)."""
    ctx = CURRENT_CALL.get()
    return ctx.principal if ctx is not None else default


def _login_detail(status: BrokerSessionStatus) -> str:
    """The login check in words that tell a closed brokerage session from a missing login."""
    if status.authenticated:
        return "Logged in."
    if status.backend == "cpapi_oauth" and status.status != "unavailable":  # OAuth 1.0a: no gateway, no browser
        if status.error_code == ErrorCode.BROKER_OAUTH_REJECTED:
            return "Not logged in: IBKR refused this OAuth consumer's credentials (broker.oauth)."
        return "Live session token accepted, but the brokerage session is not open."
    if status.status == "unavailable":
        return "Unknown: the Client Portal Gateway does not answer."
    if status.connected:
        return "Logged in, but the brokerage session is not open."
    return "Not logged in: nobody is logged in to the gateway, or the login expired."
