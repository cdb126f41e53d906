r"""The tamper-evident audit log: one event per gateway call, in an HMAC-SHA256 chain.

Each row stores the event's canonical JSON and a chain hash over the previous row's hash and this
row's bytes::

    chain_hash[n] = HMAC-SHA256(chain_key, chain_hash[n-1] || row_bytes[n])
    row_bytes[n]  = f"{n}\n{key_id}\n{event_id}\n{event_type}\n{timestamp}\n{payload}" (UTF-8)

with 32 zero bytes before the first row. Every stored column is under the MAC, and so is the
sequence number, so an edit, deletion, swap, insertion or duplicate breaks the chain at that row.
Subkeys for the chain, account hashes and payload hashes are derived from one secret (>= 32 bytes)
with domain separation. Truncating the newest rows or restoring an older copy of the file leaves a
valid chain; signed checkpoints (`audit/checkpoint.py`) catch those.

Appends are linear across threads (a lock) and processes or replicas (`BEGIN IMMEDIATE` on SQLite,
the `audit` advisory lock on PostgreSQL, around reading the head and inserting the next row). A log
that wrote the head itself skips reading it: it inserts on condition that its row is still the head
(`_append_after_sql`), and reads the head only when that inserted nothing.
`tail` reads the newest rows by primary key and never re-verifies the chain; `verify` and `export`
read the chain on their own connection and snapshot in keyset pages (`sequence > last LIMIT n`), so
memory stays flat on either backend whatever the chain's length.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Final, NamedTuple, Self

import anyio
import anyio.lowlevel
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, ValidationError

from .._timestamps import format_timestamp
from ..errors import ErrorCode, GatewayError
from ..observability import AUDIT_APPEND, AUDIT_EVENTS
from ..redaction import SECRET_MARKERS, find_secret_markers
from ..state.database import (
    BUSY_TIMEOUT_MS,
    StateConnection,
    StateLocation,
    database_errors,
    execute_locked,
    open_state,
    read_transaction,
    write_transaction,
)
from .checkpoint import Checkpoint
from .events import (
    AuditEvent,
    AuditPrincipalKind,
    Decision,
    ResultStatus,
    canonical_json,
    canonical_json_of_jsonable,
    new_event_id,
    redact_event,
)
from .keys import MIN_KEY_BYTES, load_audit_key, load_checkpoint_key, public_key_id

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "AuditEvent",
    "AuditExport",
    "AuditExportStream",
    "AuditLog",
    "AuditPrincipalKind",
    "AuditRecord",
    "Checkpoint",
    "Decision",
    "ResultStatus",
    "VerifyReport",
    "canonical_json",
    "load_audit_key",
    "load_checkpoint_key",
    "new_event_id",
    "public_key_id",
    "redact_event",
]

_HEX64: Final = re.compile(r"[0-9a-f]{64}")

GENESIS_HASH: Final = bytes(32)
"""The "previous chain hash" of the first row."""

MAX_TAIL_LIMIT: Final = 1_000
"""Most events one `tail` returns."""

MAX_EXPORT_LIMIT: Final = 100_000
"""Most events one `export` renders (`export` holds them in memory; `export_stream` does not)."""

EXPORT_SPOOL_BYTES: Final = 1 << 20
"""Bytes of a streamed export kept in memory before the rest waits in an unnamed temporary file."""

VERIFY_BATCH_ROWS: Final = 4_096
"""Rows per page of `verify` and `export` (and per insert of a bulk append): memory stays flat whatever
the log size, on SQLite and on PostgreSQL (whose driver would otherwise read a whole result at once)."""

_SUBKEY_LABELS: Final = {
    "chain": b"ibkr-agent-gateway/audit/chain/v1",
    "account": b"ibkr-agent-gateway/audit/account-id/v1",
    "payload": b"ibkr-agent-gateway/audit/payload/v1",
    "token": b"ibkr-agent-gateway/audit/token-id/v1",
    "key_id": b"ibkr-agent-gateway/audit/key-id/v1",
}
_HEAD_SQL: Final = "SELECT sequence, key_id, chain_hash FROM audit_events ORDER BY sequence DESC LIMIT 1"
_TAIL_SQL: Final = "SELECT sequence, payload, chain_hash FROM audit_events ORDER BY sequence DESC LIMIT ?"
_PAGE_SQL: Final = (
    "SELECT sequence, key_id, event_id, event_type, timestamp, payload, chain_hash FROM audit_events "
    "WHERE sequence > ? ORDER BY sequence LIMIT ?"
)
"""One keyset page of the chain: the rows after a sequence number, in order (an index range scan)."""
_FIRST_PAGE_SQL: Final = _PAGE_SQL.replace("WHERE sequence > ?", "WHERE sequence > ? OR sequence IS NULL")
"""The first page also holds a damaged row without a sequence (it sorts first), so the scan stops there."""
_EXPORT_START_SQL: Final = (
    "SELECT min(sequence) FROM (SELECT sequence FROM audit_events ORDER BY sequence DESC LIMIT ?) AS newest"
)
_EXPORT_SIZE_SQL: Final = "SELECT count(*), max(sequence) FROM audit_events WHERE sequence >= ?"
_INSERT_SQL: Final = (
    "INSERT INTO audit_events (sequence, key_id, event_id, event_type, timestamp, payload, chain_hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)

MAX_CONDITIONAL_ROWS: Final = 256
"""Most rows one conditional insert (`_append_after_sql`) carries; a larger group reads the head first."""

_Row = tuple[int, str, str, str, str, str, str]
"""One `audit_events` row in `_INSERT_SQL` order."""

_Rendered = tuple[AuditEvent, str, str]
"""An event as a row stores it: (redacted event, canonical JSON, timestamp text); see `_render_one`."""


@functools.lru_cache(maxsize=MAX_CONDITIONAL_ROWS)
def _append_after_sql(count: int) -> str:
    """Insert `count` rows only if the head is still the row they were chained on (SQLite; see `_append_after`).

    Parameters: the rows in `_INSERT_SQL` order, then the head's sequence, its chain hash and its sequence
    again. It runs as a transaction of its own holding the audit lock (`execute_locked`: one round trip on
    PostgreSQL); if another writer moved the head, it inserts nothing (0) and nothing is committed.

    "Nothing after the head" is asked as `max(sequence)` equal to the head's, which both databases answer
    from the end of the primary key's index; PostgreSQL planned the equivalent `NOT EXISTS (... sequence >
    ?)` as a scan of the whole table (0.3 ms at 3,000 rows, growing with the chain) until it had statistics.
    """
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * count)
    return (
        "INSERT INTO audit_events (sequence, key_id, event_id, event_type, timestamp, payload, chain_hash)"
        f" SELECT new_rows.* FROM (VALUES {values}) AS new_rows, {{held}}"
        " WHERE EXISTS (SELECT 1 FROM audit_events WHERE sequence = ? AND chain_hash = ?)"
        " AND (SELECT max(sequence) FROM audit_events) = ?"
    )


_COLUMNS: Final = ("sequence", "key_id", "event_id", "event_type", "timestamp", "payload", "chain_hash")
_APPEND_AFTER_JSON_SQL: Final = (
    "INSERT INTO audit_events (sequence, key_id, event_id, event_type, timestamp, payload, chain_hash)"
    " SELECT new_rows.* FROM json_to_recordset(?::json) AS new_rows(sequence bigint, key_id text, event_id text,"
    " event_type text, timestamp text, payload text, chain_hash text), {held}"
    " WHERE EXISTS (SELECT 1 FROM audit_events WHERE sequence = ? AND chain_hash = ?)"
    " AND (SELECT max(sequence) FROM audit_events) = ?"
)
"""`_append_after_sql` on PostgreSQL: the rows as one JSON parameter, so one statement text (parsed and
prepared once) serves every group size. With a parameter per value the driver would parse the statement
again on every execution (it caches statements of at most 50 parameters; a group of eight rows has 59), and
with an array per column it would escape every payload in Python."""


def _append_after(db: StateConnection, rows: list[_Row], head: tuple[int, bytes]) -> tuple[str, list[object]]:
    """The conditional insert of `rows` chained on `head`, and its parameters, for this database."""
    parameters: list[object]
    if isinstance(db, sqlite3.Connection):
        parameters = [value for row in rows for value in row]
        sql = _append_after_sql(len(rows))
    else:
        parameters = [json.dumps([dict(zip(_COLUMNS, row, strict=True)) for row in rows], ensure_ascii=False)]
        sql = _APPEND_AFTER_JSON_SQL
    parameters += [head[0], head[1].hex(), head[0]]
    return sql, parameters


class AuditRecord(BaseModel):
    """One stored event with its place in the chain."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    sequence: int
    """Position in the log, from 1, without gaps."""
    event: AuditEvent
    chain_hash: str
    """Hex HMAC linking this event to all before it."""


class AuditExport(BaseModel):
    """A redacted JSONL rendering of the newest events, oldest first, with its SHA-256."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    jsonl: str
    """One `{"chain_hash", "event", "sequence"}` object per line."""
    sha256: str
    """SHA-256 (hex) of `jsonl` encoded as UTF-8."""
    count: int
    first_sequence: int | None
    last_sequence: int | None


class AuditExportStream:
    """An export rendered once inside its call and written out after it (the CLI's `audit export`).

    The lines wait in an unnamed temporary file (in memory up to `EXPORT_SPOOL_BYTES`), so memory stays
    flat whatever the chain's length. `count`, `first_sequence`, `last_sequence` and `sha256` are those
    of the `AuditExport` of the same rows, and `output_hash` is the keyed hash of that `AuditExport`'s
    canonical JSON: the call's audit event is the same whether the export was returned whole (MCP) or
    streamed. Close it (or use it as a context manager) once written.
    """

    def __init__(
        self,
        spool: IO[bytes],
        *,
        sha256: str,
        count: int,
        first_sequence: int | None,
        last_sequence: int | None,
        output_hash: str,
    ) -> None:
        self._spool = spool
        self.sha256 = sha256
        """SHA-256 (hex) of the JSONL encoded as UTF-8."""
        self.count = count
        self.first_sequence = first_sequence
        self.last_sequence = last_sequence
        self.output_hash = output_hash
        """`AuditLog.hash_payload` of the equivalent `AuditExport`: the audit event's output hash."""

    def lines(self) -> Iterator[str]:
        """The JSONL, one line (with its newline) at a time, oldest event first."""
        self._spool.seek(0)
        for raw in self._spool:
            yield raw.decode("utf-8")

    def close(self) -> None:
        """Drop the rendered lines (the temporary file goes with them)."""
        self._spool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class VerifyReport(BaseModel):
    """Outcome of `AuditLog.verify`: valid, or where and why the chain first breaks."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    events_scanned: int
    chain_valid: bool
    """True when every row checks out and, given a checkpoint, the log matches it."""
    first_break_sequence: int | None = None
    """Sequence at which the chain first breaks (the position expected there)."""
    first_break_event_id: str | None = None
    """Event id of the row found at the break, when it has one."""
    reason: str | None = None
    """What is wrong, in one sentence without secrets."""
    checkpoint_checked: bool = False
    """True when a checkpoint was given and compared with the log."""
    head_sequence: int = 0
    """Sequence of the last row that verified."""
    head_chain_hash: str | None = None
    """Chain hash of that row."""

    def raise_if_invalid(self) -> None:
        """Raise `AUDIT_CHAIN_INVALID` naming the first break when the chain is not valid.

        Raises:
            GatewayError: `AUDIT_CHAIN_INVALID`.
        """
        if self.chain_valid:
            return
        if self.events_scanned == self.head_sequence:  # every row checked out: the checkpoint did not
            message = f"The audit log does not match the signed checkpoint: {self.reason}"
        else:
            event = self.first_break_event_id or "unknown"
            message = (
                f"The audit chain is broken at sequence {self.first_break_sequence} (event {event}): {self.reason}"
            )
        raise GatewayError(
            ErrorCode.AUDIT_CHAIN_INVALID,
            message,
            details={
                "first_break_sequence": self.first_break_sequence,
                "event_id": self.first_break_event_id,
                "report": self.model_dump(mode="json"),
            },
        )


MOVABLE_EVENTS: Final = 1_000
"""Most events a state import finds in its target and chains again after the imported chain (`import_chain_sync`)."""


class ChainImport(NamedTuple):
    """What `AuditLog.import_chain_sync` found and did; the caller commits only a complete, valid copy.

    A named tuple, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    source: VerifyReport | None
    """The verification of the copied chain (None: the target refused the import before any copy)."""
    target: VerifyReport | None
    """The verification of the events the target held (None: it held none, or too many to move)."""
    moved: int
    """Events the target held: chained again after the copy when `movable`."""
    movable: bool
    """False when the target holds events other than earlier attempts of the import, or too many."""


class _ChainMac:
    """HMAC-SHA256 with the key schedule done once: each row costs two hash copies."""

    def __init__(self, key: bytes) -> None:
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))

    def digest(self, previous: bytes, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(previous)
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _row_bytes(sequence: int, key_id: str, event_id: str, event_type: str, timestamp: str, payload: str) -> bytes:
    # No field can hold a newline (canonical JSON escapes them), so this framing is unambiguous.
    return f"{sequence}\n{key_id}\n{event_id}\n{event_type}\n{timestamp}\n{payload}".encode()


class _PendingAppend:
    """One event waiting for the next group commit, rendered by its caller (see `append_sync`).

    A plain slotted class, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    __slots__ = ("done", "error", "record", "rendered", "sync")

    def __init__(self, rendered: _Rendered, sync: bool = True) -> None:
        self.rendered = rendered
        self.sync = sync
        """The commit must reach the disk before this event is acknowledged (see `AuditLog.append`)."""
        self.done = anyio.Event()
        self.record: AuditRecord | None = None
        self.error: GatewayError | None = None


class _SyncAppend:
    """One event of `append_sync` waiting for a group commit, or for its turn to lead one.

    A plain slotted class, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    __slots__ = ("error", "lead", "record", "rendered", "wake")

    def __init__(self, rendered: _Rendered) -> None:
        self.rendered = rendered
        self.wake = threading.Event()
        self.lead = False
        self.record: AuditRecord | None = None
        self.error: GatewayError | None = None


class AuditLog:
    """The append-only audit log in the state database.

    Open it with `AuditLog.open`; `append` from async code, `append_sync` from threads or scripts.
    """

    def __init__(self, db: StateConnection, location: StateLocation, key: bytes, clock: Callable[[], datetime]) -> None:
        self._db: StateConnection | None = db
        self._location = location
        self._clock = clock
        subkeys = {name: hmac.digest(key, label, "sha256") for name, label in _SUBKEY_LABELS.items()}
        self._mac = _ChainMac(subkeys["chain"])
        self._account_key = subkeys["account"]
        self._payload_key = subkeys["payload"]
        self._token_key = subkeys["token"]
        self.key_id: str = subkeys["key_id"].hex()[:16]
        """Identifies the chain key in every row (a keyed hash: it reveals nothing about the key)."""
        self._thread_lock = threading.Lock()  # one statement sequence at a time on the shared connection
        self._lock = anyio.Lock()  # keeps waiting readers off worker threads
        self._pending: list[_PendingAppend] = []
        """Events waiting for the running group commit (see `append`)."""
        self._flushing = False
        self._sync_queue = threading.Lock()
        self._sync_pending: list[_SyncAppend] = []
        """Events of `append_sync` callers waiting for the next group commit."""
        self._sync_leading = False
        self._written_head: tuple[int, bytes] | None = None
        """Sequence and chain hash of the newest row this log wrote (None before its first append)."""
        self._speculate = True
        """Whether the next append assumes `_written_head` is still the head (see `_append_group_sync`)."""
        self._synchronous_full = True
        """The SQLite connection's `synchronous` setting: FULL (as `open_database` sets it) or NORMAL."""
        self._busy_waits = True
        """Whether the connection waits `BUSY_TIMEOUT_MS` for another process's write lock (as `open_database` sets
        it); an unsynced commit on the caller's thread sets 0 and leaves it so until a worker thread needs the
        connection (`_open_db`): no setting is switched per call while reads follow reads."""
        self.page_rows = VERIFY_BATCH_ROWS
        """Rows per page when `verify` and `export` read the chain."""

    @classmethod
    def open(cls, location: StateLocation, key: bytes, *, clock: Callable[[], datetime] | None = None) -> AuditLog:
        """Open (creating if needed) the audit log in the state database at `location` (a file or PostgreSQL).

        Raises:
            GatewayError: `CONFIG_INVALID` for a key shorter than 32 bytes; `STATE_DATABASE_UNAVAILABLE`
                when the database cannot be opened.
        """
        if len(key) < MIN_KEY_BYTES:
            raise GatewayError(ErrorCode.CONFIG_INVALID, f"The audit key must be at least {MIN_KEY_BYTES} bytes.")
        return cls(open_state(location), location, key, clock or _utc_now)

    @property
    def location(self) -> StateLocation:
        """The state database: its file, or its PostgreSQL location."""
        return self._location

    @property
    def path(self) -> Path:
        """The state database file (SQLite only).

        Raises:
            GatewayError: `STATE_DATABASE_UNAVAILABLE` when the state is in PostgreSQL.
        """
        if not isinstance(self._location, Path):
            raise GatewayError(ErrorCode.STATE_DATABASE_UNAVAILABLE, "The state is in PostgreSQL, not in a file.")
        return self._location

    def close(self) -> None:
        """Close the connection; later calls fail with `AUDIT_WRITE_FAILED`."""
        with self._thread_lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()

    # ------------------------------------------------------------------ hashing

    def account_hash(self, account_id: str) -> str:
        """Keyed hash (hex) of an account id: stable for this key, useless without it."""
        return hmac.digest(self._account_key, account_id.encode("utf-8"), "sha256").hex()

    def token_id_hash(self, token_id: str) -> str:
        """Keyed hash (hex) of an OAuth token id, for `Principal.token_id_hash`."""
        return hmac.digest(self._token_key, token_id.encode("utf-8"), "sha256").hex()

    def hash_payload(self, value: object) -> str:
        """Keyed hash (hex) of the canonical JSON of `value`, for input and output hashes.

        Keyed so that a small input (an account id, a symbol) cannot be recovered by guessing.
        """
        return self.hash_canonical(canonical_json(value))

    def hash_canonical(self, text: str) -> str:
        """`hash_payload` of the value whose `canonical_json` is `text` (made once by a caller that needs it too)."""
        return hmac.digest(self._payload_key, text.encode("utf-8"), "sha256").hex()

    # ------------------------------------------------------------------- append

    async def append(self, event: AuditEvent, *, sync: bool = True) -> AuditRecord:
        """Redact and durably append one event; it is committed when this returns.

        Concurrent appends share one transaction (group commit): one disk sync covers every event
        waiting at that moment, so throughput grows with concurrency while each caller still returns
        only after its own event is durable. The task that commits yields once before it takes a group,
        so the tasks the last commit woke join it (8 tasks appending in a loop: one commit per 8 events,
        where without the yield the groups alternated 1 and 7).

        `sync=False` (a completed read under `audit.read_sync: normal`) commits without a disk sync on
        SQLite (`synchronous=NORMAL` in WAL mode): the event is in the log, and survives a crash of this
        process, when this returns; a crash of the machine or a power cut can lose it until the next
        synced commit on the same file (any process's), which syncs every earlier event with its own.
        Such a commit runs on the calling thread when it cannot block (no other appender, the write lock
        free), else on a worker thread like any other. On PostgreSQL such a commit returns without waiting for
        the WAL flush: the event is committed, seen by every replica and survives a crash of this process; a
        crash of the database server can lose it until the next synced commit, which flushes it with its own.

        Raises:
            GatewayError: `AUDIT_WRITE_FAILED` when nothing was written.
        """
        rendered = _render_one(event)
        if not sync and not self._flushing and not self._pending:
            record = self._append_unsynced_now(rendered)
            if record is not None:
                return record
        waiter = _PendingAppend(rendered, sync)
        self._pending.append(waiter)
        if self._flushing:
            await waiter.done.wait()
        else:
            self._flushing = True
            try:
                while self._pending:  # the HMAC chain stays linear: one flusher at a time, in arrival order
                    await anyio.lowlevel.checkpoint()  # tasks woken by the last commit queue first: fuller groups
                    batch, self._pending = self._pending, []
                    await self._flush(batch)
            finally:
                self._flushing = False
        if waiter.record is None:
            raise waiter.error or GatewayError(ErrorCode.AUDIT_WRITE_FAILED, "The audit event was not written.")
        return waiter.record

    async def _flush(self, batch: list[_PendingAppend]) -> None:
        try:
            sync = any(w.sync for w in batch)  # one synced event makes the whole group commit synced
            records = await anyio.to_thread.run_sync(self._append_group_sync, [w.rendered for w in batch], sync)
            for waiter, record in zip(batch, records, strict=True):
                waiter.record = record
        except GatewayError as exc:
            for waiter in batch:
                waiter.error = exc
        finally:
            for waiter in batch:
                waiter.done.set()

    def append_sync(self, event: AuditEvent) -> AuditRecord:
        """`append` for threads and scripts: blocks until the event is committed.

        Threads appending at once share one transaction (group commit, as `append` does for tasks): the
        first becomes the leader and commits every event waiting at that moment in one transaction under
        the chain's lock, then hands the lead to the next waiter; each caller returns only after the
        commit that holds its own event. Each caller redacts and renders its own event before it queues, so
        that work overlaps the leader's wait for the database instead of lengthening every group commit.

        Raises:
            GatewayError: `AUDIT_WRITE_FAILED` when nothing was written.
        """
        waiter = _SyncAppend(_render_one(event))
        with self._sync_queue:
            self._sync_pending.append(waiter)
            waiter.lead = not self._sync_leading
            self._sync_leading = True
        while not waiter.lead:
            waiter.wake.wait()
            waiter.wake.clear()
            if waiter.record is not None or waiter.error is not None:
                return self._acknowledged(waiter)
        try:
            while waiter.record is None and waiter.error is None:
                time.sleep(0)  # let writers just woken by the last commit queue first: fewer, fuller commits
                with self._sync_queue:
                    batch, self._sync_pending = self._sync_pending, []
                self._commit_waiting(batch)
        finally:
            with self._sync_queue:  # hand the lead on, or put it down
                if self._sync_pending:
                    self._sync_pending[0].lead = True
                    self._sync_pending[0].wake.set()
                else:
                    self._sync_leading = False
        return self._acknowledged(waiter)

    def _commit_waiting(self, batch: list[_SyncAppend]) -> None:
        try:
            records = self._append_group_sync([w.rendered for w in batch])
            for waiter, record in zip(batch, records, strict=True):
                waiter.record = record
        except GatewayError as exc:
            for waiter in batch:
                waiter.error = exc
        except BaseException:
            for waiter in batch:
                waiter.error = GatewayError(ErrorCode.AUDIT_WRITE_FAILED, "The audit event was not written.")
            raise
        finally:
            for waiter in batch:
                waiter.wake.set()

    @staticmethod
    def _acknowledged(waiter: _SyncAppend) -> AuditRecord:
        if waiter.record is None:
            raise waiter.error or GatewayError(ErrorCode.AUDIT_WRITE_FAILED, "The audit event was not written.")
        return waiter.record

    def _append_group_sync(self, rendered: list[_Rendered], sync: bool = True) -> list[AuditRecord]:
        """Append rendered events in one transaction, in order; all are written or none (`sync`: see `append`)."""
        started = time.perf_counter()
        with self._thread_lock:
            records = self._commit(self._open_db(), rendered, sync=sync)
        AUDIT_APPEND.observe(time.perf_counter() - started)
        AUDIT_EVENTS.inc(amount=len(records))
        return records

    def _chain(self, rendered: list[_Rendered], head: tuple[int, bytes]) -> list[_Row]:
        """The rows of `rendered` (event, canonical payload, timestamp) chained after `head` (sequence, hash)."""
        return self._chain_fields(
            [(event.event_id, event.event_type, timestamp, payload) for event, payload, timestamp in rendered], head
        )

    def _chain_fields(self, fields: list[tuple[str, str, str, str]], head: tuple[int, bytes]) -> list[_Row]:
        """Rows of stored events (event id, event type, timestamp, canonical payload) chained after `head`."""
        sequence, previous = head
        rows: list[_Row] = []
        for event_id, event_type, timestamp, payload in fields:
            sequence += 1
            previous = self._mac.digest(
                previous, _row_bytes(sequence, self.key_id, event_id, event_type, timestamp, payload)
            )
            rows.append((sequence, self.key_id, event_id, event_type, timestamp, payload, previous.hex()))
        return rows

    def _append_unsynced_now(self, rendered: _Rendered) -> AuditRecord | None:
        """Commit one unsynced event on this thread, or return None when that could block.

        Without a disk sync a commit costs a few page writes into the OS cache, less than handing it to a
        worker thread; but it must never wait on the event loop's thread: for the connection (a worker
        holds it) or for SQLite's write lock (another process holds it, `busy_timeout` would wait).
        """
        db = self._db
        if not isinstance(db, sqlite3.Connection) or not self._thread_lock.acquire(blocking=False):
            return None
        try:
            started = time.perf_counter()
            if self._busy_waits:
                db.execute("PRAGMA busy_timeout=0")  # a locked file fails at once here; `_open_db` restores the wait
                self._busy_waits = False
            try:
                records = self._commit(db, [rendered], sync=False)
            except GatewayError:
                return None  # busy (or failing, rolled back): the worker-thread path waits, or reports it
        finally:
            self._thread_lock.release()
        AUDIT_APPEND.observe(time.perf_counter() - started)
        AUDIT_EVENTS.inc()
        return records[0]

    def _commit(self, db: StateConnection, rendered: list[_Rendered], *, sync: bool) -> list[AuditRecord]:
        """Chain and insert rendered events in one write transaction; `_thread_lock` is held by the caller.

        When this log wrote the newest row itself and nobody else wrote in between last time, the rows are
        chained on that known head and inserted on condition that it is still the head (`_append_after_sql`):
        one statement that is its own transaction, so on PostgreSQL the append is one round trip. When another
        writer got there first, nothing is inserted and the rows are chained again on the head read under the
        lock.
        """
        try:
            if isinstance(db, sqlite3.Connection) and sync != self._synchronous_full:
                db.execute("PRAGMA synchronous=FULL" if sync else "PRAGMA synchronous=NORMAL")
                self._synchronous_full = sync
            rows: list[_Row] | None = None
            known = self._written_head
            if known is not None and self._speculate and len(rendered) <= MAX_CONDITIONAL_ROWS:
                rows = self._chain(rendered, known)
                inserted = execute_locked(db, "audit", *_append_after(db, rows, known), durable=sync)
                if inserted != len(rows):  # 0: another writer appended; nothing was written
                    rows, self._speculate = None, False
            if rows is None:
                with write_transaction(db, "audit", durable=sync):  # re-read the head under the lock: others append too
                    head = self._head_for_append(db)
                    rows = self._chain(rendered, head)
                    db.executemany(_INSERT_SQL, rows)
                self._speculate = known is None or head == known  # nobody else wrote since our last append
            self._written_head = (rows[-1][0], bytes.fromhex(rows[-1][6]))
        except database_errors() as exc:
            self._written_head = None
            raise GatewayError(
                ErrorCode.AUDIT_WRITE_FAILED, f"The audit event could not be written ({_db_reason(exc)})."
            ) from None
        return [
            AuditRecord(sequence=row[0], event=event, chain_hash=row[6])
            for row, (event, _, _) in zip(rows, rendered, strict=True)
        ]

    def _append_batch_sync(self, events: Iterable[AuditEvent]) -> int:
        """Append many events in one transaction (bulk imports and benchmarks); returns the new head sequence."""
        with self._thread_lock:
            db = self._open_db()
            with write_transaction(db, "audit"):
                sequence, previous = self._head_for_append(db)
                rows: list[tuple[int, str, str, str, str, str, str]] = []
                for event in events:
                    clean, payload, timestamp = _render_one(event)
                    sequence += 1
                    previous = self._mac.digest(
                        previous,
                        _row_bytes(sequence, self.key_id, clean.event_id, clean.event_type, timestamp, payload),
                    )
                    rows.append(
                        (sequence, self.key_id, clean.event_id, clean.event_type, timestamp, payload, previous.hex())
                    )
                    if len(rows) >= VERIFY_BATCH_ROWS:
                        db.executemany(_INSERT_SQL, rows)
                        rows.clear()
                db.executemany(_INSERT_SQL, rows)
            self._written_head = None  # the next group append reads the head
        return sequence

    def _head_for_append(self, db: StateConnection) -> tuple[int, bytes]:
        row = db.execute(_HEAD_SQL).fetchone()
        if row is None:
            return 0, GENESIS_HASH
        sequence, key_id, chain_hash = row
        if key_id != self.key_id:
            raise GatewayError(
                ErrorCode.AUDIT_WRITE_FAILED,
                "The audit log was chained with a different key than the one configured.",
                retryable=False,
                user_action="Configure the audit key this log was created with (audit.hmac_secret_env), or start a new "
                "log: another state directory (state.directory or IBKR_AGENT_STATE_DIR), or a new PostgreSQL database.",
            )
        try:
            return int(sequence), bytes.fromhex(chain_hash)
        except (TypeError, ValueError):
            raise GatewayError(
                ErrorCode.AUDIT_CHAIN_INVALID, "The newest audit record is damaged; run `ibkr-agent audit verify`."
            ) from None

    def import_chain_sync(
        self, source: StateConnection, target: StateConnection, *, movable: Callable[[str], bool]
    ) -> ChainImport:
        """Copy the whole audit chain of `source` into `target`, whose chain must hold only movable events.

        Runs inside the caller's read snapshot of `source` and write transaction on `target` (both databases
        at this version's schema). Every source row is verified with this log's key, page by page, and a page
        is written only once each of its rows checked out; the caller rolls back when a report is invalid, so
        a broken or foreign chain writes nothing. The events already in `target` (at most
        `MOVABLE_EVENTS`, each one's canonical payload passing `movable`: the records of earlier, refused
        attempts of the same import) are verified too, then chained again after the copied ones, unchanged
        but for their sequence and chain hash.
        """
        present = target.execute("SELECT count(*) FROM audit_events").fetchone()
        count = int(present[0]) if present is not None and present[0] is not None else 0
        held: list[tuple[object, ...]] = []
        if count > MOVABLE_EVENTS:
            return ChainImport(source=None, target=None, moved=count, movable=False)
        own = self._scan(target, None, None, None, verified=held.extend) if count else None
        if own is not None and not own.chain_valid:
            return ChainImport(source=None, target=own, moved=0, movable=True)
        if not all(isinstance(row[5], str) and movable(row[5]) for row in held):
            return ChainImport(source=None, target=own, moved=len(held), movable=False)
        if held:
            target.execute("DELETE FROM audit_events")
        report = self._scan(source, None, None, None, verified=lambda rows: target.executemany(_INSERT_SQL, rows))
        if report.chain_valid and held:
            head = bytes.fromhex(report.head_chain_hash) if report.head_chain_hash else GENESIS_HASH
            fields = [(str(row[2]), str(row[3]), str(row[4]), str(row[5])) for row in held]
            target.executemany(_INSERT_SQL, self._chain_fields(fields, (report.head_sequence, head)))
        self._written_head = None  # the head moved under this log: its next append reads it
        return ChainImport(source=report, target=own, moved=len(held), movable=True)

    # --------------------------------------------------------------------- read

    async def tail(self, limit: int) -> list[AuditRecord]:
        """The newest `limit` events, newest first; reads only those rows, never re-verifies the chain.

        Raises:
            GatewayError: `INPUT_INVALID_ARGUMENT` for a limit outside 1..1000; `AUDIT_CHAIN_INVALID`
                when one of those rows is unreadable.
        """
        _check_limit(limit, MAX_TAIL_LIMIT)
        async with self._lock:
            return await anyio.to_thread.run_sync(self._tail_sync, limit)

    def _tail_sync(self, limit: int) -> list[AuditRecord]:
        with self._thread_lock:
            rows = self._open_db().execute(_TAIL_SQL, (limit,)).fetchall()
        return [_record(row) for row in rows]

    async def export(self, limit: int) -> AuditExport:
        """The newest `limit` events as redacted JSONL, oldest first, with its SHA-256.

        Raises:
            GatewayError: `OUTPUT_UNSAFE` when the text would still contain a secret marker;
                `INPUT_INVALID_ARGUMENT` for a limit outside 1..100000.
        """
        _check_limit(limit, MAX_EXPORT_LIMIT)
        return await anyio.to_thread.run_sync(self._export_sync, limit)

    def _export_sync(self, limit: int) -> AuditExport:
        """Render the newest `limit` rows page by page, on one snapshot of a separate connection."""
        db = open_state(self._location)
        try:
            with read_transaction(db):
                first = _export_start(db, limit)
                pages = self._pages(db, after=first - 1) if first is not None else iter(())
                return _render_export(row for page in pages for row in page)
        except database_errors() as exc:
            raise GatewayError(
                ErrorCode.STATE_DATABASE_UNAVAILABLE, f"The audit log cannot be read ({_db_reason(exc)})."
            ) from None
        finally:
            db.close()

    async def export_stream(self, limit: int) -> AuditExportStream:
        """`export` without holding it in memory: the lines are rendered and checked now, read out later.

        Raises:
            GatewayError: as `export`.
        """
        _check_limit(limit, MAX_EXPORT_LIMIT)
        return await anyio.to_thread.run_sync(self._export_stream_sync, limit)

    def _export_stream_sync(self, limit: int) -> AuditExportStream:
        """Render the newest `limit` rows page by page into a spool, hashing as `export`'s result would be."""
        db = open_state(self._location)
        spool = tempfile.SpooledTemporaryFile(max_size=EXPORT_SPOOL_BYTES)  # the stream returned closes it
        try:
            with read_transaction(db):
                first = _export_start(db, limit)
                size = db.execute(_EXPORT_SIZE_SQL, (first,)).fetchone() if first is not None else None
                # One snapshot: these are the rows the pages read (sequence is the primary key, never NULL).
                count, last = (int(size[0]), size[1]) if size is not None and first is not None else (0, None)
                output = hmac.new(self._payload_key, digestmod="sha256")
                head, _ = _canonical_export_halves(count, first, last, "")
                output.update(head.encode("utf-8"))
                lines = _ExportLines()
                for page in self._pages(db, after=first - 1) if first is not None else iter(()):
                    for row in page:
                        line = lines.render(row)
                        spool.write(line.encode("utf-8"))
                        output.update(json.dumps(line, ensure_ascii=False)[1:-1].encode("utf-8"))
            lines.refuse_secrets()
            _, tail = _canonical_export_halves(count, first, last, lines.digest.hexdigest())
            output.update(tail.encode("utf-8"))
        except database_errors() as exc:
            spool.close()
            raise GatewayError(
                ErrorCode.STATE_DATABASE_UNAVAILABLE, f"The audit log cannot be read ({_db_reason(exc)})."
            ) from None
        except BaseException:
            spool.close()
            raise
        finally:
            db.close()
        return AuditExportStream(
            spool,
            sha256=lines.digest.hexdigest(),
            count=lines.count,
            first_sequence=lines.first,
            last_sequence=lines.last,
            output_hash=output.hexdigest(),
        )

    def _pages(self, db: StateConnection, *, after: int = 0) -> Iterator[list[tuple[object, ...]]]:
        """The chain after sequence `after`, in keyset pages of `page_rows` rows (never the whole table)."""
        sql = _FIRST_PAGE_SQL if after == 0 else _PAGE_SQL
        while page := db.execute(sql, (after, self.page_rows)).fetchall():
            sql = _PAGE_SQL
            yield page
            last = page[-1][0]
            if not isinstance(last, int) or len(page) < self.page_rows:
                return
            after = last

    # ------------------------------------------------------------- checkpoints

    async def checkpoint(self, signing_key: Ed25519PrivateKey, *, own_event_id: str | None = None) -> Checkpoint:
        """A signed checkpoint of the current head; store it outside the database (see `audit/checkpoint.py`).

        `own_event_id`: the id of the event that will record this call; verify then requires it in the log.
        """
        async with self._lock:
            return await anyio.to_thread.run_sync(partial(self.checkpoint_sync, signing_key, own_event_id=own_event_id))

    def checkpoint_sync(self, signing_key: Ed25519PrivateKey, *, own_event_id: str | None = None) -> Checkpoint:
        """`checkpoint` for threads and scripts."""
        with self._thread_lock:
            row = self._open_db().execute(_HEAD_SQL).fetchone()
        sequence, chain_hash = (0, GENESIS_HASH.hex()) if row is None else (row[0], row[2])
        if not isinstance(sequence, int) or not isinstance(chain_hash, str) or not _HEX64.fullmatch(chain_hash):
            raise GatewayError(
                ErrorCode.AUDIT_CHAIN_INVALID, "The newest audit record is damaged; run `ibkr-agent audit verify`."
            )
        return Checkpoint.sign(sequence, chain_hash, self._clock(), signing_key, own_event_id=own_event_id)

    # ------------------------------------------------------------------- verify

    async def verify(
        self,
        *,
        checkpoint: Checkpoint | None = None,
        checkpoint_key: Ed25519PublicKey | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> VerifyReport:
        """Check the whole chain (and a checkpoint) on a separate connection; see `verify_sync`."""
        run = partial(self.verify_sync, checkpoint=checkpoint, checkpoint_key=checkpoint_key, progress=progress)
        return await anyio.to_thread.run_sync(run)

    def verify_sync(
        self,
        *,
        checkpoint: Checkpoint | None = None,
        checkpoint_key: Ed25519PublicKey | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> VerifyReport:
        """Recompute every chain hash from the first row, streaming in batches; appends may continue meanwhile.

        Args:
            checkpoint: A signed head from earlier; the log must reach it and match it at its sequence.
            checkpoint_key: The public key the checkpoint must be signed with (required with `checkpoint`).
            progress: Called after each batch with (rows checked, rows expected), from the calling thread.

        Raises:
            GatewayError: `INPUT_INVALID_ARGUMENT` for a checkpoint without its key;
                `STATE_DATABASE_UNAVAILABLE` when the database cannot be read.
        """
        if checkpoint is not None and checkpoint_key is None:
            raise GatewayError(
                ErrorCode.INPUT_INVALID_ARGUMENT, "A checkpoint can only be checked against its public key."
            )
        db = open_state(self._location)
        try:
            with read_transaction(db):  # one snapshot: rows appended meanwhile are not half-seen
                return self._scan(db, checkpoint, checkpoint_key, progress)
        except database_errors() as exc:
            raise GatewayError(
                ErrorCode.STATE_DATABASE_UNAVAILABLE, f"The audit log cannot be read ({_db_reason(exc)})."
            ) from None
        finally:
            db.close()

    def verify_database_sync(self, db: StateConnection) -> VerifyReport:
        """Check the whole chain in another state database (a backup, an import's source) with this log's key."""
        with read_transaction(db):
            return self._scan(db, None, None, None)

    def _scan(
        self,
        db: StateConnection,
        checkpoint: Checkpoint | None,
        checkpoint_key: Ed25519PublicKey | None,
        progress: Callable[[int, int], None] | None,
        verified: Callable[[list[tuple[object, ...]]], object] | None = None,
    ) -> VerifyReport:
        """Check the chain in `db` page by page; `verified` receives each page once every row of it checked out."""
        top = db.execute("SELECT max(sequence) FROM audit_events").fetchone()
        expected_total = top[0] if top is not None and isinstance(top[0], int) else 0
        signed = checkpoint is not None and checkpoint_key is not None and checkpoint.is_signed_by(checkpoint_key)
        mark, mark_hash = (
            (checkpoint.sequence, checkpoint.chain_hash) if checkpoint is not None and signed else (-1, "")
        )
        mac, key_id = self._mac, self.key_id
        own_event = checkpoint.own_event_id if checkpoint is not None and signed else None
        own_event_seen = own_event is None
        previous, expected, head_hash = GENESIS_HASH, 1, None
        for batch in self._pages(db):
            for sequence, row_key_id, event_id, event_type, timestamp, payload, chain_hash in batch:
                problem: str | None = None
                if sequence != expected or type(sequence) is not int:
                    problem = f"expected sequence {expected}, found {sequence!r} (a row was removed, added or moved)"
                elif not (
                    type(row_key_id) is str
                    and type(event_id) is str
                    and type(event_type) is str
                    and type(timestamp) is str
                    and type(payload) is str
                    and type(chain_hash) is str
                ):
                    problem = "the row has a missing or malformed column"
                elif row_key_id != key_id:
                    problem = "the row was chained with a different key than the one configured"
                else:
                    digest = mac.digest(
                        previous, _row_bytes(sequence, key_id, event_id, event_type, timestamp, payload)
                    )
                    try:
                        matches = hmac.compare_digest(digest.hex(), chain_hash)
                    except TypeError:  # non-ASCII text where a hex digest should be
                        matches = False
                    if not matches:
                        problem = "the chain hash does not match the row (edited, swapped, forged or wrong key)"
                    elif expected == mark and chain_hash != mark_hash:
                        problem = "the row differs from the signed checkpoint (rolled back or rewritten)"
                    else:
                        previous, head_hash = digest, chain_hash
                        own_event_seen = own_event_seen or (expected > mark and event_id == own_event)
                if problem is not None:
                    found_id = event_id if type(event_id) is str and len(event_id) <= 64 else None
                    return VerifyReport(
                        events_scanned=expected,
                        chain_valid=False,
                        first_break_sequence=expected,
                        first_break_event_id=found_id,
                        reason=problem,
                        checkpoint_checked=checkpoint is not None,
                        head_sequence=expected - 1,
                        head_chain_hash=head_hash,
                    )
                expected += 1
            if verified is not None:
                verified(batch)
            if progress is not None:
                progress(expected - 1, max(expected_total, expected - 1))
        scanned = expected - 1
        reason: str | None = None
        if checkpoint is not None:
            if not signed:
                reason = "the checkpoint's signature is invalid (forged, altered or signed by another key)"
            elif scanned < checkpoint.sequence:
                reason = (
                    f"the log ends at sequence {scanned} but the signed checkpoint covers {checkpoint.sequence} "
                    "(truncated or rolled back)"
                )
            elif checkpoint.sequence == 0 and checkpoint.chain_hash != GENESIS_HASH.hex():
                reason = "the checkpoint's chain hash does not match an empty log"
            elif not own_event_seen:
                reason = (
                    f"the event that recorded the signed checkpoint ({own_event}) is missing after sequence "
                    f"{checkpoint.sequence} (truncated or rolled back)"
                )
        return VerifyReport(
            events_scanned=scanned,
            chain_valid=reason is None,
            first_break_sequence=(scanned + 1 if reason is not None else None),
            reason=reason,
            checkpoint_checked=checkpoint is not None,
            head_sequence=scanned,
            head_chain_hash=head_hash,
        )

    def _open_db(self) -> StateConnection:
        """The connection for a worker thread (`_thread_lock` held), waiting for other processes' locks again."""
        if self._db is None:
            raise GatewayError(ErrorCode.AUDIT_WRITE_FAILED, "The audit log is closed.", retryable=False)
        if not self._busy_waits:
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._busy_waits = True
        return self._db


def _render_one(event: AuditEvent) -> _Rendered:
    """(redacted event, canonical JSON, timestamp text) of `event`, as a row stores them."""
    clean = redact_event(event)
    return clean, clean.canonical_bytes().decode("utf-8"), format_timestamp(clean.timestamp)


def _record(row: tuple[object, ...]) -> AuditRecord:
    sequence, payload, chain_hash = row
    try:
        if not isinstance(sequence, int) or not isinstance(payload, str) or not isinstance(chain_hash, str):
            raise ValueError("malformed row")
        return AuditRecord(sequence=sequence, event=AuditEvent.model_validate_json(payload), chain_hash=chain_hash)
    except (ValueError, ValidationError):
        raise GatewayError(
            ErrorCode.AUDIT_CHAIN_INVALID,
            f"The audit record at sequence {sequence!r} is unreadable; run `ibkr-agent audit verify`.",
        ) from None


class _ExportLines:
    """Renders chain rows (as `_PAGE_SQL` reads them) into export lines, counting and hashing them."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        """Of the JSONL so far, encoded as UTF-8."""
        self.markers: list[str] = []
        self.count = 0
        self.first: int | None = None
        self.last: int | None = None

    def render(self, row: tuple[object, ...]) -> str:
        """One row as its JSONL line (with the newline): sequence, redacted event, chain hash."""
        sequence, _key_id, _event_id, _event_type, _timestamp, payload, chain_hash = row
        record = _record((sequence, payload, chain_hash))
        line = (
            canonical_json(
                {
                    "sequence": record.sequence,
                    "event": redact_event(record.event).model_dump(mode="json"),
                    "chain_hash": record.chain_hash,
                }
            )
            + "\n"
        )
        self.markers += find_secret_markers(line)
        self.digest.update(line.encode("utf-8"))
        self.count += 1
        self.first = self.first if self.first is not None else record.sequence
        self.last = record.sequence
        return line

    def refuse_secrets(self) -> None:
        """Withhold the whole export when any line still holds a secret marker."""
        if self.markers:
            found = [marker for marker in SECRET_MARKERS if marker in self.markers]
            raise GatewayError(
                ErrorCode.OUTPUT_UNSAFE,
                f"The export was withheld: it would contain {len(found)} secret marker(s).",
                details={"markers": found},
            )


def _render_export(rows: Iterable[tuple[object, ...]]) -> AuditExport:
    """JSONL of chain rows (as `_PAGE_SQL` reads them), oldest first, built row by row with its SHA-256."""
    lines = _ExportLines()
    jsonl = "".join([lines.render(row) for row in rows])
    lines.refuse_secrets()
    return AuditExport(
        jsonl=jsonl,
        sha256=lines.digest.hexdigest(),
        count=lines.count,
        first_sequence=lines.first,
        last_sequence=lines.last,
    )


def _export_start(db: StateConnection, limit: int) -> int | None:
    """The sequence of the oldest of the newest `limit` rows; None for an empty log."""
    start = db.execute(_EXPORT_START_SQL, (limit,)).fetchone()
    return start[0] if start is not None and isinstance(start[0], int) else None


_JSONL_PLACE: Final = "@@jsonl@@"


def _canonical_export_halves(count: int, first: int | None, last: int | None, sha256: str) -> tuple[str, str]:
    """The canonical JSON of an `AuditExport` before and after its `jsonl` text (keys sort around it)."""
    text = canonical_json_of_jsonable(
        {"jsonl": _JSONL_PLACE, "sha256": sha256, "count": count, "first_sequence": first, "last_sequence": last}
    )
    head, tail = text.split(f'"{_JSONL_PLACE}"')
    return head + '"', '"' + tail


def _check_limit(limit: int, maximum: int) -> None:
    if not 1 <= limit <= maximum:
        raise GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, f"limit must be between 1 and {maximum}, not {limit}.")


def _db_reason(exc: Exception) -> str:
    if isinstance(exc, sqlite3.Error):
        return str(exc) or type(exc).__name__
    return type(exc).__name__  # a PostgreSQL message may name the server's host or user


def _utc_now() -> datetime:
    return datetime.now(UTC)
