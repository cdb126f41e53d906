"""The session supervisor: keeps a long-running process's CPAPI session alive and knows its health.

CPAPI drops a session after about 6 minutes without requests; clients tickle about once a minute
(reference §5). `SessionSupervisor.run` tickles every `interval`, queries `/iserver/accounts` again
when the session comes back usable (after a login, a competing platform, or the nightly reset: CPAPI
wants that call first in each brokerage session), and keeps the last status so `backend status`
answers from it at once while the session is healthy. Only long-running servers start it (the MCP
stdio and HTTP servers, through `supervise_session`); one-shot CLI commands never do.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Final, Protocol

import anyio
from ibkr_gateway_core.config import BrokerConfig
from ibkr_gateway_core.errors import GatewayError
from ibkr_gateway_core.models import BrokerSessionStatus

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

DEFAULT_TICKLE_INTERVAL: Final = timedelta(seconds=60)
"""How often the session is tickled; CPAPI's idle timeout is about 6 minutes."""

SUPERVISED_BACKENDS: Final = frozenset({"client_portal_gateway", "cpapi_oauth"})
"""Backends whose session can expire; fake mode's in-process simulator never idles out."""

Sleep = Callable[[float], Awaitable[None]]

logger = logging.getLogger(__name__)


class SupervisedSession(Protocol):
    """What the supervisor needs from a backend."""

    async def keepalive(self) -> BrokerSessionStatus:
        """Tickle the session and report its state (never raises for a lost session)."""
        ...

    async def prime(self) -> None:
        """Query `/iserver/accounts`, as CPAPI wants first in each brokerage session."""
        ...

    def status_for_error(self, exc: GatewayError) -> BrokerSessionStatus:
        """The session status an error implies."""
        ...

    async def open_brokerage_session(self, *, compete: bool) -> None:
        """Ask the gateway to open the brokerage session (`ssodh/init`)."""
        ...


def reopenable(status: BrokerSessionStatus) -> bool:
    """Logged in and connected, no other platform holding it, yet no brokerage session: `ssodh/init` fixes it."""
    return status.status == "manual_action_required" and status.connected and not status.competing


class SessionSupervisor:
    """Tickles one backend's session on an interval and tracks its health."""

    def __init__(
        self,
        session: SupervisedSession,
        *,
        interval: timedelta = DEFAULT_TICKLE_INTERVAL,
        sleep: Sleep = anyio.sleep,
        reopen: bool = False,
    ) -> None:
        """Supervise `session`; nothing runs until `run` is started.

        Args:
            session: The backend to keep alive.
            interval: Time between tickles.
            sleep: Waits that many seconds (tests pass a controllable one).
            reopen: Re-open a closed brokerage session of a logged-in gateway (never competing).
        """
        self._session = session
        self.interval = interval
        self._sleep = sleep
        self._reopen = reopen
        self.reopened = 0
        """Times this supervisor re-opened the brokerage session."""
        self._last: BrokerSessionStatus | None = None
        self._checks = 0
        self._checked = anyio.Event()

    @property
    def last_status(self) -> BrokerSessionStatus | None:
        """The status of the latest check, or None before the first one finished."""
        return self._last

    @property
    def checks(self) -> int:
        """Checks finished so far."""
        return self._checks

    async def wait_for_checks(self, count: int) -> BrokerSessionStatus:
        """Wait until `count` checks have finished; returns the latest status."""
        while self._checks < count or self._last is None:
            await self._checked.wait()
        return self._last

    async def check(self) -> BrokerSessionStatus:
        """Tickle once; re-open a closed brokerage session when allowed; prime again once it is usable."""
        status = await self._session.keepalive()
        if self._reopen and reopenable(status):
            try:
                await self._session.open_brokerage_session(compete=False)
                self.reopened += 1
            except GatewayError as exc:
                logger.warning("Re-opening the brokerage session failed: %s", exc.code)
            status = await self._session.keepalive()
        if status.status == "usable" and (self._last is None or self._last.status != "usable"):
            try:
                await self._session.prime()
            except GatewayError as exc:
                status = self._session.status_for_error(exc)
        self.record(status)
        return status

    def record(self, status: BrokerSessionStatus) -> None:
        """Keep `status` as the latest known (a caller's own check counts too) and wake waiters."""
        self._last = status
        self._checks += 1
        checked, self._checked = self._checked, anyio.Event()
        checked.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Check, then sleep `interval`, until cancelled; a failed check is logged, never fatal."""
        task_status.started()
        while True:
            try:
                await self.check()
            except Exception:  # the supervisor must outlive any one broken answer
                logger.exception("Broker session check failed")
            await self._sleep(self.interval.total_seconds())


@asynccontextmanager
async def supervise_session(backend: object, broker: BrokerConfig) -> AsyncGenerator[SessionSupervisor | None]:
    """Supervise `backend`'s session for the duration, when it is a CPAPI backend whose session can expire.

    Yields None (and starts nothing) for other backends or with `broker.keepalive_enabled` off.
    """
    from .backend import CpapiBackend

    if not broker.keepalive_enabled or not isinstance(backend, CpapiBackend) or backend.name not in SUPERVISED_BACKENDS:
        yield None
        return
    interval = timedelta(seconds=broker.keepalive_interval_seconds)
    async with backend.supervised(interval=interval, reopen=broker.reopen_brokerage_session) as supervisor:
        yield supervisor
