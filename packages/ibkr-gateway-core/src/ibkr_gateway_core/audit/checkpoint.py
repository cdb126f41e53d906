"""Signed checkpoints of the audit chain head, kept outside the database.

A hash chain alone cannot show that its newest rows were cut off, or that the whole file was
replaced by an older copy: what remains is still a valid chain. A checkpoint signs (sequence, chain
hash) with an Ed25519 key that is not the chain key; `AuditLog.verify` then fails when the log is
shorter than a checkpoint or differs from it at the checkpoint's sequence.
"""

from __future__ import annotations

import base64
import binascii
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_serializer

from .._timestamps import UtcDatetime, format_timestamp
from ..errors import ErrorCode, GatewayError
from .keys import public_key_id

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HexDigest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

CHECKPOINT_HEADER: Final = "ibkr-agent-gateway audit checkpoint v1"
"""First line of the signed text; changing the format means a new version line."""


class Checkpoint(BaseModel):
    """A signed statement that the audit log had `sequence` events ending in `chain_hash`."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    version: Literal[1] = 1
    sequence: Annotated[int, Field(ge=0)]
    """Number of events covered (the head's sequence); 0 for an empty log."""
    chain_hash: HexDigest
    """Chain hash of the event at `sequence` (64 zeros for an empty log)."""
    created_at: UtcDatetime
    """When the checkpoint was signed (UTC)."""
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
    """Fingerprint of the signing key's public half (see `public_key_id`)."""
    signature: str
    """Base64 Ed25519 signature of `signed_text()`."""
    own_event_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    """The audit event that records taking this checkpoint (it comes after `sequence`): the log must still
    hold it, so cutting off exactly the newest events, this one included, is detected as well."""

    @field_serializer("created_at", when_used="json")
    def _serialise_created_at(self, value: datetime) -> str:
        return format_timestamp(value)

    @classmethod
    def sign(
        cls,
        sequence: int,
        chain_hash: str,
        created_at: datetime,
        signing_key: Ed25519PrivateKey,
        *,
        own_event_id: str | None = None,
    ) -> Checkpoint:
        """A checkpoint of (sequence, chain_hash) and the id of the event that will record it, signed now."""
        unsigned = cls(
            sequence=sequence,
            chain_hash=chain_hash,
            created_at=created_at,
            key_id=public_key_id(signing_key.public_key()),
            signature="",
            own_event_id=own_event_id,
        )
        signature = base64.b64encode(signing_key.sign(unsigned.signed_text().encode("utf-8"))).decode("ascii")
        return unsigned.model_copy(update={"signature": signature})

    def signed_text(self) -> str:
        """The exact text the signature covers: every field but the signature, one per line."""
        text = (
            f"{CHECKPOINT_HEADER}\nsequence {self.sequence}\nchain_hash {self.chain_hash}\n"
            f"created_at {format_timestamp(self.created_at)}\nkey_id {self.key_id}\n"
        )
        return text + (f"own_event_id {self.own_event_id}\n" if self.own_event_id is not None else "")

    def is_signed_by(self, public_key: Ed25519PublicKey) -> bool:
        """True when `public_key` made this checkpoint and nothing in it changed since."""
        from cryptography.exceptions import InvalidSignature  # loaded when a checkpoint is checked, not at start-up

        if self.key_id != public_key_id(public_key):
            return False
        try:
            public_key.verify(base64.b64decode(self.signature, validate=True), self.signed_text().encode("utf-8"))
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def to_json(self) -> str:
        """One line of JSON, as written to a checkpoint file."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        """Parse a checkpoint written by `to_json`.

        Raises:
            GatewayError: `INPUT_INVALID_ARGUMENT` when the text is not a checkpoint.
        """
        try:
            return cls.model_validate_json(text)
        except ValidationError:
            raise GatewayError(
                ErrorCode.INPUT_INVALID_ARGUMENT, "The checkpoint is not valid checkpoint JSON."
            ) from None

    def save(self, path: Path) -> None:
        """Write the checkpoint to `path` (replacing it, mode 0600 when created), followed by a newline."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.to_json() + "\n")

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read a checkpoint file.

        Raises:
            GatewayError: `INPUT_INVALID_ARGUMENT` when the file is missing, unreadable or not a checkpoint.
        """
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise GatewayError(
                ErrorCode.INPUT_INVALID_ARGUMENT, f"The checkpoint file {path.name!r} cannot be read."
            ) from None
        return cls.from_json(text)
