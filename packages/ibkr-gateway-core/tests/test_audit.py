"""The audit log: events, appends, tail, export and keyed hashes."""

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from dirty_equals import IsStr
from ibkr_gateway_core.audit.log import AuditEvent, AuditLog, canonical_json, new_event_id
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.redaction import REDACTED, Redaction
from ibkr_gateway_core.state import StateLocation, open_database, open_state
from pydantic import ValidationError

pytestmark = pytest.mark.anyio

KEY = b"k" * 32
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def make_event(number: int = 0, **fields: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "event_type": "tool_completed",
        "timestamp": T0 + timedelta(seconds=number),
        "principal_kind": "local_agent",
        "principal_subject": "agent-1",
        "scopes": ["ibkr:positions:read", "ibkr:accounts:read"],
        "operation": "list_positions",
        "tool_name": "ibkr_positions_list",
        "decision": "allow",
        "result_status": "completed",
        "metadata": {"n": number},
    }
    values.update(fields)
    return AuditEvent.model_validate(values)


@pytest.fixture
async def audit(state_location: StateLocation) -> AsyncIterator[AuditLog]:
    """An audit log on each state backend in turn (SQLite, PostgreSQL)."""
    log = AuditLog.open(state_location, KEY)
    try:
        yield log
    finally:
        log.close()


def test_event_ids_are_uuidv7_and_time_ordered() -> None:
    """RFC 9562 version 7: sortable by creation time, so ids double as a rough clock."""
    ids = [new_event_id() for _ in range(50)]
    parsed = [uuid.UUID(item) for item in ids]
    assert all(item.version == 7 and item.variant == uuid.RFC_4122 for item in parsed)
    assert all(len(item) == 36 for item in ids)
    assert len(set(ids)) == 50
    assert [item[:13] for item in ids] == sorted(item[:13] for item in ids)


def test_canonical_bytes_are_sorted_compact_utf8_with_microsecond_utc() -> None:
    """Equal events hash equally across runs and machines: the bytes are fixed by the data alone."""
    event = make_event(
        event_id="0190f3c4-0000-7000-8000-000000000001",
        timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        metadata={"z": 1, "a": "é"},
        scopes=["b", "a", "b"],
    )
    text = event.canonical_bytes().decode("utf-8")
    data = json.loads(text)
    assert data["timestamp"] == "2026-01-02T01:04:05.000000Z"
    assert data["scopes"] == ["a", "b"]
    assert list(data) == sorted(data)
    assert '"a":"é"' in text
    assert " " not in text
    assert AuditEvent.model_validate_json(text).canonical_bytes() == event.canonical_bytes()


def test_naive_timestamps_and_nan_durations_are_refused() -> None:
    """A timestamp without a zone, or a NaN, would make the canonical bytes ambiguous."""
    with pytest.raises(ValidationError):
        make_event(timestamp=datetime(2026, 1, 1))
    with pytest.raises(ValidationError):
        make_event(duration_ms=float("nan"))


def test_canonical_json_sorts_keys_and_renders_decimals_as_text() -> None:
    """Input and output hashes depend on the data, not on dict order or number formatting."""
    from decimal import Decimal

    assert canonical_json({"b": Decimal("1.50"), "a": [1, "x"]}) == '{"a":[1,"x"],"b":"1.50"}'


async def test_append_assigns_contiguous_sequences_and_chain_hashes(audit: AuditLog) -> None:
    """Each record gets the next sequence and a 64-hex chain hash."""
    with anyio.fail_after(5):
        records = [await audit.append(make_event(n)) for n in range(3)]
    assert [record.sequence for record in records] == [1, 2, 3]
    assert all(record.chain_hash == IsStr(regex=r"^[0-9a-f]{64}$") for record in records)
    assert len({record.chain_hash for record in records}) == 3


async def test_concurrent_appends_in_one_process_stay_one_linear_chain(audit: AuditLog) -> None:
    """The lock keeps the chain linear when many tasks append at once."""
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for n in range(40):
                group.start_soon(audit.append, make_event(n))
    report = await audit.verify()
    assert report.chain_valid, report.reason
    assert report.events_scanned == 40


async def test_append_redacts_metadata_and_secret_free_text_before_storing(audit: AuditLog) -> None:
    """Nothing secret reaches the database, and the trail says what was replaced (R33)."""
    event = make_event(
        metadata={"arguments": {"symbol": "AAPL", "auth": {"cookie": "sid=abc"}}, "note": "Bearer abcdefghijkl"},
        request_id="Bearer zyxwvutsrqpo",
        redactions=[Redaction(field_path="metadata.earlier", reason="sensitive key")],
    )
    record = await audit.append(event)
    assert record.event.metadata == {"arguments": {"symbol": "AAPL", "auth": {"cookie": REDACTED}}, "note": REDACTED}
    assert record.event.request_id == REDACTED
    assert [item.field_path for item in record.event.redactions] == [
        "metadata.earlier",
        "metadata.arguments.auth.cookie",
        "metadata.note",
        "request_id",
    ]
    db = open_state(audit.location)
    try:
        stored = "".join(str(row) for row in db.execute("SELECT * FROM audit_events").fetchall())
    finally:
        db.close()
    assert "AAPL" in stored  # the row is there: the test reads the database the log writes
    assert "sid=abc" not in stored and "abcdefghijkl" not in stored and "zyxwvutsrqpo" not in stored


