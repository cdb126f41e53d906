"""The CPAPI HTTP client: one place where transport and HTTP failures become `GatewayError`s.

`CpapiClient` speaks JSON to a Client Portal Gateway (or the simulator) and hides CPAPI's
session chores: it primes `/iserver/accounts` before the first brokerage call and
`/portfolio/accounts` before the first per-account portfolio call, and when the broker says
"Please query /accounts first" (priming lost, e.g. after the nightly reset) it primes again and
retries that request once. No httpx2 type leaves this module; error messages name at most the
broker's host and port, never a path, header, cookie or token.

A request that changes broker state (`mutating=True`: place, reply, cancel) fails in one of two
ways. When it surely never reached the broker (connection refused, connect timeout, 401, 429, a 4xx
refusal) the error is an ordinary `BROKER_*` code. When it may have reached the broker and no usable
answer came back (read timeout, dropped connection, a 5xx, an unreadable 2xx body) the error is
`BROKER_OUTCOME_UNKNOWN`: the caller must look the order up before anything else, never resend blindly.

With a `RateGovernor` (the default for a real gateway) every request, priming included, queues for
its slot under IBKR's pacing limits; identical reads in flight at the same time share one upstream
request (single flight); and a 429 puts the endpoint (or the whole client, when the broker says so)
in the penalty box: the request fails with `BROKER_RATE_LIMITED` and nothing is retried.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Self
from urllib.parse import urlsplit

import anyio
import httpx2
import sniffio
from ibkr_gateway_core.config import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_SECONDS, BrokerConfig, OAuthConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.observability import route_template, traced
from pydantic_core import from_json

from ._wire import error_text

if TYPE_CHECKING:  # pacing and OAuth load when a governor or an OAuth session is used (fake mode needs neither)
    from .oauth import OAuthSession
    from .pacing import RateGovernor

API_PREFIX: Final = "/v1/api"
"""CPAPI's path prefix; added to a base URL that does not already end with it."""

USER_AGENT: Final = "ibkr-agent-gateway"

Method = Literal["GET", "POST", "DELETE"]
Decoder = Callable[[bytes], object]
"""Reads a successful body straight into wire models; raises `ValueError` for a body it does not take."""

_ERROR_TEXT_LIMIT: Final = 200
"""Longest broker error text quoted in a message."""

_NO_BRIDGE_ACTION: Final = (
    "Log in to the Client Portal Gateway, then open the brokerage session "
    "(POST /iserver/auth/ssodh/init, or reload the gateway's login page) and retry."
)

_UNPRIMED_ISERVER: Final = ("/iserver/auth/", "/iserver/reauthenticate", "/iserver/accounts")
"""`/iserver` paths that work without (or are) the priming call."""

_URL_CACHE_SIZE: Final = 256
"""Parsed request URLs kept for reuse (`CpapiClient._url`)."""

_NOT_SENT: Final = (
    httpx2.ConnectError,
    httpx2.ConnectTimeout,
    httpx2.PoolTimeout,
    httpx2.UnsupportedProtocol,
    httpx2.ProxyError,
    httpx2.LocalProtocolError,
)
"""Transport failures that happen before a request's bytes leave this process."""


class BrokerHttpError(GatewayError):
    """The broker answered with an HTTP error; `status_code` lets the backend name input mistakes."""

    def __init__(self, code: ErrorCode, message: str, *, status_code: int, broker_message: str | None) -> None:
        super().__init__(code, message, details={"status_code": status_code})
        self.status_code = status_code
        self.broker_message = broker_message
        """The `error` text of the broker's body, if it sent one (truncated)."""


class _PrimingLostError(Exception):
    """The broker wants `/accounts` queried first; handled inside the client, never escapes."""


class _PacedError(Exception):
    """The broker answered 429; handled inside the client, never escapes."""

    def __init__(self, retry_after_s: float | None, *, whole_client: bool) -> None:
        super().__init__(retry_after_s)
        self.retry_after_s = retry_after_s
        self.whole_client = whole_client


_WHOLE_CLIENT_MARKERS: Final = ("ip address", "this ip", "your ip", "all endpoints", "all requests")
"""Words in a 429 answer that mean every endpoint is refused, not only the one called."""


