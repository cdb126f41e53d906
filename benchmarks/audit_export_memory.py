"""Peak memory of `ibkr-agent audit export` over a large chain, as the real CLI process.

Run: `uv run python benchmarks/audit_export_memory.py [--events 50000]`.

Builds a chain of `--events` realistic events in a fresh state directory (the real chain, written in one
transaction), then runs `ibkr-agent audit export --limit N` (text, and with `--json`) with stdout to a
file and reports each child's peak RSS next to that of `ibkr-agent health` (start-up alone), the bytes
written and their SHA-256 (equal digests before and after a change mean byte-identical output).
Exits 1 when the export's peak RSS grows by more than 64 MB over start-up (the export streams: its
memory must not grow with the chain).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from ibkr_gateway_core.audit.keys import AUDIT_KEY_FILE
from ibkr_gateway_core.audit.log import AuditEvent, AuditLog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit import template_event

KEY = b"0123456789abcdef" * 4
"""A fixed chain key, so the same chain (and export) comes out of every run."""

GROWTH_LIMIT_MB = 64.0


def ibkr_agent() -> list[str]:
    script = Path(sys.executable).with_name("ibkr-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ibkr_gateway_cli"]


def fixed_events(count: int) -> Iterator[AuditEvent]:
    """`count` realistic events with fixed ids and times: the same bytes in every run."""
    base = template_event()
    for number in range(count):
        yield base.model_copy(
            update={"event_id": str(uuid.UUID(int=number + 1)), "metadata": {"arguments": {"page": 0}, "n": number}}
        )


def run_child(args: list[str], env: dict[str, str], out: Path) -> tuple[float, float, int]:
    """Run `ibkr-agent args` with stdout to `out`; (peak RSS in MB, seconds, exit code)."""
    started = time.perf_counter()
    with out.open("wb") as sink:
        proc = subprocess.Popen([*ibkr_agent(), *args], stdout=sink, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0 and proc.stderr is not None:
            sys.stderr.write(proc.stderr.read().decode("utf-8", "replace"))
        if proc.stderr is not None:
            proc.stderr.close()
    return usage.ru_maxrss / 1024, time.perf_counter() - started, proc.returncode


def build_child(directory: Path, count: int) -> None:
    log = AuditLog.open(directory / "state.sqlite3", KEY)
    try:
        log._append_batch_sync(fixed_events(count))  # pyright: ignore[reportPrivateUsage]
    finally:
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--build-child", nargs=2, metavar=("DIR", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_child:
        build_child(Path(args.build_child[0]), int(args.build_child[1]))
        return 0
    with tempfile.TemporaryDirectory(prefix="audit-export-bench-") as tmp:
        pristine = Path(tmp) / "pristine"
        pristine.mkdir(mode=0o700)
        key_file = pristine / AUDIT_KEY_FILE
        key_file.write_bytes(KEY)
        key_file.chmod(0o600)
        # In a child: a child's peak RSS counts the parent's at the fork, so the parent stays small.
        subprocess.run([sys.executable, __file__, "--build-child", str(pristine), str(args.events)], check=True)

        def env_on_copy(name: str) -> dict[str, str]:
            """Each run gets its own copy: a run appends its own event, which the next would export."""
            state = Path(tmp) / name
            shutil.copytree(pristine, state)
            return {
                "PATH": os.environ.get("PATH", ""),
                "HOME": tmp,
                "IBKR_AGENT_STATE_DIR": str(state),
                "PYTHONWARNDEFAULTENCODING": "1",
            }

        health_rss, _, code = run_child(["health"], env_on_copy("health"), Path(tmp) / "health.out")
        assert code == 0
        print(f"load: {os.getloadavg()[0]:.2f} (1-min average)")
        print(f"events: {args.events:,}; `ibkr-agent health` peak RSS: {health_rss:.1f} MB")
        failed = False
        for label, extra in (("text", []), ("--json", ["--json"])):
            out = Path(tmp) / f"export-{label.strip('-')}.out"
            env = env_on_copy(f"state-{label.strip('-')}")
            rss, seconds, code = run_child([*extra, "audit", "export", "--limit", str(args.events)], env, out)
            with out.open("rb") as written:
                digest = hashlib.file_digest(written, "sha256").hexdigest()
            size = out.stat().st_size
            out.unlink()
            growth = rss - health_rss
            failed |= code != 0 or growth > GROWTH_LIMIT_MB
            print(
                f"audit export ({label}): exit {code}, peak RSS {rss:.1f} MB (+{growth:.1f} MB over start-up), "
                f"{seconds:.2f} s, {size:,} bytes, sha256 {digest[:16]}"
            )
        return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
