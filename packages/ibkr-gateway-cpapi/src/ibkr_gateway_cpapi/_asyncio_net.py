"""The broker client's network layer on asyncio's own streams and TLS transport.

httpx2 carries HTTP over httpcore2, whose default network layer wraps each connection in anyio's TLS
stream: every read goes through an `ssl.SSLObject` and a memory BIO in Python and hands up one TLS
record (16 KB at most) at a time. asyncio's TLS transport decrypts whatever has arrived in one go into
the stream's buffer, so a 78 KB positions page comes up in one or two reads instead of five or more
(measured: 0.29 ms less CPU for such a page, 0.06 ms less for a small answer).

`AsyncioBackend` is used by `CpapiClient` when it makes its own HTTP client and runs under asyncio;
under another event loop (trio), or with an injected client or transport, httpcore2's own layer is
kept. Failures surface as the same httpcore2 exceptions anyio's layer raises (connect, read and write
errors and timeouts), so httpx2 and the client map them as before.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any, Final

import anyio
import httpcore2

_READ_LIMIT: Final = 1 << 20
"""asyncio's stream buffer stops reading from the socket past twice this; an answer is read as it comes."""

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


class AsyncioStream(httpcore2.AsyncNetworkStream):
    """One connection: asyncio's reader and writer (plain TCP, then TLS after `start_tls`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to `max_bytes` of what has arrived (waiting for some); `b""` at the end of the stream."""
        try:
            with anyio.fail_after(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError:
            raise httpcore2.ReadTimeout("The read timed out.") from None
        except OSError as exc:  # reset, broken pipe, a bad TLS record (ssl.SSLError is an OSError)
            raise httpcore2.ReadError(str(exc) or type(exc).__name__) from None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send `buffer`, waiting only while the transport's buffer is over its high-water mark."""
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            if not self._writer.transport.get_write_buffer_size():  # all handed to the socket: no wait to bound
                await self._writer.drain()  # reports a lost connection; waits only while over the high-water mark
                return
            with anyio.fail_after(timeout):
                await self._writer.drain()
        except TimeoutError:
            raise httpcore2.WriteTimeout("The write timed out.") from None
        except OSError as exc:
            raise httpcore2.WriteError(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        """Close at once, without waiting for the peer's TLS close (as httpcore2's anyio layer does)."""
        self._writer.transport.abort()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        """Upgrade this connection to TLS in place."""
        try:
            with anyio.fail_after(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError:
            self._writer.transport.abort()
            raise httpcore2.ConnectTimeout("The TLS handshake timed out.") from None
        except OSError as exc:  # a refused certificate is an ssl.SSLCertVerificationError, an OSError too
            self._writer.transport.abort()
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from None
        return self

    def get_extra_info(self, info: str) -> Any:
        """What httpcore2 asks of a connection: its TLS object, addresses, socket, and whether it is readable."""
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            return self._readable()
        return None

    def _readable(self) -> bool:
        """True when an idle connection has something to read: the server closed it, reset it, or sent data.

        asyncio reads the socket as data arrives, so what the server sent may already be in the stream's
        buffer (or its end recorded) rather than on the socket; both are looked at.
        """
        reader = self._reader
        if reader.at_eof() or reader.exception() is not None or self._writer.transport.is_closing():
            return True
        if getattr(reader, "_buffer", b""):  # asyncio keeps what arrived there; no public way to ask
            return True
        raw: socket.socket | None = self._writer.get_extra_info("socket")
        return _socket_readable(raw)


def _socket_readable(raw: socket.socket | None) -> bool:
    """Whether a read on the socket would return at once (data, or the end); a closed socket counts as readable."""
    descriptor = -1 if raw is None else raw.fileno()
    if descriptor < 0:
        return True
    if not hasattr(select, "poll"):  # Windows
        readable, _, _ = select.select([descriptor], [], [], 0)
        return bool(readable)
    poller = select.poll()
    poller.register(descriptor, select.POLLIN)
    return bool(poller.poll(0))


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    """Opens TCP connections with `asyncio.open_connection` (TCP_NODELAY is asyncio's default)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        """A plain TCP connection to `host:port`; httpcore2 starts TLS on it for https."""
        try:
            with anyio.fail_after(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None, limit=_READ_LIMIT
                )
        except TimeoutError:
            raise httpcore2.ConnectTimeout("The connection timed out.") from None
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from None
        raw: socket.socket = writer.get_extra_info("socket")
        for option in socket_options or ():
            raw.setsockopt(*option)  # pyright: ignore[reportCallIssue, reportArgumentType]
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


def use_asyncio_network(client: Any) -> bool:
    """Put `AsyncioBackend` under an httpx2 client's default transport; False (nothing changed) where it cannot.

    httpx2 offers no public way to pass httpcore2 a network backend, so this reaches the connection pool
    of the client's default transport; a client whose transport is built otherwise is left as it is.
    """
    transport = getattr(client, "_transport", None)
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore2.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        return False
    pool._network_backend = AsyncioBackend()  # pyright: ignore[reportPrivateUsage]
    return True
