#!/usr/bin/env bash
# End-to-end test of apps/example-orchestrator against a real PostgreSQL.
#
#   tests/apps/example_orchestrator_test.sh <example-orchestrator> <source-dir> \
#       [<tasker-health>]
#
# Needs TASKER_HEALTH_TEST_PG (a libpq connection string of a server where it
# may create databases); fails when it is unset. Creates a scratch database
# with the PGMQ-compatible schema and one queue, then:
#   1. configuration errors exit 2 naming the option; --help exits 0;
#   2. with the DB and the queue watched: a second instance on the same port
#      fails (exit 1); POST /commands -> 202; GET /commands -> 405 + Allow,
#      a 70 KB body -> 413, /nope -> 404; queue filled
#      past its critical threshold -> 503 with Retry-After; queue drained ->
#      202 again; SIGTERM -> exit 0;
#   3. channel only, slow commands: the channel fills -> 503 "channel full",
#      then the checker rejects with source channel and Retry-After 15;
#      SIGTERM -> exit 0;
#   4. (with <tasker-health>) --peers: a bad peer exits 2 naming peers; a
#      daemon publishing on cluster.port and a port where nothing listens as
#      peers: GET /status lists the daemon and "local" in accepting_nodes, not
#      the dead port; the daemon killed: it leaves accepting_nodes.
# Every wait is a bounded poll; the cleanup (trap) kills the programs and
# drops the database.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 <example-orchestrator> <source-dir> [<tasker-health>]" >&2
  exit 2
fi
bin=$1
src=$2
daemon=${3:-}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
note() { echo "--- $*"; }

[ -x "$bin" ] || fail "no executable at $bin"
[ -n "${TASKER_HEALTH_TEST_PG:-}" ] \
  || fail "TASKER_HEALTH_TEST_PG is not set (start a server: eval \"\$(bash scripts/pg.sh start)\")"
for tool in psql curl; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/example-orchestrator-test.XXXXXX")
db="th_example_orch_$$_${RANDOM}"
pids=()
db_created=0

cleanup() {
  local rc=$?
  set +e
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    fi
  done
  if [ "$db_created" = 1 ]; then
    psql "$TASKER_HEALTH_TEST_PG" -qAt -v ON_ERROR_STOP=1 \
      -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 \
      || echo "warning: could not drop database $db" >&2
  fi
  if [ "$rc" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      echo "===== $(basename "$log") (last 40 lines)" >&2
      tail -n 40 "$log" >&2
    done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The connection string of the scratch database (key=value or URI form).
case "$TASKER_HEALTH_TEST_PG" in
  postgres://* | postgresql://*)
    conn=$(printf '%s' "$TASKER_HEALTH_TEST_PG" \
      | sed -E "s#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\1/$db#")
    ;;
  *) conn="$TASKER_HEALTH_TEST_PG dbname=$db" ;;
esac
sql() { psql "$conn" -qAt -v ON_ERROR_STOP=1 "$@"; }

# ---- helpers ----------------------------------------------------------------

# wait_until <seconds> <description> <command...>: polls every 100 ms.
wait_until() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail "timed out after ${secs}s waiting for: $what"
    fi
    sleep 0.1
  done
}

# start <name> <args...>: starts the orchestrator on a free port; sets $pid
# and $port once it listens.
start() {
  local name=$1
  shift
  local log="$work/$name.log"
  : >"$log" # exists before the background child opens it
  "$bin" --port=0 "$@" >>"$log" 2>&1 &
  pid=$!
  pids+=("$pid")
  port=""
  local deadline=$((SECONDS + 30))
  while [ -z "$port" ]; do
    kill -0 "$pid" 2>/dev/null || fail "$name exited during startup"
    [ "$SECONDS" -lt "$deadline" ] || fail "$name did not start listening"
    port=$(sed -n 's#.*listening on http://[^:]*:\([0-9]*\).*#\1#p' "$log" | head -n 1)
    [ -n "$port" ] || sleep 0.1
  done
  note "$name: pid $pid, port $port"
}

# stop_expect_zero: SIGTERM, bounded wait, exit code must be 0.
stop_expect_zero() {
  local name=$1
  kill -TERM "$pid"
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$name did not exit within 20s of SIGTERM"
    sleep 0.1
  done
  local rc=0
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "$name exited with $rc after SIGTERM (expected 0)"
  note "$name: clean exit 0 after SIGTERM"
}

