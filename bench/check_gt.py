#!/usr/bin/python3
"""Check a ground-truth file against a reference and against FAISS.

    bench/check_gt.py --base B --queries Q --gt rotor_gt.ivecs \
        [--reference other_gt.ivecs] [--faiss] [--k 100] [--metric l2]

Two answers agree when, row by row, the ids are identical, or where they
differ, the distances at that rank are equal (a tie, which either answer may
order its own way). Distances are recomputed exactly: in int64 for integer
data, in float64 otherwise. --faiss also computes the answer with FAISS
IndexFlatL2/IndexFlatIP (whichever faiss is on PYTHONPATH) and compares.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from peers import read_vectors  # noqa: E402


def exact(metric, base, q, ids):
    x = base[ids]
    if np.issubdtype(base.dtype, np.integer) and metric == "l2":
        diff = x.astype(np.int64) - q.astype(np.int64)
        return (diff * diff).sum(axis=1).astype(np.float64)
    x = x.astype(np.float64)
    qq = q.astype(np.float64)
    if metric == "l2":
        return ((x - qq) ** 2).sum(axis=1)
    dots = x @ qq
    if metric == "ip":
        return -dots
    return 1.0 - dots / (np.linalg.norm(x, axis=1) * np.linalg.norm(qq))


def compare(name, base, queries, mine, theirs, k, metric):
    rows_differ = ties = real = set_diff = 0
    for i in range(len(queries)):
        a, b = mine[i, :k], theirs[i, :k]
        if np.array_equal(a, b):
            continue
        rows_differ += 1
        set_diff += len(set(a.tolist()) - set(b.tolist()))
        da, db = exact(metric, base, queries[i], a), exact(metric, base, queries[i], b)
        for j in np.nonzero(a != b)[0]:
            if abs(da[j] - db[j]) <= 1e-9 * max(1.0, abs(db[j])):
                ties += 1
            else:
                real += 1
                if real <= 5:
                    print(f"  query {i} rank {j}: id {a[j]} at {da[j]} vs id {b[j]} at {db[j]}")
    print(f"{name}: {len(queries)} queries x {k}: {rows_differ} rows differ, "
          f"{ties} positions differ only by a tie, {real} real differences "
          f"({set_diff} ids in one top-{k} and not in the other)")
    return real == 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--gt", required=True, help="the answer to check (.ivecs/.ibin/.npy)")
    p.add_argument("--reference", help="a reference answer to compare with")
    p.add_argument("--faiss", action="store_true", help="also compare with FAISS IndexFlat")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--metric", default="l2", choices=["l2", "ip", "cosine"])
    a = p.parse_args()
    base = read_vectors(a.base)
    queries = read_vectors(a.queries)
    mine = read_vectors(a.gt)
    ok = True
    if a.reference:
        ok &= compare(f"vs {os.path.basename(a.reference)}", base, queries, mine,
                      read_vectors(a.reference), a.k, a.metric)
    if a.faiss:
        import faiss
        xb = base.astype(np.float32)
        xq = queries.astype(np.float32)
        if a.metric == "cosine":
            xb /= np.linalg.norm(xb, axis=1, keepdims=True)
            xq /= np.linalg.norm(xq, axis=1, keepdims=True)
        index = faiss.IndexFlatL2(xb.shape[1]) if a.metric == "l2" else faiss.IndexFlatIP(xb.shape[1])
        index.add(xb)
        _, ids = index.search(xq, a.k)
        ok &= compare(f"vs faiss {faiss.__version__} IndexFlat", base, queries, mine, ids, a.k,
                      a.metric)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
