#!/usr/bin/python3
"""Generate rotor's synthetic benchmark sets, deterministically.

    bench/gen_data.py --kind sift  --n 1000000 --nq 10000 \\
        --out-base sift1m_base.u8bin --out-queries sift1m_query.u8bin
    bench/gen_data.py --kind embed --dim 768 --n 1000000 --nq 10000 \\
        --out-base embed768_base.fbin --out-queries embed768_query.fbin
    bench/gen_data.py --stats-of BASE [--stats-queries Q] [--metric l2|cosine]

--kind sift: clustered SIFT-like descriptors, 128-d (default), uint8. A
two-level mixture (topics, each with sub-clusters) of non-negative, heavy-
tailed (log-normal) centres whose coordinates are correlated through a low-
rank latent factor; each cluster has its own per-coordinate scales; points add
Student-t (df 4) noise. Each point then goes through SIFT's own normalisation
(clip at zero, unit length, clip at 0.2, unit length again, times 512), is
rounded and clipped to 0..255. Written as .u8bin (or .bvecs).

--kind embed: unit-norm, anisotropic embedding-like float32 vectors (384- or
768-d; default 768). In a random orthogonal basis, component i has variance
proportional to i^-0.8 / (1 + i / (dim/8)) (a power-law head steepening to
i^-1.8), shared by a two-level cluster mixture (topic centres, sub-cluster
centres, per-cluster anisotropic item noise); a strong common mean direction
is added and every row normalised. The constants aim at the geometry of real
MiniLM-like vectors (norm of the mean vector ~0.7, mean pairwise cosine
~0.45-0.5, 90 % of the variance in ~1/4 of the dimensions, top component
~10-15 %); the statistics of the generated set are printed so they can be
quoted. Written as .fbin (or .fvecs).

Queries come from the same distribution (same model, their own random stream)
and are disjoint from the base: for the integer sift kind, a candidate query
equal to a base row is dropped and the next spare candidate used. No ground
truth is written (`rotor gt` computes it).

Determinism: the model is drawn from numpy.random.default_rng(seed) (default
2024); base rows are made in blocks of 32,768 rows, block b from its own
SeedSequence child, so a smaller --n gives a prefix of a larger one and the
output does not depend on memory. Arithmetic is float64, rounded once at
the end, so the output does not depend on BLAS threads or kernels (sift:
identical; embed: a handful of values in 10^8 may differ by one ulp).
Memory stays under 1 GB for any --n (1,000,000 x 768 float32 = 3 GB is
streamed: about 50 s on one core).

--stats-of prints the same statistics for an existing file (e.g. a real set)
so generated and real data can be compared.
"""
import argparse
import os
import struct
import sys
import time

import numpy as np

BLOCK = 32768           # rows per generated block (part of the definition of a seed's output)
SUB_BLOCK = 4096        # rows transformed at a time (memory only; does not change the output)
STATS_ROWS = 20000      # rows kept for PCA and nearest-neighbour statistics
STATS_QUERIES = 200


# ---- the two models ---------------------------------------------------------

