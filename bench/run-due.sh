#!/usr/bin/env bash
# `rotator run --due` when nothing is due among N secrets (default 10,000):
# wall time and peak memory, with /usr/bin/time -v.
#   bench/run-due.sh            # N=10000
#   N=100000 bench/run-due.sh
export N=${N:-10000}
source "$(dirname "$0")/setup.sh"
$BIN run --due >/dev/null # the first records every due time
for i in 1 2 3; do
  /usr/bin/time -v $BIN run --due > "$WORK/out" 2> "$WORK/time"
  tail -1 "$WORK/out"
  grep -E 'Elapsed \(wall clock\)|Maximum resident set size|User time|System time' "$WORK/time" | sed 's/^\s*/  /'
done
