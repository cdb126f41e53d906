"""Hostile argument values: each refused with its own INPUT_* code, audited, and the audit log stays bounded."""

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from ibkr_gateway_core.audit import AuditEvent, AuditLog
from ibkr_gateway_core.audit.events import MAX_FIELD_BYTES, MAX_METADATA_BYTES, MAX_REDACTIONS, redact_event
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.input_limits import MAX_DEPTH, safe_jsonable, screen_arguments

pytestmark = pytest.mark.anyio


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


HOSTILE = [
    ({"quantity": float("inf")}, ErrorCode.INPUT_NON_FINITE_NUMBER),
    ({"quantity": float("-inf")}, ErrorCode.INPUT_NON_FINITE_NUMBER),
    ({"quantity": float("nan")}, ErrorCode.INPUT_NON_FINITE_NUMBER),
    ({"quantity": Decimal("NaN")}, ErrorCode.INPUT_NON_FINITE_NUMBER),
    ({"quantity": 10**4999}, ErrorCode.INPUT_NUMBER_TOO_LARGE),
    ({"quantity": -(10**64)}, ErrorCode.INPUT_NUMBER_TOO_LARGE),
    ({"query": "abc\ud800"}, ErrorCode.INPUT_INVALID_UNICODE),
    ({"\udfff": 1}, ErrorCode.INPUT_INVALID_UNICODE),
    ({"x": nested(500)}, ErrorCode.INPUT_TOO_DEEP),
    ({"x": nested(100_000)}, ErrorCode.INPUT_TOO_DEEP),
    ({"x": [0] * 200_000}, ErrorCode.INPUT_TOO_DEEP),
]


@pytest.mark.parametrize(("arguments", "code"), HOSTILE)
def test_screen_names_the_hostile_value(arguments: dict[str, object], code: ErrorCode) -> None:
    refusal = screen_arguments(arguments)
    assert refusal is not None
    assert refusal.code == code


def test_screen_accepts_ordinary_values() -> None:
    ok = {"quantity": 10**63, "price": 1.5e300, "text": "naïve ☃ 𝄞", "flag": True, "deep": nested(MAX_DEPTH - 1)}
    assert screen_arguments(ok) is None
    assert screen_arguments({"q": Decimal("123.45")}) is None


def test_safe_jsonable_always_encodes() -> None:
    hostile = {"a": float("nan"), "b": 10**5000, "c": "x\ud800", "d": nested(10_000), "\udc00": Decimal("Infinity")}
    text = json.dumps(safe_jsonable(hostile), allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    assert "[integer of" in text and "nested deeper" in text


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    config = GatewayConfig.fake_local(state_dir=tmp_path)
    audit = AuditLog.open(tmp_path / "state.sqlite3", b"k" * 32)
    async with Gateway(config, audit) as gw:
        yield gw


@pytest.mark.parametrize(("arguments", "code"), HOSTILE)
@pytest.mark.parametrize("name", ["health", "ibkr_no_such_tool"])
async def test_gateway_refuses_and_audits_each_hostile_value(
    gateway: Gateway, name: str, arguments: dict[str, object], code: ErrorCode
) -> None:
    """Known or unknown operation alike: the coded refusal, one audit event, and the chain still verifies."""
    before = len(await gateway.audit.tail(1000))
    started = time.perf_counter()
    with pytest.raises(GatewayError) as caught:
        await gateway.call(name, arguments)
    assert time.perf_counter() - started < 30  # bounded, never a hang (generous: CI machines may be loaded)
    assert caught.value.code == code
    records = await gateway.audit.tail(1000)
    assert len(records) == before + 1
    event = records[0].event
    assert event.error_code == code.value
    assert event.event_id == caught.value.audit_event_id
    assert event.input_hash is not None
    assert len(event.canonical_bytes()) < MAX_METADATA_BYTES + 16_384
    (await gateway.audit.verify()).raise_if_invalid()


async def test_audited_arguments_are_capped_per_field_and_in_total(gateway: Gateway) -> None:
    """A 1 MB argument and 5,000 small ones: stored as size + hash + head, so export stays small."""
    with pytest.raises(GatewayError) as caught:
        await gateway.call("search_contracts", {"query": "A" * 1_000_000, "note": "short"})
    assert caught.value.code == ErrorCode.INPUT_INVALID_ARGUMENT
    event = (await gateway.audit.tail(1))[0].event
    arguments = event.metadata["arguments"]
    assert isinstance(arguments, dict)
    query = arguments["query"]
    assert isinstance(query, dict)
    assert query["capped"] is True and query["bytes"] == 1_000_002
    assert len(str(query["head"])) == 256
    assert arguments["note"] == "short"
    assert any(item.field_path == "metadata.arguments.query" for item in event.redactions)
    assert len(event.canonical_bytes()) < 4 * MAX_FIELD_BYTES

    many = {f"field_{index}": "v" * 100 for index in range(5000)}
    with pytest.raises(GatewayError) as refused:
        await gateway.call("search_contracts", many)
    assert refused.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
    event = (await gateway.audit.tail(1))[0].event
    assert len(event.canonical_bytes()) < MAX_METADATA_BYTES + 8192
    export = await gateway.audit.export(10)
    assert len(export.jsonl) < 4 * (MAX_METADATA_BYTES + 8192)
    (await gateway.audit.verify()).raise_if_invalid()


def test_redaction_trail_is_capped() -> None:
    from datetime import UTC, datetime

    metadata: dict[str, object] = {"arguments": {f"token_{index}": "x" for index in range(1000)}}
    event = AuditEvent(
        event_type="tool_failed",
        timestamp=datetime.now(UTC),
        principal_kind="local_agent",
        principal_subject="stdio",
        decision="allow",
        result_status="failed",
        metadata=metadata,  # type: ignore[arg-type]
    )
    cleaned = redact_event(event)
    assert len(cleaned.redactions) == MAX_REDACTIONS + 1
    assert cleaned.redactions[-1].reason == f"and {1000 - MAX_REDACTIONS} more"
    assert redact_event(cleaned) == cleaned  # idempotent: export re-applies it