class SiftModel:
    kind, dtype = "sift", np.uint8
    topics, per_topic, rank = 512, 8, 24
    latent, latent_decay = 0.85, 0.8  # scale of latent factor j: latent * j^-decay
    bias_sd = 0.25                   # per-coordinate offset shared by all points
    coord_sd = 0.2                   # per-cluster independent part of the log centre
    sub_spread = 0.5                 # sub-cluster offset from its topic (latent units)
    item_spread = 0.6                # item offset from its cluster (latent units)
    noise, df = 0.25, 8              # per-coordinate Student-t noise on the log scale
    aniso_sd = 0.4                   # per-cluster log-normal spread of the noise scales
    floor = 0.15                     # subtracted (x row mean) before clipping at zero

    def __init__(self, rng, dim):
        d = self.dim = dim
        r = self.rank
        self.clusters = self.topics * self.per_topic
        decay = np.arange(1, r + 1) ** -self.latent_decay
        decay *= np.sqrt(r / (decay ** 2).sum())
        self.mix_t = rng.standard_normal((r, d)) / np.sqrt(r) * self.latent * decay[:, None]
        topic_z = rng.standard_normal((self.topics, r))
        self.sub_z = topic_z.repeat(self.per_topic, axis=0) + \
            self.sub_spread * rng.standard_normal((self.clusters, r))
        self.offset = rng.normal(0.0, self.bias_sd, d) + \
            self.coord_sd * rng.standard_normal((self.clusters, d))
        # Anisotropic clusters: each has its own spread per latent factor and
        # its own noise scale per coordinate.
        self.lat_scale = self.item_spread * np.exp(
            rng.normal(0.0, self.aniso_sd, (self.clusters, r)))
        self.noise_scale = self.noise * np.exp(
            rng.normal(0.0, self.aniso_sd, (self.clusters, d)))
        w = np.exp(rng.normal(0.0, 1.0, self.clusters))
        self.weights = w / w.sum()

    def sample(self, rng, rows):
        which = rng.choice(self.clusters, size=rows, p=self.weights)
        z = self.sub_z[which] + self.lat_scale[which] * rng.standard_normal((rows, self.rank))
        t = rng.standard_t(self.df, size=(rows, self.dim))
        # Log-normal coordinates (positive, heavy-tailed), correlated through
        # the shared latent factors as SIFT's orientation bins are across cells.
        # In float64 so that rounding to integers does not depend on BLAS.
        v = np.exp(z @ self.mix_t + self.offset[which] + self.noise_scale[which] * t)
        v -= self.floor * v.mean(axis=1, keepdims=True)
        np.maximum(v, 0, out=v)
        # SIFT's normalisation: unit length, clip at 0.2, unit length, x 512.
        v /= np.maximum(np.sqrt(np.einsum("ij,ij->i", v, v)), 1e-12)[:, None]
        np.minimum(v, 0.2, out=v)
        v /= np.maximum(np.sqrt(np.einsum("ij,ij->i", v, v)), 1e-12)[:, None]
        v *= 512.0
        np.rint(v, out=v)
        np.clip(v, 0, 255, out=v)
        return v.astype(np.uint8)


class EmbedModel:
    kind, dtype = "embed", np.float32
    topics, per_topic = 256, 16
    mean_weight = 0.93      # common direction vs unit total variance -> |mean| ~0.69
    head, tail, knee = 0.8, 1.8, 0.125    # variance ~ i^-head, ~ i^-tail beyond knee*dim
    topic_share, sub_share = 0.45, 0.30   # the rest (0.25) is item noise

    def __init__(self, rng, dim):
        d = self.dim = dim
        self.clusters = self.topics * self.per_topic
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        self.basis_t = (q * np.sign(np.diag(r))).T  # rows = components
        i = np.arange(1, d + 1, dtype=np.float64)
        spec = i ** -self.head / (1.0 + (i / (self.knee * d)) ** (self.tail - self.head))
        self.spectrum = spec / spec.sum()
        sd = np.sqrt(self.spectrum)
        topic = rng.standard_normal((self.topics, d)) * sd * np.sqrt(self.topic_share)
        sub = rng.standard_normal((self.clusters, d)) * sd * np.sqrt(self.sub_share)
        self.centres = topic.repeat(self.per_topic, axis=0) + sub
        aniso = np.exp(rng.normal(0.0, 0.5, (self.clusters, d)))
        aniso /= np.sqrt((aniso ** 2 * self.spectrum).sum(axis=1, keepdims=True))
        self.scales = aniso * sd * np.sqrt(1.0 - self.topic_share - self.sub_share)
        m = rng.standard_normal(d)
        self.mean_dir = self.mean_weight * m / np.linalg.norm(m)
        w = np.exp(rng.normal(0.0, 1.0, self.clusters))
        self.weights = w / w.sum()

    def sample(self, rng, rows):
        which = rng.choice(self.clusters, size=rows, p=self.weights)
        z = rng.standard_normal((rows, self.dim), dtype=np.float32)
        out = np.empty((rows, self.dim), dtype=np.float32)
        # Arithmetic in float64, rounded once to float32: the output does not
        # depend on how BLAS splits the product (threads, CPU kernels) except,
        # very rarely, by one unit in the last place.
        for s in range(0, rows, SUB_BLOCK):
            w = which[s:s + SUB_BLOCK]
            v = z[s:s + SUB_BLOCK].astype(np.float64)
            v *= self.scales[w]
            v += self.centres[w]
            v = v @ self.basis_t
            v += self.mean_dir
            v /= np.sqrt(np.einsum("ij,ij->i", v, v))[:, None]
            out[s:s + SUB_BLOCK] = v
        return out


# ---- output files -----------------------------------------------------------

