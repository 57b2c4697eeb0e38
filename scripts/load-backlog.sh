#!/usr/bin/env bash
# Load run: a backend outage and the drain after it. Realistic traces go
# into seedgate with fsync for SECONDS while the only sink is down, so
# everything acknowledged waits in LMDB; then the sink starts and seedgate
# drains the backlog. Prints the backlog, the drain rate, and seedgate's
# resident memory (anonymous and file-mapped, sampled every 0.5 s) while
# it filled and while it drained: the buffer should sit in the page cache,
# not in the process.
#
#   bash scripts/load-backlog.sh [SECONDS=10] [CONCURRENCY=16]
#
# Needs a release build (cargo build --release); uses $CARGO_TARGET_DIR.
set -euo pipefail

secs=${1:-10}
conc=${2:-16}
# shellcheck source=scripts/load-common.sh
source "$(dirname "$0")/load-common.sh"

traces_config backlog "" >"$work/backlog.yaml"
start_seedgate backlog

# Peak RssAnon and RssFile (KiB) of seedgate while $1 runs in the background.
peak_rss() {
  local anon=0 file=0 a f
  while kill -0 "$1" 2>/dev/null; do
    a=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status")
    f=$(awk '/RssFile/ {print $2}' "/proc/$pid/status")
    ((a > anon)) && anon=$a
    ((f > file)) && file=$f
    sleep 0.5
  done
  echo "$((anon / 1024)) MiB anonymous, $((file / 1024)) MiB file-mapped"
}

realistic_traces backlog &
gen=$!
fill=$(peak_rss "$gen")
wait "$gen"
acked=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['records_acked'])" "$work/backlog.json")
mib=$(du -sm "$work/data-backlog/data.mdb" | cut -f1)
echo "filled: $acked spans acknowledged with the sink down, data.mdb $mib MiB; peak while filling: $fill"

noop_sink 2
t0=$(date +%s.%N)
(while [ "$(sent)" -lt "$acked" ]; do sleep 0.2; done) &
drain=$!
during=$(peak_rss "$drain")
t1=$(date +%s.%N)
python3 -c "import sys; a, t = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'drained in {t:.1f} s = {a / t / 1000:.0f}k spans/s; peak while draining: ' + sys.argv[4])" "$acked" "$t0" "$t1" "$during"
kill -TERM "$pid"
wait "$pid" || true
