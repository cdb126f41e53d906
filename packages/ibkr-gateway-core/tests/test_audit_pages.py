"""`audit verify` and `audit export` read the chain in keyset pages, never the whole table at once, on
SQLite and on PostgreSQL (whose driver would otherwise pull a whole result into memory)."""

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from ibkr_gateway_core.audit import AuditEvent, AuditLog
from ibkr_gateway_core.state import StateLocation, open_state, write_transaction

KEY = b"p" * 32
PAGE = 50
EVENTS = 2 * PAGE + 20
"""A chain of three pages, the last one short."""


def _event(n: int) -> AuditEvent:
    return AuditEvent(
        event_type="tool_completed",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        principal_kind="local_agent",
        principal_subject=f"writer-{n}",
        scopes=[],
        decision="allow",
        result_status="completed",
        metadata={"n": n},
    )


@pytest.fixture
def paged(state_location: StateLocation, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AuditLog, list[int]]]:
    """A log of `EVENTS` events read in pages of `PAGE` rows; the list gets the size of every page read."""
    log = AuditLog.open(state_location, KEY)
    log._append_batch_sync(_event(n) for n in range(EVENTS))
    log.page_rows = PAGE
    sizes: list[int] = []
    pages = AuditLog._pages

    def spy(self: AuditLog, db: object, *, after: int = 0) -> Iterator[list[tuple[object, ...]]]:
        for page in pages(self, db, after=after):  # type: ignore[arg-type]
            sizes.append(len(page))
            yield page

    monkeypatch.setattr(AuditLog, "_pages", spy)
    yield log, sizes
    log.close()


def test_verify_walks_a_chain_longer_than_a_page_one_page_at_a_time(paged: tuple[AuditLog, list[int]]) -> None:
    log, sizes = paged
    progress: list[tuple[int, int]] = []
    report = log.verify_sync(progress=lambda done, total: progress.append((done, total)))
    assert report.chain_valid and report.events_scanned == EVENTS and report.head_sequence == EVENTS
    assert sizes == [PAGE, PAGE, EVENTS - 2 * PAGE]
    assert progress == [(PAGE, EVENTS), (2 * PAGE, EVENTS), (EVENTS, EVENTS)]


def test_a_break_in_a_later_page_is_found_at_its_sequence(
    paged: tuple[AuditLog, list[int]], state_location: StateLocation
) -> None:
    log, sizes = paged
    db = open_state(state_location)
    try:
        with write_transaction(db, "audit") as tx:
            tx.execute(
                "UPDATE audit_events SET payload = replace(payload, 'writer-74', 'writer-X') WHERE sequence = 75"
            )
    finally:
        db.close()
    report = log.verify_sync()
    assert (report.chain_valid, report.first_break_sequence, report.head_sequence) == (False, 75, 74)
    assert sizes == [PAGE, PAGE]  # it stops at the break: the third page is never read


def test_a_row_missing_at_a_page_boundary_is_found(
    paged: tuple[AuditLog, list[int]], state_location: StateLocation
) -> None:
    log, _ = paged
    db = open_state(state_location)
    try:
        with write_transaction(db, "audit") as tx:
            tx.execute("DELETE FROM audit_events WHERE sequence = ?", (PAGE + 1,))
    finally:
        db.close()
    report = log.verify_sync()
    assert (report.chain_valid, report.first_break_sequence) == (False, PAGE + 1)


@pytest.mark.anyio
async def test_export_renders_the_newest_rows_page_by_page(paged: tuple[AuditLog, list[int]]) -> None:
    log, sizes = paged
    export = await log.export(EVENTS - 15)
    assert sizes == [PAGE, PAGE, EVENTS - 15 - 2 * PAGE]
    lines = export.jsonl.splitlines()
    sequences = [json.loads(line)["sequence"] for line in lines]
    assert sequences == list(range(16, EVENTS + 1))
    assert (export.count, export.first_sequence, export.last_sequence) == (EVENTS - 15, 16, EVENTS)
    assert export.sha256 == hashlib.sha256(export.jsonl.encode("utf-8")).hexdigest()
    assert [json.loads(line)["event"]["principal_subject"] for line in lines[:2]] == ["writer-15", "writer-16"]
    whole = await log.export(1000)
    assert whole.count == EVENTS and whole.jsonl.endswith(export.jsonl)


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [1, PAGE, EVENTS - 15, EVENTS, 1000])
async def test_a_streamed_export_is_the_export_line_for_line(paged: tuple[AuditLog, list[int]], limit: int) -> None:
    """`export_stream` (the CLI's) gives the bytes, digest, counts and audit output hash of `export` (MCP's)."""
    log, sizes = paged
    whole = await log.export(limit)
    del sizes[:]
    with await log.export_stream(limit) as stream:
        assert "".join(stream.lines()) == whole.jsonl
        assert "".join(stream.lines()) == whole.jsonl  # read again from the start
        assert (stream.sha256, stream.count, stream.first_sequence, stream.last_sequence) == (
            whole.sha256,
            whole.count,
            whole.first_sequence,
            whole.last_sequence,
        )
        assert stream.output_hash == log.hash_payload(whole)
    assert len(sizes) == -(-min(limit, EVENTS) // PAGE)  # still page by page


@pytest.mark.anyio
async def test_a_streamed_export_spills_to_a_temporary_file_past_its_memory_share(
    paged: tuple[AuditLog, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ibkr_gateway_core.audit import log as log_module

    log, _ = paged
    monkeypatch.setattr(log_module, "EXPORT_SPOOL_BYTES", 4_096)
    whole = await log.export(EVENTS)
    assert len(whole.jsonl.encode("utf-8")) > 4 * 4_096
    with await log.export_stream(EVENTS) as stream:
        assert stream._spool._rolled  # type: ignore[attr-defined]  # on disk, not in memory
        assert "".join(stream.lines()) == whole.jsonl
