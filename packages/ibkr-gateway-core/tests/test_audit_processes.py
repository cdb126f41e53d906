"""The audit log across real processes: SIGKILL at random moments (R30) and four writers at once (R31)."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.state import open_database

WRITER = Path(__file__).with_name("audit_writer.py")
KEY = os.urandom(32)
KILLS = 20

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL"),
]


def start_writer(path: Path, count: int, *, wait: bool = False, unsynced: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "AUDIT_WRITER_KEY_HEX": KEY.hex()}
    flags = [*(["--wait"] if wait else []), *(["--unsynced"] if unsynced else [])]
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(count), *flags],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        encoding="utf-8",
    )


def acked(lines: str) -> list[int]:
    return [int(line.split()[1]) for line in lines.splitlines() if line.startswith("ACK ")]


def stored_sequences(path: Path) -> list[int]:
    db = open_database(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return [row[0] for row in db.execute("SELECT sequence FROM audit_events ORDER BY sequence")]
    finally:
        db.close()


def verify(path: Path) -> None:
    log = AuditLog.open(path, KEY)
    try:
        report = log.verify_sync()
    finally:
        log.close()
    assert report.chain_valid, report.reason


@pytest.mark.parametrize("unsynced", [False, True], ids=["synced", "unsynced"])
def test_no_acknowledged_event_is_lost_when_the_writer_is_killed(tmp_path: Path, unsynced: bool) -> None:
    """A writer killed with SIGKILL mid-stream loses at most the event it had not yet acknowledged.

    Unsynced commits (`audit.read_sync: normal`) too: without a disk sync the commit is still in the
    operating system's cache when it is acknowledged, and a killed process cannot take it back.
    """
    path = tmp_path / "state.sqlite3"
    rng = random.Random(20261125)
    all_acked: list[int] = []
    for _ in range(KILLS):
        writer = start_writer(path, 0, unsynced=unsynced)
        assert writer.stdout is not None
        first = writer.stdout.readline()  # the writer is running and has committed once
        time.sleep(rng.uniform(0.0, 0.06))
        writer.send_signal(signal.SIGKILL)
        rest = writer.stdout.read()  # through the buffer readline() filled: `communicate` would skip what it holds
        writer.communicate(timeout=10)
        assert writer.returncode == -signal.SIGKILL
        run = acked(first + rest)
        assert run, "the writer acknowledged nothing before the kill"
        all_acked.extend(run)
        stored = stored_sequences(path)  # integrity_check first
        assert stored == list(range(1, len(stored) + 1))
        assert set(all_acked) <= set(stored)
        assert len(stored) - max(all_acked) <= 1  # only the in-flight event may be un-acknowledged
        verify(path)
    assert len(all_acked) == len(set(all_acked))


@pytest.mark.parametrize("unsynced", [False, True], ids=["synced", "unsynced"])
def test_four_processes_appending_at_once_make_one_contiguous_chain(tmp_path: Path, unsynced: bool) -> None:
    """`BEGIN IMMEDIATE` around head-read and insert: no fork, no gap, no busy error surfaced.

    Unsynced appends first try the write lock without waiting, on the caller's thread, and wait for it on
    a worker thread when another process holds it: the race must still give one chain.
    """
    path = tmp_path / "state.sqlite3"
    open_database(path).close()  # create the schema before the race
    writers = [start_writer(path, 250, wait=True, unsynced=unsynced) for _ in range(4)]
    for writer in writers:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "READY\n"
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write("GO\n")
        writer.stdin.flush()
    acks: list[int] = []
    for writer in writers:
        output, _ = writer.communicate(timeout=60)
        assert writer.returncode == 0
        mine = acked(output)
        assert len(mine) == 250 and mine == sorted(mine)
        acks.extend(mine)
    assert sorted(acks) == list(range(1, 1001))
    assert stored_sequences(path) == list(range(1, 1001))
    verify(path)
