#!/usr/bin/env bash
# Load and abuse of the daemon's HTTP server on loopback: builds
# tasker-health and http-abuse (RelWithDebInfo) unless SKIP_BUILD=1, starts
# a private PostgreSQL (scripts/pg.sh) and the daemon with the shipped
# configuration (config/tasker-health.ini, port chosen by the kernel), runs
# bench/http_abuse.cpp against it and ends with SIGTERM under held
# connections. Bounded: about 20 s of load (6 rows x --seconds) and a fixed
# number of connections (at most 2,100 at once, 2,000 in the 2 s churn),
# from loopback addresses 127.0.0.1 to 127.0.0.37.
#
#   bash bench/http-abuse.sh [--seconds 3]
#   BUILD_DIR=build-bench bash bench/http-abuse.sh
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${BUILD_DIR:-build}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build_dir" -j "${JOBS:-$(nproc)}" --target tasker-health http-abuse >/dev/null
fi
bin="$build_dir/apps/tasker-health/tasker-health"
abuse="$build_dir/bench/http-abuse"

work=$(mktemp -d /tmp/tasker-health-abuse.XXXXXX)
pg_dir=$(mktemp -d /tmp/tasker-health-abuse-pg.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  bash scripts/pg.sh stop "$pg_dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash scripts/pg.sh start "$pg_dir")" >/dev/null

# The daemon needs max-connections + max-connections/8 + 64 descriptors and
# the client 8192.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
"$bin" --config-file=config/tasker-health.ini \
  "--database.url=$TASKER_HEALTH_TEST_PG" --http.port=0 >"$work/daemon.log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*event=listening address=[^ ]* port=\([0-9]*\).*/\1/p' "$work/daemon.log" | head -n 1)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "http-abuse.sh: the daemon did not start" >&2; exit 1; }
until curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; do sleep 0.2; done

echo "tasker-health HTTP load and abuse, $(date -u +%Y-%m-%d), $(nproc) cores," \
  "$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)"
"$abuse" --port "$port" --pid "$pid" --log "$work/daemon.log" --sigterm "$@"
rc=0
wait "$pid" || rc=$?
pid=""
echo "daemon exit code after SIGTERM: $rc"
