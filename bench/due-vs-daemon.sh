#!/usr/bin/env bash
# N due secrets (default 100 token secrets, each its own server) rotated by
# one `rotator run --due --no-wait` and by a daemon's first tick, with the
# same --concurrency (default 8) and --per-server: wall time and rotations/s.
# Both run rotation.Engine.Tick with the same bounds (issue 20).
#   bench/due-vs-daemon.sh
#   N=100 C=8 bench/due-vs-daemon.sh
export N=${N:-100}
C=${C:-8}
source "$(dirname "$0")/setup.sh"
due_again() { # every secret due again, nothing unfinished
  psql -q "$DATABASE_URL" -c "DELETE FROM rotator_runs" -c "UPDATE rotator_secrets SET next_due_at = now() - interval '1 minute', last_success_at = now() - interval '1000 days'"
}
succeeded() { psql -qtA "$DATABASE_URL" -c "SELECT count(*) FROM rotator_runs WHERE status = 'succeeded'"; }
for round in 1 2; do
  due_again
  start=$(date +%s.%N)
  $BIN run --due --no-wait --concurrency "$C" --per-server 1 > "$WORK/out" 2>/dev/null || true
  end=$(date +%s.%N)
  echo "run --due --concurrency $C: $(tail -1 "$WORK/out"); $(succeeded) succeeded in $(echo "$end - $start" | bc) s, $(echo "$(succeeded) / ($end - $start)" | bc -l | cut -c1-5) rotations/s"

  due_again
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  start=$(date +%s.%N)
  $BIN daemon --listen 127.0.0.1:$port --tick '@every 1h' --concurrency "$C" --per-server 1 2> "$WORK/daemon.log" &
  pid=$!
  deadline=$((SECONDS + 300))
  until [ "$(succeeded)" -ge "$N" ] || [ $SECONDS -ge $deadline ]; do sleep 0.05; done
  end=$(date +%s.%N)
  kill -TERM $pid; wait $pid || true
  tick=$(python3 - "$WORK/daemon.log" <<'PY'
import json, sys
from datetime import datetime
t = {}
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if r.get("msg") in ("daemon started", "tick") and r["msg"] not in t:
        t[r["msg"]] = datetime.fromisoformat(r["time"][:26].rstrip("Z"))
print("%.3f" % (t["tick"] - t["daemon started"]).total_seconds())
PY
)
  echo "daemon --concurrency $C: $(succeeded) succeeded in $(echo "$end - $start" | bc) s from process start; its first tick ended $tick s after 'daemon started' ($(echo "$N / $tick" | bc -l | cut -c1-5) rotations/s)"
done
