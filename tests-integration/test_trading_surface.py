"""The whole trading surface over MCP stdio: every upstream tool has an equivalent, and every tool is callable.

`ibkr-agent mcp serve --describe --json` with every scope must list an equivalent of each of the
earlier Rust system's 45 tools (the table in docs/trading-desk.md maps them), and a real stdio
session calls every tool it lists on the simulator: reads answer, the operations CPAPI cannot serve
refuse with `BACKEND_UNSUPPORTED`, and writes answer or refuse with a catalogued code, never an
internal error.
"""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from cli_harness import ibkr_agent
from ibkr_gateway_core.errors import ERROR_CATALOGUE
from ibkr_gateway_core.registry import OPERATIONS_BY_TOOL
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

pytestmark = pytest.mark.anyio

ROOT: Final = Path(__file__).resolve().parent.parent

UPSTREAM_TOOLS: Final = {
    "ibkr_health": "ibkr_health",
    "ibkr_backend_status": "ibkr_backend_status",
    "ibkr_session_requirements": "ibkr_session_requirements",
    "ibkr_session_renew": "ibkr_session_renew",
    "ibkr_kill_switch_status": "ibkr_kill_switch_status",
    "ibkr_accounts_list": "ibkr_accounts_list",
    "ibkr_account_metadata": "ibkr_account_metadata",
    "ibkr_account_summary": "ibkr_account_summary",
    "ibkr_pnl_daily": "ibkr_pnl_daily",
    "ibkr_pnl_realtime": "ibkr_pnl_realtime",
    "ibkr_positions_list": "ibkr_positions_list",
    "ibkr_portfolio_snapshot": "ibkr_portfolio_snapshot",
    "ibkr_contracts_search": "ibkr_contracts_search",
    "ibkr_contract_resolve": "ibkr_contract_resolve",
    "ibkr_market_snapshot": "ibkr_market_snapshot",
    "ibkr_historical_bars": "ibkr_historical_bars",
    "ibkr_options_chain": "ibkr_options_chain",
    "ibkr_option_greeks": "ibkr_option_greeks",
    "ibkr_market_depth": "ibkr_market_depth",
    "ibkr_scanner_run": "ibkr_scanner_run",
    "ibkr_news_list": "ibkr_news_list",
    "ibkr_news_article": "ibkr_news_article",
    "ibkr_fundamentals_get": "ibkr_fundamentals_get",
    "ibkr_market_session": "ibkr_market_session",
    "ibkr_market_holidays": "ibkr_market_holidays",
    "ibkr_currency_rate": "ibkr_currency_rate",
    "ibkr_transfer_history": "ibkr_transfer_history",
    "ibkr_orders_list": "ibkr_orders_list",
    "ibkr_orders_history": "ibkr_orders_history",
    "ibkr_order_status": "ibkr_order_status",
    "ibkr_executions_list": "ibkr_executions_list",
    "ibkr_limits_status": "ibkr_limits_status",
    "ibkr_audit_tail": "ibkr_audit_tail",
    "ibkr_audit_export": "ibkr_audit_export",
    "ibkr_order_preview": "ibkr_order_preview",
    "ibkr_bracket_order_preview": "ibkr_bracket_order_preview",
    "ibkr_paper_order_submit": "ibkr_paper_order_submit",
    "ibkr_paper_order_cancel": "ibkr_paper_order_cancel",
    "ibkr_paper_order_modify": "ibkr_paper_order_modify",
    "ibkr_paper_bracket_order_submit": "ibkr_paper_bracket_order_submit",
    "ibkr_live_order_submit": "ibkr_live_order_submit",
    "ibkr_live_order_cancel": "ibkr_live_order_cancel",
    "ibkr_live_order_modify": "ibkr_live_order_modify",
    "ibkr_live_bracket_order_submit": "ibkr_live_bracket_order_submit",
    "ibkr_approvals_create": "ibkr_approvals_create",
}
"""The earlier Rust system's 45 tools → ours (docs/trading-desk.md shows the same table)."""

UNSUPPORTED: Final = frozenset({"ibkr_news_list", "ibkr_news_article", "ibkr_transfer_history"})
"""Tools CPAPI has no endpoint for: they refuse honestly."""

SAMPLE_ARGUMENTS: Final[dict[str, Any]] = {
    "account_id": "DU1234567",
    "contract_id": 265598,
    "query": "AAPL",
    "symbol": "AAPL",
    "base": "EUR",
    "quote": "USD",
    "scan_code": "TOP_PERC_GAIN",
    "month": None,  # filled from ibkr_option_expirations
    "broker_order_id": "1873266401",
    "article_id": "sample-1",
    "side": "buy",
    "quantity": "1",
    "limit_price": "200.00",
    "take_profit_price": "220.00",
    "stop_loss_price": "190.00",
    "order_type": "limit",
    "time_in_force": "day",
    "idempotency_key": "surface-test-key-1",
    "approval_id": "missing-approval",
    "preview_id": "missing-preview",
    "reason": "integration test",
}
"""A value for each required argument a tool may have."""


