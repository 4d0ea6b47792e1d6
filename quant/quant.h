/*
 * quant/ — rotation and codes; no graph knowledge. Every quantizer starts
 * from the same randomized Hadamard rotation: after it, the coordinates of a
 * unit vector are close to independent with a known distribution, which is
 * what lets data-oblivious scalar codebooks (TurboQuant) be optimal with no
 * training. Private to the library.
 */
#ifndef ROTOR_QUANT_H
#define ROTOR_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ---- randomized Hadamard transform (rht.c) ------------------------------ */

/* A random orthogonal map of R^dim made of rounds of random sign flips and
 * orthonormal Walsh-Hadamard transforms. When dim is not a power of two the
 * transform runs on two overlapping power-of-two windows, the first h and
 * the last h coordinates (h = the largest power of two <= dim), so the code
 * keeps exactly dim coordinates: no padding, no wasted bits. O(dim log dim)
 * per round. Fully determined by (dim, rounds, seed), which is all an index
 * stores. */
typedef struct rht {
    size_t dim;      /* input and output dimensions */
    size_t n;        /* rotated coordinates; equal to dim */
    size_t h;        /* window size, a power of two, dim/2 < h <= dim */
    unsigned rounds; /* sign-flip + transform rounds */
    uint64_t seed;
    float *signs; /* rounds x 2 x dim entries of +-1, times 1/sqrt(h) in the window they precede */
} rht;

#define RHT_MAX_ROUNDS 8

rotor_status rht_init(rht *r, const rotor_allocator *a, size_t dim, unsigned rounds, uint64_t seed);
void rht_release(rht *r, const rotor_allocator *a);
/* out, x: dim floats; out may not alias x. */
void rht_forward(const rht *r, const float *x, float *out);
/* out, y: dim floats; y is used as scratch and left changed. */
void rht_inverse(const rht *r, float *y, float *out);
/* out = the rotation of x - centre (scratch: dim floats, left holding
 * x - centre); returns |x - centre|^2, summed in double. How every centred
 * code (binary, sq8) starts, for its vectors and its queries alike. */
double rht_forward_centred(const rht *r, const float *x, const float *centre, float *scratch,
                           float *out);
/* Its inverse: out = the inverse rotation of y, plus centre (y is used as
 * scratch and left changed). */
void rht_inverse_centred(const rht *r, float *y, const float *centre, float *out);

/* ---- Lloyd-Max scalar codebooks (tq_codebook.c) ------------------------- */

/* The MSE-optimal scalar quantizer of one coordinate of a uniformly random
 * unit vector in R^n, scaled by sqrt(n) so it has unit variance: the density
 * is proportional to (1 - t^2/n)^((n-3)/2) on |t| < sqrt(n), which tends to
 * the standard normal as n grows. Solved by Lloyd iterations on the exact
 * density, tabulated on a fine grid. */
typedef struct tq_codebook {
    unsigned bits;
    unsigned levels;     /* 2^bits */
    float centroid[256]; /* ascending, symmetric about 0 */
    float boundary[255]; /* boundary[i] between centroid[i] and centroid[i+1] */
    double mse;          /* expected squared error per coordinate, unit variance */
} tq_codebook;

#define TQ_MAX_BITS 8

rotor_status tq_codebook_solve(const rotor_allocator *a, unsigned bits, size_t n, tq_codebook *out);

