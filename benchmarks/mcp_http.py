"""What OAuth, the HTTP checks and the audit log cost a remote MCP tool call over streamable HTTP.

    uv run python benchmarks/mcp_http.py [--seconds 20] [--concurrency 32]

A child process serves, on loopback, a test issuer (discovery and JWKS), the gateway's remote MCP app
(token verification, allowlists, rate limit, one audit row per call, the embedded simulator) and a
baseline: the same SDK's streamable-HTTP app without auth or audit, whose `ibkr_accounts_list` returns
a constant. This process then runs `--concurrency` MCP clients (one session each) calling the read tool
for `--seconds` against each server in turn, and prints requests/s, p50 and p99 of both and the ratios.
Targets: at least 0.7 of the baseline's throughput, p99 at most 1.5 x the baseline's.
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
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

TOOL = "ibkr_accounts_list"
TOKEN_KEY_ENV = "IBKR_BENCH_TOKEN_KEY"
TARGET_THROUGHPUT_RATIO = 0.7
TARGET_P99_RATIO = 1.5


async def serve(state_dir: Path) -> None:
    """The child: issuer, gateway app and baseline app; prints one JSON line with URLs and a token."""
    from ibkr_gateway_core.config import GatewayConfig
    from ibkr_gateway_core.gateway import Gateway
    from ibkr_gateway_mcp.auth import JwksTokenVerifier
    from ibkr_gateway_mcp.http_app import RemoteMcpApp, verifier_settings
    from ibkr_gateway_mcp.testing import FakeIssuer, loopback_socket, serve_loopback
    from mcp.server.mcpserver import MCPServer

    os.environ[TOKEN_KEY_ENV] = "b" * 40
    baseline = MCPServer("baseline", log_level="WARNING")  # same logging as the gateway: no per-request logs

    @baseline.tool(name=TOOL)
    async def accounts_list() -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        return {"items": [{"account_id": "DU1234567", "alias": "Paper", "currency": "USD", "type": "paper"}]}

    async with FakeIssuer().serve() as issuer:
        sock = loopback_socket()
        resource = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        config = GatewayConfig.from_mapping(
            {
                "state": {"directory": str(state_dir)},
                "safety": {"remote_mcp_enabled": True},
                "remote_mcp": {
                    "enabled": True,
                    "resource": resource,
                    "issuer": issuer.url,
                    "allowed_scopes": ["read_only"],
                    "token_id_hmac_secret_env": TOKEN_KEY_ENV,
                    "rate_limit_max_requests": 1_000_000,
                    "max_sessions": 256,
                },
            }
        )
        async with (
            Gateway.from_config(config) as gateway,
            JwksTokenVerifier(verifier_settings(config.remote_mcp)) as verifier,
        ):
            app = RemoteMcpApp(gateway, config.remote_mcp, verifier, token_id_key=b"b" * 40)
            async with serve_loopback(app, sock), serve_loopback(baseline.streamable_http_app()) as base_url:
                token = issuer.mint(audience=resource, lifetime_s=3600)
                print(json.dumps({"gateway": resource, "baseline": f"{base_url}/mcp", "token": token}), flush=True)
                await anyio.to_thread.run_sync(sys.stdin.read)  # until the parent closes stdin


async def load(url: str, token: str | None, *, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    """(requests/s, latencies in ms) of `concurrency` sessions calling the tool for `seconds`."""
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ready = anyio.Event()
    started = 0

    async def worker() -> None:
        nonlocal errors, started
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            await client.call_tool(TOOL, {})  # warm-up: session and keys
            started += 1
            if started == concurrency:
                ready.set()
            await ready.wait()
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                begin = time.perf_counter()
                result = await client.call_tool(TOOL, {})
                latencies.append((time.perf_counter() - begin) * 1000)
                errors += bool(result.is_error)

    begin = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for _ in range(concurrency):
            tasks.start_soon(worker)
    elapsed = time.perf_counter() - begin
    if errors:
        raise SystemExit(f"{errors} tool calls failed against {url}")
    return len(latencies) / min(elapsed, seconds), latencies


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


async def main(seconds: float, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as state:
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", state],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            encoding="utf-8",
        )
        try:
            assert child.stdout is not None
            info = json.loads(child.stdout.readline())
            rows: dict[str, tuple[float, list[float]]] = {}
            rows["baseline (SDK, no auth, no audit)"] = await load(
                info["baseline"], None, seconds=seconds, concurrency=concurrency
            )
            rows["gateway (OAuth, checks, audit)"] = await load(
                info["gateway"], info["token"], seconds=seconds, concurrency=concurrency
            )
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=30)
    print(f"{TOOL}, concurrency {concurrency}, {seconds:g} s each")
    for name, (rps, lat) in rows.items():
        print(f"  {name:36} {rps:8.1f} req/s   p50 {_pct(lat, 50):7.2f} ms   p99 {_pct(lat, 99):7.2f} ms")
    (base_rps, base_lat), (gw_rps, gw_lat) = rows.values()
    throughput = gw_rps / base_rps
    p99 = _pct(gw_lat, 99) / _pct(base_lat, 99)
    print(f"  throughput ratio {throughput:.2f} (target >= {TARGET_THROUGHPUT_RATIO})")
    print(f"  p99 ratio        {p99:.2f} (target <= {TARGET_P99_RATIO})")
    print(f"  p50 ratio        {_pct(gw_lat, 50) / _pct(base_lat, 50):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve is not None:
        anyio.run(serve, options.serve)
    else:
        anyio.run(main, options.seconds, options.concurrency)
