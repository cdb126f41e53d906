"""The state database factory: durable settings on every connection, versioned migrations, write locks."""

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Final

import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.state import (
    MIGRATIONS,
    Migration,
    open_database,
    read_transaction,
    schema_version,
    write_transaction,
)
from ibkr_gateway_core.state.database import BUSY_TIMEOUT_MS, execute_locked

SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""`packages/`: every source tree of the workspace."""


def test_every_connection_from_the_factory_is_durable(tmp_path: Path) -> None:
    """WAL and synchronous=FULL are per connection in SQLite, so each one must set them (R32)."""
    path = tmp_path / "state.sqlite3"
    connections = [open_database(path) for _ in range(3)]
    try:
        for db in connections:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
            assert db.isolation_level is None
    finally:
        for db in connections:
            db.close()


def test_no_source_file_opens_sqlite_outside_the_factory() -> None:
    """A connection opened elsewhere would skip the durability pragmas (R32 static check)."""
    offenders = [
        path.relative_to(SOURCE_ROOT).as_posix()
        for path in SOURCE_ROOT.glob("*/src/**/*.py")
        if "sqlite3.connect(" in path.read_text(encoding="utf-8")
        and not path.as_posix().endswith("/ibkr_gateway_core/state/database.py")
    ]
    assert offenders == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_new_database_and_directories_are_private_to_the_owner(tmp_path: Path) -> None:
    """The state holds hashed account ids and workflow state: nobody else may read it."""
    path = tmp_path / "a" / "b" / "state.sqlite3"
    open_database(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_migrations_are_applied_once_and_recorded(tmp_path: Path) -> None:
    """Reopening a current database changes nothing; the version table names each step."""
    path = tmp_path / "state.sqlite3"
    open_database(path).close()
    db = open_database(path)
    try:
        rows = db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert rows == [(m.version, m.name) for m in MIGRATIONS]
        assert schema_version(db) == MIGRATIONS[-1].version
    finally:
        db.close()


def test_an_appended_migration_upgrades_an_existing_database(tmp_path: Path) -> None:
    """Later issues add tables by appending one `Migration`; existing files catch up on open."""
    path = tmp_path / "state.sqlite3"
    open_database(path).close()
    extra = Migration(len(MIGRATIONS) + 1, "extension", ("CREATE TABLE extension_example (id INTEGER PRIMARY KEY)",))
    db = open_database(path, migrations=(*MIGRATIONS, extra))
    try:
        assert schema_version(db) == extra.version
        assert db.execute("SELECT count(*) FROM extension_example").fetchone() == (0,)
    finally:
        db.close()


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    """Running old code on a newer schema could corrupt it, so opening stops with a clear code."""
    path = tmp_path / "state.sqlite3"
    extra = Migration(len(MIGRATIONS) + 1, "future", ("CREATE TABLE future (id INTEGER)",))
    open_database(path, migrations=(*MIGRATIONS, extra)).close()
    with pytest.raises(GatewayError) as caught:
        open_database(path)
    assert caught.value.code is ErrorCode.STATE_DATABASE_UNAVAILABLE


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    """Pointing the state path at some other file fails with a code, never a traceback or the path."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GatewayError) as caught:
        open_database(path)
    assert caught.value.code is ErrorCode.STATE_DATABASE_UNAVAILABLE
    assert str(tmp_path) not in str(caught.value)


def test_write_transaction_rolls_back_everything_on_error(tmp_path: Path) -> None:
    """A failed write leaves nothing half-written."""
    db = open_database(tmp_path / "state.sqlite3")
    try:
        db.execute("CREATE TABLE t (x INTEGER)")
        with pytest.raises(RuntimeError), write_transaction(db):
            db.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("boom")
        assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert not db.in_transaction
    finally:
        db.close()


def test_write_transaction_holds_the_write_lock_from_the_start(tmp_path: Path) -> None:
    """`BEGIN IMMEDIATE`: a second writer waits for the first instead of failing later with BUSY."""
    path = tmp_path / "state.sqlite3"
    first, second = open_database(path), open_database(path)
    first.execute("CREATE TABLE t (x INTEGER)")
    second.execute("PRAGMA busy_timeout=0")
    try:
        with write_transaction(first):
            first.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                second.execute("BEGIN IMMEDIATE")
        with write_transaction(second):
            second.execute("INSERT INTO t VALUES (2)")
        assert first.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
    finally:
        first.close()
        second.close()


_INSERT_UNLESS_ONE: Final = "INSERT INTO t SELECT 2 FROM {held} WHERE NOT EXISTS (SELECT 1 FROM t WHERE x = 1)"


