#!/usr/bin/env bash
# make demo: on a fresh machine, start a throwaway Postgres cluster that
# checks passwords, create a demo role "app" with a table, turn it into a
# blue/green pair, rotate it twice with the files store (the policies.yaml at
# the repository root), log in with what the store holds each time, and show
# status and history, then start the daemon with its status page and print
# the page's address (DEMO_PAGE, default 127.0.0.1:8080; on a terminal the
# demo waits for Enter so the page can be opened). Everything lives under
# .demo/ and .rotator/ and is removed at the end (set KEEP=1 to keep the
# cluster running).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/rotator}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf .rotator/secrets
mkdir -p .demo
eval "$(go run ./internal/pgtest/pgcluster start --dir .demo)"
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  if [ "${KEEP:-}" != 1 ]; then go run ./internal/pgtest/pgcluster stop --dir .demo; fi
}
trap cleanup EXIT

admin_db() { printf '%s' "$PGCLUSTER_ADMIN_DSN" | sed "s#/postgres?#/$1?#"; }
say "a throwaway Postgres cluster (scram-sha-256 on TCP) runs in $PGCLUSTER_DIR"
psql -q "$PGCLUSTER_ADMIN_DSN" -c "CREATE DATABASE app" -c "CREATE DATABASE rotator_state"
psql -q "$(admin_db app)" <<'SQL'
CREATE ROLE app LOGIN PASSWORD 'the-initial-password';
CREATE TABLE orders (id int PRIMARY KEY, item text);
ALTER TABLE orders OWNER TO app;
INSERT INTO orders VALUES (1, 'demo');
SQL
echo "created role app (LOGIN) owning table orders: the application's credential before rotator"

export DATABASE_URL; DATABASE_URL=$(admin_db rotator_state)
export ROTATOR_PG_ADMIN_DSN; ROTATOR_PG_ADMIN_DSN=$(admin_db app)
export ROTATOR_STATE_KEY; ROTATOR_STATE_KEY=$($BIN keygen)

say "rotator validate"
$BIN validate
say "rotator migrate"
$BIN migrate
say "rotator init --secret db/postgres"
$BIN init --secret db/postgres
say "rotator run --secret db/postgres --dry-run"
$BIN run --secret db/postgres --dry-run

login_check() {
  # What an application does: read the published file, log in with it.
  local f=.rotator/secrets/db/postgres.json
  local user pass
  user=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["username"])' "$f")
  pass=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["password"])' "$f")
  local dsn; dsn=$(printf '%s' "$ROTATOR_PG_ADMIN_DSN" | sed -E "s#//[^@]+@#//$user:$pass@#")
  echo "the store holds version $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$f") for $user (file mode $(stat -c %a "$f"))"
  if [ -f "$f.previous" ]; then echo "the previous version is kept beside it as $f.previous"; fi
  psql -qAt "$dsn" -c "SELECT 'logged in as ' || session_user || ' (acting as ' || current_user || ') with the published password; orders visible: ' || count(*) FROM orders"
}
for i in 1 2; do
  say "rotator run --secret db/postgres   (rotation $i)"
  $BIN run --secret db/postgres
  login_check
done

say "the old roles can no longer log in"
psql -qAt "$(admin_db app)" -c "SELECT rolname, CASE WHEN rolcanlogin THEN 'LOGIN' ELSE 'NOLOGIN' END FROM pg_roles WHERE rolname LIKE 'app%' ORDER BY 1"

say "rotator status"
$BIN status
say "rotator history --secret db/postgres"
$BIN history --secret db/postgres --limit 2
say "no plaintext in the state database"
pw=$(python3 -c 'import json; print(json.load(open(".rotator/secrets/db/postgres.json"))["password"])')
if pg_dump "$DATABASE_URL" | grep -qF "$pw"; then echo "FOUND the password in the state database"; exit 1; fi
echo "pg_dump of the state database does not contain the current password"

page=${DEMO_PAGE:-127.0.0.1:8080}
say "rotator daemon --status-page --status-page-listen $page"
$BIN daemon --listen 127.0.0.1:0 --tick '@every 1m' --status-page --status-page-listen "$page" 2>.demo/daemon.log &
daemon_pid=$!
for _ in $(seq 100); do
  if curl -fsS "http://$page/" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "the daemon stopped (is $page taken? set DEMO_PAGE=127.0.0.1:PORT):"; cat .demo/daemon.log; exit 1
  fi
  sleep 0.2
done
runs=$(curl -fsS "http://$page/secrets/db/postgres" | grep -c 'data-status="succeeded"' || true)
echo "the status page lists db/postgres with its $runs succeeded runs (read-only; no secret value on it)"
echo
echo "    open http://$page/"
echo
if [ -t 0 ]; then
  read -r -p "press Enter to stop the daemon and end the demo " _
fi
say "demo done"
