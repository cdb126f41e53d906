"""The fast path (`fast.py`) reads a command line exactly as the typer app does, or leaves it to the typer app.

Three levels: the values each path hands the command (in process, for every command of the table and
for generated command lines), the bytes each path prints and its exit status (every command with only
its required options, human and `--json`, each path on its own copy of one state directory), and the
console script as a process.
"""

import gc
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ibkr_gateway_cli import fast
from ibkr_gateway_cli._command_table import COMMANDS
from ibkr_gateway_cli.app import app
from ibkr_gateway_cli.app import main as typer_main
from ibkr_gateway_cli.runner import CliOptions
from ibkr_gateway_cli.table import CommandSpec, Param

ACCOUNT = "DU1234567"
SAMPLES = {
    "account_id": ACCOUNT,
    "query": "AAPL",
    "contract_id": "265598",
    "side": "buy",
    "quantity": "1",
    "limit_price": "100",
    "take_profit_price": "110",
    "stop_loss_price": "90",
    "symbol": "AAPL",
    "month": "JAN27",
    "scan_code": "TOP_PERC_GAIN",
    "base": "EUR",
    "quote": "USD",
    "expiry": "20270115",
    "to": "no-such-folder/backup.sqlite3",  # refused alike on both paths; never a file in the working folder
}


def required_args(spec: CommandSpec) -> list[str]:
    """The command's words and its required options, with sample values."""
    args = [*spec.words]
    for param in spec.params:
        if param.required:
            value = SAMPLES.get(param.name, "1")
            args += [value] if param.flag is None else [param.flag, value]
    return args


Call = tuple[str, CliOptions, dict[str, Any]]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[str]], Call | None]]:
    """What the typer app hands `run_command` for a command line (None when it refuses the line)."""
    import ibkr_gateway_cli.invoke as invoke

    calls: list[Call] = []

    def record(spec: CommandSpec, options: CliOptions, values: dict[str, Any]) -> None:
        calls.append((spec.operation, options, dict(values)))

    monkeypatch.setattr(invoke, "run_command", record)
    monkeypatch.setattr(fast, "_completion_requested", _no_completion)

    def typer_call(argv: list[str]) -> Call | None:
        calls.clear()
        try:
            app(argv, standalone_mode=False)
        except SystemExit:
            return None  # a usage error (audited and printed by the typer app)
        return calls[0] if calls else None

    yield typer_call


def _no_completion(environ: object) -> bool:
    return False


def fast_call(argv: list[str]) -> Call | None:
    parsed = fast.parse(argv, environ={})
    return None if parsed is None else (parsed.spec.operation, parsed.options, parsed.values)


# ----------------------------------------------------------------------------- the values handed to the command


def lines_for(spec: CommandSpec) -> list[list[str]]:
    """Command lines of one command that the fast path must accept: forms of options, globals, flags."""
    base = required_args(spec)
    lines = [base, [*base, "--json"], ["--json", *base], ["--config=c.yaml", "--request-id", "r-1", *base]]
    with_values: list[str] = [*spec.words]
    for param in spec.params:
        if param.flag is None:
            with_values.append(SAMPLES.get(param.name, "AAPL"))
        elif param.kind == "bool":
            with_values.append(param.flag)
        elif param.kind == "int":
            with_values.append(f"{param.flag}=7")
        elif param.kind == "path":
            with_values += [param.flag, "./dir/../file.json"]
        else:
            with_values += [param.flag, SAMPLES.get(param.name, "text with spaces")]
    lines += [with_values, [*with_values, "--request-id=r-2", "--json"]]
    return lines


@pytest.mark.parametrize("spec", COMMANDS, ids=[" ".join(spec.words) for spec in COMMANDS])
def test_every_command_gets_the_same_values_on_both_paths(
    spec: CommandSpec, captured: Callable[[list[str]], Call | None], state_env: dict[str, str]
) -> None:
    for argv in lines_for(spec):
        expected = captured(argv)
        assert expected is not None, argv
        assert fast_call(argv) == expected, argv


MALFORMED = [
    ["health", "--bogus"],  # unknown option
    ["accounts", "list", "--json", "true"],  # a flag given a value
    ["accounts", "list", "--json=true"],
    ["health", "--json", "--json"],  # repeated
    ["--json", "health", "--json"],  # before and after the words
    ["account", "summary", "--account", "A", "--account", "B"],
    ["audit", "tail", "--limit", "ten"],  # bad int
    ["audit", "tail", "--limit", "+7"],  # an int typer reads leniently
    ["audit", "tail", "--limit", "7_0"],
    ["audit", "tail", "--limit", "-3"],
    ["audit", "tail", "--limit"],  # no value
    ["audit", "tail", "--limit="],
    ["account", "summary", "--account", "-x"],  # a value that looks like an option
    ["contracts", "search", "--", "-AAPL"],  # `--`
    ["contracts", "search", "AAPL", "MSFT"],  # one positional too many
    ["health", "extra"],
    ["account", "list"],  # no such command
    ["accounts"],  # a group without a command
    [],
    ["--help"],
    ["health", "--help"],
    ["-h"],
    ["--version"],
    ["simulator", "serve"],  # the servers are the typer app's
    ["mcp", "serve", "--describe"],
    ["accounts", "--json", "list"],  # an option between the words
]


