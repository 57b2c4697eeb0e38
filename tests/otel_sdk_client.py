#!/usr/bin/env python3
"""A real OpenTelemetry Python SDK client for tests/it/otel_sdk.rs.

Sends COUNT log records, COUNT spans and a counter and a gauge (METRIC_POINTS
data points together) to an OTLP endpoint with the unmodified SDK exporters,
over gRPC or HTTP/protobuf, every record under a Resource with
k8s.namespace.name=NAMESPACE.

Exits 0 only if every export reported SUCCESS and covered every record; the
SDK's processors swallow export failures, so each exporter is wrapped to keep
its results. Over HTTP a requests.Session hook also checks each response: a
2xx with a protobuf Export*ServiceResponse body and no rejected records in
partial_success.

Prints one JSON summary line on stdout.
"""

import argparse
import json
import logging
import sys
import threading

METRIC_POINTS = 7  # 4 counter attribute sets + 3 gauge attribute sets

INSTALL_HINT = (
    "the OpenTelemetry Python SDK is not installed: run "
    "`python3 -m pip install -r tests/requirements.txt`"
)

try:
    import requests
    from opentelemetry import trace as trace_api
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceResponse,
    )
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceResponse,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import (
        BatchLogRecordProcessor,
        LogRecordExporter,
        LogRecordExportResult,
    )
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        InMemoryMetricReader,
        MetricExportResult,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
except ImportError as e:  # pragma: no cover - the message is the point
    print(f"otel_sdk_client: {INSTALL_HINT} ({e})", file=sys.stderr)
    sys.exit(3)


class Results:
    """What the exporters reported, shared by the wrappers and the hook."""

    def __init__(self):
        self.lock = threading.Lock()
        self.failures = []
        self.exported = {"logs": 0, "spans": 0, "metric_points": 0}
        self.http_responses = []

    def record(self, signal, ok, n, detail=""):
        with self.lock:
            if ok:
                self.exported[signal] += n
            else:
                self.failures.append(f"{signal}: export of {n} failed {detail}")

    def fail(self, msg):
        with self.lock:
            self.failures.append(msg)


class CheckedLogExporter(LogRecordExporter):
    """Delegates to the real exporter and keeps its results."""

    def __init__(self, inner, results):
        self.inner = inner
        self.results = results

    def export(self, batch):
        result = self.inner.export(batch)
        ok = result == LogRecordExportResult.SUCCESS
        self.results.record("logs", ok, len(batch), str(result))
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


class CheckedSpanExporter(SpanExporter):
    """Delegates to the real exporter and keeps its results."""

    def __init__(self, inner, results):
        self.inner = inner
        self.results = results

    def export(self, spans):
        result = self.inner.export(spans)
        ok = result == SpanExportResult.SUCCESS
        self.results.record("spans", ok, len(spans), str(result))
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


RESPONSE_TYPES = {
    "/v1/logs": ("logs", ExportLogsServiceResponse, "rejected_log_records"),
    "/v1/metrics": (
        "metrics",
        ExportMetricsServiceResponse,
        "rejected_data_points",
    ),
    "/v1/traces": ("traces", ExportTraceServiceResponse, "rejected_spans"),
}


def response_checker(results):
    """A requests response hook: every OTLP/HTTP answer must be a 2xx
    protobuf Export*ServiceResponse without rejected records."""

    def hook(response, *_args, **_kwargs):
        path = requests.utils.urlparse(response.url).path
        signal, message_type, rejected_field = RESPONSE_TYPES.get(
            path, (path, None, None)
        )
        content_type = response.headers.get("content-type", "")
        seen = {
            "signal": signal,
            "status": response.status_code,
            "content_type": content_type,
            "body_bytes": len(response.content),
            "request_encoding": response.request.headers.get("content-encoding"),
        }
        with results.lock:
            results.http_responses.append(seen)
        if message_type is None:
            results.fail(f"unexpected request path {path}")
            return
        if not 200 <= response.status_code < 300:
            results.fail(f"{signal}: HTTP {response.status_code}: {response.text!r}")
            return
        if not content_type.startswith("application/x-protobuf"):
            results.fail(f"{signal}: response content-type {content_type!r}")
        try:
            parsed = message_type.FromString(response.content)
        except Exception as e:  # noqa: BLE001 - any decode error is a failure
            results.fail(f"{signal}: response body is not {message_type.__name__}: {e}")
            return
        if parsed.HasField("partial_success"):
            rejected = getattr(parsed.partial_success, rejected_field)
            seen["partial_success"] = {
                rejected_field: rejected,
                "error_message": parsed.partial_success.error_message,
            }
            if rejected:
                results.fail(
                    f"{signal}: partial_success rejected {rejected}: "
                    f"{parsed.partial_success.error_message!r}"
                )

    return hook


