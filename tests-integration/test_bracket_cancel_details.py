"""A bracket cancel leg by leg: each leg's cancel status, a leg the broker no longer knows reported unknown,
a bracket none of whose legs the broker accepts refused, and any other broker failure passed on."""

from pathlib import Path
from typing import Any

import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, AGENTS_MAY_TRADE_PAPER, PAPER, Clock, Desk, running_desk
from test_brackets_and_modify import approved_bracket, paper_bracket

pytestmark = pytest.mark.anyio


def cancel_args(order_id: str | None, key: str) -> dict[str, Any]:
    return {"account_id": ACCOUNT, "broker_order_id": order_id, "idempotency_key": key}


async def placed_bracket(desk: Desk, key: str) -> list[str]:
    placed = await paper_bracket(desk, await approved_bracket(desk), key)
    ids = [str(leg.broker_order_id) for leg in placed.legs]
    assert len(ids) == 3 and all(ids)
    return ids


async def test_each_leg_reports_its_cancel_and_an_unknown_leg_is_unknown(tmp_path: Path) -> None:
    sim = SimulatorState()
    async with running_desk(tmp_path / "state", sim, Clock(), AGENTS_MAY_TRADE_PAPER) as desk:
        parent, take_profit, stop_loss = await placed_bracket(desk, "b")
        sim.fail_next(400, {"error": f"OrderID {take_profit} doesn't exist"}, path_contains=f"/order/{take_profit}")
        cancelled = await desk.call("cancel_paper_bracket_order", cancel_args(parent, "c"), switches=PAPER)
        statuses = {leg.broker_order_id: (leg.status, leg.broker_status) for leg in cancelled.legs}
        assert statuses[take_profit] == ("unknown", None)
        assert statuses[parent][0] == statuses[stop_loss][0] == "pending_cancel"
        assert (cancelled.status, cancelled.broker_status) == (statuses[parent][0], statuses[parent][1])
        assert [leg.role for leg in cancelled.legs] == ["parent", "take_profit", "stop_loss"]


async def test_a_bracket_no_leg_of_which_the_broker_knows_is_refused(tmp_path: Path) -> None:
    sim = SimulatorState()
    async with running_desk(tmp_path / "state", sim, Clock(), AGENTS_MAY_TRADE_PAPER) as desk:
        legs = await placed_bracket(desk, "b")
        for leg in legs:
            sim.fail_next(400, {"error": f"OrderID {leg} doesn't exist"}, path_contains=f"/order/{leg}")
        code = await desk.code_of("cancel_paper_bracket_order", cancel_args(legs[0], "c"), switches=PAPER)
        assert code is ErrorCode.BROKER_RESPONSE_INVALID


async def test_a_broker_failure_on_a_leg_is_passed_on(tmp_path: Path) -> None:
    sim = SimulatorState()
    async with running_desk(tmp_path / "state", sim, Clock(), AGENTS_MAY_TRADE_PAPER) as desk:
        legs = await placed_bracket(desk, "b")
        sim.fail_next(502, {"error": "bad gateway"}, path_contains=f"/order/{legs[0]}")
        code = await desk.code_of("cancel_paper_bracket_order", cancel_args(legs[0], "c"), switches=PAPER)
        assert code is ErrorCode.BROKER_OUTCOME_UNKNOWN
