#!/usr/bin/env bash
# `rotator validate` and `rotator plan --limit 1` over N secrets of other
# shapes than bench/scale.sh's token secrets, for each SHAPE and each N in
# SIZES: wall time, CPU time (user + system: what a busy machine changes
# least) and peak RSS of each. No database or server is needed
# (plan without DATABASE_URL takes every secret as never rotated; the
# stores and admin DSNs are never dialled).
#
# Shapes (SHAPES, default all):
#   token       the token secrets of bench/scale.sh, one files store (the reference)
#   shared      token secrets owning fields of shared documents, GROUP to a document
#   mgmt        http_api secrets whose management key is another secret's
#               (management_secret): half the file manages the other half
#   pg_one      Postgres blue_green secrets with one admin DSN (schedule peers)
#   mysql_one   MariaDB secrets with one admin DSN
#   redis       Redis ACL users on one server, with a delay check
#   apikey      http_api secrets (preset openrouter) with a management key from the environment
#   multistore  token secrets published to files, Vault and AWS
#   windows     token secrets each with its own window (days, hours, zone, blackouts)
#   cron        token secrets with a cron schedule each (840 distinct ones)
#   cronwin     token secrets with a window of their own and a weekly cron schedule (7 distinct)
#   checks      token secrets with a delay and an http check each
#
#   bench/shapes.sh                                   # every shape, SIZES="1000 5000 20000"
#   SHAPES="shared mgmt" SIZES="20000 50000" bench/shapes.sh
#   BIN=/tmp/rotator-old SHAPES=shared bench/shapes.sh   # another binary
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-1000 5000 20000}
SHAPES=${SHAPES:-token shared mgmt pg_one mysql_one redis apikey multistore windows cron cronwin checks}
GROUP=${GROUP:-50}
BIN=${BIN:-}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -z "$BIN" ]; then
  BIN=$WORK/rotator
  go build -o "$BIN" ./cmd/rotator
fi
# Never dialled.
export PG_ADMIN=postgres://admin@127.0.0.1/postgres MY_ADMIN='admin:x@tcp(127.0.0.1:3306)/' \
  RD_ADMIN=redis://rotator:x@127.0.0.1:6379/0 OR_KEY=x
for shape in $SHAPES; do
  for n in $SIZES; do
    python3 - "$shape" "$n" "$GROUP" > "$WORK/p.yaml" <<'PY'
import sys
shape, n, group = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("version: 1\ndefaults: {grace: 30s, monitor: 0s}\nstores:\n  - name: local\n    files: {dir: secrets}")
if shape == "multistore":
    print("  - name: vault\n    vault: {address: 'http://127.0.0.1:8200', mount: secret}")
    print("  - name: aws\n    awssm: {region: eu-central-1, endpoint: 'http://127.0.0.1:5000'}")
print("secrets:")
tok = "{token: {prefix: t_, length: 32}}"
for i in range(n):
    sid, pub, extra, cls, rot = "s/t%06d" % i, "[{store: local, path: t%06d.json}]" % i, "", "admin_token", tok
    if shape == "shared":
        pub = "[{store: local, path: doc%06d.json, fields: {token: f%06d}}]" % (i // group, i)
    elif shape == "mgmt":
        cls = "api_key"
        if i >= n // 2:
            rot = "{http_api: {preset: openrouter, management_secret: s/t%06d}}" % (i - n // 2)
    elif shape == "pg_one":
        cls, rot = "database", "{postgres: {admin_dsn: {env: PG_ADMIN}, role: r%06d}}" % i
    elif shape == "mysql_one":
        cls, rot = "database", "{mysql: {admin_dsn: {env: MY_ADMIN}, role: r%06d}}" % i
    elif shape == "redis":
        cls, rot, extra = "database", "{redis: {admin_url: {env: RD_ADMIN}, user: u%06d}}" % i, ", checks: [{delay: 10m}]"
    elif shape == "apikey":
        cls, rot = "api_key", "{http_api: {preset: openrouter, management: {env: OR_KEY}}}"
    elif shape == "multistore":
        pub = "[{store: local, path: t%06d.json}, {store: vault, path: app/t%06d}, {store: aws, path: app/t%06d}]" % (i, i, i)
    elif shape == "windows":
        extra = ", window: {days: [mon, tue, wed], hours: '%02d:00-%02d:30', time_zone: Europe/Berlin, blackouts: ['2026-12-24', '2026-12-27..2027-01-02']}" % (i % 24, (i + 3) % 24)
    elif shape == "cron":
        extra = ", cron: '%d %d * * %d'" % (i % 60, i % 24, i % 7)
    elif shape == "cronwin":
        extra = ", cron: '0 3 * * %d', window: {hours: '%02d:00-%02d:30'}" % (i % 7, i % 24, (i + 3) % 24)
    elif shape == "checks":
        extra = ", checks: [{delay: 1m}, {http: {urls: ['http://app-%d:8080/v', 'http://app-%d-b:8080/v'], interval: 2s}}]" % (i, i)
    elif shape != "token":
        sys.exit("unknown shape " + shape)
    print("  - {id: %s, class: %s, rotator: %s, publish: %s%s}" % (sid, cls, rot, pub, extra))
PY
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/tv" "$BIN" validate --policies "$WORK/p.yaml" > "$WORK/out" 2>&1 ||
      { echo "$shape n=$n: not valid:"; head -3 "$WORK/out"; exit 1; }
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/tp" "$BIN" plan --policies "$WORK/p.yaml" --limit 1 > "$WORK/out"
    read -r vs vu vsys vkb < "$WORK/tv"
    read -r ps pu psys pkb < "$WORK/tp"
    printf '%-10s n=%-6s validate %6s s (cpu %5s s) %4s MB   plan %6s s (cpu %5s s) %4s MB\n' "$shape" "$n" \
      "$vs" "$(awk "BEGIN {printf \"%.2f\", $vu + $vsys}")" $((vkb / 1024)) "$ps" "$(awk "BEGIN {printf \"%.2f\", $pu + $psys}")" $((pkb / 1024))
  done
done
