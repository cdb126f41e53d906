"""The state database: the one place that opens SQLite connections, and its versioned schema.

Every connection comes from `open_database`, which sets the durability pragmas (they are per
connection in SQLite, so none may be skipped) and brings the schema up to date. Writes go through
`write_transaction`, which takes the write lock up front with `BEGIN IMMEDIATE`: a deferred `BEGIN`
that reads and then writes fails at once with SQLITE_BUSY when another process wrote meanwhile.

To change the schema, append a `Migration` to `MIGRATIONS` with the next version number; applied
migrations are never edited.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from .errors import ErrorCode, GatewayError

BUSY_TIMEOUT_MS: Final = 10_000
"""How long a connection waits for another process's write lock before giving up."""

DIRECTORY_MODE: Final = 0o700
"""Mode of the state directories this module creates: only the owner may list them."""

FILE_MODE: Final = 0o600
"""Mode of a database file this module creates: only the owner may read it."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema, applied once, in order, inside a write transaction."""

    version: int
    """Position in `MIGRATIONS`, starting at 1; stored in `schema_migrations`."""
    name: str
    """Short description, stored with the version."""
    statements: tuple[str, ...]
    """SQL statements, run one by one (`executescript` would commit the open transaction)."""


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "audit events",
        (
            """
            CREATE TABLE audit_events (
                sequence INTEGER PRIMARY KEY CHECK (sequence >= 1),
                key_id TEXT NOT NULL,
                event_id TEXT NOT NULL UNIQUE,
                event_type TEXT NOT NULL,
                timestamp TEXT NOT NULL,
                payload TEXT NOT NULL,
                chain_hash TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        2,
        "order workflow",
        (
            """
            CREATE TABLE order_previews (
                preview_id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                created_by_kind TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                payload TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE order_approvals (
                approval_id TEXT PRIMARY KEY,
                preview_id TEXT NOT NULL REFERENCES order_previews (preview_id),
                account_id TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('approved', 'consumed', 'revoked')),
                approved_at TEXT NOT NULL,
                payload TEXT NOT NULL
            )
            """,
            "CREATE INDEX order_approvals_by_time ON order_approvals (approved_at)",
            """
            CREATE TABLE order_idempotency (
                scope_key TEXT PRIMARY KEY,
                flow TEXT NOT NULL,
                account_id TEXT NOT NULL,
                request_hash TEXT NOT NULL,
                client_order_id TEXT,
                writer TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'failed', 'unknown')),
                approval_id TEXT,
                context TEXT NOT NULL,
                result TEXT,
                error TEXT,
                notional TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
            "CREATE INDEX order_idempotency_by_flow ON order_idempotency (flow, account_id, created_at)",
            "CREATE INDEX order_idempotency_by_status ON order_idempotency (status)",
            """
            CREATE TABLE kill_switch (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                state TEXT NOT NULL CHECK (state IN ('open', 'closed')),
                payload TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE live_orders (
                account_id TEXT NOT NULL,
                broker_order_id TEXT NOT NULL,
                writer TEXT NOT NULL,
                client_order_id TEXT,
                last_status TEXT NOT NULL,
                created_at TEXT NOT NULL,
                last_polled_at TEXT,
                PRIMARY KEY (account_id, broker_order_id)
            )
            """,
        ),
    ),
)
"""Every schema step, oldest first; append new ones, never edit applied ones."""


def open_database(path: Path, *, migrations: tuple[Migration, ...] = MIGRATIONS) -> sqlite3.Connection:
    """Open (creating if needed) the state database at `path` with durable settings and a current schema.

    The connection is in autocommit mode (`isolation_level=None`): callers open transactions
    explicitly, writers with `write_transaction`. It may be used from worker threads, one at a time.

    Raises:
        GatewayError: `STATE_DATABASE_UNAVAILABLE` when the file cannot be created or opened, is not a
            database, or holds a schema newer than this version knows.
    """
    try:
        _create_private_file(path)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise _unavailable(path, exc) from None
    try:
        _configure(db)
        _migrate(db, migrations)
    except GatewayError:
        db.close()
        raise
    except sqlite3.Error as exc:
        db.close()
        raise _unavailable(path, exc) from None
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Generator[sqlite3.Connection]:
    """Run the block in a `BEGIN IMMEDIATE` transaction: commit on success, roll back on any error."""
    db.execute("BEGIN IMMEDIATE")  # take the write lock now; a deferred BEGIN cannot wait for it later
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


@contextmanager
def read_transaction(db: sqlite3.Connection) -> Generator[sqlite3.Connection]:
    """Run the block on one consistent snapshot of the database (a deferred read transaction)."""
    db.execute("BEGIN")
    try:
        yield db
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")


def schema_version(db: sqlite3.Connection) -> int:
    """The newest migration applied to the database, 0 for a new file."""
    exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
    if exists is None:
        return 0
    row = db.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def _configure(db: sqlite3.Connection) -> None:
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # wait for other writers instead of failing
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()  # readers never block the single writer
    if mode is None or str(mode[0]).lower() != "wal":
        raise GatewayError(
            ErrorCode.STATE_DATABASE_UNAVAILABLE,
            "The state database cannot use write-ahead logging (is it on a network filesystem?).",
        )
    db.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss; not saved in the file
    db.execute("PRAGMA foreign_keys=ON")


def _migrate(db: sqlite3.Connection, migrations: tuple[Migration, ...]) -> None:
    known = migrations[-1].version if migrations else 0
    if schema_version(db) == known:
        return  # the common case: no write lock needed
    with write_transaction(db):
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        current = schema_version(db)  # again, under the lock: another process may have migrated
        if current > known:
            raise GatewayError(
                ErrorCode.STATE_DATABASE_UNAVAILABLE,
                f"The state database has schema version {current}, newer than this version knows ({known}).",
                user_action="Upgrade ibkr-agent-gateway, or point state.directory at another directory.",
            )
        applied_at = datetime.now(UTC).isoformat()
        for migration in migrations:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, applied_at),
            )


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents with mode 0700; existing directories are left alone."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=DIRECTORY_MODE, exist_ok=True)


def _create_private_file(path: Path) -> None:
    """Create missing parent directories (0700) and the database file (0600) without widening existing ones."""
    make_private_dirs(path.parent)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE)  # SQLite gives -wal and -shm the same mode
        os.close(fd)


def _unavailable(path: Path, exc: Exception) -> GatewayError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return GatewayError(
        ErrorCode.STATE_DATABASE_UNAVAILABLE,
        f"The state database {path.name!r} cannot be opened: {reason}.",
    )
