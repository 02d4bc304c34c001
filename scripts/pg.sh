#!/usr/bin/env bash
# A private, throw-away PostgreSQL 15 cluster for tests and the demo.
#
#   scripts/pg.sh start [DIR]   create and start a cluster in DIR, print its env
#   scripts/pg.sh env   [DIR]   print the env of a running cluster
#   scripts/pg.sh stop  [DIR]   stop it and remove DIR
#   scripts/pg.sh status [DIR]  exit 0 if it runs
#   scripts/pg.sh restart [DIR] start it again on its old port with its data
#                               (after a crash or an immediate stop; stops it
#                               first, immediately, if it runs), print its env
#
# DIR defaults to $TASKER_PG_DIR, else /tmp/tasker-health-pg. The cluster
# listens on a Unix socket in DIR and on a free port of 127.0.0.1 (trust
# authentication: it is private to this machine and thrown away). PostgreSQL
# refuses to run as root, so as root the server runs as the `postgres` user on
# a directory that user owns.
#
# `start`, `restart` and `env` print shell assignments (eval them):
#   TASKER_HEALTH_TEST_PG   libpq connection string (what the tests read)
#   TASKER_PG_DIR           the cluster's directory
#   TASKER_PG_PORT          its TCP port
set -euo pipefail

cmd=${1:-}
dir=${2:-${TASKER_PG_DIR:-/tmp/tasker-health-pg}}

usage() {
  echo "usage: $0 start|stop|env|status|restart [DIR]" >&2
  exit 2
}

pgbin() {
  local b
  b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$b" ] || [ ! -x "$b/initdb" ]; then
    echo "pg.sh: no PostgreSQL server found under /usr/lib/postgresql (run scripts/install-deps.sh)" >&2
    exit 1
  fi
  echo "$b"
}

# Runs a command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A port below the kernel's ephemeral range (32768-60999 by default), so that
# no outgoing connection can be holding it; start_server retries anyway.
free_port() {
  local p
  for p in $(shuf -i 20000-32000 -n 200); do
    if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
      echo "$p"
      return 0
    fi
  done
  echo "pg.sh: no free TCP port found" >&2
  exit 1
}

print_env() {
  if [ ! -f "$dir/env" ]; then
    echo "pg.sh: no cluster in $dir (run: $0 start $dir)" >&2
    exit 1
  fi
  cat "$dir/env"
}

running() {
  [ -f "$dir/data/postmaster.pid" ] && as_owner "$(pgbin)/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

# Starts the server of "$dir" on port $2 with binaries from $1.
# Starts the server of "$dir" on port $2 with binaries from $1; status only.
start_server_once() {
  as_owner "$1/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -p $2 -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null
}

start_server() {
  start_server_once "$1" "$2" || {
    cat "$dir/server.log" >&2
    exit 1
  }
}

case "$cmd" in
  start)
    if running; then
      print_env
      exit 0
    fi
    bin=$(pgbin)
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 0755 "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
      --no-sync >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
    # Another process may take the port between the check and the bind:
    # try a few ports before giving up.
    for attempt in 1 2 3 4 5; do
      port=$(free_port)
      if start_server_once "$bin" "$port"; then break; fi
      if [ "$attempt" -eq 5 ] || ! grep -q "could not bind\|Address already in use" "$dir/server.log"; then
        cat "$dir/server.log" >&2
        exit 1
      fi
      echo "pg.sh: port $port was taken, trying another" >&2
    done
    cat >"$dir/env" <<ENV
export TASKER_HEALTH_TEST_PG='host=127.0.0.1 port=$port user=postgres dbname=postgres'
export TASKER_PG_DIR='$dir'
export TASKER_PG_PORT='$port'
ENV
    echo "pg.sh: PostgreSQL running in $dir on 127.0.0.1:$port" >&2
    print_env
    ;;
  env)
    print_env
    ;;
  status)
    running
    ;;
  restart)
    if [ ! -f "$dir/env" ] || [ ! -d "$dir/data" ]; then
      echo "pg.sh: no cluster in $dir (run: $0 start $dir)" >&2
      exit 1
    fi
    bin=$(pgbin)
    port=$(sed -n "s/^export TASKER_PG_PORT='\([0-9]*\)'\$/\1/p" "$dir/env")
    if [ -z "$port" ]; then
      echo "pg.sh: no port in $dir/env" >&2
      exit 1
    fi
    if running; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    start_server "$bin" "$port"
    echo "pg.sh: PostgreSQL restarted in $dir on 127.0.0.1:$port" >&2
    print_env
    ;;
  stop)
    if [ -d "$dir/data" ]; then
      as_owner "$(pgbin)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    usage
    ;;
esac
