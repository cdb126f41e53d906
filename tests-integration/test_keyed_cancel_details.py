"""Cancels are idempotent per key like submits: the same key replays without a second broker call, the same key
for another order is a conflict, and paper and live keys never meet."""

from pathlib import Path
from typing import Any

import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, PAPER, Clock, Desk, running_desk
from test_attack_exposure import LIVE_CP

pytestmark = pytest.mark.anyio


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


def cancel_args(order_id: str, key: str) -> dict[str, Any]:
    return {"account_id": ACCOUNT, "broker_order_id": order_id, "idempotency_key": key}


def cancel_calls(sim: SimulatorState) -> int:
    return sum(1 for r in sim.requests if r.method == "DELETE" and "/order/" in r.path)


async def paper_order(desk: Desk, key: str) -> str:
    placed = await desk.submit(await desk.approved(), key)
    return str(placed.broker_order_id)


async def test_the_same_cancel_key_replays_without_a_second_broker_call(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        order = await paper_order(desk, "o1")
        first = await desk.call("cancel_paper_order", cancel_args(order, "c"), switches=PAPER)
        assert (first.status, first.replayed, first.broker_order_id) == ("pending_cancel", False, order)
        again = await desk.call("cancel_paper_order", cancel_args(order, "c"), switches=PAPER)
        assert again.replayed is True
        assert again.model_copy(update={"replayed": False}) == first
        assert cancel_calls(sim) == 1
        assert sim.book.orders[int(order)].status == "Cancelled"


async def test_one_cancel_key_for_another_order_is_a_conflict_and_another_key_is_a_new_cancel(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        first, second = await paper_order(desk, "o1"), await paper_order(desk, "o2")
        await desk.call("cancel_paper_order", cancel_args(first, "c"), switches=PAPER)
        code = await desk.code_of("cancel_paper_order", cancel_args(second, "c"), switches=PAPER)
        assert code is ErrorCode.IDEMPOTENCY_CONFLICT
        assert sim.book.orders[int(second)].status != "Cancelled"
        other = await desk.call("cancel_paper_order", cancel_args(second, "d"), switches=PAPER)
        assert (other.status, other.replayed, other.broker_order_id) == ("pending_cancel", False, second)
        assert cancel_calls(sim) == 2


async def test_paper_and_live_cancel_keys_never_meet(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        paper = await paper_order(desk, "o1")
        live = await desk.call(
            "submit_live_order", desk.submit_args(await desk.approved(mode="live"), "o2"), switches=LIVE_CP
        )
        await desk.call("cancel_paper_order", cancel_args(paper, "same"), switches=PAPER)
        cancelled = await desk.call(
            "cancel_live_order", cancel_args(str(live.broker_order_id), "same"), switches=LIVE_CP
        )
        assert (cancelled.mode, cancelled.status, cancelled.replayed) == ("live", "pending_cancel", False)
        assert sim.book.orders[int(str(live.broker_order_id))].status == "Cancelled"
