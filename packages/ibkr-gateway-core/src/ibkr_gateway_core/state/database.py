"""The state database: the one place that opens state connections, and its versioned schema.

Two backends sit behind one small seam, `StateConnection` (execute, executemany, close) plus
`write_transaction` / `read_transaction`:

- **SQLite** (the embedded default): every connection comes from `open_database`, which sets the
  durability pragmas (they are per connection in SQLite, so none may be skipped) and brings the schema
  up to date. `write_transaction` takes the write lock up front with `BEGIN IMMEDIATE`: a deferred
  `BEGIN` that reads and then writes fails at once with SQLITE_BUSY when another process wrote meanwhile.
- **PostgreSQL** (for several replicas, `state/postgres.py`, imported only when configured): the same
  SQL text (`?` placeholders are rewritten for the driver), a write transaction holds a
  transaction-scoped advisory lock per lock domain, so every check-then-write step keeps the single-writer
  semantics it has on SQLite, across processes *and* hosts.

Queries are written once in the dialect both accept (standard `INSERT ... ON CONFLICT`, no
`INSERT OR REPLACE`); `open_state` opens whichever `StateLocation` the config names.

To change the schema, append a `Migration` to `MIGRATIONS` (and its PostgreSQL form to
`state.postgres.POSTGRES_MIGRATIONS`) with the next version number; applied migrations are never edited.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Generator, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, Protocol, TypeVar, cast

from ..errors import ErrorCode, GatewayError

if TYPE_CHECKING:
    from .postgres import PostgresConnection

BUSY_TIMEOUT_MS: Final = 10_000
"""How long a connection waits for another process's write lock before giving up."""

DIRECTORY_MODE: Final = 0o700
"""Mode of the state directories this module creates: only the owner may list them."""

FILE_MODE: Final = 0o600
"""Mode of a database file this module creates: only the owner may read it."""


LockDomain = Literal["state", "audit"]
"""Which writers exclude each other on PostgreSQL: order workflow writes (`state`) or audit appends (`audit`).
SQLite has one write lock for the whole file, so there the domain changes nothing."""


class StateCursor(Protocol):
    """The rows of one statement, as both drivers return them (tuples)."""

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        ...

    def fetchmany(self, size: int, /) -> list[Any]:
        """Up to `size` more rows."""
        ...


class StateConnection(Protocol):
    """The part of a database connection the stores use; `sqlite3.Connection` is one as it is."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> StateCursor:
        """Run one statement with `?` placeholders."""
        ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> object:
        """Run one statement for each parameter row."""
        ...

    def close(self) -> None:
        """Close the connection (or pool)."""
        ...


@dataclass(frozen=True, slots=True)
class PostgresLocation:
    """A PostgreSQL state database: the DSN comes from the environment variable `state.postgres_dsn_env`."""

    dsn: str
    """libpq connection string or URL; holds a password, so it is never shown (see `__repr__`)."""
    pool_size: int = 4
    """Most connections one store opens."""
    connect_timeout_s: float = 10.0
    """How long opening the pool, or waiting for a free pooled connection, may take."""

    def __repr__(self) -> str:
        return "PostgresLocation(dsn=<hidden>)"


_C = TypeVar("_C", bound=StateConnection)

StateLocation = Path | PostgresLocation
"""Where the state lives: a SQLite file, or a PostgreSQL database."""


def open_state(location: StateLocation) -> StateConnection:
    """Open (creating or migrating if needed) the state database at `location`.

    Raises:
        GatewayError: `STATE_DATABASE_UNAVAILABLE` when it cannot be reached or has a newer schema;
            `CONFIG_INVALID` when PostgreSQL is configured but its optional extra is not installed.
    """
    if isinstance(location, PostgresLocation):
        from .postgres import open_postgres

        return open_postgres(location)
    return open_database(location)


def describe_location(location: StateLocation) -> str:
    """A name for messages: the file name, or `postgresql` (never the DSN: it may hold a password)."""
    return location.name if isinstance(location, Path) else "postgresql"


def database_errors() -> tuple[type[Exception], ...]:
    """The driver exceptions a state operation may raise: SQLite's, and psycopg's once it is loaded."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


LOCKED_ACTION: Final = (
    "Retry in a few seconds; if it keeps happening, end what keeps the state database locked: another ibkr-agent "
    "process in a long write, or a sqlite3 shell with an open transaction on the file."
)
"""What to do when another process held the SQLite write lock for longer than the busy timeout."""


