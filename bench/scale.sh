#!/usr/bin/env bash
# The scale numbers of docs/performance.md, in one script, back to back on
# one throwaway Postgres cluster (internal/pgtest):
#
#   1. `rotator run --due` with nothing due at 10, 10,000 and 100,000
#      token secrets (rows inserted as "rotated a day ago"; one warm-up run
#      each, which syncs the schedule): ROUNDS rounds, the sizes
#      interleaved in each round so that a busy machine slows them alike;
#      wall time and peak RSS (/usr/bin/time %M) of every run, and the
#      ratio of the medians against 10 secrets; then, for each size, the
#      first tick after a change of the file (a comment appended), which
#      loads the file and syncs every due time again; and `rotator
#      validate` of the file with one mistake (the middle secret's class),
#      which must name it.
#   2. The daemon with DAEMON_N secrets (default 100,000; per-secret
#      series off, the default above 1,000 secrets): time to /readyz, the
#      first round of published-credential checks, CPU over IDLE seconds
#      idle after it (default 60, tick @every 1m), a reload of a changed
#      file (SIGHUP; RELOAD=end, the default: a comment appended, inside
#      the last piece of the list, which ends the file, so the rest is
#      reused from the policies in force; RELOAD=top: a comment as the
#      first line, every line moves, so the whole file is decoded again),
#      three /metrics scrapes (time and size), peak RSS (VmHWM, start and
#      reload included). PAGE=1: the daemon serves the status page, and
#      its list is viewed three times after the scrapes (time, size, and
#      the peak RSS before and after). RELOAD=mistake: the reload is of the file with the
#      middle secret's class unknown, which must be refused with the
#      policies in force kept.
#
# Results go to OUT (default .bench/scale.txt) in the Go benchmark format
# (benchstat reads it), then bench/compare.py compares them with the
# recorded baseline (BASELINE, default bench/baseline-scale.txt) and exits
# 1 on a regression of more than 20 %.
#
#   bench/scale.sh                        # everything (~4 min)
#   SIZES="10 10000" DAEMON_N=0 bench/scale.sh   # the tick only
#   UPDATE_BASELINE=1 bench/scale.sh      # record a new baseline
#   SIZES= DAEMON_ENV=GOMEMLIMIT=180MiB bench/scale.sh   # the daemon with a Go setting
#   SIZES= RELOAD=top bench/scale.sh      # a reload that reuses nothing
#   VARIANTS="top mistake page" bench/scale.sh   # and the daemon three more times (make bench)
#
# DAEMON_ENV is given to the daemon only (e.g. GODEBUG=gctrace=1 to see
# its heap at every collection in its log, or an operator's GOMEMLIMIT).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SIZES=${SIZES-10 10000 100000}
ROUNDS=${ROUNDS:-5}
DAEMON_N=${DAEMON_N:-100000}
DAEMON_ENV=${DAEMON_ENV:-}
IDLE=${IDLE:-60}
RELOAD=${RELOAD:-end}
PAGE=${PAGE:-}
VARIANTS=${VARIANTS:-}
WORK=${WORK:-$ROOT/.bench/scale}
OUT=${OUT:-$ROOT/.bench/scale.txt}
BASELINE=${BASELINE:-$ROOT/bench/baseline-scale.txt}
BIN=$ROOT/bin/rotator
make -s build
rm -rf "$WORK" && mkdir -p "$WORK" "$(dirname "$OUT")"
eval "$(go run ./internal/pgtest/pgcluster start --dir "$WORK")"
dpid=
cleanup() {
  [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  go run ./internal/pgtest/pgcluster stop --dir "$WORK" >/dev/null 2>&1 || true
}
trap cleanup EXIT
export ROTATOR_STATE_KEY; ROTATOR_STATE_KEY=$($BIN keygen)
export ROTATOR_LOG_FORMAT=json
: > "$OUT"
{
  echo "goos: linux"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start, $(git rev-parse --short HEAD)"
} >> "$OUT"

# setup N: a state database and a policies file with N token secrets,
# every one rotated a day ago.
setup() {
  local n=$1 dir=$WORK/n$1
  mkdir -p "$dir"
  psql -q "$PGCLUSTER_ADMIN_DSN" -c "CREATE DATABASE rotator_n$n"
  printf '%s' "$PGCLUSTER_ADMIN_DSN" | sed "s#/postgres?#/rotator_n$n?#" > "$dir/dsn"
  python3 - "$n" > "$dir/policies.yaml" <<'PY'
import sys
n = int(sys.argv[1])
print("version: 1\ndefaults: {grace: 30s, monitor: 0s, check: {interval: 24h}}\nstores:\n  - name: local\n    files: {dir: secrets}\nsecrets:")
for i in range(n):
    s = "tok/t%06d" % i
    print("  - {id: %s, class: admin_token, rotator: {token: {prefix: t_, length: 32}}, publish: [{store: local, path: %s.json}]}" % (s, s))
PY
  DATABASE_URL=$(cat "$dir/dsn") $BIN migrate >/dev/null
  psql -q "$(cat "$dir/dsn")" -c "INSERT INTO rotator_secrets (id, class, current_version, last_success_at, last_outcome)
    SELECT 'tok/t' || lpad(g::text, 6, '0'), 'admin_token', 1, now() - interval '1 day', 'succeeded'
    FROM generate_series(0, $n - 1) g" -c "ANALYZE rotator_secrets"
}

# tick N: one `run --due`; prints "wall_ns rss_kb".
tick() {
  local dir=$WORK/n$1 t0 t1
  t0=$(date +%s%N)
  DATABASE_URL=$(cat "$dir/dsn") ROTATOR_POLICIES=$dir/policies.yaml \
    /usr/bin/time -f %M -o "$dir/rss" $BIN run --due > "$dir/out"
  t1=$(date +%s%N)
  grep -q '^tick: 0 due' "$dir/out" || { echo "n=$1: something was due:"; cat "$dir/out"; exit 1; }
  echo "$((t1 - t0)) $(cat "$dir/rss")"
}

if [ -n "${SIZES// /}" ]; then
  for n in $SIZES; do
    setup "$n"
    tick "$n" > /dev/null # warm-up: records every due time
  done
  echo "run --due, nothing due; $ROUNDS rounds of: $SIZES"
  for ((r = 1; r <= ROUNDS; r++)); do
    for n in $SIZES; do
      read -r ns kb < <(tick "$n")
      echo "BenchmarkRunDueNothingDue/secrets=$n 1 $ns ns/op $((kb * 1024)) peak-RSS-B" | tee -a "$OUT"
    done
  done
  python3 - "$OUT" $SIZES <<'PY' | tee -a "$OUT"
import re, statistics, sys
out, sizes = sys.argv[1], sys.argv[2:]
wall = {n: [] for n in sizes}
for l in open(out):
    m = re.match(r"BenchmarkRunDueNothingDue/secrets=(\d+) 1 (\d+) ns/op", l)
    if m and m.group(1) in wall:
        wall[m.group(1)].append(int(m.group(2)))
base = statistics.median(wall[sizes[0]])
for n in sizes[1:]:
    print(f"BenchmarkRunDueNothingDue/ratio-{n}-vs-{sizes[0]} 1 {statistics.median(wall[n]) / base:.3f} x")
PY
  # The first tick after a change of the file (a comment appended: a new
  # content hash) loads and validates every secret and syncs every due
  # time again: what a CronJob's memory limit must allow for.
  echo "run --due, the first tick after a change of the policies file"
  for n in $SIZES; do
    echo "# changed $(date)" >> "$WORK/n$n/policies.yaml"
    read -r ns kb < <(tick "$n")
    echo "BenchmarkRunDueAfterChange/secrets=$n 1 $ns ns/op $((kb * 1024)) peak-RSS-B" | tee -a "$OUT"
  done
  # A file with one mistake (the middle secret's class unknown): what
  # `rotator validate`, a tick or a reload costs to say where it is.
  echo "rotator validate, a file with one mistake in the middle secret"
  for n in $SIZES; do
    dir=$WORK/n$n
    mid=$(printf 'tok/t%06d,' $((n / 2)))
    sed "s|id: $mid class: admin_token|id: $mid class: no_such_class|" "$dir/policies.yaml" > "$dir/mistake.yaml"
    t0=$(date +%s%N)
    if /usr/bin/time -f %M -o "$dir/rss" $BIN validate --policies "$dir/mistake.yaml" > "$dir/out" 2>&1; then
      echo "n=$n: validate took a file with a mistake"; exit 1
    fi
    t1=$(date +%s%N)
    grep -q "mistake.yaml:[0-9]*:[0-9]*: secrets\[$((n / 2))\].class: unknown class" "$dir/out" ||
      { echo "n=$n: validate did not name the mistake:"; head -5 "$dir/out"; exit 1; }
    echo "BenchmarkValidateOneMistake/secrets=$n 1 $((t1 - t0)) ns/op $(($(tail -1 "$dir/rss") * 1024)) peak-RSS-B" | tee -a "$OUT"
  done
fi

# daemon_bench: the daemon measurement with RELOAD and PAGE as set.
daemon_bench() {
  # The name of the daemon's benchmarks: a reload that reuses nothing is
  # another benchmark (the baseline has the default's).
  dname=secrets=$DAEMON_N
  [ "$RELOAD" = end ] || dname=$dname/reload=$RELOAD
  pageflags=
  if [ -n "${PAGE:-}" ]; then
    dname=$dname/page
    pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    pageflags="--status-page --status-page-listen 127.0.0.1:$pport"
  fi
  dir=$WORK/n$DAEMON_N
  [ -d "$dir" ] || { setup "$DAEMON_N"; tick "$DAEMON_N" > /dev/null; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  start=$(date +%s%N)
  # shellcheck disable=SC2086 # DAEMON_ENV is a list of NAME=value words
  env $DAEMON_ENV DATABASE_URL="$(cat "$dir/dsn")" ROTATOR_POLICIES="$dir/policies.yaml" \
    $BIN daemon --listen 127.0.0.1:$port --tick '@every 1m' $pageflags 2> "$dir/daemon.log" &
  dpid=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.05; done
  ready=$(($(date +%s%N) - start))
  echo "BenchmarkDaemon/$dname/start-to-ready 1 $ready ns/op" | tee -a "$OUT"
  # Right after start the daemon checks what every store publishes for
  # every secret (daemon/check.go; here no store file exists, so each check
  # finds the secret unpublished), then each one once per
  # defaults.check.interval (24h here: at the default 15m, 100,000 secrets
  # are 111 checks a second, never idle; docs/performance.md). Wait until
  # the first round is over, a 5 s window under 2 % of a core (at most 15
  # minutes), and record when that was.
  cpu() { awk '{print $14 + $15}' /proc/$dpid/stat; }
  hz=$(getconf CLK_TCK)
  while :; do
    a=$(cpu); sleep 5; b=$(cpu)
    [ $(((b - a) * 100 * 100 / hz / 5)) -lt 200 ] && break
    [ $(($(date +%s%N) - start)) -gt 900000000000 ] && { echo "not settled after 15 minutes"; break; }
  done
  echo "BenchmarkDaemon/$dname/start-to-settled 1 $(($(date +%s%N) - start - 5000000000)) ns/op" | tee -a "$OUT"
  c0=$(cpu); t0=$(date +%s%N)
  sleep "$IDLE"
  c1=$(cpu); t1=$(date +%s%N)
  python3 -c "print('BenchmarkDaemon/$dname/idle-cpu 1 %.3f %%core' % (100 * ($c1 - $c0) / $hz / (($t1 - $t0) / 1e9)))" | tee -a "$OUT"
  echo "BenchmarkDaemon/$dname/idle-rss 1 $(($(awk '/VmRSS/{print $2}' /proc/$dpid/status) * 1024)) B" | tee -a "$OUT"
  # A reload of a changed file (one comment more: a new content hash, so
  # the file is loaded, validated and synced again; what the load reuses
  # from the policies in force depends on where the comment stands, see
  # RELOAD above).
  case $RELOAD in
    end) echo "# reloaded $(date)" >> "$dir/policies.yaml" ;;
    top) sed -i "1i # reloaded $(date)" "$dir/policies.yaml" ;;
    mistake)
      # The middle secret's class unknown: the reload must be refused and
      # the policies in force kept (the file is put back afterwards).
      cp "$dir/policies.yaml" "$dir/policies.good"
      mid=$(printf 'tok/t%06d,' $((DAEMON_N / 2)))
      sed -i "s|id: $mid class: admin_token|id: $mid class: no_such_class|" "$dir/policies.yaml" ;;
    *) echo "RELOAD: end, top or mistake, not $RELOAD" >&2; exit 2 ;;
  esac
  from=$(grep -c . "$dir/daemon.log" || true)
  kill -HUP "$dpid"
  until tail -n +"$((from + 1))" "$dir/daemon.log" | grep -q '"policies reloaded"\|"policies not reloaded'; do sleep 0.1; done
  if [ "$RELOAD" = mistake ]; then
    mv "$dir/policies.good" "$dir/policies.yaml"
    tail -n +"$((from + 1))" "$dir/daemon.log" | grep '"policies not reloaded' | grep -q 'unknown class' ||
      { echo "the reload of a file with a mistake was not refused with the mistake named:"; tail -3 "$dir/daemon.log"; exit 1; }
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "the daemon is not ready after a refused reload"; exit 1; }
  fi
  sleep 2 # the metrics refresh the reload pokes
  for i in 1 2 3; do
    m=$(curl -s -o "$dir/metrics" -w '%{time_total}' "http://127.0.0.1:$port/metrics")
    echo "BenchmarkDaemon/$dname/scrape 1 $(python3 -c "print(int($m * 1e9))") ns/op $(wc -c < "$dir/metrics") scrape-B" | tee -a "$OUT"
  done
  if [ -n "${PAGE:-}" ]; then
    # The status page's list, three views (the first reads the state
    # database; the next ones are served from that read, --status-page-refresh).
    echo "BenchmarkDaemon/$dname/peak-rss-before-page 1 $(($(awk '/VmHWM/{print $2}' /proc/$dpid/status) * 1024)) B" | tee -a "$OUT"
    for i in 1 2 3; do
      m=$(curl -s -o "$dir/page.html" -w '%{time_total}' "http://127.0.0.1:$pport/")
      echo "BenchmarkDaemon/$dname/page 1 $(python3 -c "print(int($m * 1e9))") ns/op $(wc -c < "$dir/page.html") page-B" | tee -a "$OUT"
    done
    grep -q 'tok/t' "$dir/page.html" || { echo "the status page lists no secret:"; head -c 500 "$dir/page.html"; exit 1; }
  fi
  echo "BenchmarkDaemon/$dname/peak-rss 1 $(($(awk '/VmHWM/{print $2}' /proc/$dpid/status) * 1024)) B" | tee -a "$OUT"
  kill "$dpid" && wait "$dpid" 2>/dev/null || true
  dpid=
}

if [ "$DAEMON_N" -gt 0 ]; then
  daemon_bench
  # VARIANTS: more daemon runs, each a benchmark of its own (make bench
  # runs them all): top (RELOAD=top), mistake (RELOAD=mistake), page
  # (PAGE=1).
  for v in $VARIANTS; do
    case $v in
      top | mistake) RELOAD=$v PAGE= daemon_bench ;;
      page) RELOAD=end PAGE=1 daemon_bench ;;
      *) echo "VARIANTS: top, mistake or page, not $v" >&2; exit 2 ;;
    esac
  done
fi
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at the end" >> "$OUT"

if [ -n "${UPDATE_BASELINE:-}" ]; then
  cp "$OUT" "$BASELINE"
  echo "baseline recorded in $BASELINE"
elif [ -f "$BASELINE" ]; then
  python3 bench/compare.py "$BASELINE" "$OUT"
fi
