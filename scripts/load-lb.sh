#!/usr/bin/env bash
# Load run: loadgen traces into seedgate, delivered by a load-balancing
# exporter over 4 sinks (127.0.0.2-5, routing key traceID), next to the
# single-destination figure measured in the same run (the same traces to one
# sink). Prints records/s acknowledged and records/s delivered (acked records
# over the time until seedgate_exporter_sent_records_total caught up).
#
#   bash scripts/load-lb.sh [SECONDS=15] [CONCURRENCY=16] [ROUNDS=1]    (PERF=1: and where the CPU goes)
#
# With ROUNDS > 1 the two runs alternate that many times and the script
# prints the ratio of each round and their median: on a shared machine one
# pair of runs can be 10% off either way.
#
# Needs a release build (cargo build --release); uses $CARGO_TARGET_DIR.
set -euo pipefail

secs=${1:-15}
conc=${2:-16}
rounds=${3:-1}
# shellcheck source=scripts/load-common.sh
source "$(dirname "$0")/load-common.sh"
for i in 2 3 4 5; do noop_sink $i; done
sleep 1

traces_config single "" >"$work/single.yaml"

{
  config_head lb
  cat <<EOF
pipelines:
  - name: traces
    signals: [traces]
    input: { namespaces: { system: true } }
    output: { type: otlp_grpc, compression: none }
    loadbalancing:
      routing_key: traceID
      resolver: { static: [http://127.0.0.2:36317, http://127.0.0.3:36317, http://127.0.0.4:36317, http://127.0.0.5:36317] }
EOF
} >"$work/lb.yaml"

run() {
  local name=$1
  rm -rf "$work/data-$name"
  start_seedgate "$name"
  [ "$round" -gt 1 ] || perf_during "$name" $((secs / 2))
  local t0 cpu0 sinks0
  t0=$(date +%s.%N)
  cpu0=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086 # a list of pids
  sinks0=$(cpu_ticks $sink_pids)
  "$bin" loadgen --endpoint http://127.0.0.1:37317 --signal traces --concurrency "$conc" \
    --tenants 10 --records-per-request 100 --quiet --duration "${secs}s" \
    --summary-json "$work/$name.json"
  local acked
  acked=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['records_acked'])" "$work/$name.json")
  while [ "$(sent)" -lt "$acked" ]; do sleep 0.05; done
  local t1 cpu sinks
  t1=$(date +%s.%N)
  cpu=$(($(cpu_ticks "$pid") - cpu0))
  # shellcheck disable=SC2086
  sinks=$(($(cpu_ticks $sink_pids) - sinks0))
  local rss
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"
  wait "$pid" || true
  echo "$round $name $(python3 -c "import sys; print(int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])))" "$acked" "$t0" "$t1")" >>"$work/delivered"
  python3 - "$work/$name.json" "$name" "$t0" "$t1" "$rss" "$cpu" "$sinks" "$(getconf CLK_TCK)" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
name, t0, t1, rss = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
cpu, sinks, hz = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
print(f"{name:>6}: {s['records_per_sec']/1000:.0f}k spans/s acked (p50 {s['latency']['p50_ms']:.1f} ms, "
      f"p99 {s['latency']['p99_ms']:.1f} ms), {s['records_acked']/(t1-t0)/1000:.0f}k spans/s delivered "
      f"({s['records_acked']} in {t1-t0:.1f} s), peak RSS {rss//1024} MiB, "
      f"CPU per span: seedgate {cpu/hz/s['records_acked']*1e6:.2f} us, sinks {sinks/hz/s['records_acked']*1e6:.2f} us")
PY
}

echo "traces, ${secs}s, $conc in flight, 100 spans/request (one trace each), fsync"
for round in $(seq 1 "$rounds"); do
  run single
  run lb
done
python3 - "$work/delivered" <<'PY'
import statistics, sys
rate = {}
for line in open(sys.argv[1]):
    r, name, v = line.split()
    rate[(r, name)] = float(v)
ratios = [rate[(r, "lb")] / rate[(r, "single")] for r in sorted({r for r, _ in rate}, key=int)]
print("lb vs single, delivered: " + ", ".join(f"{x:.2f}x" for x in ratios) + f" (median {statistics.median(ratios):.2f}x)")
PY
perf_report
