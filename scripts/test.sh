#!/usr/bin/env bash
# The test command: install dependencies, configure, build, start a private
# PostgreSQL, run every CTest suite, stop PostgreSQL (also on failure).
#
#   bash scripts/test.sh                 # everything
#   BUILD_DIR=build-tsan CMAKE_ARGS="-DTASKER_HEALTH_SANITIZE=thread" \
#     bash scripts/test.sh -R '^core\.'  # extra args go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

bash scripts/install-deps.sh

# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} ${CMAKE_ARGS:-}
cmake --build "$build_dir" -j "$jobs"

export TASKER_PG_DIR
TASKER_PG_DIR=$(mktemp -d /tmp/tasker-health-pg.XXXXXX)
cleanup() { bash scripts/pg.sh stop "$TASKER_PG_DIR" || true; }
trap cleanup EXIT
eval "$(bash scripts/pg.sh start "$TASKER_PG_DIR")"

ctest --test-dir "$build_dir" --output-on-failure --timeout 600 "$@"
