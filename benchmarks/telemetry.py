"""What OpenTelemetry costs a gateway call: the same reads with `observability.otel_enabled` off and on.

Run: `uv run python benchmarks/telemetry.py [--calls 2000] [--blocks 10]`. One process, one gateway on the
embedded simulator (`GatewayConfig.fake_local`, audit `read_sync: normal`), a positions read per call (a
call span, its broker request and its audit append when tracing is on). The calls run in blocks, off and
on taking turns, so the machine's load falls on both alike. With tracing on the spans and metrics go over
OTLP/HTTP to a receiver on loopback in this process, which reads each request and answers 200 (as a
collector would), with batches every 50 ms and metrics every second. Prints microseconds per call and
CPU microseconds per call of this process (the exporters' threads included) for each, and the ratios.
No goal; exit status 0 always.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
from ibkr_gateway_core import observability
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.gateway import Gateway

ACCOUNT = "DU1234567"


class _Collector(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        _Collector.received += 1
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


async def _block(gateway: Gateway, calls: int) -> tuple[float, float]:
    """Wall and CPU seconds of `calls` positions reads."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await gateway.call("list_positions", {"account_id": ACCOUNT})
    return time.perf_counter() - started, time.process_time() - cpu


async def run(calls: int, blocks: int, directory: Path) -> dict[str, tuple[list[float], list[float]]]:
    config = GatewayConfig.fake_local(state_dir=directory).model_copy(
        update={"audit": GatewayConfig.fake_local(state_dir=directory).audit.model_copy(update={"read_sync": "normal"})}
    )
    figures: dict[str, tuple[list[float], list[float]]] = {"off": ([], []), "on": ([], [])}
    async with Gateway(config, AuditLog.open(directory / "state.sqlite3", b"t" * 32)) as gateway:
        await _block(gateway, 50)  # warm: the backend, the caches
        for number in range(2 * blocks):
            mode = "off" if number % 2 == 0 else "on"
            if mode == "on":
                observability.enable_opentelemetry()
            wall, cpu = await _block(gateway, calls // blocks)
            if mode == "on":
                observability.disable_opentelemetry()  # flushes what is pending: counted in the next block's time
            figures[mode][0].append(wall / (calls // blocks) * 1e6)
            figures[mode][1].append(cpu / (calls // blocks) * 1e6)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="calls with tracing off, and as many with it on")
    parser.add_argument("--blocks", type=int, default=10)
    options = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{server.server_address[1]}"
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "50"
    os.environ["OTEL_METRIC_EXPORT_INTERVAL"] = "1000"
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as directory:
        figures = anyio.run(run, options.calls, options.blocks, Path(directory))
    server.shutdown()
    off_wall, off_cpu = (statistics.median(values) for values in figures["off"])
    on_wall, on_cpu = (statistics.median(values) for values in figures["on"])
    print(
        f"{options.calls} positions reads with OpenTelemetry off and as many on, {options.blocks} blocks each, "
        f"medians; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(f"{'':24}{'us/call':>10}{'CPU us/call':>14}")
    print(f"{'off':24}{off_wall:10.0f}{off_cpu:14.0f}")
    print(f"{'on (OTLP/HTTP)':24}{on_wall:10.0f}{on_cpu:14.0f}")
    print(f"{'ratio on / off':24}{on_wall / off_wall:10.2f}{on_cpu / off_cpu:14.2f}")
    print(f"requests the collector received: {_Collector.received}")


if __name__ == "__main__":
    main()
