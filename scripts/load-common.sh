# Sourced by scripts/load-{affinity,lb,processors,shoots}.sh after they set `secs`
# and `conc`: the release binary, a work directory removed on exit (KEEP=1
# keeps it), no-op sinks, the head of seedgate's configuration and a
# seedgate started and waited for. Ports: seedgate 37317/37318 (admin
# 37021), sinks 36317/36318 on 127.0.0.x.

bin=${CARGO_TARGET_DIR:-target}/release/seedgate
work=$(mktemp -d)
echo "work dir: $work (KEEP=1 keeps it)"
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# A no-op sink on 127.0.0.$1.
noop_sink() {
  "$bin" sink --noop --grpc-listen "127.0.0.$1:36317" --http-listen "127.0.0.$1:36318" >"$work/sink-$1.log" 2>&1 &
  sink_pids="${sink_pids:-} $!"
}

# CPU time (user + system, in clock ticks) the processes $@ used so far.
cpu_ticks() {
  local t=0 p
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

# The receivers, admin and storage (data-$1, fsync) of a run's config.
config_head() {
  cat <<HEAD
receivers:
  grpc: { listen: 127.0.0.1:37317 }
  http: { listen: 127.0.0.1:37318 }
admin: { listen: 127.0.0.1:37021 }
storage: { data_dir: $work/data-$1, durability: fsync, max_size: 8GiB }
HEAD
}

# CPU time (clock ticks) of process $1's threads named $2 (a prefix, as
# in /proc/<pid>/task/<tid>/comm) so far.
thread_ticks() {
  local t=0 task
  for task in /proc/"$1"/task/*; do
    case $(cat "$task/comm" 2>/dev/null) in
    "$2"*) t=$((t + $(awk '{print $14 + $15}' "$task/stat" 2>/dev/null || echo 0))) ;;
    esac
  done
  echo "$t"
}

# The head of the config with a plain traces pipeline `traces` to the sink
# on 127.0.0.2; what follows it (its own settings, more pipelines) is $2.
traces_config() {
  config_head "$1"
  cat <<CONFIG
pipelines:
  - name: traces
    signals: [traces]
    input: { namespaces: { system: true } }
    output: { type: otlp_grpc, endpoint: "http://127.0.0.2:36317", compression: none }
$2
CONFIG
}

# Starts seedgate on $work/$1.yaml and waits until it is ready; sets `pid`.
start_seedgate() {
  "$bin" run --config "$work/$1.yaml" >"$work/$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fs http://127.0.0.1:37021/readyz >/dev/null 2>&1 && break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null || { echo "seedgate did not start:" >&2; cat "$work/$1.log" >&2; exit 1; }
}

# With PERF=1: records seedgate's CPU (perf record -g) for $2 seconds from
# now, in the background, and prints the top of the profile at exit
# ($work/$1.perf keeps it with KEEP=1). PERF_ARGS replaces `-g` (say
# "--call-graph dwarf -F 499" for callers through Rust frames).
perf_during() {
  [ -n "${PERF:-}" ] || return 0
  # shellcheck disable=SC2086 # PERF_ARGS is a list of options
  perf record ${PERF_ARGS:--g} -o "$work/$1.perf" -p "$pid" -- sleep "$2" >/dev/null 2>&1 &
  perf_runs="${perf_runs:-} $1"
}

# Prints the top functions (self time) of each profile perf_during took.
perf_report() {
  for name in ${perf_runs:-}; do
    echo "--- $name: where seedgate's CPU goes (self, top 25)"
    perf report -i "$work/$name.perf" --no-children --sort symbol -g none --percent-limit 0.8 --stdio 2>/dev/null |
      grep -E '^ +[0-9]' | sed -E 's/[ -]+$//' | cut -c1-110 | head -25
  done
}

# The LMDB writer's totals so far: commit time (s), commits, operations.
writer_totals() {
  curl -fs http://127.0.0.1:37021/metrics | awk '
    /^seedgate_batcher_commit_duration_seconds_sum /{t=$2}
    /^seedgate_batcher_commit_duration_seconds_count /{n=$2}
    /^seedgate_batcher_commit_ops_sum /{o=$2}
    /^seedgate_batcher_blocks_rewritten_total /{r=$2}
    END {printf "%s %s %s %s\n", t, n, o, r + 0}'
}

# What the writer did between two writer_totals ($1, $2) over $3 seconds:
# its busy share (commit time, fsync included, over wall time: near 100%
# it is the bottleneck), commits a second, time and operations per commit,
# and log blocks rewritten a second (live parts kept a block past its
# consumed ones: work a delivery that keeps up never causes).
writer_report() {
  awk -v a="$1" -v b="$2" -v secs="$3" 'BEGIN {
    split(a, x, " "); split(b, y, " ");
    t = y[1] - x[1]; n = y[2] - x[2]; o = y[3] - x[3]; r = y[4] - x[4];
    if (n > 0) printf "writer busy %.0f%%, %.0f commits/s, %.2f ms and %.1f operations per commit, %.0f blocks rewritten/s\n", 100 * t / secs, n / secs, 1000 * t / n, o / n, r / secs
  }'
}

# Write requests and sectors the disk under $work completed so far
# (/sys/class/block/<device>/stat, fields 5 and 7; a /dev/mapper name is
# followed to its dm-N); empty where the work directory's file system has
# no block device of its own (tmpfs, overlay).
disk_totals() {
  local dev
  dev=$(readlink -f "$(df --output=source "$work" | tail -1)")
  [ -r "/sys/class/block/${dev##*/}/stat" ] && awk '{print $5, $7}' "/sys/class/block/${dev##*/}/stat"
  return 0
}

# What the disk wrote between two disk_totals ($1, $2), per commit between
# two writer_totals ($3, $4): write requests and KiB, everything on that
# disk included.
disk_report() {
  [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN {
    split(a, x, " "); split(b, y, " "); split(c, w, " "); split(d, v, " ");
    n = v[2] - w[2];
    if (n > 0) printf "disk: %.1f write requests and %.0f KiB per commit\n", (y[1] - x[1]) / n, (y[2] - x[2]) / 2 / n
  }'
  return 0
}

# Records seedgate has sent: all destinations, or only destination $1.
sent() {
  curl -fs http://127.0.0.1:37021/metrics |
    awk -v dest="${1:-}" '/^seedgate_exporter_sent_records_total\{/ && (dest == "" || index($0, "destination=\"" dest "\"")) {s += $2} END {printf "%d\n", s}'
}

# Realistic traces into seedgate for `secs`, summary in $work/$1.json.
realistic_traces() {
  "$bin" loadgen --endpoint http://127.0.0.1:37317 --signal traces --concurrency "$conc" \
    --tenants 10 --records-per-request 100 --spans-per-trace 4 --realistic-traces \
    --quiet --duration "${secs}s" --summary-json "$work/$1.json"
}
