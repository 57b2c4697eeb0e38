#!/usr/bin/env python3
"""Writes the seed corpora and dictionaries of the fuzz targets.

Everything is made here (OTLP requests encoded by hand, compressed with
Python's own gzip/zlib, zstd frames built byte by byte) or taken from
seedgate's own README and default config: no third-party files.

Usage: fuzz/seeds.py [OUT]   (OUT defaults to fuzz/corpus; each target's
seeds go to OUT/<target>/seed-*, its dictionary to OUT/<target>.dict).
Deterministic, so running it again only rewrites the same files.
"""

import gzip
import json
import re
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- protobuf


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(number, wire_type):
    return varint(number << 3 | wire_type)


def ln(number, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return key(number, 2) + varint(len(payload)) + payload


def vi(number, value):
    return key(number, 0) + varint(value)


def f64(number, value):
    return key(number, 1) + struct.pack("<Q", value)


def dbl(number, value):
    return key(number, 1) + struct.pack("<d", value)


def string_value(s):
    return ln(1, s)


def kv(name, any_value):
    return ln(1, name) + ln(2, any_value)


def resource(*attrs):
    return b"".join(ln(1, a) for a in attrs)


def scope(name, version):
    return ln(1, name) + ln(2, version)


NS = "k8s.namespace.name"
SVC = "service.name"
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")

RESOURCES = [
    resource(kv(NS, string_value("shoot--p--a")), kv(SVC, string_value("api"))),
    resource(kv(SVC, string_value("etcd")), kv("k8s.pod.name", string_value("etcd-0"))),
    resource(kv(NS, vi(3, 7)), kv(NS, string_value("garden"))),  # int, then string
    resource(),
]


def log_record(i):
    return (
        f64(1, 1_700_000_000_000_000_000 + i)
        + vi(2, 9)
        + ln(3, "INFO")
        + ln(5, string_value(f"request {i} done"))
        + ln(6, kv("http.status", vi(3, 200)))
        + ln(9, TRACE)
        + ln(10, SPAN)
    )


def logs_request():
    blocks = []
    for r, res in enumerate(RESOURCES):
        records = b"".join(ln(2, log_record(i)) for i in range(r + 1))
        blocks.append(ln(1, ln(1, res) + ln(2, ln(1, scope("fluent-bit", "4.0")) + records)))
    return b"".join(blocks)


def span(i):
    trace = TRACE[:-1] + bytes([i])
    return (
        ln(1, trace)
        + ln(2, SPAN)
        + ln(5, f"GET /{i}")
        + vi(6, 2)
        + f64(7, 1_700_000_000_000_000_000)
        + f64(8, 1_700_000_000_000_100_000)
        + ln(9, kv("http.method", string_value("GET")))
        + ln(15, ln(2, "ok") + vi(3, 1))
    )


def traces_request():
    blocks = []
    for r, res in enumerate(RESOURCES):
        spans = b"".join(ln(2, span(r * 4 + i)) for i in range(r + 1))
        blocks.append(ln(1, ln(1, res) + ln(2, ln(1, scope("otel", "1.0")) + spans) + ln(3, "s")))
    return b"".join(blocks)


def number_point(i):
    return ln(7, kv("le", string_value(str(i)))) + f64(3, 1_700_000_000_000_000_000) + dbl(4, 1.5 * i)


def metrics_request():
    metrics = [
        ln(1, "up") + ln(5, ln(1, number_point(0))),  # gauge
        ln(1, "requests") + ln(3, "1") + ln(7, ln(1, number_point(1)) + ln(1, number_point(2)) + vi(2, 2) + vi(3, 1)),
        ln(1, "latency")
        + ln(9, ln(1, ln(9, kv("route", string_value("/"))) + f64(4, 3) + ln(6, struct.pack("<3Q", 1, 1, 1))) + vi(2, 1)),
        ln(1, "sizes") + ln(10, ln(1, ln(1, kv("a", string_value("b"))) + f64(4, 2)) + vi(2, 2)),
        ln(1, "quantiles") + ln(11, ln(1, ln(7, kv("q", string_value("x"))) + f64(4, 5))),
        ln(1, "empty"),
    ]
    blocks = []
    for r, res in enumerate(RESOURCES):
        body = b"".join(ln(2, m) for m in metrics[r:])
        blocks.append(ln(1, ln(1, res) + ln(2, ln(1, scope("prometheus", "")) + body)))
    return b"".join(blocks)


# Signal order of the targets' control byte: logs, metrics, traces.
REQUESTS = [("logs", logs_request()), ("metrics", metrics_request()), ("traces", traces_request())]


def scan_seeds():
    for s, (name, body) in enumerate(REQUESTS):
        # Byte 0: signal (c % 3), split key (c / 3 % 4), backends (c / 12 % 4 + 1).
        for k in range(4):
            c = s + 3 * k + 12 * (k + 1)
            yield f"{name}-{k}", bytes([c, 0xFF if k % 2 else 0x55]) + body
        yield f"{name}-first", bytes([s, 0x01]) + body[: len(body) // 2]
    yield "unknown-fields", bytes([0, 0xFF]) + vi(7, 1) + ln(9, b"junk") + REQUESTS[0][1]


# -------------------------------------------------------------------- JSON

ATTRS = [
    {"key": NS, "value": {"stringValue": "shoot--p--a"}},
    {"key": SVC, "value": {"stringValue": "api"}},
    {"key": "count", "value": {"intValue": "42"}},
    {"key": "ratio", "value": {"doubleValue": 0.5}},
    {"key": "ok", "value": {"boolValue": True}},
    {"key": "raw", "value": {"bytesValue": "aGVsbG8="}},
    {"key": "list", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 1}]}}},
    {"key": "map", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}}},
]
SCOPE = {"name": "seedgate-fuzz", "version": "1.0", "attributes": [], "droppedAttributesCount": 0}