@pytest.mark.parametrize("argv", MALFORMED, ids=[" ".join(argv) or "(nothing)" for argv in MALFORMED])
def test_what_the_fast_path_is_not_sure_of_goes_to_the_typer_app(argv: list[str]) -> None:
    assert fast.parse(argv, environ={}) is None


def test_what_the_parser_does_not_check_reaches_the_gateway_alike(
    captured: Callable[[list[str]], Call | None], state_env: dict[str, str]
) -> None:
    """A missing required option or a bad decimal is the Gateway's to refuse: both paths hand it on unchanged."""
    for argv in (
        ["positions", "list"],
        ["orders", "preview", "--account", ACCOUNT, "--symbol", "AAPL", "--side", "buy", "--quantity", "1e999x"],
        ["orders", "preview", "--quantity=abc", "--limit-price", "NaN"],
    ):
        expected = captured(argv)
        assert expected is not None
        assert fast_call(argv) == expected


def test_shell_completion_goes_to_the_typer_app() -> None:
    assert fast.parse(["health"], environ={"_IBKR_AGENT_COMPLETE": "bash_complete"}) is None
    assert fast.parse(["health"], environ={"_IBKR_AGENT_COMPLETE": ""}) is not None


def _option_tokens(param: Param) -> st.SearchStrategy[list[str]]:
    assert param.flag is not None
    flag = param.flag
    if param.kind == "bool":
        return st.sampled_from([[flag], [f"{flag}=1"], [flag, "true"]])
    texts = st.one_of(
        st.sampled_from(["7", "007", "0", "-1", "+3", " 4", "1_0", "", "x", "1.5", "9" * 25, "--json", "-", "é"]),
        st.text(min_size=0, max_size=8),
    )
    return st.one_of(
        texts.map(lambda text: [flag, text]),
        texts.map(lambda text: [f"{flag}={text}"]),
        st.just([flag]),
    )


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    spec = draw(st.sampled_from(COMMANDS))
    options = [p for p in spec.params if p.flag is not None]
    chosen = draw(st.lists(st.sampled_from(options), max_size=4)) if options else []
    parts = [draw(_option_tokens(param)) for param in chosen]
    globals_ = draw(st.lists(st.sampled_from(["--json", "--request-id", "--config", "--"]), max_size=2))
    parts += [
        [flag] if flag in ("--json", "--") else [flag, draw(st.sampled_from(["r", "c.yaml", ""]))] for flag in globals_
    ]
    positional = draw(st.lists(st.sampled_from(["AAPL", "-x", "", "extra"]), max_size=2))
    parts += [[token] for token in positional]
    order = draw(st.permutations(range(len(parts))))
    prefix = draw(st.sampled_from([[], ["--json"], ["--request-id", "r0"]]))
    return [*prefix, *spec.words, *(token for index in order for token in parts[index])]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=command_lines())
def test_generated_command_lines_are_read_alike_or_left_to_the_typer_app(
    argv: list[str], captured: Callable[[list[str]], Call | None], state_env: dict[str, str]
) -> None:
    got = fast_call(argv)
    if got is not None:
        assert got == captured(argv), argv


# ----------------------------------------------------------------------------- the bytes printed


_VOLATILE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),
    (re.compile(r"\b[0-9a-f]{16}\b"), "<key id>"),  # a checkpoint signing key made on first use
    (re.compile(r'"signature": "[A-Za-z0-9+/=]+"'), '"signature": <signature>'),
    (re.compile(r'("?(?:duration_ms|staleness_seconds)"?: )[0-9.e-]+'), r"\1<elapsed>"),
]
"""What differs between two runs of one command on two copies of one state: event ids, clocks, new keys, hashes."""


def normalised(text: str) -> str:
    for pattern, placeholder in _VOLATILE:
        text = pattern.sub(placeholder, text)
    return text


