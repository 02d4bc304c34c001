#!/usr/bin/env bash
# What the daemon costs when nothing happens: CPU, RSS, threads and wake-ups
# of tasker-health watching 100 PGMQ queues at a 1 s interval, with the
# shipped configuration (config/tasker-health.ini, whose [scheduler] section
# sets up CAF for a low-traffic process) next to the same daemon with CAF's
# own scheduler defaults (work stealing, max(cores, 4) workers).
#
#   bash bench/idle.sh                   # 60 s, 100 queues
#   bash bench/idle.sh --seconds 20 --queues 10
#   BUILD_DIR=build-bench bash bench/idle.sh
#   VARIANTS='sharing-1|--scheduler.max-threads=1' bash bench/idle.sh
#                                        # more runs: "name|extra args;..."
#
# Method: builds tasker-health (RelWithDebInfo) unless SKIP_BUILD=1, starts a
# private PostgreSQL (scripts/pg.sh), creates a database with the
# PGMQ-compatible schema and the queues (empty), starts every variant at
# once against it (loopback, --http.port=0, log level warn), waits 5 s, then
# samples each process over the window: CPU time from
# /proc/<pid>/task/*/schedstat (nanoseconds, all threads), context switches
# (voluntary + involuntary, all threads: the wake-ups), evaluations from
# /metrics; RSS and threads at the end. CPU % is of one core.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
queues=100
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --queues) queues=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--queues N]" >&2; exit 2 ;;
  esac
done

build_dir=${BUILD_DIR:-build}
bin="$build_dir/apps/tasker-health/tasker-health"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build_dir" -j "${JOBS:-$(nproc)}" --target tasker-health >/dev/null
fi
[ -x "$bin" ] || { echo "idle.sh: no daemon at $bin" >&2; exit 1; }

work=$(mktemp -d /tmp/tasker-health-idle.XXXXXX)
pg_dir=$(mktemp -d /tmp/tasker-health-idle-pg.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  bash scripts/pg.sh stop "$pg_dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash scripts/pg.sh start "$pg_dir")" >/dev/null

psql "$TASKER_HEALTH_TEST_PG" -qAt -v ON_ERROR_STOP=1 -f scripts/sql/pgmq_compat.sql >/dev/null
names=""
for i in $(seq 1 "$queues"); do
  q=$(printf 'idle_q%03d' "$i")
  psql "$TASKER_HEALTH_TEST_PG" -qAt -v ON_ERROR_STOP=1 -c "SELECT pgmq.create('$q')" >/dev/null
  names+="${names:+,}\"$q\""
done

workers=$(($(nproc) > 4 ? $(nproc) : 4))
caf_defaults="--scheduler.policy=stealing --scheduler.max-threads=$workers"
caf_defaults+=" --work-stealing.aggressive-poll-attempts=100"
caf_defaults+=" --work-stealing.aggressive-steal-interval=10"
caf_defaults+=" --work-stealing.moderate-poll-attempts=500"
caf_defaults+=" --work-stealing.moderate-steal-interval=5"
caf_defaults+=" --work-stealing.moderate-sleep-duration=50us"
caf_defaults+=" --work-stealing.relaxed-steal-interval=1"
caf_defaults+=" --work-stealing.relaxed-sleep-duration=10ms"
variants="shipped|;caf-defaults|$caf_defaults"
[ -n "${VARIANTS:-}" ] && variants+=";$VARIANTS"

common=(--config-file=config/tasker-health.ini
  "--database.url=$TASKER_HEALTH_TEST_PG"
  "--queues.names=[$names]"
  --health.evaluation-interval=1s --health.probe-timeout=800ms
  --database.query-timeout=500ms --database.connect-timeout=500ms
  --http.port=0 --log.level=warn)

IFS=';' read -r -a list <<<"$variants"
declare -A pid_of port_of
for v in "${list[@]}"; do
  name=${v%%|*}
  extra=${v#*|}
  # shellcheck disable=SC2086 # extra holds separate options
  "$bin" "${common[@]}" $extra --log.level=info >"$work/$name.log" 2>&1 &
  pid_of[$name]=$!
  pids+=("$!")
done
for v in "${list[@]}"; do
  name=${v%%|*}
  for _ in $(seq 1 100); do
    port_of[$name]=$(sed -n 's/.*event=listening address=[^ ]* port=\([0-9]*\).*/\1/p' "$work/$name.log" | head -n 1)
    [ -n "${port_of[$name]}" ] && break
    kill -0 "${pid_of[$name]}" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "${port_of[$name]}" ] || { echo "idle.sh: $name did not start" >&2; exit 1; }
done
sleep 5

cpu_ns() { # all threads of a process
  local total=0 t
  for t in /proc/"$1"/task/*/schedstat; do
    total=$((total + $(cut -d' ' -f1 "$t")))
  done
  echo "$total"
}
switches() {
  awk '/ctxt_switches/ {s += $2} END {print s}' /proc/"$1"/task/*/status
}
evaluations() {
  curl -s -m 5 "http://127.0.0.1:$1/metrics" \
    | awk '/^tasker_health_evaluations_total/ {v = $2} END {print v + 0}'
}

declare -A cpu0 sw0 ev0
for v in "${list[@]}"; do
  name=${v%%|*}
  cpu0[$name]=$(cpu_ns "${pid_of[$name]}")
  sw0[$name]=$(switches "${pid_of[$name]}")
  ev0[$name]=$(evaluations "${port_of[$name]}")
done
start=$(date +%s.%N)
sleep "$seconds"
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')

echo "tasker-health idle: $queues queues, interval 1s, ${seconds}s window," \
  "$(nproc) cores, $(date -u +%Y-%m-%d)"
printf '| %-15s | %12s | %8s | %7s | %11s | %11s |\n' run "CPU % core" "RSS MB" threads "wake-ups/s" evaluations
printf '| %-15s | %12s | %8s | %7s | %11s | %11s |\n' --- ---: ---: ---: ---: ---:
for v in "${list[@]}"; do
  name=${v%%|*}
  pid=${pid_of[$name]}
  cpu=$(cpu_ns "$pid")
  sw=$(switches "$pid")
  ev=$(evaluations "${port_of[$name]}")
  rss=$(awk '/^VmRSS/ {print $2}' /proc/"$pid"/status)
  threads=$(awk '/^Threads/ {print $2}' /proc/"$pid"/status)
  awk -v n="$name" -v c="$((cpu - cpu0[$name]))" -v e="$elapsed" -v r="$rss" \
    -v t="$threads" -v s="$((sw - sw0[$name]))" -v ev="$((${ev:-0} - ${ev0[$name]:-0}))" \
    'BEGIN {printf "| %-15s | %12.3f | %8.1f | %7d | %11.1f | %11d |\n",
            n, c / (e * 1e7), r / 1024, t, s / e, ev}'
done
echo "shipped: config/tasker-health.ini [scheduler]" \
  "$(awk '/^\[/ {in_s = ($0 == "[scheduler]")} in_s && /^[a-z]/' config/tasker-health.ini | tr '\n' ' ')"
echo "caf-defaults: $caf_defaults"
