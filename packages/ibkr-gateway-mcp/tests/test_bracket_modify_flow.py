"""Brackets and modifications over MCP: an agent previews, a person approves, the agent submits, changes and
cancels, each through its own tool with the paper scopes."""

from pathlib import Path
from typing import Any

import pytest
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import parse_scopes
from ibkr_gateway_mcp.server import build_server
from mcp import Client
from mcp.types import CallToolResult

pytestmark = pytest.mark.anyio

ACCOUNT = "DU1234567"
OPERATOR = Principal(kind="local_operator", subject="local-operator", scopes=parse_scopes(["with_paper"]))


def structured(result: CallToolResult) -> dict[str, Any]:
    content = result.structured_content
    assert isinstance(content, dict), result
    return content  # type: ignore[return-value]


def config(tmp_path: Path) -> GatewayConfig:
    return GatewayConfig.from_mapping(
        {
            "auth": {"enabled_scopes": ["with_paper"]},
            "orders": {"preview_enabled": True, "paper_enabled": True},
            "state": {"directory": str(tmp_path / "state")},
        }
    )


async def approve(gateway: Gateway, preview_id: str) -> str:
    approval = await gateway.call(
        "create_approval", {"account_id": ACCOUNT, "preview_id": preview_id}, principal=OPERATOR
    )
    return approval.value.approval_id


async def test_an_agent_brackets_changes_and_cancels_over_mcp(tmp_path: Path, mode: str) -> None:
    agent = Principal(kind="local_agent", subject="stdio", scopes=parse_scopes(["with_paper"]))
    async with Gateway.from_config(config(tmp_path)) as gateway:
        async with Client(build_server(gateway, principal=agent), mode=mode) as client:
            preview = await client.call_tool(
                "ibkr_bracket_order_preview",
                {"account_id": ACCOUNT, "symbol": "AAPL", "side": "buy", "quantity": 2, "limit_price": "200",
                 "take_profit_price": "230", "stop_loss_price": "190"},
            )  # fmt: skip
            assert not preview.is_error, preview
            bracket = structured(preview)
            assert bracket["kind"] == "bracket" and bracket["take_profit"]["limit_price"] == "230"

            single = await client.call_tool(
                "ibkr_paper_order_submit",
                {"account_id": ACCOUNT, "approval_id": await approve(gateway, bracket["preview_id"]),
                 "idempotency_key": "wrong-tool"},
            )  # fmt: skip
            assert single.is_error and structured(single)["code"] == "APPROVAL_OPERATION_MISMATCH"

            approval_id = await approve(gateway, bracket["preview_id"])
            submitted = await client.call_tool(
                "ibkr_paper_bracket_order_submit",
                {"account_id": ACCOUNT, "approval_id": approval_id, "idempotency_key": "mcp-bracket-1"},
            )
            assert not submitted.is_error, submitted
            group = structured(submitted)
            assert [leg["role"] for leg in group["legs"]] == ["parent", "take_profit", "stop_loss"]

            change = await client.call_tool(
                "ibkr_order_modify_preview",
                {"account_id": ACCOUNT, "broker_order_id": group["broker_order_id"], "limit_price": "201"},
            )
            assert not change.is_error, change
            modified = await client.call_tool(
                "ibkr_paper_order_modify",
                {"account_id": ACCOUNT, "approval_id": await approve(gateway, structured(change)["preview_id"]),
                 "idempotency_key": "mcp-modify-1"},
            )  # fmt: skip
            assert not modified.is_error, modified
            assert structured(modified)["action"] == "modify"

            cancelled = await client.call_tool(
                "ibkr_paper_bracket_order_cancel",
                {"account_id": ACCOUNT, "broker_order_id": group["broker_order_id"], "idempotency_key": "mcp-c-1"},
            )
            assert not cancelled.is_error, cancelled
            assert len(structured(cancelled)["legs"]) == 3
            live = await client.call_tool(
                "ibkr_live_order_modify",
                {"account_id": ACCOUNT, "approval_id": approval_id, "idempotency_key": "no-live-scope"},
            )
            assert live.is_error, live  # the with_paper tier does not grant live tools
            assert "ibkr:orders:live:modify" in str(live.content)
