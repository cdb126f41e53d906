"""The simulator's CPAPI endpoints, independent of the server that carries them.

Each endpoint admits the request through `SimulatorState` (auth, priming, injected failures), parses
query and body, calls one state method and answers with a status and a JSON (or text) body. Two
carriers serve these same handlers: the Starlette app (`simulator.app`, for `simulator serve` and
tests that want ASGI) and the in-process transport of fake mode (`simulator.inprocess`), which
imports no web framework. A request is anything shaped like `SimRequestView` (Starlette's
`Request` is one).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

from ._json import as_array, as_object
from ._session import AuthState, SimConnectionDropped, SimHttpError, SimRequest, error_body
from ._trading_routes import TRADING_ROUTES
from .state import SimulatorState

PREFIXES: Final = ("/v1/api", "/v1/portal")
"""Where the routes are mounted; CPAPI answers the same paths under both."""

CONTROL_PATH: Final = "/sim/control"
"""The simulator's own control endpoint (not CPAPI): GET reads its counters, POST switches behaviours."""

LIVE_SESSION_TOKEN_PATH: Final = "/oauth/live_session_token"
"""IBKR's half of the OAuth handshake, under both prefixes (served only with OAuth switched on)."""


class SimUrlView(Protocol):
    """The parts of a request URL the handlers read; `str()` gives the whole URL."""

    @property
    def path(self) -> str:
        """The decoded path, prefix included."""
        ...

    @property
    def query(self) -> str:
        """The raw query string, without `?`."""
        ...


class SimRequestView(Protocol):
    """What an endpoint reads of a request."""

    @property
    def method(self) -> str:
        """`GET`, `POST`, `DELETE`..."""
        ...

    @property
    def url(self) -> SimUrlView:
        """The request URL."""
        ...

    @property
    def query_params(self) -> Any:
        """The parsed query string, read as Starlette's `QueryParams`.

        A mapping (the last value of a repeated name) with `multi_items()` (every pair, in order).
        """
        ...

    @property
    def path_params(self) -> Mapping[str, Any]:
        """The `{name}` parts of the route's path."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Request headers, case-insensitive."""
        ...

    async def body(self) -> bytes:
        """The whole request body."""
        ...


Handler = Callable[[Any, SimulatorState], Awaitable[object]]
"""An endpoint: `(request, state)` to the JSON-compatible answer (or a `str` for a text answer)."""


class Answer:
    """What an endpoint answered: a status, a JSON (or text, when a `str`) body and extra headers.

    `dropped`: the request was served but the connection is cut before the body (the client never
    learns the outcome).
    """

    __slots__ = ("body", "dropped", "headers", "status")

    def __init__(self, status: int, body: object, headers: dict[str, str] | None = None, *, dropped: bool = False):
        self.status = status
        self.body = body
        self.headers = headers
        self.dropped = dropped


def sub_path(path: str) -> str:
    """`path` without its `/v1/api` or `/v1/portal` prefix."""
    for prefix in PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


async def serve(state: SimulatorState, request: SimRequestView, handler: Handler) -> Answer:
    """Serve one CPAPI request with `handler`, against the saved book, as CPAPI would answer it."""
    path = sub_path(request.url.path)
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
            return Answer(200, await handler(request, state))
        except SimHttpError as exc:
            return Answer(exc.status, exc.body, exc.headers)
        except SimConnectionDropped:
            return Answer(200, None, dropped=True)  # the book keeps the change: it is saved before the drop


async def live_session_token(state: SimulatorState, request: SimRequestView) -> Answer:
    """`POST /oauth/live_session_token`: IBKR's half of the handshake (only with OAuth switched on)."""
    if state.oauth is None:
        return Answer(404, error_body("Not Found"))
    state.session.requests.append(SimRequest(request.method, sub_path(request.url.path), request.url.query))
    try:
        answer = state.oauth.live_session_token(
            request.method, str(request.url), request.query_params.multi_items(), request.headers.get("authorization")
        )
    except SimHttpError as exc:
        return Answer(exc.status, exc.body, exc.headers)
    if state.session.state == AuthState.NO_SESSION:
        state.session.log_in_sso_only()  # logged in; `/iserver` needs `ssodh/init` first
    return Answer(200, answer)


