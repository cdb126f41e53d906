"""Fuzzing every `ibkr-agent` command's arguments through typer's CliRunner, in process.

The commands and their options come from the live click tree (never a list written here); the three
that start servers (`mcp serve`, `simulator serve`, `desk serve`) are left out. Each invocation must end with a
documented exit status, show a stable `[CODE]` (or the JSON error shape) when it fails, never a
traceback, and add exactly one audit event (none only when the config itself cannot be read, as
`runner` documents). The audit chain verifies at the end. `IBKR_FUZZ_PROFILE=long` runs 10,000.
"""

import json
import os
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import typer.main
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ibkr_gateway_cli.app import app
from ibkr_gateway_cli.fast import main
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.audit_keys import load_audit_key
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import EXIT_CODES, ErrorCode

LONG = os.environ.get("IBKR_FUZZ_PROFILE", "") == "long"
SERVERS = {("mcp", "serve"), ("simulator", "serve"), ("desk", "serve")}
KNOWN_CODES = frozenset(code.value for code in ErrorCode)
CODE_LINE = re.compile(r"([A-Z][A-Z0-9_]+): ")
"""A failed command's first stderr line: `CODE: message`."""


def leaf_commands() -> dict[tuple[str, ...], click.Command]:
    """Every runnable command of the live CLI, by path (groups walked, hidden ones skipped)."""
    root = typer.main.get_command(app)
    found: dict[tuple[str, ...], click.Command] = {}

    def walk(command: click.Command, ctx: click.Context, path: tuple[str, ...]) -> None:
        list_commands = getattr(command, "list_commands", None)
        if list_commands is None:
            found[path] = command
            return
        for name in list_commands(ctx):
            sub = command.get_command(ctx, name)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
            if sub is not None and not sub.hidden:  # pyright: ignore[reportUnknownMemberType]
                walk(sub, typer.Context(sub, info_name=name, parent=ctx), (*path, name))  # pyright: ignore[reportUnknownArgumentType]

    walk(root, typer.Context(root, info_name="ibkr-agent"), ())
    return {path: command for path, command in found.items() if path not in SERVERS}


COMMANDS = leaf_commands()

VALUES = st.one_of(
    st.sampled_from(
        [
            "DU1234567",
            "DU0000000",
            "265598",
            "AAPL",
            "BUY",
            "SELL",
            "LMT",
            "MKT",
            "1",
            "0",
            "-1",
            "10",
            "1.5",
            "1_000",
            "1e999",
            "NaN",
            "Infinity",
            "-0",
            "9" * 5000,
            "1" + "0" * 70,
            "",
            " ",
            "--",
            "paper",
            "live",
            "1 D",
            "5 mins",
            "x" * 5000,
            "naïve ☃",
            "\u202e",
            "../../etc/passwd",
            "Bearer abc.def.ghi",
            "$(id)",
            "'; DROP TABLE audit_events; --",
        ]
    ),
    st.text(max_size=30).filter(lambda text: "\x00" not in text),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)


@st.composite
def invocations(draw: st.DrawFn) -> list[str]:
    path = draw(st.sampled_from(sorted(COMMANDS)))
    command = COMMANDS[path]
    argv = list(path)
    for param in command.params:
        if isinstance(param, click.Argument):
            if draw(st.integers(0, 9)) > 0:
                argv.append(draw(VALUES))
            continue
        if not isinstance(param, click.Option) or param.name in ("config", "output", "checkpoint"):
            continue
        if not draw(st.booleans()):
            continue
        flag = param.opts[0]
        if param.is_flag:
            argv.append(flag)
        else:
            argv += [flag, draw(VALUES)]
    if draw(st.integers(0, 9)) == 0:
        argv.append(draw(st.sampled_from(["--no-such-option", "extra", "--json", "-x"])))
    return argv


class AuditCount:
    def __init__(self, state: Path) -> None:
        self.config = GatewayConfig.fake_local(state_dir=state)

    def __call__(self) -> int:
        path = self.config.audit_path()
        if not path.exists():
            return 0
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM audit_events").fetchone()[0])

    def verify(self) -> None:
        log = AuditLog.open(self.config.audit_path(), load_audit_key(self.config))
        try:
            log.verify_sync().raise_if_invalid()
        finally:
            log.close()


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("fuzz-cli") / "state"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IBKR_AGENT_STATE_DIR", str(root))
        patch.setenv("TERMINAL_WIDTH", "120")
        count = AuditCount(root)
        yield count
        count.verify()


@pytest.mark.slow
@settings(
    max_examples=10_000 if LONG else 100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(argv=invocations())
def test_every_command_answers_with_a_code_and_one_audit_event(state: AuditCount, argv: list[str]) -> None:
    before = state()
    exit_code, stdout, stderr = run_main(argv)
    output = stdout + stderr
    assert "Traceback" not in output, (argv, output[-2000:])
    assert exit_code in {0, *EXIT_CODES.values()}, (argv, exit_code, output[-1000:])
    if exit_code != 0:
        text = stderr.strip()
        if text.startswith("{"):
            code = json.loads(text)["code"]
        else:
            found = CODE_LINE.match(text)
            assert found is not None, (argv, text[-1000:])
            code = found.group(1)
        assert code in KNOWN_CODES, (argv, text[-1000:])
    added = state() - before
    assert added == 1, (argv, added, exit_code, output[-1000:])


class _ConsoleScript(click.Command):
    """`CliRunner` runs `cli.main(args)`: this one runs the console-script entry point with those args."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # pyright: ignore[reportIncompatibleMethodOverride]
        saved = sys.argv
        sys.argv = ["ibkr-agent", *(args or [])]
        try:
            main()
        finally:
            sys.argv = saved


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """Run the console script (fast path, else the typer app, which codes usage errors too): status, stdout, stderr."""
    result = CliRunner().invoke(_ConsoleScript("ibkr-agent"), argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError((argv, repr(result.exception)))
    return result.exit_code, result.stdout, result.stderr
