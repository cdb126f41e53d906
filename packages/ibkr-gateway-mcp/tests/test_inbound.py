"""Every inbound MCP message answered and audited: malformed lines, shape errors and hostile values over stdio."""

import json
import time
from pathlib import Path
from typing import Any, Final

import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_mcp.inbound import MAX_MESSAGE_DEPTH, screen_message

from .raw_stdio import AuditView, RawStdio


def call(request_id: object, arguments_json: str, tool: str = "ibkr_health") -> bytes:
    """A tools/call line whose arguments are spliced in as raw JSON text."""
    head = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call"})[:-1]
    return f'{head},"params":{{"name":"{tool}","arguments":{arguments_json}}}}}'.encode()


HOSTILE_CALLS: Final = {
    "overflowing exponent": ('{"x":1e999}', ErrorCode.INPUT_NON_FINITE_NUMBER),
    "negative overflow": ('{"x":-1e999}', ErrorCode.INPUT_NON_FINITE_NUMBER),
    "NaN": ('{"x":NaN}', ErrorCode.INPUT_NON_FINITE_NUMBER),
    "Infinity": ('{"x":[1,Infinity]}', ErrorCode.INPUT_NON_FINITE_NUMBER),
    "nested 400 deep": ('{"x":' + "[" * 400 + "]" * 400 + "}", ErrorCode.INPUT_TOO_DEEP),
    "nested 100000 deep": ('{"x":' + "{" + '"a":{' * 100_000 + "}" * 100_001 + "}", ErrorCode.INPUT_TOO_DEEP),
    "lone surrogate": ('{"x":"\\ud800"}', ErrorCode.INPUT_INVALID_UNICODE),
    "lone surrogate key": ('{"\\udfff":1}', ErrorCode.INPUT_INVALID_UNICODE),
    "5000-digit integer": ('{"x":' + "9" * 5000 + "}", ErrorCode.INPUT_NUMBER_TOO_LARGE),
    "100-digit integer": ('{"x":' + "9" * 100 + "}", ErrorCode.INPUT_NUMBER_TOO_LARGE),
}


@pytest.mark.parametrize("case", HOSTILE_CALLS)
def test_screen_names_each_hostile_value(case: str) -> None:
    text, code = HOSTILE_CALLS[case]
    started = time.perf_counter()
    refusal = screen_message(call(7, text))
    assert time.perf_counter() - started < 2
    assert refusal is not None
    assert refusal.error.code == code
    assert refusal.is_tool_call and refusal.request_id == 7 and refusal.tool == "ibkr_health"


def test_screen_passes_ordinary_messages() -> None:
    assert (
        screen_message(call(1, '{"query":"AAPL","limit":5,"price":"1.5","deep":' + "[" * 20 + "]" * 20 + "}")) is None
    )
    assert screen_message(b'{"jsonrpc":"2.0","method":"notifications/initialized"}') is None
    assert screen_message(b'{"jsonrpc":"2.0","id":"a","result":{}}') is None
    assert screen_message(call(2, '{"text":"na\\u00efve \\ud834\\udd1e"}')) is None  # a valid surrogate pair


@pytest.mark.parametrize(
    ("raw", "jsonrpc_code", "request_id"),
    [
        (b"this is not json", -32700, None),
        (b'{"jsonrpc":"2.0","id":1,', -32700, None),
        (b"[1,2,3]", -32600, None),
        (b'{"jsonrpc":"1.0","id":3,"method":"tools/list"}', -32600, 3),
        (b'{"jsonrpc":"2.0","id":true,"method":"tools/list"}', -32600, None),
        (b'{"jsonrpc":"2.0","id":4,"method":5}', -32600, 4),
        (b'{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"cursor":1e999}}', -32602, 5),
        (b'{"jsonrpc":"2.0"}', -32600, None),  # found by the fuzzer: no method, no id, dropped unanswered
        (b'{"jsonrpc":"2.0","id":6}', -32600, None),
        (b'{"jsonrpc":"2.0","id":7,"result":{},"error":{}}', -32600, None),
        (b'{"jsonrpc":"2.0","id":8,"method":"","params":[]}', -32600, 8),  # fuzzer: the SDK dropped it unanswered
    ],
)
def test_screen_classifies_protocol_errors(raw: bytes, jsonrpc_code: int, request_id: object) -> None:
    refusal = screen_message(raw)
    assert refusal is not None
    assert refusal.jsonrpc_code == jsonrpc_code
    assert refusal.request_id == request_id
    assert not refusal.is_tool_call


def test_screen_refuses_an_oversized_message_unread() -> None:
    refusal = screen_message(b"x" * 101, max_bytes=100)
    assert refusal is not None and refusal.jsonrpc_code == -32600
    assert refusal.error.code == ErrorCode.INPUT_MALFORMED_REQUEST


def test_message_depth_limit_leaves_room_for_the_envelope() -> None:
    assert MAX_MESSAGE_DEPTH == 35


