"""Shared fixtures: a simulator on a frozen clock and the real backend over it (ASGI, no sockets)."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimulatorState

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
"""A Wednesday afternoon; every clock in these tests reads it."""


def frozen_clock() -> datetime:
    return NOW


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState(clock=frozen_clock)


@pytest.fixture
async def backend(sim: SimulatorState) -> AsyncIterator[CpapiBackend]:
    async with open_simulator_backend(sim, clock=frozen_clock, preflight_delays_s=(0.0,) * 5) as opened:
        yield opened
