"""Metrics and structured logs: what a platform team scrapes and ships, without secrets or account ids.

Metrics are process-wide counters and histograms kept here and rendered in the Prometheus text format
(version 0.0.4) by `render_prometheus`; the HTTP MCP server serves them on `/metrics` when
`observability.metrics_enabled` is on. Labels are closed sets only (operation names from the registry,
outcome, error codes from the catalogue), never an argument, a subject, an account id or a path.

| metric | type | labels |
|---|---|---|
| `ibkr_gateway_calls_total` | counter | `operation`, `outcome` (`ok`, `refused`, `failed`) |
| `ibkr_gateway_call_duration_seconds` | histogram | `operation` |
| `ibkr_gateway_refusals_total` | counter | `code` |
| `ibkr_gateway_broker_requests_total` | counter | |
| `ibkr_gateway_broker_pacing_wait_seconds` | histogram | |
| `ibkr_gateway_audit_append_seconds` | histogram | |
| `ibkr_gateway_audit_appended_events_total` | counter | |

Every gateway call also logs one record on the `ibkr_gateway.calls` logger (INFO) with the operation,
outcome, error code, duration, request id and audit event id; `JsonLogFormatter` renders records as
one JSON object per line (`observability.log_format: json`).

With `observability.otel_enabled` a server also exports OpenTelemetry traces and metrics over OTLP/HTTP
(`enable_opentelemetry`): one span per gateway call with its broker requests and its audit append as
children, and every metric above as an OpenTelemetry instrument of the same name (counters without the
`_total` suffix, which exporters add back). Spans carry the same closed sets as the metrics plus the audit
event id and the request id; never an argument, a principal, an account id or a URL with one in it.
The OpenTelemetry packages (the `ibkr-gateway-core[otel]` extra) are imported only then.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Generator, Iterable, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from .errors import ErrorCode, GatewayError
from .redaction import scrub_text

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from .config import ObservabilityConfig

CALLS_LOGGER: Final = "ibkr_gateway.calls"
"""The logger of the one-line-per-call records."""

_calls_log: Final = logging.getLogger(CALLS_LOGGER)

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the latency histograms."""

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""Media type of `render_prometheus`' output."""

_lock = threading.Lock()


class _Counter:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, labels
        self.values: dict[tuple[str, ...], float] = {}
        self.otel: Any = None
        """The OpenTelemetry counter fed alongside, once `enable_opentelemetry` ran."""

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        with _lock:
            self.values[label_values] = self.values.get(label_values, 0.0) + amount
        if self.otel is not None:
            self.otel.add(amount, dict(zip(self.labels, label_values, strict=True)))

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for key, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.labels, key)} {_number(value)}"


class _Histogram:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, labels
        self.series: dict[tuple[str, ...], tuple[list[int], float, int]] = {}
        """Per label values: (observations in each bucket alone, the last past every bound; sum; count)."""
        self.otel: Any = None
        """The OpenTelemetry histogram fed alongside, once `enable_opentelemetry` ran."""

    def observe(self, seconds: float, *label_values: str) -> None:
        with _lock:
            counts, total, count = self.series.get(label_values, ([0] * (len(LATENCY_BUCKETS) + 1), 0.0, 0))
            counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bound it does not exceed
            self.series[label_values] = (counts, total + seconds, count + 1)
        if self.otel is not None:
            self.otel.record(seconds, dict(zip(self.labels, label_values, strict=True)))

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for key, (counts, total, count) in sorted(self.series.items()):
            for bound, n in zip(LATENCY_BUCKETS, itertools.accumulate(counts), strict=False):  # cumulative
                yield f"{self.name}_bucket{_labels((*self.labels, 'le'), (*key, _number(bound)))} {n}"
            yield f"{self.name}_bucket{_labels((*self.labels, 'le'), (*key, '+Inf'))} {count}"
            yield f"{self.name}_sum{_labels(self.labels, key)} {_number(total)}"
            yield f"{self.name}_count{_labels(self.labels, key)} {count}"


CALLS = _Counter("ibkr_gateway_calls_total", "Gateway calls by operation and outcome.", ("operation", "outcome"))
CALL_SECONDS = _Histogram("ibkr_gateway_call_duration_seconds", "Gateway call latency.", ("operation",))
REFUSALS = _Counter("ibkr_gateway_refusals_total", "Refused or failed calls by error code.", ("code",))
BROKER_REQUESTS = _Counter("ibkr_gateway_broker_requests_total", "Requests sent to the broker.")
PACING_WAIT = _Histogram("ibkr_gateway_broker_pacing_wait_seconds", "Time a broker request waited for its slot.")
AUDIT_APPEND = _Histogram("ibkr_gateway_audit_append_seconds", "Audit append (one group commit) latency.")
AUDIT_EVENTS = _Counter("ibkr_gateway_audit_appended_events_total", "Audit events durably appended.")
_ALL: Final = (CALLS, CALL_SECONDS, REFUSALS, BROKER_REQUESTS, PACING_WAIT, AUDIT_APPEND, AUDIT_EVENTS)


