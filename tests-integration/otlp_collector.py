"""An OpenTelemetry collector for tests: a real OTLP/HTTP receiver on loopback that decodes what arrives."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP receiver: keeps every request body by path and answers each with an empty success."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.bodies: dict[str, list[bytes]] = {}
        self.content_types: set[str] = set()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[tuple[dict[str, str], object]]:
        """Every span received, with its resource's attributes."""
        found: list[tuple[dict[str, str], object]] = []
        with self.lock:
            bodies = list(self.bodies.get("/v1/traces", []))
        for body in bodies:
            for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
                resource = attributes_of(resource_spans.resource.attributes)
                found.extend((resource, span) for scope in resource_spans.scope_spans for span in scope.spans)
        return found

    def metric_names(self) -> set[str]:
        with self.lock:
            bodies = list(self.bodies.get("/v1/metrics", []))
        return {
            metric.name
            for body in bodies
            for resource_metrics in ExportMetricsServiceRequest.FromString(body).resource_metrics
            for scope in resource_metrics.scope_metrics
            for metric in scope.metrics
        }

    def everything(self) -> bytes:
        with self.lock:
            return b"".join(body for bodies in self.bodies.values() for body in bodies)


class _Receive(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with self.server.lock:
            self.server.bodies.setdefault(self.path, []).append(body)
            self.server.content_types.add(self.headers.get("content-type", ""))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def attributes_of(pairs: "list[KeyValue] | object") -> dict[str, str]:
    return {pair.key: pair.value.string_value for pair in pairs}  # pyright: ignore[reportUnknownVariableType,reportUnknownMemberType,reportAttributeAccessIssue,reportGeneralTypeIssues]


@contextmanager
def running_collector() -> Iterator[Collector]:
    """A collector serving on a thread of its own until the block ends."""
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
