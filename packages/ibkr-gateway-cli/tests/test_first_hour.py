"""What a new user meets first: help that says what is required, clear words, every command runnable, a fast start."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ibkr_gateway_cli import spec
from ibkr_gateway_cli._command_table import COMMANDS
from ibkr_gateway_cli.app import app
from pydantic import BaseModel
from typer.testing import CliRunner

runner = CliRunner()
ACCOUNT = "DU1234567"


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


# ----------------------------------------------------------------------------- the command table


def test_the_command_table_is_generated_from_the_current_registry() -> None:
    """A new or changed operation without a regenerated table fails here (`python -m ibkr_gateway_cli.spec`)."""
    assert spec.TABLE_PATH.read_text(encoding="utf-8") == spec.render_table(), (
        "stale: run `uv run python -m ibkr_gateway_cli.spec` (or scripts/gen_docs.py) and commit the result"
    )


def test_the_table_marks_required_and_default_values_from_the_input_models() -> None:
    by_name = {command.operation: {param.name: param for param in command.params} for command in COMMANDS}
    assert by_name["list_positions"]["account_id"].required
    assert by_name["historical_bars"]["duration"].default == "1 D"
    assert by_name["historical_bars"]["bar_size"].default == "1 hour"
    assert not by_name["historical_bars"]["duration"].required
    assert by_name["list_executions"]["days"].default == 1


def _imported_after(code: str, env: dict[str, str]) -> set[str]:
    probe = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))\n"
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, encoding="utf-8", timeout=60, check=False, env=env
    )
    return set(proc.stdout.split())


def test_registering_every_command_imports_nothing_from_the_core(state_env: dict[str, str]) -> None:
    """Building the command line is cheap: no registry, audit, crypto, order desk or backend."""
    modules = _imported_after("import ibkr_gateway_cli.app", {**os.environ, **state_env})
    assert "ibkr_gateway_cli.app" in modules
    assert not {m for m in modules if m.startswith(("ibkr_gateway_core", "ibkr_gateway_cpapi", "ibkr_gateway_mcp"))}
    assert not {m.split(".")[0] for m in modules} & {"cryptography", "httpx2", "httpx", "yaml", "mcp", "anyio"}


HEALTH_CORE_MODULES = {
    "ibkr_gateway_core",
    "ibkr_gateway_core._lazy",
    "ibkr_gateway_core._operation_methods",
    "ibkr_gateway_core._result_json",
    "ibkr_gateway_core._timestamps",
    "ibkr_gateway_core.audit",
    "ibkr_gateway_core.audit.checkpoint",
    "ibkr_gateway_core.audit.events",
    "ibkr_gateway_core.audit.keys",
    "ibkr_gateway_core.audit.log",
    "ibkr_gateway_core.backend",
    "ibkr_gateway_core.call_context",
    "ibkr_gateway_core.config",
    "ibkr_gateway_core.errors",
    "ibkr_gateway_core.gateway",
    "ibkr_gateway_core.input_base",
    "ibkr_gateway_core.input_limits",
    "ibkr_gateway_core.models",
    "ibkr_gateway_core.observability",
    "ibkr_gateway_core.orders",
    "ibkr_gateway_core.orders.risk",
    "ibkr_gateway_core.principal",
    "ibkr_gateway_core.read_desk",
    "ibkr_gateway_core.redaction",
    "ibkr_gateway_core.registry",
    "ibkr_gateway_core.scopes",
    "ibkr_gateway_core.state",
    "ibkr_gateway_core.state.database",
}
"""The core modules `health` may load: the Gateway, its registry, config and audit log (the subpackages' own
`__init__` modules load nothing by themselves). Adding one here is a start-up cost (benchmarks/cli_startup.py);
the order desk, crypto and backends stay out, and so do the models of the other operations (the registry
names them by reference) and the trading desk."""


def test_health_imports_only_the_gateway_the_registry_the_config_and_the_audit_log(state_env: dict[str, str]) -> None:
    run_health = (
        "from ibkr_gateway_cli.fast import main\nsys.argv = ['ibkr-agent', 'health', '--json']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code"
    )
    modules = _imported_after(run_health, {**os.environ, **state_env})
    assert "ibkr_gateway_core.gateway" in modules, "health did not run"
    core = {m for m in modules if m.startswith("ibkr_gateway_core")}
    assert core <= HEALTH_CORE_MODULES, f"health now also imports {sorted(core - HEALTH_CORE_MODULES)}"
    heavy = {m.split(".")[0] for m in modules} & {
        "cryptography", "ibkr_gateway_cpapi", "ibkr_gateway_mcp", "mcp", "starlette", "uvicorn", "httpx2", "rich",
        "opentelemetry", "google",  # OpenTelemetry and its protobuf load only with observability.otel_enabled
    }  # fmt: skip
    assert heavy == set()
    assert not {m for m in modules if m.startswith("ibkr_gateway_cli.render")}, "--json needs no renderer"


FIELD_TYPES_AS_OBJECTS = (
    "ibkr_gateway_core.audit.events",
    "ibkr_gateway_core.config",
    "ibkr_gateway_core.models",
    "ibkr_gateway_core.orders.risk",
    "ibkr_gateway_cpapi._wire",
)
"""Modules whose models every command (the config, the audit event) or every broker read defines."""


@pytest.mark.parametrize("module", FIELD_TYPES_AS_OBJECTS)
def test_the_models_every_command_defines_give_their_field_types_as_objects(module: str) -> None:
    """pydantic compiles a field type given as text when the class is made, about 60,000 instructions a
    field: these modules give them as objects, without `from __future__ import annotations` (start-up)."""
    loaded = importlib.import_module(module)
    models = [
        value
        for value in vars(loaded).values()
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module
    ]
    assert models
    as_text = {
        f"{model.__name__}.{name}"
        for model in models
        for name, kind in vars(model).get("__annotations__", {}).items()
        if isinstance(kind, str)
    }
    assert as_text == set()


# ----------------------------------------------------------------------------- --help and words


def _help(*words: str) -> str:
    result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "160", "TERMINAL_WIDTH": "160"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    "command", [command.words for command in COMMANDS][::4] + [("mcp", "serve"), ("simulator", "serve"), ()]
)
def test_help_shows_no_bool_metavar_on_flags(command: tuple[str, ...]) -> None:
    """`--json` takes no value, so its help shows none (`--json true` is refused)."""
    assert "<bool>" not in _help(*command)


def test_help_marks_required_options_and_shows_defaults() -> None:
    text = _help("market", "bars")
    line = next(line for line in text.splitlines() if "--contract-id" in line)
    assert "*" in line and "required" in line
    assert "[default: 1 D]" in text and "[default: 1 hour]" in text
    assert "[default: local-candidate]" in _help("orders", "live-cancel")


def test_a_reason_names_what_keeps_it() -> None:
    """`--reason` is shared by several commands; only the kill switch's speaks of the switch."""
    reasons = {
        command.words: param.help for command in COMMANDS for param in command.params if param.flag == "--reason"
    }
    assert len(reasons) >= 4
    wrong = [words for words, text in reasons.items() if ("switch" in text) != (words[0] == "kill-switch")]
    assert wrong == []
    assert "approval" in reasons[("approvals", "revoke")]


