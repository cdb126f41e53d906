"""The client-side rate governor: IBKR's pacing limits, kept before the broker has to enforce them.

IBKR answers a client over its limits with 429 and may put the caller's IP in a penalty box for
10 minutes, during which every endpoint is refused (reference §4). `RateGovernor` keeps a sliding
window per limit: one global window (10 requests per second through a Client Portal Gateway) and one
per endpoint from IBKR's pacing table, keyed on the path without its query string. A request waits
for its slot, but only up to `max_wait_s`; a longer wait is `BROKER_RATE_LIMITED` with a retry hint,
never a burst the broker would punish. After a 429 the governor holds every request until the
broker's `Retry-After` (or a short backoff) has passed: it assumes the penalty box, not bad luck.

Two quirks of CPAPI shape the table. The live-orders warm-up (`force=true`, then the plain call
that returns the data) counts as one paced request; and `/portfolio/accounts` answers are reused for
their pacing window instead of being fetched again (the list of accounts does not change in seconds).
Time and sleep are injected, so tests run the governor on a fake clock and never wait.
"""

from __future__ import annotations

import time
from bisect import insort
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Final

import anyio
from ibkr_gateway_core.errors import ErrorCode, GatewayError


@dataclass(frozen=True, slots=True)
class PaceLimit:
    """At most `limit` requests to `path` (without query) in any `window`."""

    path: str
    limit: int
    window: timedelta
    reuse_answer: bool = False
    """A GET answer is served again for `window` instead of asking the broker twice."""


DEFAULT_PACE_LIMITS: Final[Sequence[PaceLimit]] = (
    PaceLimit("/iserver/marketdata/snapshot", 10, timedelta(seconds=1)),
    PaceLimit("/iserver/scanner/params", 1, timedelta(minutes=15), reuse_answer=True),
    PaceLimit("/iserver/scanner/run", 1, timedelta(seconds=1)),
    PaceLimit("/iserver/account/trades", 1, timedelta(seconds=5)),
    PaceLimit("/iserver/account/orders", 1, timedelta(seconds=5)),
    PaceLimit("/iserver/account/pnl/partitioned", 1, timedelta(seconds=5)),
    PaceLimit("/portfolio/accounts", 1, timedelta(seconds=5), reuse_answer=True),
    PaceLimit("/portfolio/subaccounts", 1, timedelta(seconds=5), reuse_answer=True),
    PaceLimit("/tickle", 1, timedelta(seconds=1)),
    PaceLimit("/sso/validate", 1, timedelta(minutes=1), reuse_answer=True),
)
"""IBKR's per-endpoint limits (reference §4; both versions of the pacing page agree on these)."""

DEFAULT_REQUESTS_PER_SECOND: Final = 10.0
"""Global rate for users going through the Client Portal Gateway."""

DEFAULT_MAX_WAIT: Final = timedelta(seconds=6)
"""Longest a request waits for its slot; just above the 5 s windows, so those queue instead of failing."""

DEFAULT_RATE_LIMIT_RETRIES: Final = 2
"""Retries of an idempotent GET after a 429."""

DEFAULT_BACKOFF: Final = timedelta(seconds=1)
"""Hold after a 429 without `Retry-After`; doubles with each further 429 in a row."""

LIVE_ORDERS_PATH: Final = "/iserver/account/orders"
"""Its `force=true` warm-up and the read that follows count as one request."""

_GLOBAL: Final = "*"

Clock = Callable[[], float]
"""Monotonic seconds."""

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class _Window:
    limit: int
    window_s: float
    seen: list[float] = field(default_factory=list[float])

    def free_at(self, now: float) -> float:
        """When the next request fits (now or later), after dropping requests that left the window."""
        cutoff = now - self.window_s
        drop = 0
        while drop < len(self.seen) and self.seen[drop] <= cutoff:
            drop += 1
        del self.seen[:drop]
        if len(self.seen) < self.limit:
            return now
        return self.seen[len(self.seen) - self.limit] + self.window_s


@dataclass(frozen=True, slots=True)
class _Reused:
    at: float
    answer: object


def path_key(path: str) -> str:
    """The pacing key of a path: the path without its query string."""
    return path.split("?", 1)[0]


def parse_retry_after(value: str | None, *, now_epoch_s: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now_epoch_s, 0.0)


