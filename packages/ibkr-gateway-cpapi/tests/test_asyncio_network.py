"""The client's network layer on asyncio's TLS transport, against real loopback TLS servers that misbehave.

Each failure must come out as it did over httpcore2's anyio layer: a read refused or cut off is
`BROKER_BACKEND_UNAVAILABLE`, the same for a write the broker may have acted on is `BROKER_OUTCOME_UNKNOWN`,
a certificate the client refuses means nothing was sent, and a keep-alive connection the server closed
while idle is never used again (a write on it would be an outcome unknown for nothing).
"""

import asyncio
import json
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi._asyncio_net import AsyncioBackend  # pyright: ignore[reportPrivateUsage]
from ibkr_gateway_cpapi.client import CpapiClient
from ibkr_gateway_cpapi.serve import _make_self_signed_cert  # pyright: ignore[reportPrivateUsage]

pytestmark = pytest.mark.anyio

READ_OR_WRITE = [(False, "BROKER_BACKEND_UNAVAILABLE"), (True, "BROKER_OUTCOME_UNKNOWN")]
"""A request that failed after it was sent: a read is unavailable, a write's outcome is unknown."""

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def tls_server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback TLS server running `handler` per connection: (its URL, one entry per connection accepted)."""
    certs = _make_self_signed_cert()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)
    connections: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):  # the test is over
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=context)
    try:
        port = server.sockets[0].getsockname()[1]
        yield f"https://127.0.0.1:{port}", connections
    finally:
        server.close()
        if certs.directory is not None:
            shutil.rmtree(certs.directory, ignore_errors=True)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and body (by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


def answer(body: bytes, *, close: bool = False) -> bytes:
    connection = b"close" if close else b"keep-alive"
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: "
        + connection
        + b"\r\n\r\n"
        + body
    )


async def test_under_asyncio_the_client_reads_large_answers_through_asyncio_tls() -> None:
    """The client's own HTTP client runs on `AsyncioBackend`; a 600 KB answer arrives whole and decodes."""
    rows = [{"conid": n, "ticker": f"SIM{n:04d}", "name": "x" * 40} for n in range(8000)]
    body = json.dumps(rows).encode()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(answer(body))
            await writer.drain()

    async with tls_server(handler) as (url, connections), CpapiClient(url, verify_tls=False) as client:
        with anyio.fail_after(10):
            assert await client.get("/portfolio/accounts") == rows
            assert await client.get("/portfolio/accounts") == rows
        pool = client._http._transport._pool  # type: ignore[union-attr]  # pyright: ignore
        assert isinstance(pool._network_backend, AsyncioBackend)  # pyright: ignore
        assert len(connections) == 1  # kept alive


async def test_a_connection_the_server_closed_while_idle_is_not_reused_for_a_write() -> None:
    """The server answers one request per connection, then closes it: each request, a write included, succeeds."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b'{"ok": true}'))  # says keep-alive, then closes anyway (as servers do when idle)
        await writer.drain()
        writer.close()

    async with tls_server(handler) as (url, connections), CpapiClient(url, verify_tls=False) as client:
        with anyio.fail_after(10):
            assert await client.get("/portfolio/accounts") == {"ok": True}
            await anyio.sleep(0.2)  # the close reaches the client while its connection is idle
            assert await client.post("/iserver/account/DU1/orders", {"orders": []}, mutating=True) == {"ok": True}
            await anyio.sleep(0.2)
            assert await client.get("/portfolio/accounts") == {"ok": True}
        assert len(connections) == 4  # one per request: the write's priming call (/iserver/accounts) is one too


@pytest.mark.parametrize(("mutating", "code"), READ_OR_WRITE)
async def test_an_answer_cut_off_mid_body(mutating: bool, code: str) -> None:
    """Headers promise 100,000 bytes, 1,000 come, then the connection drops."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b" " * 1000)
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.transport.abort()

    async with tls_server(handler) as (url, _), CpapiClient(url, verify_tls=False) as client:
        with anyio.fail_after(10), pytest.raises(GatewayError) as caught:
            await client.post("/tickle", {}, mutating=mutating)  # a path needing no priming call first
    assert caught.value.code == ErrorCode(code)


@pytest.mark.parametrize(("mutating", "code"), READ_OR_WRITE)
async def test_a_server_that_never_answers_times_out(mutating: bool, code: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with tls_server(handler) as (url, _), CpapiClient(url, verify_tls=False, timeout_s=0.5) as client:
        with anyio.fail_after(10), pytest.raises(GatewayError) as caught:
            await client.post("/tickle", {}, mutating=mutating)  # a path needing no priming call first
    assert caught.value.code == ErrorCode(code)
    assert "in time" in caught.value.message


async def test_a_certificate_the_client_refuses_means_nothing_was_sent() -> None:
    """With verification on, the self-signed certificate fails the handshake: an ordinary error, even for a write."""
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))

    async with tls_server(handler) as (url, _), CpapiClient(url, verify_tls=True) as client:
        with anyio.fail_after(10), pytest.raises(GatewayError) as caught:
            await client.post("/tickle", {}, mutating=True)
    assert caught.value.code == ErrorCode.BROKER_BACKEND_UNAVAILABLE
    assert "cannot be reached" in caught.value.message
    assert seen == []


async def test_a_connection_reset_before_any_answer_is_backend_unavailable_for_a_read() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.transport.abort()

    async with tls_server(handler) as (url, _), CpapiClient(url, verify_tls=False) as client:
        with anyio.fail_after(10), pytest.raises(GatewayError) as caught:
            await client.get("/portfolio/accounts")
    assert caught.value.code == ErrorCode.BROKER_BACKEND_UNAVAILABLE


async def test_a_body_larger_than_the_socket_buffers_is_sent_whole() -> None:
    """A write past the transport's high-water mark waits for the socket, then the answer comes as usual."""
    received: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            received.append(len(request))
            writer.write(answer(b'{"ok": true}'))
            await writer.drain()

    big = {"notes": "x" * 4_000_000}
    async with tls_server(handler) as (url, _), CpapiClient(url, verify_tls=False) as client:
        with anyio.fail_after(20):
            assert await client.post("/tickle", big) == {"ok": True}
    assert received and received[-1] > 4_000_000


async def test_a_server_that_stops_reading_makes_a_write_time_out() -> None:
    """The server reads nothing: the write fills the socket buffers and times out; a write's outcome is unknown."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with tls_server(handler) as (url, _), CpapiClient(url, verify_tls=False, timeout_s=0.5) as client:
        with anyio.fail_after(20), pytest.raises(GatewayError) as caught:
            await client.post("/tickle", {"notes": "x" * 50_000_000}, mutating=True)
    assert caught.value.code == ErrorCode.BROKER_OUTCOME_UNKNOWN
    assert "in time" in caught.value.message
