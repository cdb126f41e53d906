"""Two replicas of the HTTP MCP server on one PostgreSQL state, behind nginx terminating TLS.

Everything is real and on loopback: Debian's PostgreSQL (a throwaway cluster), the project's HTTPS
simulator as the one broker both replicas talk to, an OpenID issuer for the bearer tokens, two
`ibkr-agent mcp serve --transport http` processes, and nginx running `deploy/nginx/ibkr-agent-gateway.conf`
(only its addresses and certificate paths replaced) with a certificate from a test CA. MCP SDK
clients connect to nginx over TLS; nginx keeps each bearer token on one replica, so many tokens of one
subject spread the calls over both.
"""

import json
import os
import signal
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import trustme
from cli_harness import AUDIT_KEY_ENV, ibkr_agent, run_cli
from ibkr_gateway_core.state import PostgresLocation, open_state
from ibkr_gateway_mcp.testing import FakeIssuer
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from otlp_collector import Collector, attributes_of, running_collector
from postgres_server import PostgresServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NGINX_SITE = ROOT / "deploy" / "nginx" / "ibkr-agent-gateway.conf"
DSN_ENV = "IBKR_TEST_STATE_DSN"
TOKEN_KEY_ENV = "IBKR_TEST_TOKEN_KEY"
AUDIT_KEY = "integration-test-audit-key-0123456789abcdef"
ACCOUNT = "DU1234567"
AGENT_SCOPES = (
    "ibkr:accounts:read ibkr:positions:read ibkr:orders:read ibkr:orders:preview ibkr:orders:paper:submit "
    "ibkr:approvals:read"
)
REVIEWER_SCOPES = "ibkr:approvals:create ibkr:approvals:read ibkr:killswitch:close ibkr:risk:read ibkr:accounts:read"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_binary() -> str:
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if Path(candidate).is_file():
            return candidate
    pytest.fail("nginx is not installed: apt-get install -y nginx")


@dataclass
class Stack:
    """The running deployment: nginx's URL, the replicas, the issuer, and a TLS context trusting the test CA."""

    url: str
    resource: str
    issuer: FakeIssuer
    tls: ssl.SSLContext
    replicas: list[subprocess.Popen[str]]
    replica_ports: list[int]
    replica_logs: list[Path]
    dsn: str
    env: dict[str, str]
    config: Path
    collector: Collector
    """The OpenTelemetry collector both replicas export to."""

    def token(self, subject: str, scopes: str) -> str:
        return self.issuer.mint(audience=self.resource, subject=subject, scope=scopes, lifetime_s=600)

    @asynccontextmanager
    async def client(self, token: str) -> AsyncIterator[Client]:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, verify=self.tls, timeout=30) as http,
            Client(streamable_http_client(self.resource, http_client=http)) as client,
        ):
            yield client

    def audit_rows(self) -> list[dict[str, Any]]:
        db = open_state(PostgresLocation(self.dsn))
        try:
            rows = db.execute("SELECT payload FROM audit_events ORDER BY sequence").fetchall()
        finally:
            db.close()
        return [json.loads(row[0]) for row in rows]


def _config(tmp_path: Path, resource: str, issuer: str, simulator: str) -> Path:
    path = tmp_path / "replica.yaml"
    path.write_text(
        "broker:\n"
        "  backend: client_portal_gateway\n"
        f"  base_url: {simulator}\n"
        "  verify_tls: false\n"
        "auth:\n  enabled_scopes: [with_paper]\n"
        f"  approvers: [{{issuer: '{issuer}', subject: reviewer}}]\n"
        f"audit:\n  hmac_secret_env: {AUDIT_KEY_ENV}\n"
        "state:\n"
        "  directory: replica-state\n"
        "  backend: postgres\n"
        f"  postgres_dsn_env: {DSN_ENV}\n"
        "orders:\n  preview_enabled: true\n  paper_enabled: true\n  operator_scopes: [with_live]\n"
        "safety:\n  remote_mcp_enabled: true\n"
        "remote_mcp:\n"
        "  enabled: true\n"
        f"  resource: {resource}\n"
        f"  issuer: {issuer}\n"
        "  allowed_scopes: [with_paper]\n"
        f"  token_id_hmac_secret_env: {TOKEN_KEY_ENV}\n"
        "  behind_proxy: true\n"
        "  trusted_proxies: [127.0.0.1/32]\n"
        "  rate_limit_max_requests: 100000\n"
        "  max_sessions_per_subject: 200\n"  # one subject opens many sessions here, on purpose
        "  max_inflight_per_subject: 200\n"
        "observability:\n  metrics_enabled: true\n  log_format: json\n  log_level: INFO\n  otel_enabled: true\n",
        encoding="utf-8",
    )
    return path