class RateGovernor:
    """Spaces requests to one broker host by IBKR's pacing table; shared by every request of a client."""

    def __init__(
        self,
        *,
        requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND,
        limits: Sequence[PaceLimit] = DEFAULT_PACE_LIMITS,
        max_wait: timedelta = DEFAULT_MAX_WAIT,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        """Configure the windows.

        Args:
            requests_per_second: Global rate over every path (a window of one second).
            limits: Per-endpoint limits, matched on the exact path without query.
            max_wait: Longest wait for a slot before the request fails as `BROKER_RATE_LIMITED`.
            clock: Monotonic seconds (tests pass a fake).
            sleep: Waits that many seconds (tests pass one that moves the fake clock).
        """
        self._clock = clock
        self._sleep = sleep
        self._max_wait_s = max_wait.total_seconds()
        per_second = max(int(requests_per_second), 1)
        self._windows: dict[str, _Window] = {_GLOBAL: _Window(per_second, 1.0)}
        self._reuse: dict[str, float] = {}
        for rule in limits:
            self._windows[rule.path] = _Window(rule.limit, rule.window.total_seconds())
            if rule.reuse_answer:
                self._reuse[rule.path] = rule.window.total_seconds()
        self._answers: dict[tuple[str, str], _Reused] = {}
        self._hold_until = 0.0
        self._backoff_s = DEFAULT_BACKOFF.total_seconds()
        self._warm_up_pending: set[str] = set()
        """Query strings of live-orders warm-ups whose follow-up read is still to come."""
        self.waited_s = 0.0
        """Total time requests spent waiting for a slot, for assertions and diagnostics."""

    @property
    def max_wait_s(self) -> float:
        """Longest wait for a slot."""
        return self._max_wait_s

    # -- answers reused within their window ------------------------------------------------------

    def reused_answer(self, path: str, params: Mapping[str, str] | None) -> tuple[bool, object]:
        """`(True, answer)` when a GET of `path` was answered within its window, else `(False, None)`."""
        key = path_key(path)
        ttl = self._reuse.get(key)
        if ttl is None:
            return False, None
        found = self._answers.get((key, _query(params)))
        if found is None or self._clock() - found.at >= ttl:
            return False, None
        return True, found.answer

    def remember_answer(self, path: str, params: Mapping[str, str] | None, answer: object) -> None:
        """Keep a GET answer of a path whose answers are reused."""
        key = path_key(path)
        if key in self._reuse:
            self._answers[(key, _query(params))] = _Reused(self._clock(), answer)

    def forget_answers(self) -> None:
        """Drop reused answers (the session changed)."""
        self._answers.clear()

    # -- slots -----------------------------------------------------------------------------------

    async def acquire(self, path: str, params: Mapping[str, str] | None = None) -> None:
        """Wait for a slot for one request to `path`, at most `max_wait_s` in all.

        Raises:
            GatewayError: `BROKER_RATE_LIMITED` when the slot is further away than the bound
                (`details["retry_after_seconds"]` says when to try again).
        """
        key = path_key(path)
        deadline = self._clock() + self._max_wait_s
        while True:
            now = self._clock()
            free_at = self._free_at(key, params, now)
            if free_at <= now:
                self._record(key, params, now)
                return
            if free_at > deadline:
                raise self._limited(free_at - now)
            self.waited_s += free_at - now
            await self._sleep(free_at - now)

    def hold(self, seconds: float | None) -> float:
        """After a 429: refuse to send anything for `seconds` (the broker's hint) or a doubling backoff.

        Returns:
            How long requests are held from now.
        """
        if seconds is None:
            seconds = self._backoff_s
            self._backoff_s *= 2
        now = self._clock()
        self._hold_until = max(self._hold_until, now + seconds)
        return self._hold_until - now

    def limited_error(self, retry_after_s: float) -> GatewayError:
        """`BROKER_RATE_LIMITED` with a retry hint."""
        return self._limited(retry_after_s)

    def _free_at(self, key: str, params: Mapping[str, str] | None, now: float) -> float:
        free_at = max(now, self._hold_until)
        windows = [self._windows[_GLOBAL]]
        if key in self._windows and not self._is_warm_up_read(key, params):
            windows.append(self._windows[key])
        return max([free_at, *(w.free_at(now) for w in windows)])

    def answered(self) -> None:
        """The broker answered without a 429: the next backoff starts short again."""
        self._backoff_s = DEFAULT_BACKOFF.total_seconds()

    def _record(self, key: str, params: Mapping[str, str] | None, now: float) -> None:
        insort(self._windows[_GLOBAL].seen, now)
        if key == LIVE_ORDERS_PATH:
            query = _query(params, without="force")
            if (params or {}).get("force") == "true":
                self._warm_up_pending.add(query)
            elif query in self._warm_up_pending:
                self._warm_up_pending.discard(query)
                return  # the read that completes a warm-up shares the warm-up's slot
        if key in self._windows:
            insort(self._windows[key].seen, now)

    def _is_warm_up_read(self, key: str, params: Mapping[str, str] | None) -> bool:
        if key != LIVE_ORDERS_PATH or (params or {}).get("force") == "true":
            return False
        return _query(params, without="force") in self._warm_up_pending

    def _limited(self, retry_after_s: float) -> GatewayError:
        wait = max(round(retry_after_s, 1), 0.1)
        return GatewayError(
            ErrorCode.BROKER_RATE_LIMITED,
            f"IBKR's pacing limits allow this request again in {wait:g} s; it was not sent.",
            user_action=f"Retry in {wait:g} seconds.",
            details={"retry_after_seconds": wait},
        )


def _query(params: Mapping[str, str] | None, *, without: str | None = None) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted((params or {}).items()) if k != without)
