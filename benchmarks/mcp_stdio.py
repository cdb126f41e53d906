"""What the gateway adds to an MCP tool call over stdio.

    uv run python benchmarks/mcp_stdio.py [--calls 1000] [--mode auto|legacy]

Runs `--calls` sequential `ibkr_accounts_list` calls over stdio against `python -m ibkr_gateway_mcp`
(embedded simulator, a fresh state directory, one audit event per call), then the same number
against a tiny server on the same SDK whose `ibkr_accounts_list` returns a constant: the same result
bytes, input schema and output schema, so the client does the same work for both. Prints p50 and
p99 of each and the p50 difference and ratio. Target: the gateway adds at most 1 ms at p50.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

TOOL = "ibkr_accounts_list"
WARMUP = 50
TARGET_P50_OVERHEAD_MS = 1.0


def serve_constant(payload_path: Path) -> None:
    """The baseline server: one tool answering the recorded result, built like the gateway's tools."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.tools import Tool
    from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
    from mcp.types import ToolAnnotations

    payload = json.loads(payload_path.read_text(encoding="utf-8"))
    result = CallToolResult.model_validate(payload["result"])
    listed = payload["tool"]

    async def constant() -> CallToolResult:
        return result

    tool = Tool(
        fn=constant,
        name=TOOL,
        title=listed.get("title"),
        description=listed.get("description", ""),
        parameters=listed["inputSchema"],
        fn_metadata=FuncMetadata(arg_model=ArgModelBase, output_schema=listed["outputSchema"]),
        is_async=True,
        context_kwarg=None,
        annotations=ToolAnnotations.model_validate(listed.get("annotations") or {}),
    )
    MCPServer("constant", tools=[tool]).run("stdio")


def percentile(samples: list[float], q: int) -> float:
    """The q-th percentile (1..99) of `samples`, in the samples' unit."""
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


async def time_calls(params: StdioServerParameters, calls: int, mode: str) -> tuple[list[float], CallToolResult, Any]:
    """Latencies (ms) of `calls` sequential calls after a warm-up, one result, and the tool as listed."""
    async with Client(params, mode=mode) as client:
        tools = await client.list_tools()
        listed = next(tool for tool in tools.tools if tool.name == TOOL)
        result = await client.call_tool(TOOL, {})
        assert not result.is_error, result
        for _ in range(WARMUP):
            await client.call_tool(TOOL, {})
        samples: list[float] = []
        for _ in range(calls):
            started = time.perf_counter()
            answer = await client.call_tool(TOOL, {})
            samples.append((time.perf_counter() - started) * 1000)
            assert not answer.is_error
    return samples, result, listed.model_dump(mode="json", by_alias=True, exclude_none=True)


def report(name: str, samples: list[float]) -> tuple[float, float]:
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(
        f"{name:<10} n={len(samples)}  p50={p50:7.3f} ms  p99={p99:7.3f} ms  mean={statistics.fmean(samples):7.3f} ms"
    )
    return p50, p99


async def main(calls: int, mode: str) -> int:
    with tempfile.TemporaryDirectory(prefix="ibkr-mcp-bench-") as scratch:
        env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
        env["IBKR_AGENT_STATE_DIR"] = str(Path(scratch) / "state")
        gateway_params = StdioServerParameters(command=sys.executable, args=["-m", "ibkr_gateway_mcp"], env=env)
        gateway_samples, result, listed = await time_calls(gateway_params, calls, mode)

        payload = Path(scratch) / "constant.json"
        payload.write_text(
            json.dumps({"result": result.model_dump(mode="json", by_alias=True), "tool": listed}), encoding="utf-8"
        )
        baseline_params = StdioServerParameters(
            command=sys.executable, args=[str(Path(__file__).resolve()), "--serve-constant", str(payload)], env=env
        )
        baseline_samples, _, _ = await time_calls(baseline_params, calls, mode)

    print(f"{calls} sequential {TOOL} calls over stdio, client mode {mode!r}, {WARMUP} warm-up calls each")
    base_p50, _ = report("constant", baseline_samples)
    gate_p50, _ = report("gateway", gateway_samples)
    overhead = gate_p50 - base_p50
    ratio = gate_p50 / base_p50
    print(f"p50 difference: {overhead:+.3f} ms  ratio: {ratio:.2f}x  (target <= +{TARGET_P50_OVERHEAD_MS} ms)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto")
    parser.add_argument("--serve-constant", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_constant is not None:
        serve_constant(options.serve_constant)
        raise SystemExit(0)
    raise SystemExit(anyio.run(main, options.calls, options.mode))
