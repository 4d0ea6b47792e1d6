#!/usr/bin/python3
"""A fixed amount of searching for instruction counts under callgrind, where
wall time cannot be trusted (a shared machine) and instructions can:

  calls.py batch|single INDEX QUERIES N

batch: one Index.search of the first N queries on one thread; single: N
one-query searches. Run once with N and once with 0: the difference of the
two totals is what the searches cost from Python, to set against the
inclusive cost of rotor_index_search_batch / rotor_index_search in
search_timing under the same tool (bench/RESULTS.md has the commands).
Search settings: k 10, list 12, rerank 32.
"""
import sys

import numpy as np

import rotor

mode, index, queries, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ix = rotor.Index.open(index)
q = rotor.read_vectors(queries, dtype=np.float32)
if mode == "batch":
    if n:
        ix.search(q[:n], 10, list_size=12, rerank=32, threads=1)
else:
    rows = [q[i] for i in range(n)]
    for row in rows:
        ix.search(row, 10, list_size=12, rerank=32)
