"""Every inbound MCP message answered and audited, whatever bytes the client sent.

The SDK drops a line it cannot parse (no reply: the client waits forever) and hands some hostile
values on to the tool (a non-finite number ends as an uncoded "Error executing tool ..." and a
traceback). So each message is screened here first, on its raw bytes, before the SDK sees it:

- not UTF-8 JSON at all: JSON-RPC `-32700` (parse error), `id` null;
- JSON but no JSON-RPC message (an array, no `method`, a bad `id`), or over the size cap: `-32600`;
- a hostile value anywhere in the message (a non-finite number, an integer of thousands of digits,
  a lone surrogate or invalid UTF-8 inside a string, nesting deeper than the limit): in `tools/call`
  the tool's coded `INPUT_*` error (a tool result with structured content, like every other
  refusal); in any other request `-32602` with the same code in `error.data`.

Each refusal writes one audit event: a `tools/call` through `Gateway.record_refusal` (as a refused
tool call), any other as `mcp_request_refused` with the keyed hash and the size of the raw bytes,
never the bytes. Argument-shape errors the SDK itself finds (`-32602`, `-32601`) are audited the
same way by `ProtocolAuditMiddleware`. The stdio transport (`screened_stdio`) and the HTTP app use
the same `screen_message`.

A notification gets no answer, so one the server drops is audited instead: an unknown method, or a
known one whose params the protocol's model refuses, leaves one `mcp_notification_dropped` event
(hash and size, as above). The protocol's own housekeeping (`notifications/initialized`,
`notifications/cancelled`, `notifications/progress`, `notifications/roots/list_changed`), when well
formed, runs no operation and stays quiet; `docs/safety.md` says why.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Final, Literal, Protocol, cast

import anyio
import anyio.to_thread
from ibkr_gateway_core.audit import AuditEvent
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.input_limits import MAX_DEPTH, safe_jsonable, screen_arguments
from ibkr_gateway_core.principal import Principal
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from mcp.types.methods import SPEC_CLIENT_NOTIFICATION_METHODS, validate_client_notification
from pydantic import ValidationError

if TYPE_CHECKING:
    from mcp.server.context import CallNext, ServerRequestContext

    from .server import GatewayMCPServer


class WriteStream(Protocol):
    """The send side of a transport: where a refusal's reply goes, in turn with the SDK's own."""

    async def send(self, item: SessionMessage, /) -> None:
        """Queue one message for the client."""
        ...


logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
"""One stdio line (one JSON-RPC message) holds at most this many bytes, as an HTTP body by default."""

ENVELOPE_DEPTH: Final = 3
"""Levels above a tool's arguments: the message, `params`, `arguments`."""

MAX_MESSAGE_DEPTH: Final = MAX_DEPTH + ENVELOPE_DEPTH
"""Deepest nesting a message may have; deeper parts are cut before parsing and the message refused."""

EVENT_TYPE: Final = "mcp_request_refused"
"""Audit event type of a message refused before any tool ran."""

DROPPED_NOTIFICATION_EVENT: Final = "mcp_notification_dropped"
"""Audit event type of a notification the server does not act on (unknown method, malformed params)."""

Transport = Literal["stdio", "http"]
RequestId = int | str

_TOKENS: Final = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
"""A JSON string (skipped whole) or one bracket: enough to measure nesting without parsing."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why one inbound message is answered here instead of reaching the SDK."""

    error: GatewayError
    """The coded refusal (`INPUT_*`)."""
    jsonrpc_code: int
    """`-32700`, `-32600` or `-32602`; for a refused `tools/call` the reply is a tool error instead."""
    request_id: RequestId | None
    """The message's id when it could be read; None for a notification, a response or unreadable bytes."""
    method: str | None
    tool: str | None
    """For `tools/call`: the tool named; its arguments are `arguments`."""
    arguments: object
    raw: bytes
    raw_size: int | None = None
    """The size when it differs from `len(raw)`: a line too long to keep is audited by its size alone."""

    @property
    def is_tool_call(self) -> bool:
        """A `tools/call` request whose refusal is answered as a coded tool error."""
        return self.tool is not None and self.request_id is not None


