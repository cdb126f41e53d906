"""The simulator as a Starlette app: CPAPI's routes under `/v1/api` and the `/v1/portal` alias.

Each endpoint admits the request through `SimulatorState` (auth, priming, injected failures),
parses query and body, calls one state method and renders the result as JSON. `app.state.simulator`
is the `SimulatorState`, so a test holding the app can drive it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Final

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from ._json import as_array, as_object
from ._session import AuthState, SimConnectionDropped, SimHttpError, SimRequest, error_body
from ._trading_routes import TRADING_ROUTES, websocket_endpoint
from .state import SimulatorState

PREFIXES: Final = ("/v1/api", "/v1/portal")
"""Where the routes are mounted; CPAPI answers the same paths under both."""

Handler = Callable[[Request, SimulatorState], Awaitable[object]]


class _DroppedConnection(Response):
    """Starts an answer and drops the connection before its body: the client never learns the outcome."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # In process, httpx2.ASGITransport hands this to the client as is; uvicorn aborts the socket.
        raise httpx2.RemoteProtocolError("Server disconnected without sending a complete response.")


def _render(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    if isinstance(body, str):
        return PlainTextResponse(body, status_code=status, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers)


def _sub_path(request: Request) -> str:
    path = request.url.path
    for prefix in PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        state: SimulatorState = request.app.state.simulator
        path = _sub_path(request)
        async with state.book_transaction(request.method, path):
            try:
                if state.oauth is not None:  # IBKR's Web API: every request signed with a live session token
                    state.oauth.verify(
                        request.method,
                        str(request.url),
                        request.query_params.multi_items(),
                        request.headers.get("authorization"),
                    )
                state.admit(request.method, path, request.url.query)
                return _render(200, await handler(request, state))
            except SimHttpError as exc:
                return _render(exc.status, exc.body, exc.headers)
            except SimConnectionDropped:
                return _DroppedConnection()  # the book keeps the change: it is saved before the drop

    return endpoint


async def _live_session_token(request: Request) -> Response:
    """`POST /oauth/live_session_token`: IBKR's half of the handshake (only with OAuth switched on)."""
    state: SimulatorState = request.app.state.simulator
    if state.oauth is None:
        return _render(404, error_body("Not Found"))
    state.session.requests.append(SimRequest(request.method, _sub_path(request), request.url.query))
    try:
        answer = state.oauth.live_session_token(
            request.method, str(request.url), request.query_params.multi_items(), request.headers.get("authorization")
        )
    except SimHttpError as exc:
        return _render(exc.status, exc.body, exc.headers)
    if state.session.state == AuthState.NO_SESSION:
        state.session.log_in_sso_only()  # logged in; `/iserver` needs `ssodh/init` first
    return _render(200, answer)


async def _json_body(request: Request) -> object:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body: object = json.loads(raw)
    except ValueError:
        raise SimHttpError(400, error_body("Bad Request: body is not JSON")) from None
    return body


def _int_param(request: Request, name: str) -> int:
    value = str(request.path_params.get(name, request.query_params.get(name, "")))
    try:
        return int(value)
    except ValueError:
        raise SimHttpError(400, error_body(f"Invalid {name}: {value!r}")) from None


def _flag(value: object) -> bool:
    return str(value).lower() in ("true", "1")


def _path(request: Request, name: str) -> str:
    return str(request.path_params[name])


async def _auth_status(request: Request, state: SimulatorState) -> object:
    return state.auth_status()


async def _ssodh_init(request: Request, state: SimulatorState) -> object:
    body = as_object(await _json_body(request)) if request.method == "POST" else None
    compete = _flag(request.query_params.get("compete", "false"))
    if body is not None:
        compete = compete or _flag(body.get("compete", False))
    return state.open_brokerage_session(compete=compete)


async def _reauthenticate(request: Request, state: SimulatorState) -> object:
    state.open_brokerage_session(compete=False)
    return {"message": "triggered"}


async def _tickle(request: Request, state: SimulatorState) -> object:
    return state.tickle()


async def _logout(request: Request, state: SimulatorState) -> object:
    return state.logout()


async def _sso_validate(request: Request, state: SimulatorState) -> object:
    return state.sso_validate()


async def _iserver_accounts(request: Request, state: SimulatorState) -> object:
    return state.iserver_accounts()


async def _portfolio_accounts(request: Request, state: SimulatorState) -> object:
    return state.portfolio_accounts()


async def _select_account(request: Request, state: SimulatorState) -> object:
    account_id = (as_object(await _json_body(request)) or {}).get("acctId")
    if not isinstance(account_id, str) or not account_id:
        raise SimHttpError(400, error_body("acctId is required"))
    return state.select_account(account_id)


async def _subaccounts(request: Request, state: SimulatorState) -> object:
    return state.portfolio_subaccounts()


async def _subaccounts_page(request: Request, state: SimulatorState) -> object:
    page = request.query_params.get("page", "0")
    return state.portfolio_subaccounts_page(int(page) if page.isdigit() else 0)


async def _meta(request: Request, state: SimulatorState) -> object:
    return state.portfolio_meta(_path(request, "account_id"))


async def _summary(request: Request, state: SimulatorState) -> object:
    return state.summary(_path(request, "account_id"))


async def _ledger(request: Request, state: SimulatorState) -> object:
    return state.ledger(_path(request, "account_id"))


async def _positions(request: Request, state: SimulatorState) -> object:
    return state.positions(_path(request, "account_id"), _int_param(request, "page"))


async def _invalidate(request: Request, state: SimulatorState) -> object:
    return state.invalidate_positions(_path(request, "account_id"))


async def _search(request: Request, state: SimulatorState) -> object:
    params: dict[str, object] = dict(request.query_params)
    if request.method == "POST":
        params.update(as_object(await _json_body(request)) or {})
    symbol = str(params.get("symbol", ""))
    if not symbol:
        raise SimHttpError(400, error_body("symbol is required"))
    return state.secdef_search(symbol, by_name=_flag(params.get("name", False)))


async def _contract_info(request: Request, state: SimulatorState) -> object:
    return state.contract_info(_int_param(request, "conid"))


async def _snapshot(request: Request, state: SimulatorState) -> object:
    raw_conids = request.query_params.get("conids", "")
    try:
        conids = [int(part) for part in raw_conids.split(",") if part.strip()]
    except ValueError:
        raise SimHttpError(400, error_body("conids must be integers")) from None
    if not conids:
        raise SimHttpError(400, error_body("conids is required"))
    fields = [part.strip() for part in request.query_params.get("fields", "").split(",") if part.strip()]
    return state.snapshot(conids, fields)


async def _unsubscribe(request: Request, state: SimulatorState) -> object:
    conid = (as_object(await _json_body(request)) or {}).get("conid")
    if not isinstance(conid, int):
        raise SimHttpError(400, error_body("conid is required"))
    return state.unsubscribe(conid)


async def _unsubscribe_all(request: Request, state: SimulatorState) -> object:
    return state.unsubscribe_all()


async def _history(request: Request, state: SimulatorState) -> object:
    query = request.query_params
    if "bar" not in query:
        raise SimHttpError(400, error_body("bar is required"))
    async with state.history_slot():
        return state.history(
            _int_param(request, "conid"),
            period=query.get("period", "1w"),
            bar=query["bar"],
            outside_rth=_flag(query.get("outsideRth", "false")),
        )


async def _live_orders(request: Request, state: SimulatorState) -> object:
    query = request.query_params
    filters = [part.strip() for part in query.get("filters", "").split(",") if part.strip()]
    return state.live_orders(account_id=query.get("accountId"), filters=filters, force=_flag(query.get("force")))


async def _order_status(request: Request, state: SimulatorState) -> object:
    return state.order_status(_int_param(request, "order_id"))


async def _trades(request: Request, state: SimulatorState) -> object:
    days = request.query_params.get("days", "1")
    return state.trades(days=int(days) if days.isdigit() else 1, account_id=request.query_params.get("accountId"))


async def _place(request: Request, state: SimulatorState) -> object:
    return state.place_orders(_path(request, "account_id"), await _json_body(request))


async def _whatif(request: Request, state: SimulatorState) -> object:
    return state.whatif(_path(request, "account_id"), await _json_body(request))


async def _modify(request: Request, state: SimulatorState) -> object:
    return state.modify_order(_path(request, "account_id"), _int_param(request, "order_id"), await _json_body(request))


async def _cancel(request: Request, state: SimulatorState) -> object:
    return state.cancel_order(_path(request, "account_id"), _int_param(request, "order_id"))


async def _reply(request: Request, state: SimulatorState) -> object:
    confirmed = (as_object(await _json_body(request)) or {}).get("confirmed")
    if not isinstance(confirmed, bool):
        raise SimHttpError(500, error_body("confirmed must be a boolean"))
    return state.reply(_path(request, "reply_id"), confirmed)


async def _suppress(request: Request, state: SimulatorState) -> object:
    ids = as_array((as_object(await _json_body(request)) or {}).get("messageIds"))
    if ids is None:
        raise SimHttpError(400, error_body("messageIds is required"))
    return state.suppress_questions(str(item) for item in ids)


async def _suppress_reset(request: Request, state: SimulatorState) -> object:
    return state.reset_suppressed_questions()


_GET_POST: Final = ["GET", "POST"]

_ROUTES: Final[list[tuple[str, Handler, list[str]]]] = [
    ("/iserver/auth/status", _auth_status, _GET_POST),
    ("/iserver/auth/ssodh/init", _ssodh_init, _GET_POST),
    ("/iserver/reauthenticate", _reauthenticate, _GET_POST),
    ("/tickle", _tickle, _GET_POST),
    ("/logout", _logout, _GET_POST),
    ("/sso/validate", _sso_validate, ["GET"]),
    ("/iserver/accounts", _iserver_accounts, ["GET"]),
    ("/portfolio/accounts", _portfolio_accounts, ["GET"]),
    ("/iserver/account", _select_account, ["POST"]),
    ("/portfolio/subaccounts", _subaccounts, ["GET"]),
    ("/portfolio/subaccounts2", _subaccounts_page, ["GET"]),
    ("/portfolio/{account_id}/meta", _meta, ["GET"]),
    ("/portfolio/{account_id}/summary", _summary, ["GET"]),
    ("/portfolio/{account_id}/ledger", _ledger, ["GET"]),
    ("/portfolio/{account_id}/positions/invalidate", _invalidate, ["POST"]),
    ("/portfolio/{account_id}/positions/{page}", _positions, ["GET"]),
    ("/iserver/secdef/search", _search, _GET_POST),
    ("/iserver/contract/{conid}/info", _contract_info, ["GET"]),
    ("/iserver/marketdata/snapshot", _snapshot, ["GET"]),
    ("/iserver/marketdata/unsubscribe", _unsubscribe, ["POST"]),
    ("/iserver/marketdata/unsubscribeall", _unsubscribe_all, ["GET"]),
    ("/iserver/marketdata/history", _history, ["GET"]),
    ("/iserver/account/orders", _live_orders, ["GET"]),
    ("/iserver/account/order/status/{order_id}", _order_status, ["GET"]),
    ("/iserver/account/trades", _trades, ["GET"]),
    ("/iserver/account/{account_id}/orders", _place, ["POST"]),
    ("/iserver/account/{account_id}/orders/whatif", _whatif, ["POST"]),
    ("/iserver/account/{account_id}/order/{order_id}", _modify, ["POST"]),
    ("/iserver/account/{account_id}/order/{order_id}", _cancel, ["DELETE"]),
    ("/iserver/reply/{reply_id}", _reply, ["POST"]),
    ("/iserver/questions/suppress", _suppress, ["POST"]),
    ("/iserver/questions/suppress/reset", _suppress_reset, ["POST"]),
]
"""Every CPAPI path the simulator serves, with its methods."""


def _routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route(path, _endpoint(handler), methods=methods) for path, handler, methods in [*_ROUTES, *TRADING_ROUTES]
    ]
    routes.append(Route("/oauth/live_session_token", _live_session_token, methods=["POST"]))
    routes.append(WebSocketRoute("/ws", websocket_endpoint))
    return routes


CONTROL_PATH: Final = "/sim/control"
"""The simulator's own control endpoint (not CPAPI): GET reads its counters, POST switches behaviours."""


async def _control(request: Request) -> Response:
    state: SimulatorState = request.app.state.simulator
    if request.method == "POST":
        body = as_object(await _json_body_or_400(request))
        if body is None:
            return _render(400, error_body("the control body is a JSON object"))
        try:
            state.control(body)
        except (TypeError, ValueError, KeyError) as exc:
            return _render(400, error_body(f"bad control request: {exc}"))
    return _render(200, state.control_status())


async def _json_body_or_400(request: Request) -> object:
    try:
        return await _json_body(request)
    except SimHttpError:
        return None


def create_simulator_app(state: SimulatorState | None = None) -> Starlette:
    """A CPAPI simulator app; without `state`, a fresh paper login seeded from the packaged data."""
    served = _routes()  # one set of routes under both prefixes: each path's pattern is compiled once
    routes: list[BaseRoute] = [Mount(prefix, routes=served) for prefix in PREFIXES]
    routes.append(Route(CONTROL_PATH, _control, methods=["GET", "POST"]))
    app = Starlette(routes=routes)
    app.state.simulator = state if state is not None else SimulatorState()
    return app
