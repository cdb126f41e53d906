"""`state import` and `state backup`: a single host's SQLite state copied into a new state database (on both
target backends), and backed up while it is written.

Every test that takes `state_location` runs with a SQLite file and with a fresh PostgreSQL database as the
target; the source is always a SQLite file written by a real gateway on the simulator. What an attacker or
a hurried operator would try: another key, an edited row, a target in use, the target itself as source, a
text file, two imports at once. Each must import nothing and say why with a stable code.
"""

import errno
import hashlib
import sqlite3
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from ibkr_gateway_core.audit import AuditEvent, AuditLog
from ibkr_gateway_core.call_context import Switch
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import WITH_LIVE
from ibkr_gateway_core.state import MIGRATIONS, PostgresLocation, StateLocation, open_database, open_state, transfer
from ibkr_gateway_core.state.postgres import POSTGRES_MIGRATIONS
from ibkr_gateway_core.state.transfer import STATE_TABLES

pytestmark = pytest.mark.anyio

KEY = b"import-test-audit-key-0123456789abcdef"
OTHER_KEY = b"another-audit-key-0123456789abcdef-xyz"
OPERATOR = Principal(kind="local_operator", subject="op", scopes=WITH_LIVE)
ACCOUNT = "DU1234567"
PAPER = frozenset({Switch.ENABLE_PAPER})


def _gateway(location: StateLocation, tmp_path: Path, key: bytes = KEY) -> Gateway:
    config = GatewayConfig.fake_local(state_dir=tmp_path / "config-dir")
    return Gateway(config, AuditLog.open(location, key), principal=OPERATOR)


async def _approve(gateway: Gateway) -> str:
    preview = await gateway.call(
        "preview_order",
        {"account_id": ACCOUNT, "symbol": "AAPL", "side": "buy", "quantity": "1", "limit_price": "100"},
        switches=frozenset({Switch.ENABLE_PREVIEW}),
    )
    approval = await gateway.call(
        "create_approval", {"account_id": ACCOUNT, "preview_id": preview.value.preview_id, "ttl_seconds": 3600}
    )
    return str(approval.value.approval_id)


async def _old_host(source: Path, tmp_path: Path, key: bytes = KEY) -> dict[str, Any]:
    """A single host's state: an unused approval, a paper order placed under a key, the kill switch closed."""
    async with _gateway(source, tmp_path / "old", key) as gateway:
        unused = await _approve(gateway)
        used = await _approve(gateway)
        placed = await gateway.call(
            "submit_paper_order",
            {"account_id": ACCOUNT, "approval_id": used, "idempotency_key": "old-host-1"},
            switches=PAPER,
        )
        await gateway.call("close_kill_switch", {"reason": "moving to replicas"})
        report = await gateway.audit.verify()
    assert report.chain_valid
    return {"unused": unused, "used": used, "order": placed.value.broker_order_id, "head": report}


def _bulk_event(n: int) -> AuditEvent:
    return AuditEvent(
        event_type="tool_completed",
        timestamp=datetime.now(UTC),
        principal_kind="local_agent",
        principal_subject="bulk",
        decision="allow",
        result_status="completed",
        metadata={"n": n},
    )


async def _import(gateway: Gateway, source: Path) -> Any:
    return (await gateway.call("import_state", {"source": str(source)})).value


def _count(location: StateLocation, table: str) -> int:
    db = open_state(location)
    try:
        row = db.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0])
    finally:
        db.close()


