#!/usr/bin/env bash
# The demo: the tasker-health daemon watching a private PostgreSQL whose
# PGMQ-compatible queues are filled and drained by a load generator, with the
# live state (status, decision, Retry-After, dimensions, queue depths and
# tiers) shown in the terminal. The live view reads the daemon the way other
# nodes do: over CAF networking (`tasker-health status --connect ... --watch`
# against the daemon's cluster.port on loopback), not over HTTP.
#
#   bash scripts/demo.sh                 # about a minute, then cleans up
#   bash scripts/demo.sh --seconds 120   # or DEMO_SECONDS=120
#   bash scripts/demo.sh --seconds 0     # until Ctrl-C
#
# Steps: install the Debian packages (scripts/install-deps.sh), configure and
# build the daemon and the load generator, start a throw-away PostgreSQL
# (scripts/pg.sh), load scripts/sql/pgmq_compat.sql, create the queues
# orders, events and notifications, start the daemon (HTTP on a free port,
# cluster.port on a free loopback port), start the load generator, and show
# the live view until the time is up or Ctrl-C. Whatever happens, an EXIT trap
# stops the live view, the load generator and the daemon, prints the end of
# the daemon's log and removes PostgreSQL.
#
# On a terminal the table is redrawn in place; otherwise (CI logs) one plain
# line per cycle (and one per change) is printed, without ANSI codes.
#
# Environment: DEMO_SECONDS (60), BUILD_DIR (build), BUILD_TYPE
# (RelWithDebInfo), JOBS (2), DEMO_START_TIMEOUT (30, seconds to wait for the
# daemon's /livez), DEMO_KEEP=1 keeps the temporary directory with the logs.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: bash scripts/demo.sh [--seconds N] [--skip-deps] [--skip-build]

Runs the tasker-health daemon against a private PostgreSQL with PGMQ-compatible
queues under a cycling load, and shows its live state as another node sees it
(tasker-health status --watch over CAF networking). Ends after N seconds
(default: $DEMO_SECONDS, else 60; 0 = until Ctrl-C) and always cleans up.

  --seconds N    how long to show the live state (whole seconds, >= 0)
  --skip-deps    do not run scripts/install-deps.sh
  --skip-build   do not configure and build (the binaries must exist)
  -h, --help     this help

environment: DEMO_SECONDS, BUILD_DIR (build), BUILD_TYPE (RelWithDebInfo),
JOBS (2), DEMO_START_TIMEOUT (30), DEMO_KEEP=1 (keep logs and config).
EOF
}

seconds=${DEMO_SECONDS:-60}
skip_deps=0
skip_build=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds)
      if [ $# -lt 2 ]; then
        echo "demo.sh: --seconds needs a value (--seconds N)" >&2
        exit 2
      fi
      seconds=$2
      shift 2
      ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --skip-deps) skip_deps=1; shift ;;
    --skip-build) skip_build=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *)
      echo "demo.sh: unknown argument '$1' (see --help)" >&2
      exit 2
      ;;
  esac
done
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "${#seconds}" -gt 8 ]; then
  echo "demo.sh: --seconds / DEMO_SECONDS must be a whole number of seconds >= 0, got '$seconds'" >&2
  exit 2
fi
start_timeout=${DEMO_START_TIMEOUT:-30}
if ! [[ "$start_timeout" =~ ^[0-9]+$ ]] || [ "$start_timeout" -lt 1 ]; then
  echo "demo.sh: DEMO_START_TIMEOUT must be a whole number of seconds >= 1, got '$start_timeout'" >&2
  exit 2
fi

build_dir=${BUILD_DIR:-build}
daemon=$build_dir/apps/tasker-health/tasker-health
loadgen=$build_dir/apps/demo/tasker-health-loadgen

interactive=0
if [ -t 1 ]; then interactive=1; fi

say() { printf 'demo: %s\n' "$*"; }

# ---- cleanup: runs on every exit ----------------------------------------------
work=""
pgdir=""
daemon_pid=""
loadgen_pid=""
watch_pid=""
failed=0

