"""The example configurations under config/ load, validate and say what their comments say."""

from pathlib import Path

import pytest
import yaml
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.scopes import READ_ONLY

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "config").glob("*.example.yaml"))


def test_both_example_configs_exist() -> None:
    """The guide and the seed developer guide name these two files."""
    assert [path.name for path in EXAMPLES] == ["local.example.yaml", "remote.example.yaml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_config_targets_a_local_client_portal_gateway_read_only(path: Path) -> None:
    """Each example is a read-only, local Client Portal Gateway setup with the audit key from the env."""
    config = GatewayConfig.load(path)
    assert config.broker.backend == "client_portal_gateway"
    assert config.broker.base_url == "https://localhost:5000"
    assert config.broker.verify_tls is False
    assert config.auth.scopes() == READ_ONLY
    assert config.audit.hmac_secret_env == "IBKR_AUDIT_HMAC_SECRET"
    assert config.safety.live_trading_enabled is False


def test_remote_example_turns_on_only_the_remote_mcp_switches() -> None:
    """remote.example.yaml differs from local.example.yaml by the safety switch and its remote_mcp section."""
    local = GatewayConfig.load(ROOT / "config" / "local.example.yaml")
    remote = GatewayConfig.load(ROOT / "config" / "remote.example.yaml")
    assert local.safety.remote_mcp_enabled is False
    assert local.remote_mcp.enabled is False
    assert remote.safety.remote_mcp_enabled is True
    assert remote.remote_mcp.enabled is True
    assert remote.remote_mcp.resource == "https://gateway.example.com/mcp"
    assert remote.remote_mcp.scopes() == READ_ONLY
    assert remote.remote_mcp.token_id_hmac_secret_env == "IBKR_REMOTE_TOKEN_HMAC_SECRET"
    assert remote.broker == local.broker
    assert remote.auth == local.auth


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_config_with_a_remote_host_and_tls_off_is_refused(path: Path, tmp_path: Path) -> None:
    """The examples' comment holds: verify_tls false is allowed only for a loopback host (we decided)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["broker"]["base_url"] = "https://gateway.example.com:5000"
    changed = tmp_path / path.name
    changed.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(GatewayError) as caught:
        GatewayConfig.load(changed)
    assert caught.value.code == ErrorCode.CONFIG_INVALID
