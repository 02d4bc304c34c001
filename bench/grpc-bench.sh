#!/usr/bin/env bash
# The daemon's gRPC health surface on loopback: builds tasker-health and
# grpc-bench (RelWithDebInfo) unless SKIP_BUILD=1, starts a private
# PostgreSQL (scripts/pg.sh) with one queue, the daemon with the shipped
# configuration plus [grpc] port (1 s evaluation interval, at most 2,000
# watchers), and runs
# bench/grpc_bench.cpp: Check p50/p99 on one connection without and with
# 1,000 watchers, the daemon's RSS and threads, and the time until every
# watcher saw the queue pass Overflow and drain again (psql), with 500 more
# watchers held by a client process that is stopped (SIGSTOP).
#
#   bash bench/grpc-bench.sh [--calls 20000] [--watchers 1000]
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${BUILD_DIR:-build}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build_dir" -j "${JOBS:-$(nproc)}" --target tasker-health grpc-bench >/dev/null
fi
bin="$build_dir/apps/tasker-health/tasker-health"
bench="$build_dir/bench/grpc-bench"

work=$(mktemp -d /tmp/tasker-health-grpc-bench.XXXXXX)
pg_dir=$(mktemp -d /tmp/tasker-health-grpc-bench-pg.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  bash scripts/pg.sh stop "$pg_dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash scripts/pg.sh start "$pg_dir")" >/dev/null
psql "$TASKER_HEALTH_TEST_PG" -q -f scripts/sql/pgmq_compat.sql >/dev/null
psql "$TASKER_HEALTH_TEST_PG" -q -c "SELECT pgmq.create('orders')" >/dev/null

grpc_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 50051)
"$bin" --config-file=config/tasker-health.ini \
  "--database.url=$TASKER_HEALTH_TEST_PG" --http.port=0 \
  '--queues.names=["orders"]' '--queues.thresholds=["orders=100/200/400"]' \
  --health.evaluation-interval=1s --health.probe-timeout=800ms \
  --database.query-timeout=500ms --database.connect-timeout=500ms \
  --grpc.max-watchers=2000 "--grpc.port=$grpc_port" >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  grep -q "event=grpc_listening" "$work/daemon.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "event=grpc_listening" "$work/daemon.log" || { echo "grpc-bench.sh: the daemon did not start" >&2; exit 1; }

echo "tasker-health gRPC health, $(date -u +%Y-%m-%d), $(nproc) cores," \
  "$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)"
"$bench" --port "$grpc_port" --pid "$pid" \
  --flip "psql '$TASKER_HEALTH_TEST_PG' -q -c \"SELECT pgmq.send_batch('orders', ARRAY(SELECT '{}'::jsonb FROM generate_series(1, 450)))\" >/dev/null" \
  --frozen 500 --unflip "psql '$TASKER_HEALTH_TEST_PG' -q -c 'DELETE FROM pgmq.q_orders' >/dev/null" \
  "$@"
