"""A separate writer process for the crash and multi-process tests: prints `ACK <seq>` after each commit.

Usage: python audit_writer.py DB_PATH COUNT [--wait] [--unsynced]; COUNT 0 appends until killed. The key
comes hex-encoded in AUDIT_WRITER_KEY_HEX. With --wait it prints READY and waits for a line on stdin
first. With --unsynced it appends from async code with `sync=False`, as a completed read is appended
under `audit.read_sync: normal` (no disk sync per commit).
"""

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import anyio
from ibkr_gateway_core.audit import AuditEvent, AuditLog


def _event(written: int) -> AuditEvent:
    return AuditEvent(
        event_type="tool_completed",
        timestamp=datetime.now(UTC),
        principal_kind="system",
        principal_subject=f"writer-{os.getpid()}",
        decision="allow",
        result_status="completed",
        metadata={"pid": os.getpid(), "n": written},
    )


def _ack(sequence: int) -> None:
    sys.stdout.write(f"ACK {sequence}\n")
    sys.stdout.flush()


async def _append_unsynced(log: AuditLog, count: int) -> None:
    written = 0
    while count == 0 or written < count:
        record = await log.append(_event(written), sync=False)
        written += 1
        _ack(record.sequence)


def main() -> None:
    path, count = Path(sys.argv[1]), int(sys.argv[2])
    log = AuditLog.open(path, bytes.fromhex(os.environ["AUDIT_WRITER_KEY_HEX"]))
    if "--wait" in sys.argv:
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        sys.stdin.readline()
    if "--unsynced" in sys.argv:
        anyio.run(_append_unsynced, log, count)
    else:
        written = 0
        while count == 0 or written < count:
            record = log.append_sync(_event(written))
            written += 1
            _ack(record.sequence)
    log.close()


if __name__ == "__main__":
    main()
