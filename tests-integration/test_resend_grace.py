"""An unknown outcome is never resent blindly: the same key first looks the order up by cOID, and sends it
again (same cOID) only once the grace period has passed since the last attempt, to the second. The
local-candidate writer sends nothing to a broker, so it has no grace to wait for."""

from datetime import timedelta
from pathlib import Path

import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders.writers import LocalCandidateWriter
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import PAPER, Clock, running_desk
from test_attack_live_invariants import LIVE_LOCAL

pytestmark = pytest.mark.anyio

GRACE = 60.0  # orders.unknown_resend_after_seconds, the default


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


async def test_an_unknown_placement_is_resent_only_after_the_grace_period(tmp_path: Path, sim: SimulatorState) -> None:
    clock = Clock()
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        approval = await desk.approved()
        args = desk.submit_args(approval, "k")
        sim.fail_next(500, {"error": "internal error"}, path_contains="/orders")
        assert await desk.code_of("submit_paper_order", args, switches=PAPER) is ErrorCode.BROKER_OUTCOME_UNKNOWN
        assert sim.placements == []
        started = clock.now
        clock.now = started + timedelta(seconds=GRACE) - timedelta(microseconds=1)
        with pytest.raises(GatewayError) as waiting:
            await desk.call("submit_paper_order", args, switches=PAPER)
        assert (waiting.value.code, waiting.value.retryable) == (ErrorCode.BROKER_OUTCOME_UNKNOWN, True)
        assert sim.placements == []  # looked up by cOID, not sent again
        clock.now = started + timedelta(seconds=GRACE)
        placed = await desk.call("submit_paper_order", args, switches=PAPER)
        assert placed.status == "submitted"
        assert desk.orders_with(placed.client_order_id) == 1


async def test_a_local_candidate_with_an_unknown_outcome_is_settled_at_once(
    tmp_path: Path, sim: SimulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(self: LocalCandidateWriter, *args: object, **kwargs: object) -> None:
        raise RuntimeError("writer bug")

    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        approval = await desk.approved(mode="live")
        args = desk.submit_args(approval, "k")
        monkeypatch.setattr(LocalCandidateWriter, "place", explode)
        code = await desk.code_of("submit_live_order", args, switches=LIVE_LOCAL)
        assert code is ErrorCode.BROKER_OUTCOME_UNKNOWN
        monkeypatch.undo()
        placed = await desk.call("submit_live_order", args, switches=LIVE_LOCAL)  # no clock change
        assert (placed.status, placed.writer) == ("submitted", "local-candidate")
        assert str(placed.broker_order_id) == f"local-candidate-{placed.client_order_id}"


async def test_a_rejected_placement_replays_its_code_for_the_same_key_and_frees_the_approval(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        approval = await desk.approved()
        args = desk.submit_args(approval, "k")
        sim.fail_next(400, {"error": "Order rejected: insufficient funds"}, path_contains="/orders")
        with pytest.raises(GatewayError) as first:
            await desk.call("submit_paper_order", args, switches=PAPER)
        assert first.value.code is ErrorCode.ORDER_VALIDATION_FAILED
        requests = len(sim.requests)
        with pytest.raises(GatewayError) as replayed:
            await desk.call("submit_paper_order", args, switches=PAPER)
        assert replayed.value.code is ErrorCode.ORDER_VALIDATION_FAILED
        assert "insufficient funds" in replayed.value.message
        assert replayed.value.details == first.value.details != {}
        assert len(sim.requests) == requests  # the stored result, no broker call
        listed = await desk.call("list_approvals", {"account_id": approval.account_id})
        assert [(a.approval_id, a.status) for a in listed] == [(approval.approval_id, "approved")]
