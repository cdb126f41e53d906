"""Our `Gateway` against ibind: the same sequential reads against the same simulator over HTTPS.

    uv sync --all-packages --group bench
    uv run python benchmarks/vs_ibind.py [--reads 2000] [--paced-reads 300] [--profile FILE]

Starts `ibkr-agent simulator serve` (no pacing, as ibind has none) with 130 extra positions in
DU1234567 (so "all positions" is two pages of CPAPI's 100), then runs `--reads` sequential reads,
cycling accounts → all positions → a snapshot of AAPL, through:

- our `Gateway` (audit on, every call audited; `broker.pacing_enabled: false`), and
- ibind's `IbkrClient` (`portfolio_accounts`, `positions` page by page, `live_marketdata_snapshot`).

Prints both times, the ratio (goal: ours / ibind <= 1.0), which returned prices on its first
snapshot, and upstream requests per read. Then runs `--paced-reads` reads through our `Gateway`
with pacing on (its single flight and short caches) and prints its upstream requests per read.
`--profile FILE` writes a cProfile of our unpaced run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx2
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.gateway import Gateway

ACCOUNT = "DU1234567"
AAPL = 265598
EXTRA_POSITIONS = 130
SNAPSHOT_FIELDS = ["31", "84", "85", "86", "88", "87", "7762", "55", "6509", "7059"]


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


async def ours(base_url: str, reads: int, directory: Path, *, paced: bool) -> tuple[float, bool, int]:
    """Seconds for `reads` reads through `Gateway`, whether the first snapshot had a price, positions seen."""
    config = GatewayConfig.from_mapping(
        {
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
    audit = AuditLog.open(config.audit_path(), b"v" * 32)
    first_priced: bool | None = None
    positions = 0
    async with Gateway(config, audit) as gateway:
        await gateway.list_accounts()  # what any client does once: the accounts call primes the session
        control(base_url, {"reset_counters": True})
        started = time.perf_counter()
        for n in range(reads):
            kind = n % 3
            if kind == 0:
                await gateway.list_accounts()
            elif kind == 1:
                positions = len(await gateway.list_positions(ACCOUNT))
            else:
                quote = await gateway.market_snapshot(AAPL)
                if first_priced is None:
                    first_priced = quote.last is not None
        elapsed = time.perf_counter() - started
    return elapsed, bool(first_priced), positions


def theirs(base_url: str, reads: int) -> tuple[float, bool, int]:
    """The same reads through ibind's `IbkrClient`."""
    from ibind import IbkrClient  # pyright: ignore[reportMissingTypeStubs]

    client: Any = IbkrClient(url=base_url + "/v1/api/", cacert=False, use_session=True, auto_register_shutdown=False)
    client.receive_brokerage_accounts()  # ibind's priming, once, as for ours
    client.get("iserver/marketdata/unsubscribeall")  # its first snapshot meets a fresh stream, as ours did
    client.portfolio_accounts()
    control(base_url, {"reset_counters": True})
    first_priced: bool | None = None
    positions = 0
    started = time.perf_counter()
    for n in range(reads):
        kind = n % 3
        if kind == 0:
            client.portfolio_accounts()
        elif kind == 1:
            rows: list[Any] = []
            page = 0
            while True:
                batch = client.positions(account_id=ACCOUNT, page=page).data
                rows.extend(batch)
                if len(batch) < 100:
                    break
                page += 1
            positions = len(rows)
        else:
            data = client.live_marketdata_snapshot(conids=[str(AAPL)], fields=SNAPSHOT_FIELDS).data
            if first_priced is None:
                first_priced = any("31" in row for row in data)
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed, bool(first_priced), positions


def main(reads: int, paced_reads: int, profile: Path | None) -> int:
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")  # ibind's urllib3, loopback only
    os.environ.setdefault("IBKR_AGENT_AUDIT_KEY", "vs-ibind-benchmark-audit-key-0123456789abcdef")
    proc, base_url = start_simulator()
    try:
        seed_positions(base_url)
        with tempfile.TemporaryDirectory(prefix="ibkr-vs-ibind-") as scratch:
            profiler = cProfile.Profile() if profile is not None else None
            if profiler is not None:
                profiler.enable()
            our_s, our_priced, our_positions = anyio.run(
                lambda: ours(base_url, reads, Path(scratch) / "unpaced", paced=False)
            )
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
            our_requests = upstream(base_url)
            their_s, their_priced, their_positions = theirs(base_url, reads)
            their_requests = upstream(base_url)
            control(base_url, {"pacing": True})  # IBKR's limits: the paced run must not be refused
            paced_s, _, _ = anyio.run(lambda: ours(base_url, paced_reads, Path(scratch) / "paced", paced=True))
            paced_requests = upstream(base_url)
            refused = control(base_url)["pacing"]["refused"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    print(
        f"{reads} sequential reads (accounts, all {our_positions} positions in two pages, a snapshot), HTTPS simulator"
    )
    print(f"ours (Gateway, audit on, pacing off): {our_s:7.2f} s  {our_s / reads * 1000:6.2f} ms/read")
    print(f"ibind (IbkrClient):                   {their_s:7.2f} s  {their_s / reads * 1000:6.2f} ms/read")
    print(f"ratio ours/ibind: {our_s / their_s:.2f} (goal <= 1.0)")
    print(
        f"prices on the first snapshot: ours {'yes' if our_priced else 'no'}, ibind {'yes' if their_priced else 'no'}"
    )
    print(f"positions seen: ours {our_positions}, ibind {their_positions}")
    print(f"upstream requests per read: ours {our_requests / reads:.2f}, ibind {their_requests / reads:.2f}")
    print(
        f"ours with pacing on: {paced_reads} reads in {paced_s:.2f} s, "
        f"{paced_requests / paced_reads:.2f} upstream requests per read, {refused} refused (429)"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--paced-reads", type=int, default=300)
    parser.add_argument("--profile", type=Path)
    options = parser.parse_args()
    raise SystemExit(main(options.reads, options.paced_reads, options.profile))
