#!/usr/bin/python3
"""Compare benchmark JSON lines (from `rotor bench --json` and
bench/peers/peers.py): per data set, the best QPS each method reaches at
recall@10 floors, and its ratio to rotor's.

    bench/compare.py results.jsonl [--floors 0.9,0.95,0.99] [--cpu]

--cpu divides queries by the CPU seconds of the searching threads instead of
wall time, which keeps a comparison readable when the machine is shared.
"""
import argparse
import json
import sys
from collections import defaultdict


def label(r):
    tool = r.get("tool", "rotor")
    build = r.get("build")
    name = f"{tool}:{r['method']}"
    if build:
        name += f" ({build})"
    return name


def main():
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="+")
    p.add_argument("--floors", default="0.9,0.95,0.99")
    p.add_argument("--cpu", action="store_true", help="QPS per CPU-second of search threads")
    p.add_argument("--threads", type=int, default=1, help="only rows with this many threads")
    a = p.parse_args()
    floors = [float(x) for x in a.floors.split(",")]
    rows = []
    for path in a.files:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    by_set = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("kind") == "eval-quant" or r.get("threads", 1) != a.threads \
                or r.get("recall_at_10") is None:
            continue
        qps = r["n_queries"] / r["cpu_seconds"] if a.cpu else r["qps"]
        by_set[(r["dataset"], r["metric"])][label(r)].append((r["recall_at_10"], qps))
    if not by_set:
        sys.exit("compare: no rows with recall@10")
    for (dataset, metric), methods in sorted(by_set.items()):
        print(f"\n{dataset} ({metric}), {'QPS per CPU-second' if a.cpu else 'QPS'}, "
              f"{a.threads} thread(s)")
        best = {m: [max([q for r, q in pts if r >= fl], default=None) for fl in floors]
                for m, pts in methods.items()}
        rotor = next((m for m in best if m.startswith("rotor:")), None)
        head = f"{'method':34s}" + "".join(f"{'@' + str(fl):>12s}{'ratio':>8s}" for fl in floors)
        print(head)
        for m, vals in sorted(best.items(), key=lambda kv: kv[0] != rotor):
            line = f"{m:34s}"
            for i, v in enumerate(vals):
                ref = best[rotor][i] if rotor else None
                ratio = f"{ref / v:8.2f}" if v and ref and m != rotor else f"{'':8s}"
                line += (f"{v:12.1f}" if v else f"{'-':>12s}") + ratio
            print(line)
        if rotor:
            print("(ratio = rotor's QPS / this method's QPS at the same recall floor)")


if __name__ == "__main__":
    main()
