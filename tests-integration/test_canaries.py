"""Canary secrets planted in config, environment and broker responses never come out.

Every CLI command runs once; its stdout, stderr, the log records, the audit database and an audit
export are searched for each canary.
"""

import logging
import secrets
import sqlite3
from pathlib import Path

import pytest
from ibkr_gateway_cli.app import app
from typer.testing import CliRunner

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def canary(kind: str) -> str:
    return f"canary-{kind}-{secrets.token_hex(8)}"


@pytest.fixture
def canaries(tmp_path: Path) -> dict[str, str]:
    return {
        "bearer": canary("bearer"),
        "cookie": canary("cookie"),
        "password": canary("password"),
        "hmac": canary("hmac") + "-" + secrets.token_hex(16),
        "home_user": canary("home"),
        "session": secrets.token_hex(16),
    }


COMMANDS = [
    ["health"],
    ["backend", "status"],
    ["session", "requirements"],
    ["accounts", "list"],
    ["account", "summary", "--account", "DU1234567"],
    ["portfolio", "snapshot", "--account", "DU1234567"],
    ["positions", "list", "--account", "DU1234567"],
    ["contracts", "search", "AAPL"],
    ["contracts", "resolve", "ABC"],
    ["market", "snapshot", "--contract-id", "265598"],
    ["market", "bars", "--contract-id", "265598"],
    ["orders", "list", "--account", "DU1234567"],
    ["orders", "status", "--account", "DU1234567", "--broker-order-id", "seed-0001"],
    ["executions", "list", "--account", "DU1234567"],
    ["positions", "list", "--account", "DU0000000"],
    ["audit", "tail", "--limit", "50"],
    ["audit", "verify"],
    ["audit", "export", "--limit", "500"],
    ["mcp", "serve", "--transport", "stdio", "--describe"],
]


def test_no_canary_leaves_the_process(
    canaries: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ibkr_gateway_cpapi.backend as cpapi_backend
    from ibkr_gateway_cpapi.simulator import SimulatorState

    home = tmp_path / "home" / canaries["home_user"]
    state_dir = home / ".local" / "state" / "ibkr-agent-gateway"
    config = home / "gateway.yaml"
    home.mkdir(parents=True)
    config.write_text(
        f"broker:\n  backend: fake\naudit:\n  hmac_secret_env: CANARY_AUDIT_KEY\nstate:\n  directory: {state_dir}\n",
        encoding="utf-8",
    )
    env = {
        "CANARY_AUDIT_KEY": canaries["hmac"],
        "IBKR_BEARER_TOKEN": f"Bearer {canaries['bearer']}",
        "IBKR_SESSION_COOKIE": f"api={canaries['cookie']}",
        "IBKR_PASSWORD": canaries["password"],
        "HOME": str(home),
        "TERMINAL_WIDTH": "200",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    opened: list[int] = []

    def canaried_backend(config: object) -> object:
        state = SimulatorState()
        state.session.session_id = canaries["session"]  # the tickle session id a real gateway sends
        opened.append(1)
        if len(opened) % 3 == 0:  # every third command meets a broker error body carrying secrets
            state.fail_next(
                500,
                {"error": f"upstream said Authorization: Bearer {canaries['bearer']} cookie={canaries['cookie']}"},
            )
        return cpapi_backend.open_simulator_backend(state)

    monkeypatch.setattr(cpapi_backend, "open_fake_backend", canaried_backend)
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    seen: list[str] = []
    for command in COMMANDS:
        for json_flag in ([], ["--json"]):
            result = runner.invoke(app, ["--config", str(config), *command, *json_flag])
            assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
            seen += [result.stdout, result.stderr]
    seen.append(caplog.text)
    with sqlite3.connect(state_dir / "state.sqlite3") as db:
        seen += [str(row) for row in db.execute("SELECT * FROM audit_events")]
    seen.append((state_dir / "state.sqlite3").read_bytes().decode("latin-1"))

    everything = "\n".join(seen)
    assert "DU1234567" in everything  # the outputs did run (account ids are shown to the operator)
    for name, value in canaries.items():
        assert value not in everything, f"canary {name} leaked"
    assert str(tmp_path) not in everything


def test_audit_rows_never_hold_the_raw_account_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBKR_AGENT_STATE_DIR", str(tmp_path / "state"))
    runner = CliRunner()
    for command in (["positions", "list", "--account", "DU1234567"], ["account", "summary", "--account", "DU7654321"]):
        assert runner.invoke(app, command).exit_code == 0
    raw = (tmp_path / "state" / "state.sqlite3").read_bytes()
    for wal in (tmp_path / "state").glob("state.sqlite3-wal"):
        raw += wal.read_bytes()
    assert b"DU1234567" not in raw
    assert b"DU7654321" not in raw
