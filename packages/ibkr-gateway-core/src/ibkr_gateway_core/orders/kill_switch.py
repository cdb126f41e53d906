"""The live kill switch: persisted in the state database, opened by the operator only, closable by anyone.

Closing it can cancel the working live orders the gateway tracks; the live submit path asks `gate`.
"""

from __future__ import annotations

import logging

from ..call_context import CallContext, Switch
from ..redaction import scrub_text
from ..requests import NoInput
from ._services import DeskServices, is_operator, raise_refusal
from .gates import check_kill_switch
from .models import KillSwitchState
from .requests import KillSwitchChangeInput

logger = logging.getLogger(__name__)


class KillSwitch:
    """The kill switch operations of the order desk."""

    def __init__(self, desk: DeskServices) -> None:
        self._desk = desk

    async def status(self, _: NoInput) -> KillSwitchState:
        """The persisted kill switch."""
        return await self._desk.run(self._desk.store.kill_switch)

    async def open(self, args: KillSwitchChangeInput) -> KillSwitchState:
        """Open the kill switch: the operator only (`Gateway.call` refuses anyone else)."""
        ctx = self._desk.call_context()
        return await self._set(ctx, "open", args.reason, audit=False)

    async def close(self, args: KillSwitchChangeInput) -> KillSwitchState:
        """Close the kill switch and, when configured, cancel the working live orders the gateway tracks."""
        desk = self._desk
        ctx = desk.call_context()
        state = await self._set(ctx, "closed", args.reason, audit=False)
        cancelled: list[str] = []
        if desk.config.live_trading.cancel_working_orders_on_close:
            for order in await desk.run(desk.store.live_orders):
                try:
                    ack = await desk.writer(order.writer).cancel(order.account_id, order.broker_order_id)
                except Exception:
                    logger.warning("kill switch close: the cancel of a tracked live order failed")
                    continue
                if ack.accepted:
                    cancelled.append(order.broker_order_id)
        return state.model_copy(update={"cancelled_orders": cancelled})

    async def gate(self, ctx: CallContext) -> None:
        """Operator: `--open-kill-switch` and the persisted switch open (fake mode: the flag opens it)."""
        if is_operator(ctx):
            raise_refusal(check_kill_switch(ctx.has(Switch.OPEN_KILL_SWITCH)))
            state: KillSwitchState = await self._desk.run(self._desk.store.kill_switch)
            if state.state == "closed" and self._desk.config.is_fake:
                await self._set(ctx, "open", "opened by --open-kill-switch (simulator)")
                return
            raise_refusal(check_kill_switch(state.state == "open"))

    async def _set(self, ctx: CallContext, position: str, reason: str, *, audit: bool = True) -> KillSwitchState:
        desk = self._desk
        reason = scrub_text(reason)  # free text: a pasted token or path is never stored or echoed
        state = KillSwitchState(
            state="open" if position == "open" else "closed",
            changed_by=ctx.principal.subject,
            changed_at=desk.clock(),
            reason=reason,
            audit_event_id=ctx.audit_event_id,
        )
        previous: KillSwitchState = await desk.run(lambda: desk.store.set_kill_switch(state))
        if audit:  # a side effect of another call gets its own event; open/close calls are their own event
            await desk.audit_system(
                "kill_switch_changed", {"from": previous.state, "to": state.state, "reason": reason}, None
            )
        return state
