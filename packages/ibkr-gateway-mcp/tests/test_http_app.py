"""The remote MCP server over real loopback HTTP: token checks, challenges, metadata, allowlists, limits."""

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.scopes import Scope
from ibkr_gateway_mcp.auth import JwksTokenVerifier
from ibkr_gateway_mcp.catalog import visible_tools
from ibkr_gateway_mcp.http_app import RemoteMcpApp, verifier_settings
from ibkr_gateway_mcp.testing import FakeIssuer, loopback_socket, serve_loopback
from joserfc.jwk import RSAKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.anyio

TOKEN_KEY_ENV = "IBKR_TEST_REMOTE_TOKEN_KEY"
TOKEN_KEY = "t" * 40
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@dataclass
class Remote:
    issuer: FakeIssuer
    base_url: str
    resource: str
    app: RemoteMcpApp
    gateway: Gateway

    def mint(self, **kwargs: Any) -> str:
        kwargs.setdefault("audience", self.resource)
        return self.issuer.mint(**kwargs)

    async def post(self, token: str | None = None, *, headers: dict[str, str] | None = None, body: Any = INIT) -> Any:
        sent = dict(MCP_HEADERS)
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        async with httpx2.AsyncClient(timeout=5) as http:
            return await http.post(self.resource, headers=sent, content=json.dumps(body))

    async def audit_rows(self, event_type: str) -> list[dict[str, Any]]:
        tail = await self.gateway.audit.tail(limit=1000)
        return [row.event.model_dump(mode="json") for row in tail if row.event.event_type == event_type]


RemoteFactory = Callable[..., Any]


@pytest.fixture
async def remote_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[..., Any]]:
    monkeypatch.setenv(TOKEN_KEY_ENV, TOKEN_KEY)
    async with FakeIssuer().serve() as issuer:
        yield lambda **overrides: _remote(tmp_path, issuer, overrides)


def _remote(tmp_path: Path, issuer: FakeIssuer, overrides: dict[str, Any]) -> Any:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def run() -> AsyncIterator[Remote]:
        sock = loopback_socket()
        port = sock.getsockname()[1]
        resource = f"http://127.0.0.1:{port}/mcp"
        section: dict[str, Any] = {
            "enabled": True,
            "resource": resource,
            "issuer": issuer.url,
            "allowed_scopes": ["read_only"],
            "token_id_hmac_secret_env": TOKEN_KEY_ENV,
            "jwks_refetch_interval_seconds": 30,
            "max_request_bytes": 4096,
        }
        clock = overrides.pop("clock", None)
        section.update(overrides)
        config = GatewayConfig.from_mapping(
            {
                "auth": {"enabled_scopes": ["read_only"]},
                "state": {"directory": str(tmp_path / "state")},
                "safety": {"remote_mcp_enabled": True},
                "remote_mcp": section,
            }
        )
        async with (
            Gateway.from_config(config) as gateway,
            JwksTokenVerifier(verifier_settings(config.remote_mcp)) as verifier,
        ):
            timing = {"clock": clock} if clock is not None else {}
            app = RemoteMcpApp(gateway, config.remote_mcp, verifier, token_id_key=TOKEN_KEY.encode(), **timing)
            async with serve_loopback(app, sock) as base_url:
                yield Remote(issuer, base_url, resource, app, gateway)

    return run()


@pytest.fixture
async def remote(remote_factory: RemoteFactory) -> AsyncIterator[Remote]:
    async with remote_factory() as running:
        yield running


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"


def _claims(remote: Remote, **extra: Any) -> dict[str, Any]:
    import time

    now = int(time.time())
    return {
        "iss": remote.issuer.url,
        "aud": remote.resource,
        "sub": "x",
        "exp": now + 300,
        "scope": "read_only",
    } | extra


