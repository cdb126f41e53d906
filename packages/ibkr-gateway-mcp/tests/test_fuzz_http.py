"""Fuzzing every MCP tool over the streamable HTTP transport: a real uvicorn on loopback behind OAuth.

The server (issuer, gateway, remote app) runs on its own event loop in a blocking portal, so the
tests stay synchronous and one server serves every case. Properties as over stdio:
each request answered within a bound, success or a stable code, exactly one audit event, the audit
chain verifies at the end. `IBKR_FUZZ_PROFILE=long` runs 10,000 cases per test.
"""

import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from anyio.from_thread import start_blocking_portal
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.scopes import parse_scopes
from ibkr_gateway_mcp.auth import JwksTokenVerifier
from ibkr_gateway_mcp.http_app import RemoteMcpApp, verifier_settings
from ibkr_gateway_mcp.testing import FakeIssuer, loopback_socket, serve_loopback

from .fuzz_cases import LONG, call_line, check_tool_reply, is_quiet_notification, malformed_line, run_cases, tool_case
from .raw_stdio import AuditView

TOKEN_KEY_ENV = "IBKR_TEST_FUZZ_TOKEN_KEY"
TOKEN_KEY = "f" * 40
BOUND_S = 10.0
TOKEN_REFRESH_S = 120.0 if LONG else 2.0
"""A client mints a new token this often (tokens expire after 300 s, a long run lasts longer; CI refreshes too)."""

_ids = itertools.count(1000)


@dataclass
class Target:
    resource: str
    mint: Callable[[], str]
    headers: dict[str, str]
    audit: AuditView
    schemas: dict[str, dict[str, Any]]
    http: httpx2.Client
    minted_at: float = 0.0
    tool_calls: int = 0
    lines: int = 0
    cases: int = 0
    expected: int | None = None
    previous: bytes = b""

    def post(self, raw: bytes) -> httpx2.Response:
        """Post one body in the session."""
        return self.http.post(self.resource, content=raw, headers=self.headers)

    def refresh_token(self) -> None:
        """Mint a new token when the last is `TOKEN_REFRESH_S` old, as a client refreshes, between cases.

        The first request with a new token writes its `remote_auth_succeeded` event, so a ping with
        it goes first, and the count a case starts from includes that event.
        """
        if time.monotonic() - self.minted_at <= TOKEN_REFRESH_S:
            return
        self.headers["authorization"] = f"Bearer {self.mint()}"
        self.minted_at = time.monotonic()
        pinged = self.post(b'{"jsonrpc":"2.0","id":"refresh","method":"ping"}')
        assert pinged.status_code == 200, pinged.text[:500]
        if self.expected is not None:
            self.expected += 1


