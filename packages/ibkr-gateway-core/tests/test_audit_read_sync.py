"""`audit.read_sync`: completed reads may commit without a disk sync; everything else is synced.

The SQLite connection's own `synchronous` setting is read back after each commit, so the tests see
what SQLite was told, not only what the gateway meant.
"""

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from ibkr_gateway_core.audit import AuditEvent, AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.models import BrokerAccount
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.registry import OPERATIONS
from ibkr_gateway_core.scopes import Scope
from ibkr_gateway_core.state import open_database
from ibkr_gateway_core.state.database import BUSY_TIMEOUT_MS

pytestmark = pytest.mark.anyio

KEY = b"r" * 32
FULL, NORMAL = 2, 1
"""`PRAGMA synchronous` values."""


class AccountsOnly:
    """A broker with one account: enough for completed and failed reads."""

    name = "fake"

    async def list_accounts(self) -> list[BrokerAccount]:
        return [BrokerAccount(account_id="DU1234567", account_mode="paper", base_currency="USD")]

    async def executions(self, account_id: str, days: int) -> list[object]:
        return []

    async def aclose(self) -> None:
        pass


def _config(tmp_path: Path, read_sync: str | None) -> GatewayConfig:
    audit = {} if read_sync is None else {"read_sync": read_sync}
    return GatewayConfig.from_mapping({"state": {"directory": str(tmp_path)}, "audit": audit})


def _synchronous(log: AuditLog) -> int:
    db = log._db  # pyright: ignore[reportPrivateUsage] - the setting SQLite really commits with
    assert isinstance(db, sqlite3.Connection)
    return int(db.execute("PRAGMA synchronous").fetchone()[0])


def _event() -> AuditEvent:
    return AuditEvent(
        event_type="tool_completed",
        timestamp=datetime.now(UTC),
        principal_kind="system",
        principal_subject="test",
        decision="allow",
        result_status="completed",
    )


def test_the_default_syncs_every_event() -> None:
    assert GatewayConfig().audit.read_sync == "full"


def test_an_unknown_read_sync_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(GatewayError) as refused:
        _config(tmp_path, "off")
    assert refused.value.code is ErrorCode.CONFIG_INVALID


@pytest.mark.parametrize("read_sync", [None, "full"])
async def test_with_full_every_commit_is_synced(tmp_path: Path, read_sync: str | None) -> None:
    config = _config(tmp_path, read_sync)
    async with Gateway(config, AuditLog.open(config.audit_path(), KEY), backend_factory=lambda _: AccountsOnly()) as gw:
        await gw.list_accounts()
        assert _synchronous(gw.audit) == FULL
        await gw.list_executions("DU1234567", 1)
        assert _synchronous(gw.audit) == FULL


async def test_with_normal_completed_reads_skip_the_sync_and_anything_else_restores_it(tmp_path: Path) -> None:
    config = _config(tmp_path, "normal")
    async with Gateway(config, AuditLog.open(config.audit_path(), KEY), backend_factory=lambda _: AccountsOnly()) as gw:
        await gw.list_accounts()
        assert _synchronous(gw.audit) == NORMAL
        with pytest.raises(GatewayError) as failed:  # a failed read: synced
            await gw.list_executions("DU0000000", 1)
        assert failed.value.code is ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT
        assert _synchronous(gw.audit) == FULL
        await gw.list_executions("DU1234567", 1)
        assert _synchronous(gw.audit) == NORMAL
        agent = Principal(kind="local_agent", subject="agent", scopes=frozenset({Scope.HEALTH_READ}))
        with pytest.raises(GatewayError) as denied:  # a denial: synced
            await gw.call("list_accounts", principal=agent)
        assert denied.value.code is ErrorCode.AUTH_MISSING_SCOPE
        assert _synchronous(gw.audit) == FULL
        await gw.audit_checkpoint()  # signs the head: its own event is synced, covering all before it
        assert _synchronous(gw.audit) == FULL
        report = await gw.audit_verify()
        assert report.chain_valid and report.events_scanned == 5  # its own event comes after the scan


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_only_completed_reads_other_than_a_checkpoint_may_skip_the_sync(tmp_path: Path, name: str) -> None:
    gw = Gateway(_config(tmp_path, "normal"), AuditLog.open(tmp_path / "state.sqlite3", KEY))
    try:
        op = OPERATIONS[name]
        skips = op.read_only and name != "audit_checkpoint"
        assert gw._needs_sync(op, None) is not skips  # pyright: ignore[reportPrivateUsage]
        failure = GatewayError(ErrorCode.BROKER_BACKEND_UNAVAILABLE, "down")
        assert gw._needs_sync(op, failure) is True  # pyright: ignore[reportPrivateUsage]
        assert gw._needs_sync(None, failure) is True  # pyright: ignore[reportPrivateUsage]
    finally:
        gw.audit.close()


async def test_an_unsynced_append_waits_for_another_writer_off_the_event_loop(tmp_path: Path) -> None:
    """Another process holds the write lock: the append must wait on a worker thread, never block the loop."""
    path = tmp_path / "state.sqlite3"
    log = AuditLog.open(path, KEY)
    other = open_database(path)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async def release() -> None:
        await anyio.sleep(0.3)
        other.execute("COMMIT")

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tick)
            tasks.start_soon(release)
            with anyio.fail_after(8):
                record = await log.append(_event(), sync=False)
            tasks.cancel_scope.cancel()
        assert record.sequence == 1
        assert ticks >= 5  # the loop kept running while the lock was held elsewhere
        assert _synchronous(log) == NORMAL
        synced = await log.append(_event())
        assert synced.sequence == 2 and _synchronous(log) == FULL
        assert log.verify_sync().chain_valid
    finally:
        other.close()
        log.close()


def _busy_timeout(log: AuditLog) -> int:
    db = log._db  # pyright: ignore[reportPrivateUsage]
    assert isinstance(db, sqlite3.Connection)
    return int(db.execute("PRAGMA busy_timeout").fetchone()[0])


async def test_a_worker_thread_waits_for_another_writer_again_after_unsynced_appends(tmp_path: Path) -> None:
    """Unsynced appends leave the connection failing fast on a locked file; the next worker-thread use waits again."""
    path = tmp_path / "state.sqlite3"
    log = AuditLog.open(path, KEY)
    other = open_database(path)

    async def release() -> None:
        await anyio.sleep(0.3)
        other.execute("COMMIT")

    try:
        await log.append(_event(), sync=False)
        await log.append(_event(), sync=False)
        assert _busy_timeout(log) == 0  # set once, kept while reads follow reads
        other.execute("BEGIN IMMEDIATE")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(release)
            with anyio.fail_after(8):
                synced = await log.append(_event())  # a worker thread: waits for the lock instead of failing
        assert synced.sequence == 3
        assert _busy_timeout(log) == BUSY_TIMEOUT_MS
        assert log.verify_sync().chain_valid
    finally:
        other.close()
        log.close()
