"""Our `Gateway` against ibind: the same sequential reads against the same simulator over HTTPS.

    uv sync --all-packages --group bench
    uv run python benchmarks/vs_ibind.py [--reads 2000] [--blocks 10] [--paced-reads 300] [--profile FILE]

Starts `ibkr-agent simulator serve` (no pacing, as ibind has none) with 130 extra positions in
DU1234567 (so "all positions" is two pages of CPAPI's 100), then runs `--reads` sequential reads,
cycling accounts → all positions → a snapshot of AAPL, through:

- our `Gateway` twice (audit on, every call in the chain before it returns; `broker.pacing_enabled:
  false`): with `audit.read_sync: full` (the default: every event synced to disk, one fsync per call)
  and with `audit.read_sync: normal` (completed reads committed without a sync: they survive a crash
  of the process, and the next synced commit makes them survive a power cut), and
- ibind's `IbkrClient` (`portfolio_accounts`, `positions` page by page, `live_marketdata_snapshot`).

The three take turns in `--blocks` blocks, so a machine whose load drifts during the run weighs on
all alike. Each one's first snapshot meets a fresh market-data stream (IBKR's pre-flight answer).

Prints, for each: wall time, process CPU time and the simulator's CPU time per read, upstream requests
per read, and per kind of read (wall and CPU time); the ratio of each of ours to ibind (goal: <= 1.0); the share of our
time spent committing audit events (ibind keeps no log); and which returned prices on its first
snapshot. Then runs `--paced-reads` reads through our `Gateway` with pacing on (single flight, short
caches) and prints its upstream requests per read.
`--profile FILE` writes a cProfile of our blocks (event-loop thread only).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import resource
import subprocess
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.observability import AUDIT_APPEND

ACCOUNT = "DU1234567"
AAPL = 265598
EXTRA_POSITIONS = 130
SNAPSHOT_FIELDS = ["31", "84", "85", "86", "88", "87", "7762", "55", "6509", "7059"]
KINDS = ("accounts", "positions", "snapshot")


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        ["ibkr-agent", "simulator", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("https://"):
        proc.kill()
        raise SystemExit(f"the simulator did not start: {url!r}")
    return proc, url


def control(base_url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    with httpx2.Client(verify=False, timeout=10) as http:
        answer = (
            http.get(base_url + "/sim/control") if body is None else http.post(base_url + "/sim/control", json=body)
        )
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def seed_positions(base_url: str) -> None:
    control(base_url, {"add_contracts": EXTRA_POSITIONS})
    for n in range(1, EXTRA_POSITIONS + 1):
        position = {"account_id": ACCOUNT, "conid": 9_000_000 + n, "quantity": n, "avg_cost": 20 + n}
        control(base_url, {"set_position": position})


def upstream(base_url: str) -> int:
    return int(control(base_url)["requests"])


simulator_pid = 0


def simulator_cpu_seconds() -> float:
    """CPU time of the simulator process (user + system), from /proc; 0 where there is no /proc."""
    try:
        fields = Path(f"/proc/{simulator_pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """CPU time of this process, all threads (ours includes its audit writer thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def audit_commit_seconds() -> tuple[float, int]:
    """(seconds, commits) spent in audit group commits so far, from the gateway's own histogram."""
    _, total, count = AUDIT_APPEND.series.get((), ([], 0.0, 0))
    return total, count


@dataclass
class Tally:
    """One client's measured reads."""

    reads: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    requests: int = 0
    per_kind: dict[str, list[float]] = field(default_factory=lambda: {kind: [0.0, 0, 0.0] for kind in KINDS})
    """Per kind of read: [wall seconds, reads, CPU seconds of this process]."""
    simulator_cpu: float = 0.0
    first_priced: bool | None = None
    positions: int = 0

    def add(self, kind: str, seconds: float, cpu: float = 0.0) -> None:
        self.per_kind[kind][0] += seconds
        self.per_kind[kind][1] += 1
        self.per_kind[kind][2] += cpu

    def kind_ms(self, kind: str) -> float:
        total, count, _ = self.per_kind[kind]
        return total / count * 1000 if count else 0.0

    def kind_cpu_ms(self, kind: str) -> float:
        _, count, cpu = self.per_kind[kind]
        return cpu / count * 1000 if count else 0.0


def gateway_config(base_url: str, directory: Path, *, paced: bool, read_sync: str = "full") -> GatewayConfig:
    return GatewayConfig.from_mapping(
        {
            "audit": {"read_sync": read_sync},
            "broker": {
                "backend": "client_portal_gateway",
                "base_url": base_url,
                "verify_tls": False,
                "pacing_enabled": paced,
                "keepalive_enabled": False,
            },
            "state": {"directory": str(directory)},
        }
    )


async def our_block(gateway: Gateway, first: int, count: int, tally: Tally) -> None:
    """Reads `first` .. `first + count - 1` of the cycle through `Gateway`."""
    for n in range(first, first + count):
        kind = KINDS[n % 3]
        started, cpu = time.perf_counter(), cpu_seconds()
        if kind == "accounts":
            await gateway.list_accounts()
        elif kind == "positions":
            tally.positions = len(await gateway.list_positions(ACCOUNT))
        else:
            quote = await gateway.market_snapshot(AAPL)
            if tally.first_priced is None:
                tally.first_priced = quote.last is not None
        tally.add(kind, time.perf_counter() - started, cpu_seconds() - cpu)


def their_block(client: Any, first: int, count: int, tally: Tally) -> None:
    """The same reads through ibind's `IbkrClient`."""
    for n in range(first, first + count):
        kind = KINDS[n % 3]
        started, cpu = time.perf_counter(), cpu_seconds()
        if kind == "accounts":
            client.portfolio_accounts()
        elif kind == "positions":
            rows: list[Any] = []
            page = 0
            while True:
                batch = client.positions(account_id=ACCOUNT, page=page).data
                rows.extend(batch)
                if len(batch) < 100:
                    break
                page += 1
            tally.positions = len(rows)
        else:
            data = client.live_marketdata_snapshot(conids=[str(AAPL)], fields=SNAPSHOT_FIELDS).data
            if tally.first_priced is None:
                tally.first_priced = any("31" in row for row in data)
        tally.add(kind, time.perf_counter() - started, cpu_seconds() - cpu)


async def measured(base_url: str, block: Callable[[], Awaitable[None] | None], tally: Tally, reads: int) -> None:
    """Run one block, adding its wall time, CPU time, reads and upstream requests to `tally`."""
    before_requests = upstream(base_url)
    simulator, cpu, started = simulator_cpu_seconds(), cpu_seconds(), time.perf_counter()
    result = block()
    if result is not None:
        await result
    tally.wall += time.perf_counter() - started
    tally.cpu += cpu_seconds() - cpu
    tally.simulator_cpu += simulator_cpu_seconds() - simulator
    tally.reads += reads
    tally.requests += upstream(base_url) - before_requests


READ_SYNC_MODES = ("full", "normal")
"""`audit.read_sync` values measured side by side: every event synced, or completed reads without a sync."""


@dataclass
class Ours:
    """One of our gateways in the comparison, with the time its calls spent committing audit events."""

    read_sync: str
    tally: Tally = field(default_factory=Tally)
    audit_seconds: float = 0.0
    audit_commits: int = 0

    @property
    def name(self) -> str:
        return f"ours, audit.read_sync={self.read_sync}"


async def compare(
    base_url: str, reads: int, blocks: int, directory: Path, profiler: cProfile.Profile | None
) -> tuple[list[Ours], Tally]:
    from ibind import IbkrClient  # pyright: ignore[reportMissingTypeStubs]

    ours = [Ours(mode) for mode in READ_SYNC_MODES]
    theirs = Tally()
    client: Any = IbkrClient(url=base_url + "/v1/api/", cacert=False, use_session=True, auto_register_shutdown=False)
    try:
        async with AsyncExitStack() as stack:
            gateways: list[Gateway] = []
            for one in ours:
                config = gateway_config(base_url, directory / one.read_sync, paced=False, read_sync=one.read_sync)
                gateway = await stack.enter_async_context(
                    Gateway(config, AuditLog.open(config.audit_path(), b"v" * 32))
                )
                await gateway.list_accounts()  # what any client does once: the accounts call primes the session
                gateways.append(gateway)
            client.receive_brokerage_accounts()  # ibind's priming, once, as for ours
            client.portfolio_accounts()
            size = -(-reads // blocks)
            for first in range(0, reads, size):
                count = min(size, reads - first)
                for one, gateway in zip(ours, gateways, strict=True):
                    if first == 0:  # each one's first snapshot meets a fresh market-data stream
                        client.get("iserver/marketdata/unsubscribeall")
                    audit_mark = audit_commit_seconds()
                    if profiler is not None:
                        profiler.enable()
                    await measured(base_url, partial(our_block, gateway, first, count, one.tally), one.tally, count)
                    if profiler is not None:
                        profiler.disable()
                    audit_now = audit_commit_seconds()
                    one.audit_seconds += audit_now[0] - audit_mark[0]
                    one.audit_commits += audit_now[1] - audit_mark[1]
                if first == 0:
                    client.get("iserver/marketdata/unsubscribeall")
                await measured(base_url, partial(their_block, client, first, count, theirs), theirs, count)
    finally:
        client.close()
    return ours, theirs


async def paced_run(base_url: str, reads: int, directory: Path) -> tuple[float, int]:
    """Seconds and upstream requests for `reads` reads through `Gateway` with pacing on (default `read_sync`)."""
    config = gateway_config(base_url, directory, paced=True)
    audit = AuditLog.open(config.audit_path(), b"v" * 32)
    async with Gateway(config, audit) as gateway:
        await gateway.list_accounts()
        before = upstream(base_url)
        started = time.perf_counter()
        await our_block(gateway, 0, reads, Tally())
        elapsed = time.perf_counter() - started
    return elapsed, upstream(base_url) - before


def report(reads: int, blocks: int, ours: list[Ours], theirs: Tally) -> None:
    print(
        f"{reads} sequential reads each (accounts, all {theirs.positions} positions in two pages, a snapshot), "
        f"HTTPS simulator, {blocks} alternating blocks"
    )
    rows = [(one.name, one.tally) for one in ours] + [("ibind (IbkrClient)", theirs)]
    print(f"{'':34} {'wall s':>7} {'ms/read':>8} {'CPU ms/read':>12} {'simulator CPU':>14} {'upstream req/read':>18}")
    for name, tally in rows:
        print(
            f"{name:34} {tally.wall:7.2f} {tally.wall / tally.reads * 1000:8.2f} "
            f"{tally.cpu / tally.reads * 1000:12.2f} {tally.simulator_cpu / tally.reads * 1000:14.2f} "
            f"{tally.requests / tally.reads:18.2f}"
        )
    for one in ours:
        print(
            f"ratio {one.name} / ibind: {one.tally.wall / theirs.wall:.2f} wall (goal <= 1.0), "
            f"{one.tally.cpu / theirs.cpu:.2f} CPU"
        )
    print("ms per read, by kind:             " + "  ".join(f"{kind:>9}" for kind in KINDS))
    for name, tally in rows:
        print(f"  {name:31} " + "  ".join(f"{tally.kind_ms(kind):9.2f}" for kind in KINDS))
    print("CPU ms per read of the client's process, by kind:" + "  ".join(f"{kind:>9}" for kind in KINDS))
    for name, tally in rows:
        print(f"  {name:31} " + "  ".join(f"{tally.kind_cpu_ms(kind):9.2f}" for kind in KINDS))
    for one in ours:
        if one.audit_commits:
            print(
                f"{one.name}: audit commits {one.audit_seconds / one.audit_commits * 1000:.2f} ms per call "
                f"({one.audit_commits} calls, {one.audit_seconds / one.tally.wall * 100:.0f}% of its wall time; "
                + ("synchronous=FULL, one fsync each" if one.read_sync == "full" else "synchronous=NORMAL, no fsync")
                + "; ibind keeps no log)"
            )
    print(
        "prices on the first snapshot: "
        + ", ".join(f"{name} {'yes' if tally.first_priced else 'no'}" for name, tally in rows)
    )
    print("positions seen: " + ", ".join(f"{name} {tally.positions}" for name, tally in rows))


def main(reads: int, blocks: int, paced_reads: int, profile: Path | None) -> int:
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")  # ibind's urllib3, loopback only
    os.environ.setdefault("IBKR_AGENT_AUDIT_KEY", "vs-ibind-benchmark-audit-key-0123456789abcdef")
    global simulator_pid
    proc, base_url = start_simulator()
    simulator_pid = proc.pid
    try:
        seed_positions(base_url)
        with tempfile.TemporaryDirectory(prefix="ibkr-vs-ibind-") as scratch:
            profiler = cProfile.Profile() if profile is not None else None
            ours, theirs = anyio.run(
                lambda: compare(base_url, reads, max(1, blocks), Path(scratch) / "unpaced", profiler)
            )
            if profiler is not None and profile is not None:
                profiler.dump_stats(profile)
            control(base_url, {"pacing": True})  # IBKR's limits: the paced run must not be refused
            paced_s, paced_requests = anyio.run(lambda: paced_run(base_url, paced_reads, Path(scratch) / "paced"))
            refused = control(base_url)["pacing"]["refused"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    report(reads, blocks, ours, theirs)
    print(
        f"ours with pacing on: {paced_reads} reads in {paced_s:.2f} s, {paced_requests / paced_reads:.2f} upstream "
        f"requests per read (ibind, which has no pacing: {theirs.requests / theirs.reads:.2f}), {refused} refused (429)"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--paced-reads", type=int, default=300)
    parser.add_argument("--profile", type=Path)
    options = parser.parse_args()
    raise SystemExit(main(options.reads, options.blocks, options.paced_reads, options.profile))