class _Flags:
    """What the tolerant parse of one message met on the way."""

    def __init__(self) -> None:
        self.code: ErrorCode | None = None

    def flag(self, code: ErrorCode) -> None:
        if self.code is None:
            self.code = code

    def constant(self, name: str) -> float:
        self.flag(ErrorCode.INPUT_NON_FINITE_NUMBER)
        return float(name.replace("Infinity", "inf"))

    def integer(self, digits: str) -> int:
        if len(digits.lstrip("-")) > 4000:  # Python refuses to read more than 4300 digits
            self.flag(ErrorCode.INPUT_NUMBER_TOO_LARGE)
            return 0
        return int(digits)


def _cut_deep(text: str, limit: int) -> str | None:
    """`text` with every container opened deeper than `limit` replaced by `null`; None if none is."""
    if text.count("[") + text.count("{") <= limit:
        return None
    depth = 0
    spans: list[tuple[int, int]] = []
    start = -1
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token[0] == '"':
            continue
        if token in "[{":
            depth += 1
            if depth == limit + 1:
                start = match.start()
        else:
            if depth == limit + 1 and start >= 0:
                spans.append((start, match.end()))
                start = -1
            depth -= 1
    if start >= 0:  # unterminated: cut to the end, the parse then fails as it should
        spans.append((start, len(text)))
    if not spans:
        return None
    parts: list[str] = []
    position = 0
    for begin, end in spans:
        parts.append(text[position:begin])
        parts.append("null")
        position = end
    parts.append(text[position:])
    return "".join(parts)


def _request_id(value: object) -> RequestId | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    if isinstance(value, str) and screen_arguments(value) is not None:
        return None  # an id that cannot be written back as UTF-8
    return value


def _malformed(message: str) -> GatewayError:
    return GatewayError(ErrorCode.INPUT_MALFORMED_REQUEST, message)