def test_version() -> None:
    from importlib.metadata import version

    code, out, _ = run("--version")
    assert code == 0 and out == f"ibkr-agent {version('ibkr-gateway-cli')}\n"


def test_a_missing_account_is_named_as_the_flag_with_a_suggestion(state_env: dict[str, str]) -> None:
    code, _, err = run("positions", "list")
    assert code == 2
    assert "--account is required" in err and "account_id" not in err
    assert "ibkr-agent accounts list" in err
    code, _, err = run("positions", "list", "--json")
    error = json.loads(err)
    assert error["code"] == "INPUT_MISSING_ACCOUNT" and "--account" in error["message"]


def test_a_mistyped_command_gets_a_suggestion(state_env: dict[str, str]) -> None:
    code, _, err = run("account", "list", "--json")
    assert code == 2
    assert "Did you mean 'accounts list'" in json.loads(err)["message"]


def test_an_unknown_mcp_transport_names_what_is_served(state_env: dict[str, str]) -> None:
    code, _, err = run("mcp", "serve", "--transport", "sse", "--json")
    assert code == 2
    message = json.loads(err)["message"]
    assert "stdio" in message and "http" in message


# ----------------------------------------------------------------------------- every command runs


EXPECTED_REFUSALS = {
    "preview_order": "INPUT_INVALID_ARGUMENT",  # --symbol or --contract-id: one of the two, so neither is required
    "submit_paper_order": "PAPER_TRADING_DISABLED",
    "cancel_paper_order": "PAPER_TRADING_DISABLED",
    "submit_live_order": "LIVE_TRADING_DISABLED",
    "cancel_live_order": "LIVE_TRADING_DISABLED",
    "preview_bracket_order": "INPUT_INVALID_ARGUMENT",  # --symbol or --contract-id, as for orders preview
    "preview_order_modify": "INPUT_INVALID_ARGUMENT",  # at least one of the fields to change
    "submit_paper_bracket_order": "PAPER_TRADING_DISABLED",
    "cancel_paper_bracket_order": "PAPER_TRADING_DISABLED",
    "modify_paper_order": "PAPER_TRADING_DISABLED",
    "submit_live_bracket_order": "LIVE_TRADING_DISABLED",
    "cancel_live_bracket_order": "LIVE_TRADING_DISABLED",
    "modify_live_order": "LIVE_TRADING_DISABLED",
    "option_greeks": "INPUT_INVALID_CONTRACT",  # the sample conid is the stock, not an option
    "news_list": "BACKEND_UNSUPPORTED",  # news and transfers: not served through this backend
    "news_article": "BACKEND_UNSUPPORTED",
    "transfer_history": "BACKEND_UNSUPPORTED",
    "import_state": "INPUT_INVALID_ARGUMENT",  # the sample value names no state file
}
"""Operations that, given only their required options, stop at their first check: the switch nobody gave."""


