from datetime import UTC, datetime, timedelta

import pytest
from ibkr_gateway_cpapi.backend import ACCOUNTS_REUSE_S, open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimulatorState

pytestmark = pytest.mark.anyio


async def test_accounts_are_reused_within_ibkr_pacing_window_then_fetched_again() -> None:
    """IBKR paces /portfolio/accounts at 1 per 5 s: two lists within the window make one round trip."""
    now = [datetime(2026, 11, 25, 15, 0, tzinfo=UTC)]
    sim = SimulatorState()
    async with open_simulator_backend(sim, clock=lambda: now[0]) as backend:
        first = await backend.list_accounts()
        assert await backend.list_accounts() == first
        assert sim.paths().count("GET /portfolio/accounts") == 1
        now[0] += timedelta(seconds=ACCOUNTS_REUSE_S + 0.1)
        assert await backend.list_accounts() == first
    assert sim.paths().count("GET /portfolio/accounts") == 2
