"""The simulator's book on disk, shared by every process that opens the same state directory.

Fake mode keeps its orders, executions, positions and cash in the state directory, so an order
placed by one `ibkr-agent` process is there for the next. Two files hold the book:

- `simulator-book.json`: what still changes (working orders, positions, cash, id counters, the
  login time), rewritten whole after each change: a temporary file, then `os.replace`, mode 0600.
- `simulator-book.history.jsonl`: what never changes again (finished orders, executions), one line
  appended per change, so a save costs what changed, not the size of the book. It is rewritten
  without entries older than `RETENTION` once it passes `COMPACT_HISTORY_BYTES`.

Every request runs load-modify-save under an exclusive `flock` on `simulator-book.lock`. The lock
file holds a revision, bumped before each save, and a history generation, bumped when the history
is rewritten: a process rereads only what another one changed since it last looked.

Files are not fsynced: this is a sandbox; a crash can lose the last change but never leaves a torn
snapshot (a torn last history line is cut off). A snapshot that cannot be read is moved aside to
`simulator-book.json.damaged` and the simulator carries on from memory.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pydantic import ValidationError

from ._book import SimExecution, SimOrder

if TYPE_CHECKING:  # the saved-book models load with the first book read or save (`_saved`)
    from ._saved import HistoryEntry, SavedBook

logger = logging.getLogger(__name__)

BOOK_FILE_NAME: Final = "simulator-book.json"
HISTORY_FILE_NAME: Final = "simulator-book.history.jsonl"
LOCK_FILE_NAME: Final = "simulator-book.lock"

RETENTION: Final = timedelta(days=7)
"""Finished orders and executions older than this are not loaded, and go at the next rewrite (CPAPI shows 7 days)."""

COMPACT_HISTORY_BYTES: Final = 4 * 1024 * 1024
"""History size past which it is rewritten without expired entries."""

_LOCK_RECORD: Final = "{revision:020d} {generation:020d}\n"
_LOCK_RECORD_BYTES: Final = 42


class Loaded:
    """What changed on disk since this process last looked.

    A plain slotted class, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    __slots__ = ("book", "executions", "finished", "full")

    def __init__(self, *, full: bool, book: SavedBook | None) -> None:
        self.full = full
        """True: `finished` and `executions` are the whole history; False: only lines added since."""
        self.book = book
        self.finished: list[SimOrder] = []
        self.executions: list[SimExecution] = []


