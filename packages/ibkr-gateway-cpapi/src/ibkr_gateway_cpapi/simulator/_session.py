"""The simulator's two-tier session: the SSO login and the brokerage (`/iserver`) session.

`SessionMachine` decides, for every request, whether CPAPI would serve it: 401 without a login,
400 "no bridge" on `/iserver` without a brokerage session, 500 "Please query /accounts first"
before priming. Facts that CPAPI keeps per brokerage session (priming, snapshot pre-flights, the
live-orders subscription, suppressed questions) live in `BrokerageSession` and vanish with it.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, NamedTuple

MAX_SESSION_LIFETIME: Final = timedelta(hours=24)
"""CPAPI's hard cap on one login (opt-in here: a long-running fake backend should not expire)."""

SSO_EXPIRES: Final = timedelta(minutes=9)
"""What `/tickle` reports as remaining SSO time right after a request."""

_OPEN_ISERVER: Final = ("/iserver/auth/", "/iserver/reauthenticate")
"""`/iserver` paths that answer without a brokerage session."""

_PRIMED_ISERVER: Final = ("/iserver/marketdata/", "/iserver/account/", "/iserver/reply/")
"""`/iserver` paths that need `/iserver/accounts` first in each brokerage session."""


SimPositionRow = dict[str, object]
"""One row of `/portfolio/{id}/positions/{page}`."""


class AuthState(StrEnum):
    """Where the simulated login stands."""

    NO_SESSION = "no_session"
    """Nobody logged in (or the session expired): every endpoint answers 401."""
    SSO_ONLY = "sso_only"
    """Logged in, no brokerage session: portfolio works, `/iserver` says "no bridge"."""
    AUTHENTICATED = "authenticated"
    """Brokerage session open: everything works."""
    COMPETING = "competing"
    """Another platform took the brokerage session; `ssodh/init` with `compete` takes it back."""


