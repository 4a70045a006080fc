#!/usr/bin/env bash
# Starts a throwaway Postgres 15 and PgBouncer (transaction mode) on loopback in a folder.
#   source .ci/pg.sh; pg_up DIR PG_PORT BOUNCER_PORT; ...; pg_down DIR
# PG_TLS=1 also turns TLS on (a throwaway CA and certificate made in DIR): Postgres with `ssl = on`
# and PgBouncer accepting TLS from clients, both still taking plain connections too.
# Installs them from Debian's packages when missing. Used by .ci/run and bench/.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

pg_install() {
  local need=()
  [ -x "$PG_BIN/postgres" ] || need+=(postgresql-15)
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
  command -v psql >/dev/null 2>&1 || need+=(postgresql-client-15)
  if [ "${PG_TLS:-0}" = 1 ]; then command -v openssl >/dev/null 2>&1 || need+=(openssl); fi
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# pg_up DIR PG_PORT BOUNCER_PORT
pg_up() {
  local dir=$1 pgport=$2 bport=$3
  pg_install
  mkdir -p "$dir"
  # mktemp folders are 0700: the postgres user must be able to reach its own folder inside.
  chmod o+x "$(dirname "$dir")"
  local owner=""
  if [ "$(id -u)" = 0 ]; then
    # Postgres refuses to run as root.
    id postgres >/dev/null 2>&1 || useradd -r -M postgres
    chown -R postgres "$dir"
    owner=postgres
  fi
  run_as() { if [ -n "$owner" ]; then su -s /bin/bash "$owner" -c "$*"; else bash -c "$*"; fi; }
  run_as "$PG_BIN/initdb -D '$dir/pgdata' -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null"
  cat >>"$dir/pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = off
shared_preload_libraries = 'pg_stat_statements'
timezone = 'UTC'
CONF
  if [ "${PG_TLS:-0}" = 1 ]; then
    # A throwaway private CA and a certificate it signed for the name localhost: clients test
    # `sslmode=require` (encrypted, certificate not checked: what Neon's documented URLs ask for)
    # and `sslmode=verify-full` to localhost with DIR/ca.crt as the trusted root (to 127.0.0.1 it
    # must fail: the certificate does not name that address).
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ci throwaway CA" \
      -keyout "$dir/ca.key" -out "$dir/ca.crt" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost\n' >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
      -extfile "$dir/server.ext" -out "$dir/server.crt" >/dev/null 2>&1
    chmod 600 "$dir/server.key"
    if [ -n "$owner" ]; then chown "$owner" "$dir/server.key" "$dir/server.crt"; fi
    cat >>"$dir/pgdata/postgresql.conf" <<CONF
ssl = on
ssl_cert_file = '$dir/server.crt'
ssl_key_file = '$dir/server.key'
CONF
  fi
  run_as "$PG_BIN/pg_ctl -D '$dir/pgdata' -l '$dir/postgres.log' -w start >/dev/null"
  # The pgbouncer.ini docs/operations.md documents: the design's "min 10, max 100" connections.
  sed -e "s|@DIR@|$dir|g" -e "s|@PGPORT@|$pgport|g" -e "s|@BPORT@|$bport|g" \
    "$(dirname "${BASH_SOURCE[0]}")/pgbouncer.ini" >"$dir/pgbouncer.ini"
  if [ "${PG_TLS:-0}" = 1 ]; then
    printf 'client_tls_sslmode = allow\nclient_tls_cert_file = %s\nclient_tls_key_file = %s\nserver_tls_sslmode = prefer\n' \
      "$dir/server.crt" "$dir/server.key" >>"$dir/pgbouncer.ini"
  fi
  echo '"postgres" ""' >"$dir/userlist.txt"
  if [ -n "$owner" ]; then chown "$owner" "$dir/pgbouncer.ini" "$dir/userlist.txt"; fi
  local bouncer; bouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  run_as "$bouncer -d '$dir/pgbouncer.ini'"
  for _ in $(seq 1 50); do
    if psql -h 127.0.0.1 -p "$bport" -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "pgbouncer did not come up" >&2
  cat "$dir/pgbouncer.log" >&2 || true
  return 1
}

pg_down() {
  local dir=$1
  if [ -f "$dir/pgbouncer.pid" ]; then kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true; fi
  if [ -f "$dir/pgdata/postmaster.pid" ]; then
    if [ "$(id -u)" = 0 ]; then
      su -s /bin/bash postgres -c "$PG_BIN/pg_ctl -D '$dir/pgdata' -m fast -w stop" >/dev/null 2>&1 || true
    else
      "$PG_BIN/pg_ctl" -D "$dir/pgdata" -m fast -w stop >/dev/null 2>&1 || true
    fi
  fi
}

# A streaming replica of a pg_up cluster, on loopback, for the read-replica test:
#   pg_replica_up DIR PRIMARY_PORT REPLICA_PORT; pg_replica_stop DIR; pg_replica_start DIR; pg_replica_down DIR
# pg_basebackup -R copies the primary and writes standby.signal and primary_conninfo, so the copy
# starts as a hot standby streaming from it. The primary needs nothing added: wal_level=replica
# and max_wal_senders=10 are Postgres 15's defaults, and initdb -A trust writes pg_hba's
# `host replication all 127.0.0.1/32 trust`. DIR is the replica's own folder (not the primary's).
pg_replica_up() {
  local dir=$1 pport=$2 rport=$3
  mkdir -p "$dir"
  chmod o+x "$(dirname "$dir")"
  local owner=""
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; owner=postgres; fi
  run_as() { if [ -n "$owner" ]; then su -s /bin/bash "$owner" -c "$*"; else bash -c "$*"; fi; }
  run_as "$PG_BIN/pg_basebackup -h 127.0.0.1 -p $pport -U postgres -D '$dir/pgdata' -R -X stream -c fast"
  # Later lines win: the copied postgresql.conf still names the primary's port and socket folder.
  cat >>"$dir/pgdata/postgresql.conf" <<CONF
port = $rport
unix_socket_directories = '$dir'
shared_buffers = 64MB
hot_standby = on
CONF
  pg_replica_start "$dir"
  for _ in $(seq 1 50); do
    if [ "$(psql -h 127.0.0.1 -p "$rport" -U postgres -d postgres -Atc 'select pg_is_in_recovery()' 2>/dev/null)" = t ]; then return 0; fi
    sleep 0.2
  done
  echo "the replica did not come up as a standby" >&2
  cat "$dir/postgres.log" >&2 || true
  return 1
}

# pg_ctl stop -m fast: open sessions are told 57P01 and closed, as when a replica host goes down.
pg_replica_stop() {
  local dir=$1
  [ -f "$dir/pgdata/postmaster.pid" ] || return 0
  local as=(bash -c)
  if [ "$(id -u)" = 0 ]; then as=(su -s /bin/bash postgres -c); fi
  "${as[@]}" "$PG_BIN/pg_ctl -D '$dir/pgdata' -m fast -w stop" >/dev/null
}

pg_replica_start() {
  local dir=$1
  local as=(bash -c)
  # pg_ctl refuses to run as root.
  if [ "$(id -u)" = 0 ]; then as=(su -s /bin/bash postgres -c); fi
  # Already running: nothing to do (the test's cleanup starts it whatever state a test left).
  if "${as[@]}" "$PG_BIN/pg_ctl -D '$dir/pgdata' status" >/dev/null 2>&1; then return 0; fi
  "${as[@]}" "$PG_BIN/pg_ctl -D '$dir/pgdata' -l '$dir/postgres.log' -w start" >/dev/null
}

pg_replica_down() {
  pg_replica_stop "$1" 2>/dev/null || true
}
