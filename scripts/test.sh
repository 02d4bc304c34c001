#!/usr/bin/env bash
# The test command: install dependencies, configure, build, start a private
# PostgreSQL, run every CTest suite, stop PostgreSQL (also on failure).
#
#   bash scripts/test.sh                 # everything, as CI does
#   bash scripts/test.sh -L actors       # extra args go to every ctest run
#   SANITIZE_CHECKS=0 bash scripts/test.sh   # the plain run only
#
# The runs, in this order:
#   1. the core suites under ThreadSanitizer ($BUILD_DIR-tsan): a data race
#      in the checker, breaker or channel monitor fails the run;
#   2. the whole suite under AddressSanitizer + UndefinedBehaviorSanitizer
#      ($BUILD_DIR-asan; leaks are errors too);
#   3. the whole suite in the plain build ($BUILD_DIR), last, so that the
#      final CTest summary (CI reads its closing line as the test count) is
#      the plain run's with every test.
# A failing sanitizer run does not stop the plain run; the script fails at
# the end if any run failed. SANITIZE_CHECKS=0 skips runs 1 and 2.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
sanitize=${SANITIZE_CHECKS:-1}

bash scripts/install-deps.sh

# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} ${CMAKE_ARGS:-}
cmake --build "$build_dir" -j "$jobs"

failed=()

# 1. The concurrent core under ThreadSanitizer (no database needed).
if [ "$sanitize" != "0" ]; then
  tsan_dir=${TSAN_BUILD_DIR:-$build_dir-tsan}
  cmake -S . -B "$tsan_dir" -DCMAKE_BUILD_TYPE=Debug -DTASKER_HEALTH_SANITIZE=thread \
    -DTASKER_HEALTH_BUILD_APPS=OFF -DTASKER_HEALTH_BUILD_BENCH=OFF \
    -DTASKER_HEALTH_TEST_AREAS=core
  cmake --build "$tsan_dir" -j "$jobs" --target core-tests
  ctest --test-dir "$tsan_dir" -L core --output-on-failure || failed+=("TSan core suites")
fi

# 2. Everything that the whole suite runs, built with ASan+UBSan (Debug: it
# compiles faster; the sanitizers do not need the optimizer). No benchmarks.
if [ "$sanitize" != "0" ]; then
  asan_dir=${ASAN_BUILD_DIR:-$build_dir-asan}
  cmake -S . -B "$asan_dir" -DCMAKE_BUILD_TYPE=Debug -DTASKER_HEALTH_SANITIZE=address \
    -DTASKER_HEALTH_BUILD_BENCH=OFF
  cmake --build "$asan_dir" -j "$jobs"
fi

export TASKER_PG_DIR
TASKER_PG_DIR=$(mktemp -d /tmp/tasker-health-pg.XXXXXX)
cleanup() { bash scripts/pg.sh stop "$TASKER_PG_DIR" || true; }
trap cleanup EXIT
eval "$(bash scripts/pg.sh start "$TASKER_PG_DIR")"

if [ "$sanitize" != "0" ]; then
  echo "test.sh: the whole suite under ASan+UBSan ($asan_dir)"
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp} \
    ctest --test-dir "$asan_dir" --output-on-failure --timeout 600 "$@" \
    || failed+=("ASan+UBSan suite")
fi

# 3. The plain run, last: its summary closes the output.
echo "test.sh: the whole suite ($build_dir)"
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 "$@" \
  || failed+=("plain suite")

if [ ${#failed[@]} -gt 0 ]; then
  printf 'test.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
