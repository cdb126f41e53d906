"""Keyed writes settling what they left open: a lost answer settled to the status the broker shows now, an
unknown modification sent again, a cancel record left unsettled, a bracket settled by its parent's cOID and
then cancelled, each leg's cancel answer, and concurrent retries of one key sending once."""

import sqlite3
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders._services import request_hash
from ibkr_gateway_core.orders.store import NewRecord
from ibkr_gateway_core.orders.writers import LocalCandidateWriter
from ibkr_gateway_cpapi.simulator import SimulatorState
from ibkr_gateway_cpapi.writer import ClientPortalOrderWriter
from reliability_harness import ACCOUNT, AGENTS_MAY_TRADE_PAPER, PAPER, Clock, running_desk
from test_brackets_and_modify import AAPL, LIVE, approved_bracket, modify_preview, paper_bracket, submit_args

pytestmark = pytest.mark.anyio

GRACE = 60.0  # orders.unknown_resend_after_seconds, the default


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


def cancel_args(order_id: str | None, key: str) -> dict[str, Any]:
    return {"account_id": ACCOUNT, "broker_order_id": order_id, "idempotency_key": key}


def cancel_calls(sim: SimulatorState) -> int:
    return sum(1 for r in sim.requests if r.method == "DELETE" and "/order/" in r.path)