async def test_long_free_text_is_cut_rather_than_refused() -> None:
    """An unknown tool name or request id from a caller must never stop the audit write."""
    event = make_event(tool_name="x" * 5000, request_id="r" * 300)
    assert event.tool_name == "x" * 256
    assert event.request_id == "r" * 256


async def test_append_after_close_is_a_clear_error(tmp_path: Path) -> None:
    """A closed log refuses with AUDIT_WRITE_FAILED instead of a sqlite traceback."""
    log = AuditLog.open(tmp_path / "state.sqlite3", KEY)
    log.close()
    with pytest.raises(GatewayError) as caught:
        await log.append(make_event())
    assert caught.value.code is ErrorCode.AUDIT_WRITE_FAILED


async def test_a_failed_write_leaves_nothing_behind(audit: AuditLog) -> None:
    """A duplicate event id fails the insert: AUDIT_WRITE_FAILED, and the chain is unchanged."""
    first = await audit.append(make_event(1))
    with pytest.raises(GatewayError) as caught:
        await audit.append(make_event(2, event_id=first.event.event_id))
    assert caught.value.code is ErrorCode.AUDIT_WRITE_FAILED
    second = await audit.append(make_event(3))
    assert second.sequence == 2
    assert (await audit.verify()).chain_valid


async def test_append_refuses_to_extend_a_log_chained_with_another_key(tmp_path: Path) -> None:
    """Mixing keys in one chain would make it unverifiable with either; the writer stops instead."""
    path = tmp_path / "state.sqlite3"
    first = AuditLog.open(path, KEY)
    await first.append(make_event())
    first.close()
    other = AuditLog.open(path, b"o" * 32)
    try:
        with pytest.raises(GatewayError) as caught:
            await other.append(make_event())
        assert caught.value.code is ErrorCode.AUDIT_WRITE_FAILED
        assert caught.value.retryable is False
    finally:
        other.close()


def test_a_short_key_is_a_config_error(tmp_path: Path) -> None:
    """The chain key must have at least 256 bits."""
    with pytest.raises(GatewayError) as caught:
        AuditLog.open(tmp_path / "state.sqlite3", b"short")
    assert caught.value.code is ErrorCode.CONFIG_INVALID


async def test_tail_returns_the_newest_events_newest_first(audit: AuditLog) -> None:
    """`audit tail --limit 3` shows the last three calls."""
    for n in range(10):
        await audit.append(make_event(n))
    records = await audit.tail(3)
    assert [record.sequence for record in records] == [10, 9, 8]
    assert [record.event.metadata for record in records] == [{"n": 9}, {"n": 8}, {"n": 7}]


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_tail_limit_outside_range_is_bad_input(audit: AuditLog, limit: int) -> None:
    """Bad input gets a code, not a silent clamp."""
    with pytest.raises(GatewayError) as caught:
        await audit.tail(limit)
    assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT


async def test_tail_reads_only_the_newest_rows(tmp_path: Path) -> None:
    """Tail never re-verifies or scans the chain: unreadable old rows do not affect it (inventory §11.11)."""
    path = tmp_path / "state.sqlite3"
    log = AuditLog.open(path, KEY)
    log._append_batch_sync(make_event(n) for n in range(5_000))  # pyright: ignore[reportPrivateUsage]
    with sqlite3.connect(path) as db:  # damage every old row behind the log's back
        db.execute("UPDATE audit_events SET payload = 'garbage' WHERE sequence <= 4990")
    db.close()
    try:
        records = await log.tail(10)
        assert [record.sequence for record in records] == list(range(5_000, 4_990, -1))
        with pytest.raises(GatewayError) as caught:
            await log.tail(11)
        assert caught.value.code is ErrorCode.AUDIT_CHAIN_INVALID
    finally:
        log.close()
    plan_db = open_database(path)
    try:
        plan = " ".join(
            str(row)
            for row in plan_db.execute(
                "EXPLAIN QUERY PLAN SELECT sequence, payload, chain_hash FROM audit_events"
                " ORDER BY sequence DESC LIMIT 10"
            )
        )
    finally:
        plan_db.close()
    assert "TEMP B-TREE" not in plan  # rows come straight off the primary key, newest first


