"""The state database seam: where order workflow state and the audit chain are stored.

`database` opens a state connection (SQLite by default) and holds the versioned schema; `postgres`
is the PostgreSQL backend for several replicas, imported only when configured.
The names below load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .database import (
        MIGRATIONS,
        Migration,
        PostgresLocation,
        StateConnection,
        StateLocation,
        open_database,
        open_state,
        read_transaction,
        schema_version,
        write_transaction,
    )

__all__ = [
    "MIGRATIONS",
    "Migration",
    "PostgresLocation",
    "StateConnection",
    "StateLocation",
    "open_database",
    "open_state",
    "read_transaction",
    "schema_version",
    "write_transaction",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "MIGRATIONS": "database",
        "Migration": "database",
        "PostgresLocation": "database",
        "StateConnection": "database",
        "StateLocation": "database",
        "open_database": "database",
        "open_state": "database",
        "read_transaction": "database",
        "schema_version": "database",
        "write_transaction": "database",
    },
)
