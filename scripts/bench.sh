#!/usr/bin/env bash
# The queue depth benchmark: install dependencies, build queue-depth-bench
# (RelWithDebInfo), start a private PostgreSQL, run the bench against it and
# stop PostgreSQL again (also on failure). Extra arguments go to the bench
# (see bench/queue_depth_bench.cpp):
#
#   bash scripts/bench.sh            # {10,100,1000} queues x {500,10k}
#                                    # messages but 1000 x 10k: ~30 s
#   bash scripts/bench.sh --big      # all rows: + 1000 x 10k, 10 x 1M plain
#                                    # and partitioned in flight: ~5 min
#   bash scripts/bench.sh --queues 10,100 --messages 500 --runs 50
#   BUILD_DIR=build-bench bash scripts/bench.sh   # another build directory
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

bash scripts/install-deps.sh

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build_dir" -j "$jobs" --target queue-depth-bench

pg_dir=$(mktemp -d /tmp/tasker-health-bench-pg.XXXXXX)
cleanup() { bash scripts/pg.sh stop "$pg_dir" || true; }
trap cleanup EXIT
eval "$(bash scripts/pg.sh start "$pg_dir")"

"$build_dir/bench/queue-depth-bench" "$TASKER_HEALTH_TEST_PG" "$@"
