"""Background reconciliation: long-running servers settle unknown writes and follow live orders by themselves.

A one-shot CLI command never reconciles on its own (`orders reconcile` does it on request). A server that
stays up (MCP over stdio or HTTP) runs `reconcile_in_background`: every `orders.background_reconcile_seconds`
it asks the state store whether anything is unfinished — a write whose outcome is unknown, or a live
order not yet terminal — and only then runs the `reconcile_orders` operation through the gateway's door,
as the server's own principal, so each pass is audited like any call and a quiet gateway writes nothing.
A pass that fails (broker down, session lost) is logged and tried again at the next interval; it never
stops the server. Work left by an earlier process is picked up on start, so a restart heals too.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from ..errors import GatewayError

if TYPE_CHECKING:
    from ..gateway import Gateway
    from .models import ReconcileReport

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class BackgroundReconciler:
    """Runs reconciliation passes while there is unfinished order work."""

    def __init__(self, gateway: Gateway, *, interval_s: float, sleep: Sleep = anyio.sleep) -> None:
        """Reconcile through `gateway` every `interval_s` seconds while work is pending; nothing runs before `run`."""
        self._gateway = gateway
        self.interval_s = interval_s
        self._sleep = sleep
        self.passes = 0
        """Reconciliation passes run (checks that found nothing to do are not passes)."""
        self.last_report: ReconcileReport | None = None

    async def step(self) -> ReconcileReport | None:
        """One check, and a pass when the store holds unfinished work; None when there was nothing to do."""
        if await self._gateway.unfinished_orders() == 0:
            return None
        result = await self._gateway.call("reconcile_orders", {})
        self.passes += 1
        self.last_report = result.value
        return self.last_report

    async def run(self) -> None:
        """Step, then sleep, until cancelled; a failed step is logged, never fatal."""
        while True:
            try:
                await self.step()
            except GatewayError as exc:
                logger.warning("Background reconciliation failed: %s", exc.code)
            except Exception:  # the loop must outlive any one broken answer
                logger.exception("Background reconciliation failed")
            await self._sleep(self.interval_s)


@asynccontextmanager
async def reconcile_in_background(
    gateway: Gateway, *, sleep: Sleep = anyio.sleep
) -> AsyncGenerator[BackgroundReconciler | None]:
    """Reconcile in the background while the block runs; yields None (and runs nothing) when switched off."""
    interval = gateway.config.orders.background_reconcile_seconds
    if interval is None:
        yield None
        return
    reconciler = BackgroundReconciler(gateway, interval_s=interval, sleep=sleep)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reconciler.run)
        try:
            yield reconciler
        finally:
            tg.cancel_scope.cancel()