async def test_an_import_keeps_the_chain_and_the_order_state_working(
    state_location: StateLocation, tmp_path: Path
) -> None:
    source = tmp_path / "old" / "state.sqlite3"
    old = await _old_host(source, tmp_path)
    async with _gateway(state_location, tmp_path) as gateway:
        imported = await _import(gateway, source)
        assert imported.audit_events == old["head"].events_scanned
        assert (imported.head_sequence, imported.head_chain_hash) == (
            old["head"].head_sequence,
            old["head"].head_chain_hash,
        )
        assert imported.tables["order_previews"] == 2
        assert imported.tables["order_approvals"] == 2
        assert imported.tables["order_idempotency"] == 1
        assert (imported.kill_switch, imported.kill_switch_was) == ("closed", "closed")
        assert imported.approvals_revoked == 1  # the unused one: its use after the copy cannot be known
        assert imported.earlier_attempts == 0
        # The chain verifies with the same head; the import's own event follows it.
        report = await gateway.audit.verify()
        assert report.chain_valid
        assert report.head_sequence == old["head"].head_sequence + 1
        tail = await gateway.audit.tail(1)
        assert tail[0].event.operation == "import_state"
        assert tail[0].event.result_status == "completed"
        # The order state works on the new database: the kill switch, the replay, the used and unused approvals.
        assert (await gateway.call("kill_switch_status", {})).value.state == "closed"
        replay = await gateway.call(
            "submit_paper_order",
            {"account_id": ACCOUNT, "approval_id": old["used"], "idempotency_key": "old-host-1"},
            switches=PAPER,
        )
        assert replay.value.broker_order_id == old["order"]
        assert replay.value.replayed
        with pytest.raises(GatewayError) as caught:
            await gateway.call(
                "submit_paper_order",
                {"account_id": ACCOUNT, "approval_id": old["used"], "idempotency_key": "new-host-1"},
                switches=PAPER,
            )
        assert caught.value.code is ErrorCode.APPROVAL_CONSUMED
        with pytest.raises(GatewayError) as caught:
            await gateway.call(
                "submit_paper_order",
                {"account_id": ACCOUNT, "approval_id": old["unused"], "idempotency_key": "new-host-2"},
                switches=PAPER,
            )
        assert caught.value.code is ErrorCode.APPROVAL_REVOKED
        fresh = await _approve(gateway)  # a person approves again on the new database
        placed = await gateway.call(
            "submit_paper_order",
            {"account_id": ACCOUNT, "approval_id": fresh, "idempotency_key": "new-host-3"},
            switches=PAPER,
        )
        assert not placed.value.replayed
        assert (await gateway.audit.verify()).chain_valid


async def test_a_target_in_use_imports_nothing(state_location: StateLocation, tmp_path: Path) -> None:
    source = tmp_path / "old" / "state.sqlite3"
    await _old_host(source, tmp_path)
    async with _gateway(state_location, tmp_path) as gateway:
        await gateway.call("health", {})
        with pytest.raises(GatewayError) as caught:
            await _import(gateway, source)
        assert caught.value.code is ErrorCode.STATE_IMPORT_TARGET_NOT_EMPTY
        assert "audit chain holds 1 events" in caught.value.message
        assert (await gateway.audit.verify()).head_sequence == 2  # health, and the refusal
    for table in STATE_TABLES:
        assert _count(state_location, table) == 0


async def test_a_target_with_order_state_imports_nothing(state_location: StateLocation, tmp_path: Path) -> None:
    source = tmp_path / "old" / "state.sqlite3"
    await _old_host(source, tmp_path)
    async with _gateway(state_location, tmp_path) as gateway:
        await gateway.call("close_kill_switch", {"reason": "first"})
        with pytest.raises(GatewayError) as caught:
            await _import(gateway, source)
        assert caught.value.code is ErrorCode.STATE_IMPORT_TARGET_NOT_EMPTY
        assert "kill_switch" in caught.value.message
    assert _count(state_location, "order_previews") == 0


async def test_a_chain_made_with_another_key_imports_nothing(state_location: StateLocation, tmp_path: Path) -> None:
    source = tmp_path / "old" / "state.sqlite3"
    await _old_host(source, tmp_path, key=OTHER_KEY)
    async with _gateway(state_location, tmp_path) as gateway:
        with pytest.raises(GatewayError) as caught:
            await _import(gateway, source)
        assert caught.value.code is ErrorCode.AUDIT_CHAIN_INVALID
        assert "at sequence 1" in caught.value.message
        assert "different key" in caught.value.message
        report = await gateway.audit.verify()
        assert (report.chain_valid, report.head_sequence) == (True, 1)  # only the refusal
    for table in STATE_TABLES:
        assert _count(state_location, table) == 0


async def test_an_edited_row_imports_nothing(state_location: StateLocation, tmp_path: Path) -> None:
    source = tmp_path / "old" / "state.sqlite3"
    await _old_host(source, tmp_path)
    with sqlite3.connect(source) as db:  # an attacker with the file rewrites one event in the middle
        db.execute("UPDATE audit_events SET payload = replace(payload, 'completed', 'refused') WHERE sequence = 3")
    async with _gateway(state_location, tmp_path) as gateway:
        with pytest.raises(GatewayError) as caught:
            await _import(gateway, source)
        assert caught.value.code is ErrorCode.AUDIT_CHAIN_INVALID
        assert "at sequence 3" in caught.value.message
    assert _count(state_location, "audit_events") == 1
    assert _count(state_location, "order_approvals") == 0


