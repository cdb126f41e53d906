"""Routes of the simulator's trading desk (its websocket, `/ws`, is served by the Starlette app)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from ._json import as_object
from ._session import SimHttpError, error_body

if TYPE_CHECKING:
    from ._handlers import SimRequestView
    from .state import SimulatorState

Handler = Callable[[Any, "SimulatorState"], Awaitable[object]]


async def _body(request: SimRequestView) -> dict[str, object]:
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


def _conid(request: SimRequestView) -> int:
    value = request.query_params.get("conid", "")
    try:
        return int(value)
    except ValueError:
        raise SimHttpError(400, error_body(f"Invalid conid: {value!r}")) from None


async def _strikes(request: SimRequestView, state: SimulatorState) -> object:
    query = request.query_params
    return state.trading.secdef_strikes(_conid(request), query.get("sectype", ""), query.get("month", "").upper())


async def _secdef_info(request: SimRequestView, state: SimulatorState) -> object:
    query = request.query_params
    return state.trading.secdef_info(
        _conid(request),
        query.get("sectype", ""),
        query.get("month", "").upper(),
        query.get("strike", ""),
        query.get("right", "").upper(),
    )


async def _scanner_params(request: SimRequestView, state: SimulatorState) -> object:
    return state.trading.scanner_params()


async def _scanner_run(request: SimRequestView, state: SimulatorState) -> object:
    return state.trading.scanner_run(await _body(request))


async def _schedule(request: SimRequestView, state: SimulatorState) -> object:
    query = request.query_params
    return state.trading.schedule(query.get("assetClass", ""), query.get("symbol", ""), query.get("exchange"))


async def _exchange_rate(request: SimRequestView, state: SimulatorState) -> object:
    query = request.query_params
    if not query.get("source") or not query.get("target"):
        raise SimHttpError(400, error_body("source and target are required"))
    return state.trading.exchange_rate(query["source"], query["target"])


async def _pnl(request: SimRequestView, state: SimulatorState) -> object:
    return state.trading.partitioned_pnl()


async def _transactions(request: SimRequestView, state: SimulatorState) -> object:
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
