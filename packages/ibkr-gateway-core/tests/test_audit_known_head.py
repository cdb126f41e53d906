"""An append chains on the head its log wrote last and inserts only if that is still the head (one round trip
on PostgreSQL); when another writer moved the head, or it was removed, nothing is inserted and the events are
chained on the head read under the lock. On SQLite and on PostgreSQL."""

import threading
import time
from datetime import UTC, datetime

import pytest
from ibkr_gateway_core._timestamps import format_timestamp
from ibkr_gateway_core.audit import AuditEvent, AuditLog, AuditRecord
from ibkr_gateway_core.audit.events import redact_event
from ibkr_gateway_core.audit.log import (  # pyright: ignore[reportPrivateUsage]
    _APPEND_AFTER_JSON_SQL,
    _HEAD_SQL,
    _INSERT_SQL,
    _render_one,
)
from ibkr_gateway_core.state import PostgresLocation, StateConnection, StateLocation, open_state, write_transaction

KEY = b"k" * 32


def _event(subject: str) -> AuditEvent:
    return AuditEvent(
        event_type="tool_completed",
        timestamp=datetime.now(UTC),
        principal_kind="local_agent",
        principal_subject=subject,
        scopes=[],
        decision="allow",
        result_status="completed",
    )


@pytest.fixture
def head_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The subject of each group append that read the head under the lock (instead of using the known one)."""
    reads: list[str] = []
    read = AuditLog._head_for_append  # pyright: ignore[reportPrivateUsage]

    def counted(self: AuditLog, db: object) -> tuple[int, bytes]:
        reads.append(self.key_id)
        return read(self, db)  # pyright: ignore[reportArgumentType]

    monkeypatch.setattr(AuditLog, "_head_for_append", counted)
    return reads


def test_a_log_alone_reads_the_head_once_and_then_chains_on_what_it_wrote(
    state_location: StateLocation, head_reads: list[str]
) -> None:
    log = AuditLog.open(state_location, KEY)
    try:
        sequences = [log.append_sync(_event("alone")).sequence for _ in range(6)]
        assert sequences == [1, 2, 3, 4, 5, 6]
        assert len(head_reads) == 1  # the first append only
        assert log.verify_sync().events_scanned == 6
    finally:
        log.close()


def test_two_logs_taking_turns_never_fork_the_chain_and_fall_back_to_reading_the_head(
    state_location: StateLocation, head_reads: list[str]
) -> None:
    first, second = AuditLog.open(state_location, KEY), AuditLog.open(state_location, KEY)
    try:
        assert [first.append_sync(_event("first")).sequence for _ in range(3)] == [1, 2, 3]
        assert len(head_reads) == 1
        assert second.append_sync(_event("second")).sequence == 4  # reads the head: a new log
        assert len(head_reads) == 2
        # `first` still believes 3 is the head: its conditional insert inserts nothing, then it reads the head.
        assert first.append_sync(_event("first")).sequence == 5
        assert len(head_reads) == 3
        # Someone else wrote since: `first` reads the head once more before trusting what it wrote again.
        assert first.append_sync(_event("first")).sequence == 6
        assert len(head_reads) == 4
        assert [first.append_sync(_event("first")).sequence for _ in range(3)] == [7, 8, 9]
        assert len(head_reads) == 4
        for number in range(10, 16):  # taking turns: every append reads the head
            writer = first if number % 2 else second
            assert writer.append_sync(_event("turns")).sequence == number
        report = first.verify_sync()
        assert report.chain_valid and report.events_scanned == 15
    finally:
        first.close()
        second.close()


def test_a_removed_head_is_not_chained_on(state_location: StateLocation, head_reads: list[str]) -> None:
    """An older copy restored under a running log (its newest rows gone): the log continues from the real head."""
    log = AuditLog.open(state_location, KEY)
    try:
        for _ in range(4):
            log.append_sync(_event("restored"))
        db = open_state(state_location)
        try:
            with write_transaction(db, "audit"):
                db.execute("DELETE FROM audit_events WHERE sequence > ?", (2,))
        finally:
            db.close()
        reads = len(head_reads)
        assert log.append_sync(_event("restored")).sequence == 3
        assert len(head_reads) == reads + 1
        report = log.verify_sync()
        assert report.chain_valid and report.events_scanned == 3
    finally:
        log.close()


def test_a_rewritten_head_is_not_chained_on(state_location: StateLocation, head_reads: list[str]) -> None:
    """A head row whose hash changed behind the log's back: the conditional insert does not trust it."""
    log = AuditLog.open(state_location, KEY)
    try:
        for _ in range(2):
            log.append_sync(_event("rewritten"))
        db = open_state(state_location)
        try:
            with write_transaction(db, "audit"):
                db.execute("UPDATE audit_events SET chain_hash = ? WHERE sequence = ?", ("0" * 64, 2))
        finally:
            db.close()
        assert log.append_sync(_event("rewritten")).sequence == 3
        assert len(head_reads) == 2  # the known head no longer matched: read under the lock
        report = log.verify_sync()
        assert not report.chain_valid and report.first_break_sequence == 2  # the edit shows; nothing hides it
    finally:
        log.close()


