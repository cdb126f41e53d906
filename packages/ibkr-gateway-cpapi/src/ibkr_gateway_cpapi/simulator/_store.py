"""The simulator's book in a JSON file, shared by every process that opens the same state directory.

Fake mode keeps orders, executions, positions, cash and the `cOID`s seen in
`<state dir>/simulator-book.json`, so an order placed by one `ibkr-agent` process is there for the
next. Every request runs load-modify-save under an exclusive `flock` on `simulator-book.lock`, so
two processes never lose each other's orders. The lock file also holds a revision number, bumped
before each save: a process reloads the book only when the revision moved since it last looked.

Saves are atomic (a temporary file, then `os.replace`), mode 0600. They are not fsynced: this is a
sandbox, and a crash can lose the last change but never leaves a torn file. A file that cannot be
read is moved aside to `simulator-book.json.damaged` and the simulator carries on from memory.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ._book import SimBook, SimExecution, SimOrder, SimPosition

logger = logging.getLogger(__name__)

BOOK_FILE_NAME: Final = "simulator-book.json"
LOCK_FILE_NAME: Final = "simulator-book.lock"

RETENTION: Final = timedelta(days=7)
"""Finished orders and executions older than this are dropped on save (CPAPI shows at most 7 days of trades)."""

_REVISION_BYTES: Final = 21
"""The lock file holds the revision as 20 digits and a newline."""


class _Saved(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SavedBook(_Saved):
    """What the file holds (version 1)."""

    version: Literal[1] = 1
    login_at: datetime
    """When the simulated gateway login began; processes within 24 h share it (live orders since then)."""
    next_order_id: int
    next_execution: int
    client_order_ids: list[tuple[str, str]]
    cash: dict[str, dict[str, Decimal]]
    positions: list[SimPosition]
    orders: list[SimOrder]
    executions: list[SimExecution]


_SAVED: Final = TypeAdapter(SavedBook)


def snapshot_book(
    book: SimBook,
    *,
    login_at: datetime,
    next_order_id: int,
    next_execution: int,
    client_order_ids: set[tuple[str, str]],
    now: datetime,
) -> bytes:
    """The file's bytes for `book`, without finished orders and executions older than `RETENTION`."""
    cutoff = now - RETENTION
    orders = [o for o in book.orders.values() if o.is_working or o.updated_at >= cutoff]
    kept = {(o.account_id, o.c_oid) for o in orders if o.c_oid is not None}
    saved = SavedBook(
        login_at=login_at,
        next_order_id=next_order_id,
        next_execution=next_execution,
        client_order_ids=sorted(pair for pair in client_order_ids if pair in kept),
        cash={account_id: dict(account.cash) for account_id, account in book.accounts.items()},
        positions=list(book.positions.values()),
        orders=sorted(orders, key=lambda o: o.order_id),
        executions=[e for e in book.executions if e.executed_at >= cutoff],
    )
    return _SAVED.dump_json(saved)


def restore_book(book: SimBook, saved: SavedBook) -> None:
    """Replace the book's changing parts in place (the engine and the state hold the same object)."""
    book.positions.clear()
    book.positions.update({(p.account_id, p.conid): p for p in saved.positions})
    book.orders.clear()
    book.orders.update({o.order_id: o for o in saved.orders})
    book.executions[:] = saved.executions
    for account_id, cash in saved.cash.items():
        if account_id in book.accounts:
            book.accounts[account_id].cash = dict(cash)


@dataclass(slots=True)
class Lease:
    """An exclusive hold on the book file; `saved` is the book when it changed since this process looked."""

    fd: int
    revision: int
    saved: SavedBook | None


class BookStore:
    """Load-modify-save of one book file under an exclusive `flock`; the methods block (run them in a thread)."""

    def __init__(self, path: Path) -> None:
        """Keep the book at `path`; the lock file sits beside it. Nothing is touched until `acquire`."""
        self.path = path
        self.lock_path = path.with_name(LOCK_FILE_NAME)
        self._seen: int | None = None
        """The revision this process last loaded or saved; None before the first look."""

    def acquire(self) -> Lease:
        """Wait for the exclusive lock, then read the book if another process saved since we last looked."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            revision = _read_revision(fd)
            saved = self._read() if revision != self._seen else None
        except BaseException:
            os.close(fd)  # closing drops the lock too
            raise
        self._seen = revision
        return Lease(fd, revision, saved)

    def save(self, lease: Lease, data: bytes) -> None:
        """Bump the revision, then replace the file atomically (a reader at worst reloads the old file)."""
        revision = lease.revision + 1
        os.pwrite(lease.fd, f"{revision:020d}\n".encode(), 0)
        descriptor, temp_name = tempfile.mkstemp(dir=self.path.parent, prefix=".simulator-book.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as temp:  # mkstemp creates it 0600
                temp.write(data)
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        lease.revision = self._seen = revision

    def release(self, lease: Lease) -> None:
        """Let the next process in."""
        fcntl.flock(lease.fd, fcntl.LOCK_UN)
        os.close(lease.fd)

    def _read(self) -> SavedBook | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return _SAVED.validate_json(raw)
        except (ValidationError, ValueError):
            damaged = self.path.with_name(self.path.name + ".damaged")
            os.replace(self.path, damaged)
            logger.warning("The simulator book could not be read; it was moved aside to %s.", damaged.name)
            return None


def _read_revision(fd: int) -> int:
    text = os.pread(fd, _REVISION_BYTES, 0).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else 0


def read_saved_book(path: Path) -> SavedBook | None:
    """The book saved at `path`, read without the lock (tests and diagnostics)."""
    try:
        return _SAVED.validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