def json_requests():
    resource = {"attributes": ATTRS, "droppedAttributesCount": 0}
    log = {
        "timeUnixNano": "1700000000000000000",
        "observedTimeUnixNano": 1700000000000000001,
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": "hello"},
        "attributes": ATTRS[2:4],
        "traceId": TRACE.hex(),
        "spanId": SPAN.hex(),
        "flags": 1,
    }
    span_ = {
        "traceId": TRACE.hex(),
        "spanId": SPAN.hex(),
        "parentSpanId": "",
        "name": "GET /",
        "kind": 2,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000000100000",
        "attributes": ATTRS[:2],
        "events": [{"timeUnixNano": "1700000000000000500", "name": "e", "attributes": []}],
        "links": [{"traceId": TRACE.hex(), "spanId": SPAN.hex(), "attributes": []}],
        "status": {"code": 1, "message": "ok"},
    }
    point = {"attributes": ATTRS[:1], "timeUnixNano": "1700000000000000000", "asDouble": 1.5}
    metrics = [
        {"name": "up", "unit": "1", "gauge": {"dataPoints": [point, {"asInt": "3"}]}},
        {"name": "requests", "sum": {"dataPoints": [point], "aggregationTemporality": 2, "isMonotonic": True}},
        {
            "name": "latency",
            "histogram": {
                "dataPoints": [{"count": "3", "sum": 2.5, "bucketCounts": ["1", "2"], "explicitBounds": [1.0]}],
                "aggregationTemporality": 1,
            },
        },
        {
            "name": "sizes",
            "exponentialHistogram": {
                "dataPoints": [{"count": "2", "scale": 3, "zeroCount": "0", "positive": {"offset": 1, "bucketCounts": ["2"]}}],
                "aggregationTemporality": 2,
            },
        },
        {
            "name": "quantiles",
            "summary": {"dataPoints": [{"count": "5", "sum": 9.0, "quantileValues": [{"quantile": 0.5, "value": 2.0}]}]},
        },
    ]
    return [
        ("logs", {"resourceLogs": [{"resource": resource, "scopeLogs": [{"scope": SCOPE, "logRecords": [log, log]}]}]}),
        ("metrics", {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"scope": SCOPE, "metrics": metrics}]}]}),
        ("traces", {"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": SCOPE, "spans": [span_]}], "schemaUrl": ""}]}),
    ]


def json_seeds():
    for s, (name, request) in enumerate(json_requests()):
        yield name, bytes([s]) + json.dumps(request, indent=1).encode()
        yield f"{name}-empty", bytes([s]) + b"{}"


