#!/usr/bin/env bash
# The test command: install dependencies, configure, build, start a private
# PostgreSQL, run every CTest suite, stop PostgreSQL (also on failure).
#
#   bash scripts/test.sh                 # everything
#   BUILD_DIR=build-asan CMAKE_ARGS="-DTASKER_HEALTH_SANITIZE=address" \
#     bash scripts/test.sh -L actors     # extra args go to ctest
#
# Before the main run, the core suites are built and run under TSan
# (in $BUILD_DIR-tsan; SANITIZE_CHECKS=0 skips that).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

bash scripts/install-deps.sh

# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} ${CMAKE_ARGS:-}
cmake --build "$build_dir" -j "$jobs"

# The concurrent core (checker, breaker, channel monitor) under ThreadSanitizer
# first: a data race fails the run. SANITIZE_CHECKS=0 skips it. (Before the
# main run, so that CTest's closing line counts every suite.)
if [ "${SANITIZE_CHECKS:-1}" != "0" ]; then
  tsan_dir=${TSAN_BUILD_DIR:-$build_dir-tsan}
  cmake -S . -B "$tsan_dir" -DCMAKE_BUILD_TYPE=Debug -DTASKER_HEALTH_SANITIZE=thread \
    -DTASKER_HEALTH_BUILD_APPS=OFF -DTASKER_HEALTH_BUILD_BENCH=OFF \
    -DTASKER_HEALTH_TEST_AREAS=core
  cmake --build "$tsan_dir" -j "$jobs" --target core-tests
  ctest --test-dir "$tsan_dir" -L core --output-on-failure
fi

export TASKER_PG_DIR
TASKER_PG_DIR=$(mktemp -d /tmp/tasker-health-pg.XXXXXX)
cleanup() { bash scripts/pg.sh stop "$TASKER_PG_DIR" || true; }
trap cleanup EXIT
eval "$(bash scripts/pg.sh start "$TASKER_PG_DIR")"

ctest --test-dir "$build_dir" --output-on-failure --timeout 600 "$@"
