"""An accelerated clock for the served simulator, so tests cross IBKR's 10-minute windows in seconds.

`ScaledClock` runs `speed` times faster than real time from the moment it is made (or last
re-based), and can jump ahead. Every simulator timer reads it: pacing windows, the penalty box,
session expiry, order timestamps. The control endpoint changes its speed and moves it forward.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

MAX_SPEED = 10_000.0
"""Fastest the clock may run (a 10-minute window then lasts 60 ms)."""


class ScaledClock:
    """Wall time that runs `speed` times faster than real time; never goes backwards."""

    def __init__(
        self,
        speed: float = 1.0,
        *,
        start: datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Start at `start` (now when None), running at `speed`."""
        self._monotonic = monotonic
        self._base = start if start is not None else datetime.now(UTC)
        self._base_mono = monotonic()
        self._speed = _checked(speed)

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self._speed

    def now(self) -> datetime:
        """The simulated time now."""
        return self._base + timedelta(seconds=(self._monotonic() - self._base_mono) * self._speed)

    def set_speed(self, speed: float) -> None:
        """Run at `speed` from now on (the time reached so far is kept)."""
        self._base = self.now()
        self._base_mono = self._monotonic()
        self._speed = _checked(speed)

    def advance(self, seconds: float) -> None:
        """Jump forward by `seconds` of simulated time."""
        if seconds < 0:
            raise ValueError("the clock never goes backwards")
        self._base += timedelta(seconds=seconds)

    def real_seconds(self, simulated: timedelta) -> float:
        """How many real seconds `simulated` time takes at the current speed."""
        return simulated.total_seconds() / self._speed


def _checked(speed: float) -> float:
    if not 0 < speed <= MAX_SPEED:
        raise ValueError(f"clock speed must be above 0 and at most {MAX_SPEED:g}")
    return float(speed)
