"""CpapiClient: error translation at the package edge, size cap, priming, and what messages may show."""

import json
import math
import socket
from collections.abc import AsyncIterator, Callable

import anyio
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ibkr_gateway_core.config import BrokerConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi.client import BrokerHttpError, CpapiClient, _decode, api_base_url  # pyright: ignore[reportPrivateUsage]

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx2.Request], httpx2.Response]


def mock_client(handler: Handler, *, max_response_bytes: int = 4096) -> tuple[CpapiClient, httpx2.AsyncClient]:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return CpapiClient("https://localhost:5000", http_client=http, max_response_bytes=max_response_bytes), http


async def expect_error(handler: Handler, path: str = "/tickle", **kwargs: int) -> GatewayError:
    client, http = mock_client(handler, **kwargs)
    async with http, client:
        with anyio.fail_after(5), pytest.raises(GatewayError) as caught:
            await client.get(path)
    return caught.value


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://localhost:5000", "https://localhost:5000/v1/api"),
        ("https://localhost:5000/", "https://localhost:5000/v1/api"),
        ("https://localhost:5000/v1/api", "https://localhost:5000/v1/api"),
        ("https://api.ibkr.com/v1/api/", "https://api.ibkr.com/v1/api"),
        ("https://localhost:5000/v1/portal", "https://localhost:5000/v1/portal"),
    ],
)
def test_base_url_gets_the_api_prefix_once(base_url: str, expected: str) -> None:
    """broker.base_url may or may not carry /v1/api (our config contract)."""
    assert api_base_url(base_url) == expected