async def test_a_lost_answer_settles_to_the_status_the_broker_shows_now(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        args = desk.submit_args(await desk.approved(), "k")
        sim.drop_response_after_accept()
        assert await desk.code_of("submit_paper_order", args, switches=PAPER) is ErrorCode.BROKER_OUTCOME_UNKNOWN
        [order] = sim.placements
        store = desk.gateway._order_desk().store  # pyright: ignore[reportPrivateUsage]
        [record] = store.unsettled()
        assert (record.status, (record.error or {}).get("code")) == ("unknown", "BROKER_OUTCOME_UNKNOWN")
        sim.set_quote(AAPL, bid=Decimal("98.90"), ask=Decimal("99"))  # the buy limit at 100 fills
        assert sim.book.orders[order.order_id].status == "Filled"
        settled = await desk.call("submit_paper_order", args, switches=PAPER)
        assert (settled.status, settled.broker_status) == ("filled", "Filled")
        assert settled.broker_order_id == str(order.order_id)
        assert sim.placement_requests == 1


async def test_an_unknown_modification_is_sent_again_at_once_with_the_same_key(
    tmp_path: Path, sim: SimulatorState
) -> None:
    """A modification states absolute values: the same key sends it again without a cOID lookup or grace."""
    async with running_desk(tmp_path / "state", sim, Clock(), AGENTS_MAY_TRADE_PAPER) as desk:
        working = await desk.submit(await desk.approved(), "to-modify")
        order_id = str(working.broker_order_id)
        approval = await desk.approve(await modify_preview(desk, order_id, limit_price="101"))
        args = submit_args(approval, "m")
        sim.fail_next(500, {"error": "internal error"}, path_contains=f"/order/{order_id}")
        assert await desk.code_of("modify_paper_order", args, switches=PAPER) is ErrorCode.BROKER_OUTCOME_UNKNOWN
        assert sim.book.orders[int(order_id)].price == Decimal(100)
        modified = await desk.call("modify_paper_order", args, switches=PAPER)  # no clock change
        assert (modified.action, modified.broker_order_id, modified.replayed) == ("modify", order_id, False)
        assert sim.book.orders[int(order_id)].price == Decimal(101)
        again = await desk.call("modify_paper_order", args, switches=PAPER)
        assert again.replayed is True
        assert len(sim.placements) == 1


async def test_a_cancel_record_left_unsettled_is_settled_by_sending_the_cancel(
    tmp_path: Path, sim: SimulatorState
) -> None:
    """Earlier versions wrote a cancel ahead of the broker call; one left `unknown` settles with its key."""
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        order = str((await desk.submit(await desk.approved(), "o")).broker_order_id)
        request: dict[str, object] = {"account_id": ACCOUNT, "broker_order_id": order}
        key = "paper_cancel:local_operator:op:c"
        store = desk.gateway._order_desk().store  # pyright: ignore[reportPrivateUsage]
        new = NewRecord(
            scope_key=key,
            flow="paper_cancel",
            account_id=ACCOUNT,
            request_hash=request_hash("paper_cancel", request),
            client_order_id=None,
            writer="client-portal",
            approval_id=None,
            context={"broker_order_id": order},  # written before records named their audit event
        )
        outcome, _ = store.reserve(new, desk.clock(), kill_switch_required=False)
        assert outcome == "reserved"
        store.mark_unknown(key, {"code": "BROKER_OUTCOME_UNKNOWN", "message": "lost"}, desk.clock())
        other = await desk.code_of("cancel_paper_order", cancel_args(str(int(order) + 1), "c"), switches=PAPER)
        assert other is ErrorCode.IDEMPOTENCY_CONFLICT
        cancelled = await desk.call("cancel_paper_order", cancel_args(order, "c"), switches=PAPER)
        assert (cancelled.mode, cancelled.status, cancelled.broker_order_id) == ("paper", "pending_cancel", order)
        assert cancelled.audit_event_id == ""
        assert sim.book.orders[int(order)].status == "Cancelled"
        record = store.record(key)
        assert record is not None and record.status == "completed"
        again = await desk.call("cancel_paper_order", cancel_args(order, "c"), switches=PAPER)
        assert again.replayed is True and cancel_calls(sim) == 1


async def test_a_bracket_settled_by_its_parent_cancels_the_parent_and_reports_the_unknown_exits(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(), AGENTS_MAY_TRADE_PAPER) as desk:
        args = submit_args(await approved_bracket(desk), "lost")
        sim.drop_response_after_accept()
        code = await desk.code_of("submit_paper_bracket_order", args, switches=PAPER)
        assert code is ErrorCode.BROKER_OUTCOME_UNKNOWN
        settled = await desk.call("submit_paper_bracket_order", args, switches=PAPER)
        parent = str(settled.broker_order_id)
        cancelled = await desk.call("cancel_paper_bracket_order", cancel_args(parent, "c"), switches=PAPER)
        legs = [(leg.role, leg.broker_order_id, leg.status, leg.broker_status) for leg in cancelled.legs]
        assert legs == [
            ("parent", parent, "pending_cancel", None),
            ("take_profit", None, "unknown", None),
            ("stop_loss", None, "unknown", None),
        ]
        assert cancel_calls(sim) == 1
        assert sim.book.orders[int(parent)].status == "Cancelled"


async def test_each_bracket_leg_keeps_the_brokers_answer_to_its_cancel(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(), AGENTS_MAY_TRADE_PAPER) as desk:
        placed = await paper_bracket(desk, await approved_bracket(desk), "b")
        parent, take_profit, stop_loss = (str(leg.broker_order_id) for leg in placed.legs)
        for leg in (parent, stop_loss):
            answer = {"msg": "Request was submitted", "order_id": int(leg), "order_status": "Cancelled"}
            sim.fail_next(200, answer, path_contains=f"/order/{leg}")
        cancelled = await desk.call("cancel_paper_bracket_order", cancel_args(parent, "c"), switches=PAPER)
        legs = {leg.broker_order_id: (leg.status, leg.broker_status) for leg in cancelled.legs}
        assert legs[parent] == legs[stop_loss] == ("cancelled", "Cancelled")
        assert legs[take_profit][0] == "pending_cancel"
        assert (cancelled.status, cancelled.broker_status) == ("cancelled", "Cancelled")


async def test_a_local_candidate_bracket_is_withdrawn_through_its_own_writer(
    tmp_path: Path, sim: SimulatorState
) -> None:
    """The candidate writer placed nothing at the broker, so its bracket's cancel sends nothing there either."""
    local = LIVE | {"live_broker:local-candidate"}
    async with running_desk(tmp_path / "state", sim, Clock(), AGENTS_MAY_TRADE_PAPER) as desk:
        approval = await approved_bracket(desk, mode="live")
        placed = await desk.call("submit_live_bracket_order", submit_args(approval, "g"), switches=local)
        cancel = cancel_args(str(placed.broker_order_id), "c")
        cancelled = await desk.call("cancel_live_bracket_order", cancel, switches=local)
        assert [leg.role for leg in cancelled.legs] == ["parent", "take_profit", "stop_loss"]
        assert {leg.status for leg in cancelled.legs} == {"cancelled"}
        assert cancelled.writer == "local-candidate"
        assert cancel_calls(sim) == 0 and sim.placements == []


async def test_ten_concurrent_calls_with_one_key_place_one_order_and_each_gets_it_or_waits(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        args = desk.submit_args(await desk.approved(), "same")
        placed: list[str] = []
        codes: list[ErrorCode] = []

        async def one() -> None:
            try:
                result = await desk.call("submit_paper_order", args, switches=PAPER)
                placed.append(str(result.broker_order_id))
            except GatewayError as exc:
                codes.append(exc.code)

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(one)
        assert len(sim.placements) == 1
        assert set(placed) == {str(sim.placements[0].order_id)}
        assert set(codes) <= {ErrorCode.IDEMPOTENCY_IN_PROGRESS}, codes
        assert len(placed) + len(codes) == 10


async def test_two_retries_of_an_unknown_outcome_at_once_send_it_once(
    tmp_path: Path, sim: SimulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resend restarts the grace period before it leaves: a retry meanwhile looks up and waits."""
    clock = Clock()
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        args = desk.submit_args(await desk.approved(), "k")
        sim.fail_next(500, {"error": "internal error"}, path_contains="/orders")
        assert await desk.code_of("submit_paper_order", args, switches=PAPER) is ErrorCode.BROKER_OUTCOME_UNKNOWN
        clock.now += timedelta(seconds=GRACE)
        sending, go_on = anyio.Event(), anyio.Event()
        place: Callable[..., Awaitable[Any]] = ClientPortalOrderWriter.place

        async def held(self: ClientPortalOrderWriter, *a: Any, **kw: Any) -> Any:
            if not sending.is_set():  # only the first resend waits; any other goes straight through
                sending.set()
                await go_on.wait()
            return await place(self, *a, **kw)

        monkeypatch.setattr(ClientPortalOrderWriter, "place", held)
        results: list[Any] = []

        async def first() -> None:
            results.append(await desk.call("submit_paper_order", args, switches=PAPER))

        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await sending.wait()
            assert await desk.code_of("submit_paper_order", args, switches=PAPER) is ErrorCode.BROKER_OUTCOME_UNKNOWN
            go_on.set()
        [placed] = results
        assert placed.status == "submitted"
        assert len(sim.placements) == 1 and desk.orders_with(placed.client_order_id) == 1


async def test_a_submit_record_without_a_coid_is_an_internal_error_and_never_sent(
    tmp_path: Path, sim: SimulatorState
) -> None:
    """A damaged record (a submit that lost its cOID) cannot be looked up, so it is never sent again."""
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        request: dict[str, object] = {"account_id": ACCOUNT, "approval_id": "ap-damaged"}
        key = "paper_submit:local_operator:op:k"
        store = desk.gateway._order_desk().store  # pyright: ignore[reportPrivateUsage]
        new = NewRecord(
            scope_key=key,
            flow="paper_submit",
            account_id=ACCOUNT,
            request_hash=request_hash("paper_submit", request),
            client_order_id=None,
            writer="client-portal",
            approval_id=None,
            context={"kind": "order", "ticket": {}},
        )
        assert store.reserve(new, desk.clock(), kill_switch_required=False)[0] == "reserved"
        store.mark_unknown(key, {"code": "BROKER_OUTCOME_UNKNOWN", "message": "lost"}, desk.clock())
        args = {"account_id": ACCOUNT, "approval_id": "ap-damaged", "idempotency_key": "k"}
        with pytest.raises(GatewayError) as caught:
            await desk.call("submit_paper_order", args, switches=PAPER)
        assert (caught.value.code, caught.value.message) == (
            ErrorCode.INTERNAL_ERROR,
            "A submit record has no client order id.",
        )
        assert sim.placement_requests == 0


async def test_a_local_candidate_left_unknown_settles_without_asking_the_broker(
    tmp_path: Path, sim: SimulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate writer never reached a broker, so its unknown outcome is looked up (and settled) locally."""
    local = LIVE | {"live_broker:local-candidate"}

    async def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("writer bug")

    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        args = desk.submit_args(await desk.approved(mode="live"), "k")
        monkeypatch.setattr(LocalCandidateWriter, "place", explode)
        assert await desk.code_of("submit_live_order", args, switches=local) is ErrorCode.BROKER_OUTCOME_UNKNOWN
        monkeypatch.undo()
        sim.log_out()  # any broker request now fails
        asked = len(sim.requests)
        placed = await desk.call("submit_live_order", args, switches=local)
        assert (placed.status, placed.writer) == ("submitted", "local-candidate")
        assert len(sim.requests) == asked


def submit_record(key: str, *, client_order_id: str | None = "iag-damaged") -> NewRecord:
    request: dict[str, object] = {"account_id": ACCOUNT, "approval_id": f"ap-{key}"}
    return NewRecord(
        scope_key=f"paper_submit:local_operator:op:{key}",
        flow="paper_submit",
        account_id=ACCOUNT,
        request_hash=request_hash("paper_submit", request),
        client_order_id=client_order_id,
        writer="client-portal",
        approval_id=None,
        context={"kind": "order", "ticket": {}},
    )


def submit_call(key: str) -> dict[str, Any]:
    return {"account_id": ACCOUNT, "approval_id": f"ap-{key}", "idempotency_key": key}


async def test_damaged_stored_results_are_internal_errors_and_send_nothing(tmp_path: Path, sim: SimulatorState) -> None:
    """A completed record without its result, or a failure stored without its code, is never guessed at."""
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        store = desk.gateway._order_desk().store  # pyright: ignore[reportPrivateUsage]
        for key in ("done", "failed"):
            store.reserve(submit_record(key), desk.clock(), kill_switch_required=False)
        store.fail(
            "paper_submit:local_operator:op:failed", {"message": "no code"}, desk.clock(), release_approval=False
        )
        db = sqlite3.connect(desk.gateway.audit.path)
        with db:
            db.execute("UPDATE order_idempotency SET status = 'completed' WHERE scope_key LIKE '%:done'")
        db.close()
        with pytest.raises(GatewayError) as completed:
            await desk.call("submit_paper_order", submit_call("done"), switches=PAPER)
        assert (completed.value.code, completed.value.message) == (
            ErrorCode.INTERNAL_ERROR,
            "A completed record has no stored result.",
        )
        with pytest.raises(GatewayError) as failed:
            await desk.call("submit_paper_order", submit_call("failed"), switches=PAPER)
        assert (failed.value.code, failed.value.message) == (
            ErrorCode.INTERNAL_ERROR,
            "(stored result of this idempotency key) no code",
        )
        assert sim.placement_requests == 0


async def test_a_pending_record_is_in_progress_until_the_recovery_age_then_looked_up(
    tmp_path: Path, sim: SimulatorState
) -> None:
    clock = Clock()
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        store = desk.gateway._order_desk().store  # pyright: ignore[reportPrivateUsage]
        store.reserve(submit_record("k"), clock.now, kill_switch_required=False)  # a call that stopped mid-way
        age = desk.gateway.config.orders.recovery_min_age_seconds
        clock.now += timedelta(seconds=age) - timedelta(microseconds=1)
        code = await desk.code_of("submit_paper_order", submit_call("k"), switches=PAPER)
        assert code is ErrorCode.IDEMPOTENCY_IN_PROGRESS
        asked = len(sim.requests)
        clock.now += timedelta(microseconds=1)
        code = await desk.code_of("submit_paper_order", submit_call("k"), switches=PAPER)
        assert code is ErrorCode.BROKER_OUTCOME_UNKNOWN  # looked up by cOID, not found, inside the resend grace
        assert len(sim.requests) > asked and sim.placement_requests == 0
