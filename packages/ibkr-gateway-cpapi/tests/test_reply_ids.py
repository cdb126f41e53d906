"""A newer order question invalidates the older reply id: writers sharing one login never confirm a stale one.

Each "process" here is a backend of its own (its own client, placement lock and order-question slot)
on one simulated login, the slots sharing one state database (SQLite and PostgreSQL). The simulator
enforces IBKR's rule: a question supersedes every older pending reply id of the session, and a reply
naming one is answered `reply id not found` (and counted in `superseded_replies`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anyio
import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import BrokerQuestion, OrderTicket
from ibkr_gateway_core.state import StateLocation, open_state, write_transaction
from ibkr_gateway_cpapi._questions import QuestionSlot, broker_key
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import QuestionRule, SimulatorState

pytestmark = pytest.mark.anyio

ACCOUNT = "DU1234567"
AAPL = 265598
KEY = broker_key("https://127.0.0.1:5000/v1/api")


def ticket() -> OrderTicket:
    return OrderTicket.model_validate(
        {
            "account_id": ACCOUNT,
            "contract_id": AAPL,
            "symbol": "AAPL",
            "asset_class": "stock",
            "currency": "USD",
            "side": "buy",
            "quantity": Decimal(1),
            "order_type": "limit",
            "limit_price": Decimal("210.00"),
        }
    )


def allow_all(question: BrokerQuestion) -> bool:
    return True


@pytest.fixture
def sim() -> SimulatorState:
    """Every order gets one question, so every placement is a place-then-reply exchange."""
    state = SimulatorState()
    state.set_question_rules([QuestionRule.always("o451", "Total value of {quantity} {symbol}?")])
    return state


def process(sim: SimulatorState, slot: QuestionSlot | None) -> CpapiBackend:
    return open_simulator_backend(sim, questions=slot)


async def place_many(backend: CpapiBackend, prefix: str, count: int, errors: list[str]) -> None:
    writer = backend.order_writer()

    async def one(n: int) -> None:
        try:
            await writer.place(ticket(), client_order_id=f"{prefix}-{n}", confirm=allow_all, max_rounds=3)
        except GatewayError as exc:  # none is expected: the code and message show which
            errors.append(f"{exc.code.value}: {exc.message}")

    async with anyio.create_task_group() as tasks:
        for n in range(count):
            tasks.start_soon(one, n)


async def test_two_processes_on_one_login_never_supersede_each_others_questions(
    sim: SimulatorState, state_location: StateLocation
) -> None:
    first = process(sim, QuestionSlot(lambda: state_location, KEY))
    second = process(sim, QuestionSlot(lambda: state_location, KEY))
    errors: list[str] = []
    async with first, second:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(place_many, first, "one", 6, errors)
                tasks.start_soon(place_many, second, "two", 6, errors)
    assert errors == []
    for prefix in ("one", "two"):
        for n in range(6):
            assert len(sim.orders_with_client_order_id(f"{prefix}-{n}")) == 1
    assert sim.engine.superseded_replies == 0
    db = open_state(state_location)
    try:
        assert db.execute("SELECT count(*) FROM broker_order_questions").fetchone()[0] == 0  # every slot released
    finally:
        db.close()


def other_process(sim: SimulatorState, slot: QuestionSlot | None, client_order_id: str, placed: list[str]) -> None:
    """Another process's placement, on its own thread and event loop, while the caller's loop is blocked."""

    async def run() -> None:
        async with process(sim, slot) as other:
            try:
                done = await other.order_writer().place(
                    ticket(), client_order_id=client_order_id, confirm=allow_all, max_rounds=3
                )
            except GatewayError as exc:
                assert exc.code == ErrorCode.ORDER_CONFIRMATION_CONFLICT
                assert exc.details["reason"] == "slot_busy"
                return
            placed.append(done.broker_order_id)

    worker = threading.Thread(target=anyio.run, args=(run,))
    worker.start()
    worker.join(timeout=30)


async def test_without_a_shared_slot_the_simulator_catches_stale_confirmations(sim: SimulatorState) -> None:
    """The control: another process asks a question while this one decides; this one's reply id is stale.

    The writer never reads `reply id not found` as a rejection: the outcome is unknown and the order is
    looked up by its client order id, which finds nothing, so reconciliation settles it as not placed.
    """
    placed_by_other: list[str] = []

    def policy(question: BrokerQuestion) -> bool:
        other_process(sim, None, "other-1", placed_by_other)
        return True

    async with process(sim, None) as first:
        with pytest.raises(GatewayError) as caught:
            await first.order_writer().place(ticket(), client_order_id="first-1", confirm=policy, max_rounds=3)
        assert caught.value.code == ErrorCode.BROKER_OUTCOME_UNKNOWN
        assert caught.value.message == (
            "The broker no longer knows the order question this gateway confirmed (expired or superseded by "
            "a newer one); the order is looked up by its client order id before anything else."
        )
        details = caught.value.details
        assert (details["reason"], details["client_order_id"], details["confirmed_message_ids"]) == (
            "reply_id_not_found",
            "first-1",
            ["o451"],
        )
        assert "not found" in str(details["broker_message"]).lower()
        assert sim.engine.superseded_replies == 1
        assert sim.orders_with_client_order_id("first-1") == []
        assert await first.order_writer().find_by_client_order_id(ACCOUNT, "first-1") is None
    assert len(placed_by_other) == 1


async def test_a_process_whose_claim_expired_never_confirms_its_superseded_question(
    sim: SimulatorState, state_location: StateLocation
) -> None:
    """A stalls between the question and its confirmation past its lease; B places meanwhile; A refuses."""
    slow = process(sim, QuestionSlot(lambda: state_location, KEY, ttl=timedelta(milliseconds=300)))
    placed_by_other: list[str] = []

    def stalling_policy(question: BrokerQuestion) -> bool:
        time.sleep(0.9)  # past the 300 ms lease (a lease short enough to lapse before the question is asked on a
        # loaded machine would fail the test for the wrong reason)
        other_process(sim, QuestionSlot(lambda: state_location, KEY), "other-1", placed_by_other)
        return True

    async with slow:
        with pytest.raises(GatewayError) as caught:
            await slow.order_writer().place(ticket(), client_order_id="slow-1", confirm=stalling_policy, max_rounds=3)
    assert caught.value.code == ErrorCode.ORDER_CONFIRMATION_CONFLICT
    assert caught.value.details == {"reason": "superseded", "client_order_id": "slow-1", "confirmed_message_ids": []}
    assert caught.value.message == (
        "Another process on the same IBKR login asked a newer order question, which invalidates this "
        "order's; it was not confirmed, so it was not placed."
    )
    assert caught.value.retryable
    assert len(placed_by_other) == 1
    assert sim.orders_with_client_order_id("slow-1") == []
    assert len(sim.orders_with_client_order_id("other-1")) == 1
    assert sim.engine.superseded_replies == 0  # the stale reply id was never sent


async def test_a_slot_held_by_another_process_refuses_before_sending_anything(
    sim: SimulatorState, state_location: StateLocation
) -> None:
    db = open_state(state_location)
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    try:
        with write_transaction(db):
            db.execute(
                "INSERT INTO broker_order_questions (broker_key, holder, reply_id, expires_at, updated_at) "
                "VALUES (?, 'someone-else', NULL, ?, ?)",
                (KEY, later, later),
            )
    finally:
        db.close()
    before = sim.placement_requests
    async with process(sim, QuestionSlot(lambda: state_location, KEY, wait=timedelta(milliseconds=300))) as busy:
        with pytest.raises(GatewayError) as caught:
            await busy.order_writer().place(ticket(), client_order_id="busy-1", confirm=allow_all, max_rounds=3)
    assert caught.value.code == ErrorCode.ORDER_CONFIRMATION_CONFLICT
    assert caught.value.details["reason"] == "slot_busy"
    assert sim.placement_requests == before


async def test_a_slot_left_by_a_stopped_process_expires(sim: SimulatorState, state_location: StateLocation) -> None:
    now: list[datetime] = [datetime.now(UTC)]
    clock: Callable[[], datetime] = lambda: now[0]  # noqa: E731
    stopped = QuestionSlot(lambda: state_location, KEY, ttl=timedelta(seconds=30), clock=clock)
    async with stopped.claim():
        pass
    async with process(sim, QuestionSlot(lambda: state_location, KEY)) as alive:
        db = open_state(state_location)
        try:  # a claim the stopped process never released, as a crash leaves it
            with write_transaction(db):
                db.execute(
                    "INSERT INTO broker_order_questions (broker_key, holder, reply_id, expires_at, updated_at) "
                    "VALUES (?, 'crashed', 'r-1', ?, ?)",
                    (KEY, (now[0] - timedelta(seconds=1)).isoformat(), now[0].isoformat()),
                )
        finally:
            db.close()
        await alive.order_writer().place(ticket(), client_order_id="after-crash", confirm=allow_all, max_rounds=3)
    await stopped.aclose()
    assert len(sim.orders_with_client_order_id("after-crash")) == 1


async def test_a_process_arriving_mid_confirmation_waits_and_never_supersedes_the_question(
    sim: SimulatorState, state_location: StateLocation
) -> None:
    """B tries to place while A holds its question: B waits for the slot, here past its bound, and sends nothing."""
    placed_by_other: list[str] = []

    def policy(question: BrokerQuestion) -> bool:
        slot = QuestionSlot(lambda: state_location, KEY, wait=timedelta(milliseconds=300))
        other_process(sim, slot, "b-1", placed_by_other)
        return True

    requests_before = sim.placement_requests
    async with process(sim, QuestionSlot(lambda: state_location, KEY)) as first:
        placed = await first.order_writer().place(ticket(), client_order_id="a-1", confirm=policy, max_rounds=3)
    assert placed.broker_order_id == str(sim.orders_with_client_order_id("a-1")[0].order_id)
    assert placed_by_other == []  # B was refused (ORDER_CONFIRMATION_CONFLICT, raised on its own thread)
    assert sim.orders_with_client_order_id("b-1") == []
    assert sim.placement_requests == requests_before + 1  # B sent nothing
    assert sim.engine.superseded_replies == 0
