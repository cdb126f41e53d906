"""The fault matrix: each network or gateway fault against each kind of broker call, over real sockets.

The gateway talks to `ibkr-agent`'s HTTPS simulator through a fault-injecting proxy (`fault_proxy.py`).
Reads must fail with a coded broker error or succeed, and work again once the fault is gone. Writes
(a paper submit, a cancel) must end, after retries with the same idempotency key and reconciliation,
with exactly the effect asked for at the broker: one order, or one cancellation, never two, and no
outcome left unknown. docs/reliability.md ("Fault matrix") shows it as a table.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from fault_proxy import FAULTS, NEVER_SENT, Fault, FaultProxy, fault_proxy
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ERROR_CATALOGUE, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_cpapi.backend import open_client_portal_backend
from ibkr_gateway_cpapi.serve import serving_simulator
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, AGENT, AUDIT_KEY, OPERATOR, Clock, Desk, config_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CONFIG: dict[str, Any] = {
    "orders": {"preview_enabled": True, "paper_enabled": True},
    "auth": {"approvers": [{"issuer": "https://as.example", "subject": "reviewer"}]},
}
BROKER_FAMILIES = {"broker", "upstream"}


@dataclass
class Rig:
    desk: Desk
    proxy: FaultProxy
    sim: SimulatorState


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A gateway whose broker calls cross the proxy to the HTTPS simulator."""
    sim, clock = SimulatorState(), Clock()
    async with serving_simulator(state=sim) as sim_url, fault_proxy(sim_url) as proxy:
        broker = GatewayConfig.from_mapping(
            {
                "broker": {
                    "backend": "client_portal_gateway",
                    "base_url": proxy.url,
                    "verify_tls": False,
                    "pacing_enabled": False,
                    "timeout_seconds": 3,
                }
            }
        )
        config = config_for(tmp_path / "state", CONFIG)
        audit = AuditLog.open(config.audit_path(), AUDIT_KEY)
        async with Gateway(
            config, audit, backend_factory=lambda _: open_client_portal_backend(broker), clock=clock
        ) as gw:
            yield Rig(Desk(gw, sim, clock), proxy, sim)


async def _settle(desk: Desk, name: str, args: dict[str, Any]) -> tuple[Any, list[str]]:
    """Retry as a careful agent does: the same key, the clock past the resend grace, reconciliation between."""
    codes: list[str] = []
    with anyio.fail_after(30):
        for _ in range(6):
            try:
                return await desk.call(name, args, principal=AGENT), codes
            except GatewayError as error:
                codes.append(error.code)
                assert ERROR_CATALOGUE[error.code].family in BROKER_FAMILIES | {"refusal"}, error.code
                desk.clock.now += timedelta(seconds=61)
                await desk.call("reconcile_orders", {}, principal=OPERATOR)
    raise AssertionError(f"never settled: {codes}")


READS = {
    "market_snapshot": ("GET", "/iserver/marketdata/snapshot", {"contract_id": 265598}),
    "list_positions": ("GET", "/positions/", {"account_id": ACCOUNT}),
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("operation", sorted(READS))
async def test_a_read_fails_with_a_broker_code_or_succeeds_and_works_once_the_fault_is_gone(
    tmp_path: Path, operation: str, fault: Fault
) -> None:
    method, path, args = READS[operation]
    async with rig(tmp_path) as r:
        await r.desk.call("list_accounts", {}, principal=AGENT)  # the session as an agent finds it
        r.proxy.inject(method, path, fault)
        with anyio.fail_after(20):
            try:
                await r.desk.call(operation, args, principal=AGENT)
            except GatewayError as error:
                assert fault != "latency", f"latency alone failed the read: {error.code}"
                assert ERROR_CATALOGUE[error.code].family in BROKER_FAMILIES, error.code
            assert await r.desk.call(operation, args, principal=AGENT) is not None
        assert r.proxy.injected, "the fault never fired"


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_paper_submit_under_a_fault_ends_as_exactly_one_order(tmp_path: Path, fault: Fault) -> None:
    async with rig(tmp_path) as r:
        approval = await r.desk.approved()
        await r.desk.call("list_orders", {"account_id": ACCOUNT}, principal=AGENT)
        r.proxy.inject("POST", f"/iserver/account/{ACCOUNT}/orders", fault)
        placed, codes = await _settle(r.desk, "submit_paper_order", r.desk.submit_args(approval, f"fault-{fault}"))
        assert r.proxy.injected, "the fault never fired"
        assert (fault == "latency") == (not codes), codes
        assert placed.status in ("submitted", "filled")
        assert r.desk.orders_with(placed.client_order_id) == 1
        assert len(r.sim.placements) == 1
        assert (await r.desk.call("reconcile_orders", {}, principal=OPERATOR)).unresolved_records == 0
        if fault in NEVER_SENT:
            assert not placed.replayed


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_paper_cancel_under_a_fault_cancels_the_order_once(tmp_path: Path, fault: Fault) -> None:
    async with rig(tmp_path) as r:
        far = {"limit_price": "100"}  # rests: AAPL trades near 212
        placed = await r.desk.call(
            "submit_paper_order", r.desk.submit_args(await r.desk.approved(**far), "rest"), principal=AGENT
        )
        r.proxy.inject("DELETE", f"/order/{placed.broker_order_id}", fault)
        args = {"account_id": ACCOUNT, "broker_order_id": placed.broker_order_id, "idempotency_key": f"c-{fault}"}
        cancelled, codes = await _settle(r.desk, "cancel_paper_order", args)
        assert r.proxy.injected, "the fault never fired"
        assert (fault == "latency") == (not codes), codes
        assert cancelled.status in ("cancelled", "pending_cancel")
        assert [o.status for o in r.sim.placements] == ["Cancelled"]
        assert (await r.desk.call("reconcile_orders", {}, principal=OPERATOR)).unresolved_records == 0