# Stops one process of ours: SIGTERM, then SIGKILL after $2 seconds.
stop_pid() {
  local pid=$1 grace=$2 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "process $pid did not stop within ${grace}s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ "$rc" -ne 0 ] && failed=1
  stop_pid "$watch_pid" 5
  stop_pid "$loadgen_pid" 5
  stop_pid "$daemon_pid" 15
  if [ -n "$work" ] && [ -f "$work/loadgen.log" ] && [ "$interactive" -eq 1 ]; then
    echo
    say "last lines of the load generator's log:"
    tail -n 8 "$work/loadgen.log" | sed 's/^/  /'
  fi
  if [ -n "$work" ] && [ -s "$work/daemon.log" ]; then
    echo
    say "last lines of the daemon's log ($work/daemon.log):"
    tail -n "$([ "$failed" -eq 1 ] && echo 60 || echo 15)" "$work/daemon.log" | sed 's/^/  /'
  fi
  if [ -n "$pgdir" ]; then
    bash scripts/pg.sh stop "$pgdir" >/dev/null 2>&1 || true
    say "PostgreSQL stopped and removed"
  fi
  if [ -n "$work" ]; then
    if [ "${DEMO_KEEP:-0}" = 1 ] || { [ "$failed" -eq 1 ] && [ -n "$(ls -A "$work")" ]; }; then
      say "logs and configuration kept in $work"
    else
      rm -rf "$work"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
# Ctrl-C during the live view is the normal way to end it early (exit 0);
# before that it aborts the setup (exit 130).
live=0
on_interrupt() {
  echo
  if [ "$live" -eq 1 ]; then
    say "stopped by Ctrl-C"
    exit 0
  fi
  say "interrupted"
  exit 130
}
trap on_interrupt INT
trap 'say "terminated"; exit 143' TERM

# ---- dependencies and build ---------------------------------------------------
if [ "$skip_deps" -eq 0 ]; then
  say "installing dependencies (scripts/install-deps.sh)"
  bash scripts/install-deps.sh
fi
if [ "$skip_build" -eq 0 ]; then
  say "configuring and building in $build_dir"
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}"
  cmake --build "$build_dir" -j "${JOBS:-2}" \
    --target tasker-health tasker-health-loadgen
fi
for bin in "$daemon" "$loadgen"; do
  if [ ! -x "$bin" ]; then
    echo "demo.sh: $bin is missing (build it, or run without --skip-build)" >&2
    exit 1
  fi
done

# ---- PostgreSQL with the PGMQ-compatible schema and the queues ----------------
work=$(mktemp -d /tmp/tasker-health-demo.XXXXXX)
pgdir=$(mktemp -d /tmp/tasker-health-demo-pg.XXXXXX)
say "starting a private PostgreSQL in $pgdir"
pg_env=$(bash scripts/pg.sh start "$pgdir")
eval "$pg_env"
db=$TASKER_HEALTH_TEST_PG

say "loading scripts/sql/pgmq_compat.sql and creating the queues"
export PGOPTIONS="-c client_min_messages=warning"
psql "$db" -X -q -v ON_ERROR_STOP=1 -f scripts/sql/pgmq_compat.sql >/dev/null
queues=(orders events notifications)
for q in "${queues[@]}"; do
  psql "$db" -X -q -v ON_ERROR_STOP=1 -c "SELECT pgmq.create('$q')" >/dev/null
done
unset PGOPTIONS

