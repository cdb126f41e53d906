"""Smaller holes, tried as an attacker would at the command line: each refusal asserts its one code."""

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from ibkr_gateway_cli.app import app
from typer.testing import CliRunner

runner = CliRunner()
ACCOUNT = "DU1234567"
PREVIEW = ["orders", "preview", "--account", ACCOUNT, "--symbol", "AAPL", "--side", "buy", "--enable-preview"]


def run(*args: str) -> tuple[int, Any, str]:
    result = runner.invoke(app, [*args, "--json"])
    body = json.loads(result.stdout) if result.exit_code == 0 else json.loads(result.stderr)
    return result.exit_code, body, result.stdout + result.stderr


def test_a_secret_looking_kill_switch_reason_is_redacted_and_the_close_succeeds(state_env: dict[str, str]) -> None:
    secret = "password=hunter2hunter2 Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc"
    code, closed, text = run("kill-switch", "close", "--reason", secret)
    assert code == 0, text  # the switch closed: the call says so
    assert closed["state"] == "closed" and "hunter2" not in text and "eyJ" not in text
    code, status, text = run("kill-switch", "status")
    assert code == 0 and status["state"] == "closed"
    assert "hunter2" not in text and "[REDACTED]" in status["reason"]
    _, events, text = run("audit", "tail", "--limit", "5")
    assert "hunter2" not in text


def test_a_checkpoint_covers_the_event_that_records_it(state_env: dict[str, str], tmp_path: Path) -> None:
    """Cutting off exactly the newest event (the checkpoint call's own) is detected."""
    assert run("health")[0] == 0
    checkpoint = tmp_path / "head.json"
    code, taken, text = run("audit", "checkpoint")
    assert code == 0 and taken["own_event_id"]
    checkpoint.write_text(text, encoding="utf-8")
    db = sqlite3.connect(Path(state_env["IBKR_AGENT_STATE_DIR"]) / "state.sqlite3")
    with db:
        (own,) = db.execute("SELECT event_id FROM audit_events ORDER BY sequence DESC LIMIT 1").fetchone()
        assert own == taken["own_event_id"]
        db.execute("DELETE FROM audit_events WHERE event_id = ?", (own,))
    db.close()
    code, error, _ = run("audit", "verify", "--checkpoint", str(checkpoint))
    assert code == 2 and error["code"] == "AUDIT_CHAIN_INVALID"


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        pytest.param("--limit-price", "1e999999999", id="overflowing-price"),
        pytest.param("--limit-price", "9" * 5000, id="huge-price"),
        pytest.param("--quantity", "1e999999999", id="overflowing-quantity"),
    ],
)
def test_a_huge_number_is_an_input_error_not_an_internal_one(state_env: dict[str, str], flag: str, value: str) -> None:
    args = {"--quantity": "1", "--limit-price": "100", flag: value}
    code, error, _ = run(*PREVIEW, *(item for pair in args.items() for item in pair))
    assert error["code"].startswith(("INPUT_", "ORDER_")) and error["code"] != "INTERNAL_ERROR", error
    assert code in (1, 2)


@pytest.mark.parametrize("quantity", ["1_000", "1 000", "١٠", "0x10", " 1"])
def test_a_quantity_is_plain_decimal_digits(state_env: dict[str, str], quantity: str) -> None:
    code, error, _ = run(*PREVIEW, "--quantity", quantity, "--limit-price", "100")
    assert code == 2 and error["code"] == "INPUT_INVALID_ARGUMENT", error


def test_a_wrong_audit_key_is_the_code_the_docs_promise(
    state_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/audit.md: a log met with another key refuses every command, verify included, with AUDIT_WRITE_FAILED."""
    config = tmp_path / "keyed.yaml"
    config.write_text(
        f"state:\n  directory: {tmp_path / 'keyed'}\naudit:\n  hmac_secret_env: TEST_AUDIT_KEY\n", encoding="utf-8"
    )
    monkeypatch.setenv("TEST_AUDIT_KEY", "a" * 40)
    assert run("--config", str(config), "health")[0] == 0
    monkeypatch.setenv("TEST_AUDIT_KEY", "b" * 40)
    code, error, text = run("--config", str(config), "audit", "verify")
    assert (code, error["code"]) == (1, "AUDIT_WRITE_FAILED") and "different key" in error["message"]
    assert "b" * 40 not in text and "a" * 40 not in text


ROOT = Path(__file__).resolve().parents[3]
ORDERS_PACKAGE = ROOT / "packages" / "ibkr-gateway-core" / "src" / "ibkr_gateway_core" / "orders"
ORDER_PATH = sorted(path.name for path in ORDERS_PACKAGE.glob("*.py"))
"""Every module of the order path (the `orders` subpackage)."""


def test_the_remote_example_trusts_no_proxy() -> None:
    from ibkr_gateway_core.config import GatewayConfig

    config = GatewayConfig.load(ROOT / "config" / "remote.example.yaml")
    assert config.remote_mcp.trusted_proxies == []


def test_the_order_path_modules_are_found() -> None:
    assert {"gates.py", "keyed_writes.py", "live_desk.py", "store.py", "reconciler.py"} <= set(ORDER_PATH)


@pytest.mark.parametrize("module", ORDER_PATH)
def test_no_assert_guards_order_logic(module: str) -> None:
    """`python -O` drops asserts: the order path checks explicitly."""
    import ast

    source = ORDERS_PACKAGE / module
    tree = ast.parse(source.read_text(encoding="utf-8"))
    assert not [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]
