"""Run the surface fuzzers under the long profile: 10,000 cases per fuzz test, with figures.

    nice -n 19 uv run python scripts/fuzz_surfaces.py            # every surface: MCP stdio, MCP HTTP, CLI
    nice -n 19 uv run python scripts/fuzz_surfaces.py stdio cli  # some of them

Each fuzz test draws its cases from the live tool list or command tree (see the test modules) and
checks: every call answered within a bound, errors with a stable code, no traceback, exactly one
audit event per call, and the audit chain verifies afterwards. The normal test run uses the same
tests with small case counts; this script sets `IBKR_FUZZ_PROFILE=long`. It prints each surface's
case counts and each test's time; the full output of a surface goes to a log file. Cases are built
from consecutive seeds from `IBKR_FUZZ_SEED` (default 0): set it to run other cases.
Run it under `nice`: it keeps one core busy for the better part of an hour.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = {
    "stdio": "packages/ibkr-gateway-mcp/tests/test_fuzz_stdio.py",
    "http": "packages/ibkr-gateway-mcp/tests/test_fuzz_http.py",
    "cli": "packages/ibkr-gateway-cli/tests/test_fuzz_cli.py",
}


def main(argv: list[str]) -> int:
    chosen = argv or list(SUITES)
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        print(f"unknown suite(s): {', '.join(unknown)}; choose from {', '.join(SUITES)}", file=sys.stderr)
        return 2
    env = {**os.environ, "IBKR_FUZZ_PROFILE": "long"}
    failed = 0
    for name in chosen:
        started = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-s",
                "-p",
                "no:cacheprovider",
                "--durations=0",
                SUITES[name],
            ],
            cwd=ROOT,
            env=env,
            check=False,
            capture_output=True,
            encoding="utf-8",
        )
        elapsed = time.monotonic() - started
        log = Path(tempfile.gettempdir()) / f"fuzz-surfaces-{name}.log"
        log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
        keep = ("fuzz:", " passed", "failed", " call ", "case seed")
        figures = [line for line in proc.stdout.splitlines() if any(word in line for word in keep)]
        status = "ok" if proc.returncode == 0 else "FINDINGS"
        print(f"{name}: {status} in {elapsed:.0f} s (full output: {log})")
        for line in figures:
            print(f"  {line.strip()}")
        if proc.returncode != 0:
            failed += 1
            print(proc.stdout[-6000:])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