@pytest.fixture
def stdio(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = RawStdio(tmp_path / "state")
    yield server
    server.close()


@pytest.mark.slow
def test_stdio_answers_and_audits_every_hostile_call(stdio: RawStdio, tmp_path: Path) -> None:
    """Each hostile tools/call: a coded tool error in bounded time, one audit event, nothing on stderr."""
    audit = AuditView(tmp_path / "state")
    for number, (case, (text, code)) in enumerate(HOSTILE_CALLS.items()):
        before = audit.count()
        started = time.monotonic()
        reply = stdio.request(call(number, text), number)
        assert reply is not None, f"{case}: no reply"
        assert time.monotonic() - started < 5, case
        result: dict[str, Any] = reply["result"]
        assert result["isError"] is True, case
        assert result["structuredContent"]["code"] == code.value, case
        assert result["content"][0]["text"].startswith(f"[{code.value}] "), case
        assert audit.count() == before + 1, case
        event = audit.tail(1)[0].event
        assert event.event_id == result["structuredContent"]["audit_event_id"]
        assert event.error_code == code.value
        assert event.tool_name == "ibkr_health"
        assert event.request_id == str(number)
    assert stdio.close() == 0
    assert "Traceback" not in stdio.stderr and "Error executing tool" not in stdio.stderr, stdio.stderr
    audit.verify()


@pytest.mark.slow
def test_stdio_answers_malformed_lines_with_jsonrpc_errors(stdio: RawStdio, tmp_path: Path) -> None:
    """Not JSON: -32700; bad params shape (found by the SDK): -32602; both audited with hash and size only."""
    audit = AuditView(tmp_path / "state")
    before = audit.count()
    secret = b"this is not json but holds a private note"
    stdio.send(secret)
    parse = stdio.request(b'{"jsonrpc":"2.0","id":"after","method":"ping"}', "after")
    assert parse is not None  # the server is still serving
    parse_error = next(reply for reply in stdio.unsolicited if reply.get("id") is None)
    assert parse_error["error"]["code"] == -32700
    assert parse_error["error"]["data"]["code"] == "INPUT_MALFORMED_REQUEST"

    shape = stdio.request(b'{"jsonrpc":"2.0","id":61,"method":"tools/call","params":{"name":5}}', 61)
    assert shape is not None and shape["error"]["code"] == -32602
    args = stdio.request(
        b'{"jsonrpc":"2.0","id":62,"method":"tools/call","params":{"name":"ibkr_health","arguments":[1]}}', 62
    )
    assert args is not None and args["error"]["code"] == -32602
    unknown = stdio.request(b'{"jsonrpc":"2.0","id":63,"method":"no/such/method"}', 63)
    assert unknown is not None and unknown["error"]["code"] == -32601

    events = [record.event for record in audit.tail(audit.count() - before)]
    refused = [event for event in events if event.event_type == "mcp_request_refused"]
    assert [event.metadata["jsonrpc_code"] for event in reversed(refused)] == [-32700, -32602, -32602, -32601]
    parse_event = refused[-1]
    assert parse_event.metadata["raw_bytes"] == len(secret)
    assert parse_event.input_hash is not None
    assert parse_event.event_id == parse_error["error"]["data"]["audit_event_id"]
    assert "private note" not in json.dumps([event.model_dump(mode="json") for event in events])
    assert stdio.close() == 0
    assert "Traceback" not in stdio.stderr, stdio.stderr
    audit.verify()


QUIET_NOTIFICATIONS: Final = [
    b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
    b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":12345,"reason":"late"}}',
    b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":0.5}}',
    b'{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}',
]
"""The protocol's housekeeping, well formed: nothing runs, nothing is audited."""

DROPPED_NOTIFICATIONS: Final = [
    (b'{"jsonrpc":"2.0","method":"notifications/no_such","params":{"note":"my private note"}}', "unknown_method"),
    (b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"ibkr_health","arguments":{}}}', "unknown_method"),
    (b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":[1]}}', "malformed_params"),
    (b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":"half"}}', "malformed_params"),
]
"""Notifications the server drops unanswered (a `tools/call` without an id runs nothing): one event each."""


@pytest.mark.slow
def test_a_dropped_notification_over_stdio_leaves_one_audit_event_and_housekeeping_none(
    stdio: RawStdio, tmp_path: Path
) -> None:
    """No answer is due to a notification, so the audit event is its only trace: hash and size, no bytes."""
    audit = AuditView(tmp_path / "state")
    stdio.request(b'{"jsonrpc":"2.0","id":"warm","method":"ping"}', "warm")
    before = audit.count()
    for line in QUIET_NOTIFICATIONS:
        stdio.send(line)
    assert stdio.request(b'{"jsonrpc":"2.0","id":"sync","method":"ping"}', "sync") is not None
    time.sleep(0.5)  # notifications run concurrently with the ping: room for a wrong event to show
    assert audit.count() == before
    for line, reason in DROPPED_NOTIFICATIONS:
        stdio.send(line)
        deadline = time.monotonic() + 10
        while audit.count() == before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.05)
        assert audit.count() == before + 1, line
        [record] = audit.tail(1)
        event = record.event
        assert event.event_type == "mcp_notification_dropped"
        assert event.metadata["reason"] == reason
        assert event.metadata["transport"] == "stdio"
        assert event.metadata["jsonrpc_code"] == (-32601 if reason == "unknown_method" else -32602)
        assert isinstance(event.metadata["raw_bytes"], int) and event.metadata["raw_bytes"] > 0
        assert event.input_hash is not None and event.error_code == "INPUT_MALFORMED_REQUEST"
        assert "private note" not in json.dumps(event.model_dump(mode="json"))
        before += 1
    assert [reply for reply in stdio.unsolicited if "id" not in reply or reply.get("id") is None] == []
    assert stdio.close() == 0
    assert "Traceback" not in stdio.stderr, stdio.stderr
    audit.verify()


@pytest.mark.slow
def test_stdio_refuses_an_oversized_line_and_keeps_serving(stdio: RawStdio) -> None:
    """A 5 MB line is drained in pieces, refused with -32600, and the next request is served."""
    stdio.send(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"a" * (5 * 1024 * 1024) + b'"}}')
    reply = stdio.request(b'{"jsonrpc":"2.0","id":"next","method":"ping"}', "next", deadline_s=30)
    assert reply is not None and "result" in reply
    refused = next(reply for reply in stdio.unsolicited if reply.get("id") is None)
    assert refused["error"]["code"] == -32600
