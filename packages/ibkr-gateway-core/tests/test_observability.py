"""Metrics and JSON call logs: counted by operation, outcome and code; never a secret or an account id."""

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.observability import (
    CALLS_LOGGER,
    LATENCY_BUCKETS,
    JsonLogFormatter,
    _Histogram,  # pyright: ignore[reportPrivateUsage]
    _number,  # pyright: ignore[reportPrivateUsage]
    render_prometheus,
)
from ibkr_gateway_core.state import StateLocation

pytestmark = pytest.mark.anyio

ACCOUNT = "DU1234567"
INVISIBLE = "DU9999999"
CANARY = "Bearer sk-live-canary-0123456789abcdef"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonLogFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def call_log() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger(CALLS_LOGGER)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + ("{" + wanted + "}" if labels else "")) + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_calls_are_counted_timed_and_logged_without_account_ids_or_secrets(
    state_location: StateLocation, tmp_path: Path, call_log: Lines
) -> None:
    before = render_prometheus()
    config = GatewayConfig.fake_local(state_dir=tmp_path)
    async with Gateway(config, AuditLog.open(state_location, b"o" * 32)) as gateway:
        ok = await gateway.call("list_accounts")
        positions = await gateway.call("list_positions", {"account_id": ACCOUNT})
        with pytest.raises(GatewayError) as invisible:
            await gateway.call("list_positions", {"account_id": INVISIBLE})
        with pytest.raises(GatewayError) as unknown:
            await gateway.call(CANARY)
        with pytest.raises(GatewayError) as hostile:
            await gateway.call("list_positions", {"account_id": ACCOUNT, "note": CANARY})
    after = render_prometheus()
    assert invisible.value.code is ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT
    assert unknown.value.code is ErrorCode.INPUT_UNKNOWN_OPERATION

    def delta(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert delta("ibkr_gateway_calls_total", operation="list_accounts", outcome="ok") == 1
    assert delta("ibkr_gateway_calls_total", operation="list_positions", outcome="ok") == 1
    assert delta("ibkr_gateway_calls_total", operation="list_positions", outcome="refused") == 2
    assert delta("ibkr_gateway_calls_total", operation="unknown", outcome="refused") == 1
    assert delta("ibkr_gateway_refusals_total", code="INPUT_UNAUTHORIZED_ACCOUNT") == 1
    assert delta("ibkr_gateway_refusals_total", code=hostile.value.code.value) >= 1
    assert delta("ibkr_gateway_call_duration_seconds_count", operation="list_positions") == 3
    assert delta("ibkr_gateway_audit_appended_events_total") >= 5
    assert delta("ibkr_gateway_audit_append_seconds_count") >= 1
    assert "# TYPE ibkr_gateway_call_duration_seconds histogram" in after

    records = [json.loads(line) for line in call_log.lines]
    assert [r["audit_event_id"] for r in records] == [
        ok.audit_event_id,
        positions.audit_event_id,
        invisible.value.audit_event_id,
        unknown.value.audit_event_id,
        hostile.value.audit_event_id,
    ]
    assert records[2]["error_code"] == "INPUT_UNAUTHORIZED_ACCOUNT" and records[2]["outcome"] == "refused"
    assert all(r["level"] == "info" and r["logger"] == CALLS_LOGGER and r["duration_ms"] >= 0 for r in records)
    for text in (after, *call_log.lines):
        for canary in (ACCOUNT, INVISIBLE, "sk-live-canary", str(tmp_path)):
            assert canary not in text


async def test_the_json_formatter_scrubs_messages_and_drops_tracebacks() -> None:
    formatter = JsonLogFormatter()
    try:
        raise ValueError(CANARY)
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed with %s", (CANARY,), exc_info=None)
        import sys

        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    entry = json.loads(line)
    assert "sk-live-canary" not in line
    assert entry["exception"] == "ValueError" and entry["level"] == "error"


@settings(max_examples=200, deadline=None)
@given(
    seconds=st.lists(
        st.floats(min_value=0, max_value=100, allow_nan=False) | st.sampled_from(LATENCY_BUCKETS), max_size=40
    )
)
def test_a_histogram_bucket_counts_every_observation_up_to_its_bound(seconds: list[float]) -> None:
    """Prometheus buckets are cumulative: `le="0.01"` counts each observation of at most 0.01 s, `+Inf` all."""
    histogram = _Histogram("h", "help", ("operation",))
    for value in seconds:
        histogram.observe(value, "op")
    text = "\n".join(histogram.render())
    for bound in LATENCY_BUCKETS:
        expected = sum(1 for value in seconds if value <= bound)
        assert f'h_bucket{{operation="op",le="{_number(bound)}"}} {expected}' in text or not seconds
    if seconds:
        assert f'h_bucket{{operation="op",le="+Inf"}} {len(seconds)}' in text
        assert f'h_count{{operation="op"}} {len(seconds)}' in text