def _run_entry(
    entry: Callable[[], None], argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ibkr-agent", *argv])
    try:
        entry()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def seeded_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory past its first command (audit key and database exist), copied for each run."""
    state = tmp_path_factory.mktemp("seed") / "state"
    env = {**os.environ, "IBKR_AGENT_STATE_DIR": str(state)}
    subprocess.run(
        [sys.executable, "-m", "ibkr_gateway_cli", "health"], env=env, check=True, capture_output=True, timeout=120
    )
    return state


def both_paths(
    argv: list[str],
    seeded: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """(fast path, typer path) outputs, each run on its own copy of the seeded state."""
    results: list[tuple[int, str, str]] = []
    for name, entry in (("fast", fast.main), ("typer", typer_main)):
        state = tmp_path / name
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(seeded, state)
        monkeypatch.setenv("IBKR_AGENT_STATE_DIR", str(state))
        results.append(_run_entry(entry, argv, capsys, monkeypatch))
    return results[0], results[1]


@pytest.mark.parametrize("spec", COMMANDS, ids=[" ".join(spec.words) for spec in COMMANDS])
def test_every_command_prints_the_same_on_both_paths(
    spec: CommandSpec,
    seeded_state: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERMINAL_WIDTH", "120")
    monkeypatch.setattr(fast, "_completion_requested", _no_completion)
    for argv in (required_args(spec), [*required_args(spec), "--json"]):
        assert fast.parse(argv, environ={}) is not None, "the fast path must take this line itself"
        (fast_code, fast_out, fast_err), (typer_code, typer_out, typer_err) = both_paths(
            argv, seeded_state, tmp_path, capsys, monkeypatch
        )
        assert (fast_code, normalised(fast_out), normalised(fast_err)) == (
            typer_code,
            normalised(typer_out),
            normalised(typer_err),
        ), argv


@pytest.mark.parametrize("argv", MALFORMED[:14], ids=[" ".join(argv) for argv in MALFORMED[:14]])
def test_a_malformed_command_line_prints_what_the_typer_app_prints(
    argv: list[str],
    seeded_state: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fast, "_completion_requested", _no_completion)
    for line in (argv, [*argv, "--json"]):
        (fast_code, fast_out, fast_err), (typer_code, typer_out, typer_err) = both_paths(
            line, seeded_state, tmp_path, capsys, monkeypatch
        )
        assert (fast_code, normalised(fast_out), normalised(fast_err)) == (
            typer_code,
            normalised(typer_out),
            normalised(typer_err),
        ), line


# ----------------------------------------------------------------------------- the console script


def test_the_console_script_runs_a_plain_command_without_typer(state_env: dict[str, str]) -> None:
    probe = (
        "import sys\nsys.argv = ['ibkr-agent', 'health', '--json']\nfrom ibkr_gateway_cli.fast import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "sys.stderr.write(' '.join(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, encoding="utf-8", timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    modules = set(proc.stderr.split())
    assert '"gateway": "ok"' in proc.stdout
    assert not {m.split(".")[0] for m in modules} & {"typer", "click", "rich"}


def test_the_console_script_hands_help_and_usage_errors_to_typer(state_env: dict[str, str]) -> None:
    script = shutil.which("ibkr-agent", path=str(Path(sys.executable).parent))
    assert script is not None
    proc = subprocess.run(
        [script, "audit", "tail", "--limit", "ten", "--json"],
        capture_output=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and '"code": "INPUT_INVALID_ARGUMENT"' in proc.stderr and proc.stdout == ""
    proc = subprocess.run([script, "--help"], capture_output=True, encoding="utf-8", timeout=120, check=False)
    assert proc.returncode == 0 and "accounts" in proc.stdout
    proc = subprocess.run([script, "health"], capture_output=True, encoding="utf-8", timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("gateway: ok") and proc.stderr == ""


# ----------------------------------------------------------------------------- collections


def test_a_table_command_runs_without_collections_and_gives_the_thresholds_back(
    state_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Start-up allocates what lives until exit: no collection runs during a command, Python's thresholds are
    back after it, and what it made does not wait for the next allocation to be collected all at once (ours)."""
    monkeypatch.setattr(fast, "_completion_requested", _no_completion)
    monkeypatch.setattr(sys, "argv", ["ibkr-agent", "health", "--json"])
    thresholds = gc.get_threshold()
    collected: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collected.append(info["generation"])

    gc.callbacks.append(record)
    try:
        with pytest.raises(SystemExit) as exited:
            fast.main()
        count = gc.get_count()[0]
    finally:
        gc.callbacks.remove(record)
    assert exited.value.code == 0
    assert '"gateway": "ok"' in capsys.readouterr().out
    assert collected == []
    assert gc.get_threshold() == thresholds
    assert count < thresholds[0]


def test_the_console_script_leaves_its_objects_out_of_the_exit_collections(state_env: dict[str, str]) -> None:
    """The interpreter's collections at exit would scan every object of the process only to free memory the
    OS takes back: by the time they run, the objects are frozen (ours; `gc.freeze`)."""
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: sys.stderr.write(f'frozen {gc.get_freeze_count()}'))\n"  # runs after the CLI's
        "sys.argv = ['ibkr-agent', 'health', '--json']\nfrom ibkr_gateway_cli.fast import main\nmain()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, encoding="utf-8", timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert '"gateway": "ok"' in proc.stdout
    frozen = re.fullmatch(r"frozen (\d+)", proc.stderr)
    assert frozen is not None, proc.stderr
    assert int(frozen.group(1)) > 10_000
