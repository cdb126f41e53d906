"""Start-up time of the `ibkr-agent` CLI, whole process, against the floor of its own imports.

    uv run python benchmarks/cli_startup.py                 # median of 10 runs each
    uv run python benchmarks/cli_startup.py --runs 20
    uv run python benchmarks/cli_startup.py --instructions  # one run each under valgrind: instruction counts

Measures, in one run and interleaved so machine load hits all of them alike:

- the floor: `python -c "import typer, pydantic"` (the two libraries every command needs);
- the pydantic floor: the same plus defining and validating one `BaseModel` (what any command
  that builds a model pays once; `import pydantic` alone loads the model machinery lazily);
- `ibkr-agent health --json` (audited, no broker call);
- `ibkr-agent accounts list --json` on the embedded simulator (a real broker read through it);
- `health --json` through the typer app (`ibkr_gateway_cli.app:main`), which reads every command line
  the console script's fast path (`ibkr_gateway_cli.fast`) leaves to it: `--help`, usage errors, servers.

Prints each median and the ratios of the commands to the floor. Goals (issue "the first hour"):
`health --json` ≤ 1.5× the floor, `accounts list --json` ≤ 300 ms on the reference machine. Each
run uses one fresh state directory, warmed by one untimed run (the audit key and database exist,
as they do for anyone past their first command; the modules' compiled `.pyc` files exist, as an
installer writes them, even where `PYTHONDONTWRITEBYTECODE` is set: without them each start-up would
compile every module it imports again, and the figures would measure the compiler).

Wall-clock medians move with the load of a shared machine. `--instructions` counts the instructions
each case executes instead (`valgrind --tool=cachegrind --cache-sim=no`, one run each): the same
on a loaded machine as on a quiet one, about 0.2 ms per million on the reference machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = "import typer, pydantic"
TYPER_PATH = "from ibkr_gateway_cli.app import main; main()"
MODEL_FLOOR = FLOOR + "\nclass M(pydantic.BaseModel):\n    x: int\nM(x=1)"


def _cli() -> list[str]:
    found = shutil.which("ibkr-agent", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "ibkr_gateway_cli"]


def _time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[-3:])} failed ({proc.returncode}): {proc.stderr.decode()[:500]}")
    return elapsed


_IREFS = re.compile(r"I\s+refs:\s+([0-9,]+)")


def _instructions(argv: list[str], env: dict[str, str]) -> float:
    """Instructions one run of `argv` executes, counted by valgrind (deterministic, unlike wall time)."""
    tool = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    proc = subprocess.run([*tool, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    found = _IREFS.search(proc.stderr.decode())
    if proc.returncode != 0 or found is None:
        raise SystemExit(
            f"{' '.join(argv[-3:])} failed under valgrind ({proc.returncode}): {proc.stderr.decode()[-500:]}"
        )
    return float(found.group(1).replace(",", ""))


def _report_instructions(cases: dict[str, list[str]], env: dict[str, str]) -> None:
    counts = {name: _instructions(argv, env) for name, argv in cases.items()}
    floor = counts["floor: python -c 'import typer, pydantic'"]
    width = max(len(name) for name in counts)
    print(f"instructions of one whole-process run (valgrind), Python {sys.version.split()[0]}")
    for name, value in counts.items():
        print(f"{name:<{width}}  {value / 1e6:8.1f} M  {value / floor:4.2f}x floor")
    health = counts["ibkr-agent health --json"] / floor
    print(f"goal health --json <= 1.5x floor: {health:.2f}x ({'met' if health <= 1.5 else 'not met'})")
    print("goal accounts list --json <= 300 ms: a wall-clock goal, measured without --instructions on a quiet machine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="runs per command (median reported)")
    parser.add_argument("--instructions", action="store_true", help="count instructions (valgrind) instead of time")
    args = parser.parse_args()
    cli = _cli()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ibkr-agent-startup-") as state:
        env = {**os.environ, "IBKR_AGENT_STATE_DIR": state}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the warm-up run writes the .pyc files an installed tool has
        env.pop("IBKR_AGENT_CONFIG", None)
        cases = {
            "floor: python -c 'import typer, pydantic'": [sys.executable, "-c", FLOOR],
            "pydantic floor: + one BaseModel": [sys.executable, "-c", MODEL_FLOOR],
            "ibkr-agent health --json": [*cli, "health", "--json"],
            "ibkr-agent accounts list --json": [*cli, "accounts", "list", "--json"],
            "health --json through the typer app": [sys.executable, "-c", TYPER_PATH, "health", "--json"],
        }
        for argv in cases.values():
            _time(argv, env)  # warm: the state directory, the OS page cache
        if args.instructions:
            _report_instructions(cases, env)
            return
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                samples[name].append(_time(argv, env))
    load_after = os.getloadavg()[0]
    medians = {name: statistics.median(values) for name, values in samples.items()}
    floor = medians["floor: python -c 'import typer, pydantic'"]
    model_floor = medians["pydantic floor: + one BaseModel"]
    width = max(len(name) for name in medians)
    print(f"median of {args.runs} whole-process runs, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    quiet = "quiet" if max(load_before, load_after) < 1.5 else "loaded: compare the ratios, not the milliseconds"
    print(f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after ({quiet})")
    for name, value in medians.items():
        ratios = f"{value / floor:4.2f}x floor  {value / model_floor:4.2f}x pydantic floor"
        print(f"{name:<{width}}  {value * 1000:7.1f} ms  {ratios}")
    health = medians["ibkr-agent health --json"]
    accounts = medians["ibkr-agent accounts list --json"]
    print(f"goal health --json <= 1.5x floor: {health / floor:.2f}x ({'met' if health <= 1.5 * floor else 'not met'})")
    verdict = "met" if accounts <= 0.300 else "not met"
    print(f"goal accounts list --json <= 300 ms: {accounts * 1000:.0f} ms ({verdict})")


if __name__ == "__main__":
    main()
