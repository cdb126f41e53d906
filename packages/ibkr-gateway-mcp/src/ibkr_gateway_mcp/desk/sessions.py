"""Desk sessions: signed cookies naming a server-side session, CSRF tokens, one-time login links.

A cookie is `<session id>.<HMAC-SHA256 of it>`; a cookie whose signature does not verify is forged, and
one whose session this process does not hold (signed out, expired, or from before a restart without a
configured key) is replayed. Either way the request is refused and audited. Each session has its own
CSRF token; every form carries it and every POST must present it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from ibkr_gateway_core.principal import Principal

COOKIE_NAME: Final = "ibkr_desk_session"
"""The session cookie (HttpOnly, SameSite=Strict, Secure on https)."""

LOGIN_COOKIE_NAME: Final = "ibkr_desk_login"
"""Binds an OpenID login in flight to the browser that started it (SameSite=Lax: it must come back with
the provider's redirect)."""

LOGIN_FLIGHT_SECONDS: Final = 600.0
"""How long an OpenID login may take from the redirect to the callback."""

LOCAL_LINK_SECONDS: Final = 3600.0
"""How long the one-time local login link is valid."""

MAX_SESSIONS: Final = 256
"""Most sessions held at once; the oldest is dropped beyond it."""

SessionProblem = Literal["missing", "forged", "unknown", "expired"]


@dataclass
class DeskSession:
    """One signed-in person."""

    session_id: str
    principal: Principal
    csrf_token: str
    expires_at: float
    login_method: Literal["oidc", "local_link"]
    flash: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    """(kind, text) messages shown once on the next page: `ok` or `error`."""


@dataclass(frozen=True, slots=True)
class LoginFlight:
    """An OpenID login between the redirect to the provider and its callback."""

    state: str
    nonce: str
    code_verifier: str
    started_at: float


class DeskSessions:
    """Sessions, logins in flight and the one-time local link of one desk process."""

    def __init__(self, key: bytes, *, ttl_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._ttl = ttl_seconds
        self._clock = clock
        self._sessions: dict[str, DeskSession] = {}
        self._flights: dict[str, LoginFlight] = {}
        self._local_links: dict[str, float] = {}
        """sha256(token) → expiry of unused one-time links."""

    # ----------------------------------------------------------------- cookies

    def _sign(self, value: str) -> str:
        mac = hmac.new(self._key, value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def cookie_for(self, session: DeskSession) -> str:
        """The cookie value naming `session`."""
        return f"{session.session_id}.{self._sign(session.session_id)}"

    def open(self, cookie: str | None) -> DeskSession | SessionProblem:
        """The session a cookie names, or why it names none."""
        if not cookie:
            return "missing"
        session_id, _, signature = cookie.partition(".")
        if not session_id or not hmac.compare_digest(signature.encode(), self._sign(session_id).encode()):
            return "forged"
        session = self._sessions.get(session_id)
        if session is None:
            return "unknown"
        if self._clock() >= session.expires_at:
            del self._sessions[session_id]
            return "expired"
        return session

    def start(self, principal: Principal, login_method: Literal["oidc", "local_link"]) -> DeskSession:
        """A new session for a person who just logged in."""
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
            del self._sessions[oldest.session_id]
        session = DeskSession(
            session_id=secrets.token_urlsafe(32),
            principal=principal,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=self._clock() + self._ttl,
            login_method=login_method,
        )
        self._sessions[session.session_id] = session
        return session

    def end(self, session: DeskSession) -> None:
        """Sign out: the cookie names nothing afterwards."""
        self._sessions.pop(session.session_id, None)

    @staticmethod
    def csrf_ok(session: DeskSession, presented: object) -> bool:
        """True when a form presented this session's CSRF token."""
        return isinstance(presented, str) and hmac.compare_digest(presented.encode(), session.csrf_token.encode())

    # ------------------------------------------------------------ OpenID logins

    def begin_flight(self) -> tuple[LoginFlight, str]:
        """A new login in flight and the signed value of its binding cookie."""
        now = self._clock()
        for state in [s for s, f in self._flights.items() if now - f.started_at > LOGIN_FLIGHT_SECONDS]:
            del self._flights[state]
        flight = LoginFlight(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            code_verifier=secrets.token_urlsafe(48),
            started_at=now,
        )
        self._flights[flight.state] = flight
        return flight, f"{flight.state}.{self._sign('login:' + flight.state)}"

    def land_flight(self, state: str | None, cookie: str | None) -> LoginFlight | None:
        """The login a callback completes, once: its state must match the browser's binding cookie."""
        if not state or not cookie:
            return None
        bound, _, signature = cookie.partition(".")
        if bound != state or not hmac.compare_digest(signature.encode(), self._sign("login:" + bound).encode()):
            return None
        flight = self._flights.pop(state, None)
        if flight is None or self._clock() - flight.started_at > LOGIN_FLIGHT_SECONDS:
            return None
        return flight

    # -------------------------------------------------------- one-time local link

    def new_local_link(self) -> str:
        """A one-time login token for the operator at this machine."""
        token = secrets.token_urlsafe(32)
        self._local_links[hashlib.sha256(token.encode()).hexdigest()] = self._clock() + LOCAL_LINK_SECONDS
        return token

    def use_local_link(self, token: str | None) -> bool:
        """True once for a valid unused token; every later use (a replay) is False."""
        if not token:
            return False
        expiry = self._local_links.pop(hashlib.sha256(token.encode()).hexdigest(), None)
        return expiry is not None and self._clock() < expiry


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
