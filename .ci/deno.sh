#!/usr/bin/env bash
# The Deno host in CI: starts `npm run start:deno` (src/deno.ts with the permissions the docs
# name) and runs the end-to-end suite against it, once on Postgres through PgBouncer and once on
# the embedded PGlite, plus Postgres over TLS from Deno and Bun when a TLS server is given. Each
# host is stopped with SIGTERM and must exit 0. (Passwords across runtimes, Deno included, are in
# test/integration/passwords-cross.test.ts, which every `npm test` runs.)
#
#   .ci/deno.sh postgres://postgres@127.0.0.1:<pgbouncer port>/postgres[?sslmode=require]
#   (or DENO_DATABASE_URL=...). A fresh database is created next to the one in the URL; the
#   Deno host migrates and seeds it itself, like the Bun host.
# Optional, for test/integration/postgres-tls.test.ts: TEST_TLS_DATABASE_URL,
# TEST_TLS_BOUNCER_URL, TEST_TLS_CA_FILE, TEST_PLAIN_DATABASE_URL (see that file).
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER_URL=${1:-${DENO_DATABASE_URL:-}}
if [ -z "$SERVER_URL" ]; then
  echo "usage: .ci/deno.sh <postgres url through PgBouncer>  (or DENO_DATABASE_URL)" >&2
  exit 2
fi
DENO=node_modules/.bin/deno
BUN=node_modules/.bin/bun
[ -x "$DENO" ] && [ -x "$BUN" ] || { echo "deno: run npm install first (deno and bun are dev dependencies)" >&2; exit 2; }
"$DENO" --version | head -1

