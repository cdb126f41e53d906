"""Reliability plan part D (trading gates) against the CPAPI simulator: approvals, idempotency, the kill
switch, risk inputs and fail-closed storage. Each test counts what actually reached the broker."""

import re
import secrets
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import WITH_LIVE
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import (
    ACCOUNT,
    AGENT,
    AGENTS_MAY_TRADE_PAPER,
    REMOTE,
    Clock,
    Desk,
    running_desk,
)

pytestmark = pytest.mark.anyio

LIVE_FOR_AGENTS: dict[str, Any] = {
    **AGENTS_MAY_TRADE_PAPER,
    "safety": {"live_trading_enabled": True},
    "risk_policies": [{"policy_id": "live"}],
    "live_trading": {
        "enabled": True,
        "allowed_accounts": [ACCOUNT],
        "risk_policy_id": "live",
        "paper_to_live_checklist_acknowledged": True,
        "writer": "client-portal",
        "cancel_working_orders_on_close": False,
    },
}


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


@pytest.fixture
async def desk(tmp_path: Path, sim: SimulatorState) -> AsyncIterator[Desk]:
    async with running_desk(tmp_path / "state", sim, Clock(), AGENTS_MAY_TRADE_PAPER) as running:
        yield running


# ----------------------------------------------------------------------------- R21 approval linking


SMUGGLED = [
    pytest.param({"quantity": "50"}, id="quantity"),
    pytest.param({"side": "sell"}, id="side"),
    pytest.param({"limit_price": "1"}, id="limit-price"),
    pytest.param({"symbol": "MSFT"}, id="symbol"),
    pytest.param({"contract_id": 272093}, id="contract"),
    pytest.param({"order_type": "market"}, id="order-type"),
    pytest.param({"time_in_force": "gtc"}, id="tif"),
    pytest.param({"outside_rth": True}, id="outside-rth"),
    pytest.param({"currency": "EUR"}, id="currency"),
    pytest.param({"live": True}, id="live-flag"),
    pytest.param({"switches": ["enable_paper"]}, id="switches"),
    pytest.param({"principal": {"kind": "local_operator"}}, id="principal"),
]


@pytest.mark.parametrize("smuggled", SMUGGLED)
async def test_order_fields_smuggled_into_a_submit_are_refused_and_never_reach_the_broker(
    desk: Desk, smuggled: dict[str, Any]
) -> None:
    """The approval alone says what is sent: an extra field is an invalid argument, never an override (PSD2 dynamic
    linking, our design)."""
    approval = await desk.approved()
    args = {**desk.submit_args(approval, "smuggle"), **smuggled}
    code = await desk.code_of("submit_paper_order", args, principal=AGENT)
    assert code.value.startswith("INPUT_"), code  # the field-specific input code, e.g. INPUT_INVALID_CONTRACT
    assert desk.sim.placements == []
    placed = await desk.submit(approval, "clean", principal=AGENT)  # the approval is still good, for its own order
    (order,) = desk.sim.orders_with_client_order_id(placed.client_order_id or "")
    assert (order.side, str(order.quantity), str(order.price)) == ("BUY", "1", "100")


async def test_an_approval_is_good_one_second_before_its_ttl_and_not_at_it(tmp_path: Path, sim: SimulatorState) -> None:
    """TTL boundary on the gateway's clock: TTL-1 s places, TTL refuses (plan R21)."""
    clock = Clock()
    async with running_desk(tmp_path / "state", sim, clock, AGENTS_MAY_TRADE_PAPER) as desk:
        early, late = await desk.approved(), await desk.approved()
        clock.now += timedelta(seconds=299)
        assert (await desk.submit(early, "early", principal=AGENT)).status == "submitted"
        clock.now += timedelta(seconds=1)
        code = await desk.code_of("submit_paper_order", desk.submit_args(late, "late"), principal=AGENT)
        assert code is ErrorCode.APPROVAL_EXPIRED
        assert len(desk.sim.placements) == 1


async def test_approval_ids_are_unguessable_and_a_guess_places_nothing(desk: Desk) -> None:
    """Approval ids carry 128 random bits; 200 guesses in their own format find nothing (MCP state-handle rules)."""
    ids = [(await desk.approved()).approval_id for _ in range(8)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"ap-[0-9a-f]{32}", approval_id) for approval_id in ids)
    assert len({approval_id[:12] for approval_id in ids}) == len(ids)  # no shared (time or counter) prefix
    for _ in range(200):
        guess = {"account_id": ACCOUNT, "approval_id": f"ap-{secrets.token_hex(16)}", "idempotency_key": "guess"}
        assert await desk.code_of("submit_paper_order", guess, principal=AGENT) is ErrorCode.APPROVAL_NOT_FOUND
    assert desk.sim.placements == []


