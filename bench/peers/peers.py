#!/usr/bin/python3
"""Run rotor's peers (FAISS, hnswlib, USearch) on the same data and ground
truth as `rotor bench` / `rotor eval-quant`, and append the same JSON lines,
so every claim is a ratio measured side by side.

Debian's python3-faiss and python3-hnswlib are compiled for baseline x86-64
(no AVX). Builds of the same versions compiled with -march=native are made
outside this repository; point at them with --native-faiss DIR /
--native-hnswlib DIR (or ROTOR_NATIVE_FAISS / ROTOR_NATIVE_HNSWLIB), where DIR
is a directory that, on PYTHONPATH, makes `import faiss` (`import hnswlib`)
load that build. Every row is labelled with the build it used ("build":
"native" or "debian"). Each build runs in its own child process, since one
process can import only one faiss.

Two modes:

  search sweeps (default; --methods): as `rotor bench`. Queries one at a time
  on one thread, recall@k by distance (a returned id is a hit when its exact
  distance is within the true k-th distance), QPS over the whole query set,
  CPU seconds of the searching thread. One JSON line per sweep point, "params"
  naming the point. Index builds use --build-threads (default: all cores);
  build_seconds is wall time, build_cpu_seconds the process CPU time.

  --eval-quant SPECS: as `rotor eval-quant` (see tools/cmd_evalquant.c), for
  FAISS's nearest equivalents of rotor's quantizers, with the same JSON keys.

Method rotor-py runs rotor itself through its Python module (`import rotor`:
installed by scripts/demo.sh, or a build's bindings/python directory given by
--rotor-module), in the same process as the peers, so the three are timed by
the same loop. It runs once, in the first child (the native one when there is
one), since rotor picks its SIMD kernels at run time.

Method usearch runs USearch through its npm package, in a Node child
(bench/peers/usearch_sweep.mjs, with the package directory given by --usearch
DIR or ROTOR_USEARCH): that script times its own single-query calls and hands
back the ids, and recall is computed here as for every other method. It runs
once, in the first child: the package ships one prebuilt library.

Needs only Debian's /usr/bin/python3, python3-numpy, python3-faiss and (for
the hnsw method) python3-hnswlib; for usearch, node and the npm package. The
children run with OMP_WAIT_POLICY=PASSIVE unless the environment sets it.
"""
import argparse
import gzip
import json
import math
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

METHODS = {
    "faiss-flat": "faiss IndexFlatL2 / IndexFlatIP (exact)",
    "faiss-hnsw": "faiss IndexHNSWFlat M=--faiss-hnsw-m (32), efConstruction "
                  "--ef-construction (200); efSearch swept over --ef",
    "faiss-ivfpqfs": "faiss IVF<nlist>,PQ<M>x4fs + IndexRefineFlat; nprobe swept over "
                     "--nprobe, k_factor over --k-factor (nlist: --nlist, default ~4*sqrt(n) "
                     "as a power of two; M: --pq-m, default dim/4 (dim <= 256) or dim/8)",
    "faiss-ivfrabitq": "faiss IVF<nlist>,RaBitQ (1 bit per dim; --rabitq-bits) + "
                       "IndexRefineFlat; nprobe swept over --nprobe, k_factor over --k-factor, "
                       "queries quantised to --rabitq-qb bits (8) (nlist as faiss-ivfpqfs)",
    "hnsw": "hnswlib M in --hnsw-m (16,32), ef_construction --ef-construction (200); "
            "ef swept over --ef",
    "rotor-py": "rotor's Python module: vamana on --rotor-quant codes (default pq<dim/4>x4), "
                "degree --rotor-degree (32); L swept over --rotor-list, rerank over "
                "--rotor-rerank",
    "usearch": "USearch (npm package, --usearch DIR), float32 HNSW, connectivity in "
               "--usearch-m (16), expansion_add --ef-construction (200); expansion_search "
               "swept over --ef",
}
METHOD_TOOL = {"faiss-flat": "faiss", "faiss-hnsw": "faiss", "faiss-ivfpqfs": "faiss",
               "faiss-ivfrabitq": "faiss", "hnsw": "hnswlib", "rotor-py": "rotor",
               "usearch": "usearch"}
# Each runs once, in the first child, with no native / debian pair: rotor
# picks its SIMD kernels at run time, USearch's npm package ships one library.
ONE_BUILD_TOOLS = ("rotor", "usearch")
USEARCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "usearch_sweep.mjs")
# What usearch_sweep.mjs reads itself; other formats go through a float32 .fbin.
USEARCH_READS = (".fbin", ".u8bin", ".i8bin")

QUANT_HELP = ("faiss-pq<M> (IndexPQ, M x 8 bits), faiss-pq<M>x4fs (IndexPQFastScan, M x 4 "
              "bits), faiss-sq4, faiss-sq8 (IndexScalarQuantizer QT_4bit / QT_8bit), "
              "faiss-bin (IndexBinaryFlat on sign bits; Hamming ranking)")

# As tools/cmd_evalquant.c.
MSE_SAMPLE, PAIR_QUERIES, PAIR_ROWS, RERANK_FACTOR = 2000, 100, 200, 10


# ---- data set readers (the formats rotor reads) ---------------------------

def read_vectors(path, max_rows=0):
    """Returns a 2-D array in the file's element type."""
    name = path.lower()
    if name.endswith((".fvecs", ".ivecs", ".bvecs")):
        raw = np.fromfile(path, dtype=np.uint8)
        dim = int(raw[:4].view("<i4")[0])
        elem = {"f": "<f4", "i": "<i4", "b": "u1"}[name[-5]]
        esize = np.dtype(elem).itemsize
        rec = 4 + dim * esize
        if raw.size % rec:
            sys.exit(f"peers: '{path}' is truncated")
        rows = raw.reshape(-1, rec)[:, 4:]
        out = rows.copy().view(elem).reshape(-1, dim)
    elif name.endswith((".fbin", ".u8bin", ".i8bin", ".ibin")):
        n, dim = struct.unpack("<II", open(path, "rb").read(8))
        elem = {".fbin": "<f4", ".u8bin": "u1", ".i8bin": "i1", ".ibin": "<i4"}[
            name[name.rindex("."):]]
        out = np.fromfile(path, dtype=elem, offset=8).reshape(n, dim)
    elif name.endswith(".npy"):
        out = np.load(path)
    else:
        opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            magic, = struct.unpack(">I", f.read(4))
            if magic != 0x803:
                sys.exit(f"peers: cannot tell the format of '{path}'")
            n, r, c = struct.unpack(">III", f.read(12))
            out = np.frombuffer(f.read(), dtype=np.uint8).reshape(n, r * c)
    if max_rows:
        out = out[:max_rows]
    return np.ascontiguousarray(out)


def exact_distances(metric, q, x):
    """Distances (smaller is better) of one query to rows x, in float64."""
    q = q.astype(np.float64)
    x = x.astype(np.float64)
    if metric == "l2":
        return ((x - q) ** 2).sum(axis=1)
    dots = x @ q
    if metric == "ip":
        return -dots
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(q)
    return np.where(norms > 0, 1.0 - dots / np.where(norms > 0, norms, 1), 1.0)


