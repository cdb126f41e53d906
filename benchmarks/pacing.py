"""Pacing under load: 32 concurrent agents asking quotes through one MCP server, against an unkind gateway.

    uv run python benchmarks/pacing.py [--agents 32] [--conids 20] [--seconds 30]

Starts `ibkr-agent simulator serve --unkind` (IBKR's real limits: 10 requests/s in all, 10
snapshots/s, and the 10-minute penalty box for any violation), adds `--conids` made-up stocks,
and starts one stdio MCP server (`ibkr-agent mcp serve`) configured for that gateway. `--agents`
concurrent agents then call `ibkr_market_snapshot` on the conids, round-robin, for `--seconds`.

Prints the calls made, rate-limit errors, other errors, the client latency p50/p99, and from the
simulator's own counters: 429s it answered, upstream requests per second (all, and snapshots) and
the most requests it ever saw inside one IBKR window. Targets: 0 rate-limit errors, 0 upstream
429s, upstream rates within IBKR's limits. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters

TOOL = "ibkr_market_snapshot"
AUDIT_KEY_ENV = "IBKR_BENCH_AUDIT_KEY"
FIRST_CONID = 9_000_001


def percentile(samples: list[float], q: int) -> float:
    """The q-th percentile (1..99) of `samples`."""
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    """`ibkr-agent simulator serve --unkind` on a free port; its process and base URL."""
    proc = subprocess.Popen(
        ["ibkr-agent", "simulator", "serve", "--port", "0", "--unkind"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("https://"):
        proc.kill()
        raise SystemExit(f"the simulator did not start: {url!r} {proc.communicate()[1]}")
    return proc, url


def control(base_url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The simulator's control endpoint (GET without a body)."""
    with httpx2.Client(verify=False, timeout=10) as http:
        answer = (
            http.get(base_url + "/sim/control") if body is None else http.post(base_url + "/sim/control", json=body)
        )
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def write_config(directory: Path, base_url: str) -> Path:
    path = directory / "gateway.yaml"
    path.write_text(
        "broker:\n"
        "  backend: client_portal_gateway\n"
        f"  base_url: {base_url}\n"
        "  verify_tls: false\n"
        "  keepalive_enabled: false\n"
        "audit:\n"
        f"  hmac_secret_env: {AUDIT_KEY_ENV}\n"
        "state:\n"
        f"  directory: {directory / 'state'}\n",
        encoding="utf-8",
    )
    return path


async def run(agents: int, conids: int, seconds: float) -> int:
    proc, base_url = start_simulator()
    try:
        control(base_url, {"add_contracts": conids})
        with tempfile.TemporaryDirectory(prefix="ibkr-pacing-bench-") as scratch:
            config = write_config(Path(scratch), base_url)
            env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
            env[AUDIT_KEY_ENV] = "pacing-benchmark-audit-key-0123456789abcdef"
            params = StdioServerParameters(
                command="ibkr-agent", args=["--config", str(config), "mcp", "serve"], env=env
            )
            async with Client(params) as client:
                ids = [FIRST_CONID + n for n in range(conids)]
                control(base_url, {"reset_counters": True})
                latencies: list[float] = []
                errors: dict[str, int] = {}
                deadline = time.monotonic() + seconds
                started = time.monotonic()

                async def agent(offset: int) -> None:
                    n = offset
                    while time.monotonic() < deadline:
                        conid = ids[n % len(ids)]
                        n += 1
                        began = time.perf_counter()
                        result = await client.call_tool(TOOL, {"contract_id": conid})
                        latencies.append((time.perf_counter() - began) * 1000)
                        if result.is_error:
                            text = str(result.content[0].model_dump().get("text", "")) if result.content else ""
                            code = "RATE_LIMITED" if "BROKER_RATE_LIMITED" in text else text[:80]
                            errors[code] = errors.get(code, 0) + 1

                async with anyio.create_task_group() as tasks:
                    for offset in range(agents):
                        tasks.start_soon(agent, offset)
                elapsed = time.monotonic() - started
        stats = control(base_url)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    pacing = stats["pacing"]
    snapshots = stats["requests_by_path"].get("GET /iserver/marketdata/snapshot", 0)
    rate_limited = errors.get("RATE_LIMITED", 0)
    other = sum(count for code, count in errors.items() if code != "RATE_LIMITED")
    print(f"{agents} agents, {conids} conids, {elapsed:.1f} s, one stdio MCP server, simulator serve --unkind")
    print(
        f"calls: {len(latencies)} ({len(latencies) / elapsed:.0f}/s)  "
        f"rate-limit errors: {rate_limited}  other errors: {other}"
    )
    if other:
        print("  other errors:", json.dumps({k: v for k, v in errors.items() if k != "RATE_LIMITED"}))
    print(f"client latency: p50={percentile(latencies, 50):.1f} ms  p99={percentile(latencies, 99):.1f} ms")
    print(
        f"upstream: {stats['requests']} requests ({stats['requests'] / elapsed:.2f}/s), "
        f"{snapshots} snapshots ({snapshots / elapsed:.2f}/s); 429s answered: {pacing['refused']}"
    )
    print(
        f"most requests inside one window: all {pacing['peak'].get('*', 0)} (limit {pacing['global_per_second']}/s), "
        f"snapshots {pacing['peak'].get('/iserver/marketdata/snapshot', 0)} (limit 10/s)"
    )
    ok = (
        rate_limited == 0
        and pacing["refused"] == 0
        and pacing["peak"].get("*", 0) <= pacing["global_per_second"]
        and pacing["peak"].get("/iserver/marketdata/snapshot", 0) <= 10
    )
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=32)
    parser.add_argument("--conids", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    options = parser.parse_args()
    sys.exit(anyio.run(run, options.agents, options.conids, options.seconds))
