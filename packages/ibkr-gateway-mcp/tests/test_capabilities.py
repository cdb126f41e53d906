from ibkr_gateway_core.capabilities import build_capabilities
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.models import HealthStatus
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.registry import OPERATIONS, Operation
from ibkr_gateway_core.requests import NoInput
from ibkr_gateway_core.scopes import Scope, parse_scopes
from ibkr_gateway_mcp.catalog import tool_scopes

HEALTH = HealthStatus(version="0.1.0", backend="fake", read_only=True)
PREVIEW = Operation(
    name="preview_order",
    tool="ibkr_order_preview",
    cli=("orders", "preview"),
    scope=Scope.ORDERS_PREVIEW,
    title="Preview an order",
    description="test",
    input_model=NoInput,
    output_model=HealthStatus,
    read_only=False,
    idempotent=False,
)
LIVE = Operation(
    name="submit_live",
    tool="ibkr_live_order_submit",
    cli=("orders", "submit"),
    scope=Scope.ORDERS_LIVE_SUBMIT,
    title="Submit a live order",
    description="test",
    input_model=NoInput,
    output_model=HealthStatus,
    read_only=False,
    destructive=True,
    idempotent=False,
)
WITH_WRITES = {op.tool: op for op in (*OPERATIONS.values(), PREVIEW, LIVE)}
WITH_WRITES_SCOPES = {**tool_scopes(), PREVIEW.tool: PREVIEW.scope, LIVE.tool: LIVE.scope}


def agent(*scopes: str) -> Principal:
    return Principal(kind="local_agent", subject="stdio", scopes=parse_scopes(scopes))


def test_read_only_caller_learns_it_may_only_read() -> None:
    """A read-only caller sees every write tool withheld, with the scope it would need, and how to widen it."""
    caps = build_capabilities(
        principal=agent("read_only"), config=GatewayConfig.fake_local(), health=HEALTH, tool_scopes=tool_scopes()
    )
    assert caps.read_only is True
    assert caps.write_tools == []
    assert caps.withheld_tools == {
        op.tool: op.scope.value for op in OPERATIONS.values() if not op.read_only and not op.operator_only
    }
    assert caps.simulated is True
    assert caps.kill_switch == "unknown"
    assert any("auth.enabled_scopes" in note for note in caps.notes)


def test_operator_only_tools_are_offered_to_the_operator_alone() -> None:
    """`ibkr_session_renew` needs only ibkr:health:read, yet an agent holding it is not offered it, nor told
    a scope would unlock it; neither is `ibkr_kill_switch_open` to the with_live tier. The operator sees both."""
    for scopes, config in (
        (("ibkr:health:read",), GatewayConfig.fake_local()),
        (("with_live",), GatewayConfig.fake_local()),
    ):
        caps = build_capabilities(principal=agent(*scopes), config=config, health=HEALTH, tool_scopes=tool_scopes())
        assert "ibkr_session_renew" not in caps.tools and "ibkr_session_renew" not in caps.withheld_tools
        assert "ibkr_kill_switch_open" not in caps.tools and "ibkr_kill_switch_open" not in caps.withheld_tools
    health_only = build_capabilities(
        principal=agent("ibkr:health:read"), config=GatewayConfig.fake_local(), health=HEALTH, tool_scopes=tool_scopes()
    )
    assert health_only.tools == ["ibkr_capabilities", "ibkr_health", "ibkr_backend_status", "ibkr_session_requirements"]
    operator = Principal(kind="local_operator", subject="local-operator", scopes=parse_scopes(["with_live"]))
    caps = build_capabilities(
        principal=operator, config=GatewayConfig.fake_local(), health=HEALTH, tool_scopes=tool_scopes()
    )
    assert {"ibkr_session_renew", "ibkr_kill_switch_open"} <= set(caps.tools)