# ---- the daemon -----------------------------------------------------------------
# The daemon binds any free HTTP port (http.port=0) and logs it. Its
# cluster.port (0 means off) is picked here: a loopback port where nothing
# listens; should another process take it first, the daemon exits 1 naming
# cluster.port and the demo shows its log.
pick_port() {
  local p i
  for ((i = 0; i < 100; i++)); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
cluster_port=$(pick_port) || { echo "demo.sh: no free loopback port found" >&2; exit 1; }
# Thresholds: the defaults (1000 / 5000 / 10000) for orders and events; the
# smaller notifications queue gets its own so that it cycles through every
# tier with a tenth of the messages.
cat >"$work/tasker-health.ini" <<EOF
; tasker-health demo configuration (written by scripts/demo.sh)
[health]
node-id="demo"
evaluation-interval=1s
probe-timeout=800ms
stale-threshold=10s
[database]
url="$db"
; both below health.probe-timeout, so that a slow or unreachable server is
; reported within the cycle
query-timeout=500ms
connect-timeout=600ms
[queues]
names=["orders", "events", "notifications"]
; per-queue thresholds: "name=warning/critical/overflow"
thresholds=["notifications=200/500/1000"]
hysteresis-margin=50
[http]
address="127.0.0.1"
port=0
[cluster]
; the publisher other nodes (and tasker-health status) connect to; loopback
; only (a published port beyond loopback needs mutual TLS, see the README)
port=$cluster_port
bind="127.0.0.1"
[log]
level="info"
EOF

say "starting the daemon (config $work/tasker-health.ini)"
: >"$work/daemon.log" # exists before the background child opens it
"$daemon" --config-file="$work/tasker-health.ini" >>"$work/daemon.log" 2>&1 &
daemon_pid=$!

deadline=$((SECONDS + start_timeout))
port=""
until [ -n "$port" ] && curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$port/livez" 2>/dev/null; do
  if [ -z "$port" ]; then
    port=$(sed -n 's/.*event=listening address=[^ ]* port=\([0-9]*\).*/\1/p' "$work/daemon.log" | head -n 1)
  fi
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    rc=0
    wait "$daemon_pid" || rc=$?
    daemon_pid=""
    echo "demo.sh: the daemon exited (status $rc) before answering /livez; its log:" >&2
    sed 's/^/  /' "$work/daemon.log" >&2
    : >"$work/daemon.log" # already shown
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "demo.sh: the daemon did not answer /livez within ${start_timeout}s (port: ${port:-not logged yet})" >&2
    exit 1
  fi
  sleep 0.2
done
say "daemon is live: HTTP on 127.0.0.1:$port, cluster.port 127.0.0.1:$cluster_port (pid $daemon_pid)"

# ---- the load ---------------------------------------------------------------------
# Each queue: fill 10 s from 0 to its peak, hold 3 s, drain 8 s, rest 9 s
# (period 30 s); the queues run 0 / 4 / 8 s apart. orders and events peak at
# 12000 (above overflow 10000), notifications at 1200 (above its overflow
# 1000). Per cycle each queue is about 1 s Normal -> 3 s Warning -> 4 s
# Critical -> 6 s Overflow -> 3 s Critical -> 3 s Warning -> 10 s Normal, and
# for about 8 s no queue is Critical, so the decision returns to accepting.
loadgen_args=(
  --db="$db"
  --queues="orders,events,notifications:1200"
  --peak=12000 --low=0
  --fill-seconds=10 --hold-seconds=3 --drain-seconds=8 --rest-seconds=9
  --spread=0.4
  --tick-ms=250
)
if [ "$interactive" -eq 1 ]; then
  "$loadgen" "${loadgen_args[@]}" 2>"$work/loadgen.log" &
else
  "$loadgen" "${loadgen_args[@]}" &
fi
loadgen_pid=$!
say "load generator started (pid $loadgen_pid)"

# ---- the live view ----------------------------------------------------------------
# Read over CAF networking, as another node would: the daemon's publisher on
# cluster.port, the same link (heartbeats, reconnects) as a cluster peer.
if [ "$seconds" -eq 0 ]; then
  say "showing the live state until Ctrl-C"
else
  say "showing the live state for ${seconds}s (Ctrl-C ends it earlier)"
fi
say "live view: $daemon status --connect=127.0.0.1:$cluster_port --watch"
watch_args=(status --connect="127.0.0.1:$cluster_port" --watch --interval=1s)
if [ "$interactive" -eq 0 ]; then watch_args+=(--plain); fi
"$daemon" "${watch_args[@]}" &
watch_pid=$!
live=1
end=$((SECONDS + seconds))

# Wait for the live view (it runs until SIGTERM: sent once the time is up),
# but end early if the daemon or the load generator dies.
while kill -0 "$watch_pid" 2>/dev/null; do
  if [ "$seconds" -gt 0 ] && [ "$SECONDS" -ge "$end" ]; then
    kill -TERM "$watch_pid" 2>/dev/null || true
    break
  fi
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    rc=0
    wait "$daemon_pid" || rc=$?
    daemon_pid=""
    echo "demo.sh: the daemon exited during the demo (status $rc)" >&2
    exit 1
  fi
  if ! kill -0 "$loadgen_pid" 2>/dev/null; then
    rc=0
    wait "$loadgen_pid" || rc=$?
    loadgen_pid=""
    echo "demo.sh: the load generator exited during the demo (status $rc)" >&2
    [ -f "$work/loadgen.log" ] && tail -n 20 "$work/loadgen.log" >&2
    exit 1
  fi
  sleep 0.5
done
rc=0
wait "$watch_pid" || rc=$?
watch_pid=""
if [ "$rc" -ne 0 ]; then
  echo "demo.sh: the live view failed (status $rc)" >&2
  exit 1
fi
echo
say "done"
