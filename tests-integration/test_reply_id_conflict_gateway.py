"""Through the whole gateway: a submit refused for another process's order question keeps its key and approval.

`ORDER_CONFIRMATION_CONFLICT` means nothing was placed, so the idempotency key is released and the
approval given back: the same call, once the other process is done, places the order exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.state import StateLocation, open_state, write_transaction
from ibkr_gateway_cpapi._questions import QuestionSlot, broker_key
from ibkr_gateway_cpapi.backend import open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import AGENTS_MAY_TRADE_PAPER, AUDIT_KEY, Clock, Desk, config_for

pytestmark = pytest.mark.anyio

KEY = broker_key("https://127.0.0.1:5000/v1/api")


async def test_a_refused_order_keeps_its_key_and_approval_and_the_same_call_places_it_once(
    tmp_path: Path, state_location: StateLocation
) -> None:
    """Through the whole gateway: the conflict releases the idempotency key; the same submit later places once."""
    sim = SimulatorState()  # the default rules ask o163 for a limit this far below the market
    slot = QuestionSlot(lambda: state_location, KEY, wait=timedelta(milliseconds=300))
    config = config_for(tmp_path / "state", AGENTS_MAY_TRADE_PAPER)
    audit = AuditLog.open(config.audit_path(), AUDIT_KEY)
    gateway_backend = open_simulator_backend(sim, questions=slot, preflight_delays_s=(0.0,) * 3)
    async with Gateway(config, audit, backend_factory=lambda _: gateway_backend, clock=Clock()) as gateway:
        desk = Desk(gateway, sim, Clock())
        approval = await desk.approved(limit_price="100")
        _hold_slot(state_location, "someone-else")
        sent = sim.placement_requests
        with pytest.raises(GatewayError) as caught:
            await desk.submit(approval, "k-conflict")
        assert caught.value.code == ErrorCode.ORDER_CONFIRMATION_CONFLICT
        assert sim.placement_requests == sent
        _hold_slot(state_location, None)
        placed = await desk.submit(approval, "k-conflict")
        assert (await desk.submit(approval, "k-conflict")).broker_order_id == placed.broker_order_id
    assert desk.orders_with(placed.client_order_id) == 1


def _hold_slot(location: StateLocation, holder: str | None) -> None:
    """Another process's live claim on the slot (or none)."""
    db = open_state(location)
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    try:
        with write_transaction(db):
            db.execute("DELETE FROM broker_order_questions WHERE broker_key = ?", (KEY,))
            if holder is not None:
                db.execute(
                    "INSERT INTO broker_order_questions (broker_key, holder, reply_id, expires_at, updated_at) "
                    "VALUES (?, ?, NULL, ?, ?)",
                    (KEY, holder, later, later),
                )
    finally:
        db.close()
