"""Backing up a single host's state and moving it into a new state database: `ibkr-agent state backup|import`.

`backup_state` writes a consistent copy of the SQLite state database while servers keep writing (SQLite's
online backup), checks the copy's audit chain with the configured key, and only then puts it in place, as a
self-contained file (no `-wal`) readable by its owner alone. A backup is restored with `state import`.

A deployment that grows from one host (a SQLite file) to replicas (PostgreSQL) keeps its audit chain and
its order workflow state by importing the old `state.sqlite3` into the new database before any replica
starts. The copy is one write transaction on the target holding both lock domains, read from one snapshot
of the source: every audit row is verified with the configured key before it is written (a broken chain,
or one made with another key, imports nothing), the order tables are copied row for row, and the chain
keeps its sequence numbers and hashes, so `audit verify` and checkpoints signed on the old host still hold.

The target must be new: no order state, and no audit event but the records of earlier, refused attempts
of this import (a mistyped path is audited like any call), which are chained again after the imported
chain. Anything else is `STATE_IMPORT_TARGET_NOT_EMPTY`, and nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, Literal, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..errors import ErrorCode, GatewayError
from ..input_base import OperationInput
from .database import (
    MIGRATIONS,
    StateConnection,
    backup_database,
    database_errors,
    hold_lock,
    open_database,
    open_read_only,
    open_state,
    read_transaction,
    schema_version,
    unavailable_error,
    write_transaction,
)

if TYPE_CHECKING:
    from ..audit.log import AuditLog

STATE_TABLES: Final = (
    "order_previews",
    "order_approvals",
    "preview_denials",
    "order_idempotency",
    "kill_switch",
    "live_orders",
    "broker_order_questions",
)
"""Every table of the schema but the audit chain and the migrations, in an order the foreign keys accept."""

COPY_PAGE_ROWS: Final = 1_000
"""Rows read from the source and written to the target at a time (memory stays flat)."""

IMPORT_OPERATION: Final = "import_state"
"""The registry name of the import: its own earlier records may be in the target."""


def _path_text(value: object) -> object:
    """A path given as a `Path` (the CLI's path options) is read as its text."""
    return str(value) if isinstance(value, Path) else value


PathText = Annotated[str, BeforeValidator(_path_text)]
"""A local file path, as text."""


class StateImportInput(OperationInput):
    """A SQLite state file to copy into the configured (new) state database."""

    source: PathText = Field(
        min_length=1,
        max_length=4096,
        exclude=True,  # a local path: kept out of the audit event (its keyed hash is in the input hash)
        description="The SQLite state file to import: `state.sqlite3` of the old state directory.",
    )


class StateImport(BaseModel):
    """What an import copied: the audit chain (its head, as `audit verify` reports it) and the order tables."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    audit_events: int
    """Audit events copied, each verified with the configured key."""
    head_sequence: int
    """Sequence of the newest copied event (0: the source's chain was empty)."""
    head_chain_hash: str | None
    """Its chain hash: the same as the source's head, so checkpoints signed on the old host still verify."""
    earlier_attempts: int
    """Records of earlier, refused attempts of this import found in the target, chained again after the copy."""
    tables: dict[str, int]
    """Rows copied per order table (previews, approvals, denials, idempotency records, kill switch, ...)."""
    kill_switch: Literal["closed"] = "closed"
    """The live kill switch after the import: closed, whatever it was, until the operator opens it."""
    kill_switch_was: str | None
    """The copied kill switch: `open` or `closed`; None when the source never set it (closed by default)."""
    approvals_revoked: int
    """Approvals still unused in the copy, revoked: whether they were used after it cannot be known."""


def import_state(audit: AuditLog, source: Path) -> StateImport:
    """Copy the SQLite state file `source` into the state database of `audit`, which must be new.

    Raises:
        GatewayError: `INPUT_INVALID_ARGUMENT` for a source that is missing, not a state database, newer
            than this version, or the target itself; `STATE_IMPORT_TARGET_NOT_EMPTY`; `AUDIT_CHAIN_INVALID`
            when either chain does not verify with the configured key; `STATE_DATABASE_UNAVAILABLE`.
    """
    name = source.name
    if not source.is_file():
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"The state file {name!r} does not exist or is not a file.",
            user_action="Give the path of a backup (state backup), or of state.sqlite3 in the old state directory.",
        )
    target_location = audit.location
    if isinstance(target_location, Path) and target_location.exists() and source.samefile(target_location):
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"The state file {name!r} is the configured state database itself.",
            user_action="Point state at the new database (state.backend and its settings), then import the old file.",
        )
    try:
        source_db = _open_source(source)
    except GatewayError as error:
        detail = error.message.removeprefix(f"The state database {name!r} cannot be opened: ")
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"The file {name!r} cannot be imported: {detail[:1].lower()}{detail[1:]}",
            user_action="Give a backup from `state backup`, or state.sqlite3 of the old state directory, written by "
            "this or an older version.",
        ) from None
    try:
        target = open_state(target_location)
        try:
            return _copy(audit, source_db, target, source)
        finally:
            target.close()
    finally:
        source_db.close()


