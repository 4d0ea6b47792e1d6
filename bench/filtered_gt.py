#!/usr/bin/python3
"""Exact ground truth of a filtered search: for each query, the ids of the k
nearest base vectors among those passing the filter.

    bench/filtered_gt.py --base B --queries Q --labels L.txt --filter "3" --k 100 \\
        [--metric l2|ip|cosine] [--max-queries N] --out gt.ivecs

The labels file and the filter are as `peers.py --labels/--filter` ('L',
'L1|L2' any of, 'L1&L2' all of). Output: .ivecs (or .ibin) with k ids per
query, nearest first, ties broken by the smaller id; a query with fewer than
k passing vectors gets them all followed by -1.

Distances are computed in float64 over blocks of queries and of allowed base
rows; the candidates of each block are rescored directly (sum of squared
differences for l2, so the expanded |x|^2 - 2 q.x + |q|^2 form decides only
which rows are rescored, with a margin). ip ranks by -q.x; cosine by 1 - the
cosine of the raw vectors (zero vectors at distance 1).
"""
import argparse
import os
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from peers import filter_mask, read_labels, read_vectors  # noqa: E402

QUERY_BLOCK = 256
BASE_BLOCK = 32768


def unit(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms > 0, x / np.where(norms > 0, norms, 1), 0.0)


def direct(metric, q, x):
    """Distances of one query to rows x (both float64), smaller is better."""
    if metric == "l2":
        return ((x - q) ** 2).sum(axis=1)
    dots = x @ q
    return -dots if metric == "ip" else 1.0 - dots


def write_ids(path, ids):
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    n, k = ids.shape
    if path.lower().endswith(".ibin"):
        with open(path, "wb") as f:
            f.write(struct.pack("<II", n, k))
            ids.astype("<i4").tofile(f)
    else:
        rows = np.empty((n, k + 1), dtype="<i4")
        rows[:, 0] = k
        rows[:, 1:] = ids
        rows.tofile(path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--base", required=True, help="base vectors (any format rotor reads)")
    p.add_argument("--queries", required=True)
    p.add_argument("--labels", required=True, help="labels file, one line per base vector")
    p.add_argument("--filter", required=True, help="'L', 'L1|L2|...' or 'L1&L2&...'")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--metric", default="l2", choices=["l2", "ip", "cosine"])
    p.add_argument("--max-queries", type=int, default=0, help="only the first N queries")
    p.add_argument("--out", required=True, help=".ivecs or .ibin")
    a = p.parse_args()
    if a.k <= 0:
        p.error("--k must be positive")

    t0 = time.perf_counter()
    base = read_vectors(a.base)
    queries = read_vectors(a.queries, a.max_queries).astype(np.float64)
    if base.shape[1] != queries.shape[1]:
        sys.exit("filtered_gt: queries and base differ in dimension")
    mask = filter_mask(read_labels(a.labels, len(base)), a.filter)
    allowed = np.nonzero(mask)[0]
    x = base[allowed].astype(np.float64)
    if a.metric == "cosine":
        x, queries = unit(x), unit(queries)
    nq, na, k = len(queries), len(allowed), a.k
    keep = min(k, na)
    # Rows rescored per block: the blocked products (l2's expanded form most)
    # can misorder rows whose distances differ by rounding: a margin beyond k.
    take = min(na, k + max(16, k // 4))
    xx = (x * x).sum(axis=1) if a.metric == "l2" else None

    out = np.full((nq, k), -1, dtype=np.int64)
    for q0 in range(0, nq, QUERY_BLOCK):
        qb = queries[q0:q0 + QUERY_BLOCK]
        cand = [[] for _ in range(len(qb))]
        for b0 in range(0, na, BASE_BLOCK):
            xb = x[b0:b0 + BASE_BLOCK]
            dots = qb @ xb.T
            if a.metric == "l2":
                est = xx[b0:b0 + BASE_BLOCK][None, :] - 2 * dots
            else:
                est = -dots
            t = min(take, xb.shape[0])
            part = np.argpartition(est, t - 1, axis=1)[:, :t] if t < xb.shape[0] else \
                np.broadcast_to(np.arange(xb.shape[0]), (len(qb), xb.shape[0]))
            for i in range(len(qb)):
                cand[i].append(part[i] + b0)
        for i in range(len(qb)):
            rows = np.concatenate(cand[i]) if cand[i] else np.array([], dtype=np.int64)
            d = direct(a.metric, qb[i], x[rows])
            order = np.lexsort((allowed[rows], d))[:keep]
            out[q0 + i, :keep] = allowed[rows[order]]

    write_ids(a.out, out)
    short = int((out[:, -1] < 0).sum())
    print(f"filtered_gt: filter '{a.filter}' passes {na} of {len(base)} vectors "
          f"(selectivity {na / len(base):.5f}); {nq} queries x k={k}, {a.metric}; "
          f"{short} queries with fewer than k passing; {time.perf_counter() - t0:.1f} s "
          f"-> {a.out}")


if __name__ == "__main__":
    main()
