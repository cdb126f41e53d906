"""A submit whose answer was lost is settled by its cOID: the same key returns the order the broker holds,
with the broker's status and the cOID it was sent with, and never places a second one."""

from pathlib import Path

import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import PAPER, Clock, running_desk

pytestmark = pytest.mark.anyio


async def test_a_lost_answer_settles_to_the_brokers_order_with_its_status(tmp_path: Path) -> None:
    sim = SimulatorState()
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        approval = await desk.approved()
        args = desk.submit_args(approval, "k")
        sim.drop_response_after_accept()
        assert await desk.code_of("submit_paper_order", args, switches=PAPER) is ErrorCode.BROKER_OUTCOME_UNKNOWN
        [order] = sim.placements
        settled = await desk.call("submit_paper_order", args, switches=PAPER)
        assert settled.broker_order_id == str(order.order_id)
        assert settled.client_order_id is not None
        assert desk.orders_with(settled.client_order_id) == 1
        assert settled.broker_status == sim.book.orders[order.order_id].status
        assert settled.status == "submitted"