async def test_export_is_redacted_jsonl_oldest_first_with_its_sha256(audit: AuditLog) -> None:
    """`audit export --limit 2`: one line per record, the digest of exactly that text."""
    import hashlib

    for n in range(4):
        await audit.append(make_event(n, metadata={"n": n, "token": "abc"}))
    export = await audit.export(2)
    lines = [json.loads(line) for line in export.jsonl.splitlines()]
    assert [line["sequence"] for line in lines] == [3, 4]
    assert set(lines[0]) == {"sequence", "event", "chain_hash"}
    assert lines[0]["event"]["metadata"] == {"n": 2, "token": REDACTED}
    assert export.sha256 == hashlib.sha256(export.jsonl.encode("utf-8")).hexdigest()
    assert (export.count, export.first_sequence, export.last_sequence) == (2, 3, 4)
    assert export.jsonl.endswith("\n")


async def test_export_refuses_output_with_a_secret_marker(audit: AuditLog) -> None:
    """The last guard: text that would still carry a marker is withheld with OUTPUT_UNSAFE."""
    await audit.append(make_event(scopes=["ibkr:refresh_token"]))
    with pytest.raises(GatewayError) as caught:
        await audit.export(10)
    assert caught.value.code is ErrorCode.OUTPUT_UNSAFE
    assert caught.value.details["markers"] == ["refresh_token"]


async def test_a_streamed_export_refuses_a_secret_marker_too(audit: AuditLog) -> None:
    """Streaming changes when the text is written, never what is withheld: nothing comes out at all."""
    await audit.append(make_event(1))
    await audit.append(make_event(2, scopes=["ibkr:refresh_token"]))
    with pytest.raises(GatewayError) as caught:
        await audit.export_stream(10)
    assert caught.value.code is ErrorCode.OUTPUT_UNSAFE
    assert caught.value.details["markers"] == ["refresh_token"]


async def test_export_of_an_empty_log_is_empty(audit: AuditLog) -> None:
    """No events: empty text, the digest of the empty string; streamed alike."""
    export = await audit.export(5)
    assert (export.jsonl, export.count) == ("", 0)
    assert export.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    with await audit.export_stream(5) as stream:
        assert (list(stream.lines()), stream.count, stream.first_sequence) == ([], 0, None)
        assert stream.sha256 == export.sha256
        assert stream.output_hash == audit.hash_payload(export)


def test_account_hashes_are_keyed_stable_and_never_the_raw_id(tmp_path: Path) -> None:
    """Raw account ids never reach the log; the same account always maps to the same hash under one key."""
    one = AuditLog.open(tmp_path / "a.sqlite3", KEY)
    two = AuditLog.open(tmp_path / "b.sqlite3", b"z" * 32)
    try:
        digest = one.account_hash("DU1234567")
        assert digest == IsStr(regex=r"^[0-9a-f]{64}$")
        assert digest == one.account_hash("DU1234567")
        assert digest != one.account_hash("DU7654321")
        assert digest != two.account_hash("DU1234567")
        assert "DU1234567" not in digest
        assert one.hash_payload({"account_id": "DU1234567"}) != two.hash_payload({"account_id": "DU1234567"})
        assert one.hash_payload({"b": 1, "a": 2}) == one.hash_payload({"a": 2, "b": 1})
        assert one.token_id_hash("jti-1") not in (one.account_hash("jti-1"), one.hash_payload("jti-1"))
    finally:
        one.close()
        two.close()


async def test_concurrent_appends_share_commits_and_keep_one_linear_chain(state_location: StateLocation) -> None:
    """Group commit: 200 concurrent callers each get their own durable record, in one valid chain."""
    log = AuditLog.open(state_location, b"g" * 32)
    records: list[int] = []

    async def one(i: int) -> None:
        event = AuditEvent(
            event_type="tool_completed",
            timestamp=datetime.now(UTC),
            principal_kind="local_agent",
            principal_subject=f"agent-{i}",
            scopes=[],
            decision="allow",
            result_status="completed",
        )
        record = await log.append(event)
        assert record.event.event_id == event.event_id
        records.append(record.sequence)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
    assert sorted(records) == list(range(1, 201))
    report = await log.verify()
    assert report.chain_valid and report.events_scanned == 200
    log.close()


async def test_a_failed_group_commit_fails_every_waiter_and_writes_nothing(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path / "closed.sqlite3", b"g" * 32)
    log.close()
    failures: list[ErrorCode] = []

    async def one() -> None:
        event = AuditEvent(
            event_type="tool_completed",
            timestamp=datetime.now(UTC),
            principal_kind="local_agent",
            principal_subject="agent",
            scopes=[],
            decision="allow",
            result_status="completed",
        )
        try:
            await log.append(event)
        except GatewayError as exc:
            failures.append(exc.code)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
    assert failures == [ErrorCode.AUDIT_WRITE_FAILED] * 10
