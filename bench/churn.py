#!/usr/bin/python3
"""Churn and update throughput of a rotor index, measured as FreshDiskANN
measures them (Singh et al. 2021).

    bench/churn.py [--fashion DIR | --base B --queries Q] [--rounds 10] \\
        [--fraction 0.1] [--targets 0.95,0.99] [--runs 5] [--json out.json]
    bench/churn.py --throughput [--fashion DIR | --base B --queries Q] \\
        [--native-hnswlib DIR] [--json out.json]

Churn (the default mode): a vamana index is built with the library's
defaults (codes chosen by measurement, no graph flags) over a random half of
the base, each vector keyed by its row number in the base. Then, each
round, a random `--fraction` of the live vectors is removed (in calls of
`--remove-batch` of the live set, so the library's own consolidation runs
when it decides to) and as many rows of the unused half are added under
their own keys. After each round the churned index and a fresh build over
the same live set (same defaults) are searched with the same settings:
recall@10 against the exact neighbours of the live set (rotor's exact flat
scan; a returned key counts when its distance, recomputed in float64, is
within the true 10th), and single-thread QPS (a batch of queries searched
on one thread; median of `--runs`, the two indexes interleaved so that a
noisy moment hits both). The settings are fixed list sizes L (the smallest
of the grid reaching each `--targets` recall on the first index, or
`--lists`) and a search by recall (`--recall`, each index reading its own
calibration table). The bar: recall within 0.01 and QPS within 10 % of the
fresh build.

Throughput (`--throughput`): one thread, on the same data. rotor (built with
threads=1, which is also what its adds and consolidations use) and
hnswlib's add_items (M=16, efConstruction=200, num_threads=1) insert the
same rows, in batches and one at a time, batch by batch alternately; then
removes per second (rotor remove below the consolidation threshold;
hnswlib mark_deleted) and the cost of rotor's consolidation per removed
vector. Both are given float32 rows converted beforehand.

Data: `--fashion DIR` reads Fashion-MNIST's train (base) and t10k (queries)
files from DIR (default $ROTOR_FASHION, else Debian's dataset-fashion-mnist
location); `--base` / `--queries` any format peers.py reads (.fvecs,
.bvecs, .fbin, .u8bin, .npy, IDX). The rotor module is the one on
PYTHONPATH or `--rotor-module DIR` (a build's bindings/python); hnswlib the
one in `--native-hnswlib DIR` (default $ROTOR_NATIVE_HNSWLIB), else the
system's. Run with nice on a shared machine; every figure to quote is a
ratio between two things measured in the same run.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "peers"))
from peers import read_vectors  # noqa: E402

K = 10
LIST_GRID = [10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256]
DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"  # package dataset-fashion-mnist


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- data and exact answers --------------------------------------------------

def load_data(args):
    if args.base:
        if not args.queries:
            sys.exit("churn: --base needs --queries")
        base, queries = read_vectors(args.base), read_vectors(args.queries)
        name = os.path.basename(args.base)
    else:
        d = args.fashion or os.environ.get("ROTOR_FASHION") or DEBIAN_FASHION
        base = read_vectors(os.path.join(d, "train-images-idx3-ubyte.gz"))
        queries = read_vectors(os.path.join(d, "t10k-images-idx3-ubyte.gz"))
        name = "fashion-mnist"
    if args.max_queries:
        queries = queries[:args.max_queries]
    if base.shape[1] != queries.shape[1]:
        sys.exit("churn: base and queries differ in dimensions")
    return name, base, np.ascontiguousarray(queries)


def sq_dist(base, keys, queries):
    """Squared L2 distances (float64) of queries[i] to base[keys[i, j]]; keys
    -1 give inf."""
    out = np.full(keys.shape, np.inf)
    step = max(1, 4_000_000 // (keys.shape[1] * base.shape[1]))
    for lo in range(0, len(keys), step):
        kk = keys[lo:lo + step]
        ok = kk >= 0
        rows = base[np.where(ok, kk, 0)].astype(np.float64)
        q = queries[lo:lo + step, None, :].astype(np.float64)
        d = ((rows - q) ** 2).sum(axis=2)
        out[lo:lo + step] = np.where(ok, d, np.inf)
    return out


class Truth:
    """The exact 10 nearest live keys of every query, by rotor's exact scan
    (threads as given: it is not timed), and the 10th distance in float64."""

    def __init__(self, rotor, base, live, queries, metric, threads):
        ids, _ = rotor.ground_truth(base[live], queries, k=K, metric=metric, threads=threads)
        self.keys = live[ids]
        self.kth = sq_dist(base, self.keys[:, K - 1:K], queries)[:, 0]
        self.base, self.queries = base, queries

    def recall(self, ids):
        """recall@10 by distance: ties at the 10th distance count."""
        d = sq_dist(self.base, ids[:, :K], self.queries)
        limit = self.kth + 1e-9 * np.maximum(1.0, self.kth)
        return float((d <= limit[:, None]).sum() / (len(ids) * K))


# ---- measurement ------------------------------------------------------------

def search_once(ix, queries, setting, rerank=None):
    kw = {"list_size": setting} if isinstance(setting, int) else {"recall": setting[1]}
    if rerank is not None and isinstance(setting, int):
        kw["rerank"] = rerank
    t = time.perf_counter()
    ids, _ = ix.search(queries, k=K, threads=1, **kw)
    return ids, time.perf_counter() - t


def setting_name(s):
    return f"L={s}" if isinstance(s, int) else f"recall={s[1]:g}"


def measure(indexes, queries, settings, runs, rerank=None):
    """{name: {setting: (ids, median qps, [qps...])}}; runs interleaved over
    indexes and settings, after one untimed run of each."""
    times = {n: {s: [] for s in settings} for n in indexes}
    ids = {n: {} for n in indexes}
    for r in range(runs + 1):  # the first, untimed, brings the index into cache
        for s in settings:
            for n, ix in indexes.items():
                got, dt = search_once(ix, queries, s, rerank)
                if r == 0:
                    ids[n][s] = got
                else:
                    times[n][s].append(len(queries) / dt)
    return {n: {s: (ids[n][s], float(np.median(times[n][s])), times[n][s]) for s in settings}
            for n in indexes}


def pick_lists(ix, queries, truth, targets, rerank):
    """The smallest grid list size reaching each target (one run each)."""
    found, rec = [], {}
    for L in LIST_GRID:
        ids, _ = search_once(ix, queries, L, rerank)
        rec[L] = truth.recall(ids)
        while len(found) < len(targets) and rec[L] >= targets[len(found)]:
            found.append(L)
        if len(found) == len(targets):
            break
    while len(found) < len(targets):  # unreachable: the largest tried
        found.append(LIST_GRID[-1])
    log("churn: list sizes by recall on the first index: "
        + ", ".join(f"L={L} {r:.4f}" for L, r in rec.items()))
    return sorted(set(found)), rec


def index_info(ix):
    s = ix.stats()
    return {k: s[k] for k in ("count", "slots", "deleted", "unconsolidated", "quant",
                              "walk_quant", "bytes_total", "bytes_graph")} | {
        "neighbor_codes": s["bytes_graph_codes"] > 0}


# ---- churn ------------------------------------------------------------------

def build(rotor, args, base, keys):
    t = time.perf_counter()
    ix = rotor.Index.build(base[keys], kind="vamana", metric=args.metric, keys=keys,
                           threads=args.build_threads, seed=args.index_seed)
    return ix, time.perf_counter() - t


def remove_round(ix, keys, batch):
    """Removes keys in calls of `batch`; the library consolidates when it
    decides to. A call after which fewer removals wait than before plus the
    call's own consolidated inside: its time, less the median per-key cost
    of the calls that did not, is consolidation."""
    plain_t, plain_n, cons = 0.0, 0, []
    for lo in range(0, len(keys), batch):
        part = keys[lo:lo + batch]
        before = ix.stats()["unconsolidated"]
        t = time.perf_counter()
        ix.remove(part)
        dt = time.perf_counter() - t
        after = ix.stats()["unconsolidated"]
        if after < before + len(part):
            cons.append((dt, len(part), before + len(part) - after))
        else:
            plain_t += dt
            plain_n += len(part)
    per_key = plain_t / plain_n if plain_n else 0.0
    cons_t = sum(max(0.0, dt - n * per_key) for dt, n, _ in cons)
    return {"remove_s": plain_t + sum(n * per_key for _, n, _ in cons),
            "consolidate_s": cons_t, "consolidations": len(cons),
            "consolidated": int(sum(c for _, _, c in cons))}


def run_churn(rotor, args, name, base, queries):
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(base))
    n0 = int(round(args.initial * len(base)))
    live = np.sort(order[:n0])
    unused = order[n0:]
    removed = []
    settings = None
    rows = []
    log(f"churn: {name} {base.shape[0]} x {base.shape[1]}, {len(queries)} queries, "
        f"initial {n0}, {args.rounds} rounds of {args.fraction:g}")
    ix, t_build = build(rotor, args, base, live)
    for rnd in range(args.rounds + 1):
        rec = {"round": rnd}
        if rnd > 0:
            nrem = int(round(args.fraction * len(live)))
            if nrem > len(unused):
                sys.exit("churn: the unused rows ran out; use fewer rounds or a smaller fraction")
            gone = rng.choice(live, nrem, replace=False)
            batch = max(1, int(round(args.remove_batch * len(live)))) if args.remove_batch else nrem
            rec.update(remove_round(ix, gone, batch))
            if args.consolidate_each_round:
                t = time.perf_counter()
                pend = ix.stats()["unconsolidated"]
                ix.consolidate()
                rec["consolidate_s"] += time.perf_counter() - t
                rec["consolidated"] += pend
                rec["consolidations"] += pend > 0
            new, unused = unused[:nrem], unused[nrem:]
            t = time.perf_counter()
            ix.add(base[new], keys=new)
            rec["add_s"] = time.perf_counter() - t
            rec["removed"] = rec["added"] = int(nrem)
            removed.append(gone)
            live = np.sort(np.concatenate([np.setdiff1d(live, gone, assume_unique=True), new]))
        rec["churned"] = index_info(ix)
        assert rec["churned"]["count"] == len(live)
        truth = Truth(rotor, base, live, queries, args.metric, args.gt_threads)
        if settings is None:
            lists = args.lists or pick_lists(ix, queries, truth, args.targets, args.rerank)[0]
            settings = list(lists) + [("recall", r) for r in args.recall]
        if rnd == 0:
            fresh, t_fresh = ix, t_build  # the first index is itself a fresh build
        else:
            fresh, t_fresh = build(rotor, args, base, live)
        rec["fresh"] = index_info(fresh)
        rec["fresh_build_s"] = t_fresh
        m = measure({"churned": ix, "fresh": fresh} if fresh is not ix else {"churned": ix},
                    queries, settings, args.runs, args.rerank)
        if fresh is ix:
            m["fresh"] = m["churned"]
        gone_all = np.concatenate(removed) if removed else np.empty(0, np.int64)
        rec["settings"] = {}
        for s in settings:
            r = {}
            for n in ("churned", "fresh"):
                ids, qps, all_qps = m[n][s]
                r[n] = {"recall": truth.recall(ids), "qps": qps, "qps_runs": all_qps}
            # every result must be live: a removed key returned is a bug
            r["removed_returned"] = int(np.isin(m["churned"][s][0], gone_all).sum())
            rec["settings"][setting_name(s)] = r
        rows.append(rec)
        print_round(rec, settings, header=rnd == 0)
        del fresh
    return {"settings": [setting_name(s) for s in settings], "initial": n0, "rounds": rows,
            "initial_build_s": t_build}


def print_round(rec, settings, header):
    if header:
        cols = ["rnd", "live", "slots", "uncons"]
        for s in settings:
            n = setting_name(s)
            cols += [f"R {n} churn", "fresh", f"QPS {n} churn", "fresh", "ratio"]
        cols += ["remove_s", "cons_s", "add_s", "fresh_s"]
        print(" | ".join(cols), flush=True)
    c = rec["churned"]
    out = [str(rec["round"]), str(c["count"]), str(c["slots"]), str(c["unconsolidated"])]
    for s in settings:
        r = rec["settings"][setting_name(s)]
        out += [f"{r['churned']['recall']:.4f}", f"{r['fresh']['recall']:.4f}",
                f"{r['churned']['qps']:.0f}", f"{r['fresh']['qps']:.0f}",
                f"{r['churned']['qps'] / r['fresh']['qps']:.3f}"]
    out += [f"{rec.get('remove_s', 0):.3f}", f"{rec.get('consolidate_s', 0):.2f}",
            f"{rec.get('add_s', 0):.2f}", f"{rec['fresh_build_s']:.1f}"]
    print(" | ".join(out), flush=True)


# ---- throughput -------------------------------------------------------------

def load_hnswlib(args):
    if args.native_hnswlib:
        sys.path.insert(0, args.native_hnswlib)
    import hnswlib  # noqa: imported here: --native-hnswlib chooses the build
    native = bool(args.native_hnswlib) and os.path.realpath(hnswlib.__file__).startswith(
        os.path.realpath(args.native_hnswlib) + os.sep)
    return hnswlib, {"module": os.path.basename(hnswlib.__file__),
                     "build": "native" if native else "system"}


def run_throughput(rotor, args, name, base):
    hnswlib, hinfo = load_hnswlib(args)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(base))
    n0 = int(round(args.initial * len(base)))
    init = np.sort(order[:n0])
    x = base.astype(np.float32)  # both libraries take the same float32 rows
    space = {"l2": "l2", "ip": "ip", "cosine": "cosine"}[args.metric]
    log(f"throughput: {name}, initial {n0} (rotor threads=1; hnswlib on "
        f"{args.hnsw_init_threads or 'all'} threads, not timed)")
    t = time.perf_counter()
    ix = rotor.Index.build(x[init], kind="vamana", metric=args.metric, keys=init, threads=1,
                           seed=args.index_seed)
    rotor_build = time.perf_counter() - t
    h = hnswlib.Index(space=space, dim=base.shape[1])
    h.init_index(max_elements=len(base), M=16, ef_construction=200, random_seed=100)
    t = time.perf_counter()
    h.add_items(x[init], init, num_threads=args.hnsw_init_threads or -1)
    hnsw_build = time.perf_counter() - t
    out = {"initial": n0, "rotor": {"build_s_1thread": rotor_build, "index": index_info(ix)},
           "hnswlib": hinfo | {"M": 16, "ef_construction": 200,
                               "init_build_s": hnsw_build,
                               "init_threads": args.hnsw_init_threads or os.cpu_count()}}
    rest = order[n0:]
    # inserts in batches, alternating which library goes first
    nb = int(round(args.insert_fraction * n0))
    batch = args.insert_batch
    new, rest = rest[:nb], rest[nb:]
    rt, ht = [], []
    for i, lo in enumerate(range(0, nb, batch)):
        part = new[lo:lo + batch]
        rows = np.ascontiguousarray(x[part])

        def r_add():
            t = time.perf_counter()
            ix.add(rows, keys=part)
            rt.append((len(part), time.perf_counter() - t))

        def h_add():
            t = time.perf_counter()
            h.add_items(rows, part, num_threads=1)
            ht.append((len(part), time.perf_counter() - t))
        for f in ((r_add, h_add) if i % 2 == 0 else (h_add, r_add)):
            f()
    out["batch"] = {"rows": int(nb), "batch": batch,
                    "rotor_per_s": rate(rt), "hnswlib_per_s": rate(ht),
                    "rotor_batch_median_per_s": float(np.median([n / s for n, s in rt])),
                    "hnswlib_batch_median_per_s": float(np.median([n / s for n, s in ht]))}
    # one row per call
    ns = args.single
    one, rest = rest[:ns], rest[ns:]
    rt, ht = [], []
    for i, key in enumerate(one):
        row = np.ascontiguousarray(x[key:key + 1])
        k1 = np.array([key])
        pair = [("r", lambda: ix.add(row, keys=k1)), ("h", lambda: h.add_items(row, k1, num_threads=1))]
        for tag, f in (pair if i % 2 == 0 else pair[::-1]):
            t = time.perf_counter()
            f()
            (rt if tag == "r" else ht).append((1, time.perf_counter() - t))
    out["single"] = {"rows": int(ns), "rotor_per_s": rate(rt), "hnswlib_per_s": rate(ht)}
    # removes, below the consolidation threshold, then an explicit consolidation
    live = np.concatenate([init, new, one])
    rng.shuffle(live)
    rem_rounds = []
    for r in range(args.remove_rounds):
        nrem = int(round(args.remove_fraction * ix.stats()["count"]))
        gone, live = live[:nrem], live[nrem:]
        t = time.perf_counter()
        for lo in range(0, nrem, args.remove_batch_rows):
            ix.remove(gone[lo:lo + args.remove_batch_rows])
        t_rem = time.perf_counter() - t
        pending = ix.stats()["unconsolidated"]
        t = time.perf_counter()
        for key in gone:
            h.mark_deleted(int(key))
        t_h = time.perf_counter() - t
        t = time.perf_counter()
        ix.consolidate()
        t_cons = time.perf_counter() - t
        st = ix.stats()
        rem_rounds.append({"removed": int(nrem), "pending_before_consolidate": int(pending),
                           "rotor_remove_per_s": nrem / t_rem,
                           "hnswlib_mark_deleted_per_s": nrem / t_h,
                           "consolidate_s": t_cons,
                           "consolidate_us_per_removed": 1e6 * t_cons / max(1, pending),
                           "slots": st["slots"], "live": st["count"]})
        log(f"throughput: removed {nrem} ({pending} pending), consolidated in {t_cons:.2f} s")
    out["remove"] = rem_rounds
    # one key per call
    gone, live = live[:ns], live[ns:]
    t = time.perf_counter()
    for key in gone:
        ix.remove(int(key))
    t_r = time.perf_counter() - t
    out["remove_single"] = {"keys": int(ns), "rotor_per_s": ns / t_r}
    print_throughput(out)
    return out


def rate(pairs):
    return sum(n for n, _ in pairs) / sum(s for _, s in pairs)


def print_throughput(o):
    b, s = o["batch"], o["single"]
    print(f"inserts, batches of {b['batch']} ({b['rows']} rows): rotor {b['rotor_per_s']:.0f}/s, "
          f"hnswlib {b['hnswlib_per_s']:.0f}/s, ratio {b['rotor_per_s'] / b['hnswlib_per_s']:.2f} "
          f"(batch medians {b['rotor_batch_median_per_s']:.0f} vs "
          f"{b['hnswlib_batch_median_per_s']:.0f})")
    print(f"inserts, one per call ({s['rows']} rows): rotor {s['rotor_per_s']:.0f}/s, "
          f"hnswlib {s['hnswlib_per_s']:.0f}/s, ratio {s['rotor_per_s'] / s['hnswlib_per_s']:.2f}")
    for r in o["remove"]:
        print(f"remove {r['removed']}: rotor {r['rotor_remove_per_s']:.0f}/s, hnswlib mark_deleted "
              f"{r['hnswlib_mark_deleted_per_s']:.0f}/s; consolidate {r['consolidate_s']:.2f} s = "
              f"{r['consolidate_us_per_removed']:.1f} us per removed vector "
              f"(slots {r['slots']}, live {r['live']})")
    print(f"remove, one key per call: rotor {o['remove_single']['rotor_per_s']:.0f}/s")
    print(f"builds (not compared): rotor 1 thread {o['rotor']['build_s_1thread']:.1f} s, "
          f"hnswlib {o['hnswlib']['init_threads']} threads {o['hnswlib']['init_build_s']:.1f} s")


# ---- main -------------------------------------------------------------------

def floats(text):
    return [float(v) for v in text.split(",") if v.strip()]


def ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version()}


def commit():
    try:
        return subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--fashion", help="Fashion-MNIST directory (default $ROTOR_FASHION, else "
                                     + DEBIAN_FASHION + ")")
    p.add_argument("--base", help="base vectors (instead of --fashion)")
    p.add_argument("--queries", help="query vectors (with --base)")
    p.add_argument("--max-queries", type=int, default=0, help="only the first N queries")
    p.add_argument("--metric", default="l2", choices=["l2"],
                   help="l2 (the recall check recomputes squared L2 distances)")
    p.add_argument("--initial", type=float, default=0.5, help="fraction of the base indexed first")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--fraction", type=float, default=0.1,
                   help="of the live vectors removed (and as many added) per round")
    p.add_argument("--remove-batch", type=float, default=0.01,
                   help="each remove call takes this fraction of the live set; 0: one call a round")
    p.add_argument("--consolidate-each-round", action="store_true",
                   help="call consolidate() after each round's removes (default: the library's "
                        "automatic consolidation only)")
    p.add_argument("--targets", type=floats, default=[0.95, 0.99],
                   help="recall@10 the fixed list sizes are chosen for, on the first index")
    p.add_argument("--lists", type=ints, help="fixed list sizes instead of --targets")
    p.add_argument("--rerank", type=int,
                   help="rerank depth of the fixed list sizes (default: the library's, 10 k)")
    p.add_argument("--recall", type=floats, default=[0.95],
                   help="also search by recall (each index's own calibration); empty: not")
    p.add_argument("--runs", type=int, default=5, help="timed runs per setting (median)")
    p.add_argument("--build-threads", type=int, default=0, help="rotor builds (0: all cores)")
    p.add_argument("--gt-threads", type=int, default=0, help="exact neighbours (not timed)")
    p.add_argument("--seed", type=int, default=1, help="which rows are removed and added")
    p.add_argument("--index-seed", type=int, default=42, help="rotor's own seed")
    p.add_argument("--throughput", action="store_true", help="the one-thread update throughput")
    p.add_argument("--insert-fraction", type=float, default=0.1,
                   help="throughput: rows inserted in batches, as a fraction of the initial index")
    p.add_argument("--insert-batch", type=int, default=1000, help="throughput: rows per call")
    p.add_argument("--single", type=int, default=200,
                   help="throughput: rows inserted (and keys removed) one per call")
    p.add_argument("--remove-fraction", type=float, default=0.04,
                   help="throughput: of the live set removed before each consolidation")
    p.add_argument("--remove-rounds", type=int, default=3)
    p.add_argument("--remove-batch-rows", type=int, default=1000,
                   help="throughput: keys per remove call")
    p.add_argument("--hnsw-init-threads", type=int, default=0,
                   help="throughput: hnswlib's untimed initial build (0: all cores)")
    p.add_argument("--native-hnswlib", default=os.environ.get("ROTOR_NATIVE_HNSWLIB"),
                   help="directory of a -march=native hnswlib (default $ROTOR_NATIVE_HNSWLIB)")
    p.add_argument("--rotor-module", help="directory holding the rotor module to import")
    p.add_argument("--json", help="write everything measured here")
    args = p.parse_args()
    if args.rotor_module:
        sys.path.insert(0, args.rotor_module)
    import rotor  # noqa: imported here: --rotor-module chooses the build
    name, base, queries = load_data(args)
    meta = {"kind": "throughput" if args.throughput else "churn",
            "date": datetime.date.today().isoformat(), "commit": commit(),
            "rotor": {"version": rotor.__version__, "simd": rotor.simd_level(),
                      "module": os.path.basename(rotor.__file__)},
            "dataset": name, "n": int(base.shape[0]), "dim": int(base.shape[1]),
            "queries": int(len(queries)), "machine": machine(), "argv": sys.argv[1:],
            "args": {k: v for k, v in vars(args).items()
                     if k not in ("fashion", "base", "queries", "native_hnswlib", "rotor_module",
                                  "json")}}
    if args.throughput:
        meta |= run_throughput(rotor, args, name, base)
    else:
        meta |= run_churn(rotor, args, name, base, queries)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
