"""Live orders: the live gate stack, live submit and cancel, the live limits, and reconciliation.

A live submit passes the live switches, the approval gates, the live risk policy with its window and
daily budgets, and the kill switch, in that order. Submits through the Client Portal writer enter a
backlog that `reconcile` polls until each order is terminal.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from ..call_context import CallContext, Switch
from ..errors import ErrorCode, GatewayError
from ..requests import AccountInput, NoInput
from ._services import TERMINAL_STATUSES, DeskServices, is_operator, raise_refusal
from .gates import LiveSwitches, check_live_budgets, check_live_switches, check_risk, is_resting, order_notional
from .keyed_writes import KeyedWrites, PreviewCheck, RiskOutcome
from .kill_switch import KillSwitch
from .models import KillSwitchState, LimitsStatus, OrderLifecycle, PreviewKind, ReconcileReport
from .requests import OrderCancelInput, OrderSubmitInput
from .risk import FAKE_LIVE_POLICY, LiveUsage, RiskPolicy
from .store import BudgetCheck, LiveOrder
from .tickets import OrderTicket, PlacedLeg
from .writers import LIVE_CANDIDATE_PREFIX

LIVE_WRITERS = ("local-candidate", "client-portal", "refusing")
"""The writers a live order may go through."""


RECONCILE_BATCH: Final = 16
"""Tracked live orders one reconciliation claim takes at a time."""


class LiveDesk:
    """The live order operations of the order desk."""

    def __init__(self, desk: DeskServices, writes: KeyedWrites, kill_switch: KillSwitch) -> None:
        self._desk = desk
        self._writes = writes
        self._kill_switch = kill_switch

    async def live_submit(
        self, args: OrderSubmitInput, *, kind: PreviewKind = "order", preview_check: PreviewCheck | None = None
    ) -> OrderLifecycle:
        """Send the approved preview's order, bracket or modification through the live gates and the live writer.

        A bracket passes the risk checks leg by leg and counts its worst leg.
        """
        ctx = self._desk.call_context()
        policy = await self._gates(ctx, args.account_id)
        writer_name = self._writer_name(ctx)
        await self._writes.ensure_recovered()

        async def live_check(ticket: OrderTicket) -> RiskOutcome:
            quote = await self._desk.quote(ticket.contract_id)
            raise_refusal(check_risk(ticket, policy, stage="live", quote=quote))
            notional = order_notional(ticket, quote, policy)
            await self._kill_switch.gate(ctx)
            return RiskOutcome(notional, self._budget(policy, notional), is_resting(ticket, quote))

        return await self._writes.submit(
            ctx,
            args,
            mode="live",
            writer_name=writer_name,
            risk_check=live_check,
            kind=kind,
            preview_check=preview_check,
        )

    async def live_cancel(
        self, args: OrderCancelInput, *, legs: Callable[[], Awaitable[list[PlacedLeg]]] | None = None
    ) -> OrderLifecycle:
        """Cancel a live order (with `legs`: every leg of a bracket); the kill switch never blocks a cancel."""
        desk = self._desk
        ctx = desk.call_context()
        await self._gates(ctx, args.account_id)
        group = await legs() if legs is not None else None
        tracked = next(
            (o for o in await desk.run(desk.store.live_orders) if o.broker_order_id == args.broker_order_id), None
        )
        writer_name = tracked.writer if tracked is not None else self._writer_name(ctx)
        if writer_name == "local-candidate":
            await self._check_local_candidate(args)
        await self._writes.ensure_recovered()
        return await self._writes.cancel(ctx, args, mode="live", writer_name=writer_name, legs=group)

    async def limits_status(self, args: AccountInput) -> LimitsStatus:
        """Used and remaining budgets of the live policy for one account."""
        desk = self._desk
        live = desk.config.live_trading
        policy = self._policy()
        if policy is None:
            raise GatewayError(
                ErrorCode.LIVE_POLICY_UNKNOWN,
                f"The live risk policy {live.risk_policy_id or '(none)'!r} is not defined.",
            )
        usage = await self._usage(args.account_id, policy)
        switch: KillSwitchState = await desk.run(desk.store.kill_switch)

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
            trading_day=desk.clock().astimezone(ZoneInfo(live.trading_day_timezone)).date(),
            timezone=live.trading_day_timezone,
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

    async def reconcile(self, _: NoInput) -> ReconcileReport:
        """Settle unknown writes by cOID, then poll every tracked live order; each change is audited.

        The backlog is claimed in batches (`OrderStore.claim_live_orders`): replicas reconciling at once
        each poll their own share, and one pass polls each order once.
        """
        desk = self._desk
        recovered, unresolved_records = await self._writes.recover()
        scanned = transitions = completed = unresolved = 0
        round_start = desk.clock()
        lease_s = desk.config.orders.reconcile_lease_seconds
        seen: set[tuple[str, str]] = set()  # polled in this pass: never twice
        while True:
            claim = functools.partial(
                desk.store.claim_live_orders,
                desk.owner,
                round_start=round_start,
                now=desk.clock(),
                lease_s=lease_s,
                limit=RECONCILE_BATCH,
            )
            claimed: list[LiveOrder] = await desk.run(claim)
            batch = [order for order in claimed if (order.account_id, order.broker_order_id) not in seen]
            skipped = [order for order in claimed if (order.account_id, order.broker_order_id) in seen]
            if not batch:
                if skipped:
                    release = functools.partial(desk.store.finish_claims, desk.owner, [], [], desk.clock())
                    await desk.run(functools.partial(release, skipped=skipped))
                break
            updates: list[tuple[LiveOrder, bool]] = []
            unpolled: list[LiveOrder] = []
            for order in batch:
                seen.add((order.account_id, order.broker_order_id))
                scanned += 1
                try:
                    current = await desk.backend().order_status(order.account_id, order.broker_order_id)
                except GatewayError:
                    unresolved += 1
                    unpolled.append(order)
                    continue
                terminal = current.status in TERMINAL_STATUSES
                filled, price = current.filled_quantity, current.average_fill_price
                if order.client_order_id is not None and filled and price:
                    # real fills count in full
                    await desk.run(
                        functools.partial(desk.store.record_fill_value, order.client_order_id, filled * price)
                    )
                if current.status != order.last_status:
                    transitions += 1
                    await desk.audit_system(
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
            finish = functools.partial(
                desk.store.finish_claims, desk.owner, updates, unpolled, desk.clock(), skipped=skipped
            )
            await desk.run(finish)
        return ReconcileReport(
            recovered=recovered,
            unresolved_records=unresolved_records,
            scanned=scanned,
            transitions=transitions,
            completed=completed,
            unresolved=unresolved,
        )

    # ------------------------------------------------------------------ helpers

    async def _check_local_candidate(self, args: OrderCancelInput) -> None:
        """Refuse to "cancel" through the local-candidate writer anything it did not submit itself."""
        desk = self._desk
        order_id = args.broker_order_id
        coid = order_id.removeprefix(LIVE_CANDIDATE_PREFIX)
        known = coid != order_id and await desk.run(
            lambda: desk.store.has_live_submit(args.account_id, coid, "local-candidate")
        )
        if not known:
            raise GatewayError(
                ErrorCode.INPUT_UNKNOWN_ORDER,
                f"{order_id!r} is not a local candidate of this account. The local-candidate writer sends "
                "nothing to a broker, so it can only withdraw the candidates it submitted "
                "(`local-candidate-<cOID>`); a broker order needs `--live-broker client-portal`.",
            )

    def _policy(self) -> RiskPolicy | None:
        config = self._desk.config
        policy_id = config.live_trading.risk_policy_id
        if policy_id is not None:
            return config.risk_policy(policy_id)
        return FAKE_LIVE_POLICY if config.is_fake else None

    def _writer_name(self, ctx: CallContext) -> str:
        chosen = ctx.live_broker() if is_operator(ctx) else None
        name = chosen or self._desk.config.live_trading.writer
        if name not in LIVE_WRITERS:
            raise GatewayError(
                ErrorCode.INPUT_INVALID_ARGUMENT,
                f"--live-broker {name!r} is not local-candidate, client-portal or refusing.",
            )
        return name

    async def _gates(self, ctx: CallContext, account_id: str) -> RiskPolicy:
        config = self._desk.config
        live = config.live_trading
        configured = config.safety.live_trading_enabled and live.enabled
        fake = config.is_fake
        if is_operator(ctx):
            enabled = ctx.has(Switch.ENABLE_LIVE) and (fake or configured)
            scope = ctx.has(Switch.LIVE_SCOPE)
            acknowledged = ctx.has(Switch.ACKNOWLEDGE_PAPER_TO_LIVE) and (
                fake or live.paper_to_live_checklist_acknowledged
            )
        else:
            enabled, scope, acknowledged = configured, True, live.paper_to_live_checklist_acknowledged
        allowlisted = account_id in live.allowed_accounts if live.allowed_accounts else fake
        policy = self._policy()
        switches = LiveSwitches(
            enabled=enabled,
            scope_confirmed=scope,
            account_allowlisted=allowlisted,
            checklist_acknowledged=acknowledged,
            policy_known=policy is not None,
        )
        raise_refusal(check_live_switches(account_id, switches, policy_id=live.risk_policy_id))
        if policy is None:  # the switches refuse first; never rely on that alone
            raise GatewayError(ErrorCode.LIVE_POLICY_UNKNOWN, "The live risk policy is not defined.")
        return policy

    def _budget(self, policy: RiskPolicy, notional: Decimal | None) -> BudgetCheck:
        """The window and daily budgets, checked by the store inside the transaction that reserves the order."""
        now = self._desk.clock()

        def check(orders_in_window: int, orders_today: int, notional_today: Decimal) -> None:
            usage = LiveUsage(orders_in_window, orders_today, notional_today)
            raise_refusal(check_live_budgets(policy, usage, notional))

        return BudgetCheck(now - timedelta(seconds=policy.window_seconds), self._day_start(now), check)

    async def _usage(self, account_id: str, policy: RiskPolicy) -> LiveUsage:
        desk = self._desk
        now = desk.clock()
        window_start = now - timedelta(seconds=policy.window_seconds)
        day_start = self._day_start(now)
        window, today, notional = await desk.run(lambda: desk.store.live_usage(account_id, window_start, day_start))
        return LiveUsage(orders_in_window=window, orders_today=today, notional_today=notional)

    def _day_start(self, now: datetime) -> datetime:
        zone = ZoneInfo(self._desk.config.live_trading.trading_day_timezone)
        local = now.astimezone(zone)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
