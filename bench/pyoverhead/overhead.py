#!/usr/bin/python3
"""What the Python module adds to a search, measured beside the C API on the
same index file and queries, on one thread, in --rounds rounds that
alternate the C program and this one (medians over all of them, so both see
the same spells of a busy machine):

  single  median latency of one query (Index.search(q[i], k) against
          rotor_index_search), each call timed alone
  batch   median wall and CPU time of one batch search of every query
          (Index.search(Q, k, threads=1) against rotor_index_search_batch)
  threads batch QPS of two Python threads searching one index at once (each
          with threads=1) over one thread's; 2.0 when the GIL is released
          and two cores are free

The C side is bench/pyoverhead/search_timing.c; compile it against the same
build first (see bench/RESULTS.md for the command). Needs the rotor module
on PYTHONPATH (or installed).
"""
import argparse
import subprocess
import threading
import time

import numpy as np

import rotor


def python_side(ix, q, k, lsize, rerank, runs, lat, batch, cpu):
    clock = time.perf_counter_ns
    # the cost of the timer itself, taken off each latency as C's is not
    empty = []
    for _ in range(10000):
        t0 = clock()
        empty.append(clock() - t0)
    timer_ns = float(np.median(empty))
    rows = [q[i] for i in range(len(q))]
    for _ in range(runs):
        for row in rows:
            t0 = clock()
            ix.search(row, k, list_size=lsize, rerank=rerank)
            lat.append(clock() - t0)
        t0, c0 = time.perf_counter(), time.process_time()
        ix.search(q, k, list_size=lsize, rerank=rerank, threads=1)
        batch.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return timer_ns


def two_threads(ix, q, k, lsize, rerank, runs):
    def one_pass(chunk):
        ix.search(chunk, k, list_size=lsize, rerank=rerank, threads=1)

    ratios = []
    for _ in range(runs):
        t0 = time.perf_counter()
        one_pass(q)
        one = len(q) / (time.perf_counter() - t0)
        ts = [threading.Thread(target=one_pass, args=(q,)) for _ in range(2)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        two = 2 * len(q) / (time.perf_counter() - t0)
        ratios.append(two / one)
    return float(np.median(ratios))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True, help="an index file (Index.save / rotor build)")
    p.add_argument("--queries", required=True)
    p.add_argument("--c-harness", required=True, help="the compiled search_timing")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--list", type=int, default=0, help="list_size (0: the library default)")
    p.add_argument("--rerank", type=int, default=-1, help="-1: the library default")
    p.add_argument("--runs", type=int, default=3, help="passes per round")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    ix = rotor.Index.open(a.index)  # mapped, as search_timing opens it
    q = rotor.read_vectors(a.queries, dtype=np.float32)
    rerank = None if a.rerank < 0 else a.rerank
    cs, cb, cc, lat, batch, cpu = [], [], [], [], [], []
    for _ in range(a.rounds):
        c = subprocess.run([a.c_harness, a.index, a.queries, str(a.k), str(a.list),
                            str(a.rerank), str(a.runs)], check=True, capture_output=True,
                           text=True).stdout.split()
        cs.append(float(c[2]))
        cb.append(float(c[4]))
        cc.append(float(c[6]))
        timer_ns = python_side(ix, q, a.k, a.list, rerank, a.runs, lat, batch, cpu)
    c_single, c_batch, c_cpu = (float(np.median(v)) for v in (cs, cb, cc))
    py_single, py_batch, py_cpu = (float(np.median(v)) for v in (lat, batch, cpu))
    ratio = two_threads(ix, q, a.k, a.list, rerank, a.runs)
    print(f"index {a.index}: {ix!r}, {len(q)} queries, k {a.k}, list {a.list}, "
          f"rerank {a.rerank}, {a.rounds} rounds of {a.runs} passes")
    print(f"single query median: C {c_single / 1000:.2f} us, Python {py_single / 1000:.2f} us "
          f"(timer {timer_ns:.0f} ns) -> overhead {(py_single - timer_ns - c_single) / 1000:+.2f} us")
    print(f"batch of {len(q)} on one thread, median wall: C {c_batch:.4f} s, Python "
          f"{py_batch:.4f} s -> {100 * (py_batch / c_batch - 1):+.2f} %; median CPU: C "
          f"{c_cpu:.4f} s, Python {py_cpu:.4f} s -> {100 * (py_cpu / c_cpu - 1):+.2f} %")
    print(f"two Python threads over one: {ratio:.2f}x batch QPS")


if __name__ == "__main__":
    main()
