"""Routes of the simulator's trading desk, and its websocket (`/ws`: `spl` P&L and `sbd` depth)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Final

from starlette.requests import Request
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._json import as_object
from ._session import AuthState, SimHttpError, error_body
from .state import SimulatorState

Handler = Callable[[Request, SimulatorState], Awaitable[object]]


async def _body(request: Request) -> dict[str, object]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        found = as_object(json.loads(raw))
    except ValueError:
        raise SimHttpError(400, error_body("Bad Request: body is not JSON")) from None
    if found is None:
        raise SimHttpError(400, error_body("Bad Request: body is not an object"))
    return found


def _conid(request: Request) -> int:
    value = request.query_params.get("conid", "")
    try:
        return int(value)
    except ValueError:
        raise SimHttpError(400, error_body(f"Invalid conid: {value!r}")) from None


async def _strikes(request: Request, state: SimulatorState) -> object:
    query = request.query_params
    return state.trading.secdef_strikes(_conid(request), query.get("sectype", ""), query.get("month", "").upper())


async def _secdef_info(request: Request, state: SimulatorState) -> object:
    query = request.query_params
    return state.trading.secdef_info(
        _conid(request),
        query.get("sectype", ""),
        query.get("month", "").upper(),
        query.get("strike", ""),
        query.get("right", "").upper(),
    )


async def _scanner_params(request: Request, state: SimulatorState) -> object:
    return state.trading.scanner_params()


async def _scanner_run(request: Request, state: SimulatorState) -> object:
    return state.trading.scanner_run(await _body(request))


async def _schedule(request: Request, state: SimulatorState) -> object:
    query = request.query_params
    return state.trading.schedule(query.get("assetClass", ""), query.get("symbol", ""), query.get("exchange"))


async def _exchange_rate(request: Request, state: SimulatorState) -> object:
    query = request.query_params
    if not query.get("source") or not query.get("target"):
        raise SimHttpError(400, error_body("source and target are required"))
    return state.trading.exchange_rate(query["source"], query["target"])


async def _pnl(request: Request, state: SimulatorState) -> object:
    return state.trading.partitioned_pnl()


async def _transactions(request: Request, state: SimulatorState) -> object:
    return state.trading.transactions(await _body(request))


TRADING_ROUTES: Final[list[tuple[str, Handler, list[str]]]] = [
    ("/iserver/secdef/strikes", _strikes, ["GET"]),
    ("/iserver/secdef/info", _secdef_info, ["GET"]),
    ("/iserver/scanner/params", _scanner_params, ["GET"]),
    ("/iserver/scanner/run", _scanner_run, ["POST"]),
    ("/trsrv/secdef/schedule", _schedule, ["GET"]),
    ("/iserver/exchangerate", _exchange_rate, ["GET"]),
    ("/iserver/account/pnl/partitioned", _pnl, ["GET"]),
    ("/pa/transactions", _transactions, ["POST"]),
]
"""The trading-desk paths the simulator serves, with their methods."""


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