class Writer:
    """Streams rows to .u8bin/.fbin (header: rows, dim as uint32) or
    .bvecs/.fvecs (each row prefixed with its dim as int32)."""

    def __init__(self, path, rows, dim, dtype):
        name = path.lower()
        ext = name[name.rfind("."):]
        want = {np.uint8: (".u8bin", ".bvecs"), np.float32: (".fbin", ".fvecs")}[dtype]
        if ext not in want:
            sys.exit(f"gen_data: '{path}': this kind writes {' or '.join(want)}")
        self.vecs = ext.endswith("vecs")
        self.dim, self.dtype = dim, dtype
        self.f = open(path, "wb")
        if not self.vecs:
            self.f.write(struct.pack("<II", rows, dim))

    def write(self, block):
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if self.vecs:
            rec = np.empty((len(block), 4 + block.shape[1] * block.itemsize), dtype=np.uint8)
            rec[:, :4] = np.frombuffer(struct.pack("<i", self.dim), dtype=np.uint8)
            rec[:, 4:] = block.view(np.uint8).reshape(len(block), -1)
            rec.tofile(self.f)
        else:
            block.tofile(self.f)

    def close(self):
        self.f.close()


# ---- statistics -------------------------------------------------------------

class Stats:
    """Running statistics of the base plus a strided sample for PCA and
    nearest-neighbour contrast."""

    def __init__(self, n, dim):
        self.n, self.dim = n, dim
        self.stride = max(1, n // STATS_ROWS)
        self.sum = np.zeros(dim)
        self.norm2 = 0.0
        self.sample = []
        self.seen = 0
        self.zeros = 0
        self.vmax = -np.inf
        self.vsum = 0.0

    def add(self, block):
        x = block.astype(np.float32)   # no float64 copy of a block: memory stays low
        col = x.sum(axis=0, dtype=np.float64)
        self.sum += col
        self.vsum += float(col.sum())
        np.square(x, out=x)
        self.norm2 += float(x.sum(dtype=np.float64))
        del x
        self.zeros += int((block == 0).sum())
        self.vmax = max(self.vmax, float(block.max()))
        idx = np.arange(self.seen, self.seen + len(block))
        pick = (idx % self.stride == 0) & (idx // self.stride < STATS_ROWS)
        if pick.any():
            self.sample.append(block[pick].astype(np.float32))
        self.seen += len(block)

    def report(self, queries, metric):
        n, d = self.seen, self.dim
        s = np.concatenate(self.sample) if self.sample else np.zeros((0, d), np.float32)
        out = {"rows": n, "dim": d}
        norms = np.linalg.norm(s.astype(np.float64), axis=1)
        out["row_norm_mean"] = float(norms.mean())
        out["row_norm_sd"] = float(norms.std())
        if metric == "cosine":
            # For unit rows: mean pairwise cosine over all i != j pairs, exactly.
            unit = np.allclose(norms, 1.0, atol=1e-3)
            mean = self.sum / n
            out["norm_of_mean_vector"] = float(np.linalg.norm(mean))
            if unit and n > 1:
                out["mean_pairwise_cosine"] = float(
                    (self.sum @ self.sum - self.norm2) / (n * (n - 1.0)))
            else:
                u = s / np.maximum(norms[:, None], 1e-30)
                su = u.sum(axis=0, dtype=np.float64)
                out["mean_pairwise_cosine_sample"] = float(
                    (su @ su - len(u)) / (len(u) * (len(u) - 1.0)))
        else:
            out["value_mean"] = self.vsum / (n * d)
            out["value_max"] = self.vmax
            out["zero_fraction"] = self.zeros / (n * d)
        for name, rows in (("", s), ("_778", s[:778])):
            if len(rows) < 3:
                continue
            c = np.cov(rows.astype(np.float64), rowvar=False)
            ev = np.sort(np.linalg.eigvalsh(c))[::-1]
            ev = np.maximum(ev, 0)
            cs = np.cumsum(ev) / ev.sum()
            out["pca_dims_90pct" + name] = int(np.searchsorted(cs, 0.9) + 1)
            if not name:
                out["pca_dims_50pct"] = int(np.searchsorted(cs, 0.5) + 1)
                out["top_component_share"] = float(ev[0] / ev.sum())
        out["pca_rows"] = len(s)
        if queries is not None and len(queries) and len(s) >= 10:
            q = queries[:STATS_QUERIES].astype(np.float32)
            if metric == "cosine":
                q = q / np.linalg.norm(q, axis=1, keepdims=True)
                b = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-30)
            else:
                b = s
            d2 = (q * q).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * q @ b.T
            d2 = np.sort(np.maximum(d2, 0), axis=1)
            # Queries equal to a sampled row (distance 0) are left out.
            ok = d2[:, 9] > 0
            out["nn1_over_nn10_distance"] = float(np.median(np.sqrt(d2[ok, 0] / d2[ok, 9])))
            out["nn1_over_median_distance"] = float(np.median(
                np.sqrt(d2[ok, 0] / d2[ok, d2.shape[1] // 2])))
            out["nn_rows"] = len(b)
        return out


def print_stats(title, st):
    print(title)
    for k, v in st.items():
        print(f"  {k:32s} {v:.4f}" if isinstance(v, float) else f"  {k:32s} {v}")


def read_any(path, max_rows=0):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
    from peers import read_vectors  # noqa: E402
    return read_vectors(path, max_rows)


# ---- main -------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=["sift", "embed"], help="which synthetic set")
    p.add_argument("--n", type=int, default=1000000, help="base rows (default 1,000,000)")
    p.add_argument("--nq", type=int, default=10000, help="query rows (default 10,000)")
    p.add_argument("--dim", type=int, default=0, help="dimensions (default: sift 128, embed 768)")
    p.add_argument("--out-base", help="base file: .u8bin/.bvecs (sift) or .fbin/.fvecs (embed)")
    p.add_argument("--out-queries", help="query file, same formats")
    p.add_argument("--seed", type=int, default=2024, help="random seed (default 2024)")
    p.add_argument("--stats-of", metavar="BASE",
                   help="only print the statistics of an existing base file")
    p.add_argument("--stats-queries", metavar="Q", help="queries for --stats-of")
    p.add_argument("--metric", choices=["l2", "cosine"],
                   help="statistics to print for --stats-of (default: cosine for float data "
                        "with unit rows, else l2)")
    a = p.parse_args()

    if a.stats_of:
        base = read_any(a.stats_of)
        metric = a.metric or ("cosine" if base.dtype == np.float32 and np.allclose(
            np.linalg.norm(base[:1000], axis=1), 1.0, atol=1e-3) else "l2")
        st = Stats(len(base), base.shape[1])
        for s in range(0, len(base), BLOCK):
            st.add(base[s:s + BLOCK])
        q = read_any(a.stats_queries, STATS_QUERIES) if a.stats_queries else None
        print_stats(f"{os.path.basename(a.stats_of)} ({metric})", st.report(q, metric))
        return

    if not a.kind or not a.out_base or not a.out_queries:
        p.error("--kind, --out-base and --out-queries are required (or --stats-of)")
    if a.n <= 0 or a.nq <= 0:
        p.error("--n and --nq must be positive")
    dim = a.dim or (128 if a.kind == "sift" else 768)
    if dim < 16:
        p.error("--dim must be at least 16")
    t0 = time.perf_counter()
    root = np.random.SeedSequence(a.seed)
    model_ss, base_ss, query_ss = root.spawn(3)
    model = (SiftModel if a.kind == "sift" else EmbedModel)(np.random.default_rng(model_ss), dim)

    # Query candidates first (with spares for the integer kind), so that the
    # base pass can mark the ones that equal a base row.
    spare = max(100, a.nq // 100) if model.dtype == np.uint8 else 0
    candidates = model.sample(np.random.default_rng(query_ss), a.nq + spare)
    check = {row.tobytes(): i for i, row in enumerate(candidates)} if spare else {}
    clash = np.zeros(len(candidates), dtype=bool)

    stats = Stats(a.n, dim)
    out = Writer(a.out_base, a.n, dim, model.dtype)
    blocks = (a.n + BLOCK - 1) // BLOCK
    for b, ss in enumerate(base_ss.spawn(blocks)):
        rows = min(BLOCK, a.n - b * BLOCK)
        block = model.sample(np.random.default_rng(ss), BLOCK)[:rows]
        if check:
            for row in block:
                i = check.get(row.tobytes())
                if i is not None:
                    clash[i] = True
        out.write(block)
        stats.add(block)
    out.close()

    keep = np.nonzero(~clash)[0][:a.nq]
    if len(keep) < a.nq:
        sys.exit("gen_data: too many candidate queries equal a base row")
    queries = candidates[keep]
    qout = Writer(a.out_queries, a.nq, dim, model.dtype)
    qout.write(queries)
    qout.close()

    secs = time.perf_counter() - t0
    metric = "cosine" if a.kind == "embed" else "l2"
    print_stats(f"statistics ({metric}):", stats.report(queries, metric))
    print(f"gen_data: {a.kind} seed {a.seed}: {a.n} x {dim} base -> {a.out_base}, {a.nq} queries "
          f"-> {a.out_queries} ({int(clash.sum())} candidates equal to a base row replaced), "
          f"{secs:.1f} s")


if __name__ == "__main__":
    main()
