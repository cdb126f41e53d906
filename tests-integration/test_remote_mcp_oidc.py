"""Remote MCP against a real OpenID provider: npm `oidc-provider` issues the token, `ibkr-agent` serves HTTP.

Both run as real processes on loopback. The provider issues an RS256 JWT access token through the
client-credentials grant with the MCP resource as its audience (RFC 8707); the MCP SDK client calls
tools with it over streamable HTTP. The provider is installed with npm into tests-integration/.oidc
(git-ignored) on first use; the test is skipped only when node or npm is missing.
"""

import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.abc import Process
from cli_harness import AUDIT_KEY_ENV, ibkr_agent, run_cli
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
OIDC_DIR = HERE / ".oidc"
CLIENT_ID = "remote-agent"
CLIENT_SECRET = "integration-client-secret-0123456789abcdef"
SCOPES = "ibkr:accounts:read ibkr:health:read"
TOKEN_KEY_ENV = "IBKR_TEST_REMOTE_TOKEN_KEY"


def _install_provider() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the oidc-provider OpenID provider")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        OIDC_DIR.mkdir(exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-save", "oidc-provider@9"],
            cwd=OIDC_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    script = OIDC_DIR / "provider.mjs"  # beside node_modules, so node resolves the package
    shutil.copyfile(HERE / "oidc_provider.mjs", script)
    return script


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _first_line(process: Process) -> str:
    assert process.stdout is not None
    buffer = b""
    with anyio.fail_after(60):
        while b"\n" not in buffer:
            buffer += await process.stdout.receive()
    return buffer.split(b"\n", 1)[0].decode().strip()


async def _serve(command: list[str], env: dict[str, str]) -> tuple[Process, str]:
    """Start `mcp serve` and read the URL it prints once it listens; again if its port was taken.

    The port is picked free before the provider starts (the provider needs the resource URL), so a
    short-lived outgoing connection may hold it by the time the server binds: the server then exits
    with "Address already in use" (a harness race, retried). Any other early exit fails with its stderr.
    """
    for attempt in range(5):
        server = await anyio.open_process(command, env=env)
        try:
            return server, await _first_line(server)
        except anyio.EndOfStream:
            pass
        assert server.stderr is not None
        with anyio.fail_after(30):
            err = b"".join([chunk async for chunk in server.stderr]).decode("utf-8", "replace")
        await server.aclose()
        if "Address already in use" not in err or attempt == 4:
            pytest.fail(f"mcp serve exited before listening: {err}")
        await anyio.sleep(1)
    raise AssertionError("unreachable")


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """(issuer URL, MCP resource URL) of a running oidc-provider."""
    script = _install_provider()
    resource = f"http://127.0.0.1:{_free_port()}/mcp"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "RESOURCE": resource,
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "SCOPES": SCOPES,
    }
    async with await anyio.open_process(["node", str(script)], env=env, cwd=OIDC_DIR) as process:
        try:
            yield await _first_line(process), resource
        finally:
            process.terminate()


def _config(tmp_path: Path, issuer: str, resource: str) -> Path:
    path = tmp_path / "remote.yaml"
    path.write_text(
        "auth:\n  enabled_scopes: [read_only]\n"
        f"audit:\n  hmac_secret_env: {AUDIT_KEY_ENV}\n"
        "state:\n  directory: remote-state\n"
        "safety:\n  remote_mcp_enabled: true\n"
        "remote_mcp:\n"
        "  enabled: true\n"
        f"  resource: {resource}\n"
        f"  issuer: {issuer}\n"
        "  allowed_scopes: [read_only]\n"
        f"  token_id_hmac_secret_env: {TOKEN_KEY_ENV}\n",
        encoding="utf-8",
    )
    return path


async def test_a_token_from_a_real_openid_provider_calls_tools_over_http(
    provider: tuple[str, str], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """Client credentials at oidc-provider, then tools/list and a tool call through `ibkr-agent mcp serve`."""
    issuer, resource = provider
    config = _config(tmp_path, issuer, resource)
    env = cli_env | {TOKEN_KEY_ENV: "integration-token-id-key-0123456789abcdef"}
    bind = resource.removeprefix("http://").removesuffix("/mcp")
    command = [*ibkr_agent(), "--config", str(config), "mcp", "serve", "--transport", "http", "--enable-remote-mcp"]
    server, first_line = await _serve([*command, "--bind", bind], env)
    async with server:
        try:
            assert first_line == f"http://{bind}"
            async with httpx2.AsyncClient(timeout=10) as http:
                issued = await http.post(
                    f"{issuer}/token",
                    data={"grant_type": "client_credentials", "resource": resource, "scope": SCOPES},
                    auth=(CLIENT_ID, CLIENT_SECRET),
                )
                assert issued.status_code == 200, issued.text
                token = issued.json()["access_token"]
                metadata = (await http.get(f"http://{bind}/.well-known/oauth-protected-resource/mcp")).json()
                refused = await http.post(resource, json={}, headers={"authorization": "Bearer x"})
            assert metadata["authorization_servers"] == [issuer]
            assert refused.status_code == 401
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=10) as http,
                Client(streamable_http_client(resource, http_client=http)) as client,
            ):
                with anyio.fail_after(30):
                    tools = {tool.name for tool in (await client.list_tools()).tools}
                    accounts = await client.call_tool("ibkr_accounts_list", {})
        finally:
            server.terminate()
    assert "ibkr_accounts_list" in tools
    assert "ibkr_positions_list" not in tools
    assert not accounts.is_error, accounts
    audit = run_cli(["--config", str(config), "audit", "tail", "--limit", "20", "--json"], env)
    assert audit.returncode == 0, audit.stderr
    assert token not in audit.stdout
    events = [record["event"] for record in json.loads(audit.stdout)["events"]]
    seen = {(event["event_type"], event["principal_kind"], event["principal_subject"]) for event in events}
    assert ("remote_auth_succeeded", "remote", CLIENT_ID) in seen
    assert ("tool_completed", "remote", CLIENT_ID) in seen


def test_http_is_refused_without_the_command_line_switch(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """All three switches are needed: the config's two and --enable-remote-mcp (we decided)."""
    config = _config(tmp_path, "http://127.0.0.1:1", "http://127.0.0.1:2/mcp")
    env = cli_env | {TOKEN_KEY_ENV: "integration-token-id-key-0123456789abcdef"}
    result = run_cli(["--config", str(config), "--json", "mcp", "serve", "--transport", "http"], env)
    assert result.returncode != 0
    assert json.loads(result.stderr)["code"] == "CONFIG_REMOTE_MCP_FORBIDDEN"


def test_describe_http_names_the_resource_issuer_and_tools(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """`--describe` prints what would be served without listening or fetching anything."""
    config = _config(tmp_path, "http://127.0.0.1:1", "http://127.0.0.1:2/mcp")
    args = ["--config", str(config), "--json", "mcp", "serve", "--transport", "http", "--enable-remote-mcp"]
    result = run_cli([*args, "--describe", "--bind", "127.0.0.1:2"], cli_env)
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["transport"] == "http"
    assert described["bind"] == "127.0.0.1:2"
    assert described["resource"] == "http://127.0.0.1:2/mcp"
    assert described["issuer"] == "http://127.0.0.1:1"
    assert described["resource_metadata"] == "http://127.0.0.1:2/.well-known/oauth-protected-resource/mcp"
    assert described["tool_count"] == len(described["tools"]) > 0
