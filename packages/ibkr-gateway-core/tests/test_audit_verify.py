"""`audit verify`: every tamper case of the test plan (R28, R29) is found, and only those."""

import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ibkr_gateway_core.audit import AuditEvent, AuditLog, Checkpoint, VerifyReport
from ibkr_gateway_core.errors import ErrorCode, GatewayError

pytestmark = pytest.mark.anyio

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
EVENTS = 40
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
COLUMNS = ("sequence", "key_id", "event_id", "event_type", "timestamp", "payload", "chain_hash")

Row = list[Any]


def make_event(number: int) -> AuditEvent:
    return AuditEvent(
        event_type="tool_completed" if number % 3 else "tool_refused",
        timestamp=T0 + timedelta(seconds=number),
        principal_kind="local_agent",
        principal_subject="agent-1",
        scopes=["ibkr:accounts:read"],
        decision="allow" if number % 3 else "refuse",
        result_status="completed" if number % 3 else "refused",
        error_code=None if number % 3 else "ORDER_NOTIONAL_LIMIT_REFUSED",
        metadata={"n": number},
    )


def build_log(path: Path, count: int = EVENTS, key: bytes = KEY) -> None:
    log = AuditLog.open(path, key)
    try:
        for number in range(count):
            log.append_sync(make_event(number))
    finally:
        log.close()


def verify(path: Path, key: bytes = KEY, **options: Any) -> VerifyReport:
    log = AuditLog.open(path, key)
    try:
        return log.verify_sync(**options)
    finally:
        log.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "state.sqlite3"
    build_log(path)
    return path


@pytest.fixture
def copy(pristine: Path, tmp_path: Path) -> Path:
    target = tmp_path / "state.sqlite3"
    shutil.copyfile(pristine, target)
    return target


