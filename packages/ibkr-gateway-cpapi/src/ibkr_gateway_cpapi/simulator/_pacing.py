"""CPAPI's request pacing, opt-in: a global rate, per-endpoint windows, 429s and a penalty box.

Off by default (fake mode must never throttle a user); tests and benchmarks switch it on with
`SimulatorState.enable_pacing()` to exercise a client's rate governor. Windows slide on the
simulator's clock and key on the path without the query string (reference §4). The live-orders
warm-up (`force=true`, then the read that returns the data: the call-twice quirk IBKR documents for
that endpoint) counts as one request, as the client's governor counts it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from ._session import SimHttpError


@dataclass(frozen=True, slots=True)
class PacingRule:
    """At most `limit` requests to `path` per `window`."""

    path: str
    limit: int
    window: timedelta


DEFAULT_PACING_RULES: Final[Sequence[PacingRule]] = (
    PacingRule("/iserver/marketdata/snapshot", 10, timedelta(seconds=1)),
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
"""How long a violator's every request is refused."""

_SECOND: Final = timedelta(seconds=1)

_LIVE_ORDERS: Final = "/iserver/account/orders"


class Pacer:
    """Sliding windows on a clock; raises 429 when a request would break one."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        rules: Sequence[PacingRule] = DEFAULT_PACING_RULES,
        global_per_second: int = GLOBAL_PER_SECOND,
        penalty: timedelta = DEFAULT_PENALTY,
    ) -> None:
        self._clock = clock
        self._rules = {rule.path: rule for rule in rules}
        self._global = PacingRule("*", global_per_second, _SECOND)
        self._penalty = penalty
        self._seen: dict[str, deque[datetime]] = {}
        self._penalty_until: datetime | None = None
        self._warm_up_pending: set[str] = set()
        """Live-orders queries (without `force`) whose warm-up was counted and whose read is still to come."""
        self.refused = 0
        """Requests answered 429, for assertions."""

    def check(self, path: str, query: str = "") -> None:
        """Count one request to `path` (`query` matters only for the live-orders warm-up).

        Raises:
            SimHttpError: 429 while in the penalty box or when a window is full.
        """
        now = self._clock()
        if self._penalty_until is not None and now < self._penalty_until:
            self._refuse()
        rules = [self._global] + (
            [self._rules[path]] if path in self._rules and not self._warm_up_read(path, query) else []
        )
        if any(self._full(rule, now) for rule in rules):
            self._penalty_until = now + self._penalty if self._penalty else None
            self._refuse()
        for rule in rules:
            self._seen.setdefault(rule.path, deque()).append(now)

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

    def _refuse(self) -> None:
        self.refused += 1
        raise SimHttpError(429, "Too Many Requests")
