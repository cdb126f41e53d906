"""Attacks on the risk limits: orders counted at the price they can fill at, and budgets that hold under
concurrency. Each test counts what reached the broker and asserts the one code it means."""

from pathlib import Path
from typing import Any

import anyio
import pytest
from ibkr_gateway_core.call_context import Switch
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.order_models import ApprovalRecord
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, Clock, Desk, running_desk

pytestmark = pytest.mark.anyio

LIVE_CP = frozenset(
    {
        Switch.ENABLE_LIVE,
        Switch.LIVE_SCOPE,
        Switch.OPEN_KILL_SWITCH,
        Switch.ACKNOWLEDGE_PAPER_TO_LIVE,
        Switch.LIVE_BROKER_PREFIX + "client-portal",
    }
)
"""Every live flag, through the Client Portal writer: live orders reach the simulator's book."""


def live_policy(**limits: object) -> dict[str, Any]:
    return {"risk_policies": [{"policy_id": "live", **limits}], "live_trading": {"risk_policy_id": "live"}}


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


async def race(desk: Desk, approvals: list[ApprovalRecord]) -> tuple[int, set[ErrorCode]]:
    """Submit each approval live at once; returns (orders placed, refusal codes)."""
    placed = 0
    codes: set[ErrorCode] = set()

    async def one(n: int, approval: ApprovalRecord) -> None:
        nonlocal placed
        try:
            await desk.call("submit_live_order", desk.submit_args(approval, f"race-{n}"), switches=LIVE_CP)
            placed += 1
        except GatewayError as exc:
            codes.add(exc.code)

    async with anyio.create_task_group() as group:
        for n, approval in enumerate(approvals):
            group.start_soon(one, n, approval)
    return placed, codes


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        pytest.param({"max_orders_per_window": 1}, ErrorCode.LIVE_FREQUENCY_LIMIT_REFUSED, id="per-window"),
        pytest.param({"max_orders_per_day": 1}, ErrorCode.LIVE_DAILY_ORDER_LIMIT_REFUSED, id="per-day"),
        pytest.param({"max_notional_per_day": "250"}, ErrorCode.LIVE_DAILY_NOTIONAL_LIMIT_REFUSED, id="notional"),
    ],
)
async def test_six_concurrent_live_submits_respect_a_budget_of_one(
    tmp_path: Path, sim: SimulatorState, limits: dict[str, object], code: ErrorCode
) -> None:
    """The budgets are checked in the transaction that reserves the order: six racers, one order."""
    async with running_desk(tmp_path / "state", sim, Clock(), live_policy(**limits)) as desk:
        approvals = [await desk.approved(mode="live", limit_price="200") for _ in range(6)]
        before = len(sim.placements)
        placed, codes = await race(desk, approvals)
        assert placed == 1
        assert codes == {code}
        assert len(sim.placements) - before == 1
        limits_now = await desk.call("limits_status", {"account_id": ACCOUNT})
        assert limits_now.orders_today == 1