def exporters(protocol, endpoint, session):
    """The three real SDK exporters for `protocol`."""
    if protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
            OTLPLogExporter,
        )
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter,
        )

        return (
            OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=10),
            OTLPMetricExporter(
                endpoint=endpoint,
                insecure=True,
                timeout=10,
                compression=grpc.Compression.Gzip,
            ),
            OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10),
        )
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (
        OTLPLogExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter,
    )

    base = endpoint.rstrip("/")
    return (
        OTLPLogExporter(
            endpoint=f"{base}/v1/logs",
            timeout=10,
            compression=Compression.Gzip,
            session=session,
        ),
        OTLPMetricExporter(
            endpoint=f"{base}/v1/metrics",
            timeout=10,
            compression=Compression.NoCompression,
            session=session,
        ),
        OTLPSpanExporter(
            endpoint=f"{base}/v1/traces",
            timeout=10,
            compression=Compression.Gzip,
            session=session,
        ),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--protocol", choices=["grpc", "http"], required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--namespace", required=True)
    args = parser.parse_args()

    results = Results()
    session = None
    if args.protocol == "http":
        session = requests.Session()
        session.hooks["response"].append(response_checker(results))
    log_exporter, metric_exporter, span_exporter = exporters(
        args.protocol, args.endpoint, session
    )
    resource = Resource.create(
        {
            "service.name": "seedgate-sdk-test",
            "k8s.namespace.name": args.namespace,
        }
    )

    # Logs: through the stdlib logging bridge, batched like a real service.
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(
            CheckedLogExporter(log_exporter, results), max_export_batch_size=16
        )
    )
    logger = logging.getLogger(f"seedgate.sdk.{args.protocol}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
    for i in range(args.count):
        logger.info("sdk log record %d", i, extra={"seedgate.sdk.index": i})

    # Spans: nested parent/child pairs, batched.
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            CheckedSpanExporter(span_exporter, results), max_export_batch_size=16
        )
    )
    tracer = tracer_provider.get_tracer("seedgate.sdk")
    emitted = 0
    while emitted < args.count:
        with tracer.start_as_current_span("parent", kind=trace_api.SpanKind.SERVER) as parent:
            parent.set_attribute("seedgate.sdk.index", emitted)
            emitted += 1
            if emitted < args.count:
                with tracer.start_as_current_span("child") as child:
                    child.set_attribute("seedgate.sdk.index", emitted)
                    emitted += 1

    # Metrics: one collection, exported by hand so its result is checked.
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meter_provider.get_meter("seedgate.sdk")
    counter = meter.create_counter("seedgate.sdk.requests", unit="1")
    for i in range(max(args.count, 4)):
        counter.add(1, {"route": f"/r{i % 4}"})
    gauge = meter.create_gauge("seedgate.sdk.temperature", unit="Cel")
    for zone in range(3):
        gauge.set(20.0 + zone, {"zone": f"z{zone}"})
    metrics_data = reader.get_metrics_data()
    points = sum(
        len(m.data.data_points)
        for rm in metrics_data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    )
    if points != METRIC_POINTS:
        results.fail(f"collected {points} metric data points, expected {METRIC_POINTS}")
    metric_result = metric_exporter.export(metrics_data, timeout_millis=10_000)
    results.record(
        "metric_points",
        metric_result == MetricExportResult.SUCCESS,
        points,
        str(metric_result),
    )

    if not logger_provider.force_flush(30_000):
        results.fail("logs: force_flush timed out")
    if not tracer_provider.force_flush(30_000):
        results.fail("spans: force_flush timed out")
    logger_provider.shutdown()
    tracer_provider.shutdown()
    meter_provider.shutdown()
    metric_exporter.shutdown()

    expected = {"logs": args.count, "spans": args.count, "metric_points": METRIC_POINTS}
    for signal, n in expected.items():
        if results.exported[signal] != n:
            results.fail(f"{signal}: {results.exported[signal]} exported successfully, expected {n}")
    summary = {
        "protocol": args.protocol,
        "namespace": args.namespace,
        "exported": results.exported,
        "failures": results.failures,
        "http_responses": results.http_responses,
    }
    print(json.dumps(summary))
    if results.failures:
        for f in results.failures:
            print(f"otel_sdk_client: FAILED: {f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