def _forged(remote: Remote, case: str) -> str:
    import time

    now = int(time.time())
    match case:
        case "malformed":
            return "not-a-jwt"
        case "alg-none":
            return _unsigned({"alg": "none", "typ": "JWT"}, _claims(remote), b"x")
        case "hs256-with-public-key":
            key = remote.issuer.signing_key
            assert isinstance(key, RSAKey)
            pem = key.as_pem(private=False)
            token = _unsigned({"alg": "HS256", "kid": key.kid}, _claims(remote))
            signing_input = token.rsplit(".", 1)[0].encode()
            return f"{signing_input.decode()}.{_b64(hmac.new(pem, signing_input, hashlib.sha256).digest())}"
        case "unknown-kid":
            stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"}, private=True)
            return remote.mint(key=stranger)
        case "bad-signature":
            impostor = RSAKey.generate_key(2048, parameters={"kid": remote.issuer.signing_key.kid}, private=True)
            return remote.mint(key=impostor)
        case "expired":
            return remote.mint(claims={"exp": now - 3600, "iat": now - 7200})
        case "nbf-in-future":
            return remote.mint(claims={"nbf": now + 3600})
        case "wrong-iss":
            return remote.mint(claims={"iss": remote.issuer.url + "/other"})
        case "wrong-aud":
            return remote.mint(audience="http://127.0.0.1:1/mcp")
        case "missing-sub":
            return remote.mint(subject=None)
        case _:
            raise AssertionError(case)


FORGED = [
    "malformed",
    "alg-none",
    "hs256-with-public-key",
    "unknown-kid",
    "bad-signature",
    "expired",
    "nbf-in-future",
    "wrong-iss",
    "wrong-aud",
    "missing-sub",
]


def _challenge(response: Any) -> str:
    value = response.headers.get("www-authenticate")
    assert value is not None, response.text
    return value


async def test_a_request_without_credentials_gets_a_challenge_without_error(remote: Remote) -> None:
    """RFC 6750 §3.1: no credentials, no error code; the metadata URL is absolute (RFC 9728, MCP spec)."""
    response = await remote.post()
    assert response.status_code == 401
    challenge = _challenge(response)
    assert challenge.startswith("Bearer ")
    assert "error=" not in challenge
    assert f'resource_metadata="{remote.base_url}/.well-known/oauth-protected-resource/mcp"' in challenge
    denied = await remote.audit_rows("remote_auth_denied")
    assert [row["metadata"]["reason"] for row in denied] == ["token_missing"]


@pytest.mark.parametrize("case", FORGED)
async def test_a_forged_or_invalid_token_gets_401_invalid_token(remote: Remote, case: str) -> None:
    """Every forged, expired, foreign or incomplete token is refused with the RFC 6750 challenge, and audited."""
    token = _forged(remote, case)
    response = await remote.post(token)
    assert response.status_code == 401, response.text
    challenge = _challenge(response)
    assert 'error="invalid_token"' in challenge
    assert "resource_metadata=" in challenge
    denied = await remote.audit_rows("remote_auth_denied")
    assert len(denied) == 1
    assert token not in json.dumps(denied)
    assert await remote.audit_rows("tool_completed") == []


async def test_a_token_without_any_granted_scope_gets_403_naming_the_scopes(remote: Remote) -> None:
    """A valid token whose scopes are all outside the allowed set gets `insufficient_scope` with `scope=`."""
    response = await remote.post(remote.mint(scope="openid ibkr:orders:live:submit"))
    assert response.status_code == 403
    challenge = _challenge(response)
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="' in challenge and "ibkr:accounts:read" in challenge
    [row] = await remote.audit_rows("remote_auth_denied")
    assert row["principal_subject"] == "agent-1"
    assert row["metadata"]["reason"] == "insufficient_scope"


async def test_a_valid_token_lists_granted_tools_and_calls_them_as_the_remote_principal(remote: Remote) -> None:
    """End to end with the SDK client: tools/list is filtered by granted scope, calls carry the principal."""
    token = remote.mint(scope="ibkr:accounts:read ibkr:health:read ibkr:orders:live:submit")
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=10) as http,
        Client(streamable_http_client(remote.resource, http_client=http)) as client,
    ):
        with anyio.fail_after(10):
            tools = sorted(tool.name for tool in (await client.list_tools()).tools)
            result = await client.call_tool("ibkr_accounts_list", {})
            refused = await client.call_tool("ibkr_positions_list", {"account_id": "DU1234567"})
    assert tools == sorted(visible_tools({Scope.ACCOUNTS_READ, Scope.HEALTH_READ}))
    assert "ibkr_positions_list" not in tools
    assert not result.is_error, result
    assert refused.is_error
    assert isinstance(refused.structured_content, dict)
    assert refused.structured_content["code"] == ErrorCode.AUTH_MISSING_SCOPE
    [succeeded] = await remote.audit_rows("remote_auth_succeeded")
    assert succeeded["principal_kind"] == "remote"
    assert succeeded["principal_subject"] == "agent-1"
    assert succeeded["principal_issuer"] == remote.issuer.url
    assert succeeded["principal_token_id_hash"] is not None
    assert succeeded["scopes"] == ["ibkr:accounts:read", "ibkr:health:read"]
    [call] = await remote.audit_rows("tool_completed")
    assert call["tool_name"] == "ibkr_accounts_list"
    assert (call["principal_kind"], call["principal_subject"], call["principal_client_id"]) == (
        "remote",
        "agent-1",
        "test-client",
    )
    assert call["principal_token_id_hash"] == succeeded["principal_token_id_hash"]


