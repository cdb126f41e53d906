"""Cancels are idempotent per key like submits: the same key replays without a second broker call, the same key
for another order is a conflict, and paper and live keys never meet."""

from pathlib import Path
from typing import Any

import anyio
import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, OPERATOR, PAPER, Clock, Desk, running_desk
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


async def test_a_cancel_names_the_event_of_its_call_and_a_replay_keeps_it(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        order = await paper_order(desk, "o1")
        called = await desk.gateway.call(
            "cancel_paper_order", cancel_args(order, "c"), principal=OPERATOR, switches=PAPER
        )
        assert called.value.audit_event_id == called.audit_event_id
        again = await desk.gateway.call(
            "cancel_paper_order", cancel_args(order, "c"), principal=OPERATOR, switches=PAPER
        )
        assert again.value.audit_event_id == called.audit_event_id != again.audit_event_id


async def test_a_cancel_the_broker_refuses_is_a_coded_error_and_stores_nothing(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        order = await paper_order(desk, "o1")
        sim.fail_next(400, {"error": "Order cannot be cancelled"}, path_contains=f"/order/{order}")
        code = await desk.code_of("cancel_paper_order", cancel_args(order, "c"), switches=PAPER)
        assert code is ErrorCode.BROKER_RESPONSE_INVALID
        retried = await desk.call("cancel_paper_order", cancel_args(order, "c"), switches=PAPER)
        assert (retried.status, retried.replayed) == ("pending_cancel", False)
        assert cancel_calls(sim) == 2


async def test_a_cancel_the_broker_confirms_at_once_is_final_and_leaves_the_backlog(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        placed = await desk.call(
            "submit_live_order", desk.submit_args(await desk.approved(mode="live"), "o"), switches=LIVE_CP
        )
        order = str(placed.broker_order_id)
        answer = {"msg": "Request was submitted", "order_id": int(order), "order_status": "Cancelled"}
        sim.fail_next(200, answer, path_contains=f"/order/{order}")
        cancelled = await desk.call("cancel_live_order", cancel_args(order, "c"), switches=LIVE_CP)
        assert (cancelled.mode, cancelled.status, cancelled.broker_status) == ("live", "cancelled", "Cancelled")
        report = await desk.call("reconcile_orders", {})
        assert report.scanned == 0  # the confirmed cancel took the order off the reconciliation backlog


async def test_concurrent_cancels_with_one_key_settle_as_one(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        order = await paper_order(desk, "o1")
        results: list[Any] = []

        async def one() -> None:
            results.append(await desk.call("cancel_paper_order", cancel_args(order, "same"), switches=PAPER))

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(one)
        assert sorted(r.replayed for r in results) == [False, True, True, True]
        first = next(r for r in results if not r.replayed)
        assert all(r.model_copy(update={"replayed": False}) == first for r in results)
