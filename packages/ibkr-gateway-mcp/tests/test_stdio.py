import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import GatewayError
from ibkr_gateway_core.registry import OPERATIONS
from ibkr_gateway_mcp.stdio import describe
from mcp import Client, StdioServerParameters
from mcp.types import TextContent

from .conftest import make_config, structured

pytestmark = pytest.mark.anyio

READ_ONLY_TOOL_COUNT: Final = sum(op.read_only and not op.operator_only for op in OPERATIONS.values())
"""ibkr_capabilities plus every read operation of the registry but the operator's session renewal."""


def child_env(state_dir: Path) -> dict[str, str]:
    """What a host would pass: its own PATH and HOME, plus the state directory."""
    env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    return {**env, "IBKR_AGENT_STATE_DIR": str(state_dir), "PYTHONWARNDEFAULTENCODING": "1"}


def test_describe_reports_versions_and_the_scope_filtered_tools(tmp_path: Path) -> None:
    """--describe: transport, both protocol eras, and the tools the configured scopes allow (not all of them)."""
    described = describe(make_config(tmp_path, ["ibkr:health:read"]), "stdio")
    assert described["transport"] == "stdio"
    assert "2025-11-25" in described["protocol_versions"]
    assert "2026-07-28" in described["protocol_versions"]
    assert described["tools"] == [
        "ibkr_capabilities",
        "ibkr_health",
        "ibkr_backend_status",
        "ibkr_session_requirements",
    ]  # not ibkr_session_renew: its scope is ibkr:health:read, but only the operator may call it
    assert described["tool_count"] == 4
    assert described["status"] == "local MCP stdio server ready with 4 scope-filtered tools"


def test_describe_defaults_to_the_read_only_tier(tmp_path: Path) -> None:
    """Without auth.enabled_scopes an agent gets the read-only tier."""
    described = describe(GatewayConfig.fake_local(state_dir=tmp_path), "stdio")
    assert described["tool_count"] == READ_ONLY_TOOL_COUNT
    assert described["principal"] == {"kind": "local_agent", "subject": "stdio"}


def test_describe_refuses_an_unknown_transport(tmp_path: Path) -> None:
    """Only stdio is served by this version."""
    with pytest.raises(GatewayError) as caught:
        describe(GatewayConfig.fake_local(state_dir=tmp_path), "carrier-pigeon")
    assert caught.value.code == "INPUT_INVALID_ARGUMENT"


def test_describe_does_not_load_the_mcp_sdk(tmp_path: Path) -> None:
    """The CLI imports describe lazily; it must stay cheap (no SDK, no server)."""
    code = (
        "import sys; from ibkr_gateway_mcp.stdio import describe; "
        "from ibkr_gateway_core.config import GatewayConfig; describe(GatewayConfig.fake_local(), 'stdio'); "
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', 'starlette'))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env=child_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_module_describe_prints_json(tmp_path: Path) -> None:
    """`python -m ibkr_gateway_mcp --describe` prints the description and exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "ibkr_gateway_mcp", "--describe"],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env=child_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tool_count"] == READ_ONLY_TOOL_COUNT


def test_module_reports_a_missing_config_on_stderr(tmp_path: Path) -> None:
    """A bad --config is a coded error on stderr with the config family's exit status, stdout untouched."""
    proc = subprocess.run(
        [sys.executable, "-m", "ibkr_gateway_mcp", "--config", str(tmp_path / "nope.yaml")],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env=child_env(tmp_path),
    )
    assert proc.returncode == 7
    assert proc.stdout == ""
    assert proc.stderr.startswith("[CONFIG_INVALID] ")


@pytest.mark.slow
async def test_stdio_subprocess_lists_tools_and_calls_accounts_list(tmp_path: Path, mode: str) -> None:
    """A real `python -m ibkr_gateway_mcp` child serves both protocol eras over stdio."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "ibkr_gateway_mcp"], env=child_env(tmp_path / "state")
    )
    with anyio.fail_after(60):
        async with Client(params, mode=mode) as client:
            tools = [tool.name for tool in (await client.list_tools()).tools]
            result = await client.call_tool("ibkr_accounts_list", {})
            denied = await client.call_tool("ibkr_order_submit", {})
    assert len(tools) == READ_ONLY_TOOL_COUNT
    assert "ibkr_accounts_list" in tools
    assert not result.is_error
    assert [a["account_id"] for a in structured(result)["result"]][0].startswith("DU")
    assert denied.is_error
    block = denied.content[0]
    assert isinstance(block, TextContent)
    assert block.text.startswith("[INPUT_UNKNOWN_OPERATION] ")


@pytest.mark.slow
async def test_stdio_subprocess_takes_scopes_from_the_config_file(tmp_path: Path) -> None:
    """--config FILE sets the agent's scopes: a health-only config lists only health tools."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"auth:\n  enabled_scopes: ['ibkr:health:read']\nstate:\n  directory: {tmp_path / 'state'}\n",
        encoding="utf-8",
    )
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "ibkr_gateway_mcp", "--config", str(config)], env=child_env(tmp_path)
    )
    with anyio.fail_after(60):
        async with Client(params) as client:
            tools = [tool.name for tool in (await client.list_tools()).tools]
    assert tools == [
        "ibkr_capabilities",
        "ibkr_health",
        "ibkr_backend_status",
        "ibkr_session_requirements",
    ]


@pytest.mark.slow
async def test_stdout_carries_only_protocol_messages(tmp_path: Path) -> None:
    """Every stdout line is a JSON-RPC message, even around a failing call; diagnostics go to stderr (MCP spec)."""
    requests: list[dict[str, Any]] = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "ibkr_accounts_list", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "ibkr_positions_list", "arguments": {}}},
    ]
    lines: list[str] = []
    with anyio.fail_after(60):
        async with await anyio.open_process(
            [sys.executable, "-m", "ibkr_gateway_mcp"], env=child_env(tmp_path / "state")
        ) as process:
            assert process.stdin is not None
            assert process.stdout is not None
            buffer = b""
            for request in requests:
                await process.stdin.send(json.dumps(request).encode() + b"\n")
                if "id" not in request:
                    continue
                while not any(json.loads(line).get("id") == request["id"] for line in lines):
                    buffer += await process.stdout.receive()
                    *complete, buffer = buffer.split(b"\n")
                    lines.extend(line.decode("utf-8") for line in complete)
            await process.stdin.aclose()
            assert await process.wait() == 0
    replies = [json.loads(line) for line in lines]
    assert all(reply["jsonrpc"] == "2.0" for reply in replies)
    by_id = {reply["id"]: reply for reply in replies if "id" in reply}
    assert set(by_id) == {1, 2, 3, 4}
    assert by_id[1]["result"]["protocolVersion"] == "2025-11-25"
    assert by_id[3]["result"]["isError"] is False
    assert by_id[4]["result"]["isError"] is True
    assert by_id[4]["result"]["structuredContent"]["code"] == "INPUT_MISSING_ACCOUNT"