async def test_refused_attempts_are_chained_after_the_import(state_location: StateLocation, tmp_path: Path) -> None:
    source = tmp_path / "old" / "state.sqlite3"
    old = await _old_host(source, tmp_path)
    async with _gateway(state_location, tmp_path) as gateway:
        for wrong in (tmp_path / "missing.sqlite3", tmp_path):
            with pytest.raises(GatewayError) as caught:
                await _import(gateway, wrong)
            assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
        imported = await _import(gateway, source)
        assert imported.earlier_attempts == 2
        report = await gateway.audit.verify()
        assert report.chain_valid
        head = old["head"].head_sequence
        assert report.head_sequence == head + 3
        records = await gateway.audit.tail(3)
        assert [r.event.result_status for r in records] == ["completed", "failed", "failed"]
        assert [r.sequence for r in records] == [head + 3, head + 2, head + 1]


async def test_source_problems_are_input_errors_that_change_no_file(
    state_location: StateLocation, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n", encoding="utf-8")
    async with _gateway(state_location, tmp_path) as gateway:
        for wrong, words in (
            (tmp_path / "missing.sqlite3", "does not exist"),
            (tmp_path, "does not exist or is not a file"),
            (text, "file is not a database"),
        ):
            with pytest.raises(GatewayError) as caught:
                await _import(gateway, wrong)
            assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
            assert words in caught.value.message
            assert str(tmp_path) not in caught.value.message  # the file's name, never its folder
    assert text.read_text(encoding="utf-8") == "not a database\n"
    assert not (tmp_path / "missing.sqlite3").exists()


async def test_the_target_itself_is_not_a_source(tmp_path: Path) -> None:
    target = tmp_path / "state.sqlite3"
    async with _gateway(target, tmp_path) as gateway:
        with pytest.raises(GatewayError) as caught:
            await _import(gateway, target)
        assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
        assert "itself" in caught.value.message


async def test_the_source_path_stays_out_of_the_audit_log(state_location: StateLocation, tmp_path: Path) -> None:
    source = tmp_path / "old-host-secret-folder" / "state.sqlite3"
    await _old_host(source, tmp_path)
    async with _gateway(state_location, tmp_path) as gateway:
        with pytest.raises(GatewayError) as caught:
            await _import(gateway, source.with_name("typo.sqlite3"))
        assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
        await _import(gateway, source)
        exported = (await gateway.call("audit_export", {"limit": 1000})).value
    assert "old-host-secret-folder" not in exported.jsonl
    assert "typo.sqlite3" not in exported.jsonl


async def test_an_agent_cannot_import_whatever_its_scopes(tmp_path: Path) -> None:
    source = tmp_path / "old" / "state.sqlite3"
    await _old_host(source, tmp_path)
    agent = Principal(kind="local_agent", subject="agent", scopes=WITH_LIVE)
    async with _gateway(tmp_path / "new.sqlite3", tmp_path) as gateway:
        with pytest.raises(GatewayError) as caught:
            await gateway.call("import_state", {"source": str(source)}, principal=agent)
        assert caught.value.code is ErrorCode.OPERATOR_ONLY
    assert _count(tmp_path / "new.sqlite3", "order_previews") == 0


async def test_two_imports_at_once_import_once(state_location: StateLocation, tmp_path: Path) -> None:
    source = tmp_path / "old" / "state.sqlite3"
    old = await _old_host(source, tmp_path)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def replica(n: int) -> None:
        async def run() -> None:
            async with _gateway(state_location, tmp_path / f"replica-{n}") as gateway:
                start.wait()
                try:
                    await _import(gateway, source)
                    outcomes.append("imported")
                except GatewayError as error:
                    outcomes.append(str(error.code))

        anyio.run(run)

    threads = [threading.Thread(target=replica, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["STATE_IMPORT_TARGET_NOT_EMPTY", "imported"]
    async with _gateway(state_location, tmp_path) as gateway:
        report = await gateway.audit.verify()
    assert report.chain_valid
    assert report.head_sequence == old["head"].head_sequence + 2  # the import and the refused one
    assert _count(state_location, "order_approvals") == 2


async def test_a_long_chain_is_copied_in_pages(state_location: StateLocation, tmp_path: Path) -> None:
    source = tmp_path / "old" / "state.sqlite3"
    await _old_host(source, tmp_path)
    log = AuditLog.open(source, KEY)
    try:
        log.page_rows = 64  # many pages, so a page boundary falls inside the chain
        head = log._append_batch_sync(_bulk_event(n) for n in range(3_000))  # pyright: ignore[reportPrivateUsage]
    finally:
        log.close()
    async with _gateway(state_location, tmp_path) as gateway:
        imported = await _import(gateway, source)
        assert imported.head_sequence == head
        assert (await gateway.audit.verify()).chain_valid


def test_every_table_of_the_schema_is_copied(tmp_path: Path) -> None:
    db = open_database(tmp_path / "state.sqlite3")
    try:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()
    assert names - {"audit_events", "schema_migrations"} == set(STATE_TABLES)
    assert len(MIGRATIONS) == len(POSTGRES_MIGRATIONS)


def test_every_postgres_table_is_copied(postgres_dsn: str) -> None:
    db = open_state(PostgresLocation(postgres_dsn))
    try:
        rows = db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()
    finally:
        db.close()
    assert {row[0] for row in rows} - {"audit_events", "schema_migrations"} == set(STATE_TABLES)


async def test_a_source_written_during_the_import_imports_nothing(
    state_location: StateLocation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old server was not stopped: an event appended while the copy runs makes the import refuse."""
    source = tmp_path / "old" / "state.sqlite3"
    await _old_host(source, tmp_path)
    copy_table = transfer._copy_table  # pyright: ignore[reportPrivateUsage]
    writes: list[int] = []

    def copy_while_the_old_host_writes(source_db: Any, target: Any, table: str) -> int:
        if not writes:  # the old host appends one more event, committed while the import's snapshot is open
            old = AuditLog.open(source, KEY)
            try:
                writes.append(old.append_sync(_bulk_event(0)).sequence)
            finally:
                old.close()
        return copy_table(source_db, target, table)

    monkeypatch.setattr(transfer, "_copy_table", copy_while_the_old_host_writes)
    async with _gateway(state_location, tmp_path) as gateway:
        with pytest.raises(GatewayError) as caught:
            await _import(gateway, source)
        assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
        assert "changed during the import" in caught.value.message
    assert writes
    assert _count(state_location, "audit_events") == 1  # the refusal only
    assert _count(state_location, "order_previews") == 0


async def test_a_row_the_target_cannot_hold_imports_nothing(postgres_dsn: str, tmp_path: Path) -> None:
    """Order tables are not chained: a row edited to hold a NUL (PostgreSQL text cannot) fails cleanly, whole."""
    source = tmp_path / "old" / "state.sqlite3"
    await _old_host(source, tmp_path)
    with sqlite3.connect(source) as db:
        db.execute("UPDATE order_approvals SET payload = payload || char(0)")
    target = PostgresLocation(postgres_dsn)
    async with _gateway(target, tmp_path) as gateway:
        with pytest.raises(GatewayError) as caught:
            await _import(gateway, source)
        assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
        assert "cannot be written to the configured state database" in caught.value.message
        assert (await gateway.audit.verify()).chain_valid
    assert _count(target, "audit_events") == 1
    assert _count(target, "order_previews") == 0


async def _backup(gateway: Gateway, destination: Path) -> Any:
    return (await gateway.call("backup_state", {"to": str(destination)})).value


async def test_a_backup_taken_while_writers_append_restores_into_either_backend(
    state_location: StateLocation, tmp_path: Path
) -> None:
    live = tmp_path / "live" / "state.sqlite3"
    await _old_host(live, tmp_path)
    stop = threading.Event()
    appended: list[int] = []

    def writer() -> None:  # another process's server, as far as the file is concerned: its own connection
        log = AuditLog.open(live, KEY)
        try:
            n = 0
            while not stop.is_set():
                appended.append(log.append_sync(_bulk_event(n)).sequence)
                n += 1
        finally:
            log.close()

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        while len(appended) < 50:
            await anyio.sleep(0.01)
        async with _gateway(live, tmp_path / "backup-side") as gateway:
            backup = await _backup(gateway, tmp_path / "backup.sqlite3")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    copy = tmp_path / "backup.sqlite3"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert backup.bytes == copy.stat().st_size
    assert backup.sha256 == hashlib.sha256(copy.read_bytes()).hexdigest()
    assert 50 <= backup.head_sequence <= max(appended) + 1
    assert not [p.name for p in tmp_path.iterdir() if ".partial" in p.name or p.name.startswith("backup.sqlite3-")]
    async with _gateway(state_location, tmp_path / "restored") as gateway:
        restored = await _import(gateway, copy)
        assert (restored.head_sequence, restored.head_chain_hash) == (backup.head_sequence, backup.head_chain_hash)
        assert (await gateway.audit.verify()).chain_valid
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == backup.sha256  # the restore left the backup as it was


async def test_a_backup_never_overwrites_and_leaves_nothing_behind(tmp_path: Path) -> None:
    live = tmp_path / "live" / "state.sqlite3"
    await _old_host(live, tmp_path)
    existing = tmp_path / "existing.sqlite3"
    existing.write_text("keep me\n", encoding="utf-8")
    (tmp_path / "link.sqlite3").symlink_to(tmp_path / "nowhere")
    async with _gateway(live, tmp_path / "backup-side") as gateway:
        for destination, words in (
            (existing, "exists already"),
            (tmp_path / "link.sqlite3", "exists already"),
            (tmp_path / "missing-folder" / "backup.sqlite3", "folder is missing"),
        ):
            with pytest.raises(GatewayError) as caught:
                await _backup(gateway, destination)
            assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
            assert words in caught.value.message
            assert str(tmp_path) not in caught.value.message
    assert existing.read_text(encoding="utf-8") == "keep me\n"
    assert not (tmp_path / "nowhere").exists()


async def test_a_backup_of_a_broken_chain_is_not_written(tmp_path: Path) -> None:
    live = tmp_path / "live" / "state.sqlite3"
    await _old_host(live, tmp_path)
    with sqlite3.connect(live) as db:
        db.execute("UPDATE audit_events SET payload = replace(payload, 'completed', 'refused') WHERE sequence = 2")
    async with _gateway(live, tmp_path / "backup-side") as gateway:
        with pytest.raises(GatewayError) as caught:
            await _backup(gateway, tmp_path / "backup.sqlite3")
        assert caught.value.code is ErrorCode.AUDIT_CHAIN_INVALID
        assert "sequence 2" in caught.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live", "old"]  # no backup, no partial file


async def test_a_postgres_state_is_backed_up_with_its_own_tools(postgres_dsn: str, tmp_path: Path) -> None:
    async with _gateway(PostgresLocation(postgres_dsn), tmp_path) as gateway:
        with pytest.raises(GatewayError) as caught:
            await _backup(gateway, tmp_path / "backup.sqlite3")
        assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
        assert "pg_dump" in caught.value.user_action
    assert not (tmp_path / "backup.sqlite3").exists()


async def test_an_agent_cannot_take_a_backup(tmp_path: Path) -> None:
    live = tmp_path / "live" / "state.sqlite3"
    agent = Principal(kind="remote", subject="agent", scopes=WITH_LIVE)
    async with _gateway(live, tmp_path) as gateway:
        with pytest.raises(GatewayError) as caught:
            await gateway.call("backup_state", {"to": str(tmp_path / "stolen.sqlite3")}, principal=agent)
        assert caught.value.code is ErrorCode.OPERATOR_ONLY
    assert not (tmp_path / "stolen.sqlite3").exists()


async def test_an_import_leaves_the_kill_switch_closed_until_the_operator_opens_it(
    state_location: StateLocation, tmp_path: Path
) -> None:
    """A copy may be older than its source's last state (a restored backup): nothing it held armed stays armed."""
    source = tmp_path / "old" / "state.sqlite3"
    async with _gateway(source, tmp_path / "old") as gateway:
        await gateway.call("open_kill_switch", {"reason": "trading"}, switches=frozenset({Switch.OPEN_KILL_SWITCH}))
        assert (await gateway.call("kill_switch_status", {})).value.state == "open"
    async with _gateway(state_location, tmp_path) as gateway:
        imported = await _import(gateway, source)
        assert (imported.kill_switch, imported.kill_switch_was, imported.approvals_revoked) == ("closed", "open", 0)
        status = (await gateway.call("kill_switch_status", {})).value
        assert status.state == "closed"
        assert status.changed_by == "state import"
        assert "until the operator opens it" in (status.reason or "")
        reopened = await gateway.call(
            "open_kill_switch", {"reason": "checked after the move"}, switches=frozenset({Switch.OPEN_KILL_SWITCH})
        )
        assert reopened.value.state == "open"


async def test_an_attempt_with_another_key_needs_a_new_database(state_location: StateLocation, tmp_path: Path) -> None:
    """A refused attempt is recorded with the key configured then: with the right key that record cannot be
    verified or chained on, so the target is refused as it is, with the action that helps."""
    source = tmp_path / "old" / "state.sqlite3"
    await _old_host(source, tmp_path)
    async with _gateway(state_location, tmp_path, key=OTHER_KEY) as gateway:
        with pytest.raises(GatewayError) as caught:
            await _import(gateway, source)
        assert caught.value.code is ErrorCode.AUDIT_CHAIN_INVALID
    async with _gateway(state_location, tmp_path) as gateway:
        with pytest.raises(GatewayError) as caught:
            await _import(gateway, source)
        assert caught.value.code is ErrorCode.AUDIT_WRITE_FAILED
        assert "different key" in caught.value.message
        assert "a new PostgreSQL database" in caught.value.user_action
    assert _count(state_location, "audit_events") == 1  # only the first attempt's record
    assert _count(state_location, "order_previews") == 0


async def test_a_restored_backup_is_reported_as_rolled_back_by_a_later_checkpoint(
    state_location: StateLocation, tmp_path: Path
) -> None:
    """Restoring loses what happened after the backup; a checkpoint signed after it says so, in those words."""
    live = tmp_path / "live" / "state.sqlite3"
    async with _gateway(live, tmp_path) as gateway:  # one checkpoint key for both hosts: the same config folder
        await gateway.call("close_kill_switch", {"reason": "before the backup"})
        await _backup(gateway, tmp_path / "backup.sqlite3")
        await gateway.call("health", {})
        checkpoint = (await gateway.call("audit_checkpoint", {})).value
    async with _gateway(state_location, tmp_path) as gateway:
        await _import(gateway, tmp_path / "backup.sqlite3")
        with pytest.raises(GatewayError) as caught:
            await gateway.call("audit_verify", {"checkpoint": checkpoint.model_dump(mode="json")})
        assert caught.value.code is ErrorCode.AUDIT_CHAIN_INVALID
        assert caught.value.message.startswith("The audit log does not match the signed checkpoint: ")
        assert "rolled back" in caught.value.message
        assert (await gateway.audit.verify()).chain_valid  # the rows themselves are intact


async def test_a_backup_to_a_folder_asks_for_a_file_name(tmp_path: Path) -> None:
    async with _gateway(tmp_path / "live" / "state.sqlite3", tmp_path) as gateway:
        with pytest.raises(GatewayError) as caught:
            await _backup(gateway, tmp_path)
        assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
        assert "names the folder" in caught.value.message


async def test_a_backup_that_cannot_finish_leaves_what_was_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that appears at --to while the copy runs is left alone; a full disk leaves no partial file."""
    live = tmp_path / "live" / "state.sqlite3"
    destination = tmp_path / "backup.sqlite3"
    copy_database = transfer.backup_database

    def someone_writes_the_file_meanwhile(path: Path, partial: Path) -> None:
        copy_database(path, partial)
        destination.write_text("another program's file\n", encoding="utf-8")

    def the_disk_fills_up(path: Path, partial: Path) -> None:
        partial.write_bytes(b"half a copy")
        raise OSError(errno.ENOSPC, "No space left on device")

    async with _gateway(live, tmp_path / "backup-side") as gateway:
        monkeypatch.setattr(transfer, "backup_database", someone_writes_the_file_meanwhile)
        with pytest.raises(GatewayError) as caught:
            await _backup(gateway, destination)
        assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
        assert "appeared while the backup was written" in caught.value.message
        assert destination.read_text(encoding="utf-8") == "another program's file\n"
        monkeypatch.setattr(transfer, "backup_database", the_disk_fills_up)
        with pytest.raises(GatewayError) as caught:
            await _backup(gateway, tmp_path / "second.sqlite3")
        assert caught.value.code is ErrorCode.INPUT_INVALID_ARGUMENT
        assert "No space left on device" in caught.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.sqlite3", "live"]  # no partial file