/* Index of the cell holding t (binary search over the boundaries). */
static inline unsigned tq_codebook_encode(const tq_codebook *cb, float t) {
    unsigned lo = 0, hi = cb->levels - 1;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (t > cb->boundary[mid])
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- TurboQuant, MSE variant (tq.c) ------------------------------------- */

/* A vector x is stored as its norm (a float) and, for the unit vector
 * x/|x| rotated by `rot`, one b-bit codebook index per rotated coordinate
 * (n of them, n = rot.n), bit-packed little-endian. */
typedef struct tq {
    rht rot;
    tq_codebook cb;
    size_t code_bytes; /* packed indices of one vector */
} tq;

rotor_status tq_init(tq *q, const rotor_allocator *a, size_t dim, unsigned bits, uint64_t seed);
void tq_release(tq *q, const rotor_allocator *a);
/* scratch: rot.n floats. *align (if not NULL) receives <u, u^>, the inner
 * product of the unit vector with its own reconstruction (1 - D on average):
 * dividing an estimate by it is RaBitQ's correction. */
void tq_encode(const tq *q, const float *x, float *scratch, uint8_t *code, float *norm,
               float *align);
void tq_decode(const tq *q, const uint8_t *code, float norm, float *scratch, float *out);

/* b-bit fields of a little-endian bit stream. */
static inline unsigned tq_get_bits(const uint8_t *p, size_t i, unsigned b) {
    size_t bit = i * b;
    unsigned v = 0;
    for (unsigned k = 0; k < b; k++, bit++)
        v |= (unsigned)((p[bit >> 3] >> (bit & 7)) & 1u) << k;
    return v;
}
static inline void tq_put_bits(uint8_t *p, size_t i, unsigned b, unsigned v) {
    size_t bit = i * b;
    for (unsigned k = 0; k < b; k++, bit++) {
        uint8_t m = (uint8_t)(1u << (bit & 7));
        p[bit >> 3] = (uint8_t)((v >> k) & 1u ? p[bit >> 3] | m : p[bit >> 3] & ~m);
    }
}

/* ---- TurboQuant, inner-product variant (tq.c) --------------------------- */

/* The MSE code at bits - 1, plus a 1-bit QJL sketch of the residual: the
 * signs of S r for a d x d Gaussian S, and gamma = |r|. The sketch makes the
 * inner-product estimate unbiased (TurboQuant, section 3.2). */
typedef struct tq_ip {
    tq mse;
    float *S;          /* d x d, row-major, i.i.d. N(0, 1) */
    size_t sign_bytes; /* ceil(d / 8) */
} tq_ip;

/* A query prepared once for many estimates: its rotation and S times it. */
typedef struct tq_ip_query {
    float *rotated;   /* d */
    float *sketch;    /* d */
    float sketch_sum; /* sum of sketch[], so a signed sum is one masked sum */
} tq_ip_query;

rotor_status tq_ip_init(tq_ip *q, const rotor_allocator *a, size_t dim, unsigned bits,
                        uint64_t seed);
void tq_ip_release(tq_ip *q, const rotor_allocator *a);
/* scratch: 2 * dim floats. Writes the MSE code, the sign bits, the norm of x
 * and gamma (the residual norm of the unit vector). */
void tq_ip_encode(const tq_ip *q, const float *x, float *scratch, uint8_t *code, uint8_t *signs,
                  float *norm, float *gamma);
/* qp->rotated and qp->sketch must hold dim floats each. */
void tq_ip_prepare(const tq_ip *q, const float *y, tq_ip_query *qp);
/* Unbiased estimate of <y, x>. */
float tq_ip_estimate(const tq_ip *q, const tq_ip_query *qp, const uint8_t *code,
                     const uint8_t *signs, float norm, float gamma);
/* The MSE part alone, <y, x~_mse>: biased toward zero. */
float tq_mse_estimate(const tq *q, const float *y_rotated, const uint8_t *code, float norm);

/* ---- the quantizer interface (quant.c) ----------------------------------
 *
 * Every code type is used through one interface, so an index holds "a
 * quantizer" and never a particular one:
 *
 *   spec      "tq4", "tqip4", "bin1", "bin2", "pq16", "pq16x4" (quant_spec_parse)
 *   train     learn from a sample, if the kind needs it (PQ); others ignore it
 *   encode    one vector -> code_bytes bytes (norms and correction factors
 *             included), the vector's own code
 *   decode    code -> an approximation of the vector
 *   prepare   one query -> query state (query_bytes), computed once per query
 *   scan      query state x n codes -> n estimated distances, in the
 *             index's convention (squared L2, -IP, 1 - cos)
 *
 * Codes sit in a code store of the quantizer's layout: n codes side by side
 * for most kinds, blocks of 32 interleaved codes for fast-scan PQ. store()
 * and load() move one vector's code in and out of that layout; scan() reads
 * the layout directly, a block at a time.
 */
typedef enum quant_kind {
    QUANT_TQ = 1,    /* TurboQuant MSE, b bits */
    QUANT_TQIP = 2,  /* TurboQuant inner product, b - 1 bits + 1-bit QJL */
    QUANT_BIN = 3,   /* binary, 1-bit sign or 2-bit sign-magnitude */
    QUANT_PQ = 4,    /* product quantization, 8-bit codes */
    QUANT_PQ4 = 5,   /* product quantization, 4-bit fast-scan codes */
    QUANT_BINFS = 6, /* binary codes in the fast-scan layout */
    QUANT_SQ = 7,    /* 8-bit uniform codes of the rotated vector */
} quant_kind;

typedef struct quant_spec {
    quant_kind kind;
    unsigned bits; /* TQ, TQIP: bits per dimension; BIN, BINFS: 1 or 2; PQ, SQ: 8; PQ4: 4 */
    unsigned m;    /* PQ, PQ4: subspaces */
} quant_spec;

/* Parses "tq1".."tq8", "tqip2".."tqip8", "bin1", "bin2", "bin1fs", "bin2fs",
 * "sq8", "pq<M>", "pq<M>x4". */
rotor_status quant_spec_parse(const char *s, quant_spec *out);
/* Writes the canonical name of a spec ("pq16x4"). */
void quant_spec_name(const quant_spec *s, char *buf, size_t size);

typedef struct quant quant;

typedef struct quant_ops {
    rotor_status (*train)(quant *q, const float *x, size_t n, unsigned threads);
    void (*encode)(const quant *q, const float *x, uint8_t *code, float *scratch);
    void (*decode)(const quant *q, const uint8_t *code, float *out, float *scratch);
    void (*prepare)(const quant *q, const float *query, void *qstate, float *scratch);
    void (*scan)(const quant *q, const void *qstate, const uint8_t *store, size_t first, size_t n,
                 float *out);
    size_t (*store_bytes)(const quant *q, size_t n);
    void (*store)(const quant *q, uint8_t *store, size_t i, const uint8_t *code);
    void (*load)(const quant *q, const uint8_t *store, size_t i, uint8_t *code);
    /* Code si of store src into slot di of store dst, as load then store
     * would; NULL: they do it (quant_copy). */
    void (*copy)(const quant *q, uint8_t *dst, size_t di, const uint8_t *src, size_t si);
    void (*release)(quant *q);
    /* Serialization (quant_io.c). Everything else a quantizer holds is a
     * function of (spec, dim, metric, seed) and is rebuilt by quant_create,
     * so only what training learned is stored: payload_bytes is its size,
     * 0 when there is none (untrained PQ). */
    size_t (*payload_bytes)(const quant *q);
    /* Writes payload_bytes(q) bytes to dst (any alignment). */
    void (*save_payload)(const quant *q, uint8_t *dst);
    /* Checks n bytes written by save_payload of a quantizer of the same
     * spec and dimension, then installs them; q is left as quant_create
     * made it when a check fails. quant_load sets q->trained after. */
    rotor_status (*load_payload)(quant *q, const uint8_t *src, size_t n);
    /* The error bound of the estimates (see "error bounds" below); both
     * NULL for kinds that have none. residual: |x - x~| for a vector x and
     * its own code, computed once when x is encoded and kept per vector by
     * the index (scratch: scratch_floats). */
    float (*residual)(const quant *q, const float *x, const uint8_t *code, float *scratch);
    /* est[i], the estimate scan() gave vector ids[i] with this qstate,
     * becomes a lower bound of its exact distance to the query, given
     * resid[ids[i]] (a value that is not a finite residual gives -inf).
     * `store` holds the codes, for kinds whose bound reads a factor back. */
    void (*lower_bounds)(const quant *q, const void *qstate, const uint8_t *store,
                         const float *resid, const uint32_t *ids, size_t n, float *est);
    /* A tighter bound, at more cost, for the candidates the cheap one
     * (lower_bounds) did not settle: lb[i], lower_bounds' value for ids[i],
     * is raised to it. NULL: lower_bounds is as tight as the kind gets. */
    void (*refine_bounds)(const quant *q, const void *qstate, const uint8_t *store,
                          const float *resid, const uint32_t *ids, size_t n, float *lb);
    /* The centred rotation the kind's codes start from, and the centre it
     * subtracts (*centre, dim floats): quantizers with equal ones can share
     * one rotation of a query (quant_same_rotation), the costliest part of
     * preparing it. Both NULL for kinds that rotate no centred vector. */
    const rht *(*rotation)(const quant *q, const float **centre);
    /* prepare() of a query already rotated (quant_rotate_query): rot, the
     * rotation of query - centre; qq, |query - centre|^2. scratch as
     * prepare's, whose floats [dim, 2 dim) it leaves alone, so rot may lie
     * there. */
    void (*prepare_rotated)(const quant *q, const float *rot, double qq, void *qstate,
                            float *scratch);
} quant_ops;

struct quant {
    const quant_ops *ops;
    rotor_allocator alloc;
    quant_spec spec;
    size_t dim;
    rotor_metric metric; /* cosine inputs arrive normalised; scored as IP */
    uint64_t seed;       /* as given to quant_create: the source of all derived state */
    size_t code_bytes;   /* one vector's code, factors included */
    size_t query_bytes;  /* prepared query state */
    size_t scratch_floats;
    bool needs_training;
    bool trained;
    void *impl; /* the kind's own state */
};

rotor_status quant_create(const quant_spec *spec, size_t dim, rotor_metric metric, uint64_t seed,
                          const rotor_allocator *a, quant **out);
void quant_free(quant *q);

/* Per-kind constructors (quant.c dispatches on spec->kind). Each fills
 * q->ops, sizes and impl. */
rotor_status quant_tq_setup(quant *q, uint64_t seed);
rotor_status quant_bin_setup(quant *q, uint64_t seed);
rotor_status quant_pq_setup(quant *q, uint64_t seed);
rotor_status quant_sq_setup(quant *q, uint64_t seed);

/* Distances between codes of one sq8 quantizer (trained for L2), from the
 * codes alone: the squared L2 between the vectors they decode to,
 * |a~|^2 + |b~|^2 - 2 <a~, b~> (one int8 dot product), where |x~|^2 is
 * quant_sq8_norm2 of x's code, kept by the caller. Decoded vectors, not the
 * stored norms: the rounding errors then cancel between near points (a
 * code against itself is 0), which a build's prunes compare. */
float quant_sq8_norm2(const quant *q, const uint8_t *code);
float quant_sq8_l2(const quant *q, const uint8_t *a, float norm2_a, const uint8_t *b,
                   float norm2_b);
/* out[i] = quant_sq8_l2 of code a against the code at store + ids[i] *
 * stride, for i < n, bit for bit, where each code of the store is followed
 * by its quant_sq8_norm2 (a float at code_bytes): a build's 8-bit copies.
 * One call compares a code with many, four at a time (a prune's), where a
 * call per pair spent more on the call than on its bytes. Reads the head's
 * sum of values as encode writes it. scratch: dim bytes. */
void quant_sq8_l2_ids(const quant *q, const uint8_t *a, float norm2_a, const uint8_t *store,
                      size_t stride, const uint32_t *ids, size_t n, uint8_t *scratch, float *out);

/* True when a and b rotate alike (quant_ops.rotation: same dimensions,
 * rounds, seed and centre), so one rotated query serves both. */
bool quant_same_rotation(const quant *a, const quant *b);
/* rot = q's rotation of query - centre (scratch: dim floats); returns
 * |query - centre|^2, for prepare_rotated. q must have a rotation. */
double quant_rotate_query(const quant *q, const float *query, float *scratch, float *rot);
/* prepare() of every kind with a rotation: the query rotated into
 * scratch[dim, 2 dim), then prepare_rotated. */
void quant_prepare_rotating(const quant *q, const float *query, void *qstate, float *scratch);

/* The smallest and largest of n >= 1 floats (a query's range before it is
 * quantized to a grid). */
void quant_range(const float *v, size_t n, float *lo, float *hi);

/* The mean of n rows of q->dim floats into out: the centre that TurboQuant
 * and binary codes subtract for L2 (one pass, in double). */
rotor_status quant_mean(const quant *q, const float *x, size_t n, float *out);

/* ---- error bounds of estimates -----------------------------------------
 *
 * A rerank can skip candidates, with the same results as scoring every
 * one, if each estimate comes with a proven bound on its error: a
 * candidate whose lower bound exceeds the k-th exact distance found so far
 * cannot enter the top k. Every kind with a bound has an estimate that is exact for some
 * vector x~ the code stands for (and, where the query is quantized too, a
 * query q~ near q), so the bound is the triangle inequality with
 * r = |x - x~|, computed at encode time and kept per vector:
 *
 *   distance form (PQ: est = |q - x~|^2)
 *       |q - x| >= |q - x~| - r
 *   inner-product form (sq8, tq, tqip: est from <q~, x~>, with |x| exact)
 *       |<q, x> - <q~, x~>| <= |q| r + |q - q~| |x~|,   |x~| <= |x| + r
 *
 * Per query, prepare() records |q| and the query's own error (sq8's 8-bit
 * query, 4-bit PQ's uint8 tables). Where that error dominates, a kind also
 * refines the bound of the few candidates a rerank actually reaches
 * (refine_bounds: sq8 scores them again with a 16-bit query and uses the
 * distance form, 4-bit PQ with its float tables), so the cheap bound of
 * every candidate only has to order them (and which are refined never
 * changes the results). Binary RaBitQ-style codes have no such bound
 * worth having: their estimate <q, o~> / <o~, o> is exact for
 * x~ = o~ / <o~, o>, whose distance to o is sqrt(1 - a^2) / a with a =
 * <o~, o> ~ 0.8 at one bit, so the bound would span most of the distance
 * range and stop nothing; RaBitQ's own bound is probabilistic (it holds
 * with high probability, not always). They keep the fixed rerank depth.
 *
 * Every bound also gives up quant_round_slack(q) times the magnitudes it
 * combines: the estimate, the exact distance and the bound itself are float
 * sums of at most dim + a few terms, each off by at most that much
 * (Higham's gamma_n = n u / (1 - n u) with u = 2^-24, doubled). */
static inline float quant_round_slack(const quant *q) {
    return (float)((double)(q->dim + 64) * 0x1p-23);
}
/* The lower bound of the inner-product form: the distance estimate est of
 * `metric` whose inner product is off by at most err; `mag` bounds the
 * absolute values of the terms behind est and the exact distance, for the
 * rounding allowance `eps`. */
static inline float quant_ip_lower_bound(rotor_metric metric, float est, float err, float mag,
                                         float eps) {
    const float lb = metric == ROTOR_METRIC_L2 ? est - 2.0f * err : est - err;
    return lb - eps * (fabsf(est) + mag);
}

/* Helpers for kinds whose store is codes side by side. */
size_t quant_plain_store_bytes(const quant *q, size_t n);
void quant_plain_store(const quant *q, uint8_t *store, size_t i, const uint8_t *code);
void quant_plain_load(const quant *q, const uint8_t *store, size_t i, uint8_t *code);

/* ---- fast-scan tables (pq_fastscan.c) -----------------------------------
 *
 * Fast-scan kinds (PQ 4-bit, binary fast-scan) score a code as a sum of m
 * 16-entry tables, one per 4-bit field. Quantized to uint8 with one step for
 * all tables,
 *
 *   lut[s][j] = round((T[s][j] - min_j T[s][j]) / delta),
 *   delta     = max_s (max_j T[s][j] - min_j T[s][j]) / 255,
 *
 * every sum is bias + delta * (integer sum), bias = sum_s min_j T[s][j],
 * within m * delta / 2 of the float sum. One global step, rather than one per
 * table, is what lets the integer sums of different tables be added at all.
 * `tab` holds m x 16 floats; `lut` (lut_bytes, the simd fastscan_accumulate
 * layout) is written whole: tables past m read as zero. */
void quant_fastscan_tables(const float *tab, size_t m, size_t lut_bytes, uint8_t *lut, float *delta,
                           float *bias);

/* ---- serialization (quant_io.c) -----------------------------------------
 *
 * A quantizer's parameter block, for an index file to embed: a fixed
 * little-endian header and the kind's trained state (layout in quant_io.c).
 */

/* Bytes quant_save writes for q (fixed once q is trained). */
size_t quant_saved_size(const quant *q);
/* Writes q's parameter block into buf (quant_saved_size bytes). */
rotor_status quant_save(const quant *q, uint8_t *buf, size_t size);
/* Rebuilds a quantizer from a block written by quant_save. Validates
 * everything before trusting it; never reads outside buf[0..size). */
rotor_status quant_load(const uint8_t *buf, size_t size, const rotor_allocator *a, quant **out);

/* The payload of kinds whose trained state is one vector of dim floats (the
 * L2 centre of TurboQuant and binary codes): checks that every float is
 * finite and, unless q->metric is L2, zero (only L2 is ever centred), then
 * copies them to `centre`. `what` names the vector in the error sentence. */
rotor_status quant_load_centre(const quant *q, const uint8_t *src, size_t n, const char *what,
                               float *centre);

/* Code si of store src into slot di of store dst (q's store layout both),
 * through `code` (a code's bytes) unless q copies between stores itself. */
static inline void quant_copy(const quant *q, uint8_t *dst, size_t di, const uint8_t *src,
                              size_t si, uint8_t *code) {
    if (q->ops->copy != NULL) {
        q->ops->copy(q, dst, di, src, si);
    } else {
        q->ops->load(q, src, si, code);
        q->ops->store(q, dst, di, code);
    }
}

#endif /* ROTOR_QUANT_H */