def observe_call(
    operation: str,
    *,
    error_code: str | None,
    refusal: bool,
    seconds: float,
    request_id: str | None,
    audit_event_id: str,
    span: Span | None = None,
) -> None:
    """Count one finished gateway call, log its one-line record, and name and describe its span (`call_span`)."""
    outcome = "ok" if error_code is None else ("refused" if refusal else "failed")
    CALLS.inc(operation, outcome)
    CALL_SECONDS.observe(seconds, operation)
    if error_code is not None:
        REFUSALS.inc(error_code)
    if span is not None:
        _describe_call_span(span, operation, outcome, error_code, request_id, audit_event_id)
    if not _calls_log.isEnabledFor(logging.INFO):
        return
    extra: dict[str, object] = {
        "operation": operation,
        "outcome": outcome,
        "error_code": error_code,
        "duration_ms": round(seconds * 1000, 3),
        "request_id": request_id,
        "audit_event_id": audit_event_id,
    }
    if span is not None:  # the record finds its trace, and the trace its record
        context = span.get_span_context()
        extra["trace_id"], extra["span_id"] = f"{context.trace_id:032x}", f"{context.span_id:016x}"
    _calls_log.info("call %s %s", operation, outcome, extra=extra)


def render_prometheus() -> str:
    """Every metric in the Prometheus text exposition format."""
    with _lock:
        lines = [line for metric in _ALL for line in metric.render()]
    return "\n".join(lines) + "\n"


_RECORD_FIELDS: Final = (
    "operation",
    "outcome",
    "error_code",
    "duration_ms",
    "request_id",
    "audit_event_id",
    "trace_id",
    "span_id",
)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the call fields when present.

    The message passes through the same secret scrubber as error messages; tracebacks are left out
    (they can quote arguments) and only the exception's type is kept.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as one line of JSON."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub_text(record.getMessage()),
        }
        for name in _RECORD_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, separators=(",", ":"), sort_keys=True)


PROJECT_LOGGERS: Final = (
    "ibkr_gateway",
    "ibkr_gateway_core",
    "ibkr_gateway_cpapi",
    "ibkr_gateway_mcp",
    "ibkr_gateway_cli",
)
"""Loggers that get the configured level; every other logger logs warnings and worse only."""


def configure_logging(log_format: str, level: str = "INFO") -> None:
    """Send logs to stderr as text or JSON lines; call once at server start.

    Only the project's own loggers go below WARNING: libraries' INFO lines are not checked for secrets.
    """
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, logging.getLevelNamesMapping()[level]))
    for name in PROJECT_LOGGERS:  # libraries stay at WARNING: an HTTP client's INFO line quotes URLs with account ids
        logging.getLogger(name).setLevel(level)


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True))
    return "{" + pairs + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value)) if abs(value) < 1e15 else repr(value)


# ------------------------------------------------------------------------------------------- OpenTelemetry

SPAN_PREFIX: Final = "ibkr_gateway"
"""Span names and attribute keys start with it: `ibkr_gateway.call list_positions`, `ibkr_gateway.operation`."""

_tracer: Tracer | None = None
"""The tracer once `enable_opentelemetry` ran; None while OpenTelemetry is off (no span is made)."""

_providers: tuple[Any, ...] = ()
"""The tracer and meter providers `enable_opentelemetry` made, for `disable_opentelemetry`."""


def start_server_telemetry(settings: ObservabilityConfig) -> None:
    """What a server does at start with its `observability` settings beyond logging: OpenTelemetry, when on.

    Raises:
        GatewayError: `CONFIG_INVALID` when `otel_enabled` is on and the OpenTelemetry packages are not installed.
    """
    if settings.otel_enabled:
        enable_opentelemetry()


