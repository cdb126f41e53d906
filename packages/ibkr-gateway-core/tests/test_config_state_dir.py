from pathlib import Path

import pytest
from ibkr_gateway_core.config import GatewayConfig


def test_simulated_and_real_state_never_share_a_default_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an explicit directory, the simulator and a real broker get separate audit logs."""
    monkeypatch.delenv("IBKR_AGENT_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    fake = GatewayConfig.fake_local()
    real = GatewayConfig.client_portal("https://localhost:5000")
    assert fake.state_dir() == tmp_path / "ibkr-agent-gateway" / "simulator"
    assert real.state_dir() == tmp_path / "ibkr-agent-gateway" / "client-portal"
    assert fake.audit_path() != real.audit_path()


def test_the_environment_override_and_the_config_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBKR_AGENT_STATE_DIR", str(tmp_path / "env"))
    assert GatewayConfig.fake_local().state_dir() == tmp_path / "env"
    assert GatewayConfig.fake_local(state_dir=tmp_path / "cfg").state_dir() == tmp_path / "cfg"
