"""examples/mcp-clients/: every host configuration parses and launches the stdio server the same way."""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from mcp import Client, StdioServerParameters

EXAMPLES: Final = Path(__file__).resolve().parent.parent / "examples" / "mcp-clients"
SERVE: Final = ["mcp", "serve", "--transport", "stdio"]
CONFIGS: Final = {
    "claude_desktop_config.json": "mcpServers",
    "claude-code/.mcp.json": "mcpServers",
    "cursor/.cursor/mcp.json": "mcpServers",
    "vscode/.vscode/mcp.json": "servers",
    "inspector.json": "mcpServers",
}
"""Each example and the key its host reads the server map from."""


def server_entry(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return data[CONFIGS[name]]["ibkr"]


def test_every_example_is_listed_here() -> None:
    """A new example must be added to CONFIGS so it is checked."""
    found = {str(path.relative_to(EXAMPLES)) for path in EXAMPLES.rglob("*.json")}
    assert found == set(CONFIGS)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_example_launches_the_stdio_server(name: str) -> None:
    """Each host starts `ibkr-agent mcp serve --transport stdio`, and stdio-typed where the host has types."""
    entry = server_entry(name)
    assert entry["command"] == "ibkr-agent"
    assert entry["args"][: len(SERVE)] == SERVE
    assert entry.get("type", "stdio") == "stdio"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_example_command_describes_what_it_serves(name: str, tmp_path: Path) -> None:
    """The exact command of each example runs (with --describe --json) once the CLI has `mcp serve`."""
    entry = server_entry(name)
    command = shutil.which(str(entry["command"]))
    if command is None:
        pytest.skip("ibkr-agent is not on PATH")
    proc = subprocess.run(
        [command, *map(str, entry["args"]), "--describe", "--json"],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env={**os.environ, **entry.get("env", {}), "IBKR_AGENT_STATE_DIR": str(tmp_path)},
    )
    if proc.returncode != 0 and "No such command 'mcp'" in proc.stderr:
        pytest.skip("this ibkr-agent has no `mcp serve` command yet")
    assert proc.returncode == 0, proc.stderr
    described = json.loads(proc.stdout)
    assert described["transport"] == "stdio"
    assert "ibkr_accounts_list" in described["tools"]


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_ibkr_agent_mcp_serve_answers_over_stdio(mode: str, tmp_path: Path) -> None:
    """The Claude Code example's exact command serves both protocol eras: tools listed, a read tool called."""
    entry = server_entry("claude-code/.mcp.json")
    command = shutil.which(str(entry["command"]))
    if command is None:
        pytest.skip("ibkr-agent is not on PATH")
    env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    params = StdioServerParameters(
        command=command, args=[*map(str, entry["args"])], env={**env, "IBKR_AGENT_STATE_DIR": str(tmp_path)}
    )
    with anyio.fail_after(60):
        async with Client(params, mode=mode) as client:
            tools = [tool.name for tool in (await client.list_tools()).tools]
            result = await client.call_tool("ibkr_accounts_list", {})
            denied = await client.call_tool("ibkr_order_submit", {})
    assert tools[0] == "ibkr_capabilities"
    assert "ibkr_accounts_list" in tools
    assert not result.is_error
    assert denied.is_error
