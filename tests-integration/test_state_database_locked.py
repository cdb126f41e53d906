"""A SQLite state database locked by another process: a stable, retryable code, audited, never a traceback.

Another process holding the write lock (`BEGIN IMMEDIATE` on a second connection to the real file) past
the busy timeout makes every order-store write give up. That is `STATE_DATABASE_UNAVAILABLE`, not
`INTERNAL_ERROR`: the call fails with that code, the broker is not touched, the audit event records it
once the lock is free again, and the same call succeeds on retry. From the CLI: exit 7 and the JSON error.
"""

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_harness import run_cli
from ibkr_gateway_core.audit import AuditEvent, AuditLog, AuditRecord
from ibkr_gateway_core.call_context import Switch
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.orders import ApprovalRecord, OrderPreview
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import WITH_LIVE
from ibkr_gateway_core.state import database
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimulatorState

pytestmark = pytest.mark.anyio

OPERATOR = Principal(kind="local_operator", subject="op", scopes=WITH_LIVE)
ACCOUNT = "DU1234567"
PREVIEW = frozenset({Switch.ENABLE_PREVIEW})
PAPER = frozenset({Switch.ENABLE_PAPER})
BUSY_TIMEOUT_MS = 300
"""The busy timeout of the gateway's connections in the in-process tests (the product's is 10 s)."""
ORDER = {"account_id": ACCOUNT, "symbol": "AAPL", "side": "buy", "quantity": "1", "limit_price": "100"}


class Holder:
    """A second connection to the real file that takes the write lock and gives it back on demand."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=10000")

    def lock(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self.release()
        self._db.close()


@dataclass
class Desk:
    gateway: Gateway
    sim: SimulatorState
    holder: Holder

    async def call(self, name: str, args: dict[str, Any], switches: frozenset[str] = frozenset()) -> Any:
        return (await self.gateway.call(name, args, principal=OPERATOR, switches=switches)).value

    async def approved(self) -> ApprovalRecord:
        preview: OrderPreview = await self.call("preview_order", ORDER, PREVIEW)
        return await self.call(
            "create_approval", {"account_id": ACCOUNT, "preview_id": preview.preview_id, "mode": "paper"}
        )

    async def locked_call(
        self, name: str, args: dict[str, Any], switches: frozenset[str] = frozenset()
    ) -> GatewayError:
        """Run the call while the holder keeps the write lock; the lock is given back only when the call's
        outcome is being audited (after the store gave up), so the refusal's own event can be written."""
        append = self.gateway.audit.append

        async def release_then_append(event: AuditEvent, **options: Any) -> AuditRecord:
            self.holder.release()
            return await append(event, **options)

        self.gateway.audit.append = release_then_append  # type: ignore[method-assign]
        self.holder.lock()
        started = time.monotonic()
        try:
            with pytest.raises(GatewayError) as caught:
                await self.call(name, args, switches)
        finally:
            self.gateway.audit.append = append  # type: ignore[method-assign]
            self.holder.release()
        assert time.monotonic() - started >= BUSY_TIMEOUT_MS / 1000 * 0.9  # it waited for the lock first
        return caught.value


@pytest.fixture
async def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Desk]:
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", BUSY_TIMEOUT_MS)
    config = GatewayConfig.from_mapping({"state": {"directory": str(tmp_path / "state")}})
    audit = AuditLog.open(config.audit_path(), b"k" * 32)
    sim = SimulatorState()

    def backend_factory(_: GatewayConfig) -> CpapiBackend:
        return open_simulator_backend(sim, preflight_delays_s=(0.0, 0.0, 0.0))

    holder = Holder(config.audit_path())
    try:
        async with Gateway(config, audit, backend_factory=backend_factory) as gateway:
            yield Desk(gateway, sim, holder)
    finally:
        holder.close()


async def _assert_refused_and_audited(desk: Desk, error: GatewayError) -> None:
    assert error.code is ErrorCode.STATE_DATABASE_UNAVAILABLE, error.message
    assert error.retryable
    assert "locked" in error.message and f"{BUSY_TIMEOUT_MS / 1000:g} s" in error.message
    assert error.user_action == database.LOCKED_ACTION
    assert "state.sqlite3" not in error.message and "/" not in error.message  # no path
    newest = (await desk.gateway.audit.tail(1))[0].event
    assert newest.event_id == error.audit_event_id
    assert newest.error_code == "STATE_DATABASE_UNAVAILABLE"
    assert newest.result_status == "failed"
    report = await desk.gateway.audit.verify()
    assert report.chain_valid, report.reason


Step = Callable[[Desk], Awaitable[tuple[str, dict[str, Any], frozenset[str]]]]


async def _preview(desk: Desk) -> tuple[str, dict[str, Any], frozenset[str]]:
    return "preview_order", ORDER, PREVIEW


