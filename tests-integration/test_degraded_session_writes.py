"""While a long-running server knows the broker session is degraded, new orders are refused before anything is
sent, with the session's own message; the key and the approval stay usable, and the same key places once later.
Cancels are still tried."""

from pathlib import Path

import anyio
import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi.backend import CpapiBackend
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import AGENT, AGENTS_MAY_TRADE_PAPER, Clock, running_desk

pytestmark = pytest.mark.anyio


async def _never(_: float) -> None:
    await anyio.sleep(3600)


async def test_a_degraded_session_refuses_new_orders_before_sending_and_the_key_survives(tmp_path: Path) -> None:
    sim = SimulatorState()
    async with running_desk(tmp_path / "state", sim, Clock(), AGENTS_MAY_TRADE_PAPER) as desk:
        approval = await desk.approved(limit_price="100")
        backend = desk.gateway.backend
        assert isinstance(backend, CpapiBackend)
        async with backend.supervised(sleep=_never) as supervisor:
            await supervisor.wait_for_checks(1)
            sim.fail_next(503, {"error": "gateway restarting"})  # the supervisor's tickle fails
            assert (await supervisor.check()).status == "unavailable"
            sent_before = sim.placement_requests
            args = desk.submit_args(approval, "while-degraded")
            with pytest.raises(GatewayError) as refused:
                await desk.call("submit_paper_order", args, principal=AGENT)
            assert refused.value.code is ErrorCode.BROKER_SESSION_REQUIRED
            assert "degraded" in refused.value.message
            assert sim.placement_requests == sent_before
            assert (await supervisor.check()).status == "usable"
            placed = await desk.call("submit_paper_order", args, principal=AGENT)
            sim.log_out()
            await supervisor.check()
            cancel = {"account_id": placed.account_id, "broker_order_id": placed.broker_order_id}
            cancel["idempotency_key"] = "c"
            deletes_before = sum("DELETE" in path for path in sim.paths())
            code = await desk.code_of("cancel_paper_order", cancel, principal=AGENT)
            assert code is ErrorCode.BROKER_SESSION_REQUIRED  # the broker's own 401: the cancel was tried
            assert sum("DELETE" in path for path in sim.paths()) == deletes_before + 1
        assert desk.orders_with(placed.client_order_id) == 1
