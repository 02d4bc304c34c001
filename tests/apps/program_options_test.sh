#!/usr/bin/env bash
# The command lines of the programs beside the daemon (apps/common/
# cli_options.hpp): for every option that scripts and docs use,
#   - --help exits 0 and lists it (--help is generated from the option table);
#   - a bad value exits 2 with "PROGRAM: --option: ..." naming it and its rule;
# an unknown option and a stray argument exit 2 naming them; "--name VALUE"
# is accepted like "--name=VALUE"; and given values reach the program (the
# benches print them in their first line).
#
#   tests/apps/program_options_test.sh <tasker-health-loadgen> <http-abuse> \
#       <checker-bench> <cluster-bench>
#
# Needs no database and no daemon; about 3 s (two short bench runs).
set -euo pipefail

if [ $# -ne 4 ]; then
  echo "usage: $0 <tasker-health-loadgen> <http-abuse> <checker-bench>" \
    "<cluster-bench>" >&2
  exit 2
fi
loadgen=$1 abuse=$2 checker=$3 cluster=$4
failures=0
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# run BIN ARGS...: exit code in $rc, stdout in $out, stderr in $err.
run() {
  set +e
  timeout 60 env -u TASKER_HEALTH_TEST_PG "$@" >"$out" 2>"$err"
  rc=$?
  set -e
}

# refused BIN NAME ARGS...: exits 2 and names --NAME on stderr.
refused() {
  local bin=$1 name=$2
  shift 2
  run "$bin" "$@"
  local prog
  prog=$(basename "$bin")
  if [ "$rc" -ne 2 ]; then
    fail "$prog $*: exit $rc, expected 2"
  elif ! grep -q -- "^$prog: --$name: " "$err"; then
    fail "$prog $*: stderr does not name --$name: $(cat "$err")"
  fi
}

# options BIN "NAME BAD-ARG" ...: each NAME listed by --help, BAD-ARG refused
# naming it.
options() {
  local bin=$1
  shift
  run "$bin" --help
  [ "$rc" -eq 0 ] || fail "$(basename "$bin") --help: exit $rc"
  local help
  help=$(cat "$out")
  for spec in "$@"; do
    local name=${spec%% *} bad=${spec#* }
    grep -q -- "^  --$name\\b" <<<"$help" \
      || fail "$(basename "$bin") --help does not list --$name"
    refused "$bin" "$name" $bad
  done
  refused "$bin" no-such-option --no-such-option=1
  run "$bin" stray
  [ "$rc" -eq 2 ] && grep -q "unexpected argument 'stray'" "$err" \
    || fail "$(basename "$bin") stray: exit $rc, $(cat "$err")"
}

options "$loadgen" \
  "db --db=" "queues --db=x --queues=a,A" "peak --db=x --peak=x" \
  "low --db=x --low=-1" "fill-seconds --db=x --fill-seconds=0" \
  "hold-seconds --db=x --hold-seconds=x" \
  "drain-seconds --db=x --drain-seconds=86401" \
  "rest-seconds --db=x --rest-seconds=-1" "spread --db=x --spread=1.5" \
  "tick-ms --db=x --tick-ms=5" "max-batch --db=x --max-batch=0" \
  "seconds --db=x --seconds=-1"
# Rules across options, and the database as a requirement.
refused "$loadgen" peak --db=x --peak=5 --low=5
refused "$loadgen" queues --db=x --low=100 --queues=a:50
refused "$loadgen" db

options "$abuse" \
  "port --port=70000 --pid=1" "pid --port=1 --pid=x" \
  "seconds --port=1 --pid=1 --seconds=61" "log --port=1 --pid=1 --log" \
  "sigterm --port=1 --pid=1 --sigterm=yes"
refused "$abuse" pid --port=1
# The form bench/http-abuse.sh uses: --name VALUE.
refused "$abuse" seconds --port 8080 --pid 1 --seconds 0

options "$checker" \
  "reps --reps=0" "ms --ms=x" "batch-us --batch-us=4"
run "$checker" --reps 1 --ms 10 --batch-us=5
[ "$rc" -eq 0 ] && grep -q "^checker-bench: 1 repetitions x 10 ms, batches of about 5 us" "$out" \
  || fail "checker-bench --reps 1 --ms 10 --batch-us=5: exit $rc, $(head -1 "$out")"

options "$cluster" \
  "seconds --seconds=0" "repeat --repeat=x" "queues --queues=0" \
  "rows --rows=remote:1:tsl"
refused "$cluster" rows --rows=nowhere:1
# CAF's own options pass to every node.
run "$cluster" --seconds=1 --repeat=1 --queues=2 --rows=local:1 \
  --scheduler.max-threads=2
[ "$rc" -eq 0 ] && grep -q "1 s per run after a 1 s warm-up, 1 runs per row (rows interleaved), 2 queues per snapshot" "$out" \
  && grep -q "^| local caches (same node, anchor) | 1 |" "$out" \
  || fail "cluster-bench --seconds=1 ...: exit $rc, $(head -3 "$out") $(cat "$err")"
refused "$cluster" scheduler.max-threads --scheduler.max-threads=x

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "PASS"
