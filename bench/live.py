#!/usr/bin/python3
"""Searches beside a writer: one thread searching while another inserts.

Builds an index (default parameters, one thread) over the first --first
rows of --base, then measures, one search thread throughout:

  idle    queries per second with nothing else running;
  pair    queries per second of one of two search threads (the control:
          what any second busy thread costs on the machine);
  beside  queries per second while a second thread adds the remaining rows
          as fast as it can, in batches of --batch (the index's one thread);

and the inserts per second of that writer, alone and beside the searches.
Each figure is the median of --runs runs; the writer's rows are removed
again between runs (and the index consolidated), so every run starts from
the same live set. Prints one JSON object per line and a summary.

    PYTHONPATH=build/dev/bindings/python bench/live.py \\
        --base fashion_base.fbin --queries fashion_query1k.fbin --first 30000
"""
import argparse
import json
import statistics
import threading
import time

import numpy as np
import rotor


def search_loop(ix, queries, args, stop, out):
    """Searches batches of queries until `stop` is set; counts queries."""
    done, t0 = 0, time.perf_counter()
    i = 0
    while not stop.is_set():
        q = queries[i : i + args.chunk]
        if len(q) < args.chunk:
            i = 0
            continue
        ix.search(q, k=10, threads=1, list_size=args.list_size)
        done += len(q)
        i += args.chunk
    out["queries"] = done
    out["seconds"] = time.perf_counter() - t0


def measure_idle(ix, queries, args):
    stop, out = threading.Event(), {}
    t = threading.Thread(target=search_loop, args=(ix, queries, args, stop, out))
    t.start()
    time.sleep(args.seconds)
    stop.set()
    t.join()
    return out["queries"] / out["seconds"]


def measure_two_searchers(ix, queries, args):
    """The control: one search thread's QPS beside another search thread,
    no writes. What a second busy thread costs on this machine (shared
    cores, caches, memory) whatever it does."""
    stop, a, b = threading.Event(), {}, {}
    ts = [
        threading.Thread(target=search_loop, args=(ix, queries, args, stop, out))
        for out in (a, b)
    ]
    for t in ts:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in ts:
        t.join()
    return a["queries"] / a["seconds"]


def insert_rows(ix, rows, keys, args, stop, out):
    t0, n = time.perf_counter(), 0
    for b in range(0, len(rows), args.batch):
        if stop.is_set():
            break
        ix.add(rows[b : b + args.batch], keys=keys[b : b + args.batch])
        n += len(rows[b : b + args.batch])
    out["inserted"] = n
    out["seconds"] = time.perf_counter() - t0


def measure_beside(ix, queries, rows, keys, args):
    """Searches for as long as the writer runs (at most --seconds)."""
    stop, sout, wout = threading.Event(), {}, {}
    s = threading.Thread(target=search_loop, args=(ix, queries, args, stop, sout))
    w = threading.Thread(target=insert_rows, args=(ix, rows, keys, args, stop, wout))
    s.start()
    w.start()
    w.join(timeout=args.seconds)
    stop.set()
    w.join()
    s.join()
    return sout["queries"] / sout["seconds"], wout["inserted"] / wout["seconds"], wout["inserted"]


def measure_writer_alone(ix, rows, keys, args):
    stop, out = threading.Event(), {}
    w = threading.Thread(target=insert_rows, args=(ix, rows, keys, args, stop, out))
    w.start()
    w.join(timeout=args.seconds)
    stop.set()
    w.join()
    return out["inserted"] / out["seconds"], out["inserted"]


def take_back(ix, keys, n):
    if n:
        ix.remove(keys[:n])
        ix.consolidate()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--first", type=int, default=30000, help="rows built before the run")
    ap.add_argument("--kind", default="vamana")
    ap.add_argument("--batch", type=int, default=100, help="rows per add")
    ap.add_argument("--chunk", type=int, default=100, help="queries per search call")
    ap.add_argument("--list-size", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    base = np.ascontiguousarray(rotor.read_vectors(args.base), dtype=np.float32)
    queries = np.ascontiguousarray(rotor.read_vectors(args.queries), dtype=np.float32)
    first = base[: args.first]
    rows = base[args.first :]
    t0 = time.perf_counter()
    ix = rotor.Index.build(first, kind=args.kind, threads=1)
    build_s = time.perf_counter() - t0
    next_key = args.first
    runs = []
    for run in range(args.runs):
        keys = np.arange(next_key, next_key + len(rows), dtype=np.int64)
        next_key += len(rows)
        idle = measure_idle(ix, queries, args)
        pair = measure_two_searchers(ix, queries, args)
        alone, n_alone = measure_writer_alone(ix, rows, keys, args)
        take_back(ix, keys, n_alone)
        keys = np.arange(next_key, next_key + len(rows), dtype=np.int64)
        next_key += len(rows)
        beside, writer, n_beside = measure_beside(ix, queries, rows, keys, args)
        take_back(ix, keys, n_beside)
        r = {
            "run": run,
            "idle_qps": round(idle, 1),
            "beside_qps": round(beside, 1),
            "ratio": round(beside / idle, 3),
            "beside_another_searcher_qps": round(pair, 1),
            "ratio_to_two_searchers": round(beside / pair, 3),
            "inserts_per_s_alone": round(alone, 1),
            "inserts_per_s_beside": round(writer, 1),
            "inserted_beside": n_beside,
        }
        runs.append(r)
        print(json.dumps(r), flush=True)
    summary = {
        "base": args.base,
        "first": args.first,
        "kind": args.kind,
        "quant": ix.quant,
        "build_seconds_one_thread": round(build_s, 1),
        "batch": args.batch,
        "median_idle_qps": statistics.median(r["idle_qps"] for r in runs),
        "median_beside_qps": statistics.median(r["beside_qps"] for r in runs),
        "median_ratio": statistics.median(r["ratio"] for r in runs),
        "median_ratio_to_two_searchers": statistics.median(
            r["ratio_to_two_searchers"] for r in runs
        ),
        "median_inserts_per_s_alone": statistics.median(r["inserts_per_s_alone"] for r in runs),
        "median_inserts_per_s_beside": statistics.median(r["inserts_per_s_beside"] for r in runs),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