# post: POST /commands; sets $code, $retry_after (empty if absent), $body.
post() {
  code=$(curl -s -m 5 -o "$work/body" -D "$work/headers" -w '%{http_code}' \
    -X POST --data '{"job":"e2e"}' "http://127.0.0.1:$port/commands") || code=000
  body=$(cat "$work/body" 2>/dev/null || true)
  retry_after=$(tr -d '\r' <"$work/headers" 2>/dev/null \
    | sed -n 's/^[Rr]etry-[Aa]fter: *//p' | head -n 1)
}

status() {
  curl -s -m 5 "http://127.0.0.1:$port/status" || true
}

# Conditions for wait_until.
snapshot_with_db_and_queue() {
  local s
  s=$(status)
  [[ "$s" =~ \"sequence\":[1-9] ]] && [[ "$s" == *'"db_connected":true'* ]] \
    && [[ "$s" == *'"queue_tier":"normal"'* ]]
}
first_snapshot() { [[ "$(status)" =~ \"sequence\":[1-9] ]]; }
post_rejected_by() { # <source>
  post
  [ "$code" = 503 ] && [[ "$body" == *"\"source\":\"$1\""* ]] \
    && [[ "$body" != *'"code":"channel_full"'* ]]
}
post_accepted() {
  post
  [ "$code" = 202 ]
}
post_class() { # <work class> <key>: as post, with X-Work-Class and X-Work-Key
  code=$(curl -s -m 5 -o "$work/body" -D "$work/headers" -w '%{http_code}' \
    -H "X-Work-Class: $1" -H "X-Work-Key: $2" \
    -X POST --data '{"job":"e2e"}' "http://127.0.0.1:$port/commands") || code=000
  body=$(cat "$work/body" 2>/dev/null || true)
  retry_after=$(tr -d '\r' <"$work/headers" 2>/dev/null \
    | sed -n 's/^[Rr]etry-[Aa]fter: *//p' | head -n 1)
}

# ---- 1. configuration errors --------------------------------------------------
note "configuration errors"
rc=0
"$bin" --channel-capacity=0 >"$work/bad1.out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--channel-capacity=0 exited $rc, expected 2"
grep -q 'channel-capacity' "$work/bad1.out" || fail "the error does not name channel-capacity: $(cat "$work/bad1.out")"
rc=0
"$bin" --no-such-option=1 >"$work/bad2.out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "an unknown option exited $rc, expected 2"
grep -q 'no-such-option' "$work/bad2.out" || fail "the error does not name the option: $(cat "$work/bad2.out")"
rc=0
"$bin" --evaluation-interval=200ms --stale-threshold=100ms >"$work/bad3.out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "stale-threshold < interval exited $rc, expected 2"
grep -q 'stale-threshold' "$work/bad3.out" || fail "the error does not name stale-threshold: $(cat "$work/bad3.out")"
rc=0
"$bin" --queues='bad;name' --db="$conn" >"$work/bad4.out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "an invalid queue name exited $rc, expected 2"
grep -q 'queues' "$work/bad4.out" || fail "the error does not name queues: $(cat "$work/bad4.out")"
rc=0
timeout 20 "$bin" --port=0 --max-connections=0 >"$work/bad6.out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--max-connections=0 exited $rc, expected 2"
grep -q 'max-connections: must be greater than 0' "$work/bad6.out" \
  || fail "the error does not name max-connections: $(cat "$work/bad6.out")"
rc=0
timeout 20 "$bin" --port=0 --work-ms=-1 >"$work/bad7.out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--work-ms=-1 exited $rc, expected 2"
grep -q 'work-ms: must not be negative' "$work/bad7.out" \
  || fail "the error does not name work-ms: $(cat "$work/bad7.out")"
rc=0
"$bin" --help >"$work/help.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "--help exited $rc"
grep -q 'channel-capacity' "$work/help.out" || fail "--help does not list channel-capacity"

# ---- scratch database -----------------------------------------------------------
note "creating database $db"
psql "$TASKER_HEALTH_TEST_PG" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
db_created=1
sql -f "$src/scripts/sql/pgmq_compat.sql" >/dev/null
sql -c "SELECT pgmq.create('e2e_jobs')" >/dev/null

# ---- 2. database + queue ----------------------------------------------------------
start orch-db --db="$conn" --queues=e2e_jobs --evaluation-interval=200ms \
  --stale-threshold=2s --work-ms=1 --channel-capacity=1000 --shedding=graded
wait_until 30 "a snapshot with the database connected and the queue normal" \
  snapshot_with_db_and_queue
# The smallest valid values at their boundaries (--work-ms=0,
# --max-connections=1) pass validation: the exit is the busy port's (1), not
# a configuration error's (2).
rc=0
timeout 20 "$bin" --port="$port" --work-ms=0 --max-connections=1 \
  >"$work/busy.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "a second instance on busy port $port exited $rc, expected 1: $(cat "$work/busy.out")"
post
[ "$code" = 202 ] || fail "POST /commands with a healthy system: $code $body"
[[ "$body" == *'"accepted":true'* ]] || fail "202 body: $body"
note "healthy: 202 $body"
# The HTTP server (apps/http): another method 405 with Allow, a body above
# --max-body (64 KiB) 413 before it is read, an unknown path 404.
code=$(curl -s -m 5 -o /dev/null -D "$work/headers" -w '%{http_code}' \
  "http://127.0.0.1:$port/commands")
[ "$code" = 405 ] || fail "GET /commands: $code, expected 405"
tr -d '\r' <"$work/headers" | grep -qi '^allow: POST$' \
  || fail "405 without 'Allow: POST': $(cat "$work/headers")"
code=$(head -c 70000 /dev/zero | tr '\0' x | curl -s -m 5 -o /dev/null \
  -w '%{http_code}' -H 'Expect:' --data-binary @- "http://127.0.0.1:$port/commands")
[ "$code" = 413 ] || fail "POST /commands with 70000 bytes: $code, expected 413"
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/nope")
[ "$code" = 404 ] || fail "GET /nope: $code, expected 404"

note "filling the queue past the critical threshold (6000 >= 5000)"
sql -c "INSERT INTO pgmq.q_e2e_jobs (vt, message)
        SELECT now(), jsonb_build_object('i', g) FROM generate_series(1, 6000) g" >/dev/null
wait_until 30 "POST /commands rejected by the queue" post_rejected_by queue
[ -n "$retry_after" ] || fail "503 without Retry-After: $body"
if ! [[ "$retry_after" =~ ^[1-9][0-9]*$ ]]; then
  fail "Retry-After is not a positive number: '$retry_after'"
fi
[[ "$body" == *'"accepted":false'* ]] || fail "503 body: $body"
[[ "$body" == *"\"retry_after_seconds\":$retry_after"* ]] \
  || fail "body and header disagree on Retry-After ($retry_after): $body"
note "queue critical: 503 Retry-After $retry_after $body"
# Graded shedding (--shedding=graded): at depth 6000 (pressure 0.6) critical
# work is admitted, sheddable work refused by its curve, an unknown class 400.
post_class critical task-1
[ "$code" = 202 ] || fail "critical work at Critical: $code $body (graded)"
post_class sheddable task-1
[ "$code" = 503 ] && [[ "$body" == *'"code":"work_shed"'* ]] \
  || fail "sheddable work at Critical: $code $body (graded)"
[[ "$retry_after" =~ ^[1-9][0-9]*$ ]] || fail "work_shed without Retry-After"
post_class bulk task-1
[ "$code" = 400 ] || fail "an unknown work class: $code $body, expected 400"
[[ "$(status)" == *'"shedding":{'* ]] || fail "/status without shedding: $(status)"
note "graded: critical 202, sheddable 503 work_shed, $(status)"

note "draining the queue"
sql -c "DELETE FROM pgmq.q_e2e_jobs" >/dev/null
wait_until 30 "POST /commands accepted after draining" post_accepted
note "drained: 202 $body"
# Every command taken is finished (--work-ms=1) and leaves the channel: the
# channel's monitor counts each one out again.
channel_empty() { [[ "$(status)" =~ \"channel_in_use\":0[,}] ]]; }
wait_until 10 "every command done and out of the channel (channel_in_use 0)" \
  channel_empty
# One command alone into the empty channel is processed too.
post
[ "$code" = 202 ] || fail "POST /commands into the empty channel: $code $body"
wait_until 10 "a lone command done (channel_in_use 0)" channel_empty
stop_expect_zero orch-db

# ---- 3. channel saturation ----------------------------------------------------------
start orch-channel --channel-capacity=10 --work-ms=600000 \
  --evaluation-interval=200ms --stale-threshold=2s
wait_until 30 "the first snapshot" first_snapshot
accepted=0
for _ in $(seq 1 10); do
  post
  [ "$code" = 202 ] && accepted=$((accepted + 1))
done
# 9 of 10 slots is 90 %, below the emergency threshold (95 %): all 10 pass.
[ "$accepted" -eq 10 ] || fail "only $accepted of 10 commands accepted by an empty channel"
# The channel is now full (commands take 10 minutes each).
post
[ "$code" = 503 ] || fail "POST into a full channel: $code $body"
[ "$retry_after" = 15 ] || fail "Retry-After of a full/critical channel: '$retry_after', expected 15"
note "channel full: 503 Retry-After $retry_after $body"
wait_until 30 "POST /commands rejected by the checker for the channel" \
  post_rejected_by channel
[ "$retry_after" = 15 ] || fail "Retry-After of a critical channel: '$retry_after', expected 15"
[[ "$body" == *'"code":"channel_critical"'* ]] || fail "503 body: $body"
[[ "$body" == *'"retry_after_seconds":15'* ]] || fail "503 body: $body"
[[ "$(status)" == *'"backpressure":true'* ]] || fail "GET /status: $(status)"
note "channel critical: 503 Retry-After $retry_after $body"
stop_expect_zero orch-channel

# ---- 4. peers over CAF networking ------------------------------------------------
if [ -z "$daemon" ]; then
  note "no tasker-health binary given: skipping the --peers part"
  note "PASS"
  exit 0
fi
[ -x "$daemon" ] || fail "no executable at $daemon"
note "--peers"
rc=0
"$bin" --peers=nohostport >"$work/bad5.out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--peers=nohostport exited $rc, expected 2"
grep -q "peers: 'nohostport'" "$work/bad5.out" || fail "the error does not name peers: $(cat "$work/bad5.out")"

# A loopback port where nothing listens (bash's /dev/tcp is refused there).
free_port() {
  local p i
  for ((i = 0; i < 100; i++)); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  fail "no free loopback port"
}
dead=$(free_port)
# start_daemon: the daemon publishing on a free cluster port ($cport). A port
# found free can be taken by another process before the daemon binds it
# (tests run beside other work): then the daemon exits and another port is
# tried.
start_daemon() {
  local attempt deadline
  for attempt in 1 2 3; do
    cport=$(free_port)
    : >"$work/daemon.log"
    "$daemon" --database.url="$conn" --http.port=0 --cluster.port="$cport" \
      --health.node-id=peer-a --health.evaluation-interval=200ms \
      --health.probe-timeout=180ms --database.query-timeout=150ms \
      --database.connect-timeout=150ms --health.stale-threshold=2s \
      >>"$work/daemon.log" 2>&1 &
    daemon_pid=$!
    pids+=("$daemon_pid")
    deadline=$((SECONDS + 30))
    while ! grep -q 'event=listening' "$work/daemon.log"; do
      if ! kill -0 "$daemon_pid" 2>/dev/null; then
        grep -q 'Address already in use' "$work/daemon.log" \
          || fail "the daemon exited during startup"
        note "cluster port $cport was taken meanwhile (attempt $attempt)"
        continue 2
      fi
      [ "$SECONDS" -lt "$deadline" ] || fail "timed out after 30s waiting for: the daemon listening"
      sleep 0.1
    done
    return 0
  done
  fail "no free cluster port in 3 attempts"
}
start_daemon
start orch-peers --peers="127.0.0.1:$cport,127.0.0.1:$dead" \
  --evaluation-interval=200ms --stale-threshold=2s
peer_accepting() {
  local s
  s=$(status)
  [[ "$s" == *"\"accepting_nodes\":[\"local\",\"127.0.0.1:$cport\"]"* ]] \
    && [[ "$s" == *'"cluster_nodes":3'* ]] && [[ "$s" == *'"unreachable_nodes":1'* ]]
}
wait_until 30 "accepting_nodes with local and the daemon, not the dead port" peer_accepting
note "peers: $(status)"
kill -KILL "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
peer_gone() {
  local s
  s=$(status)
  [[ "$s" == *'"accepting_nodes":["local"]'* ]] && [[ "$s" == *'"unreachable_nodes":2'* ]]
}
wait_until 10 "the killed daemon leaving accepting_nodes" peer_gone
note "daemon killed: $(status)"
stop_expect_zero orch-peers

note "PASS"