class SimHttpError(Exception):
    """An HTTP error answer; the app renders `body` (JSON, or text when it is a `str`) with `status`."""

    def __init__(self, status: int, body: object, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class SimConnectionDropped(Exception):
    """The request was served, but its answer is lost: the app drops the connection mid-response."""


def error_body(message: str, status: int | None = None) -> dict[str, object]:
    """CPAPI's error shape, `{"error": ...}`, sometimes with `statusCode`."""
    return {"error": message} if status is None else {"error": message, "statusCode": status}


class BrokerageSession:
    """What CPAPI remembers for one brokerage session.

    A plain slotted class, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    __slots__ = (
        "iserver_primed",
        "live_orders_empty_left",
        "live_orders_warmed",
        "portfolio_primed",
        "positions_cache",
        "preflighted",
        "selected_account",
        "snapshot_fields",
        "suppressed",
    )

    def __init__(self) -> None:
        self.iserver_primed = False
        self.portfolio_primed = False
        self.preflighted: set[int] = set()
        """Conids whose snapshot stream has been opened (the first request only opens it)."""
        self.snapshot_fields: dict[int, list[str]] = {}
        self.live_orders_warmed = False
        self.live_orders_empty_left = 0
        """Further empty live-orders answers still to come after the warm-up (a slow subscription)."""
        self.positions_cache: dict[str, list[SimPositionRow]] = {}
        """Account → the positions rows served until `/positions/invalidate` (when the cache is on)."""
        self.suppressed: set[str] = set()
        """Question message ids suppressed with `/iserver/questions/suppress`."""
        self.selected_account: str | None = None
        """The account `POST /iserver/account` selected; None: the login's first account."""


class SimRequest(NamedTuple):
    """One request the simulator saw (path below `/v1/api`, no body).

    A named tuple, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    method: str
    path: str
    query: str


class _Failure(NamedTuple):
    status: int
    body: object
    path_contains: str | None = None
    """Only a request whose path holds this (e.g. `/orders`) takes the failure; None: the next request."""


class SessionMachine:
    """Auth state, idle expiry, priming and injected failures."""

    def __init__(
        self, clock: Callable[[], datetime], *, idle_timeout: timedelta | None, session_lifetime: timedelta | None
    ) -> None:
        self._clock = clock
        self.idle_timeout = idle_timeout
        """Drop the session after this long without a request; None never drops it."""
        self.session_lifetime = session_lifetime
        """Drop the session this long after login (CPAPI: 24 h); None never drops it."""
        self.state = AuthState.AUTHENTICATED
        self.session_id = secrets.token_hex(16)
        """The tickle `session` id: random per login, never a real secret."""
        self.brokerage = BrokerageSession()
        self.no_session_body = False
        """Answer 200 `{"error": "no session"}` instead of 401, as some gateway builds do."""
        self.logged_in_at = clock()
        self.last_request_at = self.logged_in_at
        self.requests: list[SimRequest] = []
        self.pace: Callable[[str, str], None] | None = None
        """Counts each request (path, query) against the pacing limits (raises 429); None while pacing is off."""
        self._failures: deque[_Failure] = deque()

    # -- transitions -----------------------------------------------------------------------------

    def log_in(self) -> None:
        """A fresh login with an open brokerage session (new session id, nothing primed)."""
        self.state = AuthState.AUTHENTICATED
        self.session_id = secrets.token_hex(16)
        self.brokerage = BrokerageSession()
        self.logged_in_at = self.last_request_at = self._clock()

    def log_in_sso_only(self) -> None:
        """A fresh login without a brokerage session (`ssodh/init` opens it)."""
        self.log_in()
        self.state = AuthState.SSO_ONLY

    def log_out(self) -> None:
        """End the login: every endpoint answers 401 until the next `log_in`."""
        self.state = AuthState.NO_SESSION
        self.brokerage = BrokerageSession()

    def set_competing(self) -> None:
        """Another platform logged in with the same user and took the brokerage session."""
        if self.state != AuthState.NO_SESSION:
            self.state = AuthState.COMPETING
            self.brokerage = BrokerageSession()

    def reset_brokerage_session(self) -> None:
        """The nightly reset: still logged in, but priming, pre-flights and subscriptions are gone."""
        self.brokerage = BrokerageSession()

    def nightly_reset(self) -> None:
        """IBKR's nightly reset: the login stays, its brokerage session closes ("no bridge" until `ssodh/init`)."""
        if self.state != AuthState.NO_SESSION:
            self.state = AuthState.SSO_ONLY
            self.brokerage = BrokerageSession()

    def open_brokerage_session(self, *, compete: bool) -> bool:
        """`ssodh/init` or `reauthenticate`: open the brokerage session; True when it is open afterwards."""
        if self.state == AuthState.COMPETING and not compete:
            return False
        if self.state != AuthState.AUTHENTICATED:
            self.state = AuthState.AUTHENTICATED
            self.brokerage = BrokerageSession()
        return True

    def fail_next(self, status: int, body: object = None, *, times: int = 1, path_contains: str | None = None) -> None:
        """Answer the next `times` requests (whose path holds `path_contains`) with `status` and `body`."""
        for _ in range(times):
            self._failures.append(_Failure(status, body, path_contains))

    # -- per-request checks ----------------------------------------------------------------------

    def admit(self, method: str, path: str, query: str) -> None:
        """Record the request and refuse it the way CPAPI would.

        Raises:
            SimHttpError: 401, 400 no bridge, 500 priming, 429 from `pace`, or an injected failure.
        """
        now = self._clock()
        self.requests.append(SimRequest(method, path, query))
        if self.state != AuthState.NO_SESSION and self._expired(now):
            self.log_out()
        self.last_request_at = now
        if self._failures and (self._failures[0].path_contains or "") in path:
            failure = self._failures.popleft()
            raise SimHttpError(failure.status, failure.body)
        if self.pace is not None:
            self.pace(path, query)
        if self.state == AuthState.NO_SESSION:
            if self.no_session_body:
                raise SimHttpError(200, error_body("no session"))
            raise SimHttpError(401, "Unauthorized")
        if path.startswith("/iserver/"):
            self._admit_iserver(path)
        elif path.startswith("/portfolio/"):
            self._admit_portfolio(path)

    def _expired(self, now: datetime) -> bool:
        if self.session_lifetime is not None and now - self.logged_in_at >= self.session_lifetime:
            return True
        return self.idle_timeout is not None and now - self.last_request_at >= self.idle_timeout

    def _admit_iserver(self, path: str) -> None:
        if path.startswith(_OPEN_ISERVER):
            return
        if self.state != AuthState.AUTHENTICATED:
            raise SimHttpError(400, error_body("Bad Request: no bridge", 400))
        if path == "/iserver/accounts":
            self.brokerage.iserver_primed = True
        elif path.startswith(_PRIMED_ISERVER) and not self.brokerage.iserver_primed:
            raise SimHttpError(500, error_body("Please query /accounts first"))

    def _admit_portfolio(self, path: str) -> None:
        segment = path.split("/")[2]
        if segment in ("accounts", "subaccounts", "subaccounts2"):
            self.brokerage.portfolio_primed = True
        elif not self.brokerage.portfolio_primed:
            raise SimHttpError(500, error_body("Please query /portfolio/accounts first"))

    # -- bodies ----------------------------------------------------------------------------------

    def sso_expires_ms(self) -> int:
        """Milliseconds of SSO time left, as `/tickle` and `/sso/validate` report it."""
        lifetime = self.session_lifetime or MAX_SESSION_LIFETIME
        left = min(SSO_EXPIRES, self.logged_in_at + lifetime - self._clock())
        return max(int(left.total_seconds() * 1000), 0)