def _open_source(path: Path) -> StateConnection:
    """The source file: read-only when it holds this version's schema, else opened as any command opens it.

    Read-only, a backup stays byte for byte as it was (its digest still matches); an older schema is migrated
    first, which only a writing connection can do.
    """
    try:
        db = open_read_only(path)
    except sqlite3.Error:
        return open_database(path)
    try:
        if schema_version(db) == MIGRATIONS[-1].version:
            return db
    except sqlite3.Error:
        pass  # not a database, or unreadable: `open_database` says which
    db.close()
    return open_database(path)


def _copy(audit: AuditLog, source: StateConnection, target: StateConnection, path: Path) -> StateImport:
    name = path.name
    try:
        with write_transaction(target, "audit"):
            hold_lock(target, "state")
            occupied = [table for table in STATE_TABLES if target.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()]
            if occupied:
                raise _not_empty(f"it holds order state ({', '.join(occupied)})")
            with read_transaction(source):
                chain = audit.import_chain_sync(source, target, movable=_an_import_attempt)
                if not chain.movable:
                    raise _not_empty(f"its audit chain holds {chain.moved} events")
                if chain.target is not None and not chain.target.chain_valid:
                    raise GatewayError(
                        ErrorCode.AUDIT_CHAIN_INVALID,
                        f"The configured state database's audit chain does not verify: {chain.target.reason}; "
                        "nothing was imported.",
                        user_action="Create a new, empty state database and import into it.",
                    )
                report = chain.source
                if report is None or not report.chain_valid:
                    where = f" at sequence {report.first_break_sequence}" if report is not None else ""
                    reason = report.reason if report is not None else "it was not read"
                    raise GatewayError(
                        ErrorCode.AUDIT_CHAIN_INVALID,
                        f"The audit chain of {name!r} does not verify{where}: {reason}; nothing was imported.",
                        user_action="Configure the audit key the old host used (audit.hmac_secret_env); a chain "
                        "that is broken with the right key cannot be imported: keep the file as evidence.",
                    )
                tables = {table: _copy_table(source, target, table) for table in STATE_TABLES}
                switch = source.execute("SELECT state FROM kill_switch WHERE id = 1").fetchone()
            revoked = _disarm(target)
            if _newest_sequence(path) != report.head_sequence:  # the file as it is now, not the snapshot
                raise GatewayError(
                    ErrorCode.INPUT_INVALID_ARGUMENT,
                    f"The state file {path.name!r} changed during the import (a server still writes it); "
                    "nothing was imported.",
                    user_action="Stop every server and command that uses the old state directory, then import again.",
                )
    except database_errors() as exc:
        raise unavailable_error(exc) or GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"A row of {name!r} cannot be written to the configured state database ({type(exc).__name__}); "
            "nothing was imported.",
            user_action="Run `ibkr-agent audit verify` against the old state directory, and report this.",
        ) from None
    return StateImport(
        audit_events=report.events_scanned,
        head_sequence=report.head_sequence,
        head_chain_hash=report.head_chain_hash,
        earlier_attempts=chain.moved,
        tables=tables,
        kill_switch_was=str(switch[0]) if switch is not None else None,
        approvals_revoked=revoked,
    )


DISARM_REASON: Final = "closed by a state import until the operator opens it (ibkr-agent kill-switch open)"
"""Why an import leaves the kill switch closed."""

REVOKE_REASON: Final = "state import: whether it was used after the copy cannot be known"
"""Why an import revokes the approvals it copied unused."""


def _disarm(target: StateConnection) -> int:
    """Leave nothing armed by the copy: unused approvals revoked, the live kill switch closed; how many revoked.

    The copy may be older than the last state of its source (a backup restored, or a file copied while its
    server still ran before it stopped): an approval unused in the copy may have been used since, and the
    switch may have been closed since. A person re-approves and opens the switch once they have looked.
    """
    from ..orders.models import KillSwitchState
    from ..orders.store import revoke_open_approvals, store_kill_switch

    now = datetime.now(UTC)
    revoked = revoke_open_approvals(target, REVOKE_REASON, now)
    store_kill_switch(
        target, KillSwitchState(state="closed", changed_by="state import", changed_at=now, reason=DISARM_REASON)
    )
    return revoked


def _copy_table(source: StateConnection, target: StateConnection, table: str) -> int:
    """Copy every row of `table`, column by name, a page at a time; the number of rows."""
    cursor = source.execute(f"SELECT * FROM {table}")
    columns = [column[0] for column in getattr(cursor, "description", None) or ()]
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    count = 0
    while rows := cursor.fetchmany(COPY_PAGE_ROWS):
        target.executemany(insert, rows)
        count += len(rows)
    return count


