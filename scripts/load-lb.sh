#!/usr/bin/env bash
# Load run: loadgen traces into seedgate, delivered by a load-balancing
# exporter over 4 sinks (127.0.0.2-5, routing key traceID), next to the
# single-destination figure measured in the same run (the same traces to one
# sink). Prints records/s acknowledged and records/s delivered (acked records
# over the time until seedgate_exporter_sent_records_total caught up).
#
#   bash scripts/load-lb.sh [SECONDS=15] [CONCURRENCY=16]
#
# Needs a release build (cargo build --release); uses $CARGO_TARGET_DIR.
set -euo pipefail

secs=${1:-15}
conc=${2:-16}
bin=${CARGO_TARGET_DIR:-target}/release/seedgate
work=$(mktemp -d)
echo "work dir: $work (KEEP=1 keeps it)"
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

for i in 2 3 4 5; do
  "$bin" sink --noop --grpc-listen 127.0.0.$i:36317 --http-listen 127.0.0.$i:36318 >"$work/sink-$i.log" 2>&1 &
done
sleep 1

common() {
  cat <<EOF
receivers:
  grpc: { listen: 127.0.0.1:37317 }
  http: { listen: 127.0.0.1:37318 }
admin: { listen: 127.0.0.1:37021 }
storage: { data_dir: $work/data-$1, durability: fsync, max_size: 8GiB }
EOF
}

{
  common single
  cat <<EOF
pipelines:
  - name: traces
    signals: [traces]
    input: { namespaces: { system: true } }
    output: { type: otlp_grpc, endpoint: "http://127.0.0.2:36317", compression: none }
EOF
} >"$work/single.yaml"

{
  common lb
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

sent() {
  curl -fs http://127.0.0.1:37021/metrics |
    awk '/^seedgate_exporter_sent_records_total\{/ {s += $2} END {printf "%d\n", s}'
}

run() {
  local name=$1
  "$bin" run --config "$work/$name.yaml" >"$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    curl -fs http://127.0.0.1:37021/readyz >/dev/null 2>&1 && break
    sleep 0.1
  done
  local t0
  t0=$(date +%s.%N)
  "$bin" loadgen --endpoint http://127.0.0.1:37317 --signal traces --concurrency "$conc" \
    --tenants 10 --records-per-request 100 --quiet --duration "${secs}s" \
    --summary-json "$work/$name.json"
  local acked
  acked=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['records_acked'])" "$work/$name.json")
  while [ "$(sent)" -lt "$acked" ]; do sleep 0.05; done
  local t1
  t1=$(date +%s.%N)
  local rss
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"
  wait "$pid" || true
  python3 - "$work/$name.json" "$name" "$t0" "$t1" "$rss" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
name, t0, t1, rss = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
print(f"{name:>6}: {s['records_per_sec']/1000:.0f}k spans/s acked (p50 {s['latency']['p50_ms']:.1f} ms, "
      f"p99 {s['latency']['p99_ms']:.1f} ms), {s['records_acked']/(t1-t0)/1000:.0f}k spans/s delivered "
      f"({s['records_acked']} in {t1-t0:.1f} s), peak RSS {rss//1024} MiB")
PY
}

echo "traces, ${secs}s, $conc in flight, 100 spans/request (one trace each), fsync"
run single
run lb
