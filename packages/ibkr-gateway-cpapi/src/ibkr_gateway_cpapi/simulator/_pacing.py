"""CPAPI's request pacing, opt-in: a global rate, per-endpoint windows, a history cap and the penalty box.

Off by default (fake mode must never throttle a user); tests, benchmarks and `simulator serve
--unkind` switch it on to exercise a client's rate governor. Windows slide on the simulator's clock
and key on the path without the query string (reference §4). The live-orders warm-up (`force=true`,
then the read that returns the data: the call-twice quirk IBKR documents for that endpoint) counts as
one request, as the client's governor counts it.

The penalty box is as unkind as IBKR's: breaking an endpoint's window boxes that endpoint for
`penalty` (10 minutes), breaking the global rate boxes the whole client (every path), and a sixth
concurrent history request is refused. A boxed request is refused again and the box does not end
early. The 429 body says which: `{"error": "Too many requests", ...}` for one endpoint, and
"... this IP is in the penalty box" for the whole client. `Retry-After` is off by default (IBKR does
not document it); with it on, it gives the time left in real seconds, so a client facing an
accelerated clock learns how short the box really is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final, NamedTuple

from ._session import SimHttpError

HISTORY_PATH: Final = "/iserver/marketdata/history"


class PacingRule(NamedTuple):
    """At most `limit` requests to `path` per `window`.

    A named tuple, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    path: str
    limit: int
    window: timedelta


DEFAULT_PACING_RULES: Final[Sequence[PacingRule]] = (
    PacingRule("/iserver/marketdata/snapshot", 10, timedelta(seconds=1)),
    PacingRule("/iserver/scanner/params", 1, timedelta(minutes=15)),
    PacingRule("/iserver/scanner/run", 1, timedelta(seconds=1)),
    PacingRule("/iserver/account/trades", 1, timedelta(seconds=5)),
    PacingRule("/iserver/account/orders", 1, timedelta(seconds=5)),
    PacingRule("/iserver/account/pnl/partitioned", 1, timedelta(seconds=5)),
    PacingRule("/portfolio/accounts", 1, timedelta(seconds=5)),
    PacingRule("/portfolio/subaccounts", 1, timedelta(seconds=5)),
    PacingRule("/tickle", 1, timedelta(seconds=1)),
    PacingRule("/sso/validate", 1, timedelta(minutes=1)),
)
"""IBKR's per-endpoint limits (both versions of the pacing page agree on these)."""

GLOBAL_PER_SECOND: Final = 10
"""Requests per second for users going through the Client Portal Gateway."""

DEFAULT_PENALTY: Final = timedelta(minutes=10)
"""How long a violator is refused."""

HISTORY_CONCURRENCY: Final = 5
"""Concurrent `/iserver/marketdata/history` requests IBKR serves; the next one is refused."""

WHOLE_CLIENT: Final = "*"
"""The penalty-box key of the whole client (its IP)."""

ENDPOINT_BODY: Final = {"error": "Too many requests", "statusCode": 429}
CLIENT_BODY: Final = {"error": "Too many requests: this IP is in the penalty box", "statusCode": 429}

_SECOND: Final = timedelta(seconds=1)

_LIVE_ORDERS: Final = "/iserver/account/orders"


