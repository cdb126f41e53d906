"""The audit event: what one gateway call did, and its canonical bytes.

The canonical bytes (sorted keys, no whitespace, UTF-8, timestamps as `...T12:00:00.000000Z`) are
what the audit log stores and chains, so equal events always hash equally.
"""

# Field types are objects, not text (no `from __future__ import annotations`): pydantic would compile each
# from its text when the class is made, about 60,000 instructions a field at every start-up.
import hashlib
import json
import os
import time
import uuid
from datetime import datetime
from typing import Annotated, Final, Literal, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StringConstraints, field_serializer
from pydantic_core import to_jsonable_python

from .._timestamps import UtcDatetime, format_timestamp
from ..redaction import REDACTED, Redaction, redact, secret_reason

MAX_TEXT_CHARS: Final = 256
"""Free-text fields (subject, tool name, request id, ...) are cut to this length."""

MAX_FIELD_BYTES: Final = 8192
"""A metadata value (and each entry of a metadata object, such as one argument) is stored whole up to this size."""

MAX_METADATA_BYTES: Final = 32768
"""All of an event's metadata, after the per-field cap; beyond it the largest values are summarised too."""

MAX_REDACTIONS: Final = 64
"""At most this many entries in an event's redaction trail; one more says how many were left out."""

CAPPED_HEAD_CHARS: Final = 256
"""How much of a capped value's canonical JSON its summary keeps."""

REASON_SIZE_CAP: Final = "over the audit size cap"

FREE_TEXT_FIELDS: Final = (
    "principal_subject",
    "principal_issuer",
    "principal_token_id_hash",
    "principal_client_id",
    "operation",
    "tool_name",
    "request_id",
    "session_id",
)
"""Caller-supplied text fields: cut to `MAX_TEXT_CHARS`, redacted when they look secret."""


def _cut(text: str) -> str:
    return text[:MAX_TEXT_CHARS]


def _sorted_unique(items: list[str]) -> list[str]:
    return sorted(set(items))


_Text = Annotated[str, AfterValidator(_cut)]
_Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

Decision = Literal["allow", "deny", "refuse"]
"""What the gateway decided: run the call, deny it (auth or scope), or refuse it (a gate)."""
ResultStatus = Literal["completed", "failed", "refused", "denied_scope", "denied_auth", "authenticated"]
"""How the call ended."""
AuditPrincipalKind = Literal["local_operator", "local_agent", "remote", "system", "anonymous"]
"""`Principal.kind`, plus `system` (the gateway itself, e.g. a reconciler) and `anonymous` (failed remote auth)."""


def new_event_id() -> str:
    """A fresh UUIDv7 (RFC 9562) as 36 lower-case characters: time-ordered, 74 random bits."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & (1 << 48) - 1) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64 | 0b10 << 62
    return str(uuid.UUID(int=value | rand & (1 << 62) - 1))


def canonical_json(value: object) -> str:
    """Sorted keys, no whitespace, no NaN: equal data always gives equal text (and bytes, as UTF-8)."""
    return canonical_json_of_jsonable(to_jsonable_python(value))


_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""The encoder `json.dumps` would build on each call with these options, built once (`encode` keeps no state)."""


def canonical_json_of_jsonable(data: object) -> str:
    """`canonical_json` of data that is already JSON-compatible, without a conversion pass.

    For dicts with string keys, lists, str, int, float, bool and None, such as `model_dump(mode="json")` output.
    """
    return _CANONICAL.encode(data)


