"""A separate writer process for the crash and multi-process tests: prints `ACK <seq>` after each commit.

Usage: python audit_writer.py DB_PATH COUNT [--wait]; COUNT 0 appends until killed. The key comes
hex-encoded in AUDIT_WRITER_KEY_HEX. With --wait it prints READY and waits for a line on stdin first.
"""

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from ibkr_gateway_core.audit import AuditEvent, AuditLog


def main() -> None:
    path, count = Path(sys.argv[1]), int(sys.argv[2])
    log = AuditLog.open(path, bytes.fromhex(os.environ["AUDIT_WRITER_KEY_HEX"]))
    if "--wait" in sys.argv:
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        sys.stdin.readline()
    written = 0
    while count == 0 or written < count:
        record = log.append_sync(
            AuditEvent(
                event_type="tool_completed",
                timestamp=datetime.now(UTC),
                principal_kind="system",
                principal_subject=f"writer-{os.getpid()}",
                decision="allow",
                result_status="completed",
                metadata={"pid": os.getpid(), "n": written},
            )
        )
        written += 1
        sys.stdout.write(f"ACK {record.sequence}\n")
        sys.stdout.flush()
    log.close()


if __name__ == "__main__":
    main()
