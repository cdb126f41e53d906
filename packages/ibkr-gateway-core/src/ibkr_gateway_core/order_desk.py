"""The order desk: previews, approvals, paper and live writes, kill switch, limits, reconciliation.

The Gateway hands every order operation to one desk, opened on the first order call (never by
read-only commands). The desk gathers state, asks the pure gates in `gates.py` in their documented
order, and raises the first refusal as a `GatewayError`; the Gateway audits it. Writes are keyed:
a durable write-ahead record is reserved (with the approval consumed and the kill switch read, in
one `BEGIN IMMEDIATE` transaction) before any writer call, so a retry never sends twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

import anyio

from .audit import AuditEvent, AuditLog
from .backend import Backend
from .call_context import CURRENT_CALL, CallContext, Switch
from .config import GatewayConfig
from .errors import ErrorCode, GatewayError
from .gates import (
    ApprovalState,
    Decision,
    LiveSwitches,
    check_approval,
    check_approval_ttl,
    check_kill_switch,
    check_live_switches,
    check_paper_account,
    check_paper_enabled,
    check_preview_enabled,
    check_preview_fresh,
    check_risk,
    check_self_approval,
    check_ticket_shape,
    needs_quote,
    order_notional,
    reference_price,
)
from .models import BrokerAccount, ContractCandidate, MarketSnapshot, Money, OrderRecord, OrderStatus
from .order_models import ApprovalRecord, KillSwitchState, LimitsStatus, OrderLifecycle, OrderPreview, ReconcileReport
from .order_requests import (
    ApprovalCreateInput,
    ApprovalListInput,
    ApprovalRevokeInput,
    KillSwitchChangeInput,
    OrderCancelInput,
    OrderPreviewInput,
    OrderSubmitInput,
)
from .order_store import IdempotencyRecord, LiveOrder, NewRecord, OrderStore
from .orders import OrderTicket, OrderWriter, PlacedOrder
from .requests import AccountInput, ContractQueryInput, NoInput
from .risk import DEFAULT_PREVIEW_POLICY, FAKE_LIVE_POLICY, LiveUsage, RiskPolicy
from .writers import LocalCandidateWriter, RefusingWriter, WarningPolicy, client_order_id

logger = logging.getLogger(__name__)

TERMINAL_STATUSES: Final = frozenset({"filled", "cancelled", "inactive"})
"""Order statuses after which nothing more happens; such orders leave the live backlog."""

_BROKER_TEXT_LIMIT: Final = 500


def _broker_status(text: str | None, *, accepted: bool) -> OrderStatus:
    word = (text or "").replace(" ", "").replace("_", "").lower()
    if word in ("cancelled", "canceled", "apicancelled"):
        return "cancelled"
    if word == "pendingcancel":
        return "pending_cancel"
    if word == "filled":
        return "filled"
    if word in ("inactive", "rejected"):
        return "inactive"
    return "pending_cancel" if accepted else "unknown"


def _raise(decision: Decision) -> None:
    if not decision.allowed:
        assert decision.code is not None
        raise GatewayError(decision.code, decision.message, details=dict(decision.details))


def _request_hash(flow: str, request: dict[str, object]) -> str:
    text = json.dumps({"flow": flow, **request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class OrderDesk:
    """Every order operation of one Gateway, over the order store in the state database."""

    def __init__(
        self,
        config: GatewayConfig,
        store: OrderStore,
        audit: AuditLog,
        *,
        backend: Callable[[], Backend],
        accounts: Callable[[], Awaitable[list[BrokerAccount]]],
        resolve: Callable[[ContractQueryInput], Awaitable[ContractCandidate]],
        clock: Callable[[], datetime],
        session_id: str,
    ) -> None:
        self.config = config
        self.store = store
        self._audit = audit
        self._backend = backend
        self._accounts = accounts
        self._resolve = resolve
        self._clock = clock
        self._session_id = session_id
        self._started = False
        self._start_lock = anyio.Lock()

    def close(self) -> None:
        """Close the store's connection."""
        self.store.close()

    # ------------------------------------------------------------------ helpers

    def _ctx(self) -> CallContext:
        ctx = CURRENT_CALL.get()
        if ctx is None:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, "Order operations run only inside Gateway.call.")
        return ctx

    def _is_operator(self, ctx: CallContext) -> bool:
        return ctx.principal.kind == "local_operator"

    async def _run(self, fn: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(fn)

    async def _started_once(self) -> None:
        """Recover unsettled keyed writes once per desk, before its first order operation."""
        if self._started:
            return
        async with self._start_lock:
            if not self._started:
                self._started = True
                try:
                    await self._recover()
                except GatewayError:  # recovery retries on the next call of the same key
                    logger.warning("order recovery could not finish", exc_info=True)

    async def _account(self, account_id: str) -> BrokerAccount | None:
        return next((a for a in await self._accounts() if a.account_id == account_id), None)

    async def _quote(self, contract_id: int) -> MarketSnapshot | None:
        try:
            return await self._backend().market_snapshot(contract_id)
        except GatewayError as exc:
            if exc.family in ("upstream", "input"):
                return None
            raise

    def _writer(self, name: str) -> OrderWriter:
        if name == "local-candidate":
            return LocalCandidateWriter()
        if name == "refusing":
            return RefusingWriter()
        return self._backend().order_writer()

    async def _audit_system(self, event_type: str, metadata: dict[str, Any], account_id: str | None) -> None:
        ctx = CURRENT_CALL.get()
        principal = ctx.principal if ctx is not None else None
        await self._audit.append(
            AuditEvent(
                event_type=event_type,
                timestamp=self._clock(),
                principal_kind=principal.kind if principal is not None else "system",
                principal_subject=principal.subject if principal is not None else "order-desk",
                operation="order_desk",
                tool_name=event_type,
                decision="allow",
                result_status="completed",
                account_id_hash=self._audit.account_hash(account_id) if account_id else None,
                request_id=ctx.request_id if ctx is not None else None,
                session_id=self._session_id,
                metadata=metadata,
            )
        )

    # ------------------------------------------------------------------ preview

    async def preview(self, args: OrderPreviewInput) -> OrderPreview:
        """Resolve, check, what-if and persist one order; nothing is placed."""
        ctx = self._ctx()
        enabled = ctx.has(Switch.ENABLE_PREVIEW) if self._is_operator(ctx) else self.config.orders.preview_enabled
        _raise(check_preview_enabled(enabled))
        _raise(
            check_ticket_shape(
                quantity=args.quantity,
                order_type=args.order_type,
                limit_price=args.limit_price,
                stop_price=args.stop_price,
                trailing_amount=args.trailing_amount,
                trailing_percent=args.trailing_percent,
            )
        )
        await self._started_once()
        contract = await self._contract(args)
        if contract.currency is not None and contract.currency != args.currency:
            raise GatewayError(
                ErrorCode.ORDER_VALIDATION_FAILED,
                f"Contract {contract.contract_id} trades in {contract.currency}, not {args.currency}.",
            )
        ticket = OrderTicket(
            account_id=args.account_id,
            contract_id=contract.contract_id,
            symbol=contract.symbol,
            asset_class=contract.asset_class,
            exchange=args.exchange or "SMART",
            currency=args.currency,
            side=args.side,
            quantity=args.quantity,
            order_type=args.order_type,
            limit_price=args.limit_price,
            stop_price=args.stop_price,
            trailing_amount=args.trailing_amount,
            trailing_percent=args.trailing_percent,
            time_in_force=args.time_in_force,
            outside_regular_hours=args.outside_regular_hours,
        )
        policy = self.config.risk_policy(self.config.orders.preview_policy_id) or DEFAULT_PREVIEW_POLICY
        quote = await self._quote(ticket.contract_id) if needs_quote(ticket, policy) else None
        _raise(check_risk(ticket, policy, stage="preview", quote=quote))
        what_if = await self._backend().what_if(ticket)
        if what_if.error:
            raise GatewayError(
                ErrorCode.ORDER_BROKER_WOULD_REJECT,
                "The broker's what-if rejects this order (untrusted broker text): "
                + what_if.error[:_BROKER_TEXT_LIMIT],
                details={"broker_text": what_if.error[:_BROKER_TEXT_LIMIT]},
            )
        now = self._clock()
        notional = order_notional(ticket, quote)
        preview = OrderPreview(
            preview_id=f"pv-{uuid.uuid4().hex}",
            account_id=args.account_id,
            ticket=ticket,
            fingerprint=ticket.fingerprint(),
            risk_policy_id=policy.policy_id,
            reference_price=reference_price(quote),
            estimated_cost=Money(amount=notional, currency=ticket.currency) if notional is not None else what_if.amount,
            estimated_commission=what_if.commission,
            estimated_total=what_if.total,
            initial_margin_change=what_if.initial_margin_change,
            maintenance_margin_change=what_if.maintenance_margin_change,
            equity_with_loan_after=what_if.equity_with_loan_after,
            warnings=[text[:_BROKER_TEXT_LIMIT] for text in what_if.warnings],
            created_by=ctx.principal.subject,
            created_at=now,
            expires_at=now + timedelta(seconds=self.config.orders.preview_ttl_seconds),
            audit_event_id=ctx.audit_event_id,
        )
        await self._run(lambda: self.store.save_preview(preview, ctx.principal.kind))
        return preview

    async def _contract(self, args: OrderPreviewInput) -> ContractCandidate:
        if args.contract_id is not None:
            return await self._backend().contract(args.contract_id)
        assert args.symbol is not None
        return await self._resolve(ContractQueryInput(query=args.symbol, currency=args.currency))

    # ---------------------------------------------------------------- approvals

    async def create_approval(self, args: ApprovalCreateInput) -> ApprovalRecord:
        """Approve one unexpired preview for its account, once."""
        ctx = self._ctx()
        found = await self._run(lambda: self.store.preview(args.preview_id))
        if found is None:
            raise GatewayError(ErrorCode.PREVIEW_NOT_FOUND, f"No preview {args.preview_id!r}.")
        preview, creator_kind = found
        if preview.account_id != args.account_id:
            raise GatewayError(
                ErrorCode.APPROVAL_ACCOUNT_MISMATCH,
                f"Preview {preview.preview_id} is for another account, not {args.account_id!r}.",
            )
        now = self._clock()
        _raise(check_preview_fresh(preview.preview_id, preview.expires_at, now))
        bounds = self.config.approvals
        ttl = args.ttl_seconds if args.ttl_seconds is not None else bounds.default_ttl_seconds
        _raise(check_approval_ttl(ttl, bounds.min_ttl_seconds, bounds.max_ttl_seconds))
        _raise(
            check_self_approval(
                approver_kind=ctx.principal.kind,
                approver_subject=ctx.principal.subject,
                creator_kind=creator_kind,
                creator_subject=preview.created_by,
                forbidden=bounds.forbid_self_approval,
            )
        )
        approval = ApprovalRecord(
            approval_id=f"ap-{uuid.uuid4().hex}",
            preview_id=preview.preview_id,
            account_id=preview.account_id,
            fingerprint=preview.fingerprint,
            status="approved",
            approved_by=ctx.principal.subject,
            approved_by_kind=ctx.principal.kind,
            approved_at=now,
            expires_at=now + timedelta(seconds=ttl),
            audit_event_id=ctx.audit_event_id,
        )
        await self._run(lambda: self.store.save_approval(approval))
        return approval

    async def list_approvals(self, args: ApprovalListInput) -> list[ApprovalRecord]:
        """Approvals, newest first; unused ones past their expiry show as `expired`."""
        now = self._clock()
        records: list[ApprovalRecord] = await self._run(lambda: self.store.approvals(args.account_id, args.limit))
        return [
            r.model_copy(update={"status": "expired"}) if r.status == "approved" and now >= r.expires_at else r
            for r in records
        ]

    async def revoke_approval(self, args: ApprovalRevokeInput) -> ApprovalRecord:
        """Revoke an unused approval."""
        revoked: ApprovalRecord | None = await self._run(
            lambda: self.store.revoke_approval(args.approval_id, args.reason, self._clock())
        )
        if revoked is None:
            raise GatewayError(ErrorCode.APPROVAL_NOT_FOUND, f"No approval {args.approval_id!r}.")
        if revoked.status == "consumed":
            raise GatewayError(ErrorCode.APPROVAL_CONSUMED, f"Approval {args.approval_id} was already used.")
        return revoked

    async def _approved_preview(self, approval_id: str, account_id: str, scope_key: str) -> OrderPreview | None:
        """The preview an approval allows, after every approval and preview gate; None when `scope_key` raced."""
        approval, stored = await self._run(lambda: self.store.approval_with_preview(approval_id))
        found = (stored, "") if stored is not None else None
        now = self._clock()
        state = None
        if approval is not None:
            state = ApprovalState(
                approval_id=approval.approval_id,
                status=approval.status,
                account_id=approval.account_id,
                expires_at=approval.expires_at,
                fingerprint=approval.fingerprint,
                preview_fingerprint=found[0].ticket.fingerprint() if found is not None else "",
            )
        decision = check_approval(state, account_id, now)
        if decision.code == ErrorCode.APPROVAL_CONSUMED and await self._run(lambda: self.store.record(scope_key)):
            return None  # a concurrent call with the same key consumed it: settle as a duplicate
        _raise(decision)
        if found is None:
            raise GatewayError(ErrorCode.PREVIEW_NOT_FOUND, "The approval's preview is gone.")
        preview = found[0]
        _raise(check_preview_fresh(preview.preview_id, preview.expires_at, now))
        return preview

    # -------------------------------------------------------------------- paper

    def _scope_key(self, ctx: CallContext, flow: str, key: str) -> str:
        return f"{flow}:{ctx.principal.kind}:{ctx.principal.subject}:{key}"

    async def _paper_gates(self, ctx: CallContext, account_id: str) -> None:
        enabled = ctx.has(Switch.ENABLE_PAPER) if self._is_operator(ctx) else self.config.orders.paper_enabled
        _raise(check_paper_enabled(enabled))
        account = await self._account(account_id)
        _raise(check_paper_account(account_id, account.account_mode if account is not None else None))

    async def paper_submit(self, args: OrderSubmitInput) -> OrderLifecycle:
        """Send the approved preview's order to a paper account through the broker's writer."""
        ctx = self._ctx()
        await self._paper_gates(ctx, args.account_id)
        await self._started_once()
        return await self._submit(ctx, args, mode="paper", writer_name="client-portal", policy=None)

    async def paper_cancel(self, args: OrderCancelInput) -> OrderLifecycle:
        """Cancel an order of a paper account."""
        ctx = self._ctx()
        await self._paper_gates(ctx, args.account_id)
        await self._started_once()
        return await self._cancel(ctx, args, mode="paper", writer_name="client-portal")

    # --------------------------------------------------------------------- live

    def _live_policy(self) -> RiskPolicy | None:
        policy_id = self.config.live_trading.risk_policy_id
        if policy_id is not None:
            return self.config.risk_policy(policy_id)
        return FAKE_LIVE_POLICY if self.config.is_fake else None

    def _live_writer_name(self, ctx: CallContext) -> str:
        chosen = ctx.live_broker() if self._is_operator(ctx) else None
        name = chosen or self.config.live_trading.writer
        if name not in ("local-candidate", "client-portal", "refusing"):
            raise GatewayError(
                ErrorCode.INPUT_INVALID_ARGUMENT,
                f"--live-broker {name!r} is not local-candidate, client-portal or refusing.",
            )
        return name

    async def _live_gates(self, ctx: CallContext, account_id: str) -> RiskPolicy:
        live = self.config.live_trading
        configured = self.config.safety.live_trading_enabled and live.enabled
        fake = self.config.is_fake
        if self._is_operator(ctx):
            enabled = ctx.has(Switch.ENABLE_LIVE) and (fake or configured)
            scope = ctx.has(Switch.LIVE_SCOPE)
            acknowledged = ctx.has(Switch.ACKNOWLEDGE_PAPER_TO_LIVE) and (
                fake or live.paper_to_live_checklist_acknowledged
            )
        else:
            enabled, scope, acknowledged = configured, True, live.paper_to_live_checklist_acknowledged
        allowlisted = account_id in live.allowed_accounts if live.allowed_accounts else fake
        policy = self._live_policy()
        switches = LiveSwitches(
            enabled=enabled,
            scope_confirmed=scope,
            account_allowlisted=allowlisted,
            checklist_acknowledged=acknowledged,
            policy_known=policy is not None,
        )
        _raise(check_live_switches(account_id, switches, policy_id=live.risk_policy_id))
        assert policy is not None
        return policy

    async def live_submit(self, args: OrderSubmitInput) -> OrderLifecycle:
        """Send the approved preview's order through the live gate stack and the chosen live writer."""
        ctx = self._ctx()
        policy = await self._live_gates(ctx, args.account_id)
        writer_name = self._live_writer_name(ctx)
        await self._started_once()
        return await self._submit(ctx, args, mode="live", writer_name=writer_name, policy=policy)

    async def live_cancel(self, args: OrderCancelInput) -> OrderLifecycle:
        """Cancel a live order; the kill switch never blocks a cancel."""
        ctx = self._ctx()
        await self._live_gates(ctx, args.account_id)
        tracked = next(
            (o for o in await self._run(self.store.live_orders) if o.broker_order_id == args.broker_order_id), None
        )
        writer_name = tracked.writer if tracked is not None else self._live_writer_name(ctx)
        await self._started_once()
        return await self._cancel(ctx, args, mode="live", writer_name=writer_name)

    async def _live_usage(self, account_id: str, policy: RiskPolicy) -> LiveUsage:
        now = self._clock()
        window_start = now - timedelta(seconds=policy.window_seconds)
        day_start = self._day_start(now)
        window, today, notional = await self._run(lambda: self.store.live_usage(account_id, window_start, day_start))
        return LiveUsage(orders_in_window=window, orders_today=today, notional_today=notional)

    def _day_start(self, now: datetime) -> datetime:
        zone = ZoneInfo(self.config.live_trading.trading_day_timezone)
        local = now.astimezone(zone)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)

    async def _kill_switch_gate(self, ctx: CallContext) -> None:
        """Operator: `--open-kill-switch` and the persisted switch open (fake mode: the flag opens it)."""
        if self._is_operator(ctx):
            _raise(check_kill_switch(ctx.has(Switch.OPEN_KILL_SWITCH)))
            state: KillSwitchState = await self._run(self.store.kill_switch)
            if state.state == "closed" and self.config.is_fake:
                await self._set_kill_switch(ctx, "open", "opened by --open-kill-switch (simulator)")
                return
            _raise(check_kill_switch(state.state == "open"))

    # ------------------------------------------------------------- keyed writes

    async def _submit(
        self, ctx: CallContext, args: OrderSubmitInput, *, mode: str, writer_name: str, policy: RiskPolicy | None
    ) -> OrderLifecycle:
        flow = f"{mode}_submit"
        scope_key = self._scope_key(ctx, flow, args.idempotency_key)
        request_hash = _request_hash(flow, {"account_id": args.account_id, "approval_id": args.approval_id})
        existing = await self._run(lambda: self.store.record(scope_key))
        if existing is not None:
            return await self._settle(existing, request_hash)
        preview = await self._approved_preview(args.approval_id, args.account_id, scope_key)
        if preview is None:
            return await self._settle_latest(scope_key, request_hash)
        ticket = preview.ticket
        notional = preview.estimated_cost.amount if preview.estimated_cost is not None else None
        if policy is not None:
            quote = await self._quote(ticket.contract_id)
            usage = await self._live_usage(args.account_id, policy)
            _raise(check_risk(ticket, policy, stage="live", quote=quote, usage=usage))
            notional = order_notional(ticket, quote)
            await self._kill_switch_gate(ctx)
        coid = client_order_id(scope_key)
        new = NewRecord(
            scope_key=scope_key,
            flow=flow,
            account_id=args.account_id,
            request_hash=request_hash,
            client_order_id=coid,
            writer=writer_name,
            approval_id=args.approval_id,
            context={
                "ticket": ticket.model_dump(mode="json"),
                "preview_id": preview.preview_id,
                "audit_event_id": ctx.audit_event_id,
                "notional": str(notional) if notional is not None else None,
            },
            notional=notional,
        )
        outcome, record = await self._run(
            lambda: self.store.reserve(new, self._clock(), kill_switch_required=mode == "live")
        )
        if outcome == "kill_switch_closed":
            _raise(check_kill_switch(False))
        if outcome == "approval_unavailable":
            await self._approved_preview(args.approval_id, args.account_id, scope_key)
            return await self._settle_latest(scope_key, request_hash)
        assert record is not None
        if outcome == "existing":
            return await self._settle(record, request_hash)
        return await self._place(record)

    async def _place(self, record: IdempotencyRecord) -> OrderLifecycle:
        """Call the writer for a reserved record and settle the record from its answer."""
        ticket = OrderTicket.model_validate(record.context["ticket"])
        assert record.client_order_id is not None
        warnings = WarningPolicy(self.config.orders.warning_policy)
        try:
            placed = await self._writer(record.writer).place(
                ticket,
                client_order_id=record.client_order_id,
                confirm=warnings,
                max_rounds=self.config.orders.max_confirmation_rounds,
            )
        except GatewayError as exc:
            await self._writer_failed(record, exc)
            raise
        except Exception as exc:
            unknown = GatewayError(
                ErrorCode.BROKER_OUTCOME_UNKNOWN, f"The writer failed unexpectedly ({type(exc).__name__})."
            )
            await self._writer_failed(record, unknown)
            raise unknown from exc
        return await self._complete_submit(record, placed)

    async def _writer_failed(self, record: IdempotencyRecord, exc: GatewayError) -> None:
        error = {"code": str(exc.code), "message": exc.message, "details": _json_safe(exc.details)}
        if exc.code == ErrorCode.BROKER_OUTCOME_UNKNOWN:
            await self._run(lambda: self.store.mark_unknown(record.scope_key, error, self._clock()))
        else:
            await self._run(lambda: self.store.fail(record.scope_key, error, self._clock(), release_approval=True))

    async def _complete_submit(self, record: IdempotencyRecord, placed: PlacedOrder) -> OrderLifecycle:
        mode = "live" if record.flow == "live_submit" else "paper"
        ticket = OrderTicket.model_validate(record.context["ticket"])
        raw_notional = record.context.get("notional")
        lifecycle = OrderLifecycle(
            mode=mode,
            action="submit",
            account_id=record.account_id,
            broker_order_id=placed.broker_order_id,
            client_order_id=placed.client_order_id or record.client_order_id,
            status=placed.status,
            broker_status=placed.broker_status,
            writer=record.writer,
            approval_id=record.approval_id,
            preview_id=record.context.get("preview_id"),
            notional=Money(amount=Decimal(raw_notional), currency=ticket.currency) if raw_notional else None,
            confirmed_message_ids=placed.confirmed_message_ids,
            updated_at=self._clock(),
            audit_event_id=str(record.context.get("audit_event_id", "")),
        )
        track = None
        if mode == "live" and record.writer == "client-portal" and lifecycle.status not in TERMINAL_STATUSES:
            track = LiveOrder(
                record.account_id, placed.broker_order_id, record.writer, record.client_order_id, lifecycle.status
            )
        result = lifecycle.model_dump(mode="json")
        await self._run(lambda: self.store.complete(record.scope_key, result, self._clock(), track=track))
        return lifecycle

    async def _settle_latest(self, scope_key: str, request_hash: str) -> OrderLifecycle:
        record = await self._run(lambda: self.store.record(scope_key))
        if record is None:
            raise GatewayError(ErrorCode.APPROVAL_CONSUMED, "The approval was used by another call meanwhile.")
        return await self._settle(record, request_hash)

    async def _settle(self, record: IdempotencyRecord, request_hash: str) -> OrderLifecycle:
        """A key seen before: replay, conflict, in progress, or settle an unknown outcome by cOID."""
        if record.request_hash != request_hash:
            raise GatewayError(
                ErrorCode.IDEMPOTENCY_CONFLICT,
                "This idempotency key was used for a different request.",
            )
        if record.status == "completed":
            assert record.result is not None
            return OrderLifecycle.model_validate(record.result).model_copy(update={"replayed": True})
        if record.status == "failed":
            error = record.error or {}
            code = ErrorCode(str(error.get("code", ErrorCode.INTERNAL_ERROR)))
            raise GatewayError(code, f"(stored result of this idempotency key) {error.get('message', '')}")
        age = (self._clock() - record.updated_at).total_seconds()
        if record.status == "pending" and age < self.config.orders.recovery_min_age_seconds:
            raise GatewayError(
                ErrorCode.IDEMPOTENCY_IN_PROGRESS, "The first call with this idempotency key is still running."
            )
        return await self._resolve_unknown(record)

    async def _resolve_unknown(self, record: IdempotencyRecord) -> OrderLifecycle:
        """Look the order up by cOID before anything else; send again (same cOID) only after the grace period."""
        if record.flow.endswith("_cancel"):
            return await self._cancel_record(record, request_hash=record.request_hash)
        assert record.client_order_id is not None
        found = await self._writer(record.writer).find_by_client_order_id(record.account_id, record.client_order_id)
        if found is not None:
            return await self._complete_submit(record, _placed_from(found, record.client_order_id))
        age = (self._clock() - record.updated_at).total_seconds()
        if record.writer != "local-candidate" and age < self.config.orders.unknown_resend_after_seconds:
            raise GatewayError(
                ErrorCode.BROKER_OUTCOME_UNKNOWN,
                f"The broker does not show order {record.client_order_id} yet; it is sent again, with the same "
                f"client order id, only {self.config.orders.unknown_resend_after_seconds:g} s after the last attempt.",
                retryable=True,
            )
        await self._run(lambda: self.store.touch(record.scope_key, self._clock()))
        return await self._place(record)

    async def _recover(self) -> tuple[int, int]:
        """Settle pending and unknown records left by a crash or a lost answer; never a blind resend."""
        recovered = unresolved = 0
        now = self._clock()
        for record in await self._run(self.store.unsettled):
            if (now - record.updated_at).total_seconds() < self.config.orders.recovery_min_age_seconds:
                continue  # another call may still own it
            if record.flow.endswith("_cancel") or record.client_order_id is None:
                unresolved += 1
                continue
            try:
                found = await self._writer(record.writer).find_by_client_order_id(
                    record.account_id, record.client_order_id
                )
            except GatewayError:
                unresolved += 1
                continue
            if found is not None:
                await self._complete_submit(record, _placed_from(found, record.client_order_id))
                await self._audit_system(
                    "order_recovered",
                    {"client_order_id": record.client_order_id, "broker_order_id": found.broker_order_id},
                    record.account_id,
                )
                recovered += 1
            else:
                if record.status == "pending":
                    error = {"code": "BROKER_OUTCOME_UNKNOWN", "message": "Left pending by a stopped process."}
                    await self._run(functools.partial(self.store.mark_unknown, record.scope_key, error, self._clock()))
                unresolved += 1
        return recovered, unresolved

    async def _cancel(self, ctx: CallContext, args: OrderCancelInput, *, mode: str, writer_name: str) -> OrderLifecycle:
        flow = f"{mode}_cancel"
        scope_key = self._scope_key(ctx, flow, args.idempotency_key)
        request_hash = _request_hash(flow, {"account_id": args.account_id, "broker_order_id": args.broker_order_id})
        existing = await self._run(lambda: self.store.record(scope_key))
        if existing is not None:
            return await self._settle(existing, request_hash)
        new = NewRecord(
            scope_key=scope_key,
            flow=flow,
            account_id=args.account_id,
            request_hash=request_hash,
            client_order_id=None,
            writer=writer_name,
            approval_id=None,
            context={"broker_order_id": args.broker_order_id, "audit_event_id": ctx.audit_event_id},
        )
        # a cancel needs no write-ahead record: sending it twice is harmless, so only its result is kept
        return await self._cancel_record(new, request_hash=request_hash)

    async def _cancel_record(self, record: IdempotencyRecord | NewRecord, *, request_hash: str) -> OrderLifecycle:
        broker_order_id = str(record.context["broker_order_id"])
        ack = await self._writer(record.writer).cancel(record.account_id, broker_order_id)
        status = _broker_status(ack.broker_status, accepted=ack.accepted)
        if not ack.accepted and status not in TERMINAL_STATUSES:
            raise GatewayError(
                ErrorCode.BROKER_RESPONSE_INVALID,
                f"The broker did not accept the cancel of {broker_order_id} (untrusted broker text): "
                f"{(ack.message or '')[:_BROKER_TEXT_LIMIT]}",
            )
        lifecycle = OrderLifecycle(
            mode="live" if record.flow == "live_cancel" else "paper",
            action="cancel",
            account_id=record.account_id,
            broker_order_id=broker_order_id,
            status=status,
            broker_status=ack.broker_status,
            writer=record.writer,
            updated_at=self._clock(),
            audit_event_id=str(record.context.get("audit_event_id", "")),
        )
        result = lifecycle.model_dump(mode="json")
        if isinstance(record, NewRecord):
            new = record
            earlier = await self._run(lambda: self.store.record_completed(new, result, self._clock()))
            if earlier is not None:  # a concurrent cancel with the same key finished first
                return await self._settle(earlier, request_hash)
        else:
            done_key = record.scope_key
            await self._run(lambda: self.store.complete(done_key, result, self._clock(), track=None))
        if record.flow == "live_cancel" and status in TERMINAL_STATUSES:
            done = LiveOrder(record.account_id, broker_order_id, record.writer, None, status)
            await self._run(lambda: self.store.update_live_orders([(done, True)], self._clock()))
        return lifecycle

    # -------------------------------------------------------------- kill switch

    async def kill_switch_status(self, _: NoInput) -> KillSwitchState:
        """The persisted kill switch."""
        return await self._run(self.store.kill_switch)

    async def kill_switch_open(self, args: KillSwitchChangeInput) -> KillSwitchState:
        """Open the kill switch: the operator only."""
        ctx = self._ctx()
        if not self._is_operator(ctx):
            raise GatewayError(
                ErrorCode.KILL_SWITCH_OPERATOR_ONLY, "Only the operator at the CLI may open the kill switch."
            )
        return await self._set_kill_switch(ctx, "open", args.reason, audit=False)

    async def kill_switch_close(self, args: KillSwitchChangeInput) -> KillSwitchState:
        """Close the kill switch and, when configured, cancel the working live orders the gateway tracks."""
        ctx = self._ctx()
        state = await self._set_kill_switch(ctx, "closed", args.reason, audit=False)
        cancelled: list[str] = []
        if self.config.live_trading.cancel_working_orders_on_close:
            for order in await self._run(self.store.live_orders):
                try:
                    ack = await self._writer(order.writer).cancel(order.account_id, order.broker_order_id)
                except GatewayError:
                    logger.warning("kill switch close: the cancel of a tracked live order failed")
                    continue
                if ack.accepted:
                    cancelled.append(order.broker_order_id)
        return state.model_copy(update={"cancelled_orders": cancelled})

    async def _set_kill_switch(
        self, ctx: CallContext, position: str, reason: str, *, audit: bool = True
    ) -> KillSwitchState:
        state = KillSwitchState(
            state="open" if position == "open" else "closed",
            changed_by=ctx.principal.subject,
            changed_at=self._clock(),
            reason=reason,
            audit_event_id=ctx.audit_event_id,
        )
        previous: KillSwitchState = await self._run(lambda: self.store.set_kill_switch(state))
        if audit:  # a side effect of another call gets its own event; open/close calls are their own event
            await self._audit_system(
                "kill_switch_changed", {"from": previous.state, "to": state.state, "reason": reason}, None
            )
        return state

    # ------------------------------------------------------------------- limits

    async def limits_status(self, args: AccountInput) -> LimitsStatus:
        """Used and remaining budgets of the live policy for one account."""
        policy = self._live_policy()
        if policy is None:
            raise GatewayError(
                ErrorCode.LIVE_POLICY_UNKNOWN,
                f"The live risk policy {self.config.live_trading.risk_policy_id or '(none)'!r} is not defined.",
            )
        usage = await self._live_usage(args.account_id, policy)
        switch: KillSwitchState = await self._run(self.store.kill_switch)

        def left(limit: int | None, used: int) -> int | None:
            return max(limit - used, 0) if limit is not None else None

        remaining_notional = (
            max(policy.max_notional_per_day - usage.notional_today, Decimal(0))
            if policy.max_notional_per_day is not None
            else None
        )
        return LimitsStatus(
            account_id=args.account_id,
            policy_id=policy.policy_id,
            currency=policy.currency,
            trading_day=self._clock().astimezone(ZoneInfo(self.config.live_trading.trading_day_timezone)).date(),
            timezone=self.config.live_trading.trading_day_timezone,
            kill_switch=switch.state,
            window_seconds=policy.window_seconds,
            orders_in_window=usage.orders_in_window,
            max_orders_per_window=policy.max_orders_per_window,
            remaining_orders_in_window=left(policy.max_orders_per_window, usage.orders_in_window),
            orders_today=usage.orders_today,
            max_orders_per_day=policy.max_orders_per_day,
            remaining_orders_today=left(policy.max_orders_per_day, usage.orders_today),
            notional_today=usage.notional_today,
            max_notional_per_day=policy.max_notional_per_day,
            remaining_notional_today=remaining_notional,
            max_quantity=policy.max_quantity,
            max_notional=policy.max_notional,
            allowed_symbols=policy.allowed_symbols,
            allowed_asset_classes=list(policy.allowed_asset_classes),
        )

    # ----------------------------------------------------------- reconciliation

    async def reconcile(self, _: NoInput) -> ReconcileReport:
        """Settle unknown writes by cOID, then poll every tracked live order; each change is audited."""
        recovered, unresolved_records = await self._recover()
        scanned = transitions = completed = unresolved = 0
        updates: list[tuple[LiveOrder, bool]] = []
        for order in await self._run(self.store.live_orders):
            scanned += 1
            try:
                current = await self._backend().order_status(order.account_id, order.broker_order_id)
            except GatewayError:
                unresolved += 1
                continue
            terminal = current.status in TERMINAL_STATUSES
            if current.status != order.last_status:
                transitions += 1
                await self._audit_system(
                    "live_order_lifecycle_changed",
                    {
                        "broker_order_id": order.broker_order_id,
                        "previous_status": order.last_status,
                        "current_status": current.status,
                        "filled_quantity": str(current.filled_quantity) if current.filled_quantity else None,
                    },
                    order.account_id,
                )
            completed += terminal
            updates.append(
                (
                    LiveOrder(
                        order.account_id, order.broker_order_id, order.writer, order.client_order_id, current.status
                    ),
                    terminal,
                )
            )
        await self._run(lambda: self.store.update_live_orders(updates, self._clock()))
        return ReconcileReport(
            recovered=recovered,
            unresolved_records=unresolved_records,
            scanned=scanned,
            transitions=transitions,
            completed=completed,
            unresolved=unresolved,
        )