class AuditEvent(BaseModel):
    """What one call did, who made it, and what it touched (as hashes only)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    event_id: Annotated[
        str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    ] = Field(default_factory=new_event_id)
    """UUIDv7, also in `GatewayError.audit_event_id` and `CallResult.audit_event_id`."""
    event_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    """Snake case: `tool_completed`, `tool_refused`, `tool_denied_scope`, `remote_auth_denied`, ..."""
    timestamp: UtcDatetime
    """When the call finished (UTC, from the gateway's clock)."""
    principal_kind: AuditPrincipalKind
    principal_subject: _Text
    principal_issuer: _Text | None = None
    principal_token_id_hash: _Text | None = None
    """Keyed hash of the OAuth token id; never the token."""
    principal_client_id: _Text | None = None
    scopes: Annotated[list[str], AfterValidator(_sorted_unique)] = Field(default_factory=list[str])
    """The caller's scopes, sorted."""
    operation: _Text | None = None
    """Gateway operation name, e.g. `list_positions`; None when the caller named an unknown one."""
    tool_name: _Text | None = None
    """MCP tool name (`ibkr_positions_list`), or what the caller asked for when it is unknown."""
    decision: Decision
    result_status: ResultStatus
    error_code: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")] | None = None
    account_id_hash: _Digest | None = None
    """`AuditLog.account_hash` of the account; raw account ids are never stored."""
    request_id: _Text | None = None
    """Caller's correlation id (`--request-id`)."""
    session_id: _Text | None = None
    """Correlates the events of one gateway instance."""
    input_hash: _Digest | None = None
    """`AuditLog.hash_payload` of the arguments as given."""
    output_hash: _Digest | None = None
    """`AuditLog.hash_payload` of the result, for completed calls."""
    duration_ms: Annotated[float, Field(ge=0)] | None = None
    redactions: list[Redaction] = Field(default_factory=list[Redaction])
    """Where values were replaced by `[REDACTED]`, and why."""
    metadata: dict[str, JsonValue] = Field(default_factory=dict[str, JsonValue])
    """Free-form context; redacted on append (sensitive keys at any depth, secret-like values)."""

    @field_serializer("timestamp", when_used="json")
    def _serialise_timestamp(self, value: datetime) -> str:
        return format_timestamp(value)

    def canonical_bytes(self) -> bytes:
        """The bytes that are stored and chained: canonical JSON of every field, UTF-8."""
        return canonical_json_of_jsonable(self.model_dump(mode="json")).encode()  # already JSON types


def redact_event(event: AuditEvent) -> AuditEvent:
    """The event with metadata redacted and secret-like free text replaced, the trail extended.

    `AuditLog.append` applies it to every event, so no caller can store a secret by forgetting to.
    """
    metadata, trail = redact(event.metadata)
    if isinstance(metadata, dict):
        metadata = cap_metadata(metadata, trail)
    updates: dict[str, object] = {}
    for name in FREE_TEXT_FIELDS:
        text = getattr(event, name)
        if isinstance(text, str) and text != REDACTED:
            reason = secret_reason(text)
            if reason is not None:
                updates[name] = REDACTED
                trail.append(Redaction(field_path=name, reason=reason))
    if not trail and len(event.redactions) <= MAX_REDACTIONS + 1:
        return event
    merged = list(dict.fromkeys([*event.redactions, *trail]))  # in order, each once
    if len(merged) > MAX_REDACTIONS + 1:
        left_out = len(merged) - MAX_REDACTIONS
        merged = [*merged[:MAX_REDACTIONS], Redaction(field_path="...", reason=f"and {left_out} more")]
    updates["redactions"] = merged
    updates["metadata"] = metadata if isinstance(metadata, dict) else {}
    return event.model_copy(update=updates)


def _size(value: JsonValue) -> tuple[int, str]:
    text = canonical_json_of_jsonable(value)
    return len(text.encode("utf-8", "replace")), text


def capped_summary(text: str, size: int) -> dict[str, JsonValue]:
    """What a value over the cap is stored as: its size, a SHA-256 of its canonical JSON, and its first characters."""
    return {
        "capped": True,
        "bytes": size,
        "sha256": hashlib.sha256(text.encode("utf-8", "replace")).hexdigest(),
        "head": text[:CAPPED_HEAD_CHARS],
    }


def _cap(value: JsonValue, path: str, trail: list[Redaction]) -> JsonValue:
    size, text = _size(value)
    if size <= MAX_FIELD_BYTES:
        return value
    trail.append(Redaction(field_path=path, reason=REASON_SIZE_CAP))
    return capped_summary(text, size)


def cap_metadata(metadata: dict[str, JsonValue], trail: list[Redaction]) -> dict[str, JsonValue]:
    """`metadata` with every value, and every entry of an object value, cut to `MAX_FIELD_BYTES`.

    A cut value keeps its size, hash and first characters (`capped_summary`), and the trail names it.
    If the whole is still over `MAX_METADATA_BYTES`, the largest values are summarised whole, so one
    event's metadata never exceeds about that size however many fields a caller sends.
    """
    total, _ = _size(metadata)
    if total <= MAX_FIELD_BYTES:
        return metadata  # the common case: one pass, nothing to cut
    capped: dict[str, JsonValue] = {}
    for key, value in metadata.items():
        if isinstance(value, dict):
            entries = cast(dict[str, JsonValue], value)
            capped[key] = {name: _cap(item, f"metadata.{key}.{name}", trail) for name, item in entries.items()}
        else:
            capped[key] = _cap(value, f"metadata.{key}", trail)
    sizes = sorted(((_size(value), key) for key, value in capped.items()), key=lambda item: -item[0][0])
    total, _ = _size(capped)
    for (size, text), key in sizes:
        if total <= MAX_METADATA_BYTES:
            break
        summary = capped_summary(text, size)
        trail.append(Redaction(field_path=f"metadata.{key}", reason=REASON_SIZE_CAP))
        total -= size - _size(summary)[0]
        capped[key] = summary
    if total > MAX_METADATA_BYTES:  # very many small top-level keys: keep one summary of them all
        size, text = _size(capped)
        trail.append(Redaction(field_path="metadata", reason=REASON_SIZE_CAP))
        return {"capped": capped_summary(text, size)}
    return capped