async def test_requests_go_below_the_api_prefix_and_empty_posts_send_an_object() -> None:
    """Some CPAPI POSTs refuse an empty body (reference §1), so the client always sends `{}`."""
    seen: list[tuple[str, bytes]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append((str(request.url), request.content))
        return httpx2.Response(200, json={"authenticated": True})

    client, http = mock_client(handler)
    async with http, client:
        assert await client.post("/iserver/auth/status") == {"authenticated": True}
    assert seen == [("https://localhost:5000/v1/api/iserver/auth/status", b"{}")]


async def test_401_means_the_session_is_required() -> None:
    """A gateway without a login answers 401 with an opaque body (reference §3)."""
    error = await expect_error(lambda request: httpx2.Response(401, text="<html>Login</html>"))
    assert error.code == ErrorCode.BROKER_SESSION_REQUIRED


async def test_no_bridge_means_the_session_is_required_with_an_ssodh_hint() -> None:
    """400 "no bridge": logged in, but no brokerage session; the fix is ssodh/init (IBKR, ibind)."""
    error = await expect_error(
        lambda request: httpx2.Response(400, json={"error": "Bad Request: no bridge", "statusCode": 400}),
        "/iserver/accounts",
    )
    assert error.code == ErrorCode.BROKER_SESSION_REQUIRED
    assert "ssodh/init" in error.user_action


async def test_no_session_body_on_200_means_the_session_is_required() -> None:
    """Some gateway builds answer 200 {"error": "no session"} (ibeam)."""
    error = await expect_error(lambda request: httpx2.Response(200, json={"error": "no session"}))
    assert error.code == ErrorCode.BROKER_SESSION_REQUIRED


async def test_429_means_rate_limited() -> None:
    """IBKR paces requests with 429 (reference §4)."""
    error = await expect_error(lambda request: httpx2.Response(429, text="Too Many Requests"))
    assert error.code == ErrorCode.BROKER_RATE_LIMITED
    assert error.retryable
    assert error.details == {"retry_after_seconds": 600.0}  # no governor, no Retry-After: IBKR's 10 minutes
    assert error.user_action == "Retry in 600 seconds."
    told = await expect_error(lambda request: httpx2.Response(429, headers={"Retry-After": "7"}))
    assert told.details == {"retry_after_seconds": 7.0} and told.user_action == "Retry in 7 seconds."


async def test_other_http_errors_are_backend_unavailable_with_the_status() -> None:
    """503 during the nightly reset and similar: the backend is not available right now."""
    error = await expect_error(lambda request: httpx2.Response(503, text="Service Unavailable"))
    assert isinstance(error, BrokerHttpError)
    assert (error.code, error.status_code, error.details) == (
        ErrorCode.BROKER_BACKEND_UNAVAILABLE,
        503,
        {"status_code": 503},
    )


async def test_malformed_json_is_an_invalid_response() -> None:
    """A truncated body must not crash the caller with a JSON error."""
    error = await expect_error(lambda request: httpx2.Response(200, content=b'{"accounts": ["DU1'))
    assert error.code == ErrorCode.BROKER_RESPONSE_INVALID


async def test_a_declared_oversized_body_is_refused() -> None:
    """broker.max_response_bytes caps memory use; Content-Length over the cap is refused at once."""
    body = json.dumps({"blob": "x" * 10_000}).encode()
    error = await expect_error(lambda request: httpx2.Response(200, content=body), max_response_bytes=4096)
    assert error.code == ErrorCode.BROKER_RESPONSE_INVALID
    assert "4096 bytes" in error.message


async def test_a_streamed_oversized_body_is_refused_while_reading() -> None:
    """Without Content-Length the cap applies to the bytes actually read."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    def handler(request: httpx2.Request) -> httpx2.Response:
        response = httpx2.Response(200, content=chunks())
        assert "content-length" not in response.headers
        return response

    error = await expect_error(handler, max_response_bytes=4096)
    assert error.code == ErrorCode.BROKER_RESPONSE_INVALID


async def test_a_timeout_is_backend_unavailable() -> None:
    """Transport timeouts are translated once, here."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    error = await expect_error(handler)
    assert error.code == ErrorCode.BROKER_BACKEND_UNAVAILABLE
    assert "in time" in error.message


async def test_connection_refused_is_backend_unavailable_naming_only_host_and_port() -> None:
    """A closed port on loopback: the message names 127.0.0.1:<port>, never the path or query."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with CpapiClient(f"http://127.0.0.1:{port}", timeout_s=5) as client:
        with anyio.fail_after(10), pytest.raises(GatewayError) as caught:
            await client.get("/portfolio/DU1234567/summary", {"token": "canary-secret"})
    error = caught.value
    assert error.code == ErrorCode.BROKER_BACKEND_UNAVAILABLE
    assert f"127.0.0.1:{port}" in error.message
    assert "DU1234567" not in str(error) and "canary-secret" not in str(error) and "/portfolio" not in str(error)


async def test_error_messages_never_show_paths_cookies_or_headers() -> None:
    """Canary secrets in the path, query, cookie and headers stay out of every error (design: never print secrets)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(500, json={"error": "Internal"}, headers={"Set-Cookie": "api=canary-cookie"})

    http = httpx2.AsyncClient(
        transport=httpx2.MockTransport(handler),
        headers={"Authorization": "Bearer canary-bearer"},
        cookies={"x": "canary-jar"},
    )
    client = CpapiClient("https://localhost:5000", http_client=http)
    async with http, client:
        with pytest.raises(GatewayError) as caught:
            await client.get("/iserver/auth/status", {"q": "canary-query"})
    assert caught.value.code is ErrorCode.BROKER_BACKEND_UNAVAILABLE
    shown = f"{caught.value} {caught.value.to_dict()} {caught.value.details}"
    assert "canary" not in shown
    assert "localhost:5000" in shown


async def test_first_brokerage_call_primes_iserver_accounts_once() -> None:
    """CPAPI wants /iserver/accounts before market data and orders (reference §2.2)."""
    paths: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        paths.append(request.url.path)
        return httpx2.Response(200, json=[] if "snapshot" in request.url.path else {"accounts": ["DU1"]})

    client, http = mock_client(handler)
    async with http, client:
        await client.get("/iserver/marketdata/snapshot", {"conids": "1"})
        await client.get("/iserver/marketdata/snapshot", {"conids": "1"})
        await client.post("/tickle")
    assert paths == [
        "/v1/api/iserver/accounts",
        "/v1/api/iserver/marketdata/snapshot",
        "/v1/api/iserver/marketdata/snapshot",
        "/v1/api/tickle",
    ]


async def test_first_per_account_portfolio_call_primes_portfolio_accounts() -> None:
    """/portfolio/{id}/* needs /portfolio/accounts first (reference §2.2)."""
    paths: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        paths.append(request.url.path)
        return httpx2.Response(200, json=[])

    client, http = mock_client(handler)
    async with http, client:
        await client.get("/portfolio/DU1/ledger")
        await client.get("/portfolio/DU1/summary")
    assert paths == ["/v1/api/portfolio/accounts", "/v1/api/portfolio/DU1/ledger", "/v1/api/portfolio/DU1/summary"]


async def test_lost_priming_is_restored_and_the_request_retried_once() -> None:
    """After the nightly reset CPAPI says "Please query /accounts first" (500); prime and retry once."""
    paths: list[str] = []
    refusals = iter([True, False])

    def handler(request: httpx2.Request) -> httpx2.Response:
        paths.append(request.url.path)
        if request.url.path.endswith("/orders") and next(refusals):
            return httpx2.Response(500, json={"error": "Please query /accounts first"})
        return httpx2.Response(200, json={"orders": []})

    client, http = mock_client(handler)
    async with http, client:
        assert await client.get("/iserver/account/orders") == {"orders": []}
    assert paths == [
        "/v1/api/iserver/accounts",
        "/v1/api/iserver/account/orders",
        "/v1/api/iserver/accounts",
        "/v1/api/iserver/account/orders",
    ]


async def test_priming_that_never_sticks_fails_after_one_retry() -> None:
    """The retry is bounded: a broker that keeps refusing is reported, not looped on."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/accounts"):
            return httpx2.Response(200, json={"accounts": []})
        return httpx2.Response(500, json={"error": "Please query /accounts first"})

    error = await expect_error(handler, "/iserver/account/trades")
    assert error.code == ErrorCode.BROKER_BACKEND_UNAVAILABLE


async def test_an_injected_http_client_is_not_closed_but_an_owned_one_is() -> None:
    """Clients close only what they own (style 1.4)."""
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda request: httpx2.Response(200, json={})))
    async with CpapiClient("https://localhost:5000", http_client=http) as client:
        await client.get("/tickle")
    assert not http.is_closed
    await http.aclose()

    owned = CpapiClient(
        "https://localhost:5000",
        transport_factory=lambda: httpx2.MockTransport(lambda r: httpx2.Response(200, json={})),
    )
    async with owned:
        await owned.get("/tickle")
    with pytest.raises(GatewayError) as caught:
        await owned.get("/tickle")
    assert caught.value.code == ErrorCode.INTERNAL_ERROR


def test_from_config_requires_a_base_url() -> None:
    """The fake backend has no URL; a client_portal_gateway config always does."""
    with pytest.raises(GatewayError) as caught:
        CpapiClient.from_config(BrokerConfig())
    assert caught.value.code == ErrorCode.CONFIG_MISSING_BROKER_BASE_URL
    client = CpapiClient.from_config(
        BrokerConfig(backend="client_portal_gateway", base_url="https://localhost:5000", verify_tls=False)
    )
    assert client.endpoint == "localhost:5000"


def raising(error: type[httpx2.TransportError]) -> Handler:
    def answer(request: httpx2.Request) -> httpx2.Response:
        raise error("simulated", request=request)

    return answer


def answering(status: int, body: object) -> Handler:
    return lambda request: httpx2.Response(status, json=body)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        pytest.param(raising(httpx2.ReadTimeout), ErrorCode.BROKER_OUTCOME_UNKNOWN, id="read-timeout"),
        pytest.param(answering(502, {"error": "Bad Gateway"}), ErrorCode.BROKER_OUTCOME_UNKNOWN, id="502"),
        pytest.param(raising(httpx2.ConnectError), ErrorCode.BROKER_BACKEND_UNAVAILABLE, id="refused"),
        pytest.param(answering(400, {"error": "bad"}), ErrorCode.BROKER_BACKEND_UNAVAILABLE, id="400"),
    ],
)
async def test_a_mutating_request_tells_maybe_sent_from_surely_not_sent(answer: Handler, code: ErrorCode) -> None:
    """Only a failure after the bytes left may hide a broker action; reads keep the ordinary codes."""
    client, http = mock_client(answer)
    async with http, client:
        with pytest.raises(GatewayError) as caught:
            await client.post("/tickle", {}, mutating=True)
    assert caught.value.code == code


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def _same(a: object, b: object) -> bool:
    """Equal JSON values, NaN equal to NaN and -0.0 told from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(value=_JSON, ensure_ascii=st.booleans())
def test_a_body_decodes_to_what_json_loads_gives(value: object, ensure_ascii: bool) -> None:
    body = json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    try:
        expected: object = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        assert _decode(body) == (None, False)
        return
    decoded, ok = _decode(body)
    assert ok and _same(decoded, expected)


@pytest.mark.parametrize(
    "body",
    [
        b'\xef\xbb\xbf{"a": 1}',  # a byte-order mark
        b'"\\ud800"',  # an escaped lone surrogate
        '{"a": [1, 2.5]}'.encode("utf-16"),
        b'{"a": 1, "a": 2}',  # the last duplicate wins
        b"[NaN, Infinity, -Infinity, 1e400, -0.0, 123456789012345678901234567890]",
    ],
)
def test_bodies_the_fast_parser_refuses_decode_as_json_loads_reads_them(body: bytes) -> None:
    decoded, ok = _decode(body)
    assert ok and _same(decoded, json.loads(body))


@pytest.mark.parametrize("body", [b"[1,]", b'"\xff"', b"{", b"nul", b"\x00"])
def test_a_body_json_loads_refuses_is_not_json(body: bytes) -> None:
    assert _decode(body) == (None, False)


async def test_reused_request_urls_are_exactly_the_ones_httpx_builds_for_each_path_and_query() -> None:
    """Parsed URLs are kept for reuse: each request still carries its own path and query, in order, escaped."""
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200, json=[])

    asked: list[tuple[str, dict[str, str]]] = [
        ("/iserver/marketdata/snapshot", {"conids": "265598", "fields": "31,84"}),
        ("/iserver/marketdata/snapshot", {"conids": "8314", "fields": "31,84"}),
        ("/iserver/marketdata/snapshot", {"fields": "31,84", "conids": "265598"}),
        ("/iserver/secdef/search", {"symbol": "A&B =C"}),
        ("/iserver/marketdata/snapshot", {"conids": "265598", "fields": "31,84"}),
        ("/iserver/marketdata/snapshot", {}),
    ]
    client, http = mock_client(handler)
    async with http, client:
        for path, params in asked:
            await client.get(path, params)
    expected = [
        str(httpx2.Request("GET", "https://localhost:5000/v1/api" + path, params=params).url) for path, params in asked
    ]
    brokerage = [url for url in seen if "/iserver/accounts" not in url]  # the priming call comes first
    assert brokerage == expected
    assert brokerage[0] != brokerage[1] and brokerage[0] != brokerage[2]
    assert brokerage[3].endswith("/iserver/secdef/search?symbol=A%26B+%3DC")
    assert brokerage[-1].endswith("/iserver/marketdata/snapshot")


async def test_the_kept_urls_are_bounded() -> None:
    """Many distinct paths (order ids, conids) never grow the kept URLs past their bound."""
    from ibkr_gateway_cpapi import client as module

    client, http = mock_client(lambda request: httpx2.Response(200, json={}))
    async with http, client:
        for n in range(module._URL_CACHE_SIZE * 2 + 5):  # pyright: ignore[reportPrivateUsage]
            await client.get(f"/portfolio/DU1/position/{n}")
        assert len(client._urls) <= module._URL_CACHE_SIZE  # pyright: ignore[reportPrivateUsage]