def unavailable_error(exc: BaseException) -> GatewayError | None:
    """The stable error for a driver exception that means the state database cannot be used right now.

    SQLite's operational errors (locked past the busy timeout, disk full or read-only, I/O errors) and
    psycopg's (connection lost, no pooled connection in time) become `STATE_DATABASE_UNAVAILABLE`; a
    locked file is retryable. Other driver errors (a constraint, a query the schema does not fit) are
    bugs and give None: the caller reports them as internal errors.
    """
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        if "locked" in text or "busy" in text:
            return GatewayError(
                ErrorCode.STATE_DATABASE_UNAVAILABLE,
                "The state database is locked: another process held its write lock for more than "
                f"{BUSY_TIMEOUT_MS / 1000:g} s.",
                retryable=True,
                user_action=LOCKED_ACTION,
            )
        return GatewayError(ErrorCode.STATE_DATABASE_UNAVAILABLE, f"The state database cannot be used ({text}).")
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        from .postgres import unavailable  # loaded with psycopg

        return unavailable(exc)
    return None


class Migration(NamedTuple):
    """One step of the schema, applied once, in order, inside a write transaction.

    A named tuple, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

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
    Migration(
        3,
        "preview denials",
        (
            """
            CREATE TABLE preview_denials (
                preview_id TEXT PRIMARY KEY REFERENCES order_previews (preview_id),
                denied_at TEXT NOT NULL,
                payload TEXT NOT NULL
            )
            """,
            "CREATE INDEX order_previews_by_time ON order_previews (created_at)",
        ),
    ),
    Migration(
        4,
        "broker order questions",
        (
            """
            CREATE TABLE broker_order_questions (
                broker_key TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                reply_id TEXT,
                expires_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        5,
        "reconciliation claims",
        (
            "ALTER TABLE live_orders ADD COLUMN claimed_by TEXT",
            "ALTER TABLE live_orders ADD COLUMN claimed_until TEXT",
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
        apply_migrations(
            db,
            migrations,
            newer_schema_action="Upgrade ibkr-agent-gateway, or point state.directory at another directory.",
        )
    except GatewayError:
        db.close()
        raise
    except sqlite3.Error as exc:
        db.close()
        raise _unavailable(path, exc) from None
    return db


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the SQLite state file `path`, which it never creates, migrates or writes.

    For reading another state file (a backup, an import's source): the file stays byte for byte as it was.
    Raises `sqlite3.Error` when the file is missing or not a database (the caller names it in its own words).
    """
    return sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
    )


def backup_database(path: Path, destination: Path) -> None:
    """Copy the SQLite state file `path` into the new file `destination` (mode 0600) with SQLite's online backup.

    One consistent snapshot, taken while other connections keep reading and writing; the copy is left as one
    self-contained file (rollback-journal mode, no `-wal` beside it) whose pages are on disk.

    Raises:
        FileExistsError: `destination` exists.
        sqlite3.Error, OSError: the copy failed; `destination` may hold a partial file the caller removes.
    """
    fd = os.open(destination, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    os.close(fd)
    source = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        copy = sqlite3.connect(destination, isolation_level=None)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    finally:
        source.close()
    fd = os.open(destination, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def write_transaction(db: _C, lock: LockDomain | None = "state", *, durable: bool = True) -> Generator[_C]:
    """Run the block as the only writer of its lock domain: commit on success, roll back on any error.

    SQLite: `BEGIN IMMEDIATE`. PostgreSQL: `BEGIN` and a transaction-scoped advisory lock for `lock`;
    `lock=None` takes no advisory lock, for a block that only claims rows (`claim_clause`).
    `durable=False` (PostgreSQL) returns once the commit is recorded, without waiting for the WAL flush, as
    SQLite's `synchronous=NORMAL` returns without a sync (on SQLite the connection's setting decides).
    """
    if not isinstance(db, sqlite3.Connection):
        with cast("PostgresConnection", db).transaction(write=True, lock=lock, durable=durable):
            yield db
        return
    db.execute("BEGIN IMMEDIATE")  # take the write lock now; a deferred BEGIN cannot wait for it later
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def hold_lock(db: StateConnection, lock: LockDomain) -> None:
    """Inside `write_transaction`, hold the lock of a second domain too, until the transaction ends.

    For a block that writes in both domains (a state import). PostgreSQL: that domain's advisory lock as
    well (taken in the order audit, then state; no other transaction holds both). SQLite: nothing, as
    `BEGIN IMMEDIATE` already holds the one write lock of the whole file.
    """
    if not isinstance(db, sqlite3.Connection):
        cast("PostgresConnection", db).hold(lock)


def execute_locked(
    db: StateConnection, lock: LockDomain, sql: str, parameters: Sequence[Any] = (), /, *, durable: bool = True
) -> int:
    """Run one `INSERT ... SELECT` as a transaction of its own, as the only writer of `lock`; rows inserted.

    The statement names `{held}` in its `FROM` list (one row, no columns it uses). SQLite: the statement alone
    in autocommit mode, its own transaction: a writing statement takes the write lock before it reads a row
    (as `BEGIN IMMEDIATE` would, waiting `busy_timeout` for it) and commits as it ends, in one call instead of
    three. PostgreSQL: the statement alone in autocommit mode, `{held}` being a subquery
    that takes the advisory lock before any row is inserted, so the whole transaction is one round trip;
    its snapshot may predate the lock, so a unique violation there (a conflicting row committed meanwhile)
    counts as nothing inserted. On both, 0 means nothing was written. `durable`: as for `write_transaction`.
    """
    if isinstance(db, sqlite3.Connection):
        if db.in_transaction:  # inside another transaction it would neither lock nor commit on its own
            raise sqlite3.OperationalError("cannot start a transaction within a transaction")
        return db.execute(sql.replace("{held}", "(SELECT 1) AS held"), parameters).rowcount
    return cast("PostgresConnection", db).execute_locked(lock, sql, parameters, durable=durable)


def claim_clause(db: StateConnection) -> str:
    """What a `SELECT` that claims rows ends with: `FOR UPDATE SKIP LOCKED` on PostgreSQL, nothing on SQLite.

    On PostgreSQL concurrent claimers (other replicas) then skip the rows another one is claiming instead of
    waiting for them; SQLite has one writer at a time (`BEGIN IMMEDIATE`), so there is nothing to skip.
    """
    return "" if isinstance(db, sqlite3.Connection) else " FOR UPDATE SKIP LOCKED"


@contextmanager
def read_transaction(db: _C) -> Generator[_C]:
    """Run the block on one consistent snapshot of the database (a deferred read transaction).

    PostgreSQL: a `REPEATABLE READ READ ONLY` transaction.
    """
    if not isinstance(db, sqlite3.Connection):
        with cast("PostgresConnection", db).transaction(write=False, lock="state"):
            yield db
        return
    db.execute("BEGIN")
    try:
        yield db
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")


def schema_version(db: StateConnection) -> int:
    """The newest migration applied to the database, 0 for a new file."""
    if not isinstance(db, sqlite3.Connection):
        return cast("PostgresConnection", db).schema_version()
    exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
    if exists is None:
        return 0
    row = db.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def _configure(db: sqlite3.Connection) -> None:
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # wait for other writers instead of failing
    mode = _switch_to_wal(db)  # readers never block the single writer
    if mode != "wal":
        raise GatewayError(
            ErrorCode.STATE_DATABASE_UNAVAILABLE,
            "The state database cannot use write-ahead logging (is it on a network filesystem?).",
        )
    db.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss; not saved in the file
    db.execute("PRAGMA foreign_keys=ON")


def _switch_to_wal(db: sqlite3.Connection) -> str:
    """Put the file in WAL mode and return the journal mode it is in.

    SQLite does not call the busy handler for this switch: processes opening a new file at the same
    moment get "database is locked" at once. So the switch is tried again, with short sleeps, for as
    long as `busy_timeout` would have waited; a file already in WAL mode needs no lock at all.
    """
    current = db.execute("PRAGMA journal_mode").fetchone()
    if current is not None and str(current[0]).lower() == "wal":
        return "wal"
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            continue
        return "" if mode is None else str(mode[0]).lower()


def apply_migrations(
    db: StateConnection,
    migrations: tuple[Migration, ...],
    *,
    serialise: tuple[str, Sequence[Any]] | None = None,
    newer_schema_action: str,
) -> None:
    """Bring the schema of `db` up to `migrations`: each missing step once, in order, in one write transaction.

    Both backends use this one loop; what differs by dialect comes in:
    `serialise` is a statement run first inside the write transaction so that processes starting together
    migrate once (PostgreSQL's advisory lock; SQLite's `BEGIN IMMEDIATE` already excludes other writers),
    and `newer_schema_action` is the user action when the database holds a newer schema than `migrations`.

    Raises:
        GatewayError: `STATE_DATABASE_UNAVAILABLE` when the database's schema is newer than `migrations`.
    """
    known = migrations[-1].version if migrations else 0
    if schema_version(db) == known:
        return  # the common case: no write lock needed
    with write_transaction(db):
        if serialise is not None:
            db.execute(*serialise)
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        current = schema_version(db)  # again, under the lock: another process may have migrated
        if current > known:
            raise GatewayError(
                ErrorCode.STATE_DATABASE_UNAVAILABLE,
                f"The state database has schema version {current}, newer than this version knows ({known}).",
                user_action=newer_schema_action,
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
