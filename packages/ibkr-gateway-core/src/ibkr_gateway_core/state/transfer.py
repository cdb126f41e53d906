"""Moving a single host's state into a new state database: `ibkr-agent state import`.

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

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ErrorCode, GatewayError
from ..input_base import OperationInput
from .database import (
    StateConnection,
    database_errors,
    hold_lock,
    open_database,
    open_state,
    read_transaction,
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


class StateImportInput(OperationInput):
    """A SQLite state file to copy into the configured (new) state database."""

    source: str = Field(
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
    kill_switch: str | None
    """The copied kill switch: `open` or `closed`, None when the source never changed it."""


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
            user_action="Give the path of state.sqlite3 in the old state directory.",
        )
    target_location = audit.location
    if isinstance(target_location, Path) and target_location.exists() and source.samefile(target_location):
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"The state file {name!r} is the configured state database itself.",
            user_action="Point state at the new database (state.backend and its settings), then import the old file.",
        )
    try:
        source_db = open_database(source)
    except GatewayError as error:
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"The state file {name!r} cannot be imported: {error.message}",
            user_action="Give the state.sqlite3 file of the old state directory, opened once by this version.",
        ) from None
    try:
        target = open_state(target_location)
        try:
            return _copy(audit, source_db, target, source)
        finally:
            target.close()
    finally:
        source_db.close()


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
                        f"The configured state database's audit chain is broken: {chain.target.reason}; "
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
        kill_switch=str(switch[0]) if switch is not None else None,
    )


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


def _newest_sequence(path: Path) -> int:
    """The newest audit sequence in the file now, read on a connection of its own (read-only)."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
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
