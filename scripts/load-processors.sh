#!/usr/bin/env bash
# Load run: realistic traces (five services, 5% errors, 1 ms-2 s durations,
# four spans per trace over four requests) into seedgate with fsync, 16
# requests in flight, through a plain traces pipeline and then the same
# pipeline with each processor, in one session, against a no-op sink.
# Prints spans/s acknowledged, the ratio to the plain pipeline, latency and
# peak RSS.
#
#   bash scripts/load-processors.sh [SECONDS=15] [CONCURRENCY=16]
#
# Needs a release build (cargo build --release); uses $CARGO_TARGET_DIR.
set -euo pipefail

secs=${1:-15}
conc=${2:-16}
# shellcheck source=scripts/load-common.sh
source "$(dirname "$0")/load-common.sh"
noop_sink 2
sleep 1

config() {
  traces_config "$1" "$2
  - name: red
    signals: [metrics]
    output: { type: otlp_grpc, endpoint: \"http://127.0.0.2:36317\", compression: none }"
}

config plain "" >"$work/plain.yaml"
config resource "    processors:
      - resource:
          attributes:
            - { key: k8s.node.name, value: node-1, action: insert }
            - { key: deployment.environment, value: prod, action: upsert }
            - { key: loadgen.unused, action: delete }" >"$work/resource.yaml"
config spanmetrics "    processors:
      - spanmetrics: { metrics_pipeline: red, metrics_flush_interval: 5s }" >"$work/spanmetrics.yaml"
config tail_sampling "    processors:
      - tail_sampling:
          decision_wait: 10s
          policies:
            - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
            - { name: some, type: probabilistic, probabilistic: { sampling_percentage: 10 } }" >"$work/tail_sampling.yaml"

plain_rate=""
run() {
  local name=$1
  start_seedgate "$name"
  realistic_traces "$name"
  local rss pending rate
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  # Anonymous memory only: LMDB's mapped pages count in RSS but are the
  # page cache's (reclaimable), not the heap's.
  anon=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status")
  pending=$(curl -fs http://127.0.0.1:37021/metrics | awk '/^seedgate_tail_sampling_traces_pending\{/ {s += $2} END {printf "%d", s}')
  kill -TERM "$pid"
  wait "$pid" || true
  rate=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['records_per_sec'])" "$work/$name.json")
  [ -n "$plain_rate" ] || plain_rate=$rate
  python3 - "$work/$name.json" "$name" "$rss" "$plain_rate" "$pending" "$anon" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
name, rss, plain, pending, anon = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], int(sys.argv[6])
extra = f", {pending} traces pending at the end" if name == "tail_sampling" else ""
print(f"{name:>13}: {s['records_per_sec']/1000:.0f}k spans/s acked = {s['records_per_sec']/plain:.2f}x plain "
      f"(p50 {s['latency']['p50_ms']:.1f} ms, p99 {s['latency']['p99_ms']:.1f} ms), peak RSS {rss//1024} MiB, anonymous at the end {anon//1024} MiB{extra}")
PY
}

echo "realistic traces, ${secs}s, $conc in flight, 100 spans/request, 4 spans/trace, fsync"
run plain
run resource
run spanmetrics
run tail_sampling
