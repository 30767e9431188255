#!/usr/bin/env python3
"""Compare two Go-benchmark-format result files (bench/scale.sh writes
them; benchstat reads them too): the median of each benchmark and unit in
the baseline against the new run. A value more than 20 % worse than the
baseline, and worse by more than the unit's noise floor, is a regression:
it is flagged, and the exit status is 1.

    bench/compare.py bench/baseline-scale.txt .bench/scale.txt

Units are "lower is better" (times, bytes, % of a core, ratios such as
engine/floor) except rates ("/s": rotations per second), which are
"higher is better". Some units are shown for context but never flagged
(INFO): the floor's own speed and CPU time, and a login's, are the
machine's, and tail latencies on a shared 2-core machine move by more
than 20 % from run to run.
"""
import re
import statistics
import sys

THRESHOLD = 0.20
# Below these differences a change is noise whatever its percentage: a
# process start jitters by milliseconds, RSS by a few MB, an idle daemon's
# CPU reads 0.00-0.05 % of a core.
FLOOR = {"ns/op": 20e6, "peak-RSS-B": 8 << 20, "B": 8 << 20, "%core": 0.2, "x": 0.25, "scrape-B": 4096,
         "engine/floor": 0.1, "engine-rot/s": 5, "engine/floor-cpu": 0.1, "engine-cpu-ms": 1, "engine-pg-cpu-ms": 1}
INFO = re.compile(r"^floor-|^login-|-p(50|99)-ms$")

LINE = re.compile(r"^(Benchmark\S+)\s+\d+\s+(.*)$")


def read(path):
    vals = {}
    for line in open(path):
        m = LINE.match(line.strip())
        if not m:
            continue
        fields = m.group(2).split()
        for v, unit in zip(fields[0::2], fields[1::2]):
            vals.setdefault((m.group(1), unit), []).append(float(v))
    return {k: statistics.median(v) for k, v in vals.items()}


def show(v, unit):
    if unit == "ns/op":
        return f"{v / 1e6:.1f} ms"
    if unit in ("B", "peak-RSS-B"):
        return f"{v / (1 << 20):.1f} MiB"
    if unit == "scrape-B":
        return f"{v / 1024:.1f} KiB"
    return f"{v:.3f} {unit}"


def main():
    base, new = read(sys.argv[1]), read(sys.argv[2])
    bad = 0
    print(f"{'benchmark':58} {'unit':10} {'baseline':>12} {'new':>12} {'change':>8}")
    for key in sorted(new):
        name, unit = key
        if key not in base:
            print(f"{name:58} {unit:10} {'-':>12} {show(new[key], unit):>12}   (new)")
            continue
        b, n = base[key], new[key]
        change = (n - b) / b if b else 0.0
        if INFO.search(unit):
            print(f"{name:58} {unit:10} {show(b, unit):>12} {show(n, unit):>12} {change:+8.1%}  (context)")
            continue
        if unit.endswith("/s"):
            worse = n < b / (1 + THRESHOLD) and b - n > FLOOR.get(unit, 0)
        else:
            worse = n > b * (1 + THRESHOLD) and n - b > FLOOR.get(unit, 0)
        bad += worse
        flag = "  REGRESSION (> 20 %)" if worse else ""
        print(f"{name:58} {unit:10} {show(b, unit):>12} {show(n, unit):>12} {change:+8.1%}{flag}")
    if bad:
        print(f"{bad} regression(s) of more than 20 % against {sys.argv[1]}")
        sys.exit(1)
    print(f"no regression of more than 20 % against {sys.argv[1]}")


if __name__ == "__main__":
    main()
