#!/usr/bin/env bash
# `rotator plan --limit 1` over N Postgres secrets that share one admin
# DSN (one server: each is every other's schedule peer, schedule.Peers),
# for each N in SIZES: wall time and peak RSS. plan computes every
# secret's due time, as a sync does (the daemon's start and reloads, the
# first `run --due` after a change of the file). No database is needed:
# plan without DATABASE_URL takes every secret as never rotated.
#
#   bench/peers.sh                       # SIZES="2000 10000"
#   BIN=/tmp/rotator-old SIZES=2000 bench/peers.sh   # another binary
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-2000 10000}
BIN=${BIN:-}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -z "$BIN" ]; then
  BIN=$WORK/rotator
  go build -o "$BIN" ./cmd/rotator
fi
export PG_ADMIN=postgres://admin@127.0.0.1/postgres # never dialled by plan
for n in $SIZES; do
  python3 - "$n" > "$WORK/p$n.yaml" <<'PY'
import sys
n = int(sys.argv[1])
print("version: 1\ndefaults: {grace: 30s, monitor: 0s}\nstores:\n  - name: local\n    files: {dir: secrets}\nsecrets:")
for i in range(n):
    print("  - {id: db/t%06d, class: database, rotator: {postgres: {admin_dsn: {env: PG_ADMIN}, role: r%06d}}, publish: [{store: local, path: t%06d.json}]}" % (i, i, i))
PY
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$BIN" plan --policies "$WORK/p$n.yaml" --limit 1 > "$WORK/out"
  grep -q "of $n peers" "$WORK/out" || { echo "n=$n: the secrets were not each other's peers:"; cat "$WORK/out"; exit 1; }
  read -r s kb < "$WORK/time"
  echo "peers=$n: plan ${s} s, peak RSS $((kb / 1024)) MB"
done
