#!/usr/bin/env bash
# Load run: N shoot namespaces, each with a ready Cluster and its own shoot
# client, against one sink serving every shoot endpoint (keyed by path), next
# to the single-destination figure measured in the same run (the same
# namespaces to one seed pipeline). Prints records/s acknowledged for both.
#
#   bash scripts/load-shoots.sh [SHOOTS=1000] [SECONDS=15] [CONCURRENCY=16] [ROUNDS=1]
#   (PERF=1: and where seedgate's CPU goes in the warm run)
#
# With ROUNDS > 1 the two runs alternate that many times, each on a fresh
# buffer, and the script prints the ratios of each round and their median:
# on a shared machine one pair of runs can be 10-20% off either way.
#
# The warm run also reports how busy the LMDB writer was (commit time,
# fsync included, over wall time): near 100% it is what limits the rate.
#
# Needs a release build (cargo build --release); uses $CARGO_TARGET_DIR.
set -euo pipefail

shoots=${1:-1000}
secs=${2:-15}
conc=${3:-16}
rounds=${4:-1}
# shellcheck source=scripts/load-common.sh
source "$(dirname "$0")/load-common.sh"
noop_sink 2
sleep 1

# Single destination: every namespace to one pipeline.
{
  config_head single
  cat <<EOF
pipelines:
  - name: seed
    signals: [logs]
    input: { namespaces: { system: true } }
    output: { type: otlp_grpc, endpoint: "http://127.0.0.2:36317", compression: none }
EOF
} >"$work/single.yaml"

# One shoot client per namespace (ready: shoot backend only).
{
  config_head shoots
  cat <<EOF
pipelines:
  - name: seed
    signals: [logs]
    output: { type: otlp_grpc, endpoint: "http://127.0.0.2:36317", compression: none }
shoots:
  signals: [logs]
  endpoint_prefix: "http://127.0.0.2:36318/"
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
  rm -rf "$work/data-$name"
  start_seedgate "$name"
  local load=("$bin" loadgen --endpoint http://127.0.0.1:37317 --concurrency "$conc"
    --tenants "$shoots" --resources-per-request 10 --records-per-request 100 --quiet)
  # Cold: includes creating every shoot client on its first record.
  "${load[@]}" --duration "${secs}s" --summary-json "$work/$name-cold.json"
  # Warm: the same again, every client in place; CPU per record of
  # seedgate and of the sinks (all three share the machine's cores).
  [ "$round" -gt 1 ] || perf_during "$name" $((secs / 2))
  local cpu0 sinks0 cpu sinks writer_cpu0 writer_cpu
  cpu0=$(cpu_ticks "$pid")
  writer_cpu0=$(thread_ticks "$pid" lmdb-writer)
  # shellcheck disable=SC2086 # a list of pids
  sinks0=$(cpu_ticks $sink_pids)
  local writer0 writer1 disk0 disk1 started
  writer0=$(writer_totals)
  disk0=$(disk_totals)
  started=$(date +%s.%N)
  "${load[@]}" --duration "${secs}s" --seq-start 1000000000 --summary-json "$work/$name.json"
  writer1=$(writer_totals)
  disk1=$(disk_totals)
  # The LMDB writer over the warm run: is it the bottleneck?
  echo "$(printf '%7s' "$name") warm: $(writer_report "$writer0" "$writer1" "$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN {print e - s}')")"
  local disk
  disk=$(disk_report "$disk0" "$disk1" "$writer0" "$writer1")
  [ -z "$disk" ] || echo "$(printf '%7s' "$name") warm: $disk"
  cpu=$(($(cpu_ticks "$pid") - cpu0))
  writer_cpu=$(($(thread_ticks "$pid" lmdb-writer) - writer_cpu0))
  # shellcheck disable=SC2086
  sinks=$(($(cpu_ticks $sink_pids) - sinks0))
  # Idle: CPU over 10 s with every client in place and nothing to send
  # (timers, wake-ups, health walks: what a seed's quiet shoots cost).
  local idle_ms
  ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
  sleep 2
  idle_ms=$(ticks)
  sleep 10
  idle_ms=$(( ($(ticks) - idle_ms) * 1000 / $(getconf CLK_TCK) ))
  local rss
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  # The resident set now, split: heap and stacks, and LMDB's mapped pages.
  local split
  split=$(awk '/RssAnon|RssFile/ {printf "%s %d MiB ", $1, $2/1024}' "/proc/$pid/status")
  local clients
  clients=$(curl -fs http://127.0.0.1:37021/metrics | awk '/^seedgate_shoot_clients /{print $2}')
  kill -TERM "$pid"
  wait "$pid" || true
  python3 - "$work/$name" "$name" "$rss" "${clients:-0}" "$work/$name.log" "$split" "$idle_ms" "$cpu" "$sinks" "$(getconf CLK_TCK)" "$writer_cpu" <<'PY'
import datetime, json, re, sys
# First to last "Created a shoot client" in seedgate's log: how long making
# every client took while the cold run sent their first records.
made = [datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
        for m in (re.match(r"(\S+)\s.*Created a shoot client", l) for l in open(sys.argv[5]))
        if m]
if made:
    print(f"{sys.argv[2]:>7}: {len(made)} shoot clients created in {(made[-1] - made[0]).total_seconds():.2f} s")
for run in ("cold", "warm"):
    s = json.load(open(sys.argv[1] + ("-cold.json" if run == "cold" else ".json")))
    print(f"{sys.argv[2]:>7} {run}: {s['records_per_sec']/1000:.0f}k records/s acked, "
          f"p50 {s['latency']['p50_ms']:.1f} ms, p99 {s['latency']['p99_ms']:.1f} ms, "
          f"failed {s['requests_failed']}, refused {s['requests_refused']}")
print(f"{sys.argv[2]:>7}: peak RSS {int(sys.argv[3])//1024} MiB (at the end: {sys.argv[6]}), shoot clients {sys.argv[4]}")
print(f"{sys.argv[2]:>7}: idle {sys.argv[7]} ms of CPU over 10 s")
warm = json.load(open(sys.argv[1] + ".json"))["records_acked"]
hz = int(sys.argv[10])
print(f"{sys.argv[2]:>7} warm: CPU per record: seedgate {int(sys.argv[8])/hz/warm*1e6:.2f} us "
      f"(LMDB writer {int(sys.argv[11])/hz/warm*1e6:.2f} us), "
      f"sinks {int(sys.argv[9])/hz/warm*1e6:.2f} us")
PY
}

echo "$shoots namespaces, ${secs}s, $conc in flight, 100 records/request over 10 namespaces, fsync"
for round in $(seq 1 "$rounds"); do
  run single
  run shoots
  python3 - "$work" "$round" >>"$work/ratios" <<'PY'
import json, sys
rate = lambda f: json.load(open(f"{sys.argv[1]}/{f}.json"))["records_per_sec"]
print(sys.argv[2], *(rate("shoots" + s) / rate("single" + s) for s in ("", "-cold")))
PY
done
python3 - "$work/ratios" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for i, run in ((1, "warm"), (2, "cold")):
    ratios = [float(r[i]) for r in rows]
    each = ", ".join(f"{x:.2f}x" for x in ratios)
    print(f"shoots vs single, {run}: {each}" + (f" (median {statistics.median(ratios):.2f}x)" if len(ratios) > 1 else ""))
PY
perf_report