def enable_opentelemetry(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> None:
    """Export spans and metrics from now on; servers call it at start when `observability.otel_enabled` is on.

    By default both go over OTLP/HTTP to the collector the standard `OTEL_EXPORTER_OTLP_*` variables name
    (`http://localhost:4318` when none is set), spans in batches and metrics every
    `OTEL_METRIC_EXPORT_INTERVAL` ms (60 s by default); the resource is `_resource_defaults` under what
    `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` set. The providers made here flush at interpreter
    exit. A second call changes nothing.

    A program that uses the library (`Gateway`) in a process of its own passes its own `tracer_provider` and
    `meter_provider`: the gateway's spans and metrics then go wherever the program's go, sampled by its
    sampler, and `disable_opentelemetry` leaves them running. `span_exporter` and `metric_reader` replace the
    OTLP exporters of the providers made here (tests).

    Raises:
        GatewayError: `CONFIG_INVALID` when the OpenTelemetry packages are not installed.
    """
    global _tracer, _providers
    if _tracer is not None:
        return
    try:
        from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    except ImportError:
        raise GatewayError(
            ErrorCode.CONFIG_INVALID,
            "observability.otel_enabled is on, but the OpenTelemetry packages are not installed.",
            user_action="Install the extra (pip install 'ibkr-gateway-core[otel]'), or turn otel_enabled off.",
        ) from None
    owned: list[SdkTracerProvider | SdkMeterProvider] = []
    resource = Resource.create(_resource_defaults(os.environ))
    if tracer_provider is None:
        if span_exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            span_exporter = OTLPSpanExporter()
        made = SdkTracerProvider(resource=resource, sampler=ALWAYS_ON)  # see `continuing_trace`
        made.add_span_processor(BatchSpanProcessor(span_exporter))
        tracer_provider = made
        owned.append(made)
    if meter_provider is None:
        if metric_reader is None:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            metric_reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        made_meters = SdkMeterProvider(resource=resource, metric_readers=[metric_reader])
        meter_provider = made_meters
        owned.append(made_meters)
    meter = meter_provider.get_meter(SPAN_PREFIX)
    for metric in _ALL:
        if isinstance(metric, _Counter):
            metric.otel = meter.create_counter(metric.name.removesuffix("_total"), description=metric.help)
        else:
            metric.otel = meter.create_histogram(
                metric.name, unit="s", description=metric.help, explicit_bucket_boundaries_advisory=LATENCY_BUCKETS
            )
    _providers = tuple(owned)
    _tracer = tracer_provider.get_tracer(SPAN_PREFIX)


def _resource_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """What the exported resource says unless the standard variables say otherwise (they win).

    Each process is its own `service.instance.id` (a random UUID), so two replicas behind one proxy are
    told apart; `service.version` is the installed `ibkr-gateway-core`.
    """
    from importlib.metadata import version

    given = {
        pair.split("=", 1)[0].strip() for pair in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",") if "=" in pair
    }
    defaults = {
        "service.name": "ibkr-agent-gateway",
        "service.instance.id": str(uuid.uuid4()),
        "service.version": version("ibkr-gateway-core"),
    }
    if environ.get("OTEL_SERVICE_NAME"):
        given.add("service.name")
    return {key: value for key, value in defaults.items() if key not in given}


def disable_opentelemetry() -> None:
    """Stop making spans and metrics, and flush and shut down the providers `enable_opentelemetry` made.

    For tests: a server's providers flush at exit by themselves. A program's own providers are left running.
    """
    global _tracer, _providers
    providers, _providers, _tracer = _providers, (), None
    for metric in _ALL:
        metric.otel = None
    for provider in providers:
        provider.shutdown()


def call_span() -> AbstractContextManager[Span | None]:
    """The span of one gateway call, current while the call runs; does nothing while OpenTelemetry is off.

    Its broker requests and its audit append become its children; `observe_call` names and describes it.
    """
    if _tracer is None:
        return nullcontext()
    return _tracer.start_as_current_span(f"{SPAN_PREFIX}.call", record_exception=False, set_status_on_exception=False)


@contextmanager
def continuing_trace(traceparent: str | None) -> Generator[None]:
    """While the block runs, the calls' spans continue the caller's trace named by a W3C `traceparent` header.

    Only `traceparent` is read: no `tracestate` or baggage text of the caller's reaches what is exported.
    The caller's sampled flag is not obeyed (the tracer samples every call), so a caller cannot switch the
    spans of its own calls off. A malformed header is ignored: the calls start traces of their own.
    """
    if _tracer is None or traceparent is None:
        yield
        return
    from opentelemetry import context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    token = context.attach(TraceContextTextMapPropagator().extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)


@contextmanager
def traced(name: str, attributes: Mapping[str, str | float] | None = None) -> Generator[None]:
    """A child span of the current one around the block (a broker request, an audit append).

    A failure marks it as an error with the `GatewayError` code, or the exception's type: never its message.
    """
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(
        f"{SPAN_PREFIX}.{name}", attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield
        except BaseException as exc:
            _mark_failed(span, exc.code.value if isinstance(exc, GatewayError) else type(exc).__name__)
            raise


def span_event(name: str, attributes: Mapping[str, str | float]) -> None:
    """Add an event to the current span (a pacing wait), when OpenTelemetry is on."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().add_event(f"{SPAN_PREFIX}.{name}", attributes)


_ID_SEGMENT: Final = re.compile(r"[^/]*[0-9][^/]*")
"""A path segment with a digit in it: an account id, a contract id, an order id, a page number."""


def route_template(path: str) -> str:
    """`path` without its query and with every segment holding a digit as `{}`: no account id in a span."""
    return _ID_SEGMENT.sub("{}", path.split("?", 1)[0])


def _describe_call_span(
    span: Span, operation: str, outcome: str, error_code: str | None, request_id: str | None, event_id: str
) -> None:
    span.update_name(f"{SPAN_PREFIX}.call {operation}")
    span.set_attribute(f"{SPAN_PREFIX}.operation", operation)
    span.set_attribute(f"{SPAN_PREFIX}.outcome", outcome)
    span.set_attribute(f"{SPAN_PREFIX}.audit_event_id", event_id)
    if request_id is not None:
        span.set_attribute(f"{SPAN_PREFIX}.request_id", scrub_text(request_id)[:256])
    if error_code is not None:
        span.set_attribute(f"{SPAN_PREFIX}.error_code", error_code)
        _mark_failed(span, error_code)


def _mark_failed(span: Span, code: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, code))
