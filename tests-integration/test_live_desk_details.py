"""The live desk's details: the local-candidate writer withdraws only its own candidates of that account,
`limits_status` reports each budget exactly, and reconciliation counts what it scanned, changed and finished."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, AGENT, AGENTS_MAY_TRADE_PAPER, PAPER, Clock, Desk, running_desk
from test_attack_exposure import AAPL, LIVE_CP, live_policy
from test_attack_live_invariants import LIVE_LOCAL, REAL_BROKER, REAL_LIVE
from test_brackets_and_modify import LIVE_FOR_AGENTS, modify_preview

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


async def refusal(desk: Desk, name: str, args: dict[str, Any], **kw: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await desk.call(name, args, **kw)
    return caught.value


async def test_each_live_switch_a_configuration_lacks_refuses_with_its_details(
    tmp_path: Path, sim: SimulatorState
) -> None:
    """Configured live trading for agents, one switch off at a time (the agent's calls read only the config)."""
    live = REAL_LIVE["live_trading"]
    cases: list[tuple[dict[str, Any], ErrorCode, dict[str, object]]] = [
        ({**live, "allowed_accounts": ["U0000001"]}, ErrorCode.LIVE_ACCOUNT_NOT_ALLOWLISTED, {}),
    ]
    for n, (trading, code, details) in enumerate(cases):
        config = {**REAL_LIVE, "live_trading": trading, **AGENTS_MAY_TRADE_PAPER}
        async with running_desk(tmp_path / f"state-{n}", sim, Clock(NOW), config) as desk:
            approval = await desk.approved(mode="live")
            error = await refusal(desk, "submit_live_order", desk.submit_args(approval, "k"), principal=AGENT)
            assert (error.code, error.details) == (code, details), n
            if code is ErrorCode.LIVE_ACCOUNT_NOT_ALLOWLISTED:
                assert error.message == f"Account {ACCOUNT!r} is not in live_trading.allowed_accounts."
    assert sim.placements == []
    nowhere = {"live_trading": {"risk_policy_id": "nowhere"}}  # the simulator's config; the operator's flags
    async with running_desk(tmp_path / "nowhere", sim, Clock(NOW), nowhere) as desk:
        approval = await desk.approved(mode="live")
        error = await refusal(desk, "submit_live_order", desk.submit_args(approval, "k"), switches=LIVE_CP)
        assert (error.code, error.details) == (ErrorCode.LIVE_POLICY_UNKNOWN, {"policy_id": "nowhere"})
        assert error.message == "The live risk policy 'nowhere' is not defined under risk_policies."
    async with running_desk(tmp_path / "real", sim, Clock(NOW), REAL_BROKER) as desk:  # no live policy at all
        error = await refusal(desk, "limits_status", {"account_id": ACCOUNT})
        assert error.code is ErrorCode.LIVE_POLICY_UNKNOWN  # the simulator's built-in policy is the simulator's only


async def test_a_modification_of_an_order_that_finished_since_its_preview_sends_nothing_and_keeps_the_approval(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW), AGENTS_MAY_TRADE_PAPER) as desk:
        for mode, key in (("paper", "p"), ("live", "l")):
            working = await desk.submit(await desk.approved(), f"order-{key}")
            order_id = str(working.broker_order_id)
            approval = await desk.approve(await modify_preview(desk, order_id, limit_price="101"), mode=mode)
            sim.book.orders[int(order_id)].status = "Filled"
            asked = len(sim.requests)
            name, switches = ("modify_paper_order", PAPER) if mode == "paper" else ("modify_live_order", LIVE_CP)
            error = await refusal(desk, name, desk.submit_args(approval, key), switches=switches)
            assert error.code is ErrorCode.ORDER_NOT_MODIFIABLE, mode
            assert not [r for r in sim.requests[asked:] if r.method == "POST" and f"/order/{order_id}" in r.path]
            listed = await desk.call("list_approvals", {"account_id": ACCOUNT})
            assert next(a.status for a in listed if a.approval_id == approval.approval_id) == "approved", mode


async def test_a_paper_submit_checks_the_configured_preview_policy_again_on_a_fresh_quote(
    tmp_path: Path, sim: SimulatorState
) -> None:
    """A sell limit previewed at the market is counted at the market again at submit: once the bid has risen
    far above the limit it would fill there, past the configured policy's max_notional."""
    policy = {
        "risk_policies": [{"policy_id": "tight", "max_notional": "500"}],
        "orders": {"preview_policy_id": "tight"},
    }
    async with running_desk(tmp_path / "state", sim, Clock(NOW), policy) as desk:
        sim.set_quote(AAPL, bid=Decimal("100"), ask=Decimal("100.05"))
        approval = await desk.approved(side="sell", quantity="4", limit_price="100")
        sim.set_quote(AAPL, bid=Decimal("200"), ask=Decimal("200.05"))
        error = await refusal(desk, "submit_paper_order", desk.submit_args(approval, "k"), switches=PAPER)
        assert (error.code, error.details["limit"]) == (ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED, "500")
        assert sim.placements == []


async def test_a_paper_submit_to_an_account_the_broker_calls_live_is_refused_naming_it(tmp_path: Path) -> None:
    sim = SimulatorState(profile="live")
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        approval = await desk.approve(await desk.preview(account_id="U7654321"), mode="paper")
        error = await refusal(desk, "submit_paper_order", desk.submit_args(approval, "k"), switches=PAPER)
        assert (error.code, error.details) == (ErrorCode.PAPER_ACCOUNT_REQUIRED, {"account_mode": "live"})
        assert error.message == "Account 'U7654321' is not a paper account according to the broker (mode live)."
        assert sim.placements == []


async def test_a_resting_paper_buy_limit_is_placed_under_a_policy_without_a_collar(
    tmp_path: Path, sim: SimulatorState
) -> None:
    """The policy needs no quote for a buy limit, but the warning policy needs to know the order rests below the
    ask to confirm the broker's "far from the market" question: the submit reads the quote all the same."""
    policy = {"risk_policies": [{"policy_id": "no-collar"}], "orders": {"preview_policy_id": "no-collar"}}
    async with running_desk(tmp_path / "state", sim, Clock(NOW), policy) as desk:
        approval = await desk.approved()  # a buy limit at 100, the market near 200
        placed = await desk.call("submit_paper_order", desk.submit_args(approval, "k"), switches=PAPER)
        assert (placed.status, placed.confirmed_message_ids != []) == ("submitted", True)
        assert len(sim.placements) == 1
