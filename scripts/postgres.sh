#!/usr/bin/env bash
# Starts a throw-away PostgreSQL server on loopback for the tests, and prints the database URL
# to use (export it as SESAME_TEST_DATABASE_URL). Everything lives in one directory, so
# stopping is `scripts/postgres.sh stop DIR` (or removing the directory after `pg_ctl stop`).
#
#   scripts/postgres.sh start DIR [PORT]   # initdb (once), start, create database "sesame"
#   scripts/postgres.sh stop DIR
#
# The server listens on 127.0.0.1:PORT (default 25432, below the ephemeral port range so that no outgoing connection holds it) and on a socket in DIR, trusts local
# connections (it is a test server: nothing outside this machine can reach it), and is tuned
# for tests only where that cannot change what they show (no fsync would hide nothing the
# tests check, but we keep it on: commit latency is part of what the benchmark measures).
set -euo pipefail

cmd=${1:?usage: postgres.sh start|stop DIR [PORT]}
dir=${2:?usage: postgres.sh start|stop DIR [PORT]}
port=${3:-25432}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ]; then
  echo "PostgreSQL is not installed (Debian: apt-get install postgresql)" >&2
  exit 1
fi

# PostgreSQL refuses to run as root: run it as the postgres user the package created.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log"
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=400 -c shared_buffers=128MB" \
      start >/dev/null
    as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qAt \
      -c "SELECT 1 FROM pg_database WHERE datname='sesame'" | grep -q 1 ||
      as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres sesame
    echo "postgres://postgres@127.0.0.1:$port/sesame"
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  *)
    echo "unknown command $cmd: start or stop" >&2
    exit 2
    ;;
esac
