from pathlib import Path

import pytest


@pytest.fixture
def state_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Each test gets its own state directory (audit log, keys)."""
    env = {"IBKR_AGENT_STATE_DIR": str(tmp_path / "state"), "TERMINAL_WIDTH": "120"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
