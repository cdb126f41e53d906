"""The live desk's details: the local-candidate writer withdraws only its own candidates of that account,
`limits_status` reports each budget exactly, and reconciliation counts what it scanned, changed and finished."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, AGENT, Clock, Desk, running_desk
from test_attack_exposure import AAPL, LIVE_CP, live_policy
from test_attack_live_invariants import LIVE_LOCAL
from test_brackets_and_modify import LIVE_FOR_AGENTS

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # 10:00 in New York
OTHER_ACCOUNT = "DU7654321"


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


def cancel_args(order_id: str, key: str, account: str = ACCOUNT) -> dict[str, Any]:
    return {"account_id": account, "broker_order_id": order_id, "idempotency_key": key}


async def live(desk: Desk, key: str, switches: frozenset[str] = LIVE_CP) -> Any:
    approval = await desk.approved(mode="live")
    return await desk.call("submit_live_order", desk.submit_args(approval, key), switches=switches)


async def test_the_local_candidate_writer_withdraws_only_its_own_candidates(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        candidate = await live(desk, "cand", LIVE_LOCAL)
        assert str(candidate.broker_order_id).startswith("local-candidate-")
        at_broker = await live(desk, "real")
        refused = [
            cancel_args("local-candidate-iag-unknown", "x1"),  # a candidate it never made
            cancel_args("999999", "x2"),  # a broker order id the gateway does not track
            cancel_args(f"local-candidate-{at_broker.client_order_id}", "x3"),  # a cOID sent through another writer
            cancel_args(str(candidate.broker_order_id), "x4", OTHER_ACCOUNT),  # its candidate, another account
        ]
        for args in refused:
            assert await desk.code_of("cancel_live_order", args, switches=LIVE_LOCAL) is ErrorCode.INPUT_UNKNOWN_ORDER
        assert sim.book.orders[int(str(at_broker.broker_order_id))].status != "Cancelled"
        withdrawn = await desk.call(
            "cancel_live_order", cancel_args(str(candidate.broker_order_id), "ok"), switches=LIVE_LOCAL
        )
        assert (withdrawn.mode, withdrawn.writer, withdrawn.broker_order_id) == (
            "live",
            "local-candidate",
            candidate.broker_order_id,
        )


async def test_a_paper_cancel_names_its_writer(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        placed = await desk.submit(await desk.approved(), "p")
        cancelled = await desk.call(
            "cancel_paper_order", cancel_args(str(placed.broker_order_id), "c"), switches=frozenset({"enable_paper"})
        )
        assert (cancelled.mode, cancelled.writer) == ("paper", "client-portal")


async def test_limits_status_reports_each_budget_exactly(tmp_path: Path, sim: SimulatorState) -> None:
    limits = live_policy(
        max_orders_per_window=5, window_seconds=600, max_orders_per_day=3, max_notional_per_day="250", max_quantity=10
    )
    async with running_desk(tmp_path / "state", sim, Clock(NOW), limits) as desk:
        await live(desk, "a")
        status = await desk.call("limits_status", {"account_id": ACCOUNT})
        assert (status.account_id, status.policy_id, status.trading_day, status.timezone) == (
            ACCOUNT,
            "live",
            date(2026, 12, 7),
            "America/New_York",
        )
        assert (status.orders_in_window, status.max_orders_per_window, status.remaining_orders_in_window) == (1, 5, 4)
        assert (status.orders_today, status.max_orders_per_day, status.remaining_orders_today) == (1, 3, 2)
        assert (status.notional_today, status.max_notional_per_day, status.remaining_notional_today) == (
            Decimal(100),
            Decimal(250),
            Decimal(150),
        )
        assert (status.window_seconds, status.max_quantity, status.kill_switch) == (600, Decimal(10), "open")
        await live(desk, "b")
        status = await desk.call("limits_status", {"account_id": ACCOUNT})
        assert (status.remaining_orders_today, status.remaining_notional_today) == (1, Decimal(50))
        await desk.call("close_kill_switch", {"reason": "stop"})
        status = await desk.call("limits_status", {"account_id": ACCOUNT})
        assert status.kill_switch == "closed"


async def test_limits_status_without_budgets_reports_none_left_unbounded(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW), live_policy()) as desk:
        status = await desk.call("limits_status", {"account_id": ACCOUNT})
        assert (status.remaining_orders_today, status.remaining_orders_in_window, status.remaining_notional_today) == (
            None,
            None,
            None,
        )
        assert (status.orders_today, status.notional_today) == (0, Decimal(0))


async def test_an_exhausted_notional_budget_shows_zero_left_never_negative(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW), live_policy(max_notional_per_day="100")) as desk:
        await live(desk, "a")
        status = await desk.call("limits_status", {"account_id": ACCOUNT})
        assert status.remaining_notional_today == Decimal(0)


async def test_an_undefined_live_policy_is_refused_by_limits_status(tmp_path: Path, sim: SimulatorState) -> None:
    extra = {"live_trading": {"risk_policy_id": "nowhere"}}
    async with running_desk(tmp_path / "state", sim, Clock(NOW), extra) as desk:
        code = await desk.code_of("limits_status", {"account_id": ACCOUNT})
        assert code is ErrorCode.LIVE_POLICY_UNKNOWN


async def test_reconciliation_counts_scanned_changed_and_finished_orders(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        first = await live(desk, "a")
        await live(desk, "b")
        report = await desk.call("reconcile_orders", {})
        assert (report.scanned, report.transitions, report.completed, report.unresolved) == (2, 0, 0, 0)
        sim.book.orders[int(str(first.broker_order_id))].status = "Cancelled"
        report = await desk.call("reconcile_orders", {})
        assert (report.scanned, report.transitions, report.completed, report.unresolved) == (2, 1, 1, 0)
        changes = [
            r.event for r in await desk.gateway.audit.tail(50) if r.event.event_type == "live_order_lifecycle_changed"
        ]
        assert changes[0].metadata["broker_order_id"] == first.broker_order_id
        assert changes[0].metadata["current_status"] == "cancelled"
        report = await desk.call("reconcile_orders", {})
        assert (report.scanned, report.transitions, report.completed) == (1, 0, 0)


async def test_reconciliation_counts_an_order_it_cannot_read_and_goes_on(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        first = await live(desk, "a")
        second = await live(desk, "b")
        sim.book.orders[int(str(second.broker_order_id))].status = "Cancelled"
        sim.fail_next(503, {"error": "unavailable"}, path_contains=f"/order/status/{first.broker_order_id}")
        report = await desk.call("reconcile_orders", {})
        assert (report.scanned, report.unresolved, report.transitions, report.completed) == (2, 1, 1, 1)
        report = await desk.call("reconcile_orders", {})
        assert (report.scanned, report.unresolved, report.completed) == (1, 0, 0)


async def test_limits_status_names_the_caps_and_the_trading_day_of_the_configured_zone(
    tmp_path: Path, sim: SimulatorState
) -> None:
    limits = live_policy(max_orders_per_window=1, max_orders_per_day=1, max_notional="5000", allowed_symbols=["AAPL"])
    extra = {**limits, "live_trading": {**limits["live_trading"], "trading_day_timezone": "Asia/Tokyo"}}
    async with running_desk(tmp_path / "state", sim, Clock(NOW), extra) as desk:  # 00:00 the next day in Tokyo
        await live(desk, "a")
        status = await desk.call("limits_status", {"account_id": ACCOUNT})
        assert (status.trading_day, status.timezone) == (date(2026, 12, 8), "Asia/Tokyo")
        assert (status.remaining_orders_in_window, status.remaining_orders_today) == (0, 0)
        assert (status.max_notional, status.allowed_symbols) == (Decimal(5000), ["AAPL"])


async def test_each_lifecycle_change_is_audited_with_its_account_statuses_and_fill(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        cancelled, filled, unread, unread_too = [await live(desk, key) for key in ("a", "b", "c", "d")]
        sim.book.orders[int(str(cancelled.broker_order_id))].status = "Cancelled"
        sim.set_quote(AAPL, bid=Decimal("98.90"), ask=Decimal("99"))  # the other buys at 100 fill
        for order in (unread, unread_too):
            sim.fail_next(503, {"error": "unavailable"}, path_contains=f"/order/status/{order.broker_order_id}")
        report = await desk.call("reconcile_orders", {})
        assert (report.scanned, report.transitions, report.completed, report.unresolved) == (4, 2, 2, 2)
        events = [
            r.event for r in await desk.gateway.audit.tail(20) if r.event.event_type == "live_order_lifecycle_changed"
        ]
        seen = {e.metadata["broker_order_id"]: e for e in events if e.operation == "order_desk"}
        assert set(seen) == {cancelled.broker_order_id, filled.broker_order_id}
        assert {k: seen[cancelled.broker_order_id].metadata[k] for k in ("previous_status", "current_status")} == {
            "previous_status": "submitted",
            "current_status": "cancelled",
        }
        assert seen[cancelled.broker_order_id].metadata["filled_quantity"] is None
        assert seen[filled.broker_order_id].metadata["current_status"] == "filled"
        assert seen[filled.broker_order_id].metadata["filled_quantity"] == "1"
        assert {e.account_id_hash for e in seen.values()} == {desk.gateway.audit.account_hash(ACCOUNT)}
        limits = await desk.call("limits_status", {"account_id": ACCOUNT})
        assert limits.notional_today == Decimal(400)  # filled at 99: the worst case (100 each) stays counted


async def test_reconciliation_reports_the_unknown_writes_it_could_not_settle(
    tmp_path: Path, sim: SimulatorState
) -> None:
    clock = Clock(NOW)
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        approval = await desk.approved(mode="live")
        sim.fail_next(500, {"error": "internal error"}, path_contains="/orders")
        code = await desk.code_of("submit_live_order", desk.submit_args(approval, "k"), switches=LIVE_CP)
        assert code is ErrorCode.BROKER_OUTCOME_UNKNOWN
        clock.now = NOW + timedelta(minutes=5)  # past the recovery age: the record is looked up, and not found
        report = await desk.call("reconcile_orders", {})
        assert (report.recovered, report.unresolved_records) == (0, 1)


async def test_the_trading_day_and_the_window_begin_at_their_first_instant(tmp_path: Path, sim: SimulatorState) -> None:
    """New York's day begins at 05:00 UTC in December: an order at that instant is today's, one a microsecond
    earlier yesterday's; an order exactly `window_seconds` old is still in the window."""
    midnight = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
    clock = Clock(midnight - timedelta(microseconds=1))
    async with running_desk(tmp_path / "state", sim, clock, live_policy(window_seconds=600)) as desk:
        await live(desk, "yesterday")
        clock.now = midnight
        await live(desk, "first-instant")
        clock.now = midnight + timedelta(seconds=1)
        await live(desk, "second")
        clock.now = midnight + timedelta(seconds=61, microseconds=1)  # 00:01:01.000001 in New York
        status = await desk.call("limits_status", {"account_id": ACCOUNT})
        assert (status.trading_day, status.orders_today, status.notional_today) == (date(2026, 12, 7), 2, 200)
        assert status.orders_in_window == 3
        clock.now = midnight + timedelta(seconds=600)  # the first-instant order is exactly 600 s old
        status = await desk.call("limits_status", {"account_id": ACCOUNT})
        assert (status.orders_in_window, status.orders_today) == (2, 2)


async def test_the_live_writer_is_one_of_three_and_only_the_operator_picks_it(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        approval = await desk.approved(mode="live")
        bogus = (LIVE_CP - {"live_broker:client-portal"}) | {"live_broker:carrier-pigeon"}
        code = await desk.code_of("submit_live_order", desk.submit_args(approval, "k"), switches=bogus)
        assert code is ErrorCode.INPUT_INVALID_ARGUMENT
        assert sim.placements == []
    configured = LIVE_FOR_AGENTS
    async with running_desk(tmp_path / "agents", sim, Clock(NOW), configured) as desk:
        await desk.call("open_kill_switch", {"reason": "start"})
        approval = await desk.approved(mode="live")
        placed = await desk.call(
            "submit_live_order", desk.submit_args(approval, "k"), principal=AGENT, switches=LIVE_LOCAL
        )
        assert placed.writer == "client-portal"  # the config's writer: an agent's switch picks nothing
        assert len(sim.placements) == 1
