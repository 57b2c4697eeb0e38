#!/usr/bin/env bash
# Load run: N shoot namespaces, each with a ready Cluster and its own shoot
# client, against one sink serving every shoot endpoint (keyed by path), next
# to the single-destination figure measured in the same run (the same
# namespaces to one seed pipeline). Prints records/s acknowledged for both.
#
#   bash scripts/load-shoots.sh [SHOOTS=1000] [SECONDS=15] [CONCURRENCY=16]
#
# Needs a release build (cargo build --release); uses $CARGO_TARGET_DIR.
set -euo pipefail

shoots=${1:-1000}
secs=${2:-15}
conc=${3:-16}
bin=${CARGO_TARGET_DIR:-target}/release/seedgate
work=$(mktemp -d)
echo "work dir: $work (KEEP=1 keeps it)"
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

"$bin" sink --noop --grpc-listen 127.0.0.1:34317 --http-listen 127.0.0.1:34318 >"$work/sink.log" 2>&1 &
sleep 1

common() {
  cat <<EOF
receivers:
  grpc: { listen: 127.0.0.1:35317 }
  http: { listen: 127.0.0.1:35318 }
admin: { listen: 127.0.0.1:35021 }
storage: { data_dir: $work/data-$1, durability: fsync, max_size: 8GiB }
EOF
}

# Single destination: every namespace to one pipeline.
{
  common single
  cat <<EOF
pipelines:
  - name: seed
    signals: [logs]
    input: { namespaces: { system: true } }
    output: { type: otlp_grpc, endpoint: "http://127.0.0.1:34317", compression: none }
EOF
} >"$work/single.yaml"

# One shoot client per namespace (ready: shoot backend only).
{
  common shoots
  cat <<EOF
pipelines:
  - name: seed
    signals: [logs]
    output: { type: otlp_grpc, endpoint: "http://127.0.0.1:34317", compression: none }
shoots:
  signals: [logs]
  endpoint_prefix: "http://127.0.0.1:34318/"
  output: { type: otlp_http, compression: none }
  batch: { timeout: 1s }   # 1,000 backends: fewer, larger requests each
  max_clients: $((shoots * 2))
clusters:
EOF
  for i in $(seq 0 $((shoots - 1))); do
    echo "  - { name: shoot--loadgen--t$i, state: ready }"
  done
} >"$work/shoots.yaml"

run() {
  local name=$1
  "$bin" run --config "$work/$name.yaml" >"$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    curl -fs http://127.0.0.1:35021/readyz >/dev/null 2>&1 && break
    sleep 0.1
  done
  local load=("$bin" loadgen --endpoint http://127.0.0.1:35317 --concurrency "$conc"
    --tenants "$shoots" --resources-per-request 10 --records-per-request 100 --quiet)
  # Cold: includes creating every shoot client on its first record.
  "${load[@]}" --duration "${secs}s" --summary-json "$work/$name-cold.json"
  # Warm: the same again, every client in place.
  "${load[@]}" --duration "${secs}s" --seq-start 1000000000 --summary-json "$work/$name.json"
  local rss
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  local clients
  clients=$(curl -fs http://127.0.0.1:35021/metrics | awk '/^seedgate_shoot_clients /{print $2}')
  kill -TERM "$pid"
  wait "$pid" || true
  python3 - "$work/$name" "$name" "$rss" "${clients:-0}" <<'PY'
import json, sys
for run in ("cold", "warm"):
    s = json.load(open(sys.argv[1] + ("-cold.json" if run == "cold" else ".json")))
    print(f"{sys.argv[2]:>7} {run}: {s['records_per_sec']/1000:.0f}k records/s acked, "
          f"p50 {s['latency']['p50_ms']:.1f} ms, p99 {s['latency']['p99_ms']:.1f} ms, "
          f"failed {s['requests_failed']}, refused {s['requests_refused']}")
print(f"{sys.argv[2]:>7}: peak RSS {int(sys.argv[3])//1024} MiB, shoot clients {sys.argv[4]}")
PY
}

echo "$shoots namespaces, ${secs}s, $conc in flight, 100 records/request over 10 namespaces, fsync"
run single
run shoots