async def control(state: SimulatorState, request: SimRequestView) -> Answer:
    """`/sim/control`: GET reads the simulator's counters, POST (a JSON object) switches behaviours first."""
    if request.method == "POST":
        try:
            body = as_object(await _json_body(request))
        except SimHttpError:
            body = None
        if body is None:
            return Answer(400, error_body("the control body is a JSON object"))
        try:
            state.control(body)
        except (TypeError, ValueError, KeyError) as exc:
            return Answer(400, error_body(f"bad control request: {exc}"))
    return Answer(200, state.control_status())


async def _json_body(request: SimRequestView) -> object:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body: object = json.loads(raw)
    except ValueError:
        raise SimHttpError(400, error_body("Bad Request: body is not JSON")) from None
    return body


def _int_param(request: SimRequestView, name: str) -> int:
    value = str(request.path_params.get(name, request.query_params.get(name, "")))
    try:
        return int(value)
    except ValueError:
        raise SimHttpError(400, error_body(f"Invalid {name}: {value!r}")) from None


def _flag(value: object) -> bool:
    return str(value).lower() in ("true", "1")


def _path(request: SimRequestView, name: str) -> str:
    return str(request.path_params[name])


async def _auth_status(request: SimRequestView, state: SimulatorState) -> object:
    return state.auth_status()


async def _ssodh_init(request: SimRequestView, state: SimulatorState) -> object:
    body = as_object(await _json_body(request)) if request.method == "POST" else None
    compete = _flag(request.query_params.get("compete", "false"))
    if body is not None:
        compete = compete or _flag(body.get("compete", False))
    return state.open_brokerage_session(compete=compete)


async def _reauthenticate(request: SimRequestView, state: SimulatorState) -> object:
    state.open_brokerage_session(compete=False)
    return {"message": "triggered"}


async def _tickle(request: SimRequestView, state: SimulatorState) -> object:
    return state.tickle()


async def _logout(request: SimRequestView, state: SimulatorState) -> object:
    return state.logout()


async def _sso_validate(request: SimRequestView, state: SimulatorState) -> object:
    return state.sso_validate()


async def _iserver_accounts(request: SimRequestView, state: SimulatorState) -> object:
    return state.iserver_accounts()


async def _portfolio_accounts(request: SimRequestView, state: SimulatorState) -> object:
    return state.portfolio_accounts()


async def _select_account(request: SimRequestView, state: SimulatorState) -> object:
    account_id = (as_object(await _json_body(request)) or {}).get("acctId")
    if not isinstance(account_id, str) or not account_id:
        raise SimHttpError(400, error_body("acctId is required"))
    return state.select_account(account_id)


async def _subaccounts(request: SimRequestView, state: SimulatorState) -> object:
    return state.portfolio_subaccounts()


async def _subaccounts_page(request: SimRequestView, state: SimulatorState) -> object:
    page = request.query_params.get("page", "0")
    return state.portfolio_subaccounts_page(int(page) if page.isdigit() else 0)


async def _meta(request: SimRequestView, state: SimulatorState) -> object:
    return state.portfolio_meta(_path(request, "account_id"))


async def _summary(request: SimRequestView, state: SimulatorState) -> object:
    return state.summary(_path(request, "account_id"))


async def _ledger(request: SimRequestView, state: SimulatorState) -> object:
    return state.ledger(_path(request, "account_id"))


async def _positions(request: SimRequestView, state: SimulatorState) -> object:
    return state.positions(_path(request, "account_id"), _int_param(request, "page"))


