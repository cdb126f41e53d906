"""State backends side by side: SQLite (the embedded default) vs PostgreSQL (for replicas), on this machine.

Run: `uv run python benchmarks/state_backends.py [--cycles 300] [--appends 400] [--rounds 3]`. It starts a throwaway
PostgreSQL cluster with durable settings (fsync on, synchronous commit; Debian's `postgresql` must be
installed) on loopback, then measures on each backend:

- gated paper submit + cancel cycles through `Gateway.call` on the in-process simulator (approval and
  preview gates, idempotency record, approval consumption, audit events), median and p99 per cycle;
- audit appends with 8 concurrent writers, in appends per second, three ways: 8 threads of one process
  on one `AuditLog` through `append_sync` (they share transactions, group commit; with this process's
  CPU time per append), 8 tasks of one event loop on one `AuditLog` through `append` (as the concurrent
  calls of one gateway server, which appends from its event loop; group commit too), and 8 processes
  each with its own `AuditLog` and connection (as 8 replicas: each commit alone under the chain's lock,
  each writer with an interpreter of its own); the chain is verified afterwards. The appends run in
  `--rounds` rounds (default 3), the backends taking turns going first, and the medians are compared,
  so a change in the machine's load during the run falls on both alike; each round's ratio is printed too.

Prints both, the ratio PostgreSQL / SQLite. Goals: PostgreSQL within 3x of SQLite per cycle, and
appends/s with 8 concurrent writers at least SQLite's (each of the three ways is printed). Exit status 0 always.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from ibkr_gateway_core.audit import AuditEvent, AuditLog
from ibkr_gateway_core.call_context import Switch
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import WITH_LIVE
from ibkr_gateway_core.state import PostgresLocation, StateLocation
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimulatorState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests-integration"))
from postgres_server import running_postgres

OPERATOR = Principal(kind="local_operator", subject="bench", scopes=WITH_LIVE)
ACCOUNT = "DU1234567"
KEY = b"b" * 32
WRITERS = 8


async def cycles(location: StateLocation, directory: Path, count: int) -> dict[str, float]:
    """Median and p99 (ms) of `count` gated paper submit + cancel cycles."""
    config = GatewayConfig.fake_local(state_dir=directory)
    sim = SimulatorState()
    sim.set_question_rules([])

    def backend_factory(_: GatewayConfig) -> CpapiBackend:
        return open_simulator_backend(sim, preflight_delays_s=(0.0, 0.0, 0.0))

    async with Gateway(config, AuditLog.open(location, KEY), backend_factory=backend_factory) as gateway:
        approvals: list[str] = []
        for _ in range(count):
            preview = await gateway.call(
                "preview_order",
                {"account_id": ACCOUNT, "symbol": "AAPL", "side": "buy", "quantity": "1", "limit_price": "100"},
                principal=OPERATOR,
                switches=frozenset({Switch.ENABLE_PREVIEW}),
            )
            approval = await gateway.call(
                "create_approval",
                {"account_id": ACCOUNT, "preview_id": preview.value.preview_id, "ttl_seconds": 3600},
                principal=OPERATOR,
            )
            approvals.append(approval.value.approval_id)
        paper = frozenset({Switch.ENABLE_PAPER})
        durations: list[float] = []
        for number, approval_id in enumerate(approvals):
            started = time.perf_counter()
            placed = await gateway.call(
                "submit_paper_order",
                {"account_id": ACCOUNT, "approval_id": approval_id, "idempotency_key": f"bench-submit-{number}"},
                principal=OPERATOR,
                switches=paper,
            )
            await gateway.call(
                "cancel_paper_order",
                {
                    "account_id": ACCOUNT,
                    "broker_order_id": placed.value.broker_order_id,
                    "idempotency_key": f"bench-cancel-{number}",
                },
                principal=OPERATOR,
                switches=paper,
            )
            durations.append((time.perf_counter() - started) * 1000)
    durations.sort()
    return {
        "median_ms": statistics.median(durations),
        "p99_ms": durations[min(len(durations) - 1, int(len(durations) * 0.99))],
    }


def appends(location: StateLocation, per_writer: int) -> tuple[float, float]:
    """Appends per second with `WRITERS` threads appending at once to one log, and this process's CPU time per
    append in microseconds (the writers share one interpreter lock)."""
    log = AuditLog.open(location, KEY)
    barrier = threading.Barrier(WRITERS + 1)

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(per_writer):
            log.append_sync(_event(n, i))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started, cpu_started = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    report = log.verify_sync()
    log.close()
    assert report.chain_valid and report.events_scanned == WRITERS * per_writer, report
    return WRITERS * per_writer / elapsed, cpu / (WRITERS * per_writer) * 1e6


def _process_writer(location: StateLocation, per_writer: int, number: int, ready: Any, go: Any, done: Any) -> None:
    """One replica's appends: opens its own log (and connection), appends once untimed, then on `go` appends
    `per_writer` events and reports when it finished (`time.perf_counter` is the system's monotonic clock)."""
    log = AuditLog.open(location, KEY)
    log.append_sync(_event(number, -1))
    ready.put(number)
    go.wait()
    for i in range(per_writer):
        log.append_sync(_event(number, i))
    done.put(time.perf_counter())
    log.close()


def process_appends(location: StateLocation, per_writer: int) -> float:
    """Appends per second with `WRITERS` processes appending at once to one chain, each with its own log."""
    context = multiprocessing.get_context("spawn")
    ready, done, go = context.Queue(), context.Queue(), context.Event()
    processes = [
        context.Process(target=_process_writer, args=(location, per_writer, n, ready, go, done)) for n in range(WRITERS)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=120)
    started = time.perf_counter()
    go.set()
    finished = max(done.get(timeout=600) for _ in processes)
    for process in processes:
        process.join()
    log = AuditLog.open(location, KEY)
    report = log.verify_sync()
    log.close()
    assert report.chain_valid and report.events_scanned == WRITERS * (per_writer + 1), report
    return WRITERS * per_writer / (finished - started)


def _event(writer: int, i: int) -> AuditEvent:
    return AuditEvent(
        event_type="tool_completed",
        timestamp=datetime.now(UTC),
        principal_kind="local_agent",
        principal_subject=f"writer-{writer}",
        scopes=[],
        decision="allow",
        result_status="completed",
        metadata={"i": i},
    )


def task_appends(location: StateLocation, per_writer: int) -> float:
    """Appends per second with `WRITERS` tasks appending at once to one log through `append` (as the concurrent
    calls of one gateway server do: its events are appended from its event loop)."""
    log = AuditLog.open(location, KEY)

    async def writer(n: int) -> None:
        for i in range(per_writer):
            await log.append(_event(n, i))

    async def run() -> float:
        started = time.perf_counter()
        async with anyio.create_task_group() as tasks:
            for n in range(WRITERS):
                tasks.start_soon(writer, n)
        return time.perf_counter() - started

    elapsed = anyio.run(run)
    report = log.verify_sync()
    log.close()
    assert report.chain_valid and report.events_scanned == WRITERS * per_writer, report
    return WRITERS * per_writer / elapsed


def rounds_of_appends(
    backends: dict[str, Callable[[], StateLocation]], per_writer: int, rounds: int
) -> tuple[dict[str, dict[str, float]], list[dict[str, float]]]:
    """Both append measurements on every backend, `rounds` times, the backends taking turns going first.

    The machine's load drifts during a run; interleaving the backends round by round gives both the same
    share of it. Returns each backend's median per figure, and each round's PostgreSQL / SQLite ratios.
    """
    figures: dict[str, dict[str, list[float]]] = {
        name: {"appends_per_s": [], "appends_per_s_processes": [], "cpu_us_per_append": [], "appends_per_s_tasks": []}
        for name in backends
    }
    per_round: list[dict[str, float]] = []
    names = list(backends)
    for number in range(rounds):
        this_round: dict[str, dict[str, float]] = {}
        for name in names if number % 2 == 0 else names[::-1]:
            rate, cpu = appends(backends[name](), per_writer)
            this_round[name] = {
                "appends_per_s": rate,
                "appends_per_s_processes": process_appends(backends[name](), per_writer),
                "cpu_us_per_append": cpu,
                "appends_per_s_tasks": task_appends(backends[name](), per_writer),
            }
            for key, value in this_round[name].items():
                figures[name][key].append(value)
        per_round.append({key: this_round["postgres"][key] / this_round["sqlite"][key] for key in this_round["sqlite"]})
    medians = {name: {key: statistics.median(values) for key, values in keys.items()} for name, keys in figures.items()}
    return medians, per_round


def main() -> None:
    """Run both backends and print the figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--appends", type=int, default=400, help="appends per writer")
    parser.add_argument("--rounds", type=int, default=3, help="append rounds, the backends taking turns")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        sqlite = anyio.run(cycles, root / "cycles.sqlite3", root / "a", options.cycles)
        files = iter(range(3 * options.rounds))
        with running_postgres(durable=True) as server:
            postgres = anyio.run(cycles, PostgresLocation(server.new_database()), root / "b", options.cycles)
            medians, per_round = rounds_of_appends(
                {
                    "sqlite": lambda: root / f"appends-{next(files)}.sqlite3",
                    "postgres": lambda: PostgresLocation(server.new_database()),
                },
                options.appends,
                options.rounds,
            )
    sqlite.update(medians["sqlite"])
    postgres.update(medians["postgres"])
    load = (load_before, os.getloadavg()[0])
    ratios = {
        "cycle_median": postgres["median_ms"] / sqlite["median_ms"],
        "cycle_p99": postgres["p99_ms"] / sqlite["p99_ms"],
        "appends_per_s": postgres["appends_per_s"] / sqlite["appends_per_s"],
        "appends_per_s_processes": postgres["appends_per_s_processes"] / sqlite["appends_per_s_processes"],
        "cpu_us_per_append": postgres["cpu_us_per_append"] / sqlite["cpu_us_per_append"],
        "appends_per_s_tasks": postgres["appends_per_s_tasks"] / sqlite["appends_per_s_tasks"],
    }
    if options.json:
        report = {"sqlite": sqlite, "postgres": postgres, "ratio_postgres_to_sqlite": ratios}
        print(json.dumps({**report, "append_ratios_per_round": per_round, "load_average_1m": load}))
        return
    print(
        f"gated paper submit+cancel cycles: {options.cycles}; audit appends: {WRITERS} writers x {options.appends}, "
        f"{options.rounds} rounds (medians); 1-minute load average {load[0]:.2f} before, {load[1]:.2f} after"
    )
    print(f"{'':28}{'SQLite':>12}{'PostgreSQL':>14}{'ratio':>9}")
    print(
        f"{'cycle median (ms)':28}{sqlite['median_ms']:12.2f}{postgres['median_ms']:14.2f}{ratios['cycle_median']:9.2f}"
    )
    print(f"{'cycle p99 (ms)':28}{sqlite['p99_ms']:12.2f}{postgres['p99_ms']:14.2f}{ratios['cycle_p99']:9.2f}")
    print(
        f"{'appends/s, 8 threads 1 log':28}{sqlite['appends_per_s']:12.0f}"
        f"{postgres['appends_per_s']:14.0f}{ratios['appends_per_s']:9.2f}"
    )
    print(
        f"{'appends/s, 8 processes':28}{sqlite['appends_per_s_processes']:12.0f}"
        f"{postgres['appends_per_s_processes']:14.0f}{ratios['appends_per_s_processes']:9.2f}"
    )
    print(
        f"{'appends/s, 8 tasks 1 log':28}{sqlite['appends_per_s_tasks']:12.0f}"
        f"{postgres['appends_per_s_tasks']:14.0f}{ratios['appends_per_s_tasks']:9.2f}"
    )
    print(
        f"{'CPU us/append, 8 threads':28}{sqlite['cpu_us_per_append']:12.0f}"
        f"{postgres['cpu_us_per_append']:14.0f}{ratios['cpu_us_per_append']:9.2f}"
        "  (this process; its threads share one interpreter lock: 1e6 / this bounds appends/s)"
    )
    for key, label in (
        ("appends_per_s", "8 threads 1 log"),
        ("appends_per_s_processes", "8 processes"),
        ("appends_per_s_tasks", "8 tasks 1 log"),
    ):
        print(f"ratio per round, {label}: " + ", ".join(f"{entry[key]:.2f}" for entry in per_round))


if __name__ == "__main__":
    main()
