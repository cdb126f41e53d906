"""The order workflow over MCP: an agent previews, a person approves, the agent submits to paper.

Scopes and the config's enablement switches decide what the agent may do; the approval must come
from someone else (the operator), so an agent can never answer its own order confirmation.
"""

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

PREVIEW = {
    "account_id": "DU1234567",
    "symbol": "AAPL",
    "side": "buy",
    "quantity": 1,
    "limit_price": "100",
    "currency": "USD",
}


def structured(result: CallToolResult) -> dict[str, Any]:
    content = result.structured_content
    assert isinstance(content, dict), result
    return content  # type: ignore[return-value]


def config(tmp_path: Path, *, paper: bool = True) -> GatewayConfig:
    return GatewayConfig.from_mapping(
        {
            "auth": {"enabled_scopes": ["with_paper"]},
            "orders": {"preview_enabled": True, "paper_enabled": paper},
            "state": {"directory": str(tmp_path / "state")},
        }
    )


def agent(scopes: list[str]) -> Principal:
    return Principal(kind="local_agent", subject="stdio", scopes=parse_scopes(scopes))


OPERATOR = Principal(kind="local_operator", subject="local-operator", scopes=parse_scopes(["with_paper"]))


async def test_preview_then_operator_approval_then_paper_submit(tmp_path: Path, mode: str) -> None:
    async with Gateway.from_config(config(tmp_path)) as gateway:
        async with Client(build_server(gateway, principal=agent(["with_paper"])), mode=mode) as client:  # type: ignore[arg-type]
            preview = await client.call_tool("ibkr_order_preview", PREVIEW)
            assert not preview.is_error, preview
            preview_id = structured(preview)["preview_id"]

            self_approval = await client.call_tool(
                "ibkr_approvals_create", {"account_id": "DU1234567", "preview_id": preview_id}
            )
            assert self_approval.is_error
            assert structured(self_approval)["code"] == "APPROVAL_APPROVER_REQUIRED"  # a stdio agent never approves

            approval = await gateway.call(
                "create_approval", {"account_id": "DU1234567", "preview_id": preview_id}, principal=OPERATOR
            )
            submitted = await client.call_tool(
                "ibkr_paper_order_submit",
                {
                    "account_id": "DU1234567",
                    "approval_id": approval.value.approval_id,
                    "idempotency_key": "mcp-paper-1",
                },
            )
            assert not submitted.is_error, submitted
            order: dict[str, Any] = structured(submitted)
            assert order["broker_order_id"]

            orders = await client.call_tool("ibkr_orders_list", {"account_id": "DU1234567"})
            ids = [row["broker_order_id"] for row in structured(orders)["result"]]
            assert order["broker_order_id"] in ids

        events = [record.event for record in await gateway.audit.tail(20)]
    tools = [event.tool_name for event in events]
    assert "ibkr_order_preview" in tools and "ibkr_paper_order_submit" in tools
    refused = [event for event in events if event.error_code == "APPROVAL_APPROVER_REQUIRED"]
    assert len(refused) == 1 and refused[0].decision == "refuse"


async def test_write_tools_are_hidden_and_denied_without_their_scope(tmp_path: Path, mode: str) -> None:
    async with Gateway.from_config(config(tmp_path)) as gateway:
        async with Client(build_server(gateway, principal=agent(["read_only"])), mode=mode) as client:  # type: ignore[arg-type]
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "ibkr_order_preview" not in names and "ibkr_paper_order_submit" not in names
            denied = await client.call_tool("ibkr_order_preview", PREVIEW)
            assert denied.is_error
            assert structured(denied)["code"] == "AUTH_MISSING_SCOPE"
        record = (await gateway.audit.tail(1))[0]
    assert record.event.result_status == "denied_scope"


async def test_paper_submit_is_refused_when_the_config_does_not_enable_paper(tmp_path: Path, mode: str) -> None:
    async with Gateway.from_config(config(tmp_path, paper=False)) as gateway:
        async with Client(build_server(gateway, principal=agent(["with_paper"])), mode=mode) as client:  # type: ignore[arg-type]
            preview = structured(await client.call_tool("ibkr_order_preview", PREVIEW))
            approval = await gateway.call(
                "create_approval", {"account_id": "DU1234567", "preview_id": preview["preview_id"]}, principal=OPERATOR
            )
            refused = await client.call_tool(
                "ibkr_paper_order_submit",
                {"account_id": "DU1234567", "approval_id": approval.value.approval_id, "idempotency_key": "k-2"},
            )
    assert refused.is_error
    assert structured(refused)["code"] == "PAPER_TRADING_DISABLED"


async def test_capabilities_report_the_persisted_kill_switch_and_the_enablement(tmp_path: Path, mode: str) -> None:
    async with Gateway.from_config(config(tmp_path, paper=False)) as gateway:
        async with Client(build_server(gateway, principal=agent(["with_live"])), mode=mode) as client:  # type: ignore[arg-type]
            caps = structured(await client.call_tool("ibkr_capabilities", {}))
    assert caps["kill_switch"] == "closed"
    assert caps["order_preview_allowed"] is True
    assert caps["paper_submit_allowed"] is False
    assert caps["live_submit_allowed"] is False