async def _invalidate(request: SimRequestView, state: SimulatorState) -> object:
    return state.invalidate_positions(_path(request, "account_id"))


async def _search(request: SimRequestView, state: SimulatorState) -> object:
    params: dict[str, object] = dict(request.query_params)
    if request.method == "POST":
        params.update(as_object(await _json_body(request)) or {})
    symbol = str(params.get("symbol", ""))
    if not symbol:
        raise SimHttpError(400, error_body("symbol is required"))
    return state.secdef_search(symbol, by_name=_flag(params.get("name", False)))


async def _contract_info(request: SimRequestView, state: SimulatorState) -> object:
    return state.contract_info(_int_param(request, "conid"))


async def _snapshot(request: SimRequestView, state: SimulatorState) -> object:
    raw_conids = request.query_params.get("conids", "")
    try:
        conids = [int(part) for part in raw_conids.split(",") if part.strip()]
    except ValueError:
        raise SimHttpError(400, error_body("conids must be integers")) from None
    if not conids:
        raise SimHttpError(400, error_body("conids is required"))
    fields = [part.strip() for part in request.query_params.get("fields", "").split(",") if part.strip()]
    return state.snapshot(conids, fields)


async def _unsubscribe(request: SimRequestView, state: SimulatorState) -> object:
    conid = (as_object(await _json_body(request)) or {}).get("conid")
    if not isinstance(conid, int):
        raise SimHttpError(400, error_body("conid is required"))
    return state.unsubscribe(conid)


async def _unsubscribe_all(request: SimRequestView, state: SimulatorState) -> object:
    return state.unsubscribe_all()


async def _history(request: SimRequestView, state: SimulatorState) -> object:
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


async def _live_orders(request: SimRequestView, state: SimulatorState) -> object:
    query = request.query_params
    filters = [part.strip() for part in query.get("filters", "").split(",") if part.strip()]
    return state.live_orders(account_id=query.get("accountId"), filters=filters, force=_flag(query.get("force")))


async def _order_status(request: SimRequestView, state: SimulatorState) -> object:
    return state.order_status(_int_param(request, "order_id"))


async def _trades(request: SimRequestView, state: SimulatorState) -> object:
    days = request.query_params.get("days", "1")
    return state.trades(days=int(days) if days.isdigit() else 1, account_id=request.query_params.get("accountId"))


async def _place(request: SimRequestView, state: SimulatorState) -> object:
    return state.place_orders(_path(request, "account_id"), await _json_body(request))


async def _whatif(request: SimRequestView, state: SimulatorState) -> object:
    return state.whatif(_path(request, "account_id"), await _json_body(request))


async def _modify(request: SimRequestView, state: SimulatorState) -> object:
    return state.modify_order(_path(request, "account_id"), _int_param(request, "order_id"), await _json_body(request))


async def _cancel(request: SimRequestView, state: SimulatorState) -> object:
    return state.cancel_order(_path(request, "account_id"), _int_param(request, "order_id"))


async def _reply(request: SimRequestView, state: SimulatorState) -> object:
    confirmed = (as_object(await _json_body(request)) or {}).get("confirmed")
    if not isinstance(confirmed, bool):
        raise SimHttpError(500, error_body("confirmed must be a boolean"))
    return state.reply(_path(request, "reply_id"), confirmed)


async def _suppress(request: SimRequestView, state: SimulatorState) -> object:
    ids = as_array((as_object(await _json_body(request)) or {}).get("messageIds"))
    if ids is None:
        raise SimHttpError(400, error_body("messageIds is required"))
    return state.suppress_questions(str(item) for item in ids)


async def _suppress_reset(request: SimRequestView, state: SimulatorState) -> object:
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


ROUTES: Final[list[tuple[str, Handler, list[str]]]] = [*_ROUTES, *TRADING_ROUTES]
"""Every CPAPI path the simulator serves under each prefix, with its methods, in matching order."""
