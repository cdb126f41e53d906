"""Threads appending to one log at once share transactions (group commit), each acknowledged only with its
own committed event, and the chain stays linear; on SQLite and on PostgreSQL."""

import threading
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from ibkr_gateway_core.audit import AuditEvent, AuditLog, AuditRecord
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.state import StateLocation

KEY = b"g" * 32
THREADS = 8
EACH = 25


def _event(writer: int, n: int) -> AuditEvent:
    return AuditEvent(
        event_type="tool_completed",
        timestamp=datetime.now(UTC),
        principal_kind="local_agent",
        principal_subject=f"writer-{writer}",
        scopes=[],
        decision="allow",
        result_status="completed",
        metadata={"n": n},
    )


def test_threads_share_commits_and_each_gets_its_own_event(
    state_location: StateLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog.open(state_location, KEY)
    groups: list[int] = []
    commit = AuditLog._append_group_sync

    def counted(self: AuditLog, rendered: list[Any]) -> list[AuditRecord]:
        groups.append(len(rendered))
        return commit(self, rendered)

    monkeypatch.setattr(AuditLog, "_append_group_sync", counted)
    barrier = threading.Barrier(THREADS)
    acknowledged: dict[int, list[tuple[str, AuditRecord]]] = {}

    def writer(number: int) -> None:
        barrier.wait()
        mine: list[tuple[str, AuditRecord]] = []
        for n in range(EACH):
            event = _event(number, n)
            mine.append((event.event_id, log.append_sync(event)))
        acknowledged[number] = mine

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert len(acknowledged) == THREADS
        for mine in acknowledged.values():
            assert all(record.event.event_id == event_id for event_id, record in mine)  # its own event
            sequences = [record.sequence for _, record in mine]
            assert sequences == sorted(sequences)  # one thread's events in its order
        every = sorted(record.sequence for mine in acknowledged.values() for _, record in mine)
        assert every == list(range(1, THREADS * EACH + 1))
        assert sum(groups) == THREADS * EACH and len(groups) < THREADS * EACH  # some commits held several
        report = log.verify_sync()
        assert report.chain_valid and report.events_scanned == THREADS * EACH
    finally:
        log.close()


def test_a_failed_group_commit_fails_every_caller_in_it_and_the_next_ones_go_on(
    state_location: StateLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog.open(state_location, KEY)
    commit = AuditLog._append_group_sync
    failing = threading.Event()

    def flaky(self: AuditLog, rendered: list[Any]) -> list[AuditRecord]:
        if failing.is_set():
            raise GatewayError(ErrorCode.AUDIT_WRITE_FAILED, "disk full")
        return commit(self, rendered)

    monkeypatch.setattr(AuditLog, "_append_group_sync", flaky)
    try:
        failing.set()
        with pytest.raises(GatewayError) as refused:
            log.append_sync(_event(0, 0))
        assert refused.value.code is ErrorCode.AUDIT_WRITE_FAILED
        failing.clear()
        assert log.append_sync(_event(0, 1)).sequence == 1  # the lead was put down: the next call leads
        assert log.verify_sync().events_scanned == 1
    finally:
        log.close()


@pytest.mark.anyio
async def test_tasks_appending_at_once_fill_each_group_commit(
    state_location: StateLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's concurrent calls are tasks: those woken by one commit all join the next, so 8 tasks
    appending in a loop commit in groups of 8 (without the flusher's yield they alternated 1 and 7)."""
    log = AuditLog.open(state_location, KEY)
    groups: list[int] = []
    commit = AuditLog._append_group_sync

    def counted(self: AuditLog, rendered: list[Any], sync: bool = True) -> list[AuditRecord]:
        groups.append(len(rendered))
        return commit(self, rendered, sync)

    monkeypatch.setattr(AuditLog, "_append_group_sync", counted)
    acknowledged: dict[int, list[int]] = {}

    async def writer(number: int) -> None:
        acknowledged[number] = [(await log.append(_event(number, n))).sequence for n in range(EACH)]

    try:
        async with anyio.create_task_group() as tasks:
            for number in range(THREADS):
                tasks.start_soon(writer, number)
        assert sum(groups) == THREADS * EACH
        assert len(groups) <= EACH + 1, groups  # one commit per round of the 8 writers (the first may split)
        assert all(seq == sorted(seq) for seq in acknowledged.values())
        assert sorted(s for seq in acknowledged.values() for s in seq) == list(range(1, THREADS * EACH + 1))
        assert log.verify_sync().events_scanned == THREADS * EACH
    finally:
        log.close()
