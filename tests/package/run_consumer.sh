#!/usr/bin/env bash
# Installs a tasker-health build into a temporary prefix, then configures,
# builds and runs tests/package/consumer against it: one program through the
# CMake package (find_package + tasker::health), one through pkg-config
# (tasker-health.pc, core only). Fails if any step fails; always cleans up.
#
#   tests/package/run_consumer.sh <build-dir> <source-dir>
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <build-dir> <source-dir>" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
cache="$build/CMakeCache.txt"
[ -f "$cache" ] || { echo "run_consumer: $build is not a CMake build dir" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/tasker-health-package.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
prefix="$work/prefix"
unset DESTDIR # install into $prefix itself

step() { echo "run_consumer: $*"; }
cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$cache" | head -n 1; }

step "building the libraries in $build"
cmake --build "$build" --target tasker_health_core tasker_health_postgres \
  tasker_health_messages tasker_health_actors -j2 >"$work/lib-build.log" 2>&1 || {
  cat "$work/lib-build.log" >&2
  exit 1
}

# Only the package's component: the build dir may hold programs (the daemon,
# ...) that this test did not build.
step "installing component tasker_health_dev into $prefix"
cmake --install "$build" --prefix "$prefix" --component tasker_health_dev

# The package's own files, wherever GNUInstallDirs put the lib dir
# (lib, lib64 or lib/<multiarch>).
pc=$(find "$prefix" -name tasker-health.pc -path '*/pkgconfig/*' | head -n 1)
config=$(find "$prefix" -name tasker_healthConfig.cmake | head -n 1)
[ -n "$pc" ] || { echo "run_consumer: no tasker-health.pc installed" >&2; exit 1; }
[ -n "$config" ] || { echo "run_consumer: no tasker_healthConfig.cmake installed" >&2; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
for lib in core postgres messages actors; do
  [ -f "$libdir/libtasker_health_$lib.a" ] || {
    echo "run_consumer: $libdir/libtasker_health_$lib.a missing" >&2
    exit 1
  }
done
for hdr in core/snapshot_cell.hpp core/postgres/pg_database_check.hpp \
  messages/registration.hpp actors/health_system.hpp; do
  [ -f "$prefix/include/tasker-health/$hdr" ] || {
    echo "run_consumer: header $hdr not installed" >&2
    exit 1
  }
done
[ -f "$(dirname "$config")/FindCAF.cmake" ] || {
  echo "run_consumer: FindCAF.cmake not installed next to the config" >&2
  exit 1
}
if grep -rq tasker_health_options "$(dirname "$config")"; then
  echo "run_consumer: tasker_health_options leaked into the export:" >&2
  grep -rn tasker_health_options "$(dirname "$config")" >&2
  exit 1
fi

# Same compiler and sanitizer as the build under test (static libraries).
cxx=$(cache_value CMAKE_CXX_COMPILER)
build_type=$(cache_value CMAKE_BUILD_TYPE)
sanitize=$(cache_value TASKER_HEALTH_SANITIZE)
san_flags=""
case "$sanitize" in
  address) san_flags="-fsanitize=address,undefined -fno-omit-frame-pointer" ;;
  thread) san_flags="-fsanitize=thread -fno-omit-frame-pointer" ;;
esac

export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
step "pkg-config: $(pkg-config --cflags --libs tasker-health)"

step "configuring the consumer"
cmake -S "$src/tests/package/consumer" -B "$work/consumer" \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON \
  ${cxx:+-DCMAKE_CXX_COMPILER="$cxx"} \
  -DCMAKE_BUILD_TYPE="${build_type:-Debug}" \
  -DCMAKE_CXX_FLAGS="$san_flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$san_flags"
found=$(sed -n 's/^tasker_health_DIR:PATH=//p' "$work/consumer/CMakeCache.txt")
case "$found" in
  "$prefix"/*) ;;
  *)
    echo "run_consumer: tasker_health found in '$found', not in $prefix" >&2
    exit 1
    ;;
esac

step "building the consumer"
cmake --build "$work/consumer" -j2

step "running consumer (CMake package)"
timeout 60 "$work/consumer/consumer"
step "running consumer-pc (pkg-config)"
timeout 60 "$work/consumer/consumer-pc"
step "ok"