def test_a_row_committed_while_the_append_waited_for_the_lock_is_not_overwritten_or_forked(
    state_location: StateLocation, head_reads: list[str]
) -> None:
    """Another writer holds the lock and appends while this log's conditional insert waits for it (on
    PostgreSQL that statement's snapshot predates the lock): nothing is inserted on the stale head; the
    events follow the other writer's row and the chain verifies."""
    log, other = AuditLog.open(state_location, KEY), AuditLog.open(state_location, KEY)
    holder = open_state(state_location)
    watcher = open_state(state_location)
    try:
        for _ in range(2):
            log.append_sync(_event("waiting"))
        result: list[AuditRecord] = []
        with write_transaction(holder, "audit"):
            sequence, _key_id, chain_hash = holder.execute(_HEAD_SQL).fetchone()  # the lock is held from here
            waiting = threading.Thread(target=lambda: result.append(log.append_sync(_event("waiting"))))
            waiting.start()
            _wait_until_blocked(watcher, state_location)
            event = redact_event(_event("other"))
            rendered = [(event, event.canonical_bytes().decode("utf-8"), format_timestamp(event.timestamp))]
            rows = other._chain(rendered, (sequence, bytes.fromhex(chain_hash)))  # pyright: ignore[reportPrivateUsage]
            holder.executemany(_INSERT_SQL, rows)
        waiting.join(timeout=60)
        assert [record.sequence for record in result] == [4]  # after the other writer's row 3
        assert len(head_reads) == 2  # its first append, and this one after the conditional insert did nothing
        report = log.verify_sync()
        assert report.chain_valid and report.events_scanned == 4
    finally:
        holder.close()
        watcher.close()
        log.close()
        other.close()


def _wait_until_blocked(watcher: StateConnection, location: StateLocation) -> None:
    """Until the append waits for the audit lock (PostgreSQL shows it in pg_locks; SQLite cannot: a pause)."""
    if not isinstance(location, PostgresLocation):
        time.sleep(0.3)
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = watcher.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()
        if row is not None and row[0] >= 1:
            return
        time.sleep(0.01)
    raise AssertionError("the append never waited for the lock")


def test_a_group_on_the_known_head_stores_every_payload_byte_for_byte(
    state_location: StateLocation, head_reads: list[str]
) -> None:
    """Quotes, backslashes, escaped control characters and non-ASCII text travel through the conditional insert
    (one JSON parameter on PostgreSQL) unchanged, in a group larger than a statement of one value per parameter
    could cache, and the chain verifies."""
    log = AuditLog.open(state_location, KEY)
    awkward = ['"quoted"', "back\\slash", "tab\tnew\nline\x00nul", "é中🙂", "{}[],:", "\\u0000", "'; DROP", "ok"]
    try:
        log.append_sync(_event("first"))  # the log now knows the head
        events = [_event(text) for text in awkward * 2]  # 16 rows, 115 values
        records = log._append_group_sync([_render_one(e) for e in events])  # pyright: ignore[reportPrivateUsage]
        assert [r.sequence for r in records] == list(range(2, 2 + len(events)))
        assert len(head_reads) == 1  # the group went through the conditional insert, not the locked fallback
        tail = {r.sequence: r for r in log._tail_sync(len(events))}  # pyright: ignore[reportPrivateUsage]
        for record in records:
            assert tail[record.sequence].event == record.event
            assert tail[record.sequence].chain_hash == record.chain_hash
        assert log.verify_sync().events_scanned == 1 + len(events)
    finally:
        log.close()


def test_the_known_head_check_reads_the_end_of_the_index_however_long_the_chain(postgres_dsn: str) -> None:
    """On PostgreSQL the conditional insert finds "nothing after the head" from the primary key's index, with
    the plan a prepared statement reuses (generic) and a fresh one (custom) alike. Asked as `NOT EXISTS (...
    sequence > ?)` it was planned as a scan of the whole table on a chain without statistics yet: each append
    read every row (0.5 ms per append at 5,000 rows, 2 ms at 20,000)."""
    import psycopg
    from psycopg import sql

    log = AuditLog.open(PostgresLocation(postgres_dsn), KEY)
    try:
        log._append_batch_sync(_event(f"s{i}") for i in range(2000))  # pyright: ignore[reportPrivateUsage]
        head = log.append_sync(_event("head"))
    finally:
        log.close()
    parts = _APPEND_AFTER_JSON_SQL.replace("{held}", "(SELECT 1 OFFSET 0) AS held").split("?")
    prepared = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"PREPARE append_after (json, bigint, text, bigint) AS {prepared}")  # pyright: ignore[reportArgumentType]
        for mode in ("force_custom_plan", "force_generic_plan"):
            conn.execute(f"SET plan_cache_mode = {mode}")  # pyright: ignore[reportArgumentType]
            with conn.transaction(force_rollback=True):
                explain = sql.SQL("EXPLAIN (ANALYZE, COSTS OFF) EXECUTE append_after ('[]', {}, {}, {})").format(
                    head.sequence, head.chain_hash, head.sequence
                )
                plan = conn.execute(explain).fetchall()
            text = "\n".join(row[0] for row in plan)
            assert "Seq Scan on audit_events" not in text, text
            assert "Index" in text, text
