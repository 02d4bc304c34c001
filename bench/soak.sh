#!/usr/bin/env bash
# The soak: the tasker-health daemon against a private PostgreSQL for a while
# (default 10 minutes) under a cycling queue load, with a fault every minute,
# while its resident memory (RSS), thread count and open file descriptors are
# sampled every second (RSS also split into anonymous and file-backed
# pages). At the end it prints, for the samples after the
# warm-up (by default until each kind of fault has happened once, plus 10 s;
# --warmup S), the median of the first and of the last quarter and the
# least-squares slope of each; "flat" means the last quarter's median RSS is
# within 2 % of the first quarter's.
#
#   bash bench/soak.sh                        # 10 minutes
#   bash bench/soak.sh --seconds 1800         # half an hour
#   bash bench/soak.sh --seconds 120 --fault-every 30 --warmup 10   # quick look
#   bash bench/soak.sh --faults burst --fault-every 30              # one kind
#
# The faults, in turn (one every --fault-every seconds, first at that time):
#   freeze   SIGSTOP every backend of the daemon's connections (found in
#            pg_stat_activity by application_name 'tasker-health/...') for
#            15 s, then SIGCONT
#   restart  PostgreSQL stopped (immediate shutdown), down for 10 s, started
#            again on its port (scripts/pg.sh restart)
#   queue    the watched queue 'spare' dropped and re-created 15 s later, and
#            the loaded queue 'events' dropped (the load generator re-creates
#            it on its next tick)
#   burst    200 HTTP requests (40 at a time, curl, 2 s limit each) over the
#            daemon's endpoints and 30 raw connections that connect and
#            close; then 30 raw connections that send half a request and hold
#            it for 5 s while another 200 requests are made
# --fault-every 0: no faults (the load alone); --faults LIST (comma-separated,
# default freeze,restart,queue,burst): which faults, in that order.
# Every second the sampler also asks /readyz (0.5 s limit) and records the
# status code, so the figures show whether the daemon kept answering.
#
# Steps: install the Debian packages, build the daemon and the load generator
# (in $BUILD_DIR, default build), start a private PostgreSQL with
# scripts/sql/pgmq_compat.sql, start the daemon (evaluation interval
# $SOAK_INTERVAL_MS, default 500 ms) and tasker-health-loadgen, run, stop
# everything (an EXIT trap also on failure) and print the summary.
# Exit status: 0 when the daemon ran to the end and stopped cleanly (whether
# or not the figures are flat: read them), 1 otherwise, 2 for bad usage.
#
# Environment: BUILD_DIR (build), JOBS (2), SOAK_INTERVAL_MS (500),
# SOAK_KEEP=1 keeps the directory with the samples (samples.csv) and logs,
# SOAK_SAMPLES=FILE copies samples.csv there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

seconds=600
fault_every=60
warmup=""
skip_deps=0
skip_build=0
fault_list=freeze,restart,queue,burst
while [ $# -gt 0 ]; do
  case "$1" in
    --faults) fault_list=${2:?--faults needs a list}; shift 2 ;;
    --faults=*) fault_list=${1#*=}; shift ;;
    --seconds) seconds=${2:?--seconds needs a value}; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --fault-every) fault_every=${2:?--fault-every needs a value}; shift 2 ;;
    --fault-every=*) fault_every=${1#*=}; shift ;;
    --warmup) warmup=${2:?--warmup needs a value}; shift 2 ;;
    --warmup=*) warmup=${1#*=}; shift ;;
    --skip-deps) skip_deps=1; shift ;;
    --skip-build) skip_build=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
