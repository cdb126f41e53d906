"""A long-running MCP server heals by itself: session expiry without a tickle in time, then IBKR's nightly reset.

`ibkr-agent simulator serve` runs over HTTPS on an accelerated clock (600×: IBKR's 6-minute idle timeout
passes in 0.6 s, between two of the server's 1-second tickles). One `ibkr-agent mcp serve` stdio process
stays up for the whole story, as an agent's host would keep it:

- while the login is gone, reads fail with `BROKER_SESSION_REQUIRED` (never "unknown account" or "no
  orders") and a paper submit is refused before anything reaches the broker;
- once somebody logs in again (a person, or ibeam), reads answer again with no action on the server;
- after the nightly reset the brokerage session is closed ("no bridge"): the server re-opens it itself
  (`ssodh/init`, never competing), and the same submit, with the same key, then places the order once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_harness import AUDIT_KEY_ENV, ibkr_agent, run_cli, serve_simulator, sim_control
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ACCOUNT = "DU1234567"
SUBMIT_PATH = f"POST /iserver/account/{ACCOUNT}/orders"


@pytest.fixture
def simulator() -> Iterator[str]:
    """`ibkr-agent simulator serve --clock-speed 600` in a subprocess, over HTTPS; yields its base URL."""
    with serve_simulator("--clock-speed", "600") as url:
        yield url


control = sim_control


def submits_seen(base_url: str) -> int:
    return int(control(base_url)["requests_by_path"].get(SUBMIT_PATH, 0))


def _config(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "broker:\n"
        "  backend: client_portal_gateway\n"
        f"  base_url: {base_url}\n"
        "  verify_tls: false\n"
        "  keepalive_interval_seconds: 1\n"
        "  reopen_brokerage_session: true\n"
        "orders:\n"
        "  preview_enabled: true\n"
        "  paper_enabled: true\n"
        "auth:\n"
        "  enabled_scopes: [with_paper]\n"
        "audit:\n"
        f"  hmac_secret_env: {AUDIT_KEY_ENV}\n"
        "state:\n"
        f"  directory: {tmp_path / 'state'}\n",
        encoding="utf-8",
    )
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        AUDIT_KEY_ENV: "integration-test-audit-key-0123456789abcdef",
        "PYTHONWARNDEFAULTENCODING": "1",
    }


def _code(result: CallToolResult) -> str | None:
    if not result.is_error:
        return None
    block = result.content[0]
    assert isinstance(block, TextContent)
    found = re.match(r"^\[([A-Z_]+)\] ", block.text)
    assert found is not None, block.text
    return found.group(1)


def _data(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def _until(check: Callable[[], Awaitable[bool]], *, seconds: float = 60) -> None:
    with anyio.fail_after(seconds):
        while not await check():
            await anyio.sleep(0.2)


async def test_the_mcp_server_recovers_by_itself_after_expiry_and_the_nightly_reset(
    simulator: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, simulator)
    env = _env(tmp_path)
    control(simulator, {"clock": {"speed": 600}, "reset_counters": True, "session": "log_in"})
    params = StdioServerParameters(
        command=ibkr_agent()[0],
        args=[*ibkr_agent()[1:], "--config", str(config), "mcp", "serve", "--transport", "stdio"],
        env=env,
    )
    reads: list[tuple[str, dict[str, Any]]] = [
        ("ibkr_accounts_list", {}),
        ("ibkr_account_summary", {"account_id": ACCOUNT}),
        ("ibkr_positions_list", {"account_id": ACCOUNT}),
        ("ibkr_orders_list", {"account_id": ACCOUNT}),
    ]
    with anyio.fail_after(240):
        async with Client(params) as agent:

            async def read_codes() -> list[str | None]:
                return [_code(await agent.call_tool(name, args)) for name, args in reads]

            async def all_read() -> bool:
                return await read_codes() == [None] * len(reads)

            async def session_down() -> bool:
                status = _data(await agent.call_tool("ibkr_backend_status", {}))
                return status["status"] != "usable"

            async def session_up() -> bool:
                status = _data(await agent.call_tool("ibkr_backend_status", {}))
                return status["status"] == "usable"

            await _until(all_read)
            preview = _data(
                await agent.call_tool(
                    "ibkr_order_preview",
                    {"account_id": ACCOUNT, "symbol": "AAPL", "side": "buy", "quantity": "1", "limit_price": "100"},
                )
            )
            approved = run_cli(
                ["--config", str(config), "approvals", "create", "--account", ACCOUNT, "--preview-id",
                 preview["preview_id"], "--json"],
                env,
            )  # fmt: skip
            assert approved.returncode == 0, approved.stderr
            submit = {
                "account_id": ACCOUNT,
                "approval_id": json.loads(approved.stdout)["approval_id"],
                "idempotency_key": "heal-1",
            }

            # 1. Expiry: IBKR's 6-minute idle timeout, shorter than the gap between two tickles on this clock.
            control(simulator, {"idle_timeout_seconds": 360})
            await _until(session_down)
            assert control(simulator)["auth_state"] == "no_session"
            codes = await read_codes()
            assert set(codes) == {"BROKER_SESSION_REQUIRED"}, codes
            sent = submits_seen(simulator)
            assert _code(await agent.call_tool("ibkr_paper_order_submit", submit)) == "BROKER_SESSION_REQUIRED"
            assert submits_seen(simulator) == sent  # refused before sending
            control(simulator, {"idle_timeout_seconds": None, "session": "log_in"})  # somebody logs in again
            await _until(all_read)
            await _until(session_up)

            # 2. The nightly reset: the brokerage session closes; re-opening it fails for a while, then works.
            inits_before = control(simulator)["requests_by_path"].get("POST /iserver/auth/ssodh/init", 0)
            control(
                simulator,
                {
                    "session": "nightly_reset",
                    "fail_next": {
                        "status": 503,
                        "body": {"error": "reset in progress"},
                        "times": 8,
                        "path_contains": "ssodh/init",
                    },
                },
            )
            orders = await agent.call_tool("ibkr_orders_list", {"account_id": ACCOUNT})
            assert _code(orders) == "BROKER_SESSION_REQUIRED"  # no bridge: never an empty order list
            await _until(session_down)
            assert _code(await agent.call_tool("ibkr_paper_order_submit", submit)) == "BROKER_SESSION_REQUIRED"
            assert submits_seen(simulator) == sent
            await _until(all_read)  # re-opened by the server itself
            await _until(session_up)
            assert control(simulator)["requests_by_path"]["POST /iserver/auth/ssodh/init"] > inits_before + 8
            assert control(simulator)["auth_state"] == "authenticated"

            placed = _data(await agent.call_tool("ibkr_paper_order_submit", submit))
            assert placed["status"] in ("submitted", "filled")
            again = _data(await agent.call_tool("ibkr_paper_order_submit", submit))
            assert again["broker_order_id"] == placed["broker_order_id"]
    assert submits_seen(simulator) == sent + 1  # one order, placed once, after recovery
