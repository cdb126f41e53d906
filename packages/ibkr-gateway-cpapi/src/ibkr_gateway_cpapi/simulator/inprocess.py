"""Fake mode's transport: the simulator's endpoints called in process, without a web framework.

`SimulatorTransport` is an `httpx2` transport that routes each request to the same handlers the
Starlette app serves (`_handlers`), so `ibkr-agent` in fake mode reads through the real CPAPI client
and mapping without importing Starlette or building an ASGI app. It answers as the app does, byte for
byte: the same routes under `/v1/api` and `/v1/portal` and `/sim/control`, the same JSON and text
bodies and headers, `404 Not Found`, `405 Method Not Allowed` with `Allow`, Starlette's `307` to the
path with or without its trailing slash, and a dropped connection as `httpx2.RemoteProtocolError`.
A test sends the same requests through both and compares the answers.

The websocket (`/ws`) is not served here: fake mode opens it through the Starlette app, made on
first use over the same `SimulatorState`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, quote

import httpx2

from ._handlers import (
    CONTROL_PATH,
    LIVE_SESSION_TOKEN_PATH,
    PREFIXES,
    ROUTES,
    Answer,
    Handler,
    control,
    live_session_token,
    serve,
)
from .state import SimulatorState

_Segments = tuple[str, ...]


def _segments(path: str) -> _Segments:
    """A route path as its segments; `{name}` segments match any one non-empty segment (Starlette's `[^/]+`)."""
    return tuple(path.split("/"))


def _params(template: _Segments, path: _Segments) -> dict[str, Any] | None:
    """The `{name}` values when `path` fits `template`, else None (no regular expression to compile)."""
    if len(template) != len(path):
        return None
    found: dict[str, Any] = {}
    for want, given in zip(template, path, strict=True):
        if want.startswith("{") and want.endswith("}"):
            if not given:
                return None
            found[want[1:-1]] = given
        elif want != given:
            return None
    return found


def _methods(methods: list[str]) -> frozenset[str]:
    return frozenset([*methods, "HEAD"] if "GET" in methods else methods)


_Kind = Handler | str
"""A CPAPI handler, or `token` for the OAuth handshake, `control` for `/sim/control`."""

_ROUTE_TABLE: Final[list[tuple[_Segments, _Kind, frozenset[str]]]] = [
    *[(_segments(path), handler, _methods(methods)) for path, handler, methods in ROUTES],
    (_segments(LIVE_SESSION_TOKEN_PATH), "token", frozenset({"POST"})),
]
"""The routes under each prefix, in the app's matching order."""

_CONTROL_METHODS: Final = _methods(["GET", "POST"])


class _Query(Mapping[str, str]):
    """Starlette's `QueryParams`: parsed with blank values kept, the last value of a repeated name wins."""

    def __init__(self, query: str) -> None:
        self._items = parse_qsl(query, keep_blank_values=True)
        self._last = dict(self._items)

    def __getitem__(self, key: str) -> str:
        return self._last[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def multi_items(self) -> list[tuple[str, str]]:
        """Every `(name, value)` pair, in order."""
        return list(self._items)


class _Url:
    __slots__ = ("_text", "path", "query")

    def __init__(self, url: httpx2.URL) -> None:
        self.path = url.path
        self.query = url.query.decode("latin-1")
        self._text = str(url)

    def __str__(self) -> str:
        return self._text


class _Request:
    """An `httpx2.Request` as the handlers read it (`_handlers.SimRequestView`)."""

    __slots__ = ("_body", "headers", "method", "path_params", "query_params", "url")

    def __init__(self, request: httpx2.Request, body: bytes, path_params: dict[str, Any]) -> None:
        self.method = request.method
        self.url = _Url(request.url)
        self.query_params = _Query(self.url.query)
        self.path_params = path_params
        self.headers = request.headers
        self._body = body

    async def body(self) -> bytes:
        return self._body


def _match(path: str, method: str) -> tuple[str, Any, dict[str, Any]]:
    """(`found`, the route's kind, path params), (`method`, the allowed methods, {}) or (`none`, None, {})."""
    if path == CONTROL_PATH:
        if method in _CONTROL_METHODS:
            return "found", "control", {}
        return "method", _CONTROL_METHODS, {}
    for prefix in PREFIXES:
        if path.startswith(prefix + "/"):
            rest = _segments(path[len(prefix) :])
            allowed: frozenset[str] | None = None
            for template, kind, methods in _ROUTE_TABLE:
                found = _params(template, rest)
                if found is None:
                    continue
                if method in methods:
                    return "found", kind, found
                allowed = allowed or methods
            if allowed is not None:
                return "method", allowed, {}
            return "mounted", None, {}
    return "none", None, {}


def _redirect_target(path: str, method: str) -> str | None:
    """Starlette's trailing-slash redirect: the path with its trailing slashes cut, or with one added."""
    if path in ("/", *(prefix + "/" for prefix in PREFIXES)):
        return None  # `/`, or the root of a mount: Starlette does not redirect these
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    outcome, _, _ = _match(other, method)
    if outcome in ("found", "method"):
        return other
    if outcome == "mounted" and not path.startswith(tuple(prefix + "/" for prefix in PREFIXES)):
        return other  # `/v1/api` → `/v1/api/`: the mount itself matches
    return None


def _encode(answer: Answer) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body exactly as Starlette's `JSONResponse` / `PlainTextResponse` send them."""
    if isinstance(answer.body, str):
        body, media = answer.body.encode("utf-8"), "text/plain; charset=utf-8"
    else:
        text = json.dumps(answer.body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        body, media = text.encode("utf-8"), "application/json"
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (answer.headers or {}).items()]
    keys = {key for key, _ in raw}
    if b"content-length" not in keys:
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
    if b"content-type" not in keys:
        raw.append((b"content-type", media.encode("latin-1")))
    return raw, body


def _text(method: str, status: int, text: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    raw, body = _encode(Answer(status, text, headers))
    return httpx2.Response(status, headers=raw, content=body if method != "HEAD" else b"")


class SimulatorTransport(httpx2.AsyncBaseTransport):
    """Sends each request to the simulator's handlers in this process (`simulator` is shared, not copied)."""

    def __init__(self, simulator: SimulatorState) -> None:
        self.simulator = simulator

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """The simulator's answer to `request`, as its Starlette app would give it."""
        path = request.url.path
        outcome, kind, params = _match(path, request.method)
        if outcome == "method":
            return _text(request.method, 405, "Method Not Allowed", {"Allow": ", ".join(sorted(kind))})
        if outcome != "found":
            target = _redirect_target(path, request.method)
            if target is not None:
                return self._redirect(request.url, target)
            return _text(request.method, 404, "Not Found")
        view = _Request(request, await request.aread(), params)
        if kind == "control":
            answer = await control(self.simulator, view)
        elif kind == "token":
            answer = await live_session_token(self.simulator, view)
        else:
            answer = await serve(self.simulator, view, kind)
        if answer.dropped:  # as the app: the answer started, then the connection is gone
            raise httpx2.RemoteProtocolError("Server disconnected without sending a complete response.")
        raw, body = _encode(answer)
        # As httpx2.ASGITransport delivers it: the headers of the whole answer, no body for HEAD.
        return httpx2.Response(answer.status, headers=raw, content=b"" if request.method == "HEAD" else body)

    @staticmethod
    def _redirect(url: httpx2.URL, path: str) -> httpx2.Response:
        query = url.query.decode("latin-1")
        target = f"{url.scheme}://{url.netloc.decode('ascii')}{path}" + (f"?{query}" if query else "")
        location = quote(target, safe=":/%#?=@[]!$&'()*+,;")
        return httpx2.Response(307, headers=[(b"content-length", b"0"), (b"location", location.encode("latin-1"))])
