"""`ibkr-agent audit export` streams: the same bytes as the whole-value rendering, in flat memory.

A chain of several pages (the export reads 4,096 rows a page) is exported by the real CLI process, in
text and with `--json`; the bytes must equal what printing the whole `AuditExport` gives (the value MCP
callers get), the audit event must carry that value's output hash, and the process's peak memory must
not grow with the chain (before streaming, these 12,000 events took about 210 MB more than start-up).
"""

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_harness import run_cli
from ibkr_gateway_core.audit import AuditEvent, AuditExport, AuditLog
from ibkr_gateway_core.audit.keys import load_audit_key
from ibkr_gateway_core.audit.log import VERIFY_BATCH_ROWS
from ibkr_gateway_core.config import GatewayConfig

EVENTS = 3 * VERIFY_BATCH_ROWS - 288
"""Three pages, the last one short: 12,000 events."""

GROWTH_LIMIT_MB = 32
"""Most the export's peak RSS may exceed `health`'s (streamed: about 16 MB; whole: about 210 MB)."""

PEAK_RSS = """
import atexit, os, sys
def report():
    with open('/proc/self/status', encoding='utf-8') as status:
        peak = next(line for line in status if line.startswith('VmHWM:')).split()[1]
    with open(os.environ['PEAK_RSS_FILE'], 'w', encoding='utf-8') as out:
        out.write(peak)
atexit.register(report)
sys.argv = ['ibkr-agent', *sys.argv[1:]]
from ibkr_gateway_cli.fast import main
main()
"""
"""The real CLI entry point, reporting its own peak RSS (VmHWM of its own memory: a child's `ru_maxrss`
would also count the test process's memory at the fork)."""


def _event(n: int) -> AuditEvent:
    return AuditEvent(
        event_type="tool_completed",
        timestamp=datetime(2026, 12, 1, tzinfo=UTC),
        principal_kind="local_agent",
        principal_subject=f"agent-{n}-é-\U0001f600",  # non-ASCII and beyond the BMP: escaped differently by --json
        scopes=["ibkr:accounts:read"],
        decision="allow",
        result_status="completed",
        metadata={"arguments": {"note": 'a "quoted" \\ back\tslash', "n": n}},
    )


def _whole(location: Path, key: bytes, limit: int) -> AuditExport:
    async def read() -> AuditExport:
        log = AuditLog.open(location, key)
        try:
            return await log.export(limit)
        finally:
            log.close()

    return anyio.run(read)


def _cli_with_peak(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    peak_file = tmp_path / "peak-rss"
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args],
        capture_output=True,
        encoding="utf-8",
        timeout=300,
        check=False,
        env={**env, "PEAK_RSS_FILE": str(peak_file)},
    )
    return proc, int(peak_file.read_text(encoding="utf-8")) / 1024


@pytest.mark.slow
def test_audit_export_streams_the_same_bytes_in_flat_memory(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    health, health_peak = _cli_with_peak(["health"], cli_env, tmp_path)  # creates the state and its key
    assert health.returncode == 0, health.stderr
    monkeypatch.setenv("IBKR_AGENT_STATE_DIR", cli_env["IBKR_AGENT_STATE_DIR"])
    config = GatewayConfig.fake_local()
    key, location = load_audit_key(config), config.audit_path()
    log = AuditLog.open(location, key)
    try:
        log._append_batch_sync(_event(n) for n in range(EVENTS))  # pyright: ignore[reportPrivateUsage]
    finally:
        log.close()
    limit = EVENTS + 1  # the whole chain: `health`'s event and the bulk

    whole = _whole(location, key, limit)  # what `audit export` printed when it held the whole value
    text, text_peak = _cli_with_peak(["audit", "export", "--limit", str(limit)], cli_env, tmp_path)
    assert text.returncode == 0, text.stderr
    assert text.stdout == whole.jsonl
    assert whole.count == limit and whole.jsonl.count("\n") == limit
    _assert_audited_with_the_hash_of(whole, location, key)

    whole = _whole(location, key, limit)  # the chain now ends with the text export's own event
    as_json, json_peak = _cli_with_peak(["--json", "audit", "export", "--limit", str(limit)], cli_env, tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert as_json.stdout == json.dumps(whole.model_dump(mode="json"), indent=2) + "\n"
    assert json.loads(as_json.stdout)["jsonl"] == whole.jsonl
    _assert_audited_with_the_hash_of(whole, location, key)

    for label, peak in (("text", text_peak), ("--json", json_peak)):
        assert peak - health_peak < GROWTH_LIMIT_MB, f"{label}: {peak:.1f} MB vs health {health_peak:.1f} MB"


def _assert_audited_with_the_hash_of(whole: AuditExport, location: Path, key: bytes) -> None:
    async def newest() -> Any:
        log = AuditLog.open(location, key)
        try:
            return (await log.tail(1))[0].event, log.hash_payload(whole)
        finally:
            log.close()

    event, expected = anyio.run(newest)
    assert (event.operation, event.result_status) == ("audit_export", "completed")
    assert event.output_hash == expected


@pytest.mark.slow
def test_an_export_withheld_for_a_secret_marker_prints_nothing(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["health"], cli_env).returncode == 0
    monkeypatch.setenv("IBKR_AGENT_STATE_DIR", cli_env["IBKR_AGENT_STATE_DIR"])
    config = GatewayConfig.fake_local()
    log = AuditLog.open(config.audit_path(), load_audit_key(config))
    try:
        log._append_batch_sync(  # pyright: ignore[reportPrivateUsage]
            [
                *(_event(n) for n in range(VERIFY_BATCH_ROWS + 10)),
                _event(0).model_copy(update={"scopes": ["ibkr:refresh_token"]}),
            ]
        )
    finally:
        log.close()
    proc = run_cli(["--json", "audit", "export", "--limit", "100000"], cli_env)
    assert proc.returncode != 0 and proc.stdout == ""
    assert json.loads(proc.stderr)["code"] == "OUTPUT_UNSAFE"
    assert "Traceback" not in proc.stderr
