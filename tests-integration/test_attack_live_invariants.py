"""Live invariants an attacker (or a one-line regression) would break: a real-broker config is never opened by
the operator's flags, the trading day is the configured zone's, cancels go through the writer that placed the
order, a refused placement gives its approval back, and a writer's surprise is an unknown outcome."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_core.orders.writers import LocalCandidateWriter
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, Clock, running_desk
from test_attack_exposure import LIVE_CP, live_policy

pytestmark = pytest.mark.anyio

LIVE_LOCAL = (LIVE_CP - {"live_broker:client-portal"}) | {"live_broker:local-candidate"}

REAL_BROKER: dict[str, Any] = {
    "broker": {"backend": "client_portal_gateway", "base_url": "https://127.0.0.1:5000"},
    "orders": {"operator_scopes": ["with_live"]},
}
"""A real-broker configuration (the simulator answers behind it): the operator's flags cannot open live."""

REAL_LIVE: dict[str, Any] = {
    **REAL_BROKER,
    "safety": {"live_trading_enabled": True},
    "risk_policies": [{"policy_id": "live"}],
    "live_trading": {
        "enabled": True,
        "allowed_accounts": [ACCOUNT],
        "risk_policy_id": "live",
        "paper_to_live_checklist_acknowledged": True,
    },
}


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


async def test_enable_live_does_not_override_a_real_brokers_config(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(), REAL_BROKER) as desk:
        approval = await desk.approved(mode="live")
        code = await desk.code_of("submit_live_order", desk.submit_args(approval, "k"), switches=LIVE_LOCAL)
        assert code is ErrorCode.LIVE_TRADING_DISABLED


async def test_open_kill_switch_does_not_reopen_a_closed_switch_on_a_real_broker(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(), REAL_LIVE) as desk:
        await desk.call("close_kill_switch", {"reason": "closed on purpose"})
        approval = await desk.approved(mode="live")
        code = await desk.code_of("submit_live_order", desk.submit_args(approval, "k"), switches=LIVE_CP)
        assert code is ErrorCode.LIVE_KILL_SWITCH_CLOSED
        assert (await desk.call("kill_switch_status", {})).state == "closed"
        assert sim.placements == []
        await desk.call("open_kill_switch", {"reason": "the operator, on purpose"})
        placed = await desk.call("submit_live_order", desk.submit_args(approval, "k2"), switches=LIVE_CP)
        assert placed.status == "submitted"


async def test_the_trading_day_is_the_configured_zones(tmp_path: Path, sim: SimulatorState) -> None:
    """18:30 and 19:30 in New York on one day are 23:30 and 00:30 UTC on two: one day's budget."""
    clock = Clock(datetime(2026, 12, 6, 23, 30, tzinfo=UTC))
    async with running_desk(tmp_path / "state", sim, clock, live_policy(max_orders_per_day=1)) as desk:
        await desk.call("submit_live_order", desk.submit_args(await desk.approved(mode="live"), "a"), switches=LIVE_CP)
        clock.now = datetime(2026, 12, 7, 0, 30, tzinfo=UTC)
        approval = await desk.approved(mode="live")
        code = await desk.code_of("submit_live_order", desk.submit_args(approval, "b"), switches=LIVE_CP)
        assert code is ErrorCode.LIVE_DAILY_ORDER_LIMIT_REFUSED
        clock.now = datetime(2026, 12, 7, 5, 30, tzinfo=UTC)  # 00:30 in New York: a new trading day
        approval = await desk.approved(mode="live")
        placed = await desk.call("submit_live_order", desk.submit_args(approval, "c"), switches=LIVE_CP)
        assert placed.status == "submitted"


async def test_a_live_cancel_goes_through_the_writer_that_placed_the_order(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        placed = await desk.call(
            "submit_live_order", desk.submit_args(await desk.approved(mode="live"), "p"), switches=LIVE_CP
        )
        cancel = {"account_id": ACCOUNT, "broker_order_id": placed.broker_order_id, "idempotency_key": "c"}
        cancelled = await desk.call("cancel_live_order", cancel, switches=LIVE_LOCAL)  # asks for local-candidate
        assert cancelled.writer == "client-portal"
        assert sim.book.orders[int(placed.broker_order_id)].status == "Cancelled"


async def test_a_refused_placement_gives_its_approval_back(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        approval = await desk.approved()
        sim.fail_next(400, {"error": "Order rejected: insufficient funds"}, path_contains="/orders")
        first = await desk.code_of(
            "submit_paper_order", desk.submit_args(approval, "one"), switches=frozenset({"enable_paper"})
        )
        assert first is not ErrorCode.BROKER_OUTCOME_UNKNOWN
        listed = await desk.call("list_approvals", {"account_id": ACCOUNT})
        assert [a.status for a in listed] == ["approved"]
        placed = await desk.submit(approval, "two")
        assert desk.orders_with(placed.client_order_id) == 1


async def test_a_writers_surprise_is_an_unknown_outcome(
    tmp_path: Path, sim: SimulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception may have sent the order: stored unknown, so the account's next submit waits."""

    async def explode(self: LocalCandidateWriter, *args: object, **kwargs: object) -> None:
        raise RuntimeError("writer bug")

    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        monkeypatch.setattr(LocalCandidateWriter, "place", explode)
        approval = await desk.approved(mode="live")
        code = await desk.code_of("submit_live_order", desk.submit_args(approval, "boom"), switches=LIVE_LOCAL)
        assert code is ErrorCode.BROKER_OUTCOME_UNKNOWN
        monkeypatch.undo()
        other = await desk.approved(mode="live")
        code = await desk.code_of("submit_live_order", desk.submit_args(other, "next"), switches=LIVE_LOCAL)
        assert code is ErrorCode.ORDER_OUTCOME_PENDING