def test_write_tools_count_only_with_their_scope() -> None:
    """A preview tool in the registry is a write only for a caller holding ibkr:orders:preview."""
    reader = build_capabilities(
        principal=agent("read_only"),
        config=GatewayConfig.fake_local(),
        health=HEALTH,
        tool_scopes=WITH_WRITES_SCOPES,
        operations=WITH_WRITES,
    )
    assert reader.order_preview_allowed is False
    assert reader.withheld_tools["ibkr_order_preview"] == "ibkr:orders:preview"
    assert any("auth.enabled_scopes" in note for note in reader.notes)
    previewer = build_capabilities(
        principal=agent("with_preview"),
        config=GatewayConfig.fake_local(),
        health=HEALTH,
        tool_scopes=WITH_WRITES_SCOPES,
        operations=WITH_WRITES,
    )
    assert previewer.order_preview_allowed is False  # the scope alone does not switch previews on
    assert any("orders.preview_enabled" in note for note in previewer.notes)
    enabled = GatewayConfig.from_mapping({"orders": {"preview_enabled": True}})
    previewer = build_capabilities(
        principal=agent("with_preview"),
        config=enabled,
        health=HEALTH,
        tool_scopes=WITH_WRITES_SCOPES,
        operations=WITH_WRITES,
    )
    assert previewer.order_preview_allowed is True
    assert previewer.write_tools == [
        "ibkr_order_preview",
        "ibkr_kill_switch_close",
        "ibkr_bracket_order_preview",
        "ibkr_order_modify_preview",
    ]
    assert previewer.read_only is False


def test_live_submit_needs_the_config_switch_as_well_as_the_scope() -> None:
    """Holding the live scope is not enough while safety.live_trading_enabled is off."""
    caps = build_capabilities(
        principal=agent("with_live"),
        config=GatewayConfig.fake_local(),
        health=HEALTH,
        tool_scopes=WITH_WRITES_SCOPES,
        operations=WITH_WRITES,
    )
    assert caps.live_trading_enabled is False
    assert caps.live_submit_allowed is False
    assert any("safety.live_trading_enabled" in note for note in caps.notes)


def test_live_submit_is_not_allowed_while_the_kill_switch_is_closed() -> None:
    live = GatewayConfig.from_mapping(
        {
            "safety": {"live_trading_enabled": True},
            "live_trading": {
                "enabled": True,
                "allowed_accounts": ["DU1234567"],
                "risk_policy_id": "p",
                "paper_to_live_checklist_acknowledged": True,
            },
            "risk_policies": [{"policy_id": "p", "max_quantity": "10"}],
        }
    )
    closed = build_capabilities(
        principal=agent("with_live"),
        config=live,
        health=HEALTH,
        tool_scopes=WITH_WRITES_SCOPES,
        operations=WITH_WRITES,
        kill_switch="closed",
    )
    assert closed.live_submit_allowed is False
    assert any("kill switch is closed" in note for note in closed.notes)
    opened = build_capabilities(
        principal=agent("with_live"),
        config=live,
        health=HEALTH,
        tool_scopes=WITH_WRITES_SCOPES,
        operations=WITH_WRITES,
        kill_switch="open",
    )
    assert opened.live_submit_allowed is True


def test_the_cli_operator_enables_writes_with_its_flags_not_the_agent_switches() -> None:
    """For the operator the per-call flags are the switches, so writes are possible without orders.*_enabled."""
    operator = Principal(kind="local_operator", subject="local-operator", scopes=parse_scopes(["with_live"]))
    caps = build_capabilities(
        principal=operator,
        config=GatewayConfig.fake_local(),
        health=HEALTH,
        tool_scopes=WITH_WRITES_SCOPES,
        operations=WITH_WRITES,
        kill_switch="closed",
    )
    assert (caps.order_preview_allowed, caps.paper_submit_allowed) == (True, True)
    assert caps.live_submit_allowed is True  # the simulator: --enable-live and --open-kill-switch suffice
    assert any("--enable-preview" in note for note in caps.notes)
    assert not any("orders.preview_enabled" in note for note in caps.notes)
