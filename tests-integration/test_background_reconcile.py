"""Long-running servers reconcile by themselves: an unknown outcome left by a lost answer (or by an earlier
process) is settled by cOID without anyone calling `orders reconcile`, and a quiet gateway writes nothing."""

from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_core.orders.reconciler import BackgroundReconciler, reconcile_in_background
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import AGENT, AGENTS_MAY_TRADE_PAPER, Clock, running_desk

pytestmark = pytest.mark.anyio


async def _fast(_: float) -> None:
    await anyio.sleep(0.01)


async def test_a_lost_answer_is_settled_in_the_background_and_the_same_key_replays_it(tmp_path: Path) -> None:
    sim, clock = SimulatorState(), Clock()
    async with running_desk(tmp_path / "state", sim, clock, AGENTS_MAY_TRADE_PAPER) as desk:
        lost = desk.submit_args(await desk.approved(), "lost")
        sim.drop_response_after_accept()
        assert await desk.code_of("submit_paper_order", lost, principal=AGENT) is ErrorCode.BROKER_OUTCOME_UNKNOWN
        assert await desk.gateway.unfinished_orders() == 1
        clock.now += timedelta(seconds=31)  # past orders.recovery_min_age_seconds
        async with reconcile_in_background(desk.gateway, sleep=_fast) as reconciler:
            assert reconciler is not None
            with anyio.fail_after(10):
                while reconciler.passes == 0:  # the pass itself, not only its effect in the store
                    await anyio.sleep(0.02)
        assert await desk.gateway.unfinished_orders() == 0
        assert reconciler.last_report is not None and reconciler.last_report.recovered == 1
        settled = await desk.call("submit_paper_order", lost, principal=AGENT)
        assert settled.replayed and desk.orders_with(settled.client_order_id) == 1
    assert len(sim.placements) == 1


async def test_work_left_by_an_earlier_process_is_picked_up_after_a_restart(tmp_path: Path) -> None:
    sim, clock = SimulatorState(), Clock()
    async with running_desk(tmp_path / "state", sim, clock, AGENTS_MAY_TRADE_PAPER) as desk:
        lost = desk.submit_args(await desk.approved(), "lost")
        sim.drop_response_after_accept()
        await desk.code_of("submit_paper_order", lost, principal=AGENT)
    clock.now += timedelta(seconds=31)
    async with running_desk(tmp_path / "state", sim, clock, AGENTS_MAY_TRADE_PAPER) as desk:
        reconciler = BackgroundReconciler(desk.gateway, interval_s=1, sleep=_fast)
        report = await reconciler.step()
        assert report is not None and report.recovered == 1
        assert await desk.gateway.unfinished_orders() == 0
        assert (await desk.call("submit_paper_order", lost, principal=AGENT)).replayed


async def test_a_quiet_gateway_runs_no_pass_and_writes_no_audit_event(tmp_path: Path) -> None:
    async with running_desk(tmp_path / "state", SimulatorState(), Clock(), AGENTS_MAY_TRADE_PAPER) as desk:
        await desk.call("list_accounts", {})
        before = (await desk.gateway.audit.tail(1))[-1].sequence
        reconciler = BackgroundReconciler(desk.gateway, interval_s=1, sleep=_fast)
        assert await reconciler.step() is None
        assert reconciler.passes == 0
        assert (await desk.gateway.audit.tail(1))[-1].sequence == before


async def test_background_reconciliation_can_be_switched_off(tmp_path: Path) -> None:
    off = {
        **AGENTS_MAY_TRADE_PAPER,
        "orders": {**AGENTS_MAY_TRADE_PAPER["orders"], "background_reconcile_seconds": None},
    }
    async with running_desk(tmp_path / "state", SimulatorState(), Clock(), off) as desk:
        async with reconcile_in_background(desk.gateway) as reconciler:
            assert reconciler is None
