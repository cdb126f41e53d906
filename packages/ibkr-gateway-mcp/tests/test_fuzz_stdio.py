"""Fuzzing every MCP tool over a real stdio session, and raw malformed JSON-RPC lines.

The tools and their input schemas come from the server's own `tools/list`. Each call must be
answered within a bound, with success or a stable code, add exactly one audit event, and leave
no traceback on stderr; the audit chain verifies at the end. `IBKR_FUZZ_PROFILE=long` runs
10,000 cases per test (`scripts/fuzz_surfaces.py`).
"""

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .fuzz_cases import call_line, check_tool_reply, is_quiet_notification, malformed_line, run_cases, tool_case
from .raw_stdio import AuditView, RawStdio

_ids = itertools.count(1000)


class Session:
    """One stdio child for a whole test, its audit log, and the tools it lists."""

    def __init__(self, root: Path) -> None:
        state = root / "state"
        config = root / "gateway.yaml"
        config.write_text(
            f"auth:\n  enabled_scopes: [with_paper, 'ibkr:audit:read']\nstate:\n  directory: {state}\n",
            encoding="utf-8",
        )
        self.stdio = RawStdio(state, config=config)
        self.audit = AuditView(state)
        listed = self.stdio.request(b'{"jsonrpc":"2.0","id":"list","method":"tools/list"}', "list")
        assert listed is not None
        self.schemas: dict[str, dict[str, Any]] = {
            tool["name"]: tool["inputSchema"] for tool in listed["result"]["tools"]
        }
        assert len(self.schemas) > 10
        self.cases = 0
        self.codes: dict[str, int] = {}
        self.tool_calls = 0
        self.lines = 0
        self.expected: int | None = self.audit.count()
        self.previous = b""

    def one_call(self, line: bytes, request_id: int | None, bound_s: float = 10.0) -> dict[str, Any] | None:
        """Send a line; assert it is answered in time (when it has an id) and adds exactly one audit event.

        A late second event of one case shows as a changed count at the start of the next one.
        """
        before = self.audit.count()
        if self.expected is not None:  # None after a failed case: its own failure is the report
            late = before - self.expected
            assert late == 0, f"{late} late audit event(s) after {self.previous[:200]!r}"
        self.expected = None
        started = time.monotonic()
        if request_id is None:
            self.stdio.send(line)
            reply = self.stdio.request(b'{"jsonrpc":"2.0","id":"sync","method":"ping"}', "sync")
            assert reply is not None, f"no answer after {line[:200]!r}"
            answered = [item for item in self.stdio.unsolicited if item.get("id") is None]
            self.stdio.unsolicited.clear()
            assert len(answered) <= 1, answered
            reply = answered[0] if answered else None
        else:
            reply = self.stdio.request(line, request_id, deadline_s=bound_s)
            assert reply is not None, f"no answer within {bound_s} s to {line[:200]!r}"
        quiet = is_quiet_notification(line)
        while not quiet and self.audit.count() == before and time.monotonic() - started < bound_s:
            time.sleep(0.01)  # a request the SDK answers itself runs concurrently with the ping
        assert time.monotonic() - started < bound_s
        added = self.audit.count() - before
        assert added == (0 if quiet else 1), f"{added} audit events for {line[:200]!r}: {reply}"
        assert "Traceback" not in self.stdio.stderr, self.stdio.stderr[-3000:]
        self.expected = before + added
        self.previous = line
        self.cases += 1
        return reply


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    running = Session(tmp_path_factory.mktemp("fuzz-stdio"))
    yield running
    assert running.stdio.close() == 0
    assert "Traceback" not in running.stdio.stderr, running.stdio.stderr[-3000:]
    running.audit.close()
    running.audit.verify()
    codes = sorted(running.codes.items())
    print(f"stdio fuzz: {running.tool_calls} tool calls, {running.lines} raw lines, codes {codes}")


@pytest.mark.slow
def test_every_tool_call_is_answered_coded_and_audited_once(session: Session) -> None:
    def case(seed: int) -> None:
        tool, arguments, _kind = tool_case(seed, session.schemas)
        request_id = next(_ids)
        reply = session.one_call(call_line(request_id, tool, arguments), request_id)
        assert reply is not None
        code = check_tool_reply(reply)
        session.codes[code or "OK"] = session.codes.get(code or "OK", 0) + 1

    session.tool_calls = run_cases(120, case)


@pytest.mark.slow
def test_every_malformed_line_is_answered_and_audited_once(session: Session) -> None:
    def case(seed: int) -> None:
        reply = session.one_call(malformed_line(seed), None)
        if reply is not None:
            check_tool_reply(reply)

    session.lines = run_cases(60, case)
