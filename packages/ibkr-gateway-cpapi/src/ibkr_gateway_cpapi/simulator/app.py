"""The simulator as a Starlette app: CPAPI's routes under `/v1/api` and the `/v1/portal` alias.

The endpoints themselves live in `_handlers` and are shared with fake mode's in-process transport
(`simulator.inprocess`); this module carries them over ASGI (for `simulator serve`, tests that want
an ASGI app, and the websocket). `app.state.simulator` is the `SimulatorState`, so a test holding the
app can drive it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._handlers import CONTROL_PATH, LIVE_SESSION_TOKEN_PATH, PREFIXES, ROUTES, Answer, Handler, control, serve
from ._handlers import live_session_token as _live_session_token_answer
from ._json import as_object
from ._session import AuthState
from .state import SimulatorState

__all__ = ["CONTROL_PATH", "PREFIXES", "create_simulator_app"]


class _DroppedConnection(Response):
    """Starts an answer and drops the connection before its body: the client never learns the outcome."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # In process, httpx2.ASGITransport hands this to the client as is; uvicorn aborts the socket.
        raise httpx2.RemoteProtocolError("Server disconnected without sending a complete response.")


def _render(answer: Answer) -> Response:
    if answer.dropped:
        return _DroppedConnection()
    if isinstance(answer.body, str):
        return PlainTextResponse(answer.body, status_code=answer.status, headers=answer.headers)
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return _render(await serve(request.app.state.simulator, request, handler))

    return endpoint


async def _live_session_token(request: Request) -> Response:
    return _render(await _live_session_token_answer(request.app.state.simulator, request))


async def _control(request: Request) -> Response:
    return _render(await control(request.app.state.simulator, request))


async def websocket_endpoint(websocket: WebSocket) -> None:
    """`/v1/api/ws`: the first frame must carry the session of `/tickle`; then `spl` and `sbd` topics."""
    state: SimulatorState = websocket.app.state.simulator
    await websocket.accept()
    try:
        first = as_object(json.loads(await websocket.receive_text()))
    except (ValueError, WebSocketDisconnect):
        await websocket.close(code=1008)
        return
    if first is None or first.get("session") != state.session_id or state.auth_state != AuthState.AUTHENTICATED:
        await websocket.send_text(json.dumps({"message": "waiting for session"}))
        await websocket.close(code=1008)
        return
    profile = state.profile
    await websocket.send_text(
        json.dumps({"topic": "system", "success": profile.user_name, "isFT": False, "isPaper": profile.is_paper})
    )
    await websocket.send_text(json.dumps({"topic": "sts", "args": {"authenticated": True, "competing": False}}))
    try:
        while True:
            message = (await websocket.receive_text()).strip()
            if message.startswith("spl"):
                await websocket.send_text(json.dumps(state.trading.stream_pnl()))
            elif message.startswith("sbd+"):
                await websocket.send_text(json.dumps(state.trading.book_frame(message)))
            elif message == "tic":
                await websocket.send_text(json.dumps({"topic": "tic", "alive": True, "id": "sim", "lastAccessed": 0}))
            elif message == "ech+hb":
                await websocket.send_text("ech+hb")
    except WebSocketDisconnect:
        return


def _routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [Route(path, _endpoint(handler), methods=methods) for path, handler, methods in ROUTES]
    routes.append(Route(LIVE_SESSION_TOKEN_PATH, _live_session_token, methods=["POST"]))
    routes.append(WebSocketRoute("/ws", websocket_endpoint))
    return routes


def create_simulator_app(state: SimulatorState | None = None) -> Starlette:
    """A CPAPI simulator app; without `state`, a fresh paper login seeded from the packaged data."""
    served = _routes()  # one set of routes under both prefixes: each path's pattern is compiled once
    routes: list[BaseRoute] = [Mount(prefix, routes=served) for prefix in PREFIXES]
    routes.append(Route(CONTROL_PATH, _control, methods=["GET", "POST"]))
    app = Starlette(routes=routes)
    app.state.simulator = state if state is not None else SimulatorState()
    return app