def _placed_from(order: OrderRecord, client_order_id: str) -> PlacedOrder:
    return PlacedOrder(
        broker_order_id=order.broker_order_id,
        client_order_id=order.client_order_id or client_order_id,
        broker_status=order.broker_status,
        status=order.status,
    )


def _json_safe(details: dict[str, object]) -> dict[str, object]:
    return json.loads(json.dumps(details, default=str))


ORDER_HANDLERS: Final[Mapping[str, str]] = {
    "preview_order": "preview",
    "create_approval": "create_approval",
    "list_approvals": "list_approvals",
    "revoke_approval": "revoke_approval",
    "submit_paper_order": "paper_submit",
    "cancel_paper_order": "paper_cancel",
    "submit_live_order": "live_submit",
    "cancel_live_order": "live_cancel",
    "kill_switch_status": "kill_switch_status",
    "open_kill_switch": "kill_switch_open",
    "close_kill_switch": "kill_switch_close",
    "limits_status": "limits_status",
    "reconcile_orders": "reconcile",
}
"""Registry operation name → `OrderDesk` method."""


def order_handlers(desk: Callable[[], OrderDesk]) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """The Gateway's handlers for the order operations, each opening the desk on first use."""

    def bind(method: str) -> Callable[[Any], Awaitable[Any]]:
        async def handler(args: Any) -> Any:
            return await getattr(desk(), method)(args)

        return handler

    return {name: bind(method) for name, method in ORDER_HANDLERS.items()}
