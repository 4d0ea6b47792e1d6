#!/usr/bin/python3
"""Fits the cost model of index/tune.c to work_timing's lines.

    fit.py LINES.csv [...]

Each line is one search setting on one index: the work a search counted
(records expanded, codes scored in sequence or gathered, candidates refined
and reranked) and the thread CPU time it took. The model is linear in the
work, with per-unit costs by kind of code; the fit is least squares on the
relative error (each setting weighs alike whatever its time), with negative
coefficients refitted without their feature. Prints the constants and the
model's error per line.
"""
import csv
import sys

import numpy as np

COLS = ["quant", "walk", "nbr", "dim", "count", "code_bytes", "walk_bytes", "node_bytes", "disk",
        "list", "rerank", "refine", "hops", "scored", "gathered", "pooled", "refined", "reranked",
        "probed", "ns"]

NAMES = ["query", "query_dim", "hop", "hop_line", "fs_nibble", "sq_dim", "float_dim", "miss",
         "row_line", "pool_entry"]


def nibbles(spec, d):
    if spec.startswith("pq") and spec.endswith("x4"):
        return int(spec[2:-2])
    if spec.startswith("bin") and spec.endswith("fs"):
        return int(spec[3]) * d / 4
    return 0


def features(r):
    d = r["dim"]
    walk, quant = r["walk"], r["quant"]
    seq = r["scored"] - r["gathered"]
    full = walk == "none"
    f = np.zeros(len(NAMES))
    f[0] = 1
    f[1] = 0 if full else d
    f[2] = r["hops"]
    f[3] = r["hops"] * np.ceil(r["node_bytes"] / 64)
    f[4] = r["scored"] * nibbles(walk, d)
    sq_walk = walk == "sq8"
    f[5] = (r["scored"] if sq_walk else 0) * d + (r["refined"] * d if quant == "sq8" else 0)
    f[6] = (r["scored"] if full else 0) * d + r["reranked"] * d
    f[7] = r["gathered"] + r["refined"] + r["reranked"]
    # A row read at random: its lines beyond the first.
    f[8] = r["reranked"] * (np.ceil(4 * d / 64) - 1) + \
        (r["gathered"] * (np.ceil(4 * d / 64) - 1) if full else 0)
    # A refine or rerank deeper than the list keeps a pool beside it: every
    # entry it takes pays for it.
    f[9] = r["pooled"]
    return f, seq


def main():
    rows = []
    for path in sys.argv[1:]:
        for line in csv.reader(open(path)):
            r = dict(zip(COLS, line))
            for k in COLS[3:]:
                r[k] = float(r[k])
            rows.append(r)
    X = np.array([features(r)[0] for r in rows])
    y = np.array([r["ns"] for r in rows])
    W = 1 / y
    keep = list(range(len(NAMES)))
    while True:
        c, *_ = np.linalg.lstsq(X[:, keep] * W[:, None], y * W, rcond=None)
        neg = [keep[i] for i in range(len(keep)) if c[i] < 0]
        if not neg:
            break
        keep.remove(neg[0])
    coef = np.zeros(len(NAMES))
    coef[keep] = c
    for n, v in zip(NAMES, coef):
        print(f"{n:10s} {v:10.4f} ns")
    pred = X @ coef
    err = pred / y - 1
    print(f"relative error: median {np.median(np.abs(err)):.3f}, max {np.max(np.abs(err)):.3f}")
    for r, p in zip(rows, pred):
        print(f"{r['quant']:>8s} {r['walk']:>8s} n={r['count']:8.0f} L={r['list']:4.0f} "
              f"rr={r['rerank']:4.0f} rf={r['refine']:4.0f} "
              f"measured {r['ns'] / 1000:8.1f} us  model {p / 1000:8.1f} us")


if __name__ == "__main__":
    main()
