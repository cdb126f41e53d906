"""Mutation testing of the order path with mutmut: how many one-line changes to the code the tests notice.

mutmut expects its sources under `src/` of the directory it runs in, and imports them by module name, so
for each package this script builds a scratch project (in `.mutation/<package>/`, ignored by git) holding
a copy of the package's `src/`, the tests that exercise the order path, and the pytest and mutmut
settings; runs `mutmut run` there with the workspace's interpreter; and prints the kill rate per module
and in total. Survivors are listed with `--survivors`; each is either killed by a new test or explained in
docs/reliability.md ("Mutation testing").

    uv run python scripts/mutation.py                  # both packages, every order-path module
    uv run python scripts/mutation.py --package core --modules gates.py risk.py
    uv run python scripts/mutation.py --survivors      # also print each survivor's diff

The goal (≥ 90% killed over the order path) is printed with the result; the exit code is 0 when it is met.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.90


@dataclass(frozen=True)
class Target:
    """One package's order-path modules and the tests that should notice a change to them."""

    package: str
    import_name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]


SUPPORT = (
    "tests-integration/reliability_harness.py",
    "tests-integration/cli_harness.py",
)
"""Helpers the selected integration tests import."""

TARGETS = {
    "core": Target(
        "ibkr-gateway-core",
        "ibkr_gateway_core",
        modules=(
            "gates.py",
            "risk.py",
            "approvals.py",
            "previews.py",
            "keyed_writes.py",
            "live_desk.py",
            "paper_desk.py",
            "kill_switch.py",
            "order_store.py",
        ),
        tests=(
            "packages/ibkr-gateway-core/tests/test_gates.py",
            "tests-integration/test_reliability_gates.py",
            "tests-integration/test_attack_approvals.py",
            "tests-integration/test_order_state_machine.py",
            "tests-integration/test_reliability_broker.py",
        ),
    ),
    "cpapi": Target(
        "ibkr-gateway-cpapi",
        "ibkr_gateway_cpapi",
        modules=("writer.py", "_order_body.py", "_order_mapping.py", "client.py"),
        tests=(
            "packages/ibkr-gateway-cpapi/tests/test_writer.py",
            "packages/ibkr-gateway-cpapi/tests/test_client.py",
            "tests-integration/test_reliability_broker.py",
        ),
    ),
}

PYTEST_INI = """\
[pytest]
addopts = -p anyio -x -q -p no:cacheprovider
pythonpath = tests
filterwarnings =
    error
    default::mcp.MCPDeprecationWarning
markers =
    slow: takes more than a few seconds
"""


def _setup_cfg(target: Target, modules: tuple[str, ...]) -> str:
    only = "\n    ".join(f"src/{target.import_name}/{module}" for module in modules)
    return f"""\
[mutmut]
source_paths = src
only_mutate =
    {only}
pytest_add_cli_args_test_selection = tests
"""


def build_scratch(target: Target, modules: tuple[str, ...], scratch: Path) -> None:
    """A fresh scratch project: src/, tests/, pytest.ini, setup.cfg and the shared conftest."""
    if scratch.exists():
        shutil.rmtree(scratch)
    (scratch / "tests").mkdir(parents=True)
    shutil.copytree(ROOT / "packages" / target.package / "src", scratch / "src")
    for test in (*target.tests, *SUPPORT):
        shutil.copy2(ROOT / test, scratch / "tests" / Path(test).name)
    integration_conftest = (ROOT / "tests-integration" / "conftest.py").read_text(encoding="utf-8")
    root_conftest = (ROOT / "conftest.py").read_text(encoding="utf-8")
    (scratch / "tests" / "conftest.py").write_text(integration_conftest, encoding="utf-8")
    (scratch / "conftest.py").write_text(root_conftest, encoding="utf-8")
    (scratch / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    (scratch / "setup.cfg").write_text(_setup_cfg(target, modules), encoding="utf-8")


def run_mutmut(scratch: Path, max_children: int) -> None:
    """`mutmut run` in the scratch project, with this interpreter (the workspace venv)."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONWARNDEFAULTENCODING"}
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    subprocess.run(command, cwd=scratch, env=env, check=False)


def results(scratch: Path) -> dict[str, dict[str, int]]:
    """Outcome counts per module, read from mutmut's meta files."""
    counts: dict[str, dict[str, int]] = {}
    for meta in sorted((scratch / "mutants").rglob("*.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        module = meta.name.removesuffix(".meta")
        per = counts.setdefault(module, {"killed": 0, "survived": 0, "timeout": 0, "other": 0})
        for exit_code in data.get("exit_code_by_key", {}).values():
            if exit_code is None:
                per["other"] += 1
            elif exit_code == 0:
                per["survived"] += 1
            elif exit_code in (1, 3, -24):
                per["killed"] += 1
            elif exit_code == 36 or exit_code == -9:
                per["timeout"] += 1
            else:
                per["other"] += 1
    return counts


def survivors(scratch: Path) -> str:
    """Each surviving mutant's diff, as mutmut shows it."""
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results"], cwd=scratch, capture_output=True, encoding="utf-8", check=False
    ).stdout
    names = [line.split(":")[0].strip() for line in listing.splitlines() if line.strip().endswith("survived")]
    diffs = []
    for name in names:
        shown = subprocess.run(
            [sys.executable, "-m", "mutmut", "show", name],
            cwd=scratch,
            capture_output=True,
            encoding="utf-8",
            check=False,
        )
        diffs.append(f"## {name}\n{shown.stdout}")
    return "\n".join(diffs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", choices=sorted(TARGETS), action="append", help="default: every package")
    parser.add_argument("--modules", nargs="+", help="only these modules of the package (file names)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--survivors", action="store_true", help="print the diff of every surviving mutant")
    parser.add_argument("--report-only", action="store_true", help="read the last run's results, run nothing")
    args = parser.parse_args()

    total_killed = total = 0
    for name in args.package or sorted(TARGETS):
        target = TARGETS[name]
        modules = tuple(args.modules) if args.modules else target.modules
        scratch = ROOT / ".mutation" / name
        if not args.report_only:
            build_scratch(target, modules, scratch)
            run_mutmut(scratch, args.max_children)
        print(f"\n{target.package}: mutants killed per module")
        for module, per in results(scratch).items():
            counted = per["killed"] + per["survived"] + per["timeout"]
            killed = per["killed"] + per["timeout"]
            total_killed, total = total_killed + killed, total + counted
            rate = killed / counted if counted else 1.0
            print(f"  {module:<28} {killed:>4} / {counted:<4} {rate:6.1%}  (not run: {per['other']})")
        if args.survivors:
            print(survivors(scratch))
    rate = total_killed / total if total else 0.0
    print(f"\norder path: {total_killed} of {total} mutants killed = {rate:.1%} (goal {GOAL:.0%})")
    return 0 if rate >= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
