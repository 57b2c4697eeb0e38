#!/usr/bin/env python3
"""Pre-encodes OTLP protobuf request bodies for k6/protobuf.js.

k6 has no protobuf encoder, so this builds the bodies with the same
builders as the JSON scripts (lib/otlp.js, run under node), maps OTLP/JSON
to proto3 JSON (hex traceId/spanId/parentSpanId -> base64 bytes) and encodes
them with the message classes of the `opentelemetry-proto` package:

    python3 -m pip install -r tests/requirements.txt
    python3 load-tests/k6/make-payloads.py [--count 50] [--records 100] [--tenants 200] [--out DIR]

writes DIR/{logs,metrics,traces}-<i>.pb (default DIR: load-tests/k6/payloads,
gitignored), payload i for tenant i of `namespaces(tenants)`.
"""
import argparse
import base64
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
except ImportError as e:  # the install hint, not a traceback
    sys.exit(f"{e}: run `python3 -m pip install -r tests/requirements.txt`")

MESSAGES = {
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "traces": ExportTraceServiceRequest,
}
HEX_FIELDS = {"traceId", "spanId", "parentSpanId"}

NODE_SCRIPT = """
import { namespaces, SIGNALS } from %s;
const [count, records, tenants] = process.argv.slice(1).map(Number);
const ns = namespaces(tenants);
const out = {};
for (const [signal, s] of Object.entries(SIGNALS)) {
  out[signal] = [];
  for (let i = 0; i < count; i++) out[signal].push(s.build({ namespace: ns[i %% ns.length], records }));
}
process.stdout.write(JSON.stringify(out));
"""


def hex_to_base64(value):
    """OTLP/JSON ids are hex; proto3 JSON (json_format) wants base64 bytes."""
    if isinstance(value, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode() if k in HEX_FIELDS and isinstance(v, str) else hex_to_base64(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [hex_to_base64(v) for v in value]
    return value


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--records", type=int, default=100)
    p.add_argument("--tenants", type=int, default=200)
    p.add_argument("--out", default=os.path.join(HERE, "payloads"))
    a = p.parse_args()
    lib = "file://" + os.path.join(HERE, "lib", "otlp.js")
    try:
        res = subprocess.run(
            ["node", "--input-type=module", "-e", NODE_SCRIPT % json.dumps(lib), "--", str(a.count), str(a.records), str(a.tenants)],
            capture_output=True, text=True, check=True,
        )
    except FileNotFoundError:
        sys.exit("node is needed to run lib/otlp.js: install Node.js 18+ (https://nodejs.org)")
    except subprocess.CalledProcessError as e:
        sys.exit(f"node failed: {e.stderr}")
    bodies = json.loads(res.stdout)
    os.makedirs(a.out, exist_ok=True)
    for signal, message in MESSAGES.items():
        for i, body in enumerate(bodies[signal]):
            msg = json_format.ParseDict(hex_to_base64(body), message())
            with open(os.path.join(a.out, f"{signal}-{i}.pb"), "wb") as f:
                f.write(msg.SerializeToString())
    print(f"wrote {a.count} payloads per signal to {a.out}")


if __name__ == "__main__":
    main()