async def test_protected_resource_metadata_is_served_at_both_well_known_paths(remote: Remote) -> None:
    """RFC 9728: the resource is the canonical URL and the authorization server is the issuer itself."""
    async with httpx2.AsyncClient(base_url=remote.base_url) as http:
        root = await http.get("/.well-known/oauth-protected-resource")
        suffixed = await http.get("/.well-known/oauth-protected-resource/mcp")
    assert root.status_code == suffixed.status_code == 200
    assert root.json() == suffixed.json()
    document = suffixed.json()
    assert document["resource"] == remote.resource
    assert document["authorization_servers"] == [remote.issuer.url]
    assert document["bearer_methods_supported"] == ["header"]
    assert "ibkr:accounts:read" in document["scopes_supported"]
    assert "ibkr:orders:live:submit" not in document["scopes_supported"]


async def test_a_foreign_origin_or_host_is_refused_before_authentication(remote: Remote) -> None:
    """MCP transport rule: a present, foreign Origin gets 403; a foreign Host gets 421 (DNS rebinding)."""
    token = remote.mint()
    assert (await remote.post(token, headers={"origin": "http://evil.example"})).status_code == 403
    assert (await remote.post(token, headers={"origin": "null"})).status_code == 403
    assert (await remote.post(token, headers={"host": "evil.example"})).status_code == 421
    assert (await remote.post(token, headers={"origin": remote.base_url})).status_code == 200
    assert await remote.audit_rows("remote_auth_denied") == []


async def test_a_rotated_key_is_picked_up_with_one_refetch(remote: Remote) -> None:
    """An unknown kid refetches the JWKS once; further unknown kids within the interval do not."""
    assert (await remote.post(remote.mint())).status_code == 200
    fetches = remote.issuer.jwks_fetches
    remote.issuer.rotate("key-2")
    assert (await remote.post(remote.mint())).status_code == 200
    assert remote.issuer.jwks_fetches == fetches + 1
    for _ in range(5):
        assert (await remote.post(_forged(remote, "unknown-kid"))).status_code == 401
    assert remote.issuer.jwks_fetches == fetches + 1