async def _approve(desk: Desk) -> tuple[str, dict[str, Any], frozenset[str]]:
    preview: OrderPreview = await desk.call("preview_order", ORDER, PREVIEW)
    return "create_approval", {"account_id": ACCOUNT, "preview_id": preview.preview_id, "mode": "paper"}, frozenset()


async def _submit(desk: Desk) -> tuple[str, dict[str, Any], frozenset[str]]:
    approval = await desk.approved()
    args = {"account_id": ACCOUNT, "approval_id": approval.approval_id, "idempotency_key": "locked-submit-1"}
    return "submit_paper_order", args, PAPER


async def _revoke(desk: Desk) -> tuple[str, dict[str, Any], frozenset[str]]:
    approval = await desk.approved()
    return "revoke_approval", {"approval_id": approval.approval_id, "reason": "changed my mind"}, frozenset()


async def _deny(desk: Desk) -> tuple[str, dict[str, Any], frozenset[str]]:
    preview: OrderPreview = await desk.call("preview_order", ORDER, PREVIEW)
    return "deny_preview", {"preview_id": preview.preview_id, "reason": "no"}, frozenset()


async def _close_kill_switch(desk: Desk) -> tuple[str, dict[str, Any], frozenset[str]]:
    return "close_kill_switch", {"reason": "stop"}, frozenset()


@pytest.mark.parametrize(
    "step",
    [
        pytest.param(_preview, id="preview"),
        pytest.param(_approve, id="approve"),
        pytest.param(_submit, id="paper-submit"),
        pytest.param(_revoke, id="revoke"),
        pytest.param(_deny, id="deny"),
        pytest.param(_close_kill_switch, id="close-kill-switch"),
    ],
)
async def test_a_locked_database_is_state_unavailable_audited_and_retryable(desk: Desk, step: Step) -> None:
    name, args, switches = await step(desk)
    orders_before = len(desk.sim.book.orders)
    error = await desk.locked_call(name, args, switches)
    await _assert_refused_and_audited(desk, error)
    assert len(desk.sim.book.orders) == orders_before  # nothing reached the broker
    await desk.call(name, args, switches)  # the lock is free: the same call goes through
    newest = (await desk.gateway.audit.tail(1))[0].event
    assert newest.result_status == "completed" and newest.error_code is None


async def test_a_lock_held_past_the_audit_too_is_an_audit_failure_not_a_crash(desk: Desk) -> None:
    """Held for the whole call, the outcome cannot be audited either: the caller is told so, with its code."""
    desk.holder.lock()
    try:
        with pytest.raises(GatewayError) as caught:
            await desk.call("preview_order", ORDER, PREVIEW)
    finally:
        desk.holder.release()
    assert caught.value.code is ErrorCode.AUDIT_WRITE_FAILED
    assert "locked" in caught.value.message


# ----------------------------------------------------------------------------- the CLI, real 10 s busy timeout


@contextmanager
def _lock_released_at(path: Path, deadline: float) -> Iterator[None]:
    """Hold the write lock on `path` from now until `deadline` (time.monotonic), in a thread."""
    import threading

    holder = Holder(path)
    holder.lock()
    stop = threading.Event()

    def release_later() -> None:
        stop.wait(max(0.0, deadline - time.monotonic()))
        holder.release()

    thread = threading.Thread(target=release_later)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        holder.close()


PREVIEW_CLI = [
    "--json",
    *f"orders preview --account {ACCOUNT} --symbol AAPL --side buy --quantity 1 --limit-price 100".split(),
    "--enable-preview",
]


@pytest.mark.slow
def test_the_cli_shows_the_json_error_and_exits_7_without_a_traceback(cli_env: dict[str, str]) -> None:
    """The product's busy timeout (10 s): the store gives up after it, the lock is freed before the audit
    append's own wait ends (half a timeout later), so the refusal is audited and printed as JSON."""
    busy = database.BUSY_TIMEOUT_MS / 1000
    started = time.monotonic()
    first = run_cli(PREVIEW_CLI, cli_env)  # creates the file; its duration tells when the next run reaches the store
    took = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    path = Path(cli_env["IBKR_AGENT_STATE_DIR"]) / "state.sqlite3"
    with _lock_released_at(path, time.monotonic() + took + busy * 1.5):
        proc = run_cli(PREVIEW_CLI, cli_env, timeout=120)
    assert proc.returncode == 7, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    error = json.loads(proc.stderr)
    assert error["code"] == "STATE_DATABASE_UNAVAILABLE", error
    assert error["retryable"] is True and error["user_action"] == database.LOCKED_ACTION
    tail = run_cli(["--json", "audit", "tail", "--limit", "1"], cli_env)
    assert tail.returncode == 0, tail.stderr
    event = json.loads(tail.stdout)["events"][0]["event"]
    assert event["event_id"] == error["audit_event_id"] and event["error_code"] == "STATE_DATABASE_UNAVAILABLE"
