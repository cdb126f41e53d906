"""Audit log benchmarks: durable appends, verify throughput, tail latency, and a SIGKILL crash loop.

Run: `uv run python benchmarks/audit.py [--events 1000000] [--appends 3000] [--kills 200]`.
Exits 1 when a target is missed. Targets (issue 3, test plan R30 and R34): >= 2,000 durable
appends/s with one writer, >= 200,000 verified events/s over 1,000,000 events, `tail --limit 100`
under 20 ms at that size, verify under 256 MB RSS, and no acknowledged event lost across the kills.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
from ibkr_gateway_core.audit.log import AuditEvent, AuditLog, new_event_id
from ibkr_gateway_core.state import open_database

KEY_ENV = "AUDIT_BENCH_KEY_HEX"


@dataclass
class Row:
    metric: str
    value: str
    target: str
    passed: bool


def template_event(number: int = 0) -> AuditEvent:
    """A realistic completed read call: principal, scopes, hashes, small metadata."""
    return AuditEvent(
        event_type="tool_completed",
        timestamp=datetime(2026, 11, 25, tzinfo=UTC) + timedelta(milliseconds=number),
        principal_kind="local_agent",
        principal_subject="claude-desktop",
        scopes=["ibkr:accounts:read", "ibkr:portfolio:read", "ibkr:positions:read"],
        operation="list_positions",
        tool_name="ibkr_positions_list",
        decision="allow",
        result_status="completed",
        account_id_hash="a" * 64,
        request_id="req-0001",
        session_id="0190f3c4-0000-7000-8000-000000000001",
        input_hash="b" * 64,
        output_hash="c" * 64,
        duration_ms=3.25,
        metadata={"arguments": {"page": 0}, "n": number},
    )


def bench_appends(directory: Path, key: bytes, count: int) -> float:
    log = AuditLog.open(directory / "appends.sqlite3", key)
    try:
        events = [template_event(n).model_copy(update={"event_id": new_event_id()}) for n in range(count)]
        started = time.perf_counter()
        for event in events:
            log.append_sync(event)
        return count / (time.perf_counter() - started)
    finally:
        log.close()


def many_events(count: int) -> Iterator[AuditEvent]:
    base = template_event()
    for number in range(count):
        yield base.model_copy(update={"event_id": new_event_id(), "metadata": {"arguments": {"page": 0}, "n": number}})


def build_large_log(path: Path, key: bytes, count: int) -> float:
    """The real chain, written in one transaction (the per-event fsync would take minutes)."""
    log = AuditLog.open(path, key)
    try:
        started = time.perf_counter()
        log._append_batch_sync(many_events(count))  # pyright: ignore[reportPrivateUsage]
        return time.perf_counter() - started
    finally:
        log.close()


def verify_in_child(path: Path, key: bytes) -> dict[str, float]:
    """Verify in a fresh process so its peak RSS is verify's alone."""
    proc = subprocess.run(
        [sys.executable, __file__, "--verify-child", str(path)],
        env={**os.environ, KEY_ENV: key.hex()},
        capture_output=True,
        encoding="utf-8",
        check=True,
    )
    return json.loads(proc.stdout)


def verify_child(path: Path) -> None:
    log = AuditLog.open(path, bytes.fromhex(os.environ[KEY_ENV]))
    started = time.perf_counter()
    report = log.verify_sync()
    seconds = time.perf_counter() - started
    log.close()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"seconds": seconds, "events": report.events_scanned, "valid": report.chain_valid, "rss_mb": rss_kib / 1024}
        )
    )


def bench_tail(path: Path, key: bytes, runs: int = 21) -> float:
    async def measure() -> list[float]:
        log = AuditLog.open(path, key)
        timings: list[float] = []
        try:
            for _ in range(runs):
                started = time.perf_counter()
                records = await log.tail(100)
                timings.append((time.perf_counter() - started) * 1000)
                assert len(records) == 100
        finally:
            log.close()
        return timings

    return statistics.median(anyio.run(measure))