def json_keys(value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(k)
            json_keys(v, out)
    elif isinstance(value, list):
        for v in value:
            json_keys(v, out)
    return out


# ----------------------------------------------------------- decompression

IDENTITY, GZIP, ZSTD, DEFLATE = range(4)


def zstd_frame(blocks):
    """A zstd frame (RFC 8878) of raw and RLE blocks: no content size, no
    checksum, a 128 KiB window."""
    out = bytearray(struct.pack("<I", 0xFD2FB528))
    out += bytes([0x00, (17 - 10) << 3])  # frame header descriptor, window descriptor
    for i, (kind, data, size) in enumerate(blocks):
        last = 1 if i == len(blocks) - 1 else 0
        block_type = {"raw": 0, "rle": 1}[kind]
        header = last | block_type << 1 | size << 3
        out += struct.pack("<I", header)[:3] + data
    return bytes(out)


def decompress_seeds():
    text = b"seedgate " * 50
    # Byte 0: encoding (c % 4), round trip when c / 4 is odd, repeats c / 8 + 1.
    def stream(encoding, limit, body):
        return bytes([encoding]) + struct.pack("<H", limit) + body

    def round_trip(encoding, limit, repeat, plain):
        return bytes([encoding + 4 + 8 * (repeat - 1)]) + struct.pack("<H", limit) + plain

    yield "identity", stream(IDENTITY, 1000, text)
    yield "gzip", stream(GZIP, 1000, gzip.compress(text, mtime=0))
    yield "gzip-small-limit", stream(GZIP, 100, gzip.compress(text, mtime=0))
    yield "gzip-members", stream(GZIP, 4000, gzip.compress(b"a" * 10, mtime=0) + gzip.compress(b"b" * 10, mtime=0))
    yield "gzip-bomb", stream(GZIP, 65535, gzip.compress(bytes(1 << 20), 9, mtime=0))
    yield "deflate", stream(DEFLATE, 1000, zlib.compress(text))
    yield "deflate-bomb", stream(DEFLATE, 65535, zlib.compress(bytes(1 << 20), 9))
    yield "zstd-raw", stream(ZSTD, 1000, zstd_frame([("raw", text[:100], 100)]))
    yield "zstd-frames", stream(ZSTD, 1000, zstd_frame([("raw", b"ab", 2)]) + zstd_frame([("rle", b"x", 5)]))
    yield "zstd-bomb", stream(ZSTD, 65535, zstd_frame([("rle", b"\0", 1 << 17)] * 64))
    for encoding in (IDENTITY, GZIP, ZSTD, DEFLATE):
        yield f"round-trip-{encoding}", round_trip(encoding, 2000, 4, text[:400])
        yield f"round-trip-over-{encoding}", round_trip(encoding, 100, 32, text[:40])


# ------------------------------------------------------------------ config


def yaml_blocks(markdown):
    return re.findall(r"```yaml\n(.*?)```", markdown, re.S)


def config_seeds():
    readme = (ROOT / "README.md").read_text()
    yield "default", (ROOT / "src/config/default.yaml").read_bytes()
    for i, block in enumerate(yaml_blocks(readme)):
        yield f"readme-{i}", block.encode()
    # Mistakes of several kinds, one seed each.
    mistakes = {
        "listen": "receivers:\n  grpc:\n    listen: localhost\n",
        "sizes": "receivers:\n  http:\n    max_request_bytes: 1GiB\nstorage:\n  max_size: 1KiB\n",
        "unknown": "pipelines:\n  - name: a\n    output: { type: noop, colour: red }\n",
        "duplicate": "pipelines:\n  - name: a\n    output: { type: noop }\n  - name: a\n    output: { type: stdout }\n",
        "endpoint": "pipelines:\n  - name: b\n    signals: [logs]\n    output: { type: otlp_http, endpoint: 'not a uri' }\n",
        "regex": "routing:\n  keys: []\n  shoot_namespace_pattern: '(['\n",
        "batch": "batch:\n  max_records: 0\n  adaptive_concurrency: { enabled: true, min: 9, max: 2, decrease_ratio: 1.5 }\n",
        "tls": "pipelines:\n  - name: t\n    output:\n      type: otlp_grpc\n      endpoint: https://x:4317\n      tls: { min_version: '1.3', max_version: '1.2' }\n",
        "lb": "pipelines:\n  - name: l\n    signals: [logs]\n    output: { type: otlp_grpc }\n    loadbalancing:\n      routing_key: traceID\n      resolver: { static: [] }\n",
    }
    for name, text in mistakes.items():
        yield f"mistake-{name}", text.encode()


def config_dict():
    readme = (ROOT / "README.md").read_text()
    words = set()
    for block in yaml_blocks(readme):
        words.update(m + ":" for m in re.findall(r"^\s*(?:- )?([a-z_]+):", block, re.M))
        words.update(re.findall(r":\s*([A-Za-z0-9_.]+)\s*(?:#|$)", block, re.M))
    return sorted(w for w in words if w)


# -------------------------------------------------------------------- main


def write_dict(path, words):
    path.write_text("".join(json.dumps(w) + "\n" for w in sorted(words)))


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus"
    targets = {
        "scan": scan_seeds(),
        "json": json_seeds(),
        "decompress": decompress_seeds(),
        "config": config_seeds(),
    }
    for target, seeds in targets.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds:
            (d / f"seed-{name}").write_bytes(data)
    write_dict(out / "config.dict", config_dict())
    keys = set()
    for _, request in json_requests():
        json_keys(request, keys)
    write_dict(out / "json.dict", [f'"{k}"' for k in keys])


if __name__ == "__main__":
    main()
