"""Replicas split the reconciliation backlog: each tracked live order is claimed (a short lease) by one
gateway at a time, so two replicas reconciling at once poll every order once between them, and the claims
of a replica that died come back when its lease runs out. Run on SQLite and on a real PostgreSQL."""

from collections import Counter
from collections.abc import AsyncGenerator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.models import OrderRecord
from ibkr_gateway_core.orders import OrderStore
from ibkr_gateway_core.state import PostgresLocation, StateLocation, open_state, write_transaction
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, AGENTS_MAY_TRADE_PAPER, AUDIT_KEY, OPERATOR, Clock

pytestmark = pytest.mark.anyio

BACKLOG = 40
"""More than two claim batches (16), so both replicas get a share."""


def _now() -> datetime:
    return datetime.now(UTC)


def _track(location: StateLocation, count: int, clock: Clock) -> list[str]:
    """Put `count` working live orders in the backlog, as submits would."""
    ids = [f"9{n:05d}" for n in range(count)]
    db = open_state(location)
    try:
        with write_transaction(db) as tx:
            tx.executemany(
                "INSERT INTO live_orders (account_id, broker_order_id, writer, client_order_id, last_status, "
                "created_at) VALUES (?, ?, 'client-portal', NULL, 'submitted', ?)",
                [(ACCOUNT, order_id, (clock.now - timedelta(seconds=n)).isoformat()) for n, order_id in enumerate(ids)],
            )
    finally:
        db.close()
    return ids


@asynccontextmanager
async def _replica(
    name: str, location: StateLocation, directory: Path, clock: Callable[[], datetime], polls: list[tuple[str, str]]
) -> AsyncGenerator[Gateway]:
    """One gateway over the shared state; every order status it asks the broker for is logged in `polls`."""
    state: dict[str, Any] = {"directory": str(directory)}
    if isinstance(location, PostgresLocation):
        state |= {"backend": "postgres", "postgres_dsn_env": "TEST_RECONCILE_DSN"}
    config = GatewayConfig.from_mapping({"state": state, **AGENTS_MAY_TRADE_PAPER})
    sim = SimulatorState()

    def backend_factory(_: GatewayConfig) -> CpapiBackend:
        backend = open_simulator_backend(sim, preflight_delays_s=(0.0, 0.0, 0.0))

        async def order_status(account_id: str, broker_order_id: str) -> OrderRecord:
            polls.append((name, broker_order_id))
            await anyio.sleep(0.01)  # a broker round trip: the other replica claims meanwhile
            return OrderRecord(
                account_id=account_id,
                broker_order_id=broker_order_id,
                symbol="AAPL",
                side="buy",
                status="submitted",
            )

        backend.order_status = order_status  # type: ignore[method-assign]
        return backend

    audit = AuditLog.open(location, AUDIT_KEY)
    async with Gateway(config, audit, backend_factory=backend_factory, clock=clock) as gw:
        yield gw


def _location(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> StateLocation:
    if backend == "sqlite":
        return tmp_path / "state" / "state.sqlite3"
    dsn: str = request.getfixturevalue("postgres_dsn")
    monkeypatch.setenv("TEST_RECONCILE_DSN", dsn)
    return PostgresLocation(dsn)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_two_replicas_reconciling_at_once_poll_every_order_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = _location(backend, tmp_path, request, monkeypatch)
    polls = list[tuple[str, str]]()
    async with AsyncExitStack() as stack:  # real clocks: a pass is "since it started"
        a = await stack.enter_async_context(_replica("a", location, tmp_path / "state", _now, polls))
        b = await stack.enter_async_context(_replica("b", location, tmp_path / "state", _now, polls))
        await a.unfinished_orders()  # opens the state (and migrates it) before the backlog is written
        ids = _track(location, BACKLOG, Clock())
        reports: dict[str, Any] = {}

        async def reconcile(name: str, gateway: Gateway) -> None:
            reports[name] = (await gateway.call("reconcile_orders", {}, principal=OPERATOR)).value

        async with anyio.create_task_group() as tg:
            tg.start_soon(reconcile, "a", a)
            tg.start_soon(reconcile, "b", b)
        per_order = Counter(order_id for _, order_id in polls)
        assert sorted(per_order) == sorted(ids), "an order was not polled"
        assert set(per_order.values()) == {1}, f"polled by both in one round: {per_order.most_common(3)}"
        by_replica = Counter(name for name, _ in polls)
        assert by_replica["a"] > 0 and by_replica["b"] > 0, by_replica
        assert reports["a"].scanned + reports["b"].scanned == BACKLOG
        assert (reports["a"].scanned, reports["b"].scanned) == (by_replica["a"], by_replica["b"])
        # every claim was released: the next pass polls all of them again
        polls.clear()
        await a.call("reconcile_orders", {}, principal=OPERATOR)
        assert sorted(order_id for _, order_id in polls) == sorted(ids)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_claims_of_a_dead_replica_come_back_after_its_lease(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = _location(backend, tmp_path, request, monkeypatch)
    clock, polls = Clock(), list[tuple[str, str]]()
    async with _replica("live", location, tmp_path / "state", clock, polls) as live:
        await live.unfinished_orders()
        ids = _track(location, 20, clock)
        lease = live.config.orders.reconcile_lease_seconds
        dead = OrderStore.open(location)  # a replica that claims a batch, then is killed before polling it
        try:
            claimed = dead.claim_live_orders(
                "dead-replica", round_start=clock.now, now=clock.now, lease_s=lease, limit=16
            )
        finally:
            dead.close()
        assert len(claimed) == 16
        taken = {order.broker_order_id for order in claimed}

        report = (await live.call("reconcile_orders", {}, principal=OPERATOR)).value
        assert {order_id for _, order_id in polls} == set(ids) - taken  # the dead replica's lease still holds
        assert report.scanned == 4

        polls.clear()
        clock.now += timedelta(seconds=lease + 1)  # the lease runs out: nobody renews a dead replica's claim
        report = (await live.call("reconcile_orders", {}, principal=OPERATOR)).value
        assert sorted(order_id for _, order_id in polls) == sorted(ids)
        assert report.scanned == 20