def writer_child(path: Path) -> None:
    """Append until killed, printing `ACK <seq>` after each commit."""
    log = AuditLog.open(path, bytes.fromhex(os.environ[KEY_ENV]))
    number = 0
    while True:
        record = log.append_sync(template_event(number).model_copy(update={"event_id": new_event_id()}))
        number += 1
        sys.stdout.write(f"ACK {record.sequence}\n")
        sys.stdout.flush()


def crash_loop(directory: Path, key: bytes, kills: int) -> tuple[int, int, int, float]:
    """SIGKILL a writer `kills` times at random moments; returns (lost acked, acked, failures, seconds)."""
    path = directory / "crash.sqlite3"
    rng = random.Random(30)
    acked: set[int] = set()
    lost = failures = 0
    started = time.perf_counter()
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, __file__, "--writer-child", str(path)],
            env={**os.environ, KEY_ENV: key.hex()},
            stdout=subprocess.PIPE,
            encoding="utf-8",
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        time.sleep(rng.uniform(0.005, 0.150))
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        acked.update(int(line.split()[1]) for line in (first + rest).splitlines() if line.startswith("ACK "))
        db = open_database(path)
        try:
            if db.execute("PRAGMA integrity_check").fetchall() != [("ok",)]:
                failures += 1
            stored = {row[0] for row in db.execute("SELECT sequence FROM audit_events")}
        finally:
            db.close()
        lost = len(acked - stored)
        log = AuditLog.open(path, key)
        try:
            if not log.verify_sync().chain_valid:
                failures += 1
        finally:
            log.close()
    return lost, len(acked), failures, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="size of the log for verify and tail")
    parser.add_argument("--appends", type=int, default=3_000, help="durable appends to time")
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs in the crash loop (0 skips it)")
    parser.add_argument("--verify-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--writer-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.verify_child:
        verify_child(args.verify_child)
        return 0
    if args.writer_child:
        writer_child(args.writer_child)
        return 0

    key = os.urandom(32)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        directory = Path(tmp)
        appends = bench_appends(directory, key, args.appends)
        rows.append(Row("durable appends/s (1 writer, FULL)", f"{appends:,.0f}", ">= 2,000", appends >= 2_000))

        large = directory / "large.sqlite3"
        print(f"building a {args.events:,}-event log ...", file=sys.stderr)
        build_seconds = build_large_log(large, key, args.events)
        print(f"  built in {build_seconds:.1f} s", file=sys.stderr)
        verified = verify_in_child(large, key)
        rate = verified["events"] / verified["seconds"]
        ok = bool(verified["valid"]) and verified["events"] == args.events
        rows.append(
            Row(f"verified events/s ({args.events:,} events)", f"{rate:,.0f}", ">= 200,000", ok and rate >= 200_000)
        )
        rows.append(Row("verify peak RSS", f"{verified['rss_mb']:.0f} MB", "< 256 MB", verified["rss_mb"] < 256))
        tail_ms = bench_tail(large, key)
        rows.append(Row(f"tail --limit 100 at {args.events:,} (median)", f"{tail_ms:.2f} ms", "< 20 ms", tail_ms < 20))

        if args.kills:
            lost, total, failures, seconds = crash_loop(directory, key, args.kills)
            rows.append(Row(f"lost ACKed events ({args.kills} kills, {total:,} ACKed)", str(lost), "0", lost == 0))
            rows.append(Row("integrity/verify failures after kills", str(failures), "0", failures == 0))
            rows.append(Row(f"crash loop time ({args.kills} kills)", f"{seconds:.1f} s", "<= 90 s", seconds <= 90))

    width = max(len(row.metric) for row in rows)
    print(f"{'metric':<{width}}  {'value':>14}  {'target':>10}  result")
    for row in rows:
        print(f"{row.metric:<{width}}  {row.value:>14}  {row.target:>10}  {'PASS' if row.passed else 'MISS'}")
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
