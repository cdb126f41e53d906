import json
import socket
import subprocess
import sys
from pathlib import Path

from ibkr_gateway_cli.app import app
from typer.testing import CliRunner

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def error_of(stderr: str) -> dict[str, object]:
    payload = json.loads(stderr)
    assert set(payload) == {"code", "message", "retryable", "user_action", "audit_event_id"}
    return payload


def test_accounts_list_json_shows_the_paper_account(state_env: dict[str, str]) -> None:
    """The seed guide's paper account is visible on the simulator, marked paper by the broker."""
    code, out, err = invoke("accounts", "list", "--json")
    assert code == 0, err
    accounts = {row["account_id"]: row for row in json.loads(out)}
    assert accounts["DU1234567"]["account_mode"] == "paper"


def test_json_flag_is_accepted_before_the_command_too(state_env: dict[str, str]) -> None:
    code, out, err = invoke("--json", "health")
    assert code == 0, err
    assert json.loads(out)["gateway"] == "ok"


def test_portfolio_snapshot_renders_a_readable_table_without_json(state_env: dict[str, str]) -> None:
    code, out, err = invoke("portfolio", "snapshot", "--account", "DU1234567")
    assert code == 0, err
    assert "AAPL" in out
    assert "SYMBOL" in out
    assert not out.lstrip().startswith("{")


def test_unknown_account_is_refused_with_its_code_and_exit_2(state_env: dict[str, str]) -> None:
    code, _, err = invoke("positions", "list", "--account", "DU0000000", "--json")
    assert code == 2
    error = error_of(err)
    assert error["code"] == "INPUT_UNAUTHORIZED_ACCOUNT"
    assert error["audit_event_id"]


def test_missing_account_is_an_input_error(state_env: dict[str, str]) -> None:
    code, _, err = invoke("positions", "list", "--json")
    assert code == 2
    assert error_of(err)["code"] == "INPUT_MISSING_ACCOUNT"


def test_ambiguous_symbol_is_refused(state_env: dict[str, str]) -> None:
    code, _, err = invoke("contracts", "resolve", "ABC", "--json")
    assert code == 2
    error = error_of(err)
    assert error["code"] == "INPUT_AMBIGUOUS_CONTRACT"
    assert "contracts search" in str(error["user_action"])


def test_non_numeric_contract_id_is_refused(state_env: dict[str, str]) -> None:
    code, _, err = invoke("market", "snapshot", "--contract-id", "AAPL", "--json")
    assert code == 2
    assert error_of(err)["code"] == "INPUT_INVALID_CONTRACT"


def test_bad_bar_size_is_a_time_range_error(state_env: dict[str, str]) -> None:
    code, _, err = invoke("market", "bars", "--contract-id", "265598", "--bar-size", "7 parsecs", "--json")
    assert code == 2
    assert error_of(err)["code"] == "INPUT_INVALID_TIME_RANGE"


def test_market_snapshot_has_prices_on_the_first_call(state_env: dict[str, str]) -> None:
    """CPAPI's pre-flight answer (no prices) is handled inside: the first CLI call shows prices."""
    code, out, err = invoke("market", "snapshot", "--contract-id", "265598", "--json")
    assert code == 0, err
    quote = json.loads(out)
    assert quote["bid"] is not None and quote["ask"] is not None
    assert isinstance(quote["bid"], str)  # Decimal as string, never a float


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_tls_verification_off_for_a_remote_url_is_a_config_error(state_env: dict[str, str], tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        "broker:\n  backend: client_portal_gateway\n  base_url: https://broker.example.com:5000\n  verify_tls: false\n",
    )
    code, _, err = invoke("--config", str(config), "accounts", "list", "--json")
    assert code == 7
    assert error_of(err)["code"] == "CONFIG_INVALID"


def test_unknown_config_key_is_a_config_error(state_env: dict[str, str], tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "broker:\n  backend: fake\n  colour: blue\n")
    code, _, err = invoke("--config", str(config), "health", "--json")
    assert code == 7
    error = error_of(err)
    assert error["code"] == "CONFIG_INVALID"
    assert "broker.colour" in str(error["message"])


def test_missing_config_file_is_a_config_error_not_a_fallback(state_env: dict[str, str], tmp_path: Path) -> None:
    code, out, err = invoke("--config", str(tmp_path / "absent.yaml"), "accounts", "list", "--json")
    assert code == 7
    assert out == ""
    error = error_of(err)
    assert error["code"] == "CONFIG_INVALID"
    assert str(tmp_path) not in str(error["message"])  # no local paths in output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_gateway_is_backend_unavailable(state_env: dict[str, str], tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        "broker:\n  backend: client_portal_gateway\n"
        f"  base_url: https://127.0.0.1:{free_port()}\n  verify_tls: false\n  timeout_seconds: 2\n"
        "audit:\n  hmac_secret_env: TEST_AUDIT_KEY\n",
    )
    result = runner.invoke(
        app, ["--config", str(config), "accounts", "list", "--json"], env={"TEST_AUDIT_KEY": "k" * 40}
    )
    assert result.exit_code == 3, result.output
    assert error_of(result.stderr)["code"] == "BROKER_BACKEND_UNAVAILABLE"


def test_health_imports_neither_mcp_nor_starlette_nor_uvicorn(state_env: dict[str, str]) -> None:
    """Start-up stays light: the embedded simulator and the MCP SDK load only when needed."""
    probe = (
        "import sys\n"
        "from ibkr_gateway_cli.app import main\n"
        "sys.argv = ['ibkr-agent', 'health', '--json']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'mcp', 'starlette', 'uvicorn'})\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env={**state_env, "PATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("HEAVY=")


def test_module_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ibkr_gateway_cli", "--help"],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "accounts" in proc.stdout


def test_usage_errors_get_the_stable_error_shape(state_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ibkr_gateway_cli", "positions", "list", "--bogus", "--json"],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env={**state_env},
    )
    assert proc.returncode == 2, proc.stderr
    error = json.loads(proc.stderr)
    assert error["code"] == "INPUT_INVALID_ARGUMENT"
    assert error["audit_event_id"]


def test_a_refused_command_line_is_audited_without_its_values(state_env: dict[str, str]) -> None:
    """The parser's refusal reaches the audit log under the operation it names, option names only."""
    proc = subprocess.run(
        [sys.executable, "-m", "ibkr_gateway_cli", "positions", "list", "--account", "DU1234567", "--bogus", "--json"],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env={**state_env},
    )
    event_id = json.loads(proc.stderr)["audit_event_id"]
    code, out, err = invoke("audit", "tail", "--limit", "1", "--json")
    assert code == 0, err
    event = json.loads(out)["events"][0]["event"]
    assert event["event_id"] == event_id
    assert (event["operation"], event["error_code"]) == ("list_positions", "INPUT_INVALID_ARGUMENT")
    assert "DU1234567" not in out


def test_market_bars_with_only_a_contract_id_uses_normalised_defaults(state_env: dict[str, str]) -> None:
    """The defaults ('1 D', '1 hour') go through the same normalisation as given values."""
    code, out, err = invoke("market", "bars", "--contract-id", "265598", "--json")
    assert code == 0, err
    bars = json.loads(out)
    assert (bars["duration"], bars["bar_size"]) == ("1d", "1h")