def _all_scopes_config(tmp_path: Path) -> Path:
    path = tmp_path / "all-scopes.yaml"
    path.write_text(
        f"auth:\n  enabled_scopes: [with_live]\nstate:\n  directory: {tmp_path / 'state'}\n", encoding="utf-8"
    )
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {key: os.environ[key] for key in ("PATH",) if key in os.environ}
    return {**env, "HOME": str(tmp_path / "home"), "PYTHONWARNDEFAULTENCODING": "1"}


def test_every_upstream_tool_has_an_equivalent_listed_with_every_scope(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*ibkr_agent(), "mcp", "serve", "--describe", "--json", "--config", str(_all_scopes_config(tmp_path))],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env=_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    tools = set(json.loads(proc.stdout)["tools"])
    assert len(UPSTREAM_TOOLS) == 45
    # The session renewal is ours too, but operator-only: an agent is never offered it, whatever its scopes.
    operator_only = {tool for tool, op in OPERATIONS_BY_TOOL.items() if op.operator_only}
    assert "ibkr_session_renew" in operator_only
    missing = {up for up, ours in UPSTREAM_TOOLS.items() if ours not in tools | operator_only}
    assert missing == set()
    assert not tools & operator_only
    assert len(tools) >= 44


def test_the_docs_table_maps_the_same_tools() -> None:
    """docs/trading-desk.md's table and this test's mapping say the same."""
    text = (ROOT / "docs" / "trading-desk.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(ibkr_\w+)` \| `(ibkr_\w+)` \|", text, flags=re.MULTILINE))
    assert rows == UPSTREAM_TOOLS


def _error_code(result: CallToolResult) -> str | None:
    if not result.is_error:
        return None
    block = result.content[0]
    assert isinstance(block, TextContent)
    found = re.match(r"^\[([A-Z_]+)\] ", block.text)
    assert found is not None, block.text
    return found.group(1)


@pytest.mark.slow
async def test_every_tool_is_callable_on_the_simulator_over_stdio(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ibkr_gateway_mcp", "--config", str(_all_scopes_config(tmp_path))],
        env=_env(tmp_path),
    )
    outcomes: dict[str, str | None] = {}
    with anyio.fail_after(240):
        async with Client(params) as client:
            listed = (await client.list_tools()).tools
            months = await client.call_tool("ibkr_option_expirations", {"symbol": "AAPL"})
            assert not months.is_error
            month = (months.structured_content or {})["months"][0]
            chain = await client.call_tool(
                "ibkr_options_chain", {"symbol": "AAPL", "month": month, "strike_count": 1, "right": "call"}
            )
            option_id = (chain.structured_content or {})["options"][0]["contract_id"]
            for tool in listed:
                required = list((tool.input_schema or {}).get("required", []))
                known = all(name in SAMPLE_ARGUMENTS for name in required)
                arguments = {name: SAMPLE_ARGUMENTS[name] for name in required} if known else {}
                if "month" in arguments:
                    arguments["month"] = month
                if tool.name == "ibkr_option_greeks":
                    arguments["contract_id"] = option_id
                result = await client.call_tool(tool.name, arguments)
                code = _error_code(result)
                outcomes[tool.name] = code
                read_only = bool(tool.annotations and tool.annotations.read_only_hint)
                if code is None:
                    assert result.structured_content is not None, tool.name
                    continue
                assert code in {c.value for c in ERROR_CATALOGUE}, (tool.name, code)
                assert code != "INTERNAL_ERROR", tool.name
                if read_only and known:
                    expected = "BACKEND_UNSUPPORTED" if tool.name in UNSUPPORTED else None
                    if tool.name == "ibkr_audit_verify":
                        continue
                    assert code == expected, (tool.name, code)
            # Not listed to an agent, and refused when called anyway: only the operator may re-open the session.
            assert "ibkr_session_renew" not in {tool.name for tool in listed}
            outcomes["ibkr_session_renew"] = _error_code(await client.call_tool("ibkr_session_renew", {}))
            assert outcomes["ibkr_session_renew"] == "OPERATOR_ONLY"
    assert set(outcomes) >= set(UPSTREAM_TOOLS.values())
    assert outcomes["ibkr_options_chain"] is None and outcomes["ibkr_market_depth"] is None
    assert outcomes["ibkr_news_list"] == "BACKEND_UNSUPPORTED"