WORK=$(mktemp -d /tmp/ci-deno.XXXXXX)
HOST_PID=""
HOST_STATUS=""
stop_host() {
  HOST_STATUS=""
  if [ -n "$HOST_PID" ] && kill -0 "$HOST_PID" 2>/dev/null; then
    # SIGTERM to deno itself (npm would answer a signal with its own exit 143); npm then exits
    # with deno's status. The host runs in its own process group (setsid), so this finds it.
    local deno_pid; deno_pid=$(pgrep -g "$HOST_PID" -x deno | head -1 || true)
    kill -TERM "${deno_pid:-$HOST_PID}" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$HOST_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$HOST_PID" 2>/dev/null; then kill -KILL -- "-$HOST_PID" 2>/dev/null || true; HOST_STATUS=killed; fi
  fi
  if [ -n "$HOST_PID" ] && [ -z "$HOST_STATUS" ]; then
    wait "$HOST_PID" 2>/dev/null && HOST_STATUS=0 || HOST_STATUS=$?
  fi
  HOST_PID=""
}
cleanup() {
  local status=$?
  stop_host
  rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT INT TERM

count() { grep -Eo "^ *[0-9]+ $1\$" "$2" | tail -1 | tr -dc 0-9 || true; }
failures=0

# start_host LOG VAR=VALUE...: `npm run start:deno` with only the given variables (no DATABASE_URL
# from the caller's shell), waits for the "listening" line; sets BASE_URL.
start_host() {
  local log=$1; shift
  env -i PATH="$PATH" HOME="${HOME:-/tmp}" NO_COLOR=1 HOST=127.0.0.1 PORT=0 JOBS=false LOG_LEVEL=info "$@" \
    setsid npm run --silent start:deno </dev/null >"$log" 2>&1 &
  HOST_PID=$!
  BASE_URL=""
  for _ in $(seq 1 300); do
    if ! kill -0 "$HOST_PID" 2>/dev/null; then break; fi
    BASE_URL=$(grep -Eo '"msg":"listening","url":"http://[^"]+"' "$log" | grep -Eo 'http://[^"]+' || true)
    [ -n "$BASE_URL" ] && break
    sleep 0.2
  done
  if [ -z "$BASE_URL" ] || [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/health" || true)" != 200 ]; then
    echo "the Deno host did not come up:" >&2
    tail -40 "$log" >&2
    return 1
  fi
  echo "deno host up at $BASE_URL ($(grep -Eo '"database":"[a-z]+"' "$log" | head -1))"
}

mapfile -t e2e_files < <(find test/e2e -name '*.test.ts' ! -name 'worker-*' | sort)

# run_suite NAME VAR=VALUE...: the end-to-end suite (streamed bodies included) against
# $BASE_URL; then SIGTERM, which must end the host with exit 0 and no error lines in its log.
run_suite() {
  local name=$1 status=0; shift
  echo "== deno ($name): end-to-end suite against $BASE_URL"
  env "$@" E2E_BASE_URL="$BASE_URL" "$BUN" test "${e2e_files[@]}" 2>&1 | tee "$WORK/e2e-$name.log" || status=1
  stop_host
  if [ "$HOST_STATUS" != 0 ]; then echo "deno ($name): SIGTERM did not stop the host cleanly (exit $HOST_STATUS)" >&2; status=1; fi
  errors=$(grep -c '"level":"error"' "$WORK/host-$name.log" || true)
  if [ "${errors:-0}" -gt 0 ]; then grep -m5 '"level":"error"' "$WORK/host-$name.log" >&2; status=1; fi
  [ "$status" = 0 ] || failures=$((failures + 1))
}

echo "== deno: Postgres through PgBouncer"
db_name="deno_e2e_$(date +%s)_$$"
DB_URL=$(DB_NAME=$db_name node -e 'const u=new URL(process.argv[1]); u.pathname="/"+process.env.DB_NAME; console.log(u.toString())' "$SERVER_URL")
PSQL_URL=$(node -e 'const u=new URL(process.argv[1]); u.search=""; console.log(u.toString())' "$SERVER_URL")
psql "$PSQL_URL" -v ON_ERROR_STOP=1 -qAtc "create database \"$db_name\"" >/dev/null \
  || { echo "deno: cannot create a database through $PSQL_URL" >&2; exit 1; }
JWT_SECRET="ci-deno-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
start_host "$WORK/host-postgres.log" DATABASE_URL="$DB_URL" JWT_SECRET="$JWT_SECRET" DATABASE_PREPARE=false SEED=true \
  DATA_DIR="$WORK/pg-data" DENO_ALLOW_NET=127.0.0.1
run_suite postgres E2E_DATABASE_URL="$DB_URL" DATABASE_PREPARE=false

echo "== deno: embedded PGlite"
ADMIN_PASSWORD="ci deno admin $(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
start_host "$WORK/host-pglite.log" DATA_DIR="$WORK/pglite-data" SEED=true ADMIN_EMAIL=ci-admin@example.com ADMIN_PASSWORD="$ADMIN_PASSWORD"
run_suite pglite E2E_ADMIN_EMAIL=ci-admin@example.com E2E_ADMIN_PASSWORD="$ADMIN_PASSWORD"

tls_status=0
if [ -n "${TEST_TLS_DATABASE_URL:-}" ]; then
  echo "== deno: Postgres over TLS (Deno and Bun)"
  "$BUN" test test/integration/postgres-tls.test.ts 2>&1 | tee "$WORK/tls.log" || tls_status=1
  [ "$tls_status" = 0 ] || failures=$((failures + 1))
else
  : >"$WORK/tls.log"
fi

# bun test's own "N pass" / "N fail" lines above are what .ci/run's count helper adds up; this
# summary is worded differently so it is not counted twice.
e2e_pg=$(count pass "$WORK/e2e-postgres.log"); e2e_pl=$(count pass "$WORK/e2e-pglite.log"); tls=$(count pass "$WORK/tls.log")
echo "deno: e2e ${e2e_pg:-0} passed on Postgres, ${e2e_pl:-0} passed on PGlite; TLS checks ${tls:-0} passed; $failures failed step(s)"
if [ "$failures" -gt 0 ] || [ "${e2e_pg:-0}" = 0 ] || [ "${e2e_pl:-0}" = 0 ]; then
  echo "deno: FAILED" >&2
  exit 1
fi
echo "deno: ok"
