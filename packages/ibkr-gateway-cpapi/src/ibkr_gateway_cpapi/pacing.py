"""The client-side rate governor: IBKR's pacing limits, kept before the broker has to enforce them.

IBKR answers a client over its limits with 429 and may put the caller's IP in a penalty box for
10 minutes (reference §4). `RateGovernor` keeps a sliding window per limit: one global window
(10 requests per second through a Client Portal Gateway) and one per endpoint from IBKR's pacing
table, keyed on the path without its query string. A request queues for its slot, but only up to
`max_wait_s`; a longer wait is `BROKER_RATE_LIMITED` with a retry hint, never a burst the broker
would punish. `/iserver/marketdata/history` also has a concurrency cap (IBKR serves at most 5 at once).

A 429 is the penalty box: the governor stops sending to that endpoint (to every endpoint when the
answer says the whole client is blocked) for the broker's `Retry-After`, or for `penalty` (IBKR's
10 minutes) when the answer gives none. Requests to a boxed endpoint fail at once with
`BROKER_RATE_LIMITED` and the time left; nothing probes the box with retries.

Two quirks of CPAPI shape the table. The live-orders warm-up (`force=true`, then the plain call
that returns the data) counts as one paced request; and `/portfolio/accounts` answers are reused for
their pacing window instead of being fetched again (the list of accounts does not change in seconds).
Time and sleep are injected, so tests run the governor on a fake clock and never wait.
"""

from __future__ import annotations

import time
from bisect import bisect_left, insort
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Final

import anyio
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.observability import BROKER_REQUESTS, PACING_WAIT, span_event


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

DEFAULT_PENALTY: Final = timedelta(minutes=10)
"""How long a 429 without `Retry-After` keeps an endpoint (or the whole client) boxed: IBKR's penalty box."""

HISTORY_PATH: Final = "/iserver/marketdata/history"

DEFAULT_CONCURRENCY: Final[Mapping[str, int]] = {HISTORY_PATH: 5}
"""Endpoints IBKR serves only so many at once: at most 5 concurrent history requests."""

SAFETY_MARGIN_S: Final = 0.05
"""Added to every window, so network jitter cannot make two requests look closer to the broker than they were."""

LIVE_ORDERS_PATH: Final = "/iserver/account/orders"
"""Its `force=true` warm-up and the read that follows count as one request."""

GLOBAL_KEY: Final = "*"
"""The key of the global window and of a whole-client penalty box."""

_GLOBAL: Final = GLOBAL_KEY

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


@dataclass(frozen=True, slots=True)
class Budget:
    """One pacing budget as `backend status` shows it."""

    endpoint: str
    """The path (without query) it applies to; `*` is the global rate."""
    limit: int
    window_seconds: float
    used: int
    """Requests sent within the current window."""
    queued: int
    """Requests waiting for a slot now."""
    in_flight: int
    max_concurrent: int | None
    boxed_for_seconds: float
    """Time left in the penalty box (0 when not boxed)."""


