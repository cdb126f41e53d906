"""The PostgreSQL state backend: the same stores and SQL as SQLite, shared by several server replicas.

Imported only when `state.backend: postgres` is configured, so psycopg (the `ibkr-gateway-core[postgres]`
extra) is never loaded otherwise. One `PostgresConnection` wraps a small psycopg-pool pool:

- a statement outside a transaction runs on any pooled connection in autocommit mode and its rows are
  read at once, so nothing stays checked out between calls;
- `transaction(write=True, lock=...)` pins one connection for the block, runs `BEGIN` and takes
  `pg_advisory_xact_lock` for the lock domain: every writer of that domain, in any process on any host,
  waits for it, which gives each check-then-write step (reserve an idempotency key, consume an approval,
  read the kill switch, append to the audit chain) the single-writer semantics SQLite's `BEGIN IMMEDIATE`
  gives on one host. The lock is released by the commit or rollback itself, and by the server when a
  replica dies mid-transaction;
- `transaction(write=False)` is a `REPEATABLE READ READ ONLY` snapshot (audit verify, risk usage).

Round trips are what PostgreSQL costs beyond SQLite, so a write transaction sends nothing until it
needs an answer: `BEGIN` and the lock go in one pipeline with the first statement whose rows it reads,
and `executemany` inserts wait for the next such statement or for `COMMIT` (an audit append that reads
the chain head is two round trips: BEGIN, lock and the head; the inserts and COMMIT). Statements still run in order on
the server, each seeing the effects of the ones before; an error in a deferred insert surfaces at the
statement that sends it, inside the transaction, which is then rolled back.

An audit append under the lock (the chain's head moved: another replica appended) commits without
waiting for the WAL flush, so the audit lock is free as soon as the commit is recorded and the next
replica's append does not queue behind this one's disk sync, then waits for the flush before it
returns (`_FLUSH_SQL`, in the same round trip): the event is acknowledged only once it is on disk, as
with a synchronous commit. A crash before the flush loses the newest appends together: the WAL is a
sequence, so any append that chained on them is flushed after them and is lost as well.
`tests-integration/test_postgres_audit_durability.py` crashes a real cluster to check it.

`execute_locked` runs one `INSERT ... SELECT` as a transaction of its own in a single round trip: in
autocommit mode, with the advisory lock taken by a subquery in its `FROM` list before any row is
inserted (an audit append on a head the log knows). Its snapshot may predate the lock, so a conflicting
row committed meanwhile shows as a unique violation, reported as nothing inserted.

The database still decides uniqueness itself: idempotency keys, approval ids, event ids and audit
sequence numbers are primary or unique keys, so even a writer that skipped the lock could not create a
second record or a fork in the chain.

SQL is written once with `?` placeholders; they are rewritten to psycopg's `%s` here (no query of the
stores has a `?` or `%` inside a literal).
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Generator, Iterable, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from ..errors import ErrorCode, GatewayError
from .database import LockDomain, Migration, PostgresLocation, apply_migrations

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg_pool import ConnectionPool

_IDLE: Final = 0
"""`psycopg.pq.TransactionStatus.IDLE`: no transaction open on the connection."""

DEFERRED_ROWS: Final = 4_096
"""Most rows of deferred inserts a write transaction holds back before sending them."""

MIGRATION_LOCK: Final = 0x1B6B_0000
"""Advisory lock key held while migrating, so two replicas starting together migrate once."""

_LOCK_KEYS: Final[dict[str, int]] = {
    domain: zlib.crc32(f"ibkr-agent-gateway/{domain}".encode()) for domain in ("state", "audit")
}
"""Advisory lock key per lock domain (stable across versions: replicas of two versions must agree)."""

logging.getLogger("psycopg").addHandler(logging.NullHandler())
"""The pool logs each failed connection attempt with the server's host, port and database: never on the
terminal of a command (Python's last-resort handler); a server's own log handlers still receive them."""

_FLUSH_SQL: Final = "SELECT pg_logical_emit_message(true, 'ibkr-agent-gateway/audit', '')"
"""Wait until the WAL is on disk up to here: a transactional message (a few bytes of WAL, allowed to every
role, read by nothing unless a logical decoder is attached) gives its implicit transaction an id and a
WAL record, so it commits synchronously and flushes every commit before it. A transaction that only reads,
or only takes an id (`pg_current_xact_id()`), writes no WAL and commits without a flush."""

_TIMESTAMP: Final = 'TEXT COLLATE "C" NOT NULL'
"""ISO timestamps compare as text; the C collation makes that byte order whatever the database locale."""

POSTGRES_MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "audit events",
        (
            f"""
            CREATE TABLE audit_events (
                sequence BIGINT PRIMARY KEY CHECK (sequence >= 1),
                key_id TEXT NOT NULL,
                event_id TEXT NOT NULL UNIQUE,
                event_type TEXT NOT NULL,
                timestamp {_TIMESTAMP},
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
            f"""
            CREATE TABLE order_previews (
                preview_id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                created_by_kind TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at {_TIMESTAMP},
                expires_at {_TIMESTAMP},
                payload TEXT NOT NULL
            )
            """,
            f"""
            CREATE TABLE order_approvals (
                approval_id TEXT PRIMARY KEY,
                preview_id TEXT NOT NULL REFERENCES order_previews (preview_id),
                account_id TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('approved', 'consumed', 'revoked')),
                approved_at {_TIMESTAMP},
                payload TEXT NOT NULL
            )
            """,
            "CREATE INDEX order_approvals_by_time ON order_approvals (approved_at)",
            f"""
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
                created_at {_TIMESTAMP},
                updated_at {_TIMESTAMP}
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
            f"""
            CREATE TABLE live_orders (
                account_id TEXT NOT NULL,
                broker_order_id TEXT NOT NULL,
                writer TEXT NOT NULL,
                client_order_id TEXT,
                last_status TEXT NOT NULL,
                created_at {_TIMESTAMP},
                last_polled_at TEXT COLLATE "C",
                PRIMARY KEY (account_id, broker_order_id)
            )
            """,
        ),
    ),
    Migration(
        3,
        "preview denials",
        (
            f"""
            CREATE TABLE preview_denials (
                preview_id TEXT PRIMARY KEY REFERENCES order_previews (preview_id),
                denied_at {_TIMESTAMP},
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
                expires_at TEXT COLLATE "C" NOT NULL,
                updated_at TEXT COLLATE "C" NOT NULL
            )
            """,
        ),
    ),
    Migration(
        5,
        "reconciliation claims",
        (
            "ALTER TABLE live_orders ADD COLUMN claimed_by TEXT",
            'ALTER TABLE live_orders ADD COLUMN claimed_until TEXT COLLATE "C"',
        ),
    ),
)
"""The PostgreSQL form of `state.MIGRATIONS`, version for version; append new ones to both."""


@functools.lru_cache(maxsize=256)
def _driver_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _Rows:
    """Rows read in full from a statement that ran outside a transaction."""

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows
        self._at = 0

    def fetchone(self) -> Any:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        rest, self._at = self._rows[self._at :], len(self._rows)
        return rest

    def fetchmany(self, size: int, /) -> list[Any]:
        chunk = self._rows[self._at : self._at + size]
        self._at += len(chunk)
        return chunk


class PostgresConnection:
    """A `StateConnection` over a psycopg pool; used by one thread at a time, like a SQLite connection."""

    def __init__(self, pool: ConnectionPool[Connection[tuple[Any, ...]]], timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._pinned: Connection[tuple[Any, ...]] | None = None
        self._deferred: list[tuple[str, Sequence[Any] | list[Sequence[Any]], bool]] = []
        """Statements of the write transaction not sent yet (BEGIN, its lock, inserts): they go in one round
        trip with the next statement whose rows are needed, or with COMMIT."""
        self._begun = False

    # ------------------------------------------------------------- statements

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        """Run one statement; inside `transaction` on its connection, else on any pooled one."""
        query = _driver_sql(sql)
        if self._pinned is not None:
            if not self._deferred:
                return self._pinned.execute(query, parameters)  # pyright: ignore[reportArgumentType]
            with self._pinned.pipeline():  # what was deferred and this statement: one round trip
                self._send_deferred(self._pinned)
                cursor = self._pinned.execute(query, parameters)  # pyright: ignore[reportArgumentType]
            return cursor
        with self._pool.connection(timeout=self._timeout_s) as conn:
            cursor = conn.execute(query, parameters)  # pyright: ignore[reportArgumentType]
            return _Rows(cursor.fetchall() if cursor.description is not None else [])

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        """Run one statement for each parameter row."""
        query = _driver_sql(sql)
        if self._pinned is not None and self._begun:
            self._deferred.append((query, list(parameters), True))  # sent with the next read or COMMIT
            if sum(len(rows) for _, rows, many in self._deferred if many) >= DEFERRED_ROWS:
                with self._pinned.pipeline():  # too many to hold back (a bulk import): send them now
                    self._send_deferred(self._pinned)
            return
        if self._pinned is not None:
            with self._pinned.cursor() as cursor:
                cursor.executemany(query, parameters)  # pyright: ignore[reportArgumentType]
            return
        with self._pool.connection(timeout=self._timeout_s) as conn, conn.cursor() as cursor:
            cursor.executemany(query, parameters)  # pyright: ignore[reportArgumentType]

    def execute_locked(
        self, lock: LockDomain, sql: str, parameters: Sequence[Any] = (), /, *, durable: bool = True
    ) -> int:
        """Run one `INSERT ... SELECT` as its own transaction holding `lock`: one round trip; rows inserted.

        `{held}` in the statement's `FROM` list becomes a subquery taking the transaction-scoped advisory
        lock, so no row is inserted before the lock is held; the implicit commit releases it. A unique
        violation (a conflicting row committed while the statement waited for the lock) inserts nothing
        and returns 0. `durable=False` commits without waiting for the WAL flush (`set_config(...,
        true)` lasts as long as the statement's own transaction).
        """
        import psycopg

        if self._pinned is not None:
            raise GatewayError(ErrorCode.STATE_DATABASE_UNAVAILABLE, "A state transaction is already open.")
        unsynced = "" if durable else ", set_config('synchronous_commit', 'off', true)"
        query = _driver_sql(
            sql.replace("{held}", f"(SELECT pg_advisory_xact_lock({_LOCK_KEYS[lock]}){unsynced} OFFSET 0) AS held")
        )
        with self._pool.connection(timeout=self._timeout_s) as conn:
            try:
                return conn.execute(query, parameters).rowcount  # pyright: ignore[reportArgumentType]
            except psycopg.errors.UniqueViolation:
                return 0

    def hold(self, lock: LockDomain) -> None:
        """Inside a write `transaction`, also hold the advisory lock of `lock` until it ends.

        Sent with the next statement, after the transaction's own lock.
        """
        if self._pinned is None or not self._begun:
            raise GatewayError(ErrorCode.STATE_DATABASE_UNAVAILABLE, "No write transaction is open.")
        self._deferred.append(("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEYS[lock],), False))

    @contextmanager
    def transaction(self, *, write: bool, lock: LockDomain | None, durable: bool = True) -> Generator[None]:
        """Pin a connection for the block: a locked write transaction, or a read-only snapshot.

        A write under the `audit` lock commits without waiting for the WAL flush and then, when `durable`,
        waits for it (`_FLUSH_SQL`), so other replicas' appends need not wait for this one's disk sync.
        """
        if self._pinned is not None:
            raise GatewayError(ErrorCode.STATE_DATABASE_UNAVAILABLE, "A state transaction is already open.")
        conn = self._pool.getconn(timeout=self._timeout_s)
        self._pinned = conn
        try:
            if write:  # sent with the first statement (one round trip), or with COMMIT
                self._deferred.append(("BEGIN", (), False))
                if lock is not None:  # None: row locks only (`claim_clause`)
                    self._deferred.append(("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEYS[lock],), False))
                if lock == "audit" or not durable:  # the lock goes at COMMIT; the flush is waited for after it
                    self._deferred.append(("SET LOCAL synchronous_commit TO off", (), False))
                self._begun = True
            else:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield
                if write:
                    with conn.pipeline():  # deferred inserts and COMMIT: one round trip
                        self._send_deferred(conn)
                        conn.execute("COMMIT")
                        if lock == "audit" and durable:
                            conn.execute(_FLUSH_SQL)
                else:
                    conn.execute("ROLLBACK")
            except BaseException:
                self._deferred.clear()
                if not conn.closed and conn.info.transaction_status != _IDLE:
                    conn.execute("ROLLBACK")
                raise
        finally:
            self._pinned, self._begun = None, False
            self._deferred.clear()
            self._pool.putconn(conn)

    def _send_deferred(self, conn: Connection[tuple[Any, ...]]) -> None:
        deferred, self._deferred = self._deferred, []
        for query, parameters, many in deferred:
            if many:
                with conn.cursor() as cursor:
                    cursor.executemany(query, parameters)  # pyright: ignore[reportArgumentType]
            else:
                conn.execute(query, parameters)  # pyright: ignore[reportArgumentType]

    def schema_version(self) -> int:
        """The newest migration applied, 0 for a new database."""
        row = self.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if row is None or not row[0]:
            return 0
        top = self.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(top[0]) if top is not None and top[0] is not None else 0

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()


def open_postgres(
    location: PostgresLocation, *, migrations: tuple[Migration, ...] = POSTGRES_MIGRATIONS
) -> PostgresConnection:
    """Open a pool on the database and bring its schema up to date.

    Raises:
        GatewayError: `CONFIG_INVALID` without the `postgres` extra; `STATE_DATABASE_UNAVAILABLE` when the
            server cannot be reached or holds a newer schema.
    """
    try:
        import psycopg
        from psycopg_pool import ConnectionPool
    except ImportError:
        raise GatewayError(
            ErrorCode.CONFIG_INVALID,
            "state.backend is postgres but psycopg is not installed.",
            user_action="Install the extra: pip install 'ibkr-gateway-core[postgres]'.",
        ) from None
    try:
        pool: ConnectionPool[Connection[tuple[Any, ...]]] = ConnectionPool(
            location.dsn,
            min_size=1,
            max_size=max(1, location.pool_size),
            kwargs={"autocommit": True},
            open=False,
            name="ibkr-agent-gateway-state",
        )
    except (psycopg.Error, OSError) as exc:
        raise unavailable(exc) from None
    try:
        pool.open(wait=True, timeout=location.connect_timeout_s)
    except (psycopg.Error, OSError) as exc:
        pool.close()
        raise unavailable(_connection_error(location) or exc) from None
    db = PostgresConnection(pool, location.connect_timeout_s)
    try:
        apply_migrations(
            db,
            migrations,
            serialise=("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,)),
            newer_schema_action="Upgrade ibkr-agent-gateway on every replica, or point state at another database.",
        )
    except GatewayError:
        db.close()
        raise
    except psycopg.Error as exc:
        db.close()
        raise unavailable(exc) from None
    return db


_REFUSALS: Final = (
    (
        ("database", "does not exist"),
        "the database does not exist",
        "Create the database, or correct its name in the DSN (in the variable state.postgres_dsn_env names).",
    ),
    (
        ("password authentication failed",),
        "the server refused the password",
        "Correct the password in the DSN (in the variable state.postgres_dsn_env names).",
    ),
    (
        ("role", "does not exist"),
        "the server knows no such role",
        "Check the role (user) in the DSN (in the variable state.postgres_dsn_env names).",
    ),
    (
        ("no pg_hba.conf entry",),
        "the server does not let this host or role in",
        "Add an entry for this host and role to the server's pg_hba.conf, or use a role it lets in.",
    ),
    (
        ("permission denied for database",),
        "the role may not connect to the database",
        "Grant the role CONNECT on the database, or use a role that has it.",
    ),
)
"""What the server said when it refused a connection, in words without the DSN, and what to do. psycopg gives
no SQLSTATE for a refused connection, only libpq's message (the server's, in English by default)."""


def _connection_error(location: PostgresLocation) -> BaseException | None:
    """Why a connection fails, from one direct attempt: the pool only reports that it timed out."""
    import psycopg

    try:
        psycopg.connect(location.dsn, connect_timeout=max(1, int(location.connect_timeout_s))).close()
    except (psycopg.Error, OSError) as exc:
        return exc
    return None


def unavailable(exc: BaseException) -> GatewayError:
    """`STATE_DATABASE_UNAVAILABLE` for a psycopg error, naming only its class."""
    # psycopg messages can quote the DSN's host and user but never its password; keep only the class name.
    text = str(exc)
    for words, meaning, action in _REFUSALS:
        if all(word in text for word in words):
            return GatewayError(
                ErrorCode.STATE_DATABASE_UNAVAILABLE,
                f"The PostgreSQL state database cannot be used: {meaning}.",
                user_action=action,
            )
    return GatewayError(
        ErrorCode.STATE_DATABASE_UNAVAILABLE,
        f"The PostgreSQL state database cannot be reached ({type(exc).__name__}).",
        user_action="Check that the server is up and that the DSN in state.postgres_dsn_env is right.",
    )