def recall_at(base, queries, gt, ids, at, metric):
    total = 0.0
    for i in range(len(queries)):
        limit = exact_distances(metric, queries[i], base[gt[i, at - 1]][None, :])[0]
        limit += 1e-6 * max(1.0, abs(limit))
        got = ids[i, :at]
        got = got[(got >= 0) & (got < len(base))]
        d = exact_distances(metric, queries[i], base[got]) if len(got) else np.array([])
        total += float((d <= limit).sum()) / at
    return total / len(queries)


def int_list(text):
    return [int(v) for v in text.split(",") if v.strip()]


# ---- labels and filters ------------------------------------------------------

def read_labels(path, n=None):
    """A labels file: one line per base vector, space-separated non-negative
    integers, an empty line for no label. Returns a list of int arrays."""
    out = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            try:
                vals = [int(v) for v in fields]
            except ValueError:
                sys.exit(f"peers: {path}:{lineno}: not an integer list: {line.strip()!r}")
            if any(v < 0 for v in vals):
                sys.exit(f"peers: {path}:{lineno}: negative label")
            out.append(np.array(vals, dtype=np.int64))
    if n is not None and len(out) != n:
        sys.exit(f"peers: '{path}' has {len(out)} lines, there are {n} base vectors")
    return out


def parse_filter(expr):
    """'3' -> ("any", [3]); '3|7' -> ("any", [3, 7]); '3&7' -> ("all", [3, 7])."""
    text = expr.replace(" ", "")
    if "|" in text and "&" in text:
        sys.exit(f"peers: filter '{expr}' mixes '|' and '&'")
    op = "all" if "&" in text else "any"
    try:
        labels = [int(v) for v in re.split(r"[|&]", text)]
    except ValueError:
        sys.exit(f"peers: filter '{expr}': use L, L1|L2|..., or L1&L2&...")
    if not labels or any(v < 0 for v in labels):
        sys.exit(f"peers: filter '{expr}': labels are non-negative integers")
    return op, labels


def filter_mask(labels, expr):
    """Boolean array: which vectors pass the filter."""
    op, want = parse_filter(expr)
    want = set(want)
    if op == "any":
        return np.array([bool(want.intersection(v.tolist())) for v in labels], dtype=bool)
    return np.array([want.issubset(v.tolist()) for v in labels], dtype=bool)


def recall_filtered(base, queries, gt, ids, at, metric, mask):
    """recall@at against a filtered ground truth (rows padded with -1 where
    fewer than k vectors pass): a query with c < at passing vectors counts
    c hits as full recall; a returned id counts when it passes the filter
    and its exact distance is within the true c-th. Queries with no passing
    vector are left out; returns (recall, queries counted)."""
    total, counted = 0.0, 0
    for i in range(len(queries)):
        valid = gt[i][gt[i] >= 0][:at]
        cnt = len(valid)
        if cnt == 0:
            continue
        counted += 1
        limit = exact_distances(metric, queries[i], base[valid[-1]][None, :])[0]
        limit += 1e-6 * max(1.0, abs(limit))
        got = ids[i, :at]
        got = got[(got >= 0) & (got < len(base))]
        got = got[mask[got]]
        d = exact_distances(metric, queries[i], base[got]) if len(got) else np.array([])
        total += min(float((d <= limit).sum()), cnt) / cnt
    return (total / counted if counted else None), counted


def pow2_near(v):
    """The power of two nearest to v on a log scale."""
    return 1 << max(0, int(round(math.log2(max(v, 1.0)))))


def largest_divisor_at_most(n, cap):
    for m in range(max(1, min(cap, n)), 0, -1):
        if n % m == 0:
            return m
    return 1


def process_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---- one build, in a child process ----------------------------------------

class Child:
    """Data and library handles shared by the two modes."""

    def __init__(self, args):
        self.args = args
        base_raw = read_vectors(args.base)
        queries_raw = read_vectors(args.queries, args.max_queries)
        self.gt = read_vectors(args.gt)[: len(queries_raw)]
        if len(self.gt) < len(queries_raw):
            sys.exit(f"peers: ground truth '{args.gt}' has {len(self.gt)} rows, "
                     f"there are {len(queries_raw)} queries")
        self.base = base_raw.astype(np.float32)
        self.queries = queries_raw.astype(np.float32)
        if self.base.shape[1] != self.queries.shape[1]:
            sys.exit("peers: queries and base differ in dimension")
        if args.metric == "cosine":
            self.base /= np.maximum(np.linalg.norm(self.base, axis=1, keepdims=True), 1e-30)
            self.queries /= np.maximum(np.linalg.norm(self.queries, axis=1, keepdims=True),
                                       1e-30)
        self.n, self.d = self.base.shape
        self.build_threads = args.build_threads or os.cpu_count() or 1
        self.dataset = os.path.basename(args.base)
        self.mask = None
        if args.labels:
            self.mask = filter_mask(read_labels(args.labels, self.n), args.filter)
            self.selectivity = float(self.mask.mean())
            # Allowed ids: as a Python list (hnswlib's filter callable) and as
            # the array FAISS's IDSelectorBitmap / IDSelectorBatch is made from.
            self.allowed_ids = np.nonzero(self.mask)[0].astype(np.int64)

    def emit(self, row, message):
        print(message, file=sys.stderr, flush=True)
        line = json.dumps(row)
        if self.args.json:
            with open(self.args.json, "a") as f:
                f.write(line + "\n")
        else:
            print(line, flush=True)


def build_label(module, native_dir):
    if native_dir and os.path.realpath(module.__file__).startswith(
            os.path.realpath(native_dir) + os.sep):
        return "native"
    return "debian"


def load_faiss(args):
    import faiss  # noqa: imported here: the parent chose the build via PYTHONPATH
    faiss.omp_set_num_threads(1)
    info = {"tool": "faiss", "version": faiss.__version__,
            "build": build_label(faiss, args.native_dir)}
    if hasattr(faiss, "get_compile_options"):
        info["compile_options"] = faiss.get_compile_options()
        # The SIMD variant FAISS loaded, in the words of rotor's "simd" key.
        info["simd"] = "avx2" if "AVX2" in info["compile_options"] else "generic"
    return faiss, info


def load_hnswlib(args):
    import hnswlib  # noqa: as above
    # hnswlib (0.6.2, 0.8.0) has no __version__, and Debian's egg-info for 0.6.2
    # says 0.6.1: take a version only from the module itself or from package
    # metadata in the very directory the module was loaded from; else null.
    version = getattr(hnswlib, "__version__", None)
    if version is None:
        try:
            from importlib import metadata
            dist = metadata.distribution("hnswlib")
            if os.path.realpath(str(dist.locate_file(""))) == \
                    os.path.realpath(os.path.dirname(hnswlib.__file__)):
                version = dist.version
        except Exception:  # noqa: no metadata is fine
            pass
    return hnswlib, {"tool": "hnswlib", "version": version,
                     "build": build_label(hnswlib, args.native_hnswlib_dir)}