def _payload(response: httpx2.Response) -> dict[str, Any] | None:
    """The JSON-RPC message of a reply, sent as JSON or as one SSE event."""
    if response.status_code == 202 or not response.content:
        return None
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        messages: list[dict[str, Any]] = []
        for event in response.text.replace("\r\n", "\n").split("\n\n"):
            data = [line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:")]
            if data and "".join(data).strip():
                messages.append(json.loads("\n".join(data)))  # SSE: one event's data lines joined by newlines
        return messages[-1] if messages else None
    return response.json()


@asynccontextmanager
async def _serve(root: Path) -> AsyncIterator[tuple[str, Callable[[], str]]]:
    async with FakeIssuer().serve() as issuer:
        sock = loopback_socket()
        resource = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        config = GatewayConfig.from_mapping(
            {
                "auth": {"enabled_scopes": ["with_paper", "ibkr:audit:read"]},
                "state": {"directory": str(root / "state")},
                "safety": {"remote_mcp_enabled": True},
                "remote_mcp": {
                    "enabled": True,
                    "resource": resource,
                    "issuer": issuer.url,
                    "allowed_scopes": ["with_paper", "ibkr:audit:read"],
                    "token_id_hmac_secret_env": TOKEN_KEY_ENV,
                    "rate_limit_max_requests": 1_000_000,
                },
            }
        )
        async with (
            Gateway.from_config(config) as gateway,
            JwksTokenVerifier(verifier_settings(config.remote_mcp)) as verifier,
        ):
            app = RemoteMcpApp(gateway, config.remote_mcp, verifier, token_id_key=TOKEN_KEY.encode())
            async with serve_loopback(app, sock):
                granted = parse_scopes(["with_paper", "ibkr:audit:read"])
                scope = " ".join(sorted(item.value for item in granted))
                yield resource, lambda: issuer.mint(audience=resource, scope=scope)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("fuzz-http")
    with pytest.MonkeyPatch.context() as patch, start_blocking_portal() as portal:
        patch.setenv(TOKEN_KEY_ENV, TOKEN_KEY)
        with (
            portal.wrap_async_context_manager(_serve(root)) as (resource, mint),
            httpx2.Client(timeout=BOUND_S) as http,
        ):
            headers = {
                "accept": "application/json, text/event-stream",
                "content-type": "application/json",
                "authorization": f"Bearer {mint()}",
            }
            init = {
                "jsonrpc": "2.0",
                "id": "init",
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "f", "version": "0"},
                },
            }
            opened = http.post(resource, json=init, headers=headers)
            assert opened.status_code == 200, opened.text
            headers |= {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            ready = http.post(resource, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            assert ready.status_code == 202
            listed = _payload(
                http.post(resource, json={"jsonrpc": "2.0", "id": "l", "method": "tools/list"}, headers=headers)
            )
            assert listed is not None
            schemas = {tool["name"]: tool["inputSchema"] for tool in listed["result"]["tools"]}
            assert len(schemas) > 10
            running = Target(resource, mint, headers, AuditView(root / "state"), schemas, http, time.monotonic())
            running.expected = running.audit.count()
            yield running
            running.audit.close()
            running.audit.verify()
            print(f"http fuzz: {running.tool_calls} tool calls, {running.lines} raw bodies")


def _one(target: Target, raw: bytes, *, expect_reply: bool) -> dict[str, Any] | None:
    """Post one body; assert it is answered in time and adds exactly one audit event (none for housekeeping).

    A late second event of one case shows as a changed count at the start of the next one.
    """
    target.refresh_token()
    before = target.audit.count()
    if target.expected is not None:  # None after a failed case: its own failure is the report
        late = before - target.expected
        assert late == 0, f"{late} late audit event(s) after {target.previous[:200]!r}"
    target.expected = None
    started = time.monotonic()
    response = target.post(raw)
    assert time.monotonic() - started < BOUND_S
    assert response.status_code in (200, 202, 400), (response.status_code, response.text[:500])
    reply = _payload(response)
    if expect_reply:
        assert reply is not None, (raw[:200], response.status_code, response.text[:500])
    quiet = is_quiet_notification(raw)
    while not quiet and target.audit.count() == before and time.monotonic() - started < BOUND_S:
        time.sleep(0.01)
    added = target.audit.count() - before
    assert added == (0 if quiet else 1), (
        f"{added} audit events for {raw[:200]!r}: {response.status_code} {response.text[:300]}"
    )
    target.expected = before + added
    target.previous = raw
    target.cases += 1
    return reply


@pytest.mark.slow
def test_every_tool_call_over_http_is_answered_coded_and_audited_once(target: Target) -> None:
    def case(seed: int) -> None:
        tool, arguments, _kind = tool_case(seed, target.schemas)
        request_id = next(_ids)
        reply = _one(target, call_line(request_id, tool, arguments), expect_reply=True)
        assert reply is not None and reply.get("id") == request_id, reply
        check_tool_reply(reply)

    target.tool_calls = run_cases(60, case)


@pytest.mark.slow
def test_every_malformed_body_over_http_is_answered_and_audited_once(target: Target) -> None:
    def case(seed: int) -> None:
        reply = _one(target, malformed_line(seed), expect_reply=False)
        if reply is not None:
            check_tool_reply(reply)

    target.lines = run_cases(40, case)