def test_execute_locked_decides_on_what_the_last_writer_committed(tmp_path: Path) -> None:
    """The statement alone is its own transaction and takes the write lock before it reads: it never decides on
    a snapshot older than another writer's commit. Locked with no wait: it fails; waiting: it sees the new row."""
    path = tmp_path / "state.sqlite3"
    first, second = open_database(path), open_database(path)
    first.execute("CREATE TABLE t (x INTEGER)")
    try:
        second.execute("PRAGMA busy_timeout=0")
        with write_transaction(first):
            first.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                execute_locked(second, "state", _INSERT_UNLESS_ONE)
        first.execute("DELETE FROM t")
        second.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        inserted: list[int] = []
        with write_transaction(first):
            first.execute("INSERT INTO t VALUES (1)")
            waiting = threading.Thread(
                target=lambda: inserted.append(execute_locked(second, "state", _INSERT_UNLESS_ONE))
            )
            waiting.start()
            time.sleep(0.3)  # the statement waits for the lock meanwhile
        waiting.join(timeout=30)
        assert inserted == [0] and not second.in_transaction
        assert execute_locked(second, "state", _INSERT_UNLESS_ONE.replace("x = 1", "x = 9")) == 1
        assert first.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
        with pytest.raises(sqlite3.OperationalError), write_transaction(second):
            execute_locked(second, "state", _INSERT_UNLESS_ONE)
    finally:
        first.close()
        second.close()


def test_read_transaction_sees_one_snapshot_while_others_write(tmp_path: Path) -> None:
    """Verify streams on a snapshot: rows committed meanwhile by another connection are not seen."""
    path = tmp_path / "state.sqlite3"
    reader, writer = open_database(path), open_database(path)
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("INSERT INTO t VALUES (1)")
    try:
        with read_transaction(reader):
            assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)
            with write_transaction(writer):
                writer.execute("INSERT INTO t VALUES (2)")
            assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (2,)
    finally:
        reader.close()
        writer.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_existing_directories_keep_their_mode(tmp_path: Path) -> None:
    """Only directories the factory creates are made private; the user's own are left alone."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    open_database(shared / "state.sqlite3").close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755


_OPEN_AT_ONCE = """
import os, sys, time
from pathlib import Path
from ibkr_gateway_core.errors import GatewayError
from ibkr_gateway_core.state import open_database

go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.001)
try:
    open_database(Path(sys.argv[2])).close()
except GatewayError as exc:
    print(exc.code.value, exc.message)
    sys.exit(1)
"""


def test_processes_opening_a_new_file_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    """The switch to WAL ignores SQLite's busy handler: a race on a new file must wait, not fail."""
    failures: list[str] = []
    for round_ in range(8):
        go, path = tmp_path / f"go-{round_}", tmp_path / f"state-{round_}.sqlite3"
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN_AT_ONCE, str(go), str(path)],
                stdout=subprocess.PIPE,
                encoding="utf-8",
            )
            for _ in range(3)
        ]
        time.sleep(0.5)  # every child imported and waiting
        go.touch()
        for child in children:
            out, _ = child.communicate(timeout=60)
            if child.returncode != 0:
                failures.append(out.strip())
    assert failures == []


def test_driver_errors_that_mean_unavailable_get_the_stable_code(tmp_path: Path) -> None:
    """A locked or read-only file is `STATE_DATABASE_UNAVAILABLE` (locked: retryable); a bug stays unmapped."""
    from ibkr_gateway_core.state.database import LOCKED_ACTION, unavailable_error

    path = tmp_path / "state.sqlite3"
    holder, waiter = open_database(path), open_database(path)
    waiter.execute("PRAGMA busy_timeout=50")
    readonly = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as locked:
            waiter.execute("BEGIN IMMEDIATE")
        holder.execute("ROLLBACK")
        with pytest.raises(sqlite3.OperationalError) as read_only:
            readonly.execute("DELETE FROM kill_switch")
        with pytest.raises(sqlite3.IntegrityError) as constraint:
            holder.execute("INSERT INTO kill_switch (id, state, payload) VALUES (2, 'open', '{}')")
    finally:
        for db in (holder, waiter, readonly):
            db.close()
    error = unavailable_error(locked.value)
    assert error is not None and error.code is ErrorCode.STATE_DATABASE_UNAVAILABLE
    assert error.retryable and error.user_action == LOCKED_ACTION and "locked" in error.message
    error = unavailable_error(read_only.value)
    assert error is not None and error.code is ErrorCode.STATE_DATABASE_UNAVAILABLE and not error.retryable
    assert "readonly" in error.message and str(tmp_path) not in error.message
    assert unavailable_error(constraint.value) is None
    assert unavailable_error(RuntimeError("database is locked")) is None  # only the driver's own errors


def test_a_lost_postgres_connection_is_unavailable_without_the_dsn() -> None:
    """psycopg's operational errors (a refused connection here) name only their class, never host or password."""
    import socket

    import psycopg
    from ibkr_gateway_core.state.database import unavailable_error

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(f"postgresql://canary-user:pw-canary-91@127.0.0.1:{port}/db", connect_timeout=2)
    error = unavailable_error(caught.value)
    assert error is not None and error.code is ErrorCode.STATE_DATABASE_UNAVAILABLE
    shown = f"{error.message} {error.user_action} {error.details}"
    assert "pw-canary-91" not in shown and "canary-user" not in shown and str(port) not in shown