class StateBackupInput(OperationInput):
    """Where to write a backup of the SQLite state database."""

    to: PathText = Field(
        min_length=1,
        max_length=4096,
        exclude=True,  # a local path: kept out of the audit event (its keyed hash is in the input hash)
        description="The new file to write the backup to; it must not exist yet.",
    )


class StateBackup(BaseModel):
    """A backup written and checked: its audit chain (as `audit verify` reports it), its size and digest."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    audit_events: int
    """Audit events in the backup, each verified with the configured key."""
    head_sequence: int
    """Sequence of the newest event in the backup."""
    head_chain_hash: str | None
    """Its chain hash: keep it with the file, and compare after a restore (`state import` reports it too)."""
    bytes: int
    """Size of the backup file."""
    sha256: str
    """SHA-256 (hex) of the backup file, to check a copy of it later."""


def backup_state(audit: AuditLog, destination: Path) -> StateBackup:
    """Write a checked backup of the SQLite state database of `audit` to the new file `destination`.

    Raises:
        GatewayError: `INPUT_INVALID_ARGUMENT` when the state is on PostgreSQL, or the file exists or cannot be
            written; `AUDIT_CHAIN_INVALID` when the copy's chain does not verify (nothing is left behind);
            `STATE_DATABASE_UNAVAILABLE`.
    """
    location = audit.location
    name = destination.name
    if not isinstance(location, Path):
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            "state backup copies a SQLite state database; this one is on PostgreSQL.",
            user_action="Back up the PostgreSQL database with its own tools: pg_dump, or base backups and WAL "
            "archiving.",
        )
    if destination.is_dir():
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"--to names the folder {name!r}; a backup is written to a new file.",
            user_action="Give --to a new file name, e.g. a file inside that folder.",
        )
    if destination.exists() or destination.is_symlink():
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"The backup file {name!r} exists already; a backup never overwrites a file.",
            user_action="Give --to a new file name.",
        )
    folder = destination.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"The backup file {name!r} cannot be written: its folder is missing or not writable.",
            user_action="Give --to a file in an existing folder you can write to.",
        )
    partial = folder / f".{name}.partial-{os.getpid()}"
    try:
        backup_database(location, partial)
        copy = open_read_only(partial)
        try:
            report = audit.verify_database_sync(copy)
        finally:
            copy.close()
        if not report.chain_valid:
            raise GatewayError(
                ErrorCode.AUDIT_CHAIN_INVALID,
                f"The backup's audit chain does not verify at sequence {report.first_break_sequence}: {report.reason}; "
                "no backup was written.",
                user_action="Run `ibkr-agent audit verify` and follow the audit-incident runbook.",
            )
        digest, size = _digest(partial)
        os.link(partial, destination)  # never replaces a file that appeared meanwhile
    except FileExistsError:
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"The backup file {name!r} appeared while the backup was written; it was left alone.",
            user_action="Give --to a new file name.",
        ) from None
    except OSError as exc:
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"The backup file {name!r} cannot be written ({exc.strerror or type(exc).__name__}).",
            user_action="Give --to a file in an existing folder you can write to, on a disk with room for the copy.",
        ) from None
    except database_errors() as exc:
        raise unavailable_error(exc) or GatewayError(
            ErrorCode.STATE_DATABASE_UNAVAILABLE, f"The state database cannot be copied ({type(exc).__name__})."
        ) from None
    finally:
        for leftover in (partial, partial.with_name(partial.name + "-wal"), partial.with_name(partial.name + "-shm")):
            leftover.unlink(missing_ok=True)
    return StateBackup(
        audit_events=report.events_scanned,
        head_sequence=report.head_sequence,
        head_chain_hash=report.head_chain_hash,
        bytes=size,
        sha256=digest,
    )


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _newest_sequence(path: Path) -> int:
    """The newest audit sequence in the file now, read on a connection of its own (read-only)."""
    db = open_read_only(path)
    try:
        row = db.execute("SELECT max(sequence) FROM audit_events").fetchone()
    finally:
        db.close()
    return int(row[0]) if row is not None and row[0] is not None else 0


def _an_import_attempt(payload: str) -> bool:
    """Whether a stored event (canonical JSON) records a refused or failed call of this import."""
    try:
        event: object = json.loads(payload)
    except ValueError:
        return False
    if not isinstance(event, dict):
        return False
    fields = cast("dict[str, object]", event)
    return fields.get("operation") == IMPORT_OPERATION and fields.get("result_status") != "completed"


def _not_empty(what: str) -> GatewayError:
    return GatewayError(
        ErrorCode.STATE_IMPORT_TARGET_NOT_EMPTY,
        f"The configured state database is not new: {what}; nothing was imported.",
    )
