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
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from .redaction import scrub_text

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

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        with _lock:
            self.values[label_values] = self.values.get(label_values, 0.0) + amount

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

    def observe(self, seconds: float, *label_values: str) -> None:
        with _lock:
            counts, total, count = self.series.get(label_values, ([0] * (len(LATENCY_BUCKETS) + 1), 0.0, 0))
            counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bound it does not exceed
            self.series[label_values] = (counts, total + seconds, count + 1)

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
) -> None:
    """Count one finished gateway call and log its one-line record."""
    outcome = "ok" if error_code is None else ("refused" if refusal else "failed")
    CALLS.inc(operation, outcome)
    CALL_SECONDS.observe(seconds, operation)
    if error_code is not None:
        REFUSALS.inc(error_code)
    if not _calls_log.isEnabledFor(logging.INFO):
        return
    _calls_log.info(
        "call %s %s",
        operation,
        outcome,
        extra={
            "operation": operation,
            "outcome": outcome,
            "error_code": error_code,
            "duration_ms": round(seconds * 1000, 3),
            "request_id": request_id,
            "audit_event_id": audit_event_id,
        },
    )


def render_prometheus() -> str:
    """Every metric in the Prometheus text exposition format."""
    with _lock:
        lines = [line for metric in _ALL for line in metric.render()]
    return "\n".join(lines) + "\n"


_RECORD_FIELDS: Final = ("operation", "outcome", "error_code", "duration_ms", "request_id", "audit_event_id")


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
