"""An acknowledged audit event survives a crash of PostgreSQL.

Appenders that find the chain's head moved by another writer (other replicas) append under the chain's
lock in a transaction that commits without waiting for the WAL flush, so the lock is free again at once,
and then wait for the flush before returning. This test holds that promise against a real crash: a
durable cluster whose WAL writer is held back (so nothing reaches the disk unless a commit flushes it),
stopped with `pg_ctl -m immediate` and recovered from its WAL.
"""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import psycopg
from ibkr_gateway_core.audit import AuditEvent, AuditLog
from ibkr_gateway_core.state import PostgresLocation
from postgres_server import running_postgres

KEY = b"d" * 32
HELD_BACK = {"wal_writer_delay": "10000ms", "wal_writer_flush_after": "1GB"}


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        event_type="tool_completed",
        timestamp=datetime.now(UTC),
        principal_kind="local_agent",
        principal_subject=f"writer-{i % 2}",
        scopes=[],
        decision="allow",
        result_status="completed",
        metadata={"i": i},
    )


def _verified_events(dsn: str) -> int:
    """How many events `audit verify` finds in the chain after the restart; the chain must be valid."""
    log = AuditLog.open(PostgresLocation(dsn), KEY)
    try:
        report = log.verify_sync()
    finally:
        log.close()
    assert report.chain_valid, report.reason
    return report.events_scanned


def test_acknowledged_appends_survive_a_crash_of_postgres() -> None:
    with running_postgres(durable=True, settings=HELD_BACK) as server:
        dsn = server.new_database()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE crash_probe (n int)")  # before the appends: its commit flushes the WAL
        logs = [AuditLog.open(PostgresLocation(dsn), KEY) for _ in range(2)]
        try:
            # Two writers taking turns: each append finds the head moved by the other (the locked path).
            acknowledged = [logs[i % 2].append_sync(_event(i)).sequence for i in range(40)]
        finally:
            for log in logs:
                log.close()
        assert acknowledged == list(range(1, 41))
        # The control: a commit that does not wait for the flush is lost by this crash, so the check
        # below would catch an append acknowledged before its flush.
        with psycopg.connect(dsn, autocommit=False) as conn:
            conn.execute("SET LOCAL synchronous_commit TO off")
            conn.execute("INSERT INTO crash_probe VALUES (1)")
            conn.commit()

        server.crash_and_restart()

        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM crash_probe").fetchone() == (0,)
        assert _verified_events(dsn) == 40


def _flushed(dsn: str) -> bool:
    """Whether the WAL on disk reaches everything inserted so far."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn()").fetchone()
    assert row is not None
    return bool(row[0])


def test_unsynced_appends_do_not_wait_for_the_flush_and_the_next_synced_one_flushes_them() -> None:
    """`audit.read_sync: normal` on PostgreSQL: a completed read's event is committed without waiting for the WAL
    flush; a crash of the server can cut off such events at the end of the chain, never one in the middle, and
    the next synced append makes every one before it durable."""
    with running_postgres(durable=True, settings=HELD_BACK) as server:
        dsn = server.new_database()
        log = AuditLog.open(PostgresLocation(dsn), KEY)

        async def append(first: int, count: int, *, sync: bool) -> None:
            for i in range(first, first + count):
                await log.append(_event(i), sync=sync)

        try:
            anyio.run(lambda: append(0, 3, sync=True))
            assert _flushed(dsn)
            anyio.run(lambda: append(3, 5, sync=False))
            assert not _flushed(dsn)  # committed, not waited for
            anyio.run(lambda: append(8, 1, sync=True))
            assert _flushed(dsn)
            anyio.run(lambda: append(9, 4, sync=False))
        finally:
            log.close()

        server.crash_and_restart()

        assert 9 <= _verified_events(dsn) <= 13  # every event up to the synced ninth; of the last four, a prefix
