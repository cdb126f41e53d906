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
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from random import Random
from typing import Any, Final

import click
import pytest
import typer.main
from click.testing import CliRunner
from ibkr_gateway_cli.app import app
from ibkr_gateway_cli.fast import main
from ibkr_gateway_core.audit import AuditLog, load_audit_key
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

VALUES: Final = (
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
)
ODD_CHARACTERS: Final = "\t\r\x7f\u00a0\u00e9\u202e\u200b\u2028\ufeff\u2603\U0001f600"


def value(rng: Random) -> str:
    """One option or argument value: a known word, random text, or a number of up to 31 digits."""
    pick = rng.randrange(3)
    if pick == 0:
        return rng.choice(VALUES)
    if pick == 1:
        size = rng.randint(0, 30)
        if rng.random() < 0.5:
            return "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(size))
        return "".join(rng.choice(ODD_CHARACTERS + "abc-1 ") for _ in range(size))
    return str(rng.randint(-(10**30), 10**30))


def invocation(seed: int, commands: dict[tuple[str, ...], click.Command] = COMMANDS) -> list[str]:
    """The argv of one command of the live tree, built from `seed`: some options, hostile values."""
    rng = Random(seed)
    path = rng.choice(sorted(commands))
    command = commands[path]
    argv = list(path)
    for param in command.params:
        if isinstance(param, click.Argument):
            if rng.randrange(10) > 0:
                argv.append(value(rng))
            continue
        if not isinstance(param, click.Option) or param.name in ("config", "output", "checkpoint", "to"):
            continue
        if rng.random() < 0.5:
            continue
        flag = param.opts[0]
        if param.is_flag:
            argv.append(flag)
        else:
            argv += [flag, value(rng)]
    if rng.randrange(10) == 0:
        argv.append(rng.choice(["--no-such-option", "extra", "--json", "-x"]))
    return argv


SEED_BASE: Final = int(os.environ.get("IBKR_FUZZ_SEED", "0"))
"""The first case's seed (`IBKR_FUZZ_SEED`); the normal run starts at 0, so CI runs the same cases each time."""


def run_cases(normal: int, long: int, case: Callable[[int], None]) -> int:
    """Run `case(seed)` for this profile's count of consecutive seeds; the number run.

    A plain loop over seeds, as the MCP fuzzers do (their `fuzz_cases.run_cases` says why not hypothesis).
    """
    count = long if LONG else normal
    for seed in range(SEED_BASE, SEED_BASE + count):
        try:
            case(seed)
        except AssertionError as exc:
            raise AssertionError(f"case seed {seed} (rerun it first with IBKR_FUZZ_SEED={seed}): {exc}") from exc
    return count


class AuditCount:
    def __init__(self, state: Path) -> None:
        self.root = state
        self.config = GatewayConfig.fake_local(state_dir=state)
        self.cases = 0
        self.processes = 0
        self.codes: dict[str, int] = {}

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
        codes = sorted(count.codes.items())
        print(f"cli fuzz: {count.cases} cases in process, {count.processes} as processes, codes {codes}")


def check_outcome(argv: list[str], exit_code: int, stdout: str, stderr: str, added: int) -> str:
    """Assert one invocation ended as documented; its error code ("" on success)."""
    output = stdout + stderr
    assert "Traceback" not in output, (argv, output[-2000:])
    assert exit_code in {0, *EXIT_CODES.values()}, (argv, exit_code, output[-1000:])
    code = ""
    if exit_code != 0:
        text = stderr.strip()
        if text.startswith("{"):
            code = json.loads(text)["code"]
        else:
            found = CODE_LINE.match(text)
            assert found is not None, (argv, text[-1000:])
            code = found.group(1)
        assert code in KNOWN_CODES, (argv, text[-1000:])
    assert added == 1, (argv, added, exit_code, output[-1000:])
    return code


@pytest.mark.slow
def test_every_command_answers_with_a_code_and_one_audit_event(state: AuditCount) -> None:
    """In process, through the console-script entry point: the bulk of the cases."""

    def case(seed: int) -> None:
        argv = invocation(seed)
        before = state()
        exit_code, stdout, stderr = run_main(argv)
        code = check_outcome(argv, exit_code, stdout, stderr, state() - before)
        state.codes[code or "OK"] = state.codes.get(code or "OK", 0) + 1

    state.cases = run_cases(100, 10_000, case)


@pytest.mark.slow
def test_a_sample_of_commands_run_as_real_processes_answers_the_same_way(state: AuditCount) -> None:
    """The installed `ibkr-agent` in its own process (real argv, real exit status, real streams)."""
    env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    env |= {"IBKR_AGENT_STATE_DIR": str(state.root), "TERMINAL_WIDTH": "120", "PYTHONWARNDEFAULTENCODING": "1"}
    script = Path(sys.executable).with_name("ibkr-agent")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ibkr_gateway_cli"]

    def case(seed: int) -> None:
        argv = invocation(seed + 1_000_000_000)  # other cases than the in-process run's
        before = state()
        proc = subprocess.run(
            [*command, *argv],
            env=env,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=120,
            check=False,
        )
        check_outcome(argv, proc.returncode, proc.stdout, proc.stderr, state() - before)

    state.processes = run_cases(4, 200, case)


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