def _start_replica(config: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    command = [*ibkr_agent(), "--config", str(config), "mcp", "serve", "--transport", "http", "--enable-remote-mcp"]
    with log.open("w", encoding="utf-8") as stderr:  # a file, not a pipe: JSON call logs must never block
        return subprocess.Popen(
            [*command, "--bind", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            encoding="utf-8",
            env=env,
        )


def _await_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("http://127.0.0.1:"):
        process.kill()
        process.communicate(timeout=10)
        pytest.fail(f"replica did not start: {line!r}")


def _render_site(cert: Path, key: Path, listen: int, replicas: list[int]) -> str:
    site = NGINX_SITE.read_text(encoding="utf-8")
    for old, new in (
        ("127.0.0.1:8081", f"127.0.0.1:{replicas[0]}"),
        ("127.0.0.1:8082", f"127.0.0.1:{replicas[1]}"),
        ("listen 127.0.0.1:8443 ssl;", f"listen 127.0.0.1:{listen} ssl;"),
        ("/etc/ssl/ibkr-agent-gateway/fullchain.pem", str(cert)),
        ("/etc/ssl/ibkr-agent-gateway/privkey.pem", str(key)),
    ):
        assert old in site, f"the shipped nginx site no longer has {old!r}"
        site = site.replace(old, new)
    return site


def _start_nginx(directory: Path, site: str) -> subprocess.Popen[bytes]:
    for sub in ("logs", "temp"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(directory / sub, 0o777)
    (directory / "site.conf").write_text(site, encoding="utf-8")
    temp = directory / "temp"
    (directory / "nginx.conf").write_text(
        "worker_processes 1;\n"
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'logs' / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"  access_log {directory / 'logs' / 'access.log'};\n"
        f"  client_body_temp_path {temp / 'body'};\n"
        f"  proxy_temp_path {temp / 'proxy'};\n"
        f"  fastcgi_temp_path {temp / 'fastcgi'};\n"
        f"  uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"  scgi_temp_path {temp / 'scgi'};\n"
        f"  include {directory / 'site.conf'};\n"
        "}\n",
        encoding="utf-8",
    )
    binary = nginx_binary()
    checked = subprocess.run(
        [binary, "-t", "-p", str(directory), "-c", str(directory / "nginx.conf")], capture_output=True, encoding="utf-8"
    )
    assert checked.returncode == 0, checked.stderr
    return subprocess.Popen([binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"])


def _wait_for_port(port: int) -> None:
    for _ in range(200):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        anyio_sleep(0.05)
    pytest.fail(f"nothing listens on {port}")


def anyio_sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.communicate(timeout=15)  # also closes the pipes of a process that already died
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=10)


@pytest.fixture
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def collector() -> Iterator[Collector]:
    """The OpenTelemetry collector of the deployment; it outlives the replicas, which flush to it as they stop."""
    with running_collector() as running:
        yield running


@pytest.fixture
async def stack(
    tmp_path: Path, postgres_server: PostgresServer, https_simulator: str, tls_ca: trustme.CA, collector: Collector
) -> AsyncIterator[Stack]:
    dsn = postgres_server.new_database()
    listen = _free_port()
    resource = f"https://127.0.0.1:{listen}/mcp"
    cert = tls_ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    issuer = FakeIssuer()
    async with issuer.serve():
        config = _config(tmp_path, resource, issuer.url, https_simulator)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path / "home"),
            AUDIT_KEY_ENV: AUDIT_KEY,
            TOKEN_KEY_ENV: "integration-token-id-key-0123456789abcdef",
            DSN_ENV: dsn,
            "PYTHONWARNDEFAULTENCODING": "1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        ports = [_free_port(), _free_port()]
        logs = [tmp_path / f"replica-{n}.log" for n in range(2)]
        replicas = [_start_replica(config, port, env, log) for port, log in zip(ports, logs, strict=True)]
        nginx: subprocess.Popen[bytes] | None = None
        try:
            for replica in replicas:
                await anyio.to_thread.run_sync(_await_ready, replica)
            nginx = _start_nginx(tmp_path / "nginx", _render_site(cert_file, key_file, listen, ports))
            await anyio.to_thread.run_sync(_wait_for_port, listen)
            tls = ssl.create_default_context()
            tls_ca.configure_trust(tls)
            yield Stack(
                url=f"https://127.0.0.1:{listen}",
                resource=resource,
                issuer=issuer,
                tls=tls,
                replicas=replicas,
                replica_ports=ports,
                replica_logs=logs,
                dsn=dsn,
                env=env,
                config=config,
                collector=collector,
            )
        finally:
            if nginx is not None:
                _stop(nginx)
            for replica in replicas:
                _stop(replica)


async def _call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    content = result.structured_content
    assert isinstance(content, dict), result
    if result.is_error:
        return {"error": content}
    return {"value": content, "event": (result.meta or {}).get("ibkr-agent-gateway/audit-event-id")}


async def _approved(stack: Stack) -> tuple[str, str]:
    """A preview by the agent and its approval by the reviewer; returns (approval id, reviewer token)."""
    async with stack.client(stack.token("agent-1", AGENT_SCOPES)) as agent:
        preview = await _call(
            agent,
            "ibkr_order_preview",
            {"account_id": ACCOUNT, "symbol": "AAPL", "side": "buy", "quantity": "1", "limit_price": "100"},
        )
    assert "value" in preview, preview
    reviewer_token = stack.token("reviewer", REVIEWER_SCOPES)
    async with stack.client(reviewer_token) as reviewer:
        approval = await _call(
            reviewer,
            "ibkr_approvals_create",
            {"account_id": ACCOUNT, "preview_id": preview["value"]["preview_id"], "mode": "paper"},
        )
    assert "value" in approval, approval
    return str(approval["value"]["approval_id"]), reviewer_token


def _sessions_serving(rows: list[dict[str, Any]], tool: str) -> set[str]:
    return {str(row.get("session_id")) for row in rows if row.get("tool_name") == tool}


async def test_the_proxy_speaks_tls_and_forwards_to_healthy_replicas(stack: Stack) -> None:
    async with httpx2.AsyncClient(verify=stack.tls, timeout=10) as http:
        health = await http.get(f"{stack.url}/healthz")
        metadata = await http.get(f"{stack.url}/.well-known/oauth-protected-resource/mcp")
        hidden = await http.get(f"{stack.url}/metrics")
        denied = await http.post(stack.resource, json={})
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert metadata.json()["resource"] == stack.resource
    assert hidden.status_code == 404
    assert denied.status_code == 401 and "Bearer" in denied.headers["www-authenticate"]
    with pytest.raises(httpx2.ConnectError):  # plain HTTP clients and untrusted certificates are refused
        async with httpx2.AsyncClient(timeout=5) as http:
            await http.get(f"{stack.url}/healthz")


async def test_each_replica_serves_metrics_and_json_logs_without_account_ids(stack: Stack) -> None:
    """`/metrics` straight from a replica (the proxy hides it); one JSON log line per call, with its ids."""
    async with stack.client(stack.token("agent-1", AGENT_SCOPES)) as client:
        listed = await _call(client, "ibkr_positions_list", {"account_id": ACCOUNT})
    assert "value" in listed, listed
    host = stack.resource.removeprefix("https://").removesuffix("/mcp")
    texts: list[str] = []
    async with httpx2.AsyncClient(timeout=10, headers={"Host": host}) as http:
        for port in stack.replica_ports:
            answer = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
            texts.append(answer.text)
    joined = "\n".join(texts)
    assert 'ibkr_gateway_calls_total{operation="list_positions",outcome="ok"} 1' in joined
    assert "ibkr_gateway_audit_append_seconds_count" in joined
    assert "ibkr_gateway_broker_requests_total" in joined
    lines = [line for log in stack.replica_logs for line in log.read_text(encoding="utf-8").splitlines()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    calls = [r for r in records if r.get("operation") == "list_positions"]
    assert len(calls) == 1 and calls[0]["audit_event_id"] == listed["event"] and calls[0]["request_id"]
    for text in (joined, *lines):
        assert ACCOUNT not in text and "Bearer" not in text and stack.dsn not in text


async def test_a_callers_trace_goes_through_the_proxy_into_the_replicas_spans(stack: Stack) -> None:
    """The agent's `traceparent` passes nginx unchanged: the replica's call span continues that trace and is
    exported to the deployment's collector, and the call's JSON log record names it; no account id is sent."""
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    token = stack.token("agent-1", AGENT_SCOPES)
    headers = {"Authorization": f"Bearer {token}", "traceparent": f"00-{trace_id}-{parent}-01"}
    async with (
        httpx2.AsyncClient(headers=headers, verify=stack.tls, timeout=30) as http,
        Client(streamable_http_client(stack.resource, http_client=http)) as client,
    ):
        listed = await _call(client, "ibkr_positions_list", {"account_id": ACCOUNT})
    assert "value" in listed, listed
    found: list[Any] = []
    with anyio.fail_after(20):
        while not found:  # the replica's batch leaves within 50 ms
            found = [
                span
                for _, span in stack.collector.spans()
                if span.name == "ibkr_gateway.call list_positions"  # pyright: ignore[reportAttributeAccessIssue,reportUnknownMemberType]
            ]
            await anyio.sleep(0.05)
    [call] = found
    assert (call.trace_id.hex(), call.parent_span_id.hex()) == (trace_id, parent)
    assert attributes_of(call.attributes)["ibkr_gateway.audit_event_id"] == listed["event"]
    lines = [line for log in stack.replica_logs for line in log.read_text(encoding="utf-8").splitlines()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    [record] = [r for r in records if r.get("audit_event_id") == listed["event"]]
    assert (record["trace_id"], record["span_id"]) == (trace_id, call.span_id.hex())
    assert ACCOUNT.encode() not in stack.collector.everything()


async def test_fifty_submits_with_one_key_over_both_replicas_place_one_order(stack: Stack) -> None:
    approval_id, _ = await _approved(stack)
    tokens = [stack.token("agent-1", AGENT_SCOPES) for _ in range(16)]  # one subject, many tokens
    outcomes: list[dict[str, Any]] = []

    async def agent(token: str, calls: int) -> None:
        async with stack.client(token) as client:
            async with anyio.create_task_group() as group:
                for _ in range(calls):

                    async def one() -> None:
                        outcomes.append(
                            await _call(
                                client,
                                "ibkr_paper_order_submit",
                                {"account_id": ACCOUNT, "approval_id": approval_id, "idempotency_key": "one-key-50"},
                            )
                        )

                    group.start_soon(one)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            for n, token in enumerate(tokens):
                group.start_soon(agent, token, 4 if n < 2 else 3)  # 2*4 + 14*3 = 50
    assert len(outcomes) == 50
    orders = {o["value"]["broker_order_id"] for o in outcomes if "value" in o}
    refusals = [o["error"]["code"] for o in outcomes if "error" in o]
    assert len(orders) == 1, (orders, refusals)
    assert set(refusals) <= {"IDEMPOTENCY_IN_PROGRESS"}, refusals  # a twin still pending: retry later
    rows = stack.audit_rows()
    assert len(_sessions_serving(rows, "ibkr_paper_order_submit")) == 2, "both replicas must have served submits"
    async with stack.client(tokens[0]) as client:  # the broker itself holds one order under the key's cOID
        listed = await _call(client, "ibkr_orders_list", {"account_id": ACCOUNT})
    coid = next(o["value"]["client_order_id"] for o in outcomes if "value" in o)
    broker_orders = [o for o in listed["value"]["result"] if o.get("client_order_id") == coid]
    assert len(broker_orders) == 1, listed


async def test_an_approval_created_on_one_replica_is_consumed_once_through_the_other(stack: Stack) -> None:
    approval_id, _ = await _approved(stack)
    tokens = [stack.token("agent-1", AGENT_SCOPES) for _ in range(12)]
    outcomes: list[dict[str, Any]] = []

    async def submit(n: int, token: str) -> None:
        async with stack.client(token) as client:
            outcomes.append(
                await _call(
                    client,
                    "ibkr_paper_order_submit",
                    {"account_id": ACCOUNT, "approval_id": approval_id, "idempotency_key": f"own-key-{n}"},
                )
            )

    with anyio.fail_after(90):
        async with anyio.create_task_group() as group:
            for n, token in enumerate(tokens):
                group.start_soon(submit, n, token)
    placed = [o for o in outcomes if "value" in o]
    refused = {o["error"]["code"] for o in outcomes if "error" in o}
    assert len(placed) == 1, outcomes
    assert refused == {"APPROVAL_CONSUMED"}, outcomes
    rows = stack.audit_rows()
    created = {r["session_id"] for r in rows if r.get("tool_name") == "ibkr_approvals_create"}
    consumed = {
        r["session_id"]
        for r in rows
        if r.get("tool_name") == "ibkr_paper_order_submit" and r.get("result_status") == "completed"
    }
    assert len(created) == len(consumed) == 1
    submitted_on = _sessions_serving(rows, "ibkr_paper_order_submit")
    assert len(submitted_on) == 2, "the submits must have reached both replicas"


async def test_the_kill_switch_closed_on_one_replica_is_closed_on_the_other_at_once(stack: Stack) -> None:
    opened = run_cli(["--config", str(stack.config), "kill-switch", "open", "--reason", "trading day"], stack.env)
    assert opened.returncode == 0, opened.stderr
    tokens = [stack.token("reviewer", REVIEWER_SCOPES) for _ in range(12)]
    seen: dict[str, str] = {}

    async def status(token: str) -> None:
        async with stack.client(token) as client:
            answer = await _call(client, "ibkr_kill_switch_status", {})
            seen[token] = answer["value"]["state"]

    async with anyio.create_task_group() as group:
        for token in tokens:
            group.start_soon(status, token)
    assert set(seen.values()) == {"open"}
    async with stack.client(tokens[0]) as client:
        closed = await _call(client, "ibkr_kill_switch_close", {"reason": "halt everything"})
    assert "value" in closed, closed
    seen.clear()
    async with anyio.create_task_group() as group:
        for token in tokens:
            group.start_soon(status, token)
    assert set(seen.values()) == {"closed"}
    rows = stack.audit_rows()
    assert len(_sessions_serving(rows, "ibkr_kill_switch_status")) == 2


async def test_a_replica_killed_under_load_loses_no_acknowledged_audit_event(stack: Stack) -> None:
    acknowledged: list[str] = []
    stop = anyio.Event()

    async def load(token: str) -> None:
        while not stop.is_set():
            try:
                async with stack.client(token) as client:
                    while not stop.is_set():
                        answer = await _call(client, "ibkr_accounts_list", {})
                        if "value" in answer and answer["event"]:
                            acknowledged.append(str(answer["event"]))
            except Exception:
                await anyio.sleep(0.05)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(load, stack.token("agent-1", AGENT_SCOPES))
            await anyio.sleep(3)
            before = len(acknowledged)
            os.kill(stack.replicas[0].pid, signal.SIGKILL)
            await anyio.sleep(4)
            stop.set()
    assert before > 0 and len(acknowledged) > before, "load ran before and after the kill"
    stored = {str(row["event_id"]) for row in stack.audit_rows()}
    missing = [event for event in acknowledged if event not in stored]
    assert missing == []
    verified = run_cli(["--config", str(stack.config), "--json", "audit", "verify"], stack.env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["chain_valid"] is True
