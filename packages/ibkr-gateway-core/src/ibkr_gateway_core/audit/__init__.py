"""The tamper-evident audit log: its events, the hash chain, signing keys and signed checkpoints.

`log` appends and verifies the chain (SQLite or PostgreSQL through the state seam); `events` defines
one event and its redaction; `keys` loads the signing keys; `checkpoint` signs and checks the chain head.
The names below load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .checkpoint import Checkpoint
    from .events import AuditEvent, canonical_json, new_event_id
    from .keys import load_audit_key, load_checkpoint_key, public_key_id
    from .log import AuditExport, AuditExportStream, AuditLog, AuditRecord, VerifyReport

__all__ = [
    "AuditEvent",
    "AuditExport",
    "AuditExportStream",
    "AuditLog",
    "AuditRecord",
    "Checkpoint",
    "VerifyReport",
    "canonical_json",
    "load_audit_key",
    "load_checkpoint_key",
    "new_event_id",
    "public_key_id",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AuditEvent": "events",
        "AuditExport": "log",
        "AuditExportStream": "log",
        "AuditLog": "log",
        "AuditRecord": "log",
        "Checkpoint": "checkpoint",
        "VerifyReport": "log",
        "canonical_json": "events",
        "load_audit_key": "keys",
        "load_checkpoint_key": "keys",
        "new_event_id": "events",
        "public_key_id": "keys",
    },
)
