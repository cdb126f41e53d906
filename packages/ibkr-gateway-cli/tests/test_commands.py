"""The registry-backed commands: exactly one command per operation, flags from the input models."""

import json
from pathlib import Path
from typing import Any

import typer
import typer.main
from ibkr_gateway_cli.app import app
from ibkr_gateway_cli.renderers import RENDERERS
from ibkr_gateway_cli.spec import field_flags
from ibkr_gateway_core.registry import OPERATIONS
from typer.testing import CliRunner

HAND_WRITTEN = {("simulator", "serve"), ("mcp", "serve"), ("desk", "serve")}
"""Commands that are not registry operations."""


def _command_paths() -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []

    def walk(command: Any, ctx: typer.Context, path: tuple[str, ...]) -> None:
        if not hasattr(command, "list_commands"):
            paths.append(path)
            return
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            walk(sub, typer.Context(sub, info_name=name, parent=ctx), (*path, name))

    root = typer.main.get_command(app)
    walk(root, typer.Context(root, info_name="ibkr-agent"), ())
    return paths


def test_every_operation_has_exactly_one_command_and_every_command_an_operation() -> None:
    paths = _command_paths()
    assert len(paths) == len(set(paths)), "a command is registered twice"
    operations = {op.cli for op in OPERATIONS.values()}
    assert set(paths) - HAND_WRITTEN == operations
    assert HAND_WRITTEN <= set(paths)


def test_every_operation_has_a_renderer() -> None:
    assert set(RENDERERS) == set(OPERATIONS)


def test_every_input_field_is_on_the_command_line_or_deliberately_off() -> None:
    offered = {name: set(field_flags(op)) for name, op in OPERATIONS.items()}
    assert all(
        set(OPERATIONS[name].input_model.model_fields) - fields <= {"outside_regular_hours"}
        for name, fields in offered.items()
    )
    assert "outside_regular_hours" not in offered["preview_order"]
    assert "outside_regular_hours" in offered["historical_bars"]


def test_seed_guide_spellings() -> None:
    root = typer.main.get_command(app)
    ctx = typer.Context(root, info_name="ibkr-agent")

    def options(*words: str) -> set[str]:
        command: Any = root
        for word in words:
            command = command.get_command(ctx, word)
        return {opt for param in command.params for opt in param.opts}

    assert {"--account", "--symbol", "--tif", "--enable-preview", "--config", "--json", "--request-id"} <= options(
        "orders", "preview"
    )
    assert "--outside-rth" in options("market", "bars")
    assert {"--enable-live", "--live-scope", "--open-kill-switch", "--acknowledge-paper-to-live", "--live-broker"} <= (
        options("orders", "live-submit")
    )
    assert "query" in options("contracts", "search")  # the positional QUERY
    assert {"--checkpoint"} <= options("audit", "verify")
    assert {"--output"} <= options("audit", "checkpoint")


def test_audit_checkpoint_file_round_trips_through_verify(state_env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["health"]).exit_code == 0
    checkpoint = tmp_path / "head.json"
    written = runner.invoke(app, ["audit", "checkpoint", "--output", str(checkpoint)])
    assert written.exit_code == 0, written.stderr
    assert written.stdout.startswith("checkpoint at sequence ")
    assert checkpoint.exists()
    verified = runner.invoke(app, ["audit", "verify", "--checkpoint", str(checkpoint), "--json"])
    assert verified.exit_code == 0, verified.stderr
    assert json.loads(verified.stdout)["chain_valid"] is True


def test_audit_checkpoint_writes_its_file_with_json_too(state_env: dict[str, str], tmp_path: Path) -> None:
    """`--output FILE --json` writes the file and prints the same checkpoint as JSON."""
    runner = CliRunner()
    checkpoint = tmp_path / "head.json"
    written = runner.invoke(app, ["audit", "checkpoint", "--output", str(checkpoint), "--json"])
    assert written.exit_code == 0, written.stderr
    assert json.loads(checkpoint.read_text(encoding="utf-8")) == json.loads(written.stdout)
    verified = runner.invoke(app, ["audit", "verify", "--checkpoint", str(checkpoint), "--json"])
    assert json.loads(verified.stdout)["checkpoint_checked"] is True


def test_audit_checkpoint_to_an_unwritable_place_is_an_audited_input_error(
    state_env: dict[str, str], tmp_path: Path
) -> None:
    """A missing folder or a folder as the file: refused before the checkpoint is taken, no traceback, audited."""
    runner = CliRunner()
    for output in (tmp_path / "missing" / "head.json", tmp_path):
        refused = runner.invoke(app, ["audit", "checkpoint", "--output", str(output), "--json"])
        assert refused.exit_code == 2, refused.output
        error = json.loads(refused.stderr)
        assert error["code"] == "INPUT_INVALID_ARGUMENT"
        assert str(tmp_path) not in error["message"]  # the file's name, never a local path
        assert error["audit_event_id"]
    tail = json.loads(runner.invoke(app, ["audit", "tail", "--json"]).stdout)["events"]
    assert [(row["event"]["tool_name"], row["event"]["error_code"]) for row in tail] == [
        ("ibkr_audit_checkpoint", "INPUT_INVALID_ARGUMENT"),
        ("ibkr_audit_checkpoint", "INPUT_INVALID_ARGUMENT"),
    ]