def _boxes_whole_client(content: bytes) -> bool:
    text = content[:1000].decode("utf-8", "replace").lower()
    return any(marker in text for marker in _WHOLE_CLIENT_MARKERS)


class _Flight:
    """One upstream read that identical concurrent reads wait for.

    A plain slotted class, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    __slots__ = ("abandoned", "answer", "done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.answer: object = None
        self.error: GatewayError | None = None
        self.abandoned = False


def api_base_url(base_url: str) -> str:
    """`base_url` with `/v1/api` appended unless it already ends with it (or the `/v1/portal` alias)."""
    trimmed = base_url.rstrip("/")
    if trimmed.endswith((API_PREFIX, "/v1/portal")):
        return trimmed
    return trimmed + API_PREFIX


def _endpoint_label(base_url: str) -> str:
    parts = urlsplit(base_url)
    host = parts.hostname or "the broker"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{host}:{port}"


def _needs_iserver_priming(path: str) -> bool:
    return path.startswith("/iserver/") and not path.startswith(_UNPRIMED_ISERVER)


def _needs_portfolio_priming(path: str) -> bool:
    parts = path.split("/")
    return len(parts) > 3 and parts[1] == "portfolio" and parts[2] not in ("accounts", "subaccounts")


class CpapiClient:
    """Async JSON client for CPAPI; an async context manager that closes only the HTTP client it made."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_SECONDS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        verify_tls: bool = True,
        ca_file: Path | None = None,
        http_client: httpx2.AsyncClient | None = None,
        transport_factory: Callable[[], httpx2.AsyncBaseTransport] | None = None,
        governor: RateGovernor | None = None,
        oauth: OAuthSession | None = None,
    ) -> None:
        """Configure the client; nothing is opened until the first request.

        Args:
            base_url: Client Portal Gateway URL; `/v1/api` is appended when missing.
            timeout_s: Connect, read and write timeout of each request.
            max_response_bytes: Larger bodies are refused as `BROKER_RESPONSE_INVALID`.
            verify_tls: Check the server certificate (config allows off only for localhost).
            ca_file: PEM bundle of the authorities to trust for that check instead of the system's.
            http_client: A client to use (tests); it is not closed here.
            transport_factory: Builds the transport of the client made here (the simulator's ASGI app).
            governor: Paces requests by IBKR's limits and coalesces identical reads; None sends at once.
            oauth: Signs every request with an OAuth 1.0a live session token (IBKR's Web API without a
                Client Portal Gateway); None sends them unsigned.
        """
        self._base_url = api_base_url(base_url)
        self._label = _endpoint_label(self._base_url)
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes
        self._verify_tls = verify_tls
        self._ca_file = ca_file
        self._transport_factory = transport_factory
        self._owns_http = http_client is None
        self._http = http_client
        self._closed = False
        self._prime_lock = anyio.Lock()
        self._iserver_primed = False
        self._portfolio_primed = False
        self._brokerage_generation = 0
        self._governor = governor
        self._oauth = oauth
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], httpx2.URL] = {}
        self.on_write: Callable[[str], None] | None = None
        """Called with the path of every mutating request once it may have reached the broker."""
        self.on_reprimed: Callable[[str], Awaitable[None]] | None = None
        """Awaited with the path of a request refused for lost priming, after priming again and before resending."""

    @classmethod
    def from_config(cls, broker: BrokerConfig, *, http_client: httpx2.AsyncClient | None = None) -> CpapiClient:
        """A client for `broker.base_url` with the configured timeout, size cap, TLS check and pacing.

        Raises:
            GatewayError: `CONFIG_MISSING_BROKER_BASE_URL` when the config names no URL.
        """
        if broker.base_url is None:
            raise GatewayError(ErrorCode.CONFIG_MISSING_BROKER_BASE_URL, "broker.base_url is not set.")
        return cls(
            broker.base_url,
            timeout_s=broker.timeout_seconds,
            max_response_bytes=broker.max_response_bytes,
            verify_tls=broker.verify_tls,
            ca_file=broker.ca_file,
            http_client=http_client,
            governor=governor_from_config(broker),
            oauth=_oauth_session(broker.oauth) if broker.oauth is not None else None,
        )

    @property
    def endpoint(self) -> str:
        """`host:port` of the broker, safe to show."""
        return self._label

    @property
    def governor(self) -> RateGovernor | None:
        """The rate governor, when requests are paced."""
        return self._governor

    @property
    def brokerage_generation(self) -> int:
        """Counts brokerage sessions seen: it grows each time `/iserver/accounts` primes a fresh one.

        Per-session chores beyond priming (the live-orders warm-up) compare it to redo themselves.
        """
        return self._brokerage_generation

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it; the client cannot be used afterwards."""
        self._closed = True
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def get(
        self, path: str, params: Mapping[str, str] | None = None, *, decoder: Decoder | None = None
    ) -> object:
        """GET `path` (below `/v1/api`) and return the decoded JSON.

        `decoder` reads a successful body straight from its bytes into the caller's wire models (one
        pass instead of JSON parse, then validation); a body it refuses takes the ordinary path, so
        errors, not-ready answers and invalid shapes are recognised exactly as without it.
        """
        return await self.request("GET", path, params=params, decoder=decoder)

    async def post(
        self,
        path: str,
        body: object = None,
        *,
        params: Mapping[str, str] | None = None,
        mutating: bool = False,
    ) -> object:
        """POST a JSON body (`{}` when none: some CPAPI endpoints refuse empty POSTs)."""
        return await self.request("POST", path, params=params, body={} if body is None else body, mutating=mutating)

    async def delete(self, path: str, params: Mapping[str, str] | None = None, *, mutating: bool = False) -> object:
        """DELETE `path` and return the decoded JSON."""
        return await self.request("DELETE", path, params=params, mutating=mutating)

    async def request(
        self,
        method: Method,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        mutating: bool = False,
        decoder: Decoder | None = None,
    ) -> object:
        """Send one request, priming the session first when CPAPI needs it.

        Args:
            method: HTTP method.
            path: Path below `/v1/api`.
            params: Query parameters.
            body: JSON body.
            mutating: The request changes broker state; a failure after it may have been sent is
                `BROKER_OUTCOME_UNKNOWN` instead of `BROKER_BACKEND_UNAVAILABLE` or `BROKER_RESPONSE_INVALID`.
            decoder: Reads a 2xx body into the caller's models (see `get`); None for plain JSON.

        Returns:
            The decoded JSON body (None for an empty body).

        Raises:
            GatewayError: `BROKER_SESSION_REQUIRED`, `BROKER_RATE_LIMITED`, `BROKER_BACKEND_UNAVAILABLE`
                (a `BrokerHttpError` for HTTP errors), `BROKER_RESPONSE_INVALID`, or for a mutating
                request `BROKER_OUTCOME_UNKNOWN`.
        """
        if method == "GET" and self._governor is not None:
            found, answer = self._governor.reused_answer(path, params)
            if found:
                return answer
            return await self._single_flight(path, params, decoder)
        if not mutating:
            return await self._request(method, path, params, body, mutating=mutating, decoder=decoder)
        sent = False
        try:
            answer = await self._request(method, path, params, body, mutating=mutating)
            sent = True
            return answer
        except GatewayError as exc:
            sent = exc.code == ErrorCode.BROKER_OUTCOME_UNKNOWN
            raise
        finally:
            if sent and self.on_write is not None:
                self.on_write(path)

    async def _single_flight(self, path: str, params: Mapping[str, str] | None, decoder: Decoder | None) -> object:
        """One upstream GET for identical reads in flight at the same time; the others share its answer."""
        key = (path, "&".join(f"{k}={v}" for k, v in sorted((params or {}).items())))
        while True:
            flight = self._flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.abandoned:
                continue  # its caller was cancelled: ask again
            assert self._governor is not None
            self._governor.coalesced += 1
            if flight.error is not None:
                raise flight.error
            return flight.answer
        flight = self._flights[key] = _Flight()
        try:
            flight.answer = await self._request("GET", path, params, None, mutating=False, decoder=decoder)
        except GatewayError as exc:
            flight.error = exc
            raise
        except BaseException:
            flight.abandoned = True
            raise
        finally:
            del self._flights[key]
            flight.done.set()
        return flight.answer

    async def _request(
        self,
        method: Method,
        path: str,
        params: Mapping[str, str] | None,
        body: object,
        *,
        mutating: bool,
        decoder: Decoder | None = None,
    ) -> object:
        await self._prime_for(path)
        try:
            return await self._send(method, path, params, body, mutating=mutating, decoder=decoder)
        except _PrimingLostError:  # refused before it was acted on: sending again is safe
            self._forget_priming(path)
            await self._prime_for(path)
            if self.on_reprimed is not None:
                await self.on_reprimed(path)  # a fresh brokerage session: e.g. select the account again
        try:
            return await self._send(method, path, params, body, mutating=mutating, decoder=decoder)
        except _PrimingLostError:
            raise self._http_error(500, "Please query /accounts first") from None

    def _forget_priming(self, path: str) -> None:
        if path.startswith("/portfolio"):
            self._portfolio_primed = False
        else:
            self._iserver_primed = False

    async def _prime_for(self, path: str) -> None:
        if _needs_iserver_priming(path) and not self._iserver_primed:
            async with self._prime_lock:  # one priming call even when requests race
                if not self._iserver_primed:
                    await self._send_primed("/iserver/accounts")
        if _needs_portfolio_priming(path) and not self._portfolio_primed:
            async with self._prime_lock:
                if not self._portfolio_primed:
                    await self._send_primed("/portfolio/accounts")

    async def _send_primed(self, path: str) -> None:
        try:
            await self._send("GET", path, None, None)
        except _PrimingLostError:
            raise self._http_error(500, "Please query /accounts first") from None

    def _mark_primed(self, path: str) -> None:
        if path == "/iserver/accounts":
            if not self._iserver_primed:
                self._brokerage_generation += 1
            self._iserver_primed = True
        elif path in ("/portfolio/accounts", "/portfolio/subaccounts"):
            self._portfolio_primed = True

    def _client(self) -> httpx2.AsyncClient:
        if self._closed:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, "The broker client was used after it was closed.")
        if self._http is None:
            transport = self._transport_factory() if self._transport_factory is not None else None
            self._http = httpx2.AsyncClient(
                timeout=httpx2.Timeout(self._timeout_s),
                verify=self._tls_verification(),
                transport=transport,
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
            )
            if transport is None and _on_asyncio():
                from ._asyncio_net import use_asyncio_network  # with the first request: start-up stays lean

                use_asyncio_network(self._http)  # asyncio's TLS transport: fewer, larger reads (`_asyncio_net`)
        return self._http

    def _tls_verification(self) -> bool | ssl.SSLContext:
        """`verify` for httpx2: on or off, or a context trusting only the CAs of `ca_file`."""
        if not self._verify_tls or self._ca_file is None:
            return self._verify_tls
        try:
            return ssl.create_default_context(cafile=self._ca_file)
        except (OSError, ssl.SSLError):
            raise GatewayError(
                ErrorCode.CONFIG_INVALID,
                "broker.ca_file cannot be read as a PEM bundle of certificate authorities.",
                user_action="Point broker.ca_file at a readable PEM file holding the CA that signed the gateway's "
                "certificate.",
            ) from None

    async def prime(self) -> None:
        """Query `/iserver/accounts` now, as CPAPI wants first in each brokerage session (after a reset too)."""
        async with self._prime_lock:
            self._iserver_primed = False
            await self._send_primed("/iserver/accounts")

    async def _send(
        self,
        method: Method,
        path: str,
        params: Mapping[str, str] | None,
        body: object,
        *,
        mutating: bool = False,
        decoder: Decoder | None = None,
    ) -> object:
        """`_send_once` in a governor slot; a 429 boxes the endpoint (or everything) and is never retried.

        Traced as one `broker_request` span (pacing wait included) when OpenTelemetry is on: the method and
        the path with its ids blanked, never the path itself (it holds the account id) nor the query.
        """
        with traced("broker_request", {"http.request.method": method, "url.template": route_template(path)}):
            governor = self._governor
            if governor is None:
                try:
                    return await self._send_once(method, path, params, body, mutating=mutating, decoder=decoder)
                except _PacedError as exc:
                    from .pacing import rate_limited

                    wait = exc.retry_after_s if exc.retry_after_s is not None else _default_penalty_s()
                    raise rate_limited(f"The broker at {self._label} is pacing requests (429).", wait) from None
            async with governor.slot(path, params):
                try:
                    data = await self._send_once(method, path, params, body, mutating=mutating, decoder=decoder)
                except _PacedError as exc:
                    held = governor.penalize(path, whole_client=exc.whole_client, seconds=exc.retry_after_s)
                    raise governor.limited_error(held, boxed=True) from None  # never resend, never probe the box
            if method == "GET":
                governor.remember_answer(path, params, data)
            return data

    async def _send_once(
        self,
        method: Method,
        path: str,
        params: Mapping[str, str] | None,
        body: object,
        *,
        mutating: bool = False,
        decoder: Decoder | None = None,
    ) -> object:
        if self._oauth is None:
            return await self._send_http(method, path, params, body, mutating=mutating, decoder=decoder)
        send = self._send_http if decoder is None else partial(self._send_http, decoder=decoder)
        return await self._oauth.send(send, self._base_url, method, path, params, body, mutating=mutating)

    async def _send_http(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: object,
        *,
        mutating: bool = False,
        headers: Mapping[str, str] | None = None,
        decoder: Decoder | None = None,
    ) -> object:
        client = self._client()
        try:
            request = client.build_request(method, self._url(path, params), json=body, headers=headers)
            response = await client.send(request, stream=True)
            try:
                status = response.status_code
                if status == 429:  # nothing was acted on; the body is undocumented
                    from .pacing import parse_retry_after

                    retry_after = parse_retry_after(response.headers.get("retry-after"), now_epoch_s=time.time())
                    raise _PacedError(retry_after, whole_client=_boxes_whole_client(await self._read_capped(response)))
                content = await self._read_capped(response)
            finally:
                await response.aclose()
        except _NOT_SENT:
            raise GatewayError(
                ErrorCode.BROKER_BACKEND_UNAVAILABLE, f"The broker at {self._label} cannot be reached."
            ) from None
        except httpx2.TimeoutException:
            if mutating:
                raise self._outcome_unknown("did not answer in time") from None
            raise GatewayError(
                ErrorCode.BROKER_BACKEND_UNAVAILABLE, f"The broker at {self._label} did not answer in time."
            ) from None
        except httpx2.TransportError:
            if mutating:
                raise self._outcome_unknown("dropped the connection") from None
            raise GatewayError(
                ErrorCode.BROKER_BACKEND_UNAVAILABLE, f"The broker at {self._label} cannot be reached."
            ) from None
        except httpx2.HTTPError:  # e.g. a body that fails content decoding
            if mutating:
                raise self._outcome_unknown("sent an unreadable response") from None
            raise GatewayError(
                ErrorCode.BROKER_RESPONSE_INVALID, f"The broker at {self._label} sent an unreadable response."
            ) from None
        except GatewayError as exc:  # the body exceeded the size cap
            if mutating:
                raise self._outcome_unknown("sent a response larger than the size cap") from None
            raise exc from None
        try:
            data = self._interpret(status, content, decoder)
        except BrokerHttpError as exc:
            if mutating and exc.status_code >= 500:
                raise self._outcome_unknown(f"answered HTTP {exc.status_code}", status_code=exc.status_code) from None
            raise
        except GatewayError as exc:
            if mutating and exc.code == ErrorCode.BROKER_RESPONSE_INVALID:
                raise self._outcome_unknown("sent invalid JSON", status_code=status) from None
            raise
        if 200 <= status < 300:
            self._mark_primed(path)
        return data

    def _url(self, path: str, params: Mapping[str, str] | None) -> httpx2.URL:
        """The request URL of `path` and `params`, parsed once and reused (parsing a URL costs more than sending it).

        Exactly the URL httpx2 builds from the same text and parameters; only the work is kept, never an answer.
        """
        key = (path, tuple(params.items()) if params else ())
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= _URL_CACHE_SIZE:  # many distinct paths (order ids, conids): start over
                self._urls.clear()
            url = self._urls[key] = httpx2.URL(self._base_url + path, params=params or None)
        return url

    def _outcome_unknown(self, what: str, *, status_code: int | None = None) -> GatewayError:
        details: dict[str, object] = {} if status_code is None else {"status_code": status_code}
        return GatewayError(
            ErrorCode.BROKER_OUTCOME_UNKNOWN,
            f"The broker at {self._label} {what} after the request was sent; it may have acted on it.",
            details=details,
        )

    async def _read_capped(self, response: httpx2.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_response_bytes:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_response_bytes:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> GatewayError:
        return GatewayError(
            ErrorCode.BROKER_RESPONSE_INVALID,
            f"The broker at {self._label} sent a response larger than {self._max_response_bytes} bytes.",
        )

    def _interpret(self, status: int, content: bytes, decoder: Decoder | None = None) -> object:
        if decoder is not None and 200 <= status < 300:
            try:
                return decoder(content)  # a body of the expected shape is no error, not-ready or session answer
            except ValueError:  # anything else (pydantic's ValidationError is one) is read as usual
                pass
        decoded, is_json = _decode(content)
        broker_error = error_text(decoded) if is_json else None
        if status == 401:
            from .oauth import UnauthorizedError

            raise UnauthorizedError(
                ErrorCode.BROKER_SESSION_REQUIRED,
                f"The Client Portal Gateway at {self._label} has no authenticated session.",
            )
        lowered = (broker_error or "").lower()
        if status in (400, 500) and "accounts first" in lowered:
            raise _PrimingLostError
        if "init session first" in lowered:
            raise GatewayError(
                ErrorCode.BROKER_SESSION_REQUIRED,
                f"The Client Portal Gateway at {self._label} is logged in, but its brokerage session is not "
                "initialised yet (Init session first).",
                user_action=_NO_BRIDGE_ACTION,
            )
        if status == 400 and "no bridge" in lowered:
            raise GatewayError(
                ErrorCode.BROKER_SESSION_REQUIRED,
                f"The Client Portal Gateway at {self._label} has no brokerage session (no bridge).",
                user_action=_NO_BRIDGE_ACTION,
            )
        if not 200 <= status < 300:
            raise self._http_error(status, broker_error)
        if not is_json:
            raise GatewayError(ErrorCode.BROKER_RESPONSE_INVALID, f"The broker at {self._label} sent invalid JSON.")
        if lowered == "no session":
            raise GatewayError(
                ErrorCode.BROKER_SESSION_REQUIRED,
                f"The Client Portal Gateway at {self._label} has no authenticated session.",
            )
        return decoded

    def _http_error(self, status: int, broker_error: str | None) -> BrokerHttpError:
        quoted = broker_error[:_ERROR_TEXT_LIMIT] if broker_error else None
        suffix = f": {quoted}" if quoted else "."
        return BrokerHttpError(
            ErrorCode.BROKER_BACKEND_UNAVAILABLE,
            f"The broker at {self._label} answered HTTP {status}{suffix}",
            status_code=status,
            broker_message=quoted,
        )


def _oauth_session(settings: OAuthConfig) -> OAuthSession:
    from .oauth import oauth_session_from_config

    return oauth_session_from_config(settings)


def _default_penalty_s() -> float:
    from .pacing import DEFAULT_PENALTY

    return DEFAULT_PENALTY.total_seconds()


def governor_from_config(broker: BrokerConfig) -> RateGovernor | None:
    """The rate governor `broker` asks for, or None with pacing off."""
    if not broker.pacing_enabled:
        return None
    from .pacing import RateGovernor

    return RateGovernor(
        requests_per_second=broker.pacing_requests_per_second,
        max_wait=timedelta(seconds=broker.pacing_max_wait_seconds),
        penalty=timedelta(seconds=broker.pacing_penalty_seconds),
    )


def _on_asyncio() -> bool:
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


def _decode(content: bytes) -> tuple[object, bool]:
    """The JSON value of a body and whether it decoded; an empty body is JSON `null`.

    pydantic-core's parser reads a positions page in about half the time of `json.loads`, with the same
    values (NaN and infinities included); the few bodies it refuses that `json.loads` reads (a byte-order
    mark, an escaped lone surrogate, UTF-16) go to `json.loads`, so what decodes, and to what, is unchanged.
    """
    if not content.strip():
        return None, True
    try:
        return from_json(content), True
    except ValueError:
        pass
    try:
        value: object = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None, False
    return value, True
