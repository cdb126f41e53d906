"""`ibkr-agent mcp serve` with `observability.otel_enabled` exports its traces and metrics over OTLP/HTTP.

The collector is a real HTTP server on loopback that decodes what arrives with the OTLP protobuf
definitions; the MCP client is the SDK's, over stdio, as an agent's would be.
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from cli_harness import ibkr_agent
from mcp import Client, StdioServerParameters
from otlp_collector import Collector, attributes_of, running_collector

pytestmark = pytest.mark.anyio

ACCOUNT = "DU1234567"


@pytest.fixture
def collector() -> Iterator[Collector]:
    with running_collector() as server:
        yield server


async def test_mcp_serve_exports_a_span_per_call_and_the_metrics_without_account_ids(
    collector: Collector, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("observability:\n  otel_enabled: true\n", encoding="utf-8")
    state = tmp_path / "state"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "IBKR_AGENT_STATE_DIR": str(state),
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    }
    command, *prefix = ibkr_agent()
    params = StdioServerParameters(command=command, args=[*prefix, "--config", str(config), "mcp", "serve"], env=env)
    with anyio.fail_after(60):
        async with Client(params) as client:
            accounts = await client.call_tool("ibkr_accounts_list", {})
            positions = await client.call_tool("ibkr_positions_list", {"account_id": ACCOUNT})
            refused = await client.call_tool("ibkr_positions_list", {"account_id": "DU9999999"})
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # batches leave every 50 ms, metrics every 200 ms
                names = {span.name for _, span in collector.spans()}  # pyright: ignore[reportAttributeAccessIssue,reportUnknownMemberType]
                if "ibkr_gateway.call list_positions" in names and "ibkr_gateway_calls" in collector.metric_names():
                    break
                await anyio.sleep(0.1)
    assert not accounts.is_error and not positions.is_error and refused.is_error
    spans = collector.spans()
    by_name: dict[str, list[object]] = {}
    for _, span in spans:
        by_name.setdefault(span.name, []).append(span)  # pyright: ignore[reportAttributeAccessIssue,reportUnknownMemberType,reportUnknownArgumentType]
    assert {"ibkr_gateway.call list_accounts", "ibkr_gateway.call list_positions"} <= set(by_name)
    calls = {
        attributes_of(span.attributes)["ibkr_gateway.outcome"] for span in by_name["ibkr_gateway.call list_positions"]
    }  # pyright: ignore[reportAttributeAccessIssue,reportUnknownMemberType,reportUnknownArgumentType]
    assert calls == {"ok", "refused"}
    call_ids = {span.span_id for span in by_name["ibkr_gateway.call list_positions"]}  # pyright: ignore[reportAttributeAccessIssue,reportUnknownMemberType,reportUnknownVariableType]
    children = [span for span in by_name.get("ibkr_gateway.broker_request", []) if span.parent_span_id in call_ids]  # pyright: ignore[reportAttributeAccessIssue,reportUnknownMemberType]
    assert children, "the positions read's broker requests nest under its call span"
    assert {resource.get("service.name") for resource, _ in spans} == {"ibkr-agent-gateway"}
    assert len({resource.get("service.instance.id") for resource, _ in spans}) == 1  # one process, one instance
    assert {"ibkr_gateway_calls", "ibkr_gateway_call_duration_seconds"} <= collector.metric_names()
    assert collector.content_types == {"application/x-protobuf"}
    sent = collector.everything()
    for forbidden in (ACCOUNT, "DU9999999", str(tmp_path)):
        assert forbidden.encode() not in sent


@pytest.mark.parametrize("server", [["mcp", "serve"], ["desk", "serve"]], ids=["mcp", "desk"])
def test_turning_it_on_where_the_packages_are_missing_is_refused_at_start(tmp_path: Path, server: list[str]) -> None:
    """Where the extra is missing the server does not start untraced: it refuses with a config error."""
    config = tmp_path / "gateway.yaml"
    config.write_text("observability:\n  otel_enabled: true\n", encoding="utf-8")
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nsys.modules['opentelemetry.sdk.metrics'] = None  # as if the extra were not installed\n",
        encoding="utf-8",
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "IBKR_AGENT_STATE_DIR": str(tmp_path / "state"),
        "PYTHONPATH": str(hide),
    }
    proc = subprocess.run(
        [*ibkr_agent(), "--json", "--config", str(config), *server],
        input="",
        capture_output=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "CONFIG_INVALID" in proc.stdout + proc.stderr
    assert "ibkr-gateway-core[otel]" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_telemetry_benchmark_runs_and_reaches_its_collector() -> None:
    """`benchmarks/telemetry.py` with a few calls: both modes timed, and the collector got the exports."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "telemetry.py"), "--calls", "40", "--blocks", "2"],
        capture_output=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ratio on / off" in proc.stdout
    received = int(proc.stdout.rsplit("requests the collector received: ", 1)[1].split()[0])
    assert received > 0
