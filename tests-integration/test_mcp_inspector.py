"""The MCP Inspector CLI (TypeScript SDK) against the stdio server: another client stack than ours.

`npx` fetches `@modelcontextprotocol/inspector` from the npm registry into its own cache on first use;
every run is bounded by a timeout. Without node or npx the tests skip and say why.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

ROOT: Final = Path(__file__).resolve().parent.parent
INSPECTOR: Final = "@modelcontextprotocol/inspector@0.15.0"
"""Pinned, so a new Inspector release cannot change what these tests mean."""
FIRST_RUN_TIMEOUT_S: Final = 300.0
"""The first run downloads the Inspector (about 15 s here); later runs take a few seconds."""
SERVER: Final = [sys.executable, "-m", "ibkr_gateway_mcp"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("npx") is None, reason="node/npx is not installed: the MCP Inspector needs it"),
]


def inspector(state_dir: Path, *args: str) -> Any:
    """Run the Inspector CLI once and parse the JSON it prints."""
    npx = shutil.which("npx")
    assert npx is not None
    env = {**os.environ, "IBKR_AGENT_STATE_DIR": str(state_dir)}
    proc = subprocess.run(
        [npx, "-y", INSPECTOR, "--cli", *args],
        capture_output=True,
        encoding="utf-8",
        timeout=FIRST_RUN_TIMEOUT_S,
        check=False,
        env=env,
        cwd=state_dir.parent,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout)


def server_args(state_dir: Path) -> list[str]:
    """The server command, with the state directory passed explicitly (the Inspector filters env)."""
    return ["-e", f"IBKR_AGENT_STATE_DIR={state_dir}", *SERVER]


def test_inspector_lists_the_read_only_tools(tmp_path: Path) -> None:
    """tools/list through the TypeScript SDK: the default tier's tools, with typed schemas."""
    listed = inspector(tmp_path / "state", *server_args(tmp_path / "state"), "--method", "tools/list")
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert "ibkr_accounts_list" in tools
    assert "ibkr_capabilities" in tools
    positions = tools["ibkr_positions_list"]
    assert positions["inputSchema"]["required"] == ["account_id"]
    assert positions["annotations"]["readOnlyHint"] is True


def test_inspector_calls_accounts_list(tmp_path: Path) -> None:
    """tools/call ibkr_accounts_list: structured content that the TypeScript SDK validated against the schema."""
    result = inspector(
        tmp_path / "state",
        *server_args(tmp_path / "state"),
        "--method",
        "tools/call",
        "--tool-name",
        "ibkr_accounts_list",
    )
    assert result.get("isError") is not True
    assert [account["account_id"] for account in result["structuredContent"]["result"]][0].startswith("DU")
    assert result["_meta"]["ibkr-agent-gateway/audit-event-id"]


def test_inspector_sees_a_tool_error_with_its_code(tmp_path: Path) -> None:
    """A refused call reaches a TypeScript client as a tool error: its content matches the output schema."""
    result = inspector(
        tmp_path / "state",
        *server_args(tmp_path / "state"),
        "--method",
        "tools/call",
        "--tool-name",
        "ibkr_executions_list",
        "--tool-arg",
        "account_id=DU1234567",
        "days=30",
    )
    assert result["isError"] is True
    assert result["structuredContent"]["code"] == "INPUT_INVALID_ARGUMENT"
    assert result["content"][0]["text"].startswith("[INPUT_INVALID_ARGUMENT] ")


def test_inspector_config_from_the_examples_runs(tmp_path: Path) -> None:
    """examples/mcp-clients/inspector.json works as shipped (it launches `ibkr-agent mcp serve`)."""
    cli = shutil.which("ibkr-agent")
    if cli is None:
        pytest.skip("ibkr-agent is not on PATH")
    probe = subprocess.run(
        [cli, "mcp", "serve", "--transport", "stdio", "--describe", "--json"],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env={**os.environ, "IBKR_AGENT_STATE_DIR": str(tmp_path / "state")},
    )
    if probe.returncode != 0:
        pytest.skip("this ibkr-agent has no `mcp serve` command yet")
    config = ROOT / "examples" / "mcp-clients" / "inspector.json"
    listed = inspector(tmp_path / "state", "--config", str(config), "--server", "ibkr", "--method", "tools/list")
    assert "ibkr_accounts_list" in [tool["name"] for tool in listed["tools"]]
