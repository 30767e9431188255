# Sourced by the bench scripts: a throwaway Postgres cluster (pgtest),
# a state database, a policies.yaml with $N token secrets published to a
# files store, the state schema, and every secret already rotated a day ago
# (rows inserted directly), so nothing is due. Sets BIN, WORK, DATABASE_URL.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${N:?set N, the number of secrets}
WORK=${WORK:-$ROOT/.bench}
BIN=$ROOT/bin/rotator
make -s build
rm -rf "$WORK" && mkdir -p "$WORK"
eval "$(go run ./internal/pgtest/pgcluster start --dir "$WORK")"
trap 'go run ./internal/pgtest/pgcluster stop --dir "$WORK" >/dev/null 2>&1 || true' EXIT
psql -q "$PGCLUSTER_ADMIN_DSN" -c "CREATE DATABASE rotator_state"
export DATABASE_URL; DATABASE_URL=$(printf '%s' "$PGCLUSTER_ADMIN_DSN" | sed 's#/postgres?#/rotator_state?#')
export ROTATOR_STATE_KEY; ROTATOR_STATE_KEY=$($BIN keygen)
export ROTATOR_POLICIES=$WORK/policies.yaml ROTATOR_LOG_FORMAT=json
python3 - "$N" > "$ROTATOR_POLICIES" <<'PY'
import sys
n = int(sys.argv[1])
print("version: 1\ndefaults: {grace: 30s, monitor: 0s}\nstores:\n  - name: local\n    files: {dir: secrets}\nsecrets:")
for i in range(n):
    s = "tok/t%06d" % i
    print("  - {id: %s, class: admin_token, rotator: {token: {prefix: t_, length: 32}}, publish: [{store: local, path: %s.json}]}" % (s, s))
PY
$BIN migrate >/dev/null
psql -q "$DATABASE_URL" -c "INSERT INTO rotator_secrets (id, class, current_version, last_success_at, last_outcome)
  SELECT 'tok/t' || lpad(g::text, 6, '0'), 'admin_token', 1, now() - interval '1 day', 'succeeded'
  FROM generate_series(0, $N - 1) g" -c "ANALYZE rotator_secrets"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB; $N secrets in $ROTATOR_POLICIES ($(du -h "$ROTATOR_POLICIES" | cut -f1))"