IFS=, read -r -a faults <<<"$fault_list"
# Default warm-up: until each kind of fault has happened once, plus 10 s (the
# first burst of HTTP clients, the first reconnect... raise the allocator's
# high-water mark once: that is not a leak), but at most half the run.
if [ -z "$warmup" ] && [[ "$seconds" =~ ^[0-9]+$ ]] && [[ "$fault_every" =~ ^[0-9]+$ ]]; then
  warmup=60
  if [ "$fault_every" -gt 0 ]; then warmup=$((fault_every * ${#faults[@]} + 10)); fi
  if [ "$warmup" -gt $((seconds / 2)) ]; then warmup=$((seconds / 2)); fi
fi
for v in seconds fault_every warmup; do
  val=${!v}
  if ! [[ "$val" =~ ^[0-9]+$ ]] || [ "${#val}" -gt 7 ]; then
    echo "soak.sh: --${v//_/-} must be a whole number of seconds, got '$val'" >&2
    exit 2
  fi
done
if [ "$fault_every" -ne 0 ] && [ "$fault_every" -lt 30 ]; then
  echo "soak.sh: --fault-every must be 0 (no faults) or at least 30 (a fault lasts up to 25 s), got $fault_every" >&2
  exit 2
fi
if [ $((seconds - warmup)) -lt 8 ]; then
  echo "soak.sh: --seconds ($seconds) must exceed --warmup ($warmup) by at least 8 samples" >&2
  exit 2
fi
for f in "${faults[@]}"; do
  case "$f" in
    freeze | restart | queue | burst) ;;
    *) echo "soak.sh: --faults: unknown fault '$f' (freeze, restart, queue, burst)" >&2; exit 2 ;;
  esac
done
if [ ${#faults[@]} -eq 0 ]; then
  echo "soak.sh: --faults needs at least one of freeze, restart, queue, burst" >&2
  exit 2
fi
interval_ms=${SOAK_INTERVAL_MS:-500}
if ! [[ "$interval_ms" =~ ^[0-9]+$ ]] || [ "$interval_ms" -lt 100 ]; then
  echo "soak.sh: SOAK_INTERVAL_MS must be a whole number >= 100, got '$interval_ms'" >&2
  exit 2
fi

build_dir=${BUILD_DIR:-build}
daemon=$build_dir/apps/tasker-health/tasker-health
loadgen=$build_dir/apps/demo/tasker-health-loadgen

say() { printf 'soak: %s\n' "$*"; }

# ---- cleanup ---------------------------------------------------------------------
work=""
pgdir=""
daemon_pid=""
loadgen_pid=""
sampler_pid=""
stop_pid() {
  local pid=$1 grace=$2 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  # Never leave a frozen backend behind.
  if [ -n "$work" ] && [ -f "$work/frozen" ]; then
    xargs -r kill -CONT <"$work/frozen" 2>/dev/null
  fi
  stop_pid "$sampler_pid" 2
  stop_pid "$loadgen_pid" 5
  stop_pid "$daemon_pid" 15
  if [ -n "$pgdir" ]; then bash scripts/pg.sh stop "$pgdir" >/dev/null 2>&1; fi
  if [ -n "$work" ]; then
    if [ "${SOAK_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
      say "samples and logs kept in $work"
    else
      rm -rf "$work"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build -------------------------------------------------------------------------
if [ "$skip_deps" -eq 0 ]; then bash scripts/install-deps.sh; fi
if [ "$skip_build" -eq 0 ]; then
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
  cmake --build "$build_dir" -j "${JOBS:-2}" --target tasker-health tasker-health-loadgen
fi
for bin in "$daemon" "$loadgen"; do
  if [ ! -x "$bin" ]; then
    echo "soak.sh: $bin is missing (build it, or run without --skip-build)" >&2
    exit 1
  fi
done

# ---- PostgreSQL ----------------------------------------------------------------------
work=$(mktemp -d /tmp/tasker-health-soak.XXXXXX)
pgdir=$(mktemp -d /tmp/tasker-health-soak-pg.XXXXXX)
eval "$(bash scripts/pg.sh start "$pgdir")"
db=$TASKER_HEALTH_TEST_PG
psql_q() { PGOPTIONS="-c client_min_messages=warning" psql "$db" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
psql_q -f scripts/sql/pgmq_compat.sql >/dev/null
for q in orders events notifications spare; do
  psql_q -c "SELECT pgmq.create('$q')" >/dev/null
done

# ---- the daemon and the load -----------------------------------------------------------
probe_ms=$((interval_ms * 8 / 10))
cat >"$work/tasker-health.ini" <<EOF
; written by bench/soak.sh
[health]
node-id="soak"
evaluation-interval=${interval_ms}ms
probe-timeout=${probe_ms}ms
stale-threshold=$((interval_ms * 10))ms
[database]
url="$db"
query-timeout=$((probe_ms / 2))ms
connect-timeout=$((probe_ms * 3 / 4))ms
[queues]
names=["orders", "events", "notifications", "spare"]
thresholds=["notifications=200/500/1000"]
hysteresis-margin=50
[http]
address="127.0.0.1"
port=0
[log]
level="info"
EOF
"$daemon" --config-file="$work/tasker-health.ini" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
port=""
for _ in $(seq 1 150); do
  port=$(sed -n 's/.*event=listening address=[^ ]* port=\([0-9]*\).*/\1/p' "$work/daemon.log" | head -n 1)
  if [ -n "$port" ] && curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$port/livez" 2>/dev/null; then break; fi
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "soak.sh: the daemon exited at start; its log:" >&2
    cat "$work/daemon.log" >&2
    exit 1
  fi
  sleep 0.2
done
if [ -z "$port" ]; then
  echo "soak.sh: the daemon did not answer /livez within 30 s" >&2
  exit 1
fi
base="http://127.0.0.1:$port"

start_loadgen() {
  "$loadgen" --db="$db" --queues="orders,events,notifications:1200" \
    --peak=12000 --low=0 --fill-seconds=10 --hold-seconds=3 \
    --drain-seconds=8 --rest-seconds=9 --spread=0.4 --tick-ms=250 \
    >>"$work/loadgen.log" 2>&1 &
  loadgen_pid=$!
}
start_loadgen
loadgen_restarts=0

# ---- the sampler -----------------------------------------------------------------------
# One line a second: seconds since start, RSS and its anonymous (heap,
# stacks) and file-backed (the binary's and libraries' pages) parts (kB),
# threads, fds, /readyz status (000: no answer within 0.5 s), the current
# fault.
echo "load" >"$work/phase"
echo "t_s,rss_kb,rss_anon_kb,rss_file_kb,threads,fds,readyz,phase" >"$work/samples.csv"
start_ns=$(date +%s%N)
(
  next=$start_ns
  while kill -0 "$daemon_pid" 2>/dev/null; do
    now=$(date +%s%N)
    t=$(((now - start_ns) / 1000000))
    status=$(cat "/proc/$daemon_pid/status" 2>/dev/null) || break
    read -r rss anon file thr < <(awk '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2}
      /^RssFile:/ {f = $2} /^Threads:/ {t = $2} END {print r, a, f, t}' <<<"$status")
    fds=$(find "/proc/$daemon_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    code=$(curl -s -o /dev/null -w '%{http_code}' -m 0.5 "$base/readyz" 2>/dev/null || true)
    printf '%d.%03d,%s,%s,%s,%s,%s,%s,%s\n' $((t / 1000)) $((t % 1000)) "$rss" \
      "$anon" "$file" "$thr" "$fds" "${code:-000}" "$(cat "$work/phase")" \
      >>"$work/samples.csv"
    next=$((next + 1000000000))
    delay=$((next - $(date +%s%N)))
    if [ "$delay" -gt 0 ]; then
      sleep "$(printf '0.%09d' "$delay")"
    else
      next=$(date +%s%N)
    fi
  done
) &
sampler_pid=$!

# ---- the faults --------------------------------------------------------------------------
elapsed() { echo $((($(date +%s%N) - start_ns) / 1000000000)); }
phase() { echo "$1" >"$work/phase"; }
fault_log=()

fault_freeze() {
  local pids
  pids=$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'tasker-health/%'" || true)
  if [ -z "$pids" ]; then
    echo "no backend of the daemon found"
    return
  fi
  echo "$pids" >"$work/frozen"
  xargs kill -STOP <"$work/frozen"
  sleep 15
  xargs kill -CONT <"$work/frozen" 2>/dev/null || true
  rm -f "$work/frozen"
  echo "froze backends $(paste -sd ' ' - <<<"$pids") for 15 s"
}

fault_restart() {
  local pm i
  pm=$(head -n 1 "$pgdir/data/postmaster.pid")
  kill -QUIT "$pm" # immediate shutdown
  for i in $(seq 1 300); do
    kill -0 "$pm" 2>/dev/null || break
    sleep 0.1
  done
  sleep 10
  bash scripts/pg.sh restart "$pgdir" >/dev/null 2>>"$work/pg-restart.log"
  echo "server down for 10 s, restarted"
}

fault_queue() {
  psql_q -c "SELECT pgmq.drop_queue('spare')" -c "SELECT pgmq.drop_queue('events')" >/dev/null
  sleep 15
  psql_q -c "SELECT pgmq.create('spare')" >/dev/null
  echo "dropped spare and events, re-created spare after 15 s"
}

# 200 requests over the endpoints, 40 at a time; prints the status codes.
http_burst() {
  local paths=(/health /readyz /metrics /livez /nonexistent) i
  for ((i = 0; i < 200; i++)); do echo "$base${paths[i % ${#paths[@]}]}"; done \
    | xargs -P 40 -n 1 curl -s -o /dev/null -w '%{http_code}\n' -m 2 2>/dev/null \
    | sort | uniq -c \
    | awk '{printf "%s%s x%d", (NR > 1 ? ", " : ""), ($2 == "000" ? "no answer within 2 s" : $2), $1}'
}

fault_burst() {
  local i fd fds=() plain held
  for ((i = 0; i < 30; i++)); do
    if exec {fd}<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then exec {fd}>&-; fi
  done
  plain=$(http_burst)
  for ((i = 0; i < 30; i++)); do
    if exec {fd}<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
      printf 'GET /health HTTP/1.1\r\nHost: x\r\n' >&"$fd" 2>/dev/null || true
      fds+=("$fd")
    fi
  done
  held=$(http_burst)
  sleep 5
  for fd in "${fds[@]}"; do exec {fd}>&-; done
  echo "200 requests: $plain; with ${#fds[@]} half-open connections held 5 s, 200 requests: $held"
}

say "daemon pid $daemon_pid on port $port, load generator pid $loadgen_pid"
say "running ${seconds}s: a fault every ${fault_every}s (${faults[*]}), samples every second"
n=0
next_fault=$fault_every
if [ "$fault_every" -eq 0 ]; then say "no faults (--fault-every 0)"; fi
while :; do
  t=$(elapsed)
  [ "$t" -lt "$seconds" ] || break
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    rc=0
    wait "$daemon_pid" || rc=$?
    daemon_pid=""
    echo "soak.sh: the daemon died at ${t}s (status $rc); end of its log:" >&2
    tail -n 40 "$work/daemon.log" >&2
    exit 1
  fi
  if ! kill -0 "$loadgen_pid" 2>/dev/null; then
    wait "$loadgen_pid" 2>/dev/null || true
    loadgen_restarts=$((loadgen_restarts + 1))
    start_loadgen
  fi
  if [ "$fault_every" -gt 0 ] && [ "$t" -ge "$next_fault" ] \
    && [ $((t + 25)) -le "$seconds" ]; then
    f=${faults[n % ${#faults[@]}]}
    phase "$f"
    what=$("fault_$f")
    phase load
    fault_log+=("$(printf '%4ss %-8s %s' "$t" "$f" "$what")")
    say "${t}s $f: $what"
    n=$((n + 1))
    next_fault=$((next_fault + fault_every))
    continue
  fi
  sleep 0.5
done

# ---- the end ---------------------------------------------------------------------------
stop_pid "$sampler_pid" 2
sampler_pid=""
stop_pid "$loadgen_pid" 5
loadgen_pid=""
kill -TERM "$daemon_pid"
daemon_rc=0
wait "$daemon_pid" || daemon_rc=$?
daemon_pid=""

summary() {
  awk -F, -v warmup="$warmup" '
    NR == 1 { next }
    $1 + 0 >= warmup && $2 != "" {
      n++; t[n] = $1; rss[n] = $2; anon[n] = $3; file[n] = $4; thr[n] = $5
      fd[n] = $6
    }
    { total++; code[$7]++ }
    function median(a, lo, hi,   m, i, j, x, k) {
      m = 0
      for (i = lo; i <= hi; i++) b[++m] = a[i]
      for (i = 2; i <= m; i++) { x = b[i]; for (j = i - 1; j >= 1 && b[j] > x; j--) b[j + 1] = b[j]; b[j + 1] = x }
      k = (m % 2) ? b[(m + 1) / 2] : (b[m / 2] + b[m / 2 + 1]) / 2
      delete b
      return k
    }
    function slope(a,   i, st, sa, stt, sta, d) {
      for (i = 1; i <= n; i++) { st += t[i]; sa += a[i]; stt += t[i] * t[i]; sta += t[i] * a[i] }
      d = n * stt - st * st
      return d == 0 ? 0 : (n * sta - st * sa) / d * 60
    }
    function minmax(a,   i, lo, hi) {
      lo = a[1]; hi = a[1]
      for (i = 2; i <= n; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }
      return lo "-" hi
    }
    END {
      q = int(n / 4)
      printf "samples: %d in total, %d after the %ds warm-up (t %.0f-%.0fs), quarters of %d\n", total, n, warmup, t[1], t[n], q
      printf "%-8s %14s %14s %9s %16s %12s\n", "", "first quarter", "last quarter", "change", "slope per min", "range"
      r1 = median(rss, 1, q); r4 = median(rss, n - q + 1, n)
      printf "%-8s %11d kB %11d kB %+8.2f%% %13.1f kB %12s\n", "RSS", r1, r4, (r4 - r1) * 100 / r1, slope(rss), minmax(rss)
      a = median(anon, 1, q); b4 = median(anon, n - q + 1, n)
      printf "%-8s %11d kB %11d kB %+8.2f%% %13.1f kB %12s\n", " anon", a, b4, (b4 - a) * 100 / a, slope(anon), minmax(anon)
      a = median(file, 1, q); b4 = median(file, n - q + 1, n)
      printf "%-8s %11d kB %11d kB %+8.2f%% %13.1f kB %12s\n", " file", a, b4, (b4 - a) * 100 / a, slope(file), minmax(file)
      a = median(thr, 1, q); b4 = median(thr, n - q + 1, n)
      printf "%-8s %14d %14d %9s %16.3f %12s\n", "threads", a, b4, (b4 - a), slope(thr), minmax(thr)
      a = median(fd, 1, q); b4 = median(fd, n - q + 1, n)
      printf "%-8s %14d %14d %9s %16.3f %12s\n", "fds", a, b4, (b4 - a), slope(fd), minmax(fd)
      printf "/readyz answers:"
      for (c in code) printf " %s x%d", (c == "000" ? "none within 0.5 s" : c), code[c]
      printf "\n"
      d = (r4 - r1) * 100 / r1; if (d < 0) d = -d
      printf "RSS %s: last quarter median within %.2f%% of the first (limit 2%%)\n", (d <= 2 ? "FLAT" : "NOT FLAT"), d
    }' "$work/samples.csv"
}

echo
say "faults:"
printf '  %s\n' "${fault_log[@]}"
say "load generator restarts: $loadgen_restarts"
say "daemon log: $(grep -c . "$work/daemon.log") lines; events: $(grep -o 'event=[a-z_]*' "$work/daemon.log" | sort | uniq -c | sort -rn | awk '{printf "%s %s, ", $2, $1}' | sed 's/, $//')"
say "daemon stopped with status $daemon_rc after SIGTERM"
echo
summary
if [ -n "${SOAK_SAMPLES:-}" ]; then cp "$work/samples.csv" "$SOAK_SAMPLES"; fi
if [ "$daemon_rc" -ne 0 ]; then exit 1; fi
