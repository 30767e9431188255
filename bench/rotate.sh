#!/usr/bin/env bash
# The engine against the floor (docs/performance.md, "The engine against
# the floor"): BenchmarkRotate in bench/bench_test.go, N blue/green
# rotations each way (default 1,000; each pair rotated once untimed first,
# so the timed rotation replaces a published version), 8 in flight,
# COUNT times (default 3), on one throwaway Postgres cluster
# (internal/pgtest). Results go to OUT (default .bench/rotate.txt) in the
# Go benchmark format, then bench/compare.py compares them with the
# recorded baseline (BASELINE, default bench/baseline-rotate.txt): the
# engine/floor ratio and the engine's rotations per second, flagged and
# exit 1 when more than 20 % worse.
#
#   bench/rotate.sh                    # ~1-3 min per count on 2 cores
#   N=300 COUNT=1 bench/rotate.sh      # quicker
#   UPDATE_BASELINE=1 bench/rotate.sh  # record a new baseline
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
GO=${GO:-go}
N=${N:-1000}
COUNT=${COUNT:-3}
OUT=${OUT:-$ROOT/.bench/rotate.txt}
BASELINE=${BASELINE:-$ROOT/bench/baseline-rotate.txt}
mkdir -p "$(dirname "$OUT")"
{
  echo "goos: linux"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start, $(git rev-parse --short HEAD)"
} > "$OUT"
$GO test ./bench -run '^$' -bench '^BenchmarkRotate$' -benchtime "${N}x" -count "$COUNT" -timeout 60m | tee /dev/stderr | grep '^BenchmarkRotate' >> "$OUT"
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at the end" >> "$OUT"
if [ -n "${UPDATE_BASELINE:-}" ]; then
  cp "$OUT" "$BASELINE"
  echo "baseline recorded: $BASELINE"
else
  python3 bench/compare.py "$BASELINE" "$OUT"
fi