async def test_each_subject_has_its_own_rate_limit(remote_factory: RemoteFactory) -> None:
    """Over the limit, a subject gets 429 with Retry-After; another subject is unaffected."""
    async with remote_factory(rate_limit_max_requests=3) as remote:
        busy = remote.mint(subject="busy")
        statuses = [(await remote.post(busy)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        last = await remote.post(busy)
        assert last.headers["retry-after"].isdigit()
        assert (await remote.post(remote.mint(subject="calm"))).status_code == 200
        assert len(await remote.audit_rows("remote_rate_limited")) == 1


async def test_forwarded_for_is_ignored_without_trusted_proxies(remote_factory: RemoteFactory) -> None:
    """Failed attempts are limited per peer address; a spoofed X-Forwarded-For does not reset the count."""
    async with remote_factory(rate_limit_max_requests=2) as remote:
        statuses = [
            (await remote.post("bad", headers={"x-forwarded-for": f"10.0.0.{n}"})).status_code for n in range(4)
        ]
    assert statuses == [401, 401, 401, 429]


async def test_an_oversize_body_gets_413(remote: Remote) -> None:
    """Bodies over remote_mcp.max_request_bytes are refused before they are read."""
    body = dict(INIT, padding="x" * 5000)
    response = await remote.post(remote.mint(), body=body)
    assert response.status_code == 413


async def test_a_session_opened_by_one_subject_is_unknown_to_another(remote: Remote) -> None:
    """Sessions are bound to the subject that opened them (MCP spec: sessions are not authentication)."""
    opened = await remote.post(remote.mint(subject="alice"))
    session = opened.headers["mcp-session-id"]
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    hijack = await remote.post(remote.mint(subject="mallory"), headers={"mcp-session-id": session}, body=ping)
    assert hijack.status_code == 404


async def test_health_and_readiness_need_no_token(remote: Remote) -> None:
    """/healthz is liveness; /readyz also proves the issuer's keys can be fetched."""
    async with httpx2.AsyncClient(base_url=remote.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).json() == {"status": "ready"}


def test_remote_mcp_switches_must_agree() -> None:
    """remote_mcp.enabled without safety.remote_mcp_enabled (or the reverse) is refused (we decided)."""
    complete = {
        "enabled": True,
        "resource": "https://gw.example.com/mcp",
        "issuer": "https://idp.example.com",
        "allowed_scopes": ["read_only"],
        "token_id_hmac_secret_env": TOKEN_KEY_ENV,
    }
    for data in ({"safety": {"remote_mcp_enabled": True}}, {"remote_mcp": complete}):
        with pytest.raises(GatewayError) as caught:
            GatewayConfig.from_mapping(data)
        assert caught.value.code == ErrorCode.CONFIG_REMOTE_MCP_FORBIDDEN


def test_binding_beyond_loopback_needs_tls_or_a_proxy() -> None:
    """An exposed plain-HTTP bind is refused unless a TLS-terminating proxy is declared."""
    section = {
        "enabled": True,
        "resource": "https://gw.example.com/mcp",
        "issuer": "https://idp.example.com",
        "allowed_scopes": ["read_only"],
        "token_id_hmac_secret_env": TOKEN_KEY_ENV,
        "bind_address": "0.0.0.0:8080",
    }
    with pytest.raises(GatewayError) as caught:
        GatewayConfig.from_mapping({"safety": {"remote_mcp_enabled": True}, "remote_mcp": section})
    assert caught.value.code == ErrorCode.CONFIG_REMOTE_MCP_FORBIDDEN
    proxied = GatewayConfig.from_mapping(
        {"safety": {"remote_mcp_enabled": True}, "remote_mcp": section | {"behind_proxy": True}}
    )
    assert proxied.remote_mcp.behind_proxy


def test_a_short_token_id_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token-id key comes from the environment and must hold at least 32 bytes."""
    monkeypatch.setenv(TOKEN_KEY_ENV, "short")
    config = GatewayConfig.from_mapping({"remote_mcp": {"token_id_hmac_secret_env": TOKEN_KEY_ENV}})
    with pytest.raises(GatewayError) as caught:
        config.remote_mcp.token_id_key()
    assert caught.value.code == ErrorCode.CONFIG_INVALID


# ------------------------------------------------------------------------------ hostile bodies


async def _session(remote: Remote, token: str) -> dict[str, str]:
    """Open a legacy session; the headers that address it."""
    response = await remote.post(token)
    assert response.status_code == 200, response.text
    headers = {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    ready = await remote.post(token, headers=headers, body={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert ready.status_code == 202
    return headers


async def _post_raw(remote: Remote, token: str, headers: dict[str, str], raw: bytes) -> Any:
    sent = dict(MCP_HEADERS) | headers | {"authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.post(remote.resource, headers=sent, content=raw)


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ('{"x":1e999}', "INPUT_NON_FINITE_NUMBER"),
        ('{"x":NaN}', "INPUT_NON_FINITE_NUMBER"),
        ('{"x":' + "[" * 300 + "]" * 300 + "}", "INPUT_TOO_DEEP"),
        ('{"x":"\\udc00"}', "INPUT_INVALID_UNICODE"),
        ('{"x":' + "7" * 3000 + "}", "INPUT_NUMBER_TOO_LARGE"),
    ],
)
async def test_hostile_tool_arguments_over_http_get_a_coded_tool_error(
    remote_factory: RemoteFactory, arguments: str, code: str
) -> None:
    """The same screen as stdio: a coded INPUT_* tool error, audited under the remote principal."""
    async with remote_factory(max_request_bytes=65536) as remote:
        token = remote.mint()
        headers = await _session(remote, token)
        raw = (
            '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"ibkr_health","arguments":'
            + arguments
            + "}}"
        ).encode()
        with anyio.fail_after(10):
            response = await _post_raw(remote, token, headers, raw)
        assert response.status_code == 200, response.text
        reply = response.json()
        assert reply["id"] == 9
        assert reply["result"]["isError"] is True
        assert reply["result"]["structuredContent"]["code"] == code
        [row] = [row for row in await remote.audit_rows("tool_failed") if row["error_code"] == code]
        assert (row["principal_kind"], row["principal_subject"]) == ("remote", "agent-1")
        assert row["event_id"] == reply["result"]["structuredContent"]["audit_event_id"]


async def test_a_body_that_is_not_json_gets_32700_and_is_audited_by_hash(remote: Remote) -> None:
    """-32700 with the stable code in error.data; the audit row has the size and hash, not the bytes."""
    token = remote.mint()
    headers = await _session(remote, token)
    response = await _post_raw(remote, token, headers, b"{not json: my secret note")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32700
    assert error["data"]["code"] == "INPUT_MALFORMED_REQUEST"
    [row] = await remote.audit_rows("mcp_request_refused")
    assert row["metadata"] == {"transport": "http", "jsonrpc_code": -32700, "raw_bytes": 25}
    assert row["principal_subject"] == "agent-1"
    assert "secret note" not in json.dumps(row)


async def test_a_params_shape_error_over_http_is_audited(remote: Remote) -> None:
    """The SDK's own -32602 (tool name not a string) is answered by the SDK and audited by the server."""
    token = remote.mint()
    headers = await _session(remote, token)
    body = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": 5}}
    response = await remote.post(token, headers=headers, body=body)
    assert "-32602" in response.text
    [row] = await remote.audit_rows("mcp_request_refused")
    assert row["metadata"]["jsonrpc_code"] == -32602
    assert row["tool_name"] == "tools/call"


async def test_a_dropped_notification_over_http_is_audited_and_housekeeping_is_not(remote: Remote) -> None:
    """202 for every notification; an unknown or malformed one leaves one event (hash and size), a well-formed
    cancel or progress none."""
    token = remote.mint()
    headers = await _session(remote, token)
    quiet = [
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99, "reason": "late"}},
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}},
    ]
    dropped = [
        ({"jsonrpc": "2.0", "method": "notifications/nope", "params": {"note": "my secret note"}}, "unknown_method"),
        ({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": {}}}, "malformed_params"),
    ]
    for body in quiet + [body for body, _ in dropped]:
        response = await remote.post(token, headers=headers, body=body)
        assert response.status_code == 202, response.text
    with anyio.fail_after(10):
        while len(await remote.audit_rows("mcp_notification_dropped")) < len(dropped):
            await anyio.sleep(0.02)
    await anyio.sleep(0.3)  # room for a wrong extra event to show
    rows = await remote.audit_rows("mcp_notification_dropped")
    assert sorted(row["metadata"]["reason"] for row in rows) == sorted(reason for _, reason in dropped)
    for row in rows:
        assert row["metadata"]["transport"] == "http" and row["metadata"]["raw_bytes"] > 0
        assert row["principal_subject"] == "agent-1" and row["input_hash"]
    assert "secret note" not in json.dumps(rows)
    assert await remote.audit_rows("mcp_request_refused") == []


# ------------------------------------------------------------------------------ fair share


async def test_one_subject_cannot_take_every_session_slot(remote_factory: RemoteFactory) -> None:
    """A health-only subject opening sessions without end is held at its share; other subjects still get in."""
    async with remote_factory(max_sessions=6, max_sessions_per_subject=3) as remote:
        greedy = remote.mint(subject="greedy", scope="ibkr:health:read")
        statuses = [(await remote.post(greedy)).status_code for _ in range(10)]
        assert statuses == [200] * 3 + [429] * 7
        refused = await remote.post(greedy)
        assert refused.json()["error"] == "too_many_sessions"
        for subject in ("calm-1", "calm-2"):
            assert (await remote.post(remote.mint(subject=subject))).status_code == 200
        [row] = await remote.audit_rows("remote_rate_limited")
        assert row["principal_subject"] == "greedy"
        assert row["metadata"]["limit"] == "sessions"


async def test_closing_a_session_frees_the_subjects_slot(remote_factory: RemoteFactory) -> None:
    async with remote_factory(max_sessions_per_subject=1) as remote:
        token = remote.mint()
        headers = await _session(remote, token)
        assert (await remote.post(token)).status_code == 429
        async with httpx2.AsyncClient(timeout=5) as http:
            closed = await http.delete(remote.resource, headers=headers | {"authorization": f"Bearer {token}"})
        assert closed.status_code == 200
        assert (await remote.post(token)).status_code == 200


async def test_sessions_beyond_the_fair_share_close_after_the_short_idle_timeout(
    remote_factory: RemoteFactory,
) -> None:
    """Beyond its share a subject's least recently used sessions expire after over_share_idle_timeout_seconds."""
    now = [1000.0]
    async with remote_factory(
        clock=lambda: now[0], sessions_fair_share=1, over_share_idle_timeout_seconds=30, max_sessions_per_subject=3
    ) as remote:
        token = remote.mint()
        old = await _session(remote, token)
        now[0] += 1
        kept = await _session(remote, token)
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        now[0] = 1020
        assert (await remote.post(token, headers=kept, body=ping)).status_code == 200
        now[0] = 1029  # `old` idle 29 s: within the short timeout
        assert (await remote.post(token, headers=old, body=ping)).status_code == 200
        now[0] = 1045  # `kept` is now the least recently used, idle 25 s
        assert (await remote.post(token, headers=kept, body=ping)).status_code == 200
        now[0] = 1060  # `old`: beyond the share, idle 31 s
        assert (await remote.post(token, headers=kept, body=ping)).status_code == 200
        assert (await remote.post(token, headers=old, body=ping)).status_code == 404
        assert (await remote.post(token)).status_code == 200  # its slot is free again


async def test_in_flight_requests_are_capped_per_subject(remote_factory: RemoteFactory) -> None:
    """While one request of a subject is still being sent, its second gets 429; another subject is served."""
    async with remote_factory(max_inflight_per_subject=1) as remote:
        token = remote.mint()
        release = anyio.Event()
        started = anyio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield json.dumps(INIT)[:10].encode()
            started.set()
            await release.wait()
            yield json.dumps(INIT)[10:].encode()

        async def hold() -> None:
            async with httpx2.AsyncClient(timeout=10) as http:
                sent = dict(MCP_HEADERS) | {"authorization": f"Bearer {token}"}
                response = await http.post(remote.resource, headers=sent, content=slow_body())
                assert response.status_code == 200

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(hold)
            with anyio.fail_after(10):
                await started.wait()
                await anyio.sleep(0.2)
                second = await remote.post(token)
                other = await remote.post(remote.mint(subject="other"))
            release.set()
        assert second.status_code == 429
        assert second.json()["error"] == "too_many_requests_in_flight"
        assert other.status_code == 200


async def test_a_callers_traceparent_is_continued_and_cannot_switch_the_calls_spans_off(remote: Remote) -> None:
    """With OpenTelemetry on, a call's span joins the trace of the caller's W3C `traceparent`, sampled even when
    the caller's flags say not to; its `tracestate` text is not taken; a malformed header starts a new trace."""
    from ibkr_gateway_core.observability import disable_opentelemetry, enable_opentelemetry
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    token = remote.mint(scope="ibkr:accounts:read")
    sent = {
        "continued": {"traceparent": f"00-{trace_id}-{parent}-00", "tracestate": "leak=DU1234567"},
        "malformed": {"traceparent": f"00-{trace_id}-{parent}-zz"},
    }
    spans = InMemorySpanExporter()
    enable_opentelemetry(span_exporter=spans, metric_reader=InMemoryMetricReader())
    try:
        for headers in sent.values():
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}", **headers}, timeout=10) as http,
                Client(streamable_http_client(remote.resource, http_client=http)) as client,
            ):
                with anyio.fail_after(10):
                    assert not (await client.call_tool("ibkr_accounts_list", {})).is_error
    finally:
        disable_opentelemetry()
    continued, malformed = [
        span for span in spans.get_finished_spans() if span.name == "ibkr_gateway.call list_accounts"
    ]
    assert continued.context is not None and continued.parent is not None
    assert (f"{continued.context.trace_id:032x}", f"{continued.parent.span_id:016x}") == (trace_id, parent)
    assert continued.parent.is_remote
    assert continued.context.trace_flags.sampled
    assert "DU1234567" not in continued.to_json()
    assert malformed.context is not None and malformed.parent is None
    assert f"{malformed.context.trace_id:032x}" != trace_id
