"""A real `python -m ibkr_gateway_mcp` child spoken to line by line, for malformed and hostile input.

The SDK client refuses to send what these tests need to send (bytes that are not JSON, lone
surrogates, 5,000-digit integers), so `RawStdio` writes raw lines to the child's stdin and reads
its stdout on a thread, each reply awaited with a deadline. `AuditView` reads the child's audit log
from the same state directory (SQLite in WAL mode: readable while the child writes).
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Final

import anyio
from ibkr_gateway_core.audit import AuditLog, AuditRecord, load_audit_key
from ibkr_gateway_core.config import GatewayConfig

REPLY_DEADLINE_S: Final = 10.0
"""Every request must be answered within this many seconds."""

STARTUP_DEADLINE_S: Final = 90.0
"""The child's first answer (imports, config, audit key) may take this long on a loaded machine."""

INITIALIZE: Final = {
    "jsonrpc": "2.0",
    "id": "init",
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}


def child_env(state_dir: Path) -> dict[str, str]:
    """PATH and HOME as a host passes them, plus the state directory."""
    env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    return {**env, "IBKR_AGENT_STATE_DIR": str(state_dir), "PYTHONWARNDEFAULTENCODING": "1"}


class RawStdio:
    """One stdio server child; `request` sends one raw line and returns the reply with that id."""

    def __init__(self, state_dir: Path, *, config: Path | None = None) -> None:
        args = [sys.executable, "-m", "ibkr_gateway_mcp"] + (["--config", str(config)] if config else [])
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(state_dir),
        )
        self._replies: queue.Queue[bytes] = queue.Queue()
        self._stderr: list[bytes] = []
        self.unsolicited: list[dict[str, Any]] = []
        self._threads = [
            threading.Thread(target=self._pump, daemon=True),
            threading.Thread(target=self._drain_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._status: int | None = None
        reply = self.request(json.dumps(INITIALIZE).encode(), "init", deadline_s=STARTUP_DEADLINE_S)
        assert reply is not None and "result" in reply, reply
        self.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._replies.put(line)

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        """Everything the child wrote to stderr so far."""
        return b"".join(self._stderr).decode("utf-8", "replace")

    def send(self, line: bytes) -> None:
        """Write one line (a newline is added)."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def request(
        self, line: bytes, request_id: object, *, deadline_s: float = REPLY_DEADLINE_S
    ) -> dict[str, Any] | None:
        """Send `line`, then return the first reply whose id equals `request_id` (None on timeout)."""
        self.send(line)
        end = time.monotonic() + deadline_s
        while (left := end - time.monotonic()) > 0:
            try:
                raw = self._replies.get(timeout=left)
            except queue.Empty:
                return None
            reply = json.loads(raw)
            if reply.get("id") == request_id and ("result" in reply or "error" in reply):
                return reply
            self.unsolicited.append(reply)
        return None

    def close(self) -> int:
        """Close stdin, wait for the child and close its pipes; its exit status (again on a second call)."""
        if self._status is not None:
            return self._status
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self._status = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self._status = self.process.wait()
        for thread in self._threads:
            thread.join(timeout=10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return self._status


class AuditView:
    """The audit log of a state directory, read from outside the process that writes it."""

    def __init__(self, state_dir: Path) -> None:
        self.config = GatewayConfig.fake_local(state_dir=state_dir)
        self._reader: sqlite3.Connection | None = None

    def count(self) -> int:
        """How many events the log holds (0 before the database exists).

        One read-only connection serves every count (each query sees the latest commit: WAL, no
        open transaction), so a fuzzer can count twice per case cheaply.
        """
        if self._reader is None:
            path = self.config.audit_path()
            if not path.exists():
                return 0
            self._reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        return int(self._reader.execute("SELECT count(*) FROM audit_events").fetchone()[0])

    def close(self) -> None:
        """Close the counting connection (counting again reopens it)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def tail(self, limit: int) -> list[AuditRecord]:
        """The last `limit` events, newest first."""
        log = AuditLog.open(self.config.audit_path(), load_audit_key(self.config))
        try:
            return anyio.run(log.tail, limit)
        finally:
            log.close()

    def verify(self) -> None:
        """Raise unless the whole chain verifies."""
        log = AuditLog.open(self.config.audit_path(), load_audit_key(self.config))
        try:
            log.verify_sync().raise_if_invalid()
        finally:
            log.close()