class Pacer:
    """Sliding windows and penalty boxes on a clock; raises 429 when a request would break a limit."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        rules: Sequence[PacingRule] = DEFAULT_PACING_RULES,
        global_per_second: int = GLOBAL_PER_SECOND,
        penalty: timedelta = DEFAULT_PENALTY,
        history_concurrency: int = HISTORY_CONCURRENCY,
        retry_after: Callable[[timedelta], float] | None = None,
    ) -> None:
        """Configure the limits.

        Args:
            clock: The simulator's clock.
            rules: Per-endpoint windows.
            global_per_second: Requests per second over every path.
            penalty: How long a violation boxes (0: refuse only the violating request).
            history_concurrency: Concurrent history requests served.
            retry_after: Turns time left into `Retry-After` seconds; None sends no `Retry-After`.
        """
        self._clock = clock
        self._rules = {rule.path: rule for rule in rules}
        self._global = PacingRule(WHOLE_CLIENT, global_per_second, _SECOND)
        self._penalty = penalty
        self._history_cap = history_concurrency
        self._retry_after = retry_after
        self._seen: dict[str, deque[datetime]] = {}
        self._boxed: dict[str, datetime] = {}
        self._warm_up_pending: set[str] = set()
        """Live-orders queries (without `force`) whose warm-up was counted and whose read is still to come."""
        self.history_running = 0
        self.refused = 0
        """Requests answered 429, for assertions."""
        self.boxes = 0
        """Penalty boxes opened."""
        self.counted: dict[str, int] = {}
        """Requests admitted per paced key (a ruled path, or `*` for all)."""
        self.peak: dict[str, int] = {}
        """Most requests seen inside one window, per paced key: never above the limit unless a 429 followed."""

    @property
    def rules(self) -> list[PacingRule]:
        """The per-endpoint rules."""
        return list(self._rules.values())

    @property
    def global_per_second(self) -> int:
        """The global rate."""
        return self._global.limit

    def check(self, path: str, query: str = "") -> None:
        """Count one request to `path` (`query` matters only for the live-orders warm-up).

        Raises:
            SimHttpError: 429 while boxed, or when a window is full (which opens a box).
        """
        now = self._clock()
        for key in (WHOLE_CLIENT, path):
            until = self._boxed.get(key)
            if until is not None and now < until:
                self._refuse(key, until - now)
        rules = [self._global] + (
            [self._rules[path]] if path in self._rules and not self._warm_up_read(path, query) else []
        )
        for rule in rules:
            if self._full(rule, now):
                key = WHOLE_CLIENT if rule is self._global else path
                self._box(key, now)
        for rule in rules:
            seen = self._seen.setdefault(rule.path, deque())
            seen.append(now)
            self.counted[rule.path] = self.counted.get(rule.path, 0) + 1
            self.peak[rule.path] = max(self.peak.get(rule.path, 0), len(seen))

    def history_started(self) -> None:
        """A history request starts; refused (and its endpoint boxed) beyond the concurrency cap."""
        if self.history_running >= self._history_cap:
            self._box(HISTORY_PATH, self._clock())
        self.history_running += 1

    def history_finished(self) -> None:
        """A history request ended."""
        self.history_running -= 1

    def stats(self) -> dict[str, object]:
        """Counters and boxes, for assertions and the control endpoint."""
        now = self._clock()
        return {
            "refused": self.refused,
            "boxes": self.boxes,
            "counted": dict(self.counted),
            "peak": dict(self.peak),
            "boxed": {key: (until - now).total_seconds() for key, until in self._boxed.items() if until > now},
            "global_per_second": self._global.limit,
            "rules": [
                {"path": r.path, "limit": r.limit, "window_seconds": r.window.total_seconds()}
                for r in self._rules.values()
            ],
            "penalty_seconds": self._penalty.total_seconds(),
            "history_concurrency": self._history_cap,
        }

    def _box(self, key: str, now: datetime) -> None:
        if self._penalty:
            self._boxed[key] = now + self._penalty
            self.boxes += 1
        self._refuse(key, self._penalty)

    def _warm_up_read(self, path: str, query: str) -> bool:
        if path != _LIVE_ORDERS:
            return False
        pairs = sorted(p for p in query.split("&") if p)
        rest = "&".join(p for p in pairs if not p.startswith("force="))
        if "force=true" in pairs:
            self._warm_up_pending.add(rest)
            return False
        if rest in self._warm_up_pending:
            self._warm_up_pending.discard(rest)
            return True
        return False

    def _full(self, rule: PacingRule, now: datetime) -> bool:
        seen = self._seen.setdefault(rule.path, deque())
        while seen and now - seen[0] >= rule.window:
            seen.popleft()
        return len(seen) >= rule.limit

    def _refuse(self, key: str, left: timedelta) -> None:
        self.refused += 1
        headers: dict[str, str] = {}
        if self._retry_after is not None and left:
            headers["Retry-After"] = str(max(int(self._retry_after(left) + 0.999), 1))
        raise SimHttpError(429, dict(CLIENT_BODY if key == WHOLE_CLIENT else ENDPOINT_BODY), headers=headers)
