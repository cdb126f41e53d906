"""Order workflow benchmark: gated paper submit + cancel cycles on the in-process simulator.

Run: `uv run python benchmarks/orders.py [--cycles 1000]`. Each cycle is one `submit_paper_order`
(approval and preview gates, durable idempotency record, approval consumed, Client Portal writer over
the in-process simulator, audit event) and one `cancel_paper_order`, both through `Gateway.call`.
Previews and approvals are made before timing. Prints median and p99 per cycle; exits 1 when the
median misses the target (issue 4: <= 5 ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import anyio
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.call_context import Switch
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import WITH_LIVE
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimulatorState

TARGET_MEDIAN_MS = 5.0
OPERATOR = Principal(kind="local_operator", subject="bench", scopes=WITH_LIVE)
ACCOUNT = "DU1234567"


async def run(cycles: int, directory: Path) -> dict[str, float]:
    """Time `cycles` submit + cancel pairs; returns figures in milliseconds."""
    config = GatewayConfig.fake_local(state_dir=directory)
    sim = SimulatorState()
    sim.set_question_rules([])  # measure the gates, not the broker's reply round trips

    def backend_factory(_: GatewayConfig) -> CpapiBackend:
        return open_simulator_backend(sim, preflight_delays_s=(0.0, 0.0, 0.0))

    audit = AuditLog.open(config.audit_path(), b"b" * 32)
    async with Gateway(config, audit, backend_factory=backend_factory) as gateway:
        approvals: list[str] = []
        for _ in range(cycles):
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
        "cycles": float(cycles),
        "median_ms": statistics.median(durations),
        "p99_ms": durations[min(len(durations) - 1, int(len(durations) * 0.99))],
        "max_ms": durations[-1],
    }


def main() -> None:
    """Parse arguments, run, print, exit 1 on a missed target."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        figures = anyio.run(run, options.cycles, Path(directory))
    passed = figures["median_ms"] <= TARGET_MEDIAN_MS
    if options.json:
        print(json.dumps({**figures, "target_median_ms": TARGET_MEDIAN_MS, "passed": passed}))
    else:
        print(f"gated paper submit+cancel cycles: {int(figures['cycles'])}")
        print(f"median per cycle: {figures['median_ms']:.2f} ms (target <= {TARGET_MEDIAN_MS} ms)")
        print(f"p99 per cycle:    {figures['p99_ms']:.2f} ms")
        print(f"max per cycle:    {figures['max_ms']:.2f} ms")
        print("PASS" if passed else "FAIL")
    raise SystemExit(0 if passed else 1)


if __name__ == "__main__":
    main()
