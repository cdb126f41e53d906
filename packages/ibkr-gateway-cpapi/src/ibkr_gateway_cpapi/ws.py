"""A small client for CPAPI's websocket (`/v1/api/ws`): open, authenticate, subscribe, read frames.

CPAPI streams some data only over the websocket: the order book (`sbd+{acct}+{conid}`) and the
account P&L (`spl`, which also primes `/iserver/account/pnl/partitioned`). A connection sends the
session id of `/tickle` as its first frame, then `TOPIC+ARGS` text frames, and receives JSON
objects with a `topic`. Two connectors share one interface: `WebsocketConnector` (the `websockets`
package, over TLS to a real gateway or `ibkr-agent simulator serve`) and `AsgiConnector` (fake
mode's in-process simulator app, no socket).

The base for streaming later: `open()` yields a `WsConnection` whose `frames()` iterate forever.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

import anyio
from ibkr_gateway_core.errors import ErrorCode, GatewayError

MAX_FRAME_BYTES: Final = 1024 * 1024
"""Largest frame accepted; CPAPI's frames are small."""

Message = MutableMapping[str, Any]


class WsConnection(Protocol):
    """One open websocket to CPAPI."""

    async def send(self, text: str) -> None:
        """Send one text frame."""
        ...

    async def receive(self) -> str:
        """The next text frame (binary frames are decoded as UTF-8)."""
        ...


class WsConnector(Protocol):
    """Opens authenticated websocket connections to one CPAPI."""

    def open(self, session_id: str) -> AbstractConnection:
        """An async context manager yielding a connection that already sent `{"session": ...}`."""
        ...


AbstractConnection = Any
"""`AbstractAsyncContextManager[WsConnection]`, spelled loosely for the two implementations."""


def ws_url(base_url: str) -> str:
    """`https://host:5000/v1/api` → `wss://host:5000/v1/api/ws`."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))


def _unavailable(what: str) -> GatewayError:
    return GatewayError(ErrorCode.BROKER_BACKEND_UNAVAILABLE, f"The broker's websocket {what}.")


class WebsocketConnector:
    """Real websocket connections with the `websockets` package."""

    def __init__(self, base_url: str, *, verify_tls: bool, timeout_s: float) -> None:
        self._url = ws_url(base_url)
        self._verify_tls = verify_tls
        self._timeout_s = timeout_s

    @asynccontextmanager
    async def open(self, session_id: str) -> AsyncGenerator[WsConnection]:
        """Connect, send the session frame, yield; closed on exit."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        context: ssl.SSLContext | None = None
        if self._url.startswith("wss:"):
            context = ssl.create_default_context()
            if not self._verify_tls:  # allowed by the config only for a loopback broker
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        try:
            connection = await connect(
                self._url,
                ssl=context,
                open_timeout=self._timeout_s,
                max_size=MAX_FRAME_BYTES,
                additional_headers={"Cookie": "api=" + json.dumps({"session": session_id}, separators=(",", ":"))},
                user_agent_header="ClientPortalGW/1",
            )
        except (OSError, WebSocketException, TimeoutError):
            raise _unavailable("could not be opened") from None
        try:
            wrapped = _WebsocketsConnection(connection)
            await wrapped.send(json.dumps({"session": session_id}))
            yield wrapped
        finally:
            await connection.close()


class _WebsocketsConnection:
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def send(self, text: str) -> None:
        from websockets.exceptions import WebSocketException

        try:
            await self._connection.send(text)
        except WebSocketException:
            raise _unavailable("closed while sending") from None

    async def receive(self) -> str:
        from websockets.exceptions import WebSocketException

        try:
            frame = await self._connection.recv()
        except WebSocketException:
            raise _unavailable("closed while reading") from None
        return frame if isinstance(frame, str) else bytes(frame).decode("utf-8", "replace")


class AsgiConnector:
    """Websocket connections into an ASGI app in this process (fake mode's simulator)."""

    def __init__(self, app: Callable[[], Any], *, path: str = "/v1/api/ws") -> None:
        self._app = app
        self._path = path

    @asynccontextmanager
    async def open(self, session_id: str) -> AsyncGenerator[WsConnection]:
        """Run the app's websocket endpoint in a task; yield a connection to it."""
        app = self._app()
        to_app, app_inbox = anyio.create_memory_object_stream[Message](64)
        app_outbox, from_app = anyio.create_memory_object_stream[Message](64)
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "http_version": "1.1",
            "path": self._path,
            "raw_path": self._path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"cpapi-simulator.invalid")],
            "client": ("127.0.0.1", 0),
            "server": ("cpapi-simulator.invalid", 80),
            "subprotocols": [],
        }
        async with to_app, app_inbox, app_outbox, from_app, anyio.create_task_group() as tasks:

            async def run() -> None:
                try:
                    await app(scope, app_inbox.receive, app_outbox.send)
                finally:
                    await app_outbox.aclose()

            tasks.start_soon(run)
            await to_app.send({"type": "websocket.connect"})
            accepted = await from_app.receive()
            if accepted.get("type") != "websocket.accept":
                raise _unavailable("was refused")
            connection = _AsgiConnection(to_app, from_app)
            await connection.send(json.dumps({"session": session_id}))
            try:
                yield connection
            finally:
                tasks.cancel_scope.cancel()


class _AsgiConnection:
    def __init__(self, to_app: Any, from_app: Any) -> None:
        self._to_app = to_app
        self._from_app = from_app

    async def send(self, text: str) -> None:
        await self._to_app.send({"type": "websocket.receive", "text": text})

    async def receive(self) -> str:
        try:
            message = cast(Message, await self._from_app.receive())
        except anyio.EndOfStream:
            raise _unavailable("closed while reading") from None
        if message.get("type") == "websocket.close":
            raise _unavailable("was closed by the broker")
        text = message.get("text")
        if isinstance(text, str):
            return text
        data = message.get("bytes")
        return bytes(data).decode("utf-8", "replace") if isinstance(data, bytes | bytearray) else ""


async def frames(connection: WsConnection) -> AsyncIterator[dict[str, object]]:
    """JSON object frames of a connection, skipping anything else; ends never (the caller bounds it)."""
    while True:
        text = await connection.receive()
        try:
            frame: object = json.loads(text)
        except ValueError:
            continue
        if isinstance(frame, dict):
            yield cast(dict[str, object], frame)


async def first_frame(
    connector: WsConnector,
    session_id: str,
    *,
    subscribe: str,
    unsubscribe: str | None,
    topic: str,
    timeout_s: float,
) -> dict[str, object]:
    """Subscribe, return the first frame whose `topic` is `topic`, unsubscribe and close.

    Raises:
        GatewayError: `BROKER_BACKEND_UNAVAILABLE` when the socket fails, `MARKET_DATA_UNAVAILABLE`
            when no such frame arrives within `timeout_s`.
    """
    async with connector.open(session_id) as connection:
        await connection.send(subscribe)
        found: dict[str, object] | None = None
        with anyio.move_on_after(timeout_s):
            async for frame in frames(connection):
                if frame.get("topic") == topic:
                    found = frame
                    break
        if unsubscribe is not None:
            try:
                await connection.send(unsubscribe)
            except GatewayError:
                pass
    if found is None:
        raise GatewayError(
            ErrorCode.MARKET_DATA_UNAVAILABLE, f"The broker sent no {topic.split('+')[0]} data within {timeout_s:g} s."
        )
    return found
