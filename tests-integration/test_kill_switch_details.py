"""The kill switch's details a regression would break unnoticed: what a close cancels, who and when a change
records, and exactly one audit event per open or close (a side effect gets its own, with its payload)."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from ibkr_gateway_core.call_context import Switch
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import AGENT, OPERATOR, Clock, Desk, running_desk
from test_attack_exposure import LIVE_CP

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


async def place_live(desk: Desk, key: str, switches: frozenset[str] = LIVE_CP) -> str:
    placed = await desk.call(
        "submit_live_order", desk.submit_args(await desk.approved(mode="live"), key), switches=switches
    )
    assert placed.status == "submitted"
    return str(placed.broker_order_id)


async def test_a_close_cancels_every_tracked_live_order_and_goes_on_past_a_failed_cancel(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        first = await place_live(desk, "one")
        second = await place_live(desk, "two")
        sim.fail_next(500, {"error": "cancel failed"}, path_contains=f"/order/{first}")
        closed = await desk.call("close_kill_switch", {"reason": "stop everything"})
        assert closed.state == "closed"
        assert closed.cancelled_orders == [second]
        assert sim.book.orders[int(second)].status == "Cancelled"
        assert sim.book.orders[int(first)].status != "Cancelled"


async def test_a_close_without_cancelling_keeps_the_working_orders(tmp_path: Path, sim: SimulatorState) -> None:
    extra = {"live_trading": {"cancel_working_orders_on_close": False}}
    async with running_desk(tmp_path / "state", sim, Clock(NOW), extra) as desk:
        order = await place_live(desk, "one")
        closed = await desk.call("close_kill_switch", {"reason": "stop new orders only"})
        assert (closed.state, closed.cancelled_orders) == ("closed", [])
        assert sim.book.orders[int(order)].status != "Cancelled"


async def test_open_and_close_record_who_when_why_and_one_event_each(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        closed = await desk.gateway.call("close_kill_switch", {"reason": "by hand"}, principal=AGENT)
        state = closed.value
        assert (state.state, state.changed_by, state.changed_at, state.reason) == ("closed", "stdio", NOW, "by hand")
        assert state.audit_event_id == closed.audit_event_id
        opened = await desk.gateway.call("open_kill_switch", {"reason": "resume"}, principal=OPERATOR)
        assert (opened.value.state, opened.value.changed_by, opened.value.audit_event_id) == (
            "open",
            "op",
            opened.audit_event_id,
        )
        status = await desk.call("kill_switch_status", {})
        assert (status.state, status.changed_by, status.changed_at, status.reason) == ("open", "op", NOW, "resume")
        assert status.audit_event_id == opened.audit_event_id
        events = [record.event for record in await desk.gateway.audit.tail(1000)]
        changes = [(e.operation, e.event_id) for e in events if e.event_type == "kill_switch_changed"]
        assert changes == [  # the two calls' own events, no separate change event
            ("open_kill_switch", opened.audit_event_id),
            ("close_kill_switch", closed.audit_event_id),
        ]


async def test_the_simulators_flag_opens_the_switch_with_its_own_change_event(
    tmp_path: Path, sim: SimulatorState
) -> None:
    """On the simulator, `--open-kill-switch` opens a closed switch: a side effect, audited as its own event."""
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        await desk.call("close_kill_switch", {"reason": "closed"})
        approval = await desk.approved(mode="live")
        placed = await desk.call("submit_live_order", desk.submit_args(approval, "k"), switches=LIVE_CP)
        assert placed.status == "submitted"
        status = await desk.call("kill_switch_status", {})
        assert (status.state, status.changed_by, status.changed_at) == ("open", "op", NOW)
        events = [r.event for r in await desk.gateway.audit.tail(1000)]
        changes = [e for e in events if e.operation == "order_desk"]
        assert len(changes) == 1  # the calls' own events name their operation; the side effect is the desk's
        assert changes[0].metadata == {
            "from": "closed",
            "to": "open",
            "reason": "opened by --open-kill-switch (simulator)",
        }
        assert Switch.OPEN_KILL_SWITCH in LIVE_CP