def test_a_rule_across_fields_is_spoken_in_flags(state_env: dict[str, str]) -> None:
    code, _, err = run("orders", "preview", "--account", ACCOUNT, "--side", "buy", "--quantity", "1", "--json")
    assert code == 2
    assert "exactly one of --symbol and --contract-id" in json.loads(err)["message"]


def _value(name: str, ids: dict[str, str], operation: str) -> str:
    samples = {
        "account_id": ACCOUNT,
        "query": "AAPL",
        "contract_id": "265598",
        "side": "buy",
        "quantity": "1",
        "reason": "first hour",
        "idempotency_key": f"key-{operation}",
        "limit_price": "100",
        "take_profit_price": "110",
        "stop_loss_price": "90",
        "symbol": "AAPL",
        "month": "JAN27",
        "scan_code": "TOP_PERC_GAIN",
        "base": "EUR",
        "quote": "USD",
        "article_id": "1",
        "expiry": "20270115",
    }
    return ids[name] if name in ids else samples.get(name, "1")


def test_every_command_runs_with_only_its_required_options(state_env: dict[str, str]) -> None:
    """Defaults are usable as they are: each command succeeds, or stops at the gate it is documented to."""
    preview: dict[str, Any] = json.loads(
        run(
            "orders",
            "preview",
            "--account",
            ACCOUNT,
            "--symbol",
            "AAPL",
            "--side",
            "buy",
            "--quantity",
            "1",
            "--limit-price",
            "100",
            "--enable-preview",
            "--json",
        )[1]  # fmt: skip
    )
    approval = json.loads(run("approvals", "create", "--account", ACCOUNT, "--preview-id", preview["preview_id"],
                              "--json")[1])  # fmt: skip
    orders = json.loads(run("orders", "list", "--account", ACCOUNT, "--json")[1])
    ids = {
        "preview_id": preview["preview_id"],
        "approval_id": approval["approval_id"],
        "broker_order_id": orders[0]["broker_order_id"] if orders else "1",
        "fingerprint": preview["fingerprint"],
        "to": str(Path(state_env["IBKR_AGENT_STATE_DIR"]) / "backup.sqlite3"),  # a new file, never the working folder
    }
    outcomes: dict[str, str] = {}
    for command in COMMANDS:
        args: list[str] = [*command.words]
        for param in command.params:
            if param.required:
                value = _value(param.name, ids, command.operation)
                args += [value] if param.flag is None else [param.flag, value]
        code, _, err = run(*args, "--json")
        outcomes[command.operation] = "ok" if code == 0 else str(json.loads(err)["code"])
    expected = {command.operation: EXPECTED_REFUSALS.get(command.operation, "ok") for command in COMMANDS}
    assert outcomes == expected, {name: code for name, code in outcomes.items() if expected.get(name) != code}


def test_cli_startup_benchmark_runs(tmp_path: Path) -> None:
    """benchmarks/cli_startup.py measures the floor and both commands in one run and prints the ratios."""
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "cli_startup.py"), "--runs", "1"],
        capture_output=True,
        encoding="utf-8",
        timeout=120,
        check=False,
        env={**os.environ, "IBKR_AGENT_STATE_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "x floor" in proc.stdout and "goal health --json" in proc.stdout and "goal accounts list" in proc.stdout


# ----------------------------------------------------------------------------- human output


def test_the_preview_summary_reads_like_an_order(state_env: dict[str, str]) -> None:
    """Plain decimals (never `1E+3`), money as `100000 USD`, every price of the order shown."""
    base = ["orders", "preview", "--account", ACCOUNT, "--symbol", "AAPL", "--side", "buy", "--enable-preview"]
    code, out, err = run(*base, "--quantity", "1000", "--order-type", "stop-limit", "--stop-price", "99",
                         "--limit-price", "100")  # fmt: skip
    assert code == 0, err
    first, cost, commission = out.splitlines()[:3]
    assert first.endswith(": buy 1000 AAPL stop_limit (limit 100, stop 99) day")
    assert cost == "estimated cost: 100000 USD"
    assert commission.startswith("commission: ") and commission.endswith(" USD")
    code, out, err = run(*base, "--quantity", "2", "--order-type", "trailing-stop", "--trailing-percent", "1.5")
    assert code == 0, err
    assert "buy 2 AAPL trailing_stop (trail 1.5%) day" in out.splitlines()[0]


def test_audit_tail_has_a_header_row_and_capabilities_one_tool_per_line(state_env: dict[str, str]) -> None:
    code, out, err = run("capabilities")
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.startswith("tools (") for line in lines)
    assert "  ibkr_health" in lines and "  ibkr_capabilities" in lines
    code, out, err = run("audit", "tail", "--limit", "5")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["SEQUENCE", "TIMESTAMP", "TOOL", "RESULT", "ERROR_CODE"]
    assert rows and "ibkr_capabilities" in rows[-1]