class RateGovernor:
    """Spaces requests to one broker host by IBKR's pacing table; shared by every request of a client."""

    def __init__(
        self,
        *,
        requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND,
        limits: Sequence[PaceLimit] = DEFAULT_PACE_LIMITS,
        max_wait: timedelta = DEFAULT_MAX_WAIT,
        penalty: timedelta = DEFAULT_PENALTY,
        concurrency: Mapping[str, int] = DEFAULT_CONCURRENCY,
        margin_s: float = SAFETY_MARGIN_S,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        """Configure the windows.

        Args:
            requests_per_second: Global rate over every path (a window of one second).
            limits: Per-endpoint limits, matched on the exact path without query.
            max_wait: Longest wait for a slot before the request fails as `BROKER_RATE_LIMITED`.
            penalty: How long a 429 without `Retry-After` boxes its endpoint (or everything).
            concurrency: Most requests in flight at once per path (history: 5).
            margin_s: Slack added to every window against network jitter.
            clock: Monotonic seconds (tests pass a fake).
            sleep: Waits that many seconds (tests pass one that moves the fake clock).
        """
        self._clock = clock
        self._sleep = sleep
        self._max_wait_s = max_wait.total_seconds()
        self._penalty_s = penalty.total_seconds()
        self._margin_s = margin_s
        per_second = max(int(requests_per_second), 1)
        self._windows: dict[str, _Window] = {_GLOBAL: _Window(per_second, 1.0 + margin_s)}
        self._reuse: dict[str, float] = {}
        for rule in limits:
            self._windows[rule.path] = _Window(rule.limit, rule.window.total_seconds() + margin_s)
            if rule.reuse_answer:
                self._reuse[rule.path] = rule.window.total_seconds()
        self._caps = dict(concurrency)
        self._running: dict[str, int] = {}
        self._cap_freed: dict[str, anyio.Event] = {}
        self._queued: dict[str, int] = {}
        self._answers: dict[tuple[str, str], _Reused] = {}
        self._boxed: dict[str, float] = {}
        """Key (a path, or `*` for everything) → monotonic time its penalty box ends."""
        self._warm_up_pending: set[str] = set()
        """Query strings of live-orders warm-ups whose follow-up read is still to come."""
        self.waited_s = 0.0
        """Total time requests spent waiting for a slot, for assertions and diagnostics."""
        self.sent = 0
        """Requests given a slot (sent upstream)."""
        self.coalesced = 0
        """Reads answered by joining an identical read already in flight."""
        self.reused = 0
        """Reads answered from an answer kept within its window."""

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
        self.reused += 1
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

    @asynccontextmanager
    async def slot(self, path: str, params: Mapping[str, str] | None = None) -> AsyncGenerator[None]:
        """Hold a slot for one request to `path` while the block sends it (rate and concurrency).

        Raises:
            GatewayError: `BROKER_RATE_LIMITED`, see `acquire`.
        """
        key = path_key(path)
        cap = self._caps.get(key)
        if cap is None:
            sent_at = await self.acquire(path, params)
            try:
                yield
            finally:
                self._answered_at(key, sent_at)
            return
        deadline = self._clock() + self._max_wait_s
        self._queued[key] = self._queued.get(key, 0) + 1
        try:
            while self._running.get(key, 0) >= cap:
                self._check_box(key, self._clock())
                freed = self._cap_freed.setdefault(key, anyio.Event())
                left = deadline - self._clock()
                if left <= 0:
                    raise self._limited(1.0)
                with anyio.move_on_after(left):
                    await freed.wait()
        finally:
            self._queued[key] -= 1
        self._running[key] = self._running.get(key, 0) + 1
        sent_at: float | None = None
        try:
            sent_at = await self.acquire(path, params, deadline=deadline)
            yield
        finally:
            if sent_at is not None:
                self._answered_at(key, sent_at)
            self._running[key] -= 1
            freed = self._cap_freed.pop(key, None)
            if freed is not None:
                freed.set()

    async def acquire(
        self, path: str, params: Mapping[str, str] | None = None, *, deadline: float | None = None
    ) -> float:
        """Wait for a slot for one request to `path`, at most `max_wait_s` in all; returns when it was given.

        Raises:
            GatewayError: `BROKER_RATE_LIMITED` at once while the endpoint (or everything) is in the
                penalty box, or when the slot is further away than the bound
                (`details["retry_after_seconds"]` says when to try again).
        """
        key = path_key(path)
        if deadline is None:
            deadline = self._clock() + self._max_wait_s
        self._queued[key] = self._queued.get(key, 0) + 1
        try:
            while True:
                now = self._clock()
                self._check_box(key, now)
                free_at = self._free_at(key, params, now)
                if free_at <= now:
                    self._record(key, params, now)
                    self.sent += 1
                    BROKER_REQUESTS.inc()
                    return now
                if free_at > deadline:
                    raise self._limited(free_at - now)
                self.waited_s += free_at - now
                PACING_WAIT.observe(free_at - now)
                span_event("pacing_wait", {"seconds": free_at - now})
                await self._sleep(free_at - now)
        finally:
            self._queued[key] -= 1

    def penalize(self, path: str, *, whole_client: bool, seconds: float | None) -> float:
        """After a 429: send nothing to `path` (to anything, with `whole_client`) for `seconds` or the penalty.

        Returns:
            How long the box lasts from now.
        """
        held = self._penalty_s if seconds is None else seconds
        key = _GLOBAL if whole_client else path_key(path)
        now = self._clock()
        self._boxed[key] = max(self._boxed.get(key, now), now + held)
        return self._boxed[key] - now

    def boxed_for(self, path: str) -> float:
        """Seconds left in the penalty box for a request to `path` (0 when it may be sent)."""
        now = self._clock()
        return max(self._boxed.get(_GLOBAL, now), self._boxed.get(path_key(path), now)) - now

    def limited_error(self, retry_after_s: float, *, boxed: bool = False) -> GatewayError:
        """`BROKER_RATE_LIMITED` with a retry hint."""
        return self._limited(retry_after_s, boxed=boxed)

    def budgets(self) -> list[Budget]:
        """Every budget with its use, queue and penalty box now, the global rate first."""
        now = self._clock()
        keys = [*self._windows, *(k for k in self._caps if k not in self._windows)]
        keys += [k for k in self._boxed if k not in keys]
        rows: list[Budget] = []
        for key in keys:
            window = self._windows.get(key)
            if window is not None:
                window.free_at(now)  # drops requests that left the window
            rows.append(
                Budget(
                    endpoint=key,
                    limit=window.limit if window is not None else 0,
                    window_seconds=round(window.window_s - self._margin_s, 3) if window is not None else 0.0,
                    used=len(window.seen) if window is not None else 0,
                    queued=self._queued.get(key, 0),
                    in_flight=self._running.get(key, 0),
                    max_concurrent=self._caps.get(key),
                    boxed_for_seconds=round(max(self._boxed.get(key, now) - now, 0.0), 1),
                )
            )
        return rows

    def _answered_at(self, key: str, sent_at: float) -> None:
        """Count the request from when its answer came instead of when it left.

        The broker counts a request when it arrives, which may be later than when it left here (a
        new TLS connection, a slow network); counting from the answer keeps the next request in a
        window from ever looking early to the broker.
        """
        now = self._clock()
        if now <= sent_at:
            return
        for window_key in (_GLOBAL, key):
            window = self._windows.get(window_key)
            if window is None:
                continue
            index = bisect_left(window.seen, sent_at)
            if index < len(window.seen) and window.seen[index] == sent_at:
                del window.seen[index]
                insort(window.seen, now)

    def _check_box(self, key: str, now: float) -> None:
        until = max(self._boxed.get(_GLOBAL, 0.0), self._boxed.get(key, 0.0))
        if until > now:
            raise self._limited(until - now, boxed=True)

    def _free_at(self, key: str, params: Mapping[str, str] | None, now: float) -> float:
        windows = [self._windows[_GLOBAL]]
        if key in self._windows and not self._is_warm_up_read(key, params):
            windows.append(self._windows[key])
        return max([now, *(w.free_at(now) for w in windows)])

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

    def _limited(self, retry_after_s: float, *, boxed: bool = False) -> GatewayError:
        wait = max(round(retry_after_s, 1), 0.1)
        if boxed:
            return rate_limited(
                f"IBKR put this endpoint in its penalty box (429); it is not called again for {wait:g} s.", wait
            )
        return rate_limited(f"IBKR's pacing limits allow this request again in {wait:g} s; it was not sent.", wait)


def rate_limited(message: str, wait_s: float) -> GatewayError:
    """`BROKER_RATE_LIMITED`: `message`, and when to retry (also in `details`, for clients that back off)."""
    return GatewayError(
        ErrorCode.BROKER_RATE_LIMITED,
        message,
        user_action=f"Retry in {wait_s:g} seconds.",
        details={"retry_after_seconds": wait_s},
    )


def _query(params: Mapping[str, str] | None, *, without: str | None = None) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted((params or {}).items()) if k != without)
