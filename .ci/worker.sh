#!/usr/bin/env bash
# The Cloudflare Workers target in CI, with no account and no network: bundles the Worker the way
# `wrangler deploy` would (size under 1 MiB gzip, no native argon2 or PGlite inside), then runs it
# on local workerd (`wrangler dev`) against real Postgres through PgBouncer and runs the
# end-to-end suite against it, plus the Worker's own checks (passwords across runtimes, each cron
# fired through /__scheduled and its effect in the database).
#
#   .ci/worker.sh postgres://postgres@127.0.0.1:<pgbouncer port>/postgres
#   (or WORKER_DATABASE_URL=...). A fresh database is created next to the one in the URL and
#   migrated with `npm run db:migrate` and seeded with the sample catalog (the Worker itself
#   never migrates).
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER_URL=${1:-${WORKER_DATABASE_URL:-}}
if [ -z "$SERVER_URL" ]; then
  echo "usage: .ci/worker.sh <postgres url through PgBouncer>  (or WORKER_DATABASE_URL)" >&2
  exit 2
fi
NODE22=node_modules/node/bin/node
WRANGLER=node_modules/wrangler/bin/wrangler.js
BUN=node_modules/.bin/bun
[ -x "$NODE22" ] && [ -f "$WRANGLER" ] || { echo "worker: run npm install first (wrangler and node@22 are dev dependencies)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/ci-worker.XXXXXX)
WRANGLER_PID=""
stop_wrangler() {
  if [ -n "$WRANGLER_PID" ] && kill -0 "$WRANGLER_PID" 2>/dev/null; then
    # wrangler runs in its own process group (setsid): workerd goes down with it.
    kill -TERM -- "-$WRANGLER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$WRANGLER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$WRANGLER_PID" 2>/dev/null || true
  fi
  WRANGLER_PID=""
}
cleanup() {
  local status=$?
  stop_wrangler
  rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT INT TERM

# No telemetry, no update check, no Request.cf download, nothing written under $HOME.
export WRANGLER_SEND_METRICS=false WRANGLER_HIDE_BANNER=true CLOUDFLARE_CF_FETCH_ENABLED=false
export WRANGLER_LOG_PATH="$WORK/logs" XDG_CONFIG_HOME="$WORK/config"

free_port() { "$NODE22" -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
count() { grep -Eo "^ *[0-9]+ $1\$" "$2" | tail -1 | tr -dc 0-9 || true; }

echo "== worker: bundle (wrangler deploy --dry-run)"
"$NODE22" "$WRANGLER" deploy --dry-run --outdir "$WORK/bundle" >"$WORK/bundle.log" 2>&1 || { cat "$WORK/bundle.log"; exit 1; }
grep -E "Total Upload" "$WORK/bundle.log" || true
raw_bytes=$(cat "$WORK"/bundle/*.js "$WORK"/bundle/*.wasm | wc -c)
gzip_bytes=$(for f in "$WORK"/bundle/*.js "$WORK"/bundle/*.wasm; do gzip -9 -c "$f"; done | wc -c)
limit=$((1024 * 1024))
echo "worker bundle: $raw_bytes bytes, $gzip_bytes bytes gzip (limit $limit)"
bundle_ok=1
if [ "$gzip_bytes" -ge "$limit" ]; then echo "worker bundle is over 1 MiB gzip" >&2; bundle_ok=0; fi
# The native addon and the embedded database must never reach the Worker.
if grep -Eo '"[^"]*node_modules/(@node-rs/argon2|@electric-sql/pglite)[^"]*"' "$WORK"/bundle/*.map | head -3 | grep .; then
  echo "worker bundle contains a Bun-only module (see above): check the [alias] table in wrangler.toml" >&2
  bundle_ok=0
fi

echo "== worker: database"
db_name="worker_e2e_$(date +%s)_$$"
DB_URL=$(DB_NAME=$db_name "$NODE22" -e 'const u=new URL(process.argv[1]); u.pathname="/"+process.env.DB_NAME; console.log(u.toString())' "$SERVER_URL")
psql "$SERVER_URL" -v ON_ERROR_STOP=1 -qAtc "create database \"$db_name\"" >/dev/null \
  || { echo "worker: cannot create a database through $SERVER_URL" >&2; exit 1; }
JWT_SECRET="ci-worker-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# `db:migrate`, then `db:seed` for the sample catalog the end-to-end suite orders from (the Bun
# host it also runs against is started with SEED=true).
for step in migrate seed; do
  DATABASE_URL="$DB_URL" JWT_SECRET="$JWT_SECRET" DATABASE_PREPARE=false "$BUN" run src/cli.ts "$step" >>"$WORK/migrate.log" 2>&1 \
    || { cat "$WORK/migrate.log"; exit 1; }
done
echo "migrated and seeded $db_name"

echo "== worker: wrangler dev on local workerd"
PORT=$(free_port)
INSPECTOR_PORT=$(free_port) # not the default 9229, which another wrangler may hold
BASE_URL="http://127.0.0.1:$PORT"
setsid "$NODE22" "$WRANGLER" dev --local --test-scheduled --ip 127.0.0.1 --port "$PORT" \
  --persist-to "$WORK/state" --show-interactive-dev-session=false \
  --inspector-ip 127.0.0.1 --inspector-port "$INSPECTOR_PORT" \
  --var "DATABASE_URL:$DB_URL" --var "JWT_SECRET:$JWT_SECRET" --var "DATABASE_PREPARE:false" \
  </dev/null >"$WORK/wrangler.log" 2>&1 &
WRANGLER_PID=$!
up=0
for _ in $(seq 1 300); do
  if ! kill -0 "$WRANGLER_PID" 2>/dev/null; then break; fi
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/health" || true)" = 200 ]; then up=1; break; fi
  sleep 0.3
done
if [ "$up" != 1 ]; then
  echo "wrangler dev did not answer /health at $BASE_URL:" >&2
  tail -40 "$WORK/wrangler.log" >&2
  exit 1
fi
echo "worker up at $BASE_URL"

echo "== worker: end-to-end suite against $BASE_URL"
# Streamed oversized bodies go to workerd's own socket (below), not through wrangler's proxy.
mapfile -t e2e_files < <(find test/e2e -name '*.test.ts' ! -name 'worker-*' ! -name 'body-limit.test.ts' | sort)
e2e_status=0
if [ ${#e2e_files[@]} -gt 0 ]; then
  E2E_BASE_URL="$BASE_URL" E2E_DATABASE_URL="$DB_URL" DATABASE_PREPARE=false \
    "$BUN" test "${e2e_files[@]}" 2>&1 | tee "$WORK/e2e.log" || e2e_status=$?
else
  echo "(no end-to-end test files yet)" | tee "$WORK/e2e.log"
fi

echo "== worker: streamed request bodies, straight to workerd"
# wrangler dev's local proxy (a workerd of its own on \$PORT) answers an oversized streamed upload
# with resets or 503s and delays other requests meanwhile, whatever the Worker does; the Worker's
# own workerd listens on a loopback port of its own, found here as the one that answers /health.
direct_url=""
for pid in $(pgrep -g "$WRANGLER_PID" -x workerd || true); do
  for addr in $(ss -Hltnp 2>/dev/null | grep "pid=$pid," | awk '{print $4}'); do
    [ "$addr" = "127.0.0.1:$PORT" ] && continue
    if [ "$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://$addr/health" || true)" = 200 ]; then direct_url="http://$addr"; break 2; fi
  done
done
body_status=0
if [ -n "$direct_url" ]; then
  echo "workerd's own socket: $direct_url"
  E2E_BASE_URL="$direct_url" "$BUN" test test/e2e/body-limit.test.ts 2>&1 | tee "$WORK/body.log" || body_status=$?
else
  echo "workerd's own socket not found (needs ss from iproute2): streamed-body checks not run" | tee "$WORK/body.log"
fi

echo "== worker: passwords across runtimes and crons through /__scheduled"
worker_status=0
E2E_WORKER_URL="$BASE_URL" E2E_DATABASE_URL="$DB_URL" DATABASE_PREPARE=false \
  "$BUN" test test/e2e/worker-workerd.test.ts 2>&1 | tee "$WORK/worker.log" || worker_status=$?

stop_wrangler
# A crash inside workerd shows up as an uncaught error in wrangler's output, whatever the tests saw.
uncaught=$(grep -c -E "Uncaught|workerd/server/server.c\+\+" "$WORK/wrangler.log" || true)
if [ "${uncaught:-0}" -gt 0 ]; then grep -E -m5 "Uncaught|workerd/server/server.c\+\+" "$WORK/wrangler.log" >&2; fi
server_errors=$(grep -c '"level":"error"' "$WORK/wrangler.log" || true)

e2e_pass=$(count pass "$WORK/e2e.log"); e2e_fail=$(count fail "$WORK/e2e.log")
w_pass=$(count pass "$WORK/worker.log"); w_fail=$(count fail "$WORK/worker.log")
b_pass=$(count pass "$WORK/body.log"); b_fail=$(count fail "$WORK/body.log")
echo "worker: bundle ${gzip_bytes} B gzip; e2e ${e2e_pass:-0} passed, ${e2e_fail:-0} failed; workerd checks ${w_pass:-0} passed, ${w_fail:-0} failed; streamed bodies ${b_pass:-0} passed, ${b_fail:-0} failed; ${server_errors:-0} error log lines, ${uncaught:-0} uncaught"
if [ "$bundle_ok" != 1 ] || [ "$e2e_status" != 0 ] || [ "$worker_status" != 0 ] || [ "$body_status" != 0 ] || [ "${uncaught:-0}" -gt 0 ] || [ "${w_pass:-0}" = 0 ]; then
  echo "worker: FAILED" >&2
  exit 1
fi
echo "worker: ok"
