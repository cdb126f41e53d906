"""`state backup` and `state import` as an operator runs them: time and peak memory of whole `ibkr-agent` processes.

    uv run python benchmarks/state_transfer.py                   # 10,000 and 100,000 events
    uv run python benchmarks/state_transfer.py --events 20000 200000

For each chain length it writes a single host's state file (the audit chain of `benchmarks/audit.py`), then
measures, in one run and against baselines of the same run:

- `audit verify` of that file (the baseline: reading and checking every row is the least an import does);
- `state backup --to FILE` of it, and `state import --from` that backup into a new SQLite file and into a new
  database of a throwaway PostgreSQL cluster (Debian's `postgresql`, fsync on);
- the peak resident memory of each process (its `wait4` resource usage), so a longer chain showing the same
  peak shows memory staying flat whatever the chain's length.

Prints seconds, events per second, the ratio to `audit verify` of the same chain, and the peak memory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests-integration"))
from audit import build_large_log
from postgres_server import running_postgres

KEY = "benchmark-state-transfer-key-0123456789abcdef"
AGENT = str(Path(sys.executable).with_name("ibkr-agent"))


def _config(folder: Path, name: str, *, postgres: bool) -> Path:
    path = folder / f"{name}.yaml"
    state = "  backend: postgres\n  postgres_dsn_env: BENCH_DSN\n" if postgres else ""
    path.write_text(
        f"audit:\n  hmac_secret_env: BENCH_KEY\nstate:\n  directory: {folder / name}\n{state}", encoding="utf-8"
    )
    return path


def _run(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Seconds and peak resident kilobytes of one `ibkr-agent` process (its own `wait4` usage); fails loudly."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        proc = subprocess.Popen([AGENT, *args], env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace")[-800:]
            raise SystemExit(f"ibkr-agent {' '.join(args[2:4])} failed ({proc.returncode}): {message}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    """Measure both commands at each chain length and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 100_000])
    options = parser.parse_args()
    print(f"load average (1 min) {os.getloadavg()[0]:.2f}; peak memory is the whole ibkr-agent process")
    print(f"{'events':>8}  {'step':34}{'seconds':>9}{'events/s':>11}{'x verify':>10}{'peak MB':>9}")
    with tempfile.TemporaryDirectory() as directory, running_postgres(durable=True) as server:
        root = Path(directory)
        for count in options.events:
            folder = root / str(count)
            folder.mkdir()
            old = _config(folder, "old", postgres=False)
            build_large_log(folder / "old" / "state.sqlite3", KEY.encode(), count)
            size_mb = (folder / "old" / "state.sqlite3").stat().st_size / 1e6
            print(f"{count:>8}  state file of {size_mb:.0f} MB")
            env = {**os.environ, "BENCH_KEY": KEY, "BENCH_DSN": server.new_database()}
            backup = folder / "backup.sqlite3"
            steps = {
                "audit verify (baseline)": ["--config", str(old), "audit", "verify"],
                "state backup": ["--config", str(old), "state", "backup", "--to", str(backup)],
                "state import into SQLite": [
                    "--config",
                    str(_config(folder, "new-sqlite", postgres=False)),
                    *("state", "import", "--from", str(backup)),
                ],
                "state import into PostgreSQL": [
                    "--config",
                    str(_config(folder, "new-postgres", postgres=True)),
                    *("state", "import", "--from", str(backup)),
                ],
            }
            baseline = 0.0
            for step, args in steps.items():
                seconds, peak_kb = _run(args, env)
                baseline = baseline or seconds
                print(
                    f"{count:>8}  {step:34}{seconds:9.2f}{count / seconds:11.0f}{seconds / baseline:10.2f}"
                    f"{peak_kb / 1024:9.1f}"
                )


if __name__ == "__main__":
    main()
