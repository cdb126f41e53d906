"""The saved book's files as models: `simulator-book.json` and the lines of its history.

Loaded with the first book read or save (`_store`, `state`), so a process that never saw a saved book
(fake mode's reads, until an order is placed) defines none of these models.
"""

# Field types are objects, not text (no `from __future__ import annotations`): pydantic would compile each
# from its text when the class is made.
import functools
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ._book import SimExecution, SimOrder, SimPosition


class _Saved(BaseModel):
    # defer_build: schemas are built when a book is first saved or read, not when fake mode starts
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


class SavedBook(_Saved):
    """`simulator-book.json`: the parts of the book that still change."""

    version: Literal[2] = 2
    login_at: datetime
    """When the simulated gateway login began; processes within 24 h share it (live orders since then)."""
    next_order_id: int
    next_execution: int
    cash: dict[str, dict[str, Decimal]]
    positions: list[SimPosition]
    orders: list[SimOrder]
    """Working orders; finished ones move to the history."""


class HistoryEntry(_Saved):
    """One line of `simulator-book.history.jsonl`: orders that finished and fills that happened in one change."""

    orders: list[SimOrder] = Field(default_factory=list[SimOrder])
    executions: list[SimExecution] = Field(default_factory=list[SimExecution])


@functools.cache
def book_adapter() -> TypeAdapter[SavedBook]:
    """Reads and writes `simulator-book.json`; built once, on first use."""
    return TypeAdapter(SavedBook)


@functools.cache
def entry_adapter() -> TypeAdapter[HistoryEntry]:
    """Reads and writes one history line; built once, on first use."""
    return TypeAdapter(HistoryEntry)


def book_bytes(saved: SavedBook) -> bytes:
    """The snapshot file's content."""
    return book_adapter().dump_json(saved)


def history_bytes(entries: list[HistoryEntry]) -> bytes:
    """History lines (each ends with a newline); empty entries are left out."""
    return b"".join(entry_adapter().dump_json(e) + b"\n" for e in entries if e.orders or e.executions)
