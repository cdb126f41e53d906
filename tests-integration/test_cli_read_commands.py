"""Every read command as a real `ibkr-agent` process, in fake mode and against the HTTPS simulator.

Both modes run the same client and mapping code, so they must give the same answers (timestamps
aside), with `--json` and without.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from cli_harness import client_portal_config, run_cli

READ_COMMANDS = [
    pytest.param(["health"], id="health"),
    pytest.param(["backend", "status"], id="backend-status"),
    pytest.param(["session", "requirements"], id="session-requirements"),
    pytest.param(["accounts", "list"], id="accounts-list"),
    pytest.param(["account", "summary", "--account", "DU1234567"], id="account-summary"),
    pytest.param(["portfolio", "snapshot", "--account", "DU1234567"], id="portfolio-snapshot"),
    pytest.param(["positions", "list", "--account", "DU1234567"], id="positions-list"),
    pytest.param(["contracts", "search", "AAPL"], id="contracts-search"),
    pytest.param(["contracts", "resolve", "AAPL"], id="contracts-resolve"),
    pytest.param(["market", "snapshot", "--contract-id", "265598"], id="market-snapshot"),
    pytest.param(
        ["market", "bars", "--contract-id", "265598", "--duration", "1 D", "--bar-size", "1 hour"], id="market-bars"
    ),
    pytest.param(["orders", "list", "--account", "DU1234567"], id="orders-list"),
    pytest.param(["orders", "status", "--account", "DU1234567", "--broker-order-id", "seed-0001"], id="orders-status"),
    pytest.param(["executions", "list", "--account", "DU1234567", "--days", "7"], id="executions-list"),
]

VOLATILE = {
    "checked_at",
    "received_at",
    "source_timestamp",
    "staleness_seconds",
    "as_of",
    "timestamp",
    "updated_at",
    "executed_at",
    "backend",
    "read_only",  # the operator holds every scope with the simulator, the config's scopes otherwise
    "pacing",  # a real gateway is paced (budgets shown), the embedded simulator never is
}
"""Fields that legitimately differ between two runs or two modes."""


def stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}  # type: ignore[misc]
    if isinstance(value, list):
        return [stable(v) for v in value]  # type: ignore[misc]
    return value


@pytest.mark.slow
@pytest.mark.parametrize("command", READ_COMMANDS)
def test_read_command_gives_the_same_answer_in_both_modes(
    command: list[str], cli_env: dict[str, str], https_simulator: str, tmp_path: Path
) -> None:
    fake = run_cli([*command, "--json"], cli_env)
    assert fake.returncode == 0, fake.stderr
    config = client_portal_config(tmp_path, https_simulator)
    real = run_cli(["--config", str(config), *command, "--json"], cli_env)
    assert real.returncode == 0, real.stderr
    assert stable(json.loads(real.stdout)) == stable(json.loads(fake.stdout))

    human_fake = run_cli(command, cli_env)
    human_real = run_cli(["--config", str(config), *command], cli_env)
    assert human_fake.returncode == 0 and human_real.returncode == 0, human_fake.stderr + human_real.stderr
    assert human_fake.stdout.strip() and not human_fake.stdout.lstrip().startswith(("{", "["))
    real_lines = human_real.stdout.split("\n\npacing budgets:")[0]  # only a paced gateway lists its budgets
    assert len(real_lines.splitlines()) == len(human_fake.stdout.splitlines())


@pytest.mark.slow
def test_stopped_gateway_is_backend_unavailable_with_exit_3(cli_env: dict[str, str], tmp_path: Path) -> None:
    config = client_portal_config(tmp_path, "https://127.0.0.1:9")
    proc = run_cli(["--config", str(config), "accounts", "list", "--json"], cli_env)
    assert proc.returncode == 3, proc.stderr
    error = json.loads(proc.stderr)
    assert error["code"] == "BROKER_BACKEND_UNAVAILABLE"
    assert error["audit_event_id"]


def test_every_call_in_a_process_lands_in_the_audit_log(cli_env: dict[str, str]) -> None:
    """A refused call and a completed call each leave one verified event."""
    assert run_cli(["accounts", "list", "--json"], cli_env).returncode == 0
    refused = run_cli(["positions", "list", "--account", "DU9999999", "--json"], cli_env)
    assert refused.returncode == 2
    error_id = json.loads(refused.stderr)["audit_event_id"]
    tail = run_cli(["audit", "tail", "--limit", "5", "--json"], cli_env)
    events = [record["event"] for record in json.loads(tail.stdout)["events"]]
    assert events[0]["event_id"] == error_id
    assert events[0]["error_code"] == "INPUT_UNAUTHORIZED_ACCOUNT"
    verify = run_cli(["audit", "verify", "--json"], cli_env)
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["chain_valid"] is True
