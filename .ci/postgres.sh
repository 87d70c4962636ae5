#!/usr/bin/env bash
# Make sure a PostgreSQL server for the tests listens on 127.0.0.1:$PGPORT (default 55432).
# Installs PostgreSQL from Debian's packages when it is missing, and starts a throw-away
# cluster (trust authentication on loopback only) when nothing answers on that port.
# Prints the SQLAlchemy URL the tests use (LOOPDECK_TEST_PG) on its last line.
set -euo pipefail
PGPORT="${PGPORT:-55432}"
PGDATA_DIR="${LOOPDECK_PGDATA:-/tmp/loopdeck-pg-$PGPORT}"
URL="postgresql+asyncpg://postgres@127.0.0.1:$PGPORT/postgres"

find_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

if [ -z "$(find_bin)" ]; then
    echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi
BIN=$(find_bin)

if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT"; then
    echo "$URL"
    exit 0
fi

run_as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        su postgres -s /bin/sh -c "$*"
    else
        sh -c "$*"
    fi
}

if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
    mkdir -p "$PGDATA_DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$PGDATA_DIR"
    run_as_postgres "'$BIN/initdb' -D '$PGDATA_DIR' -U postgres --auth=trust -E UTF8 >/dev/null"
fi
run_as_postgres "'$BIN/pg_ctl' -D '$PGDATA_DIR' -l '$PGDATA_DIR/server.log' -w -t 60 \
    -o \"-c listen_addresses=127.0.0.1 -p $PGPORT -k /tmp -c fsync=off -c synchronous_commit=off -c max_connections=200\" start" >&2
"$BIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT"
echo "$URL"
