#!/usr/bin/python3
"""Fits the cost model of index/tune.c to work_timing's lines.

    fit.py [--fix NAME=NS ...] LINES.csv [...]

Each line is one search setting on one index: the work a search counted
(records expanded, codes scored in sequence or gathered, candidates refined
and reranked) and the thread CPU time it took. The model is linear in the
work, with per-unit costs by kind of code, and prices reads from memory by
the doublings of their array past NS_CACHE_BYTES (the index's size, not
the sample's). The fit is least squares on the relative error, each index
weighing alike whatever its number of lines, with negative coefficients
refitted without their feature. --fix holds a constant at a value (the
scoring constants, say, when the indexes fitted do not vary what they
price). Prints the constants, the median ratio of measured to modelled
time per file, and the model's error per line.
"""
import collections
import csv
import math
import sys

import numpy as np

COLS = ["quant", "walk", "nbr", "dim", "count", "code_bytes", "walk_bytes", "node_bytes", "disk",
        "list", "rerank", "refine", "hops", "scored", "gathered", "pooled", "refined", "reranked",
        "probed", "ns", "row_bytes"]

NAMES = ["query", "query_dim", "hop", "hop_far", "pool_entry", "fs_nibble", "sq_dim", "float_dim",
         "byte_dim", "read_far"]

CACHE_BYTES = 8 * 1024 * 1024


def past_cache(nbytes):
    return math.log2(nbytes / CACHE_BYTES) if nbytes > CACHE_BYTES else 0.0


def nibbles(spec, d):
    if spec.startswith("pq") and spec.endswith("x4"):
        return int(spec[2:-2])
    if spec.startswith("bin") and spec.endswith("fs"):
        return int(spec[3]) * d / 4
    return 0


def features(r):
    d, n = r["dim"], r["count"]
    walk, quant = r["walk"], r["quant"]
    full = walk == "none"
    records = n * r["node_bytes"]
    vectors = n * r.get("row_bytes", 4 * d)
    f = dict.fromkeys(NAMES, 0.0)
    f["query"] = 1
    f["query_dim"] = 0 if full else d
    f["hop"] = r["hops"]
    f["hop_far"] = r["hops"] * past_cache(records)
    f["pool_entry"] = r["pooled"]
    f["fs_nibble"] = r["scored"] * nibbles(walk, d)
    f["sq_dim"] = ((r["scored"] if walk == "sq8" else 0) + (r["refined"] if quant == "sq8" else 0)) * d
    # A distance to a row of bytes (whole numbers 0..255) is priced apart.
    exact = ((r["scored"] if full else 0) + r["reranked"]) * d
    f["byte_dim" if r.get("row_bytes", 4 * d) == d else "float_dim"] = exact
    # Reads issued together (own codes gathered from the records, codes
    # refined, vectors reranked) overlap; a full-precision walk's, issued
    # together too, cost nothing past the hop's price (fitted as a feature
    # of their own: 0.5 ns a doubling).
    f["read_far"] = (0 if full else r["gathered"] * past_cache(records)) + \
        (r["refined"] * past_cache(n * r["code_bytes"]) if not full else 0) + \
        r["reranked"] * past_cache(vectors)
    return [f[k] for k in NAMES]


def main():
    args = sys.argv[1:]
    fixed = {}
    while args and args[0] == "--fix":
        name, value = args[1].split("=")
        fixed[name] = float(value)
        args = args[2:]
    rows, files = [], []
    for path in args:
        lines = list(csv.reader(open(path)))
        for line in lines:
            r = dict(zip(COLS, line))
            for k in COLS[3:]:
                if k in r:
                    r[k] = float(r[k])
            r["weight"] = 1 / math.sqrt(len(lines))
            rows.append(r)
            files.append(path)
    X = np.array([features(r) for r in rows])
    y = np.array([r["ns"] for r in rows])
    W = np.array([r["weight"] for r in rows]) / y
    base = sum(X[:, NAMES.index(k)] * v for k, v in fixed.items()) if fixed else np.zeros(len(y))
    keep = [i for i, k in enumerate(NAMES) if k not in fixed]
    while True:
        c, *_ = np.linalg.lstsq(X[:, keep] * W[:, None], (y - base) * W, rcond=None)
        neg = [keep[i] for i in range(len(keep)) if c[i] < 0]
        if not neg:
            break
        keep.remove(neg[0])
    coef = np.zeros(len(NAMES))
    coef[keep] = c
    for k, v in fixed.items():
        coef[NAMES.index(k)] = v
    for name, v in zip(NAMES, coef):
        print(f"{name:10s} {v:10.4f} ns{' (fixed)' if name in fixed else ''}")
    pred = X @ coef
    ratio = y / pred
    print(f"relative error: median {np.median(np.abs(ratio - 1)):.3f}, "
          f"max {np.max(np.abs(ratio - 1)):.3f}")
    per_file = collections.defaultdict(list)
    for f, v in zip(files, ratio):
        per_file[f].append(v)
    for f, v in per_file.items():
        print(f"{f}: measured / model median {np.median(v):.2f} ({min(v):.2f} to {max(v):.2f})")
    for r, p in zip(rows, pred):
        print(f"{r['quant']:>8s} {r['walk']:>8s} n={r['count']:8.0f} L={r['list']:4.0f} "
              f"rr={r['rerank']:4.0f} rf={r['refine']:4.0f} "
              f"measured {r['ns'] / 1000:8.1f} us  model {p / 1000:8.1f} us")


if __name__ == "__main__":
    main()