def rewrite(path: Path, change: Callable[[list[Row]], list[Row]]) -> None:
    """Replace the table's rows behind the log's back, without constraints (a determined attacker)."""
    db = sqlite3.connect(path)
    try:
        rows = [list(row) for row in db.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_events ORDER BY sequence")]
        db.execute("DROP TABLE audit_events")
        db.execute(f"CREATE TABLE audit_events ({', '.join(COLUMNS)})")
        db.executemany(f"INSERT INTO audit_events VALUES ({', '.join('?' * len(COLUMNS))})", change(rows))
        db.commit()
    finally:
        db.close()


def execute(path: Path, sql: str, *params: object) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute(sql, params)
        db.commit()
    finally:
        db.close()


def flip_last_char(value: Any) -> Any:
    if isinstance(value, int):
        return value + 1000
    text = str(value)
    return text[:-1] + ("0" if text[-1] != "0" else "1")


def test_an_untampered_log_verifies_and_verifying_is_repeatable(copy: Path) -> None:
    """No false alarms; two runs give the same report (R27)."""
    first, second = verify(copy), verify(copy)
    assert first == second
    assert first.chain_valid and first.reason is None
    assert (first.events_scanned, first.head_sequence, first.first_break_sequence) == (EVENTS, EVENTS, None)


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    """A fresh database is a valid empty chain."""
    report = verify(tmp_path / "state.sqlite3")
    assert report.chain_valid and report.events_scanned == 0


@pytest.mark.parametrize("column", COLUMNS)
def test_a_modified_column_breaks_the_chain_at_that_row(copy: Path, column: str) -> None:
    """Every stored column is under the MAC, the sequence included (R28.1, R28.9)."""
    index = COLUMNS.index(column)
    rewrite(
        copy,
        lambda rows: [*rows[:9], [*rows[9][:index], flip_last_char(rows[9][index]), *rows[9][index + 1 :]], *rows[10:]],
    )
    report = verify(copy)
    assert not report.chain_valid
    assert report.first_break_sequence == 10
    assert report.head_sequence == 9


def test_a_one_byte_edit_inside_the_payload_is_found(copy: Path) -> None:
    """Editing the stored JSON (say, a decision) breaks the MAC of that row."""
    execute(copy, "UPDATE audit_events SET payload = replace(payload, '\"refuse\"', '\"allow\"') WHERE sequence = 4")
    report = verify(copy)
    assert (report.chain_valid, report.first_break_sequence) == (False, 4)
    assert report.reason is not None and "chain hash" in report.reason


def test_a_deleted_middle_row_is_found(copy: Path) -> None:
    """The sequence is chained, so a gap cannot hide (R28.2)."""
    execute(copy, "DELETE FROM audit_events WHERE sequence = 20")
    report = verify(copy)
    assert (report.chain_valid, report.first_break_sequence) == (False, 20)
    assert report.reason is not None and "expected sequence 20" in report.reason


def test_a_deleted_and_renumbered_row_is_found(copy: Path) -> None:
    """Closing the gap by renumbering breaks the MACs of every later row (R28.3)."""
    rewrite(copy, lambda rows: [*rows[:19], *[[row[0] - 1, *row[1:]] for row in rows[20:]]])
    assert verify(copy).first_break_sequence == 20


def test_two_swapped_rows_are_found(copy: Path) -> None:
    """Reordering events, sequence numbers kept, breaks at the first swapped row (R28.4)."""
    rewrite(copy, lambda rows: [*rows[:14], [15, *rows[15][1:]], [16, *rows[14][1:]], *rows[16:]])
    report = verify(copy)
    assert (report.chain_valid, report.first_break_sequence) == (False, 15)
    assert report.first_break_event_id is not None


def test_an_inserted_forged_row_is_found(copy: Path) -> None:
    """Without the key nobody can compute a valid chain hash for a new row (R28.5)."""

    def insert(rows: list[Row]) -> list[Row]:
        forged = [25, *rows[24][1:6], "0" * 64]
        forged[2] = "0190f3c4-0000-7000-8000-00000000f00d"
        return [*rows[:24], forged, *[[row[0] + 1, *row[1:]] for row in rows[24:]]]

    rewrite(copy, insert)
    report = verify(copy)
    assert (report.chain_valid, report.first_break_sequence) == (False, 25)
    assert report.first_break_event_id == "0190f3c4-0000-7000-8000-00000000f00d"


def test_a_forged_row_appended_at_the_end_is_found(copy: Path) -> None:
    """Appending a copy of an old row under a new sequence fails: the sequence is MAC'd."""
    rewrite(copy, lambda rows: [*rows, [EVENTS + 1, *rows[5][1:]]])
    assert verify(copy).first_break_sequence == EVENTS + 1


def test_a_duplicated_row_is_found(copy: Path) -> None:
    """Two rows with one sequence can only exist without the UNIQUE key; verify still sees it (R28.6)."""
    rewrite(copy, lambda rows: [*rows[:30], rows[29], *rows[30:]])
    report = verify(copy)
    assert (report.chain_valid, report.first_break_sequence) == (False, 31)


@pytest.mark.parametrize("value", [None, "", "0" * 64, "é" * 64, 42, b"\x00" * 32])
def test_a_nulled_or_garbage_mac_is_found_without_crashing(copy: Path, value: object) -> None:
    """Unexpected types or text where the MAC should be are a break, never a crash (R28.7, R46)."""
    rewrite(copy, lambda rows: [*rows[:11], [*rows[11][:6], value], *rows[12:]])
    report = verify(copy)
    assert (report.chain_valid, report.first_break_sequence) == (False, 12)


@pytest.mark.parametrize(
    ("column", "value", "breaks_at"),
    [
        pytest.param("sequence", "12", 12, id="text-sequence-sorts-last"),
        pytest.param("sequence", None, 1, id="null-sequence-sorts-first"),
        pytest.param("payload", b"{}", 12, id="blob-payload"),
        pytest.param("timestamp", 0, 12, id="integer-timestamp"),
        pytest.param("event_id", None, 12, id="null-event-id"),
    ],
)
def test_malformed_columns_are_a_break_not_a_crash(copy: Path, column: str, value: object, breaks_at: int) -> None:
    """The verifier reads hostile bytes: wrong types are reported where they sort, never a crash (R46)."""
    index = COLUMNS.index(column)
    rewrite(copy, lambda rows: [*rows[:11], [*rows[11][:index], value, *rows[11][index + 1 :]], *rows[12:]])
    report = verify(copy)
    assert (report.chain_valid, report.first_break_sequence) == (False, breaks_at)


def test_verifying_with_the_wrong_key_fails_at_the_first_row(copy: Path) -> None:
    """A log checked with another key is not trusted (R28.8)."""
    report = verify(copy, key=OTHER_KEY)
    assert (report.chain_valid, report.first_break_sequence) == (False, 1)
    assert report.reason is not None and "different key" in report.reason


def test_a_chain_rewritten_with_another_key_is_found_even_with_our_key_id(copy: Path, tmp_path: Path) -> None:
    """An attacker who re-chains everything with their own key and copies our key id still fails the MAC."""
    forged = tmp_path / "forged.sqlite3"
    build_log(forged, key=OTHER_KEY)
    db = sqlite3.connect(copy)
    try:
        our_key_id = db.execute("SELECT key_id FROM audit_events LIMIT 1").fetchone()[0]
    finally:
        db.close()
    execute(forged, "UPDATE audit_events SET key_id = ?", our_key_id)
    report = verify(forged)
    assert (report.chain_valid, report.first_break_sequence) == (False, 1)
    assert report.reason is not None and "chain hash" in report.reason


def test_raise_if_invalid_names_the_first_broken_sequence(copy: Path) -> None:
    """Surfaces turn a broken chain into AUDIT_CHAIN_INVALID with the sequence and event id (exit 2)."""
    execute(copy, "DELETE FROM audit_events WHERE sequence = 7")
    report = verify(copy)
    with pytest.raises(GatewayError) as caught:
        report.raise_if_invalid()
    assert caught.value.code is ErrorCode.AUDIT_CHAIN_INVALID
    assert caught.value.details["first_break_sequence"] == 7
    assert caught.value.details["event_id"] == report.first_break_event_id
    verify(copy.parent / "fresh.sqlite3").raise_if_invalid()


# ------------------------------------------------------------------ checkpoints (R29)


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def take_checkpoint(path: Path, key: Ed25519PrivateKey) -> Checkpoint:
    log = AuditLog.open(path, KEY)
    try:
        return log.checkpoint_sync(key)
    finally:
        log.close()


def test_a_truncated_tail_passes_without_a_checkpoint_and_fails_with_one(
    copy: Path, signing_key: Ed25519PrivateKey
) -> None:
    """Cutting the newest rows leaves a valid chain; only the signed head reveals it (R28.10)."""
    checkpoint = take_checkpoint(copy, signing_key)
    execute(copy, "DELETE FROM audit_events WHERE sequence > ?", EVENTS - 5)
    assert verify(copy).chain_valid  # the documented limitation of a chain alone
    report = verify(copy, checkpoint=checkpoint, checkpoint_key=signing_key.public_key())
    assert not report.chain_valid and report.checkpoint_checked
    assert report.reason is not None and "truncated" in report.reason
    assert report.first_break_sequence == EVENTS - 4


def test_a_rollback_to_an_older_copy_is_found_with_a_checkpoint(tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    """Restoring yesterday's file loses today's events; the checkpoint proves they existed (R28.11)."""
    live, old = tmp_path / "live.sqlite3", tmp_path / "old.sqlite3"
    build_log(live, count=20)
    shutil.copyfile(live, old)
    log = AuditLog.open(live, KEY)
    for number in range(20, 30):
        log.append_sync(make_event(number))
    log.close()
    checkpoint = take_checkpoint(live, signing_key)
    assert verify(live, checkpoint=checkpoint, checkpoint_key=signing_key.public_key()).chain_valid
    assert verify(old).chain_valid
    report = verify(old, checkpoint=checkpoint, checkpoint_key=signing_key.public_key())
    assert not report.chain_valid and report.reason is not None and "truncated or rolled back" in report.reason


def test_a_rollback_followed_by_new_appends_is_found_at_the_checkpoint(
    tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    """Rolled back and written past the checkpoint: the head at the checkpoint's sequence differs."""
    live, old = tmp_path / "live.sqlite3", tmp_path / "old.sqlite3"
    build_log(live, count=10)
    shutil.copyfile(live, old)
    log = AuditLog.open(live, KEY)
    log.append_sync(make_event(100))
    log.close()
    checkpoint = take_checkpoint(live, signing_key)
    log = AuditLog.open(old, KEY)
    for number in range(200, 205):
        log.append_sync(make_event(number))
    log.close()
    report = verify(old, checkpoint=checkpoint, checkpoint_key=signing_key.public_key())
    assert (report.chain_valid, report.first_break_sequence) == (False, 11)
    assert report.reason is not None and "checkpoint" in report.reason


@pytest.mark.parametrize(
    "update",
    [
        pytest.param({"sequence": EVENTS - 5}, id="edited-sequence"),
        pytest.param({"chain_hash": "0" * 64}, id="edited-hash"),
        pytest.param({"signature": "AAAA"}, id="garbage-signature"),
    ],
)
def test_a_forged_checkpoint_is_refused(copy: Path, signing_key: Ed25519PrivateKey, update: dict[str, object]) -> None:
    """A checkpoint changed after signing proves nothing (R29)."""
    checkpoint = take_checkpoint(copy, signing_key).model_copy(update=update)
    report = verify(copy, checkpoint=checkpoint, checkpoint_key=signing_key.public_key())
    assert not report.chain_valid
    assert report.reason is not None and "signature" in report.reason


def test_a_checkpoint_signed_by_another_key_is_refused(copy: Path, signing_key: Ed25519PrivateKey) -> None:
    """An insider with the HMAC key but not the signing key cannot vouch for a rewritten log."""
    checkpoint = take_checkpoint(copy, Ed25519PrivateKey.generate())
    report = verify(copy, checkpoint=checkpoint, checkpoint_key=signing_key.public_key())
    assert not report.chain_valid and report.reason is not None and "signature" in report.reason


def test_checkpoint_round_trips_through_its_file(copy: Path, signing_key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """`audit checkpoint > FILE` then `audit verify --checkpoint FILE`."""
    checkpoint = take_checkpoint(copy, signing_key)
    file = tmp_path / "head.json"
    checkpoint.save(file)
    loaded = Checkpoint.load(file)
    assert loaded == checkpoint
    assert loaded.sequence == EVENTS and loaded.is_signed_by(signing_key.public_key())
    assert verify(copy, checkpoint=loaded, checkpoint_key=signing_key.public_key()).chain_valid


def test_an_unreadable_checkpoint_file_is_bad_input(tmp_path: Path) -> None:
    """A wrong file gets a code, not a traceback."""
    file = tmp_path / "head.json"
    file.write_text("{not json", encoding="utf-8")
    with pytest.raises(GatewayError) as caught:
        Checkpoint.load(file)
    assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
    with pytest.raises(GatewayError) as missing:
        Checkpoint.load(tmp_path / "missing.json")
    assert missing.value.code is ErrorCode.INPUT_INVALID_ARGUMENT


def test_a_checkpoint_needs_its_public_key(copy: Path, signing_key: Ed25519PrivateKey) -> None:
    """A checkpoint checked against the key it carries would accept any forger's key."""
    checkpoint = take_checkpoint(copy, signing_key)
    with pytest.raises(GatewayError) as caught:
        verify(copy, checkpoint=checkpoint)
    assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT


async def test_async_verify_reports_progress(copy: Path) -> None:
    """Large logs show progress on a terminal: the callback sees rows checked and rows expected."""
    seen: list[tuple[int, int]] = []
    log = AuditLog.open(copy, KEY)
    try:
        report = await log.verify(progress=lambda done, total: seen.append((done, total)))
    finally:
        log.close()
    assert report.chain_valid
    assert seen[-1] == (EVENTS, EVENTS)


def test_a_checkpoint_of_an_empty_log_verifies_and_later_growth_is_fine(
    tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    """Checkpoints only pin the past: an empty-log checkpoint holds for any later, longer log."""
    path = tmp_path / "state.sqlite3"
    checkpoint = take_checkpoint(path, signing_key)
    assert (checkpoint.sequence, checkpoint.chain_hash) == (0, "0" * 64)
    build_log(path, count=3)
    report = verify(path, checkpoint=checkpoint, checkpoint_key=signing_key.public_key())
    assert report.chain_valid and report.checkpoint_checked


def test_checkpointing_a_damaged_head_is_refused(copy: Path, signing_key: Ed25519PrivateKey) -> None:
    """Signing garbage would bless it: a damaged newest row stops the checkpoint with AUDIT_CHAIN_INVALID."""
    execute(copy, "UPDATE audit_events SET chain_hash = 'nope' WHERE sequence = ?", EVENTS)
    with pytest.raises(GatewayError) as caught:
        take_checkpoint(copy, signing_key)
    assert caught.value.code is ErrorCode.AUDIT_CHAIN_INVALID