def screen_message(raw: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Refusal | None:
    """The refusal of one raw JSON-RPC message, or None when the SDK may read it as it is."""
    if len(raw) > max_bytes:
        error = _malformed(f"The message has {len(raw)} bytes; at most {max_bytes} are read.")
        return Refusal(error, INVALID_REQUEST, None, None, None, None, raw)
    flags = _Flags()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        flags.flag(ErrorCode.INPUT_INVALID_UNICODE)
        text = raw.decode("utf-8", "replace")
    cut = _cut_deep(text, MAX_MESSAGE_DEPTH)
    if cut is not None:
        flags.flag(ErrorCode.INPUT_TOO_DEEP)
        text = cut
    try:
        message: object = json.loads(text, parse_constant=flags.constant, parse_int=flags.integer)
    except (ValueError, RecursionError):
        return Refusal(_malformed("The message is not valid JSON."), PARSE_ERROR, None, None, None, None, raw)
    if not isinstance(message, dict):
        error = _malformed("The message is not a JSON-RPC 2.0 object (batches are not accepted).")
        return Refusal(error, INVALID_REQUEST, None, None, None, None, raw)
    envelope = cast(dict[str, object], message)
    request_id = _request_id(envelope.get("id"))
    method = envelope.get("method")
    method_name = method if isinstance(method, str) and screen_arguments(method) is None else None
    params = envelope.get("params")
    tool: str | None = None
    arguments: object = None
    if method_name == "tools/call" and isinstance(params, dict):
        call = cast(dict[str, object], params)
        name = call.get("name")
        if isinstance(name, str):
            tool = name if screen_arguments(name) is None else name.encode("utf-8", "replace").decode("utf-8")
            arguments = call.get("arguments")
    if envelope.get("jsonrpc") != "2.0" or ("id" in envelope and request_id is None and "method" in envelope):
        error = _malformed("The message is not a JSON-RPC 2.0 request (check `jsonrpc` and `id`).")
        return Refusal(error, INVALID_REQUEST, request_id, method_name, None, None, raw)
    is_response = (
        "method" not in envelope and request_id is not None and (("result" in envelope) != ("error" in envelope))
    )
    if "method" not in envelope and not is_response:
        error = _malformed("The message is neither a request, a notification nor a response.")
        return Refusal(error, INVALID_REQUEST, None, None, None, None, raw)
    if "method" in envelope and method_name is None:
        error = _malformed("The message's `method` is not a string.")
        return Refusal(error, INVALID_REQUEST, request_id, None, None, None, raw)
    hostile = screen_arguments(envelope)
    code = flags.code or (hostile.code if hostile is not None else None)
    if code is None:
        try:  # what the SDK's reader would drop unanswered: an envelope its own model refuses
            jsonrpc_message_adapter.validate_python(envelope, by_name=False)
        except ValidationError:
            error = _malformed("The message is not a valid JSON-RPC 2.0 message (e.g. `params` must be an object).")
            return Refusal(error, INVALID_REQUEST, request_id, method_name, None, None, raw)
        return None
    detail = hostile.message if hostile is not None and hostile.code == code else _FLAG_MESSAGES[code]
    return Refusal(GatewayError(code, detail), INVALID_PARAMS, request_id, method_name, tool, arguments, raw)


_FLAG_MESSAGES: Final[Mapping[ErrorCode, str]] = {
    ErrorCode.INPUT_NON_FINITE_NUMBER: "The message holds a number that is not finite (NaN or Infinity).",
    ErrorCode.INPUT_NUMBER_TOO_LARGE: "The message holds an integer of more than 4000 digits.",
    ErrorCode.INPUT_INVALID_UNICODE: "The message is not valid UTF-8.",
    ErrorCode.INPUT_TOO_DEEP: f"The message nests deeper than {MAX_MESSAGE_DEPTH} levels.",
}


# ------------------------------------------------------------------------------------------ answers


async def answer(server: GatewayMCPServer, refusal: Refusal, transport: Transport) -> dict[str, Any] | None:
    """Audit `refusal` and build the JSON-RPC reply (None for a message that takes no reply)."""
    principal = server.current_principal()
    if refusal.is_tool_call:
        from .server import error_result

        assert refusal.tool is not None and refusal.request_id is not None
        error = await server.gateway.record_refusal(
            refusal.tool,
            refusal.error,
            arguments=_arguments_mapping(refusal.arguments),
            principal=principal,
            request_id=str(refusal.request_id),
        )
        result = error_result(error).model_dump(by_alias=True, mode="json", exclude_none=True)
        return JSONRPCResponse(jsonrpc="2.0", id=refusal.request_id, result=result).model_dump(by_alias=True)
    event_id = await audit_protocol_refusal(
        server,
        principal,
        code=refusal.error.code,
        jsonrpc_code=refusal.jsonrpc_code,
        method=refusal.method,
        request_id=refusal.request_id,
        raw=refusal.raw,
        raw_size=refusal.raw_size,
        transport=transport,
    )
    if refusal.request_id is None and refusal.jsonrpc_code == INVALID_PARAMS:
        return None  # a notification or a response: nothing to answer
    return error_reply(refusal.request_id, refusal.jsonrpc_code, refusal.error, event_id)


def error_reply(
    request_id: RequestId | None, jsonrpc_code: int, error: GatewayError, audit_event_id: str | None
) -> dict[str, Any]:
    """A JSON-RPC error naming the stable code and the audit event in `error.data`."""
    text = {PARSE_ERROR: "Parse error", INVALID_REQUEST: "Invalid request", INVALID_PARAMS: "Invalid params"}
    data = {"code": error.code.value, "message": error.message, "user_action": error.user_action}
    if audit_event_id is not None:
        data["audit_event_id"] = audit_event_id
    reply = JSONRPCError(
        jsonrpc="2.0",
        id=request_id,
        error=ErrorData(code=jsonrpc_code, message=f"{text.get(jsonrpc_code, 'Error')}: {error.message}", data=data),
    )
    return reply.model_dump(by_alias=True)


def _arguments_mapping(arguments: object) -> Mapping[str, object] | None:
    if arguments is None:
        return None
    if isinstance(arguments, Mapping):
        return cast(Mapping[str, object], arguments)
    return {"value": arguments}


async def audit_protocol_refusal(
    server: GatewayMCPServer,
    principal: Principal,
    *,
    code: ErrorCode,
    jsonrpc_code: int,
    method: str | None,
    request_id: RequestId | None,
    raw: bytes,
    transport: Transport,
    raw_size: int | None = None,
    event_type: str = EVENT_TYPE,
    reason: str | None = None,
) -> str | None:
    """Append one `mcp_request_refused` (or `event_type`) event: the raw bytes' keyed hash and size, never the bytes."""
    gateway = server.gateway
    metadata: dict[str, str | int] = {
        "transport": transport,
        "jsonrpc_code": jsonrpc_code,
        "raw_bytes": len(raw) if raw_size is None else raw_size,
    }
    if reason is not None:
        metadata["reason"] = reason
    event = AuditEvent(
        event_type=event_type,
        timestamp=datetime.now(UTC),
        principal_kind=principal.kind,
        principal_subject=principal.subject,
        principal_issuer=principal.issuer,
        principal_token_id_hash=principal.token_id_hash,
        principal_client_id=principal.client_id,
        scopes=sorted(scope.value for scope in principal.scopes),
        tool_name=method[:64] if method else None,
        decision="refuse",
        result_status="refused",
        error_code=code.value,
        request_id=None if request_id is None else str(request_id),
        session_id=gateway.session_id,
        input_hash=gateway.audit.hash_payload(raw.decode("latin-1")),  # byte for byte, under the audit key
        metadata=dict(metadata),
    )
    try:
        return (await gateway.audit.append(event)).event.event_id
    except Exception:  # the client still gets its answer; the failure is logged
        logger.exception("could not audit a refused MCP message")
        return None


def dropped_notification_reason(method: str, params: Mapping[str, Any] | None, version: str) -> str | None:
    """Why the server drops this notification unanswered (`unknown_method`, `malformed_params`); None if it is read.

    The gateway registers no notification handler of its own, so only the protocol's client
    notifications are read, and only when their params fit the protocol's model at `version`.
    """
    if method not in SPEC_CLIENT_NOTIFICATION_METHODS:
        return "unknown_method"
    try:
        validate_client_notification(method, version, params)
    except KeyError:
        return "unknown_method"  # not defined at the negotiated version
    except (ValueError, ValidationError):  # ValidationError is a ValueError; an unknown version too
        return "malformed_params"
    return None


class ProtocolAuditMiddleware:
    """Audits the protocol errors the SDK itself answers (bad params `-32602`, unknown method `-32601`).

    Also every notification the server drops (`dropped_notification_reason`): it gets no answer, so
    the audit event is the only trace it leaves.
    """

    def __init__(self, server: GatewayMCPServer, transport: Callable[[], Transport]) -> None:
        self._server = server
        self._transport = transport

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        """Pass the message on; on a protocol error, audit it and re-raise it unchanged."""
        if ctx.request_id is None:
            reason = dropped_notification_reason(ctx.method, ctx.params, ctx.protocol_version)
            if reason is not None:
                jsonrpc_code = METHOD_NOT_FOUND if reason == "unknown_method" else INVALID_PARAMS
                await self._audit(ctx, jsonrpc_code, ErrorCode.INPUT_MALFORMED_REQUEST, reason=reason)
            return await call_next(ctx)
        try:
            return await call_next(ctx)
        except ValidationError:
            await self._audit(ctx, INVALID_PARAMS, ErrorCode.INPUT_MALFORMED_REQUEST)
            raise
        except MCPError as exc:
            if exc.error.code in (INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND):
                await self._audit(ctx, exc.error.code, ErrorCode.INPUT_MALFORMED_REQUEST)
            raise

    async def _audit(
        self, ctx: ServerRequestContext[Any, Any], jsonrpc_code: int, code: ErrorCode, *, reason: str | None = None
    ) -> None:
        params = safe_jsonable(ctx.params)
        raw = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        request_id = ctx.request_id if isinstance(ctx.request_id, int | str) else None
        await audit_protocol_refusal(
            self._server,
            self._server.current_principal(),
            code=code,
            jsonrpc_code=jsonrpc_code,
            method=ctx.method,
            request_id=request_id,
            raw=raw,
            transport=self._transport(),
            event_type=EVENT_TYPE if reason is None else DROPPED_NOTIFICATION_EVENT,
            reason=reason,
        )


# ------------------------------------------------------------------------------------------ stdio


def _claim_stdin() -> tuple[IO[bytes], Callable[[], None]]:
    """The wire on a private descriptor, fd 0 pointed at the null device meanwhile (as the SDK does)."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stdin.buffer, lambda: None
    if fd != 0:
        return sys.stdin.buffer, lambda: None
    try:
        private = os.dup(0)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    except OSError:
        return sys.stdin.buffer, lambda: None
    os.set_inheritable(private, False)

    def restore() -> None:
        with suppress(OSError):
            os.dup2(private, 0)

    # closefd=False: a worker thread may still block reading it after the transport exits
    return os.fdopen(private, "rb", closefd=False), restore


class ScreenedLines:
    """stdin as the SDK reads it (`async for line`), each line screened first; refusals answered here."""

    def __init__(self, server: GatewayMCPServer, source: IO[bytes], *, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._server = server
        self._source = source
        self._max_bytes = max_bytes
        self._write: WriteStream | None = None
        self._attached = anyio.Event()

    def attach(self, write_stream: WriteStream) -> None:
        """Where refusals are answered: the transport's write stream, shared with the SDK."""
        self._write = write_stream
        self._attached.set()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _read_line(self) -> bytes | int | None:
        """One line without its newline; None at end of input; the size of a line too long to keep."""
        line = await anyio.to_thread.run_sync(self._source.readline, self._max_bytes + 1)
        if not line:
            return None
        if len(line) > self._max_bytes and not line.endswith(b"\n"):
            total = len(line)
            while line and not line.endswith(b"\n"):  # drained in bounded pieces, never held whole
                line = await anyio.to_thread.run_sync(self._source.readline, 1 << 20)
                total += len(line)
            return total
        return line.rstrip(b"\r\n")

    async def _lines(self) -> AsyncIterator[str]:
        while True:
            raw = await self._read_line()
            if raw is None:
                return
            if isinstance(raw, int):
                error = _malformed(f"The message has {raw} bytes; at most {self._max_bytes} are read.")
                refusal = Refusal(error, INVALID_REQUEST, None, None, None, None, b"", raw_size=raw)
            elif not raw.strip():
                continue  # a blank line is no message
            else:
                refusal = screen_message(raw, max_bytes=self._max_bytes)
            if refusal is None:
                assert isinstance(raw, bytes)
                yield raw.decode("utf-8")
                continue
            reply = await answer(self._server, refusal, "stdio")
            if reply is not None:
                await self._attached.wait()
                assert self._write is not None
                await self._write.send(SessionMessage(jsonrpc_message_adapter.validate_python(reply)))


@asynccontextmanager
async def screened_stdio(
    server: GatewayMCPServer,
) -> AsyncGenerator[tuple[Any, Any], None]:
    """The SDK's stdio transport reading through `ScreenedLines`; yields (read stream, write stream)."""
    from mcp.server.stdio import stdio_server

    source, restore = _claim_stdin()
    lines = ScreenedLines(server, source)
    try:
        async with stdio_server(stdin=cast(Any, lines)) as (read_stream, write_stream):
            lines.attach(write_stream)
            yield read_stream, write_stream
    finally:
        restore()
