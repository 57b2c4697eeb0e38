#!/usr/bin/env bash
# Load run: the cost of trace affinity (pipelines[].affinity) on one
# replica, next to the same traces pipeline without it, in one session.
#
# With affinity every span takes the peer path: stored in the forwarder's
# queue before the answer, sent over OTLP/gRPC to the trace's owner, stored
# again there, then delivered. The replica here is its own only peer
# (static resolver: itself), so every span is forwarded, as on a replica
# whose traces are all owned elsewhere; with N replicas each replica does
# this for all of its spans (its own share goes to itself the same way) and
# receives about 1/N of everyone's as the owner, so the per-replica cost
# below is the whole cost.
#
# Prints spans/s acknowledged and spans/s delivered (acked spans over the
# time until the pipeline's own destination has sent them all), with the
# ratio to the plain pipeline.
#
#   bash scripts/load-affinity.sh [SECONDS=15] [CONCURRENCY=16]
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
  traces_config "$1" "$2"
}

config plain "" >"$work/plain.yaml"
config affinity "    affinity:
      resolver: { static: [http://127.0.0.1:37317] }" >"$work/affinity.yaml"

plain_acked="" plain_delivered=""
run() {
  local name=$1
  start_seedgate "$name"
  local t0 t1 acked rss
  t0=$(date +%s.%N)
  realistic_traces "$name"
  acked=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['records_acked'])" "$work/$name.json")
  # The pipeline's own destination, not the forwarder.
  while [ "$(sent traces)" -lt "$acked" ]; do sleep 0.05; done
  t1=$(date +%s.%N)
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"
  wait "$pid" || true
  read -r plain_acked plain_delivered < <(python3 - "$work/$name.json" "$name" "$t0" "$t1" "$rss" "$plain_acked" "$plain_delivered" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
name, t0, t1, rss = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
acked = s['records_per_sec']
delivered = s['records_acked'] / (t1 - t0)
base_a = float(sys.argv[6]) if sys.argv[6] else acked
base_d = float(sys.argv[7]) if sys.argv[7] else delivered
print(f"{name:>8}: {acked/1000:.0f}k spans/s acked = {acked/base_a:.2f}x plain "
      f"(p50 {s['latency']['p50_ms']:.1f} ms, p99 {s['latency']['p99_ms']:.1f} ms), "
      f"{delivered/1000:.0f}k spans/s delivered = {delivered/base_d:.2f}x plain, peak RSS {rss//1024} MiB",
      file=sys.stderr)
print(base_a, base_d)
PY
)
}

echo "realistic traces, ${secs}s, $conc in flight, 100 spans/request, 4 spans/trace, fsync"
run plain
run affinity