async def test_an_agent_cannot_self_approve_through_a_second_session_of_the_same_identity(desk: Desk) -> None:
    """A second stdio process is never an approver; a fresh token of the same subject is the same person."""
    preview = await desk.preview(AGENT)
    second_stdio = Principal(kind="local_agent", subject="stdio", client_id="another-window", scopes=WITH_LIVE)
    args = {"account_id": ACCOUNT, "preview_id": preview.preview_id}
    assert await desk.code_of("create_approval", args, principal=second_stdio) is ErrorCode.APPROVAL_APPROVER_REQUIRED

    remote_preview = await desk.preview(REMOTE)
    fresh_token = REMOTE.model_copy(update={"token_id_hash": "another-token", "client_id": "another-client"})
    args = {"account_id": ACCOUNT, "preview_id": remote_preview.preview_id}
    assert await desk.code_of("create_approval", args, principal=fresh_token) is ErrorCode.APPROVAL_SELF_FORBIDDEN
    assert desk.sim.placements == []


# ----------------------------------------------------------------------------- R22 idempotency


async def test_the_same_idempotency_key_from_another_principal_is_an_independent_request(desk: Desk) -> None:
    """Keys are scoped by principal: the other caller neither replays nor sees the first one's order (IETF draft)."""
    mine = await desk.submit(await desk.approved(), "shared-key", principal=AGENT)
    theirs = await desk.submit(await desk.approved(), "shared-key", principal=REMOTE)
    assert not theirs.replayed and theirs.broker_order_id != mine.broker_order_id
    assert theirs.client_order_id != mine.client_order_id
    assert desk.orders_with(mine.client_order_id) == 1 and desk.orders_with(theirs.client_order_id) == 1


