#!/usr/bin/env bash
# The daemon's idle cost with N secrets scheduled (default 100,000), none
# due: start-up time, then CPU (utime+stime from /proc/PID/stat) and RSS
# (VmRSS) sampled over SECONDS_IDLE seconds (default 60) at the default
# tick (@every 1m), then the time of one /metrics scrape.
#   bench/daemon-idle.sh
#   N=10000 SECONDS_IDLE=30 bench/daemon-idle.sh
export N=${N:-100000}
IDLE=${SECONDS_IDLE:-60}
TICK=${TICK:-@every 1m}
source "$(dirname "$0")/setup.sh"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(date +%s.%N)
$BIN daemon --listen 127.0.0.1:$port --tick "$TICK" 2> "$WORK/daemon.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; go run ./internal/pgtest/pgcluster stop --dir "$WORK" >/dev/null 2>&1 || true' EXIT
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
echo "started and ready in $(python3 -c "print(round($(date +%s.%N) - $start, 2))") s"
sleep 5 # the first tick
hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
rss() { awk '/VmRSS/{print $2}' /proc/$pid/status; }
c0=$(cpu); t0=$(date +%s.%N); maxrss=0; sum=0; k=0
for ((s = 0; s < IDLE; s += 5)); do
  sleep 5; r=$(rss); sum=$((sum + r)); k=$((k + 1)); [ "$r" -gt "$maxrss" ] && maxrss=$r
done
c1=$(cpu); t1=$(date +%s.%N)
python3 - "$c0" "$c1" "$t0" "$t1" "$hz" "$sum" "$k" "$maxrss" <<'PY'
import sys
c0, c1, t0, t1, hz, tot, k, mx = map(float, sys.argv[1:])
wall = t1 - t0
print(f"idle {wall:.0f} s: CPU {(c1 - c0) / hz:.2f} s ({100 * (c1 - c0) / hz / wall:.2f}% of one core); "
      f"VmRSS mean {tot / k / 1024:.0f} MiB, max {mx / 1024:.0f} MiB")
PY
echo "VmHWM $(awk '/VmHWM/{print $2}' /proc/$pid/status) kB"
for i in 1 2 3; do
  curl -s -o "$WORK/metrics" -w "/metrics scrape: %{time_total} s, " "http://127.0.0.1:$port/metrics"
  echo "$(wc -c < "$WORK/metrics") bytes, $(grep -c '^rotator_secret_age_seconds' "$WORK/metrics") age series"
done
echo "VmHWM after scrapes $(awk '/VmHWM/{print $2}' /proc/$pid/status) kB"
grep -c '"msg":"tick"' "$WORK/daemon.log" || true
