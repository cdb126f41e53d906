"""A fault-injecting HTTP proxy between the gateway's CPAPI client and the HTTPS simulator, on loopback.

It speaks HTTP/1.1 (h11) to the client over a real socket and forwards each request to the simulator,
except where a rule says otherwise. The faults are what a real network and a real gateway do:

- `latency`: the answer comes, late;
- `reset`: the connection closes before the request is forwarded (the broker never saw it);
- `error_503`: the proxy answers 503 itself (the broker never saw it);
- `truncated`: the broker answered; the client gets the headers and half the body, then a closed socket;
- `dropped`: the broker accepted the request; its answer never reaches the client (closed socket);
- `error_500_after`: the broker accepted the request; the client gets a 500 instead of its answer.

Each rule matches a method and a path fragment and fires a number of times; `hits` counts what reached
the broker, so a test can tell "never sent" from "sent, answer lost".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import anyio
import h11
import httpx2
from anyio.abc import SocketStream

Fault = Literal["latency", "reset", "error_503", "truncated", "dropped", "error_500_after"]
FAULTS: tuple[Fault, ...] = ("latency", "reset", "error_503", "truncated", "dropped", "error_500_after")
NEVER_SENT: frozenset[Fault] = frozenset({"reset", "error_503"})
"""Faults after which the broker has not seen the request."""

LATENCY_S = 0.3
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host"}


@dataclass
class Rule:
    """Inject `fault` into the next `times` requests whose method and path match."""

    method: str
    path_contains: str
    fault: Fault
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and self.path_contains in path


@dataclass
class FaultProxy:
    """The running proxy: its URL, its rules, and what it forwarded."""

    url: str
    rules: list[Rule] = field(default_factory=list[Rule])
    forwarded: list[str] = field(default_factory=list[str])
    injected: list[str] = field(default_factory=list[str])

    def inject(self, method: str, path_contains: str, fault: Fault, times: int = 1) -> None:
        self.rules.append(Rule(method, path_contains, fault, times))

    def _take(self, method: str, path: str) -> Fault | None:
        for rule in self.rules:
            if rule.matches(method, path):
                rule.times -= 1
                self.injected.append(f"{rule.fault} {method} {path}")
                return rule.fault
        return None


async def _read_request(stream: SocketStream, conn: h11.Connection) -> tuple[h11.Request, bytes] | None:
    """One request and its body, or None when the client closed the connection."""
    request: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, body
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _respond(
    stream: SocketStream,
    conn: h11.Connection,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    truncate: bool = False,
) -> None:
    """Send one response; `truncate` sends the full Content-Length but half the body, then closes."""
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    await stream.send(conn.send(h11.Response(status_code=status, headers=all_headers)) or b"")
    if truncate:
        await stream.send(conn.send(h11.Data(data=body[: len(body) // 2])) or b"")
        await stream.aclose()
        return
    await stream.send(conn.send(h11.Data(data=body)) or b"")
    await stream.send(conn.send(h11.EndOfMessage()) or b"")


async def _serve_one(stream: SocketStream, proxy: FaultProxy, upstream: httpx2.AsyncClient) -> None:
    conn = h11.Connection(h11.SERVER)
    async with stream:
        while True:
            read = await _read_request(stream, conn)
            if read is None:
                return
            request, body = read
            method, target = request.method.decode(), request.target.decode()
            fault = proxy._take(method, target)
            if fault == "reset":
                return  # closes the socket: nothing answered, nothing forwarded
            if fault == "error_503":
                await _respond(stream, conn, 503, [(b"content-type", b"application/json")], b'{"error":"injected"}')
            else:
                if fault == "latency":
                    await anyio.sleep(LATENCY_S)
                headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
                answer = await upstream.request(method, target, content=body, headers=headers)
                proxy.forwarded.append(f"{method} {target}")
                if fault == "dropped":
                    return  # the broker did the work; its answer is lost
                out = [
                    (k.encode(), v.encode()) for k, v in answer.headers.items() if k.encode().lower() not in _HOP_BY_HOP
                ]
                if fault == "error_500_after":
                    await _respond(stream, conn, 500, [(b"content-type", b"application/json")], b'{"error":"injected"}')
                elif fault == "truncated":
                    await _respond(stream, conn, answer.status_code, out, answer.content, truncate=True)
                    return
                else:
                    await _respond(stream, conn, answer.status_code, out, answer.content)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return


@asynccontextmanager
async def fault_proxy(upstream_url: str) -> AsyncIterator[FaultProxy]:
    """A proxy on a free loopback port in front of `upstream_url` (the HTTPS simulator, self-signed)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    proxy = FaultProxy(url=f"http://127.0.0.1:{port}")
    async with httpx2.AsyncClient(base_url=upstream_url, verify=False, timeout=10) as upstream:

        async def handle(stream: SocketStream) -> None:
            try:
                await _serve_one(stream, proxy, upstream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.ProtocolError):
                pass

        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            try:
                yield proxy
            finally:
                tg.cancel_scope.cancel()