class Lease:
    """An exclusive hold on the book files; `loaded` is set when another process changed them.

    A plain slotted class, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    __slots__ = ("fd", "generation", "loaded", "revision")

    def __init__(self, fd: int, revision: int, generation: int, *, loaded: Loaded | None) -> None:
        self.fd = fd
        self.revision = revision
        self.generation = generation
        self.loaded = loaded


class BookStore:
    """Load-modify-save of the book files under an exclusive `flock`; `acquire` and `save` block (use a thread)."""

    def __init__(self, path: Path) -> None:
        """Keep the snapshot at `path`; history and lock file sit beside it. Nothing is touched until used."""
        self.path = path
        self.history_path = path.with_name(HISTORY_FILE_NAME)
        self.lock_path = path.with_name(LOCK_FILE_NAME)
        self._seen: tuple[int, int] | None = None
        """(revision, generation) this process last loaded or saved; None before the first look."""
        self._history_end = 0
        """Bytes of history this process has read or written."""

    @property
    def history_size(self) -> int:
        """Bytes of history known to this process."""
        return self._history_end

    def try_acquire(self) -> Lease | None:
        """The lock without waiting, when it is free and nothing changed; None when `acquire` is needed.

        The common case (this process saved last) needs no thread: a non-blocking `flock` and a
        42-byte read.
        """
        if self._seen is None:
            return None
        fd = self._open_lock()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        seen = _read_lock_record(fd)
        if seen != self._seen:
            os.close(fd)  # closing drops the lock
            return None
        return Lease(fd, *seen, loaded=None)

    def acquire(self) -> Lease:
        """Wait for the exclusive lock, then read what another process saved since we last looked."""
        fd = self._open_lock()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            seen = _read_lock_record(fd)
            loaded = self._load(full=self._seen is None or seen[1] != self._seen[1]) if seen != self._seen else None
        except BaseException:
            os.close(fd)
            raise
        self._seen = seen
        return Lease(fd, *seen, loaded=loaded)

    def save(self, lease: Lease, snapshot: bytes, history: bytes) -> None:
        """Bump the revision, append history, then replace the snapshot (a reader at worst rereads old data)."""
        self._write_lock_record(lease, lease.revision + 1, lease.generation)
        if history:
            fd = os.open(self.history_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, history)
                self._history_end = os.fstat(fd).st_size
            finally:
                os.close(fd)
        self._replace(self.path, snapshot)

    def rewrite(self, lease: Lease, snapshot: bytes, history: bytes) -> None:
        """Replace the whole history (dropping expired entries) and the snapshot; readers reload in full."""
        self._write_lock_record(lease, lease.revision + 1, lease.generation + 1)
        self._replace(self.history_path, history)
        self._history_end = len(history)
        self._replace(self.path, snapshot)

    def release(self, lease: Lease) -> None:
        """Let the next request, or process, in."""
        fcntl.flock(lease.fd, fcntl.LOCK_UN)
        os.close(lease.fd)

    def _open_lock(self) -> int:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)

    def _write_lock_record(self, lease: Lease, revision: int, generation: int) -> None:
        os.pwrite(lease.fd, _LOCK_RECORD.format(revision=revision, generation=generation).encode(), 0)
        lease.revision, lease.generation = revision, generation
        self._seen = (revision, generation)

    def _replace(self, path: Path, data: bytes) -> None:
        descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as temp:  # mkstemp creates it 0600
                temp.write(data)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def _load(self, *, full: bool) -> Loaded:
        loaded = Loaded(full=full, book=self.read_book())
        if full:
            self._history_end = 0
        for entry in self.read_history():
            loaded.finished.extend(entry.orders)
            loaded.executions.extend(entry.executions)
        return loaded

    def read_book(self) -> SavedBook | None:
        """The snapshot, or None when there is none (a damaged one is moved aside)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        from ._saved import book_adapter

        try:
            return book_adapter().validate_json(raw)
        except ValidationError:
            damaged = self.path.with_name(self.path.name + ".damaged")
            os.replace(self.path, damaged)
            logger.warning("The simulator book could not be read; it was moved aside to %s.", damaged.name)
            return None

    def read_history(self) -> list[HistoryEntry]:
        """History lines added since this process last read (all of them the first time)."""
        try:
            with self.history_path.open("rb") as history:
                history.seek(self._history_end)
                tail = history.read()
        except FileNotFoundError:
            return []
        complete = tail.rfind(b"\n") + 1
        if complete < len(tail):  # a line torn by a crash: cut it off so appends start clean
            os.truncate(self.history_path, self._history_end + complete)
        from ._saved import entry_adapter

        entries: list[HistoryEntry] = []
        for line in tail[:complete].splitlines():
            try:
                entries.append(entry_adapter().validate_json(line))
            except ValidationError:
                logger.warning("Skipped a simulator history line that could not be read.")
        self._history_end += complete
        return entries


def _read_lock_record(fd: int) -> tuple[int, int]:
    parts = os.pread(fd, _LOCK_RECORD_BYTES, 0).decode("ascii", errors="replace").split()
    if len(parts) == 2 and all(part.isdigit() for part in parts):
        return int(parts[0]), int(parts[1])
    return 0, 0


def read_saved(directory: Path) -> tuple[SavedBook | None, list[HistoryEntry]]:
    """The snapshot and history saved in `directory`, read without the lock (tests and diagnostics)."""
    store = BookStore(directory / BOOK_FILE_NAME)
    return store.read_book(), store.read_history()