def hnswlib_has_filter(hnswlib):
    """knn_query(..., filter=callable) exists from hnswlib 0.7.0."""
    return "filter" in (hnswlib.Index.knn_query.__doc__ or "")


def load_rotor(args):
    if args.rotor_module:
        sys.path.insert(0, args.rotor_module)
    import rotor  # noqa: imported here: --rotor-module chooses the build
    return rotor, {"tool": "rotor", "version": rotor.__version__, "build": "python",
                   "simd": rotor.simd_level()}


def load_usearch(args):
    """The node executable and the usearch package directory (--usearch: where
    `npm install usearch` was run, or the package itself)."""
    node = shutil.which("node")
    if not node:
        sys.exit("peers: usearch: no `node` on PATH")
    pkg = os.path.join(args.usearch, "node_modules", "usearch")
    if not os.path.isfile(os.path.join(pkg, "package.json")):
        pkg = args.usearch
    try:
        with open(os.path.join(pkg, "package.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        sys.exit(f"peers: usearch: no npm package in '{args.usearch}' (run `npm install "
                 "usearch` there)")
    if meta.get("name") != "usearch":
        sys.exit(f"peers: usearch: '{pkg}' holds package '{meta.get('name')}', not usearch")
    return {"node": node, "dir": args.usearch}, {"tool": "usearch",
                                                 "version": meta.get("version"),
                                                 "build": "npm"}


def timed_search(search_one, queries, k, runs):
    """Runs every query alone, `runs` times; returns the median run's
    (qps, wall, cpu seconds of this thread, latencies, ids)."""
    results = []
    for _ in range(runs):
        ids = np.empty((len(queries), k), dtype=np.int64)
        lat = np.empty(len(queries))
        cpu0 = time.thread_time()
        w0 = time.perf_counter()
        for i in range(len(queries)):
            s = time.perf_counter()
            ids[i] = search_one(queries[i:i + 1])
            lat[i] = time.perf_counter() - s
        wall = time.perf_counter() - w0
        results.append((len(queries) / wall, wall, time.thread_time() - cpu0, lat, ids))
    results.sort(key=lambda r: r[0])
    return results[len(results) // 2]


# ---- search sweeps ----------------------------------------------------------

def hnswlib_bytes(n, d, m):
    """Estimated memory of an hnswlib 0.6.2 index: level-0 block per element
    (vector, 2M links + count, label), a link-list pointer, level, mutex and
    label-map entry per element, upper-level link lists (1/(M-1) per element
    on average), the visited-list array."""
    level0 = d * 4 + (2 * m * 4 + 4) + 8
    per_element = 8 + 4 + 40 + 40
    upper = (m * 4 + 4) / max(m - 1, 1)
    return int(n * (level0 + per_element + upper + 2))


def write_fbin(path, x):
    with open(path, "wb") as f:
        f.write(struct.pack("<II", *x.shape))
        f.write(np.ascontiguousarray(x, dtype="<f4").tobytes())
    return path


def usearch_points(c, usearch, info):
    """usearch_sweep.mjs once per M: yields as method_points does, with the
    Node child's measured pass (qps, wall s, cpu s, latencies, ids) in place
    of search_one."""
    a, k = c.args, c.args.k
    efs = int_list(a.ef)
    for m in int_list(a.usearch_m):
        tmp = tempfile.mkdtemp(prefix="peers-usearch-")
        try:
            # The script reads .fbin / .u8bin / .i8bin itself (integers as
            # float32; cosine through USearch's "cos", which needs no unit
            # vectors); other formats as a float32 .fbin of the rows held here.
            base_file, query_file = a.base, a.queries
            if not base_file.lower().endswith(USEARCH_READS):
                base_file = write_fbin(os.path.join(tmp, "base.fbin"), c.base)
            if not query_file.lower().endswith(USEARCH_READS):
                query_file = write_fbin(os.path.join(tmp, "query.fbin"), c.queries)
            cmd = [usearch["node"], "--expose-gc", USEARCH_SCRIPT, "--usearch", usearch["dir"],
                   "--base", base_file, "--queries", query_file, "--out", tmp,
                   "--max-queries", str(len(c.queries)), "--metric", a.metric, "--k", str(k),
                   "--m", str(m), "--ef-construction", str(a.ef_construction),
                   "--ef", ",".join(str(ef) for ef in efs),
                   "--build-threads", str(c.build_threads), "--runs", str(a.runs)]
            out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            if out.returncode != 0:
                sys.exit(f"peers: usearch_sweep.mjs failed (exit {out.returncode})")
            lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
            build = next(r for r in lines if r["kind"] == "build")
            done = next(r for r in lines if r["kind"] == "done")
            if (build["n_base"], build["dim"], build["n_queries"]) != \
                    (c.n, c.d, len(c.queries)):
                sys.exit("peers: usearch_sweep.mjs read other data than peers.py")
            points = []
            for r in (r for r in lines if r["kind"] == "point"):
                ids = np.fromfile(r["ids_file"], dtype="<i8").reshape(len(c.queries), k)
                lat = np.fromfile(r["lat_file"], dtype="<f8")
                points.append((r, (r["qps"], r["wall_seconds"], r["cpu_seconds"], lat, ids)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if len(points) != len(efs):
            sys.exit(f"peers: usearch_sweep.mjs returned {len(points)} sweep points, "
                     f"expected {len(efs)}")
        for r, measured in points:
            # index_bytes: the saved index's size (the JavaScript binding has
            # no memory_usage()); cpu_seconds: the searching thread's.
            extra = {"index_bytes_serialized": True, "cpu_seconds_of": r["cpu_seconds_of"],
                     "process_cpu_seconds": r["process_cpu_seconds"],
                     "node_version": build["node_version"],
                     "peak_rss_bytes": done["peak_rss_bytes"]}
            yield (info, f"M={m},efC={a.ef_construction},ef={r['ef']}", build["build_seconds"],
                   build["build_cpu_seconds"], build["index_bytes"], extra, measured)


def refined_ivf(faiss, ivf, base, w0, c0):
    """Trains and fills an IVF index, wraps it in the float refine, and
    returns it with the build's wall and CPU seconds since w0, c0; searches
    then run on one thread. IndexRefineFlat(index, xb) copies xb into its
    IndexFlat, which holds the full vectors."""
    ivf.train(base)
    ivf.add(base)
    index = faiss.IndexRefineFlat(ivf, faiss.swig_ptr(base))
    build_s, build_cpu = time.perf_counter() - w0, process_cpu() - c0
    faiss.omp_set_num_threads(1)
    return index, build_s, build_cpu


def method_points(c, method, libs):
    """Builds the index for `method`; yields (lib info, params, build wall s,
    build cpu s, index bytes, extra row fields, search_one) per sweep point.
    For usearch search_one is the pass its Node child measured (a tuple as
    timed_search returns)."""
    a, base, d, n, k = c.args, c.base, c.d, c.n, c.args.k
    if method == "usearch":
        yield from usearch_points(c, *libs["usearch"])
        return
    if method == "hnsw":
        hnswlib, info = libs["hnswlib"]
        space = {"l2": "l2", "ip": "ip", "cosine": "cosine"}[a.metric]
        for m in int_list(a.hnsw_m):
            w0, c0 = time.perf_counter(), process_cpu()
            index = hnswlib.Index(space=space, dim=d)
            index.init_index(max_elements=n, M=m, ef_construction=a.ef_construction,
                             random_seed=100)
            index.set_num_threads(c.build_threads)
            index.add_items(base, np.arange(n), num_threads=c.build_threads)
            build_s, build_cpu = time.perf_counter() - w0, process_cpu() - c0
            index.set_num_threads(1)
            allowed = c.mask.tolist() if c.mask is not None else None
            if allowed is not None and not hnswlib_has_filter(hnswlib):
                sys.exit(f"peers: hnswlib {info['version']} has no filter argument in "
                         "knn_query (needs 0.7.0 or later)")
            for ef in int_list(a.hnsw_ef or a.ef):
                index.set_ef(max(ef, k))

                def one(q, index=index):
                    return index.knn_query(q, k=k, num_threads=1)[0].astype(np.int64)

                if allowed is not None:
                    # hnswlib calls the filter once per candidate, through
                    # pybind11; a bound list.__getitem__ is the cheapest callable.
                    def one(q, index=index, fn=allowed.__getitem__):
                        try:
                            return index.knn_query(q, k=k, num_threads=1,
                                                   filter=fn)[0].astype(np.int64)
                        except RuntimeError:
                            # fewer than k passing vectors found: hnswlib refuses to
                            # return a ragged result; count the query as empty.
                            c.short_queries += 1
                            return np.full(k, -1, dtype=np.int64)

                yield (info, f"M={m},efC={a.ef_construction},ef={ef}", build_s, build_cpu,
                       hnswlib_bytes(n, d, m), {"index_bytes_estimated": True}, one)
            del index
        return

    if method == "rotor-py":
        rotor, info = libs["rotor"]
        quant = a.rotor_quant or f"pq{largest_divisor_at_most(d, max(d // 4, 1))}x4"
        # --rotor-degree 0: the library's default degree (that of the codes
        # chosen); with --rotor-quant auto, a build with no flags at all.
        degree = a.rotor_degree or None
        w0, c0 = time.perf_counter(), process_cpu()
        # The raw vectors: for cosine the index normalises its own copy.
        index = rotor.Index.build(c.base, metric=a.metric, kind="vamana", quant=quant,
                                  degree=degree, threads=c.build_threads)
        build_s, build_cpu = time.perf_counter() - w0, process_cpu() - c0
        nbytes = index.stats()["bytes_total"]
        for rerank in int_list(a.rotor_rerank):
            for lsize in int_list(a.rotor_list):
                def one(q, index=index, lsize=max(lsize, k), rerank=rerank):
                    return index.search(q, k, list_size=lsize, rerank=rerank, threads=1)[0]

                yield (info, f"{quant},R={degree or 'default'},L={lsize},rerank={rerank}", build_s,
                       build_cpu, nbytes, {}, one)
        return

    faiss, info = libs["faiss"]
    mt = faiss.METRIC_L2 if a.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    sel = None
    if c.mask is not None:
        if a.faiss_selector == "bitmap":
            # bit i of byte i >> 3, least significant first: IDSelectorBitmap's layout
            c.bitmap = np.packbits(c.mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(c.bitmap))
        else:
            sel = faiss.IDSelectorBatch(len(c.allowed_ids), faiss.swig_ptr(c.allowed_ids))
        c.selector = sel
    faiss.omp_set_num_threads(c.build_threads)
    w0, c0 = time.perf_counter(), process_cpu()
    if method == "faiss-flat":
        index = faiss.IndexFlatL2(d) if a.metric == "l2" else faiss.IndexFlatIP(d)
        index.add(base)
        faiss.omp_set_num_threads(1)
        one = lambda q: index.search(q, k)[1]
        if sel is not None:
            params = faiss.SearchParameters(sel=sel)
            one = lambda q: index.search(q, k, params=params)[1]
        yield (info, "", time.perf_counter() - w0, process_cpu() - c0, int(base.nbytes), {},
               one)
    elif method == "faiss-hnsw":
        m = a.faiss_hnsw_m
        index = faiss.IndexHNSWFlat(d, m, mt)
        index.hnsw.efConstruction = a.ef_construction
        index.add(base)
        build_s, build_cpu = time.perf_counter() - w0, process_cpu() - c0
        faiss.omp_set_num_threads(1)
        h = index.hnsw
        nbytes = int(base.nbytes + h.neighbors.size() * 4 + h.levels.size() * 4 +
                     h.offsets.size() * 8)
        for ef in int_list(a.ef):
            index.hnsw.efSearch = max(ef, k)
            one = lambda q: index.search(q, k)[1]
            if sel is not None:
                params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(ef, k))
                one = lambda q, params=params: index.search(q, k, params=params)[1]
            yield (info, f"M={m},efC={a.ef_construction},ef={ef}", build_s, build_cpu, nbytes,
                   {}, one)
    elif method == "faiss-ivfpqfs":
        nlist = a.nlist or pow2_near(4 * math.sqrt(n))
        pq_m = a.pq_m or largest_divisor_at_most(d, d // 4 if d <= 256 else d // 8)
        if d % pq_m:
            sys.exit(f"peers: --pq-m {pq_m} does not divide the dimension {d}")
        # Cosine: the rows are unit vectors, where L2 ranks as cosine does.
        # FAISS 1.15's fast-scan IVF with inner product on residuals lost
        # recall as nprobe grew (100-d word vectors, k_factor 1: recall@10
        # 0.15 at nprobe 1, 0.10 at 256), so it runs on L2 there, as a
        # FAISS user would.
        fs_l2 = a.metric in ("l2", "cosine")
        quantizer = faiss.IndexFlatL2(d) if fs_l2 else faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFPQFastScan(quantizer, d, nlist, pq_m, 4,
                                       faiss.METRIC_L2 if fs_l2 else mt)
        index, build_s, build_cpu = refined_ivf(faiss, ivf, base, w0, c0)
        inv = ivf.invlists
        bbs = ivf.bbs
        code_block = ivf.M2 // 2
        codes = sum(((inv.list_size(i) + bbs - 1) // bbs) * bbs * code_block + inv.list_size(i) * 8
                    for i in range(nlist))
        nbytes = int(codes + nlist * d * 4 + ivf.pq.centroids.size() * 4 + base.nbytes)
        extra = {"index_bytes_without_floats": int(codes + nlist * d * 4 +
                                                   ivf.pq.centroids.size() * 4)}
        for kf in int_list(a.k_factor):
            for nprobe in int_list(a.nprobe):
                if nprobe > nlist:
                    continue
                ivf.nprobe = nprobe
                index.k_factor = kf
                one = lambda q: index.search(q, k)[1]
                if sel is not None:
                    # The selector goes to the IVF stage; the refine stage only
                    # rescores what that returned.
                    params = faiss.IndexRefineSearchParameters(
                        k_factor=kf, base_index_params=faiss.SearchParametersIVF(
                            sel=sel, nprobe=nprobe))
                    one = lambda q, params=params: index.search(q, k, params=params)[1]
                yield (info, f"nlist={nlist},M={pq_m}x4fs,nprobe={nprobe},k_factor={kf}",
                       build_s, build_cpu, nbytes, extra, one)
        del quantizer
    elif method == "faiss-ivfrabitq":
        if not hasattr(faiss, "IVFRaBitQSearchParameters"):
            print(f"peers: skipping faiss-ivfrabitq in the {info['build']} run: faiss "
                  f"{info['version']} has no IndexIVFRaBitQ (FAISS 1.11 or later)",
                  file=sys.stderr)
            return
        nlist = a.nlist or pow2_near(4 * math.sqrt(n))
        bits = a.rabitq_bits
        # index_factory gives IndexIVFRaBitQ over an IndexFlatL2 / IndexFlatIP
        # quantizer, with no random rotation ("RaBitQ" alone: 1 bit per dim).
        ivf = faiss.index_factory(d, f"IVF{nlist},RaBitQ{bits if bits > 1 else ''}", mt)
        index, build_s, build_cpu = refined_ivf(faiss, ivf, base, w0, c0)
        inv = ivf.invlists
        # Array inverted lists: code_size bytes and an 8-byte id per vector.
        codes = sum(inv.list_size(i) for i in range(nlist)) * (ivf.code_size + 8)
        nbytes = int(codes + nlist * d * 4 + base.nbytes)
        extra = {"index_bytes_without_floats": int(codes + nlist * d * 4)}
        qb, centered = a.rabitq_qb, a.rabitq_centered
        tag = f"nlist={nlist},RaBitQ{bits},qb={qb}" + (",centered" if centered else "")
        for kf in int_list(a.k_factor):
            for nprobe in int_list(a.nprobe):
                if nprobe > nlist:
                    continue
                # qb and centered are read from IVFRaBitQSearchParameters only
                # (without them the index's qb, 4 by default, is used); a
                # selector goes to the IVF stage, the refine stage rescores.
                ivf_params = {"nprobe": nprobe, "qb": qb, "centered": centered}
                if sel is not None:
                    ivf_params["sel"] = sel
                params = faiss.IndexRefineSearchParameters(
                    k_factor=kf, base_index_params=faiss.IVFRaBitQSearchParameters(**ivf_params))
                one = lambda q, params=params: index.search(q, k, params=params)[1]
                yield (info, f"{tag},nprobe={nprobe},k_factor={kf}", build_s, build_cpu, nbytes,
                       extra, one)
    else:
        sys.exit(f"peers: unknown method '{method}'")


def run_sweeps(c, libs):
    a = c.args
    for method in a.methods:
        tool = METHOD_TOOL[method]
        if tool not in libs:
            continue
        info = libs[tool][1]
        if a.native_run and tool not in ONE_BUILD_TOOLS and info["build"] != "native":
            print(f"peers: skipping {method} in the native run: {tool} did not load from the "
                  f"native directory (give --native-{tool})", file=sys.stderr)
            continue
        for info, params, build_s, build_cpu, nbytes, extra, one in method_points(c, method,
                                                                                   libs):
            c.short_queries = 0
            # FAISS HNSW counts its work: nodes expanded and distances computed.
            hnsw_stats = libs[tool][0].cvar.hnsw_stats if method == "faiss-hnsw" else None
            if hnsw_stats is not None:
                hnsw_stats.reset()
            if callable(one):
                qps, wall, cpu, lat, ids = timed_search(one, c.queries, a.k, a.runs)
            else:
                qps, wall, cpu, lat, ids = one
            if hnsw_stats is not None:
                searched = a.runs * len(c.queries)
                extra = {**extra, "hops_mean": hnsw_stats.nhops / searched,
                         "estimated_mean": hnsw_stats.ndis / searched}
            if c.mask is None:
                r1 = recall_at(c.base, c.queries, c.gt, ids, 1, a.metric)
                r10 = recall_at(c.base, c.queries, c.gt, ids, 10, a.metric) if a.k >= 10 \
                    else None
            else:
                r1, counted = recall_filtered(c.base, c.queries, c.gt, ids, 1, a.metric,
                                              c.mask)
                r10 = recall_filtered(c.base, c.queries, c.gt, ids, 10, a.metric,
                                      c.mask)[0] if a.k >= 10 else None
                extra = {**extra, "filter": a.filter, "selectivity": c.selectivity,
                         "labels": os.path.basename(a.labels), "n_queries_scored": counted}
                if method != "hnsw":
                    extra["faiss_selector"] = a.faiss_selector
                if c.short_queries:
                    extra["queries_short"] = c.short_queries // a.runs
            row = {
                **{key: info[key] for key in ("tool", "version", "build")},
                "method": method, "params": params, "dataset": c.dataset, "metric": a.metric,
                "n_base": c.n, "dim": c.d, "n_queries": len(c.queries), "k": a.k,
                "threads": 1, "runs": a.runs, "recall_at_1": r1, "recall_at_10": r10,
                "qps": qps, "mean_latency_us": 1e6 * float(lat.mean()),
                "p99_latency_us": 1e6 * float(np.sort(lat)[int(np.ceil(0.99 * len(lat))) - 1]),
                "build_seconds": build_s, "build_cpu_seconds": build_cpu,
                "build_threads": c.build_threads, "index_bytes": nbytes,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                **extra,
                "cpu_seconds": cpu, "wall_seconds": wall, "timestamp": int(time.time()),
            }
            msg = (f"{info['build']:7s} {info['tool']}:{method:15s} {params:42s} recall@1 "
                   f"{(r1 if r1 is not None else float('nan')):.4f} recall@10 "
                   f"{(r10 if r10 is not None else float('nan')):.4f} "
                   f"QPS {qps:9.1f} QPS/cpu_s {len(c.queries) / cpu:9.1f}")
            c.emit(row, msg)


# ---- eval-quant -------------------------------------------------------------

def quant_index(faiss, spec, d, mt):
    """The empty FAISS index for a spec, or the string "bin"."""
    m = re.fullmatch(r"faiss-pq(\d+)(x4fs)?", spec)
    if m:
        pq_m = int(m.group(1))
        if pq_m <= 0 or d % pq_m:
            sys.exit(f"peers: {spec}: M={pq_m} must divide the dimension {d}")
        if m.group(2):
            return faiss.IndexPQFastScan(d, pq_m, 4, mt)
        return faiss.IndexPQ(d, pq_m, 8, mt)
    if spec in ("faiss-sq4", "faiss-sq8"):
        qt = faiss.ScalarQuantizer.QT_4bit if spec == "faiss-sq4" else faiss.ScalarQuantizer.QT_8bit
        return faiss.IndexScalarQuantizer(d, qt, mt)
    if spec == "faiss-bin":
        return "bin"
    sys.exit(f"peers: unknown --eval-quant spec '{spec}'; use {QUANT_HELP}")


def exact_rerank(base, metric, q, cand, k):
    """Rescores candidate ids on the full vectors, as IndexRefineFlat does."""
    cand = cand[cand >= 0]
    x = base[cand]
    if metric == "l2":
        dist = ((x - q) ** 2).sum(axis=1)
    else:
        dist = -(x @ q)
    order = np.argsort(dist, kind="stable")[:k]
    out = np.full(k, -1, dtype=np.int64)
    out[:len(order)] = cand[order]
    return out


def eval_one(c, faiss, spec):
    a, base, queries, n, d, k = c.args, c.base, c.queries, c.n, c.d, c.args.k
    metric = a.metric
    mt = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    index = quant_index(faiss, spec, d, mt)
    r = {"quant": spec}
    faiss.omp_set_num_threads(c.build_threads)

    if index == "bin":
        # Sign bits: of x - mean(base) for l2 (the mean is the "training"),
        # of x itself for ip and cosine. Bits padded with zeros to a byte.
        t0 = time.perf_counter()
        center = base.mean(axis=0, dtype=np.float64).astype(np.float32) if metric == "l2" \
            else np.zeros(d, dtype=np.float32)
        r["train_seconds"] = time.perf_counter() - t0 if metric == "l2" else 0.0
        dbits = 8 * ((d + 7) // 8)

        def encode(x):
            bits = np.zeros((len(x), dbits), dtype=np.uint8)
            bits[:, :d] = x > center
            return np.packbits(bits, axis=1, bitorder="little")

        bindex = faiss.IndexBinaryFlat(dbits)
        t0 = time.perf_counter()
        for s in range(0, n, 65536):
            bindex.add(encode(base[s:s + 65536]))
        r["encode_vectors_per_s"] = n / max(time.perf_counter() - t0, 1e-9)
        r["bytes_per_vector"] = int(bindex.code_size)
        # Hamming distance gives no estimate of the distance or inner product.
        r["mse"] = r["ip_bias"] = r["ip_var"] = None
        faiss.omp_set_num_threads(1)

        def plain(q):
            return bindex.search(encode(q), k)[1][0]

        def rerank(q):
            cand = bindex.search(encode(q), RERANK_FACTOR * k)[1][0]
            return exact_rerank(base, metric, q[0], cand, k)
    else:
        t0 = time.perf_counter()
        index.train(base)
        r["train_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        index.add(base)
        r["encode_vectors_per_s"] = n / max(time.perf_counter() - t0, 1e-9)
        fast_scan = isinstance(index, faiss.IndexPQFastScan)
        r["bytes_per_vector"] = int(index.code_size if fast_scan else index.sa_code_size())
        faiss.omp_set_num_threads(1)

        # mse over evenly spaced rows, on what the index holds (base is
        # already unit-normalised for cosine). IndexPQ / IndexScalarQuantizer:
        # reconstruct() is sa_decode of the stored code. Fast-scan: FAISS
        # 1.7.3's IndexFastScan::reconstruct unpacks the wrong 4-bit codes
        # when M > 16 (checked: exact for M <= 16, wrong for 24..96), so
        # decode pq.compute_codes(x) instead: the very codes add() packed.
        sample = min(n, MSE_SAMPLE)
        sids = [s * (n // sample) for s in range(sample)]
        if fast_scan:
            recon = index.pq.decode(index.pq.compute_codes(base[sids])).astype(np.float64)
        else:
            recon = np.vstack([index.reconstruct(i) for i in sids]).astype(np.float64)
        orig = base[sids].astype(np.float64)
        norm2 = (orig * orig).sum(axis=1)
        err = ((recon - orig) ** 2).sum(axis=1)
        r["mse"] = float(np.where(norm2 > 0, err / np.where(norm2 > 0, norm2, 1), 0).mean())

        # ip_bias / ip_var over query x row pairs, from FAISS's own estimate.
        pq_n = min(len(queries), PAIR_QUERIES)
        rows = min(n, PAIR_ROWS)
        row_ids = [(i * 7919 + 13) % n for i in range(rows)]
        x = base[row_ids].astype(np.float64)
        xx = (x * x).sum(axis=1)
        if fast_scan:
            # Fast-scan quantises its lookup tables to 8 bits per query, so its
            # estimate is not exactly the distance to the decoded vector: take
            # it from a fast-scan index holding just these rows (same trained
            # PQ, same codes, same per-query table quantisation) searched for
            # all of them.
            probe = faiss.IndexPQFastScan(d, index.pq.M, 4, mt)
            probe.pq = index.pq
            probe.is_trained = True
            probe.add(base[row_ids])
        else:
            # For IndexPQ (asymmetric distance with float tables) and
            # IndexScalarQuantizer, FAISS's estimate for a pair equals the
            # distance / inner product between the query and the decoded
            # vector (up to float rounding): compute it from the decoded rows.
            xr = np.vstack([index.reconstruct(i) for i in row_ids]).astype(np.float64)
        errs = []
        for qi in range(pq_n):
            q = queries[qi].astype(np.float64)
            qq = float(q @ q)
            if fast_scan:
                dist, lab = probe.search(queries[qi:qi + 1], rows)
                est = np.empty(rows)
                est[lab[0]] = dist[0]
            elif metric == "l2":
                est = ((xr - q) ** 2).sum(axis=1)
            else:
                est = xr @ q
            # l2: est is a squared distance; ip / cosine: est is the inner
            # product itself (METRIC_INNER_PRODUCT), i.e. rotor's -estimate
            # or 1 - estimate.
            implied = (xx + qq - est) / 2 if metric == "l2" else est
            scale = np.sqrt(xx * qq)
            ok = scale > 0
            errs.append(((implied - x @ q)[ok] / scale[ok]))
        e = np.concatenate(errs) if errs else np.array([])
        r["ip_bias"] = float(e.mean()) if len(e) else None
        r["ip_var"] = float((e * e).mean() - e.mean() ** 2) if len(e) else None

        refined = faiss.IndexRefineFlat(index, faiss.swig_ptr(base))
        refined.k_factor = RERANK_FACTOR

        def plain(q):
            return index.search(q, k)[1][0]

        def rerank(q):
            return refined.search(q, k)[1][0]

    r["bits_per_dim"] = 8.0 * r["bytes_per_vector"] / d
    for key, fn in (("", plain), ("_rerank", rerank)):
        qps, _, _, _, ids = timed_search(fn, queries, k, 1)
        r["recall_at_10" + key] = recall_at(base, queries, c.gt, ids, 10, metric)
        r["scan_qps" + key] = qps
    return r


def run_eval_quant(c, libs):
    a = c.args
    faiss, info = libs["faiss"]
    if a.native_run and info["build"] != "native":
        print("peers: skipping eval-quant in the native run: faiss did not load from the "
              "native directory", file=sys.stderr)
        return
    print(f"faiss eval-quant ({info['build']}, {info.get('compile_options', '')})  base "
          f"{c.n} x {c.d}  {len(c.queries)} queries  metric {a.metric}", file=sys.stderr)
    print(f"{'quant':16s} {'bits/d':>6s} {'B/vec':>6s} {'train_s':>8s} {'encode/s':>11s} "
          f"{'mse':>8s} {'ip_bias':>9s} {'ip_sd':>9s} {'R@10':>8s} {'R@10+rr':>10s} "
          f"{'scanQPS':>8s} {'QPS+rr':>8s}", file=sys.stderr)

    def num(v, fmt):
        if v is not None:
            return format(v, fmt)
        return format("-", ">" + fmt.lstrip("+").split(".")[0] + "s")

    for spec in a.eval_quant:
        r = eval_one(c, faiss, spec)
        row = {"tool": "faiss", "version": info["version"], "build": info["build"],
               "kind": "eval-quant", "quant": r["quant"], "metric": a.metric,
               "dataset": c.dataset, "n_base": c.n, "dim": c.d, "n_queries": len(c.queries),
               "k": a.k, "bytes_per_vector": r["bytes_per_vector"],
               "bits_per_dim": r["bits_per_dim"], "train_seconds": r["train_seconds"],
               "encode_vectors_per_s": r["encode_vectors_per_s"], "mse": r["mse"],
               "ip_bias": r["ip_bias"], "ip_var": r["ip_var"],
               "recall_at_10": r["recall_at_10"], "recall_at_10_rerank": r["recall_at_10_rerank"],
               "scan_qps": r["scan_qps"], "scan_qps_rerank": r["scan_qps_rerank"],
               "build_threads": c.build_threads, "timestamp": int(time.time())}
        for key in ("simd", "compile_options"):
            if key in info:
                row[key] = info[key]
        ip_sd = math.sqrt(max(r["ip_var"], 0.0)) if r["ip_var"] is not None else None
        msg = (f"{r['quant']:16s} {r['bits_per_dim']:6.2f} {r['bytes_per_vector']:6d} "
               f"{r['train_seconds']:8.3f} {r['encode_vectors_per_s']:11.0f} "
               f"{num(r['mse'], '8.5f')} {num(r['ip_bias'], '+9.5f')} {num(ip_sd, '9.5f')} "
               f"{r['recall_at_10']:8.4f} {r['recall_at_10_rerank']:10.4f} "
               f"{r['scan_qps']:8.1f} {r['scan_qps_rerank']:8.1f}")
        c.emit(row, msg)


def run_child(args):
    libs = {}
    if args.eval_quant:
        libs["faiss"] = load_faiss(args)
    else:
        tools = {METHOD_TOOL[m] for m in args.methods}
        if "faiss" in tools:
            libs["faiss"] = load_faiss(args)
        if "hnswlib" in tools:
            libs["hnswlib"] = load_hnswlib(args)
        if "rotor" in tools and args.run_rotor:
            libs["rotor"] = load_rotor(args)
        if "usearch" in tools and args.run_usearch:
            libs["usearch"] = load_usearch(args)
    c = Child(args)
    if args.eval_quant:
        run_eval_quant(c, libs)
    else:
        run_sweeps(c, libs)


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="methods:\n" + "\n".join(f"  {m:16s} {t}" for m, t in METHODS.items()) +
               "\n\neval-quant specs:\n  " + QUANT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="base vectors (any format rotor reads)")
    p.add_argument("--queries", required=True, help="query vectors")
    p.add_argument("--gt", required=True, help="ground truth ids (.ivecs/.ibin/.npy)")
    p.add_argument("--metric", default="l2", choices=["l2", "ip", "cosine"],
                   help="cosine normalises base and queries and uses inner product")
    p.add_argument("--k", type=int, default=10, help="neighbours returned per query (default 10)")
    p.add_argument("--runs", type=int, default=1,
                   help="repeat each sweep point's query pass; the median QPS run is kept")
    p.add_argument("--max-queries", type=int, default=0, help="use only the first N queries")
    p.add_argument("--methods", default="faiss-flat",
                   help="comma list of: " + ", ".join(METHODS) + " (default faiss-flat)")
    p.add_argument("--eval-quant", metavar="SPECS",
                   help="instead of search sweeps, measure FAISS quantizers as `rotor "
                        "eval-quant` does; comma list of: " + QUANT_HELP)
    p.add_argument("--ef", default="10,16,24,32,48,64,96,128,192,256,384,512",
                   help="search ef / efSearch / expansion_search sweep for hnsw, faiss-hnsw "
                        "and usearch (values below k are raised to k)")
    p.add_argument("--hnsw-m", default="16,32", help="hnswlib M values (default 16,32)")
    p.add_argument("--hnsw-ef", default="",
                   help="ef sweep for hnsw alone (default: --ef); a filtered hnswlib search "
                        "from Python pays a callback per candidate, so a shorter sweep helps")
    p.add_argument("--faiss-hnsw-m", type=int, default=32,
                   help="IndexHNSWFlat M (default 32)")
    p.add_argument("--ef-construction", type=int, default=200,
                   help="efConstruction of hnsw and faiss-hnsw, expansion_add of usearch "
                        "(default 200)")
    p.add_argument("--nprobe", default="1,2,4,8,16,32,64,128,256",
                   help="faiss-ivfpqfs / faiss-ivfrabitq nprobe sweep (values above nlist "
                        "skipped)")
    p.add_argument("--k-factor", default="1,2,4,8",
                   help="faiss-ivfpqfs / faiss-ivfrabitq IndexRefineFlat k_factor sweep "
                        "(candidates rescored exactly = k_factor * k)")
    p.add_argument("--nlist", type=int, default=0,
                   help="faiss-ivfpqfs / faiss-ivfrabitq lists (default: 4*sqrt(n) rounded to "
                        "a power of two)")
    p.add_argument("--pq-m", type=int, default=0,
                   help="faiss-ivfpqfs sub-quantizers of 4 bits (default: the largest divisor "
                        "of dim not above dim/4 for dim <= 256, dim/8 above)")
    p.add_argument("--rabitq-bits", type=int, default=1, choices=range(1, 10),
                   metavar="{1..9}",
                   help="faiss-ivfrabitq: bits per dimension of the codes (default 1: "
                        "IVF<nlist>,RaBitQ; B > 1: IVF<nlist>,RaBitQ<B>)")
    p.add_argument("--rabitq-qb", type=int, default=8, choices=range(0, 9), metavar="{0..8}",
                   help="faiss-ivfrabitq: bits per dimension of the quantised query "
                        "(IVFRaBitQSearchParameters.qb; default 8, as FAISS's "
                        "benchs/bench_rabitq.py; FAISS's own default is 4; 0: float query)")
    p.add_argument("--rabitq-centered", action="store_true",
                   help="faiss-ivfrabitq: IVFRaBitQSearchParameters.centered (centred "
                        "query quantisation; default off, as FAISS)")
    p.add_argument("--usearch", default=os.environ.get("ROTOR_USEARCH"),
                   help="usearch: directory where `npm install usearch` was run (or the "
                        "package itself); default $ROTOR_USEARCH")
    p.add_argument("--usearch-m", default="16",
                   help="usearch: connectivity (M) values, one build each (default 16)")
    p.add_argument("--rotor-quant", default="",
                   help="rotor-py: quantizer spec (default pq<M>x4, M the largest divisor of "
                        "dim not above dim/4; auto: rotor's own choice, as with no flags)")
    p.add_argument("--rotor-degree", type=int, default=32,
                   help="rotor-py: graph degree R (0: rotor's default for the codes)")
    p.add_argument("--rotor-list", default="10,12,16,24,32,48,64,96",
                   help="rotor-py: search list sizes L (values below k are raised to k)")
    p.add_argument("--rotor-rerank", default="32",
                   help="rotor-py: rerank depths (candidates rescored on full vectors)")
    p.add_argument("--rotor-module", default=os.environ.get("ROTOR_PYTHON_MODULE"),
                   help="rotor-py: directory holding the rotor module (e.g. a build's "
                        "bindings/python); default $ROTOR_PYTHON_MODULE, else the installed one")
    p.add_argument("--build-threads", type=int, default=0,
                   help="threads for training / adding / graph building (default: all cores); "
                        "searches always run on one thread")
    p.add_argument("--builds", default="native,debian",
                   help="which builds to run: native, debian or both (default both)")
    p.add_argument("--native-faiss", default=os.environ.get("ROTOR_NATIVE_FAISS"),
                   help="directory holding the -march=native faiss package (put on PYTHONPATH "
                        "for the native run); default $ROTOR_NATIVE_FAISS")
    p.add_argument("--native-hnswlib", default=os.environ.get("ROTOR_NATIVE_HNSWLIB"),
                   help="directory holding the -march=native hnswlib module; default "
                        "$ROTOR_NATIVE_HNSWLIB")
    p.add_argument("--labels", help="filtered search: labels of the base vectors, a text file "
                   "with one line per vector of space-separated non-negative integers (an "
                   "empty line: no label); needs --filter, and --gt must be the filtered "
                   "ground truth (bench/filtered_gt.py)")
    p.add_argument("--filter", help="filtered search: 'L' (has label L), 'L1|L2|...' (any "
                   "of), 'L1&L2&...' (all of)")
    p.add_argument("--faiss-selector", default="bitmap", choices=["bitmap", "batch"],
                   help="filtered search: FAISS IDSelectorBitmap (default) or IDSelectorBatch")
    p.add_argument("--json", help="append JSON lines here (default: stdout)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--native-dir", help=argparse.SUPPRESS)
    p.add_argument("--native-hnswlib-dir", help=argparse.SUPPRESS)
    p.add_argument("--native-run", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-rotor", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-usearch", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if m not in METHODS:
            p.error(f"unknown method '{m}'; use one of {', '.join(METHODS)}")
    if args.eval_quant is not None:
        args.eval_quant = [s for s in args.eval_quant.split(",") if s]
        if not args.eval_quant:
            p.error("--eval-quant needs at least one spec")
        for s in args.eval_quant:
            if not re.fullmatch(r"faiss-pq\d+(x4fs)?|faiss-sq4|faiss-sq8|faiss-bin", s):
                p.error(f"unknown --eval-quant spec '{s}'; use {QUANT_HELP}")
        if args.k < 10:
            p.error("--eval-quant measures recall@10: --k must be at least 10")
    if args.hnsw_ef:
        try:
            if not int_list(args.hnsw_ef):
                raise ValueError
        except ValueError:
            p.error("--hnsw-ef needs a comma list of integers")
    for opt in ("ef", "hnsw_m", "usearch_m", "nprobe", "k_factor", "rotor_list",
                "rotor_rerank"):
        try:
            if not int_list(getattr(args, opt)):
                raise ValueError
        except ValueError:
            p.error(f"--{opt.replace('_', '-')} needs a comma list of integers")

    if bool(args.labels) != bool(args.filter):
        p.error("--labels and --filter go together")
    if args.labels:
        if args.eval_quant is not None:
            p.error("--labels/--filter apply to search sweeps, not --eval-quant")
        if "rotor-py" in args.methods:
            p.error("--labels/--filter: rotor-py has no filtered search here yet")
        if "usearch" in args.methods:
            p.error("--labels/--filter: usearch's JavaScript binding has no filtered search")
        parse_filter(args.filter)
    if "usearch" in args.methods and args.eval_quant is None:
        if not args.usearch:
            p.error("method usearch needs --usearch DIR (or ROTOR_USEARCH): a directory where "
                    "`npm install usearch` was run; see bench/peers/README.md")
        if not os.path.isdir(args.usearch):
            p.error(f"--usearch: '{args.usearch}' is not a directory")

    if args.child:
        run_child(args)
        return

    tools = {"faiss"} if args.eval_quant else {METHOD_TOOL[m] for m in args.methods}
    native_dirs = {"faiss": args.native_faiss, "hnswlib": args.native_hnswlib}
    forwarded = list(sys.argv[1:])
    pending = sorted(tools.intersection(ONE_BUILD_TOOLS))  # run once, in the first child
    tools.difference_update(ONE_BUILD_TOOLS)
    for build in [b for b in args.builds.split(",") if b]:
        env = dict(os.environ)
        # OpenMP threads that spin at barriers while the other core is busy
        # (a shared 2-core machine) make multi-threaded FAISS training up to
        # 10x slower; sleeping waits avoid that. Searches run on one thread.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        extra = []
        if build == "native":
            have = [t for t in sorted(tools) if native_dirs[t]]
            missing = [t for t in sorted(tools) if not native_dirs[t]]
            if missing:
                print(f"peers: native build: no --native-{' / --native-'.join(missing)}: "
                      f"{', '.join(missing)} skipped in the native run", file=sys.stderr)
            if not have and not pending:
                continue
            env["PYTHONPATH"] = os.pathsep.join(
                x for x in [args.native_faiss, args.native_hnswlib, env.get("PYTHONPATH")] if x)
            extra = ["--native-run"]
            if args.native_faiss:
                extra += ["--native-dir", args.native_faiss]
            if args.native_hnswlib:
                extra += ["--native-hnswlib-dir", args.native_hnswlib]
        elif build == "debian":
            env.pop("PYTHONPATH", None)
        else:
            p.error(f"unknown build '{build}'; use native or debian")
        extra += [f"--run-{t}" for t in pending]
        pending = []
        rc = subprocess.call([sys.executable, os.path.abspath(__file__), "--child", *extra,
                              *forwarded], env=env)
        if rc != 0:
            sys.exit(rc)


if __name__ == "__main__":
    main()
