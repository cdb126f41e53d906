"""Test helpers shipped with the package: fake time that drives the governor, the supervisor and the simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio.lowlevel


class FakeTime:
    """One virtual clock: monotonic seconds for the governor, wall time for the simulator, and a sleep that moves both.

    `sleep` returns at once (after a checkpoint, so other tasks run) with the clock advanced by what was asked.
    """

    def __init__(self, start: datetime = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)) -> None:
        """Start the clock at `start` (wall time) and 0.0 (monotonic)."""
        self.start = start
        self.now_s = 0.0
        """Seconds elapsed since `start`."""
        self.sleeps: list[float] = []
        """Every sleep asked for, in order."""

    def monotonic(self) -> float:
        """Seconds since the start."""
        return self.now_s

    def wall(self) -> datetime:
        """The wall-clock time now."""
        return self.start + timedelta(seconds=self.now_s)

    def advance(self, seconds: float) -> None:
        """Move the clock forward without sleeping."""
        self.now_s += seconds

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by `seconds` and let other tasks run."""
        self.sleeps.append(seconds)
        self.now_s += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()
