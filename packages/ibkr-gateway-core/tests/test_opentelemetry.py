"""OpenTelemetry: one span per gateway call with its broker requests and audit append as children, and the
metrics as instruments of the same names; never an account id, an argument or a secret in what is exported."""

import importlib.metadata
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ibkr_gateway_core import observability
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.observability import (
    CALLS_LOGGER,
    LATENCY_BUCKETS,
    JsonLogFormatter,
    call_span,
    continuing_trace,
    disable_opentelemetry,
    enable_opentelemetry,
    route_template,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

pytestmark = pytest.mark.anyio

ACCOUNT = "DU1234567"
INVISIBLE = "DU9999999"
CANARY = "Bearer sk-live-canary-0123456789abcdef"


class Exported:
    """What one test's calls exported: the finished spans and one collection of the metrics."""

    def __init__(self) -> None:
        self.span_exporter = InMemorySpanExporter()
        self.metric_reader = InMemoryMetricReader()
        self.spans: list[ReadableSpan] = []
        self.metrics: MetricsData | None = None

    def finish(self) -> None:
        """Collect the metrics, then flush and stop the exporters (spans leave in batches)."""
        self.metrics = self.metric_reader.get_metrics_data()
        disable_opentelemetry()
        self.spans = list(self.span_exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans if span.name == name]

    def metric_points(self, name: str) -> list[object]:
        assert self.metrics is not None
        return [
            point
            for resource in self.metrics.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def text(self) -> str:
        """Everything exported, as the JSON the SDK renders it to."""
        assert self.metrics is not None
        return "\n".join([*(span.to_json() for span in self.spans), self.metrics.to_json()])


@pytest.fixture
def exported() -> Iterator[Exported]:
    found = Exported()
    enable_opentelemetry(span_exporter=found.span_exporter, metric_reader=found.metric_reader)
    try:
        yield found
    finally:
        disable_opentelemetry()


def _gateway(tmp_path: Path) -> Gateway:
    return Gateway(GatewayConfig.fake_local(state_dir=tmp_path), AuditLog.open(tmp_path / "state.sqlite3", b"o" * 32))


async def test_a_call_is_one_span_with_its_broker_requests_and_its_audit_append_as_children(
    tmp_path: Path, exported: Exported
) -> None:
    async with _gateway(tmp_path) as gateway:
        result = await gateway.call("list_positions", {"account_id": ACCOUNT}, request_id="ticket-42")
    exported.finish()
    [call] = exported.named("ibkr_gateway.call list_positions")
    assert call.attributes is not None and call.context is not None
    assert dict(call.attributes) == {
        "ibkr_gateway.operation": "list_positions",
        "ibkr_gateway.outcome": "ok",
        "ibkr_gateway.audit_event_id": result.audit_event_id,
        "ibkr_gateway.request_id": "ticket-42",
    }
    assert call.status.status_code is StatusCode.UNSET
    children = [
        span for span in exported.spans if span.parent is not None and span.parent.span_id == call.context.span_id
    ]
    names = {span.name for span in children}
    assert names == {"ibkr_gateway.broker_request", "ibkr_gateway.audit_append"}
    requests = exported.named("ibkr_gateway.broker_request")
    assert all(span.attributes is not None for span in requests)
    templates = {str(span.attributes["url.template"]) for span in requests if span.attributes is not None}
    assert "/portfolio/{}/positions/{}" in templates
    assert all(span.context is not None and span.context.trace_id == call.context.trace_id for span in children)


async def test_a_refusal_marks_its_span_with_the_code_only(tmp_path: Path, exported: Exported) -> None:
    async with _gateway(tmp_path) as gateway:
        with pytest.raises(GatewayError) as refused:
            await gateway.call("list_positions", {"account_id": INVISIBLE})
        with pytest.raises(GatewayError) as unknown:
            await gateway.call(CANARY)
    exported.finish()
    assert refused.value.code is ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT
    assert unknown.value.code is ErrorCode.INPUT_UNKNOWN_OPERATION
    [call] = exported.named("ibkr_gateway.call list_positions")
    assert call.attributes is not None
    assert call.attributes["ibkr_gateway.outcome"] == "refused"
    assert call.attributes["ibkr_gateway.error_code"] == "INPUT_UNAUTHORIZED_ACCOUNT"
    assert call.attributes["ibkr_gateway.audit_event_id"] == refused.value.audit_event_id
    assert (call.status.status_code, call.status.description) == (StatusCode.ERROR, "INPUT_UNAUTHORIZED_ACCOUNT")
    [stranger] = exported.named("ibkr_gateway.call unknown")
    assert stranger.status.description == "INPUT_UNKNOWN_OPERATION"


async def test_nothing_exported_holds_an_account_id_an_argument_or_a_secret(tmp_path: Path, exported: Exported) -> None:
    async with _gateway(tmp_path) as gateway:
        await gateway.call("list_accounts")
        await gateway.call("list_positions", {"account_id": ACCOUNT})
        await gateway.call("portfolio_snapshot", {"account_id": ACCOUNT})
        with pytest.raises(GatewayError) as invisible:
            await gateway.call("list_positions", {"account_id": INVISIBLE})
        with pytest.raises(GatewayError) as unknown:
            await gateway.call(CANARY, request_id=CANARY)
        with pytest.raises(GatewayError) as hostile:
            await gateway.call("list_positions", {"account_id": ACCOUNT, "note": CANARY}, request_id=CANARY)
    exported.finish()
    assert invisible.value.code is ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT
    assert unknown.value.code is ErrorCode.INPUT_UNKNOWN_OPERATION
    assert hostile.value.code is not None
    text = exported.text()
    assert len(exported.spans) >= 10 and "ibkr_gateway_calls" in text
    for forbidden in (ACCOUNT, INVISIBLE, "sk-live-canary", str(tmp_path)):
        assert forbidden not in text


def _counter_values() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every Prometheus counter's value per label set, as the process holds them now."""
    return {
        metric.name.removesuffix("_total"): {
            tuple(zip(metric.labels, key, strict=True)): value for key, value in metric.values.items()
        }
        for metric in observability._ALL  # pyright: ignore[reportPrivateUsage]
        if isinstance(metric, observability._Counter)  # pyright: ignore[reportPrivateUsage]
    }


async def test_the_metrics_are_the_prometheus_metrics_as_instruments(tmp_path: Path, exported: Exported) -> None:
    before = _counter_values()
    async with _gateway(tmp_path) as gateway:
        for _ in range(3):
            await gateway.call("list_positions", {"account_id": ACCOUNT})
        with pytest.raises(GatewayError) as refused:
            await gateway.call("list_positions", {"account_id": INVISIBLE})
    after = _counter_values()
    exported.finish()
    assert refused.value.code is ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT
    for name, values in after.items():  # every counter moved in OpenTelemetry exactly as in Prometheus
        moved = {key: value - before[name].get(key, 0.0) for key, value in values.items()}
        exported_values = {
            tuple(sorted(dict(point.attributes or {}).items())): point.value  # pyright: ignore[reportAttributeAccessIssue,reportUnknownMemberType,reportUnknownArgumentType]
            for point in exported.metric_points(name)
        }
        assert exported_values == {tuple(sorted(key)): value for key, value in moved.items() if value}, name
    assert after["ibkr_gateway_calls"][(("operation", "list_positions"), ("outcome", "ok"))] >= 3
    [latency] = exported.metric_points("ibkr_gateway_call_duration_seconds")
    assert tuple(latency.explicit_bounds) == LATENCY_BUCKETS  # pyright: ignore[reportAttributeAccessIssue,reportUnknownMemberType,reportUnknownArgumentType]
    assert latency.count == 4  # pyright: ignore[reportAttributeAccessIssue,reportUnknownMemberType]
    [appends] = exported.metric_points("ibkr_gateway_audit_append_seconds")
    assert appends.count >= 1  # pyright: ignore[reportAttributeAccessIssue,reportUnknownMemberType]


async def test_off_by_default_no_span_is_made(tmp_path: Path) -> None:
    assert observability._tracer is None  # pyright: ignore[reportPrivateUsage]
    with call_span() as span:
        assert span is None
    async with _gateway(tmp_path) as gateway:
        await gateway.call("list_accounts")


def test_turning_it_on_without_the_packages_refuses_with_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.metrics", None)  # as if the extra were not installed
    with pytest.raises(GatewayError) as caught:
        enable_opentelemetry(span_exporter=InMemorySpanExporter(), metric_reader=InMemoryMetricReader())
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert "ibkr-gateway-core[otel]" in (caught.value.user_action or "")
    assert observability._tracer is None  # pyright: ignore[reportPrivateUsage]


@given(st.lists(st.text(alphabet="abcDU0123456789-_.", min_size=1, max_size=12), min_size=1, max_size=6))
def test_a_route_template_keeps_no_digit_of_the_path(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    template = route_template(path + "?conids=265598")
    assert not any(character.isdigit() for character in template)
    assert template.count("/") == path.count("/")


def test_route_templates_of_real_paths() -> None:
    assert route_template("/portfolio/DU1234567/positions/0") == "/portfolio/{}/positions/{}"
    assert route_template("/iserver/marketdata/snapshot?conids=265598&fields=31") == "/iserver/marketdata/snapshot"
    assert route_template("/iserver/account/DU1234567/order/1234") == "/iserver/account/{}/order/{}"
    assert route_template("/iserver/accounts") == "/iserver/accounts"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(
            "{}-{}-{}-{}".format,
            st.text(alphabet="0123456789abcdefxyz", min_size=0, max_size=3),
            st.text(alphabet="0123456789abcdef", min_size=30, max_size=34),
            st.text(alphabet="0123456789abcdef", min_size=14, max_size=18),
            st.text(alphabet="0123456789abcdefz", min_size=1, max_size=3),
        ),
    )
)
def test_any_traceparent_a_caller_sends_leaves_the_call_working_and_traced(text: str) -> None:
    """Whatever arrives as `traceparent`, the call runs and has its span: in the caller's trace or a new one."""
    found = Exported()
    enable_opentelemetry(span_exporter=found.span_exporter, metric_reader=found.metric_reader)
    try:
        with continuing_trace(text), call_span() as span:
            assert span is not None and span.get_span_context().is_valid
    finally:
        found.finish()
    [recorded] = found.spans
    assert recorded.context is not None and recorded.context.trace_flags.sampled
    if recorded.parent is not None:  # accepted: exactly the ids the header holds
        assert f"{recorded.parent.trace_id:032x}-{recorded.parent.span_id:016x}" in text


async def test_the_call_log_record_names_the_calls_trace_and_span(tmp_path: Path, exported: Exported) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(logging.INFO)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger(CALLS_LOGGER)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with _gateway(tmp_path) as gateway:
            await gateway.call("list_accounts")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    exported.finish()
    [line] = lines
    record = json.loads(line)
    [call] = exported.named("ibkr_gateway.call list_accounts")
    assert call.context is not None
    assert (record["trace_id"], record["span_id"]) == (f"{call.context.trace_id:032x}", f"{call.context.span_id:016x}")


def _resource_of_one_span(monkeypatch: pytest.MonkeyPatch, **environ: str) -> dict[str, object]:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    found = Exported()
    enable_opentelemetry(span_exporter=found.span_exporter, metric_reader=found.metric_reader)
    try:
        with call_span():
            pass
    finally:
        found.finish()
    [span] = found.spans
    return dict(span.resource.attributes)


def test_each_process_is_its_own_service_instance_and_the_standard_variables_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = _resource_of_one_span(monkeypatch), _resource_of_one_span(monkeypatch)
    assert first["service.name"] == second["service.name"] == "ibkr-agent-gateway"
    assert first["service.instance.id"] != second["service.instance.id"]
    assert str(first["service.version"]) == importlib.metadata.version("ibkr-gateway-core")
    named = _resource_of_one_span(
        monkeypatch,
        OTEL_SERVICE_NAME="trading-gateway",
        OTEL_RESOURCE_ATTRIBUTES="service.instance.id=replica-a,deployment.environment=prod",
    )
    assert (named["service.name"], named["service.instance.id"]) == ("trading-gateway", "replica-a")
    assert named["deployment.environment"] == "prod"


async def test_a_program_using_the_library_can_send_the_gateways_telemetry_through_its_own_providers(
    tmp_path: Path,
) -> None:
    """Its providers receive the spans and metrics, and stay running after `disable_opentelemetry`."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[metrics])
    enable_opentelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        with tracer_provider.get_tracer("the program").start_as_current_span("the program's work") as work:
            async with _gateway(tmp_path) as gateway:
                await gateway.call("list_accounts")
    finally:
        disable_opentelemetry()
    [call] = [span for span in spans.get_finished_spans() if span.name == "ibkr_gateway.call list_accounts"]
    assert call.parent is not None and call.parent.span_id == work.get_span_context().span_id
    data = metrics.get_metrics_data()
    assert data is not None
    names = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert "ibkr_gateway_calls" in names
    with tracer_provider.get_tracer("the program").start_as_current_span("after"):
        pass  # still running: not shut down by disable_opentelemetry
    assert spans.get_finished_spans()[-1].name == "after"
    tracer_provider.shutdown()
    meter_provider.shutdown()