MALFORMED_KEYS = [
    pytest.param("k" * 129, id="too-long"),
    pytest.param("two words", id="space"),
    pytest.param("k\x1b[31m", id="ansi-escape"),
    pytest.param("k\u200bk", id="zero-width"),
    pytest.param("k\x00", id="nul"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("key", MALFORMED_KEYS)
async def test_a_malformed_idempotency_key_is_refused_before_the_broker(desk: Desk, key: str) -> None:
    """Keys are 1-128 printable ASCII characters; anything else is refused and the approval stays usable."""
    approval = await desk.approved()
    code = await desk.code_of("submit_paper_order", desk.submit_args(approval, key), principal=AGENT)
    assert code in (ErrorCode.INPUT_INVALID_ARGUMENT, ErrorCode.IDEMPOTENCY_KEY_REQUIRED)
    assert desk.sim.placements == []
    assert (await desk.submit(approval, "fine", principal=AGENT)).status == "submitted"


async def test_a_replay_after_a_restart_returns_the_stored_result(tmp_path: Path, sim: SimulatorState) -> None:
    """The idempotency record is durable: a new gateway process replays, the broker still has one order."""
    clock = Clock()
    async with running_desk(tmp_path / "state", sim, clock, AGENTS_MAY_TRADE_PAPER) as desk:
        approval = await desk.approved()
        first = await desk.submit(approval, "durable", principal=AGENT)
    async with running_desk(tmp_path / "state", sim, clock, AGENTS_MAY_TRADE_PAPER) as desk:
        again = await desk.submit(approval, "durable", principal=AGENT)
    assert again.replayed and again.broker_order_id == first.broker_order_id
    assert len(sim.orders_with_client_order_id(first.client_order_id or "")) == 1


# ----------------------------------------------------------------------------- R23 kill switch


async def test_a_closed_kill_switch_refuses_an_agents_live_submit_but_not_cancel_or_read(
    tmp_path: Path, sim: SimulatorState
) -> None:
    """Closed: no new live order from an agent; its cancel and its reads still work (plan R23, 15c3-5)."""
    async with running_desk(tmp_path / "state", sim, Clock(), LIVE_FOR_AGENTS) as desk:
        await desk.call("open_kill_switch", {"reason": "session start"})
        working = await desk.call(
            "submit_live_order", desk.submit_args(await desk.approved(mode="live"), "before"), principal=AGENT
        )
        await desk.call("close_kill_switch", {"reason": "agent saw trouble"}, principal=AGENT)
        args = desk.submit_args(await desk.approved(mode="live"), "after")
        assert await desk.code_of("submit_live_order", args, principal=AGENT) is ErrorCode.LIVE_KILL_SWITCH_CLOSED
        assert await desk.code_of("open_kill_switch", {"reason": "x"}, principal=AGENT) is (
            ErrorCode.KILL_SWITCH_OPERATOR_ONLY
        )
        listed = await desk.call("list_orders", {"account_id": ACCOUNT}, principal=AGENT)
        assert working.broker_order_id in {order.broker_order_id for order in listed}
        cancel = {"account_id": ACCOUNT, "broker_order_id": working.broker_order_id, "idempotency_key": "stop"}
        assert (await desk.call("cancel_live_order", cancel, principal=AGENT)).status in ("cancelled", "pending_cancel")
        assert len(sim.placements) == 1


async def test_the_kill_switch_state_outlives_the_gateway(tmp_path: Path, sim: SimulatorState) -> None:
    """Opened and closed states are persisted, so a restart never reopens a closed switch."""
    clock = Clock()
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        assert (await desk.call("kill_switch_status", {})).state == "closed"
        await desk.call("open_kill_switch", {"reason": "start"})
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        assert (await desk.call("kill_switch_status", {})).state == "open"
        await desk.call("close_kill_switch", {"reason": "stop"}, principal=AGENT)
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        assert (await desk.call("kill_switch_status", {}, principal=AGENT)).state == "closed"


# ----------------------------------------------------------------------------- R24 / R26 risk inputs, fail closed


NOT_A_DECIMAL = (ErrorCode.INPUT_INVALID_ARGUMENT, ErrorCode.INPUT_INVALID_ARGUMENT)
"""What the input model says of text that is no plain decimal, as a price and as a quantity."""
NOT_POSITIVE = (ErrorCode.ORDER_PRICE_INVALID, ErrorCode.ORDER_QUANTITY_INVALID)
"""What the order rules say of a plain decimal that is not above zero."""
BAD_PRICES = [
    pytest.param("NaN", NOT_A_DECIMAL, id="nan"),
    pytest.param("sNaN", NOT_A_DECIMAL, id="signalling-nan"),
    pytest.param("Infinity", NOT_A_DECIMAL, id="inf"),
    pytest.param("-Infinity", NOT_A_DECIMAL, id="minus-inf"),
    pytest.param("-1", NOT_POSITIVE, id="negative"),
    pytest.param("0", NOT_POSITIVE, id="zero"),
    pytest.param("1e308", NOT_A_DECIMAL, id="huge"),
]


@pytest.mark.parametrize(("price", "codes"), BAD_PRICES)
async def test_non_finite_negative_and_absurd_prices_are_refused_before_any_broker_call(
    desk: Desk, price: str, codes: tuple[ErrorCode, ErrorCode]
) -> None:
    """Fail-closed numbers: such a limit price never becomes a preview, let alone an order (15c3-5 (c)(1))."""
    with pytest.raises(GatewayError) as bad_price:
        await desk.preview(AGENT, limit_price=price)
    assert bad_price.value.code is codes[0]
    with pytest.raises(GatewayError) as bad_quantity:
        await desk.preview(AGENT, quantity=price)
    assert bad_quantity.value.code is codes[1]
    assert await desk.call("list_approvals", {"account_id": ACCOUNT}) == []
    assert desk.sim.placements == []


async def test_a_failing_quote_refuses_the_preview(desk: Desk) -> None:
    """No reference price, no preview: a broker error on the quote path refuses instead of skipping the collar."""
    desk.sim.fail_next(503, {"error": "service unavailable"}, times=20, path_contains="marketdata/snapshot")
    with pytest.raises(GatewayError) as caught:
        await desk.preview(AGENT, order_type="market", limit_price=None)
    assert caught.value.code is ErrorCode.BROKER_BACKEND_UNAVAILABLE
    assert any("marketdata/snapshot" in request.path for request in desk.sim.requests)
    assert desk.sim.placements == []


async def test_a_locked_state_database_refuses_the_order_and_places_nothing(desk: Desk) -> None:
    """When the order state cannot be written (another process holds the write lock), the submit fails closed."""
    approval = await desk.approved()
    holder = sqlite3.connect(desk.gateway.audit.path, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with anyio.fail_after(30), pytest.raises(GatewayError) as caught:
            await desk.submit(approval, "locked", principal=AGENT)
        assert caught.value.code is ErrorCode.AUDIT_WRITE_FAILED  # the audit log shares the locked database
        assert desk.sim.placements == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (await desk.submit(approval, "unlocked", principal=AGENT)).status == "submitted"
    assert len(desk.sim.placements) == 1
