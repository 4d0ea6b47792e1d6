/*
 * Binary codes with RaBitQ-style corrections: 1-bit sign codes and 2-bit
 * sign-magnitude codes of the rotated vector.
 *
 * Encoding (Gao & Long, RaBitQ, SIGMOD 2024, section 3): subtract a centroid
 * c (the data mean for L2, which training computes in one pass; zero for
 * inner product and cosine), keep t = |x - c|, rotate the unit vector
 * o = (x - c) / t to o', and store
 *
 *   bin1: the signs of o'                      v_j = +-1
 *   bin2: the signs and one magnitude bit       v_j = +-(m_j ? c1 : c0)
 *         (m_j: |o'_j| beyond the middle boundary of the 2-bit Lloyd-Max
 *         codebook, c0 and c1 its levels; the same grid as tq2, stored as two
 *         bit planes so that it scores with AND + popcount)
 *
 * The estimator <o, q'> ~ <v, q'> / <v, o'> is unbiased in RaBitQ's analysis,
 * where the plain Hamming score is not even a distance: dividing by <v, o'>
 * (how well the code matches this particular vector) is the correction that
 * turns a rank into an estimate. Per vector the code keeps
 *
 *   [t][mult = t / <v, o'>][popcount(s)][popcount(m)][popcount(s & m)]   floats
 *   [sign bits][magnitude bits]                                          d/8 each
 *
 * (bin1 stores the first three floats and one plane). The query is rotated
 * the same way and quantized to 4 bits per coordinate, q'_j ~ lo + delta u_j,
 * so sums of q' over the set bits of a plane P become popcounts:
 *
 *   sum_{j in P} q'_j ~ lo |P| + delta * sum_k 2^k popcount(P & U_k)
 *
 * with U_k the k-th bit plane of u (RaBitQ uses 4 bits too: its error
 * converges there). The popcounts run on the SIMD and_popcount kernel.
 *
 * bin1fs and bin2fs are the same codes kept in 32-code fast-scan blocks and
 * scored by table lookups instead (bq_fastscan.c).
 */
#include <math.h>
#include <string.h>

#include "quant/bq_impl.h"
#include "simd/simd.h"

enum { QBITS = 4 };

/* Query state: [lo][delta][sum of q^ over all dims][|q - c|^2] then QBITS planes. */
enum { BQ_QHEAD = 16 };

rotor_status bq_train(quant *q, const float *x, size_t n, unsigned threads) {
    (void)threads;
    bq_state *s = q->impl;
    if (q->metric != ROTOR_METRIC_L2 || n == 0)
        return ROTOR_OK;
    return quant_mean(q, x, n, s->centroid);
}

void bq_encode(const quant *q, const float *x, uint8_t *code, float *scratch) {
    const bq_state *s = q->impl;
    const size_t d = q->dim;
    float *rot = scratch + d;
    const double t = sqrt(rht_forward_centred(&s->rot, x, s->centroid, scratch, rot));
    uint8_t *sign = code + s->nfloats * sizeof(float);
    uint8_t *mag = sign + s->plane_bytes;
    memset(sign, 0, s->plane_bytes * q->spec.bits);
    /* <v, o'> and the threshold, both in units where o' has unit variance
     * coordinates: o'_j * sqrt(d) / t. */
    const double unit = t > 0 ? sqrt((double)d) / t : 0;
    double vo = 0;
    for (size_t j = 0; j < d; j++) {
        double u = rot[j] * unit;
        bool pos = u >= 0;
        if (pos)
            sign[j >> 3] |= (uint8_t)(1u << (j & 7));
        double level = 1.0;
        if (q->spec.bits == 2) {
            bool big = fabs(u) > s->threshold;
            if (big)
                mag[j >> 3] |= (uint8_t)(1u << (j & 7));
            level = big ? s->c1 : s->c0;
        }
        vo += (pos ? level : -level) * u;
    }
    /* vo = sqrt(d) <v, o'_unit>, so mult = t sqrt(d) / vo turns <v, q'>
     * into the estimate of <x - c, q - c>. A zero vector (t = 0) gets
     * mult 0: its estimate reduces to |q - c|^2, which is exact. */
    const float f[2] = {(float)t, vo > 0 ? (float)(t * sqrt((double)d) / vo) : 0.0f};
    memcpy(code, f, sizeof f);
    bq_put_counts(q, code);
}

void bq_put_counts(const quant *q, uint8_t *code) {
    const bq_state *s = q->impl;
    const uint8_t *sign = code + s->nfloats * sizeof(float), *mag = sign + s->plane_bytes;
    size_t n[3] = {0, 0, 0}; /* set bits of s, of m, of s & m */
    for (size_t b = 0; b < s->plane_bytes; b++) {
        n[0] += (size_t)__builtin_popcount(sign[b]);
        if (q->spec.bits == 2) {
            n[1] += (size_t)__builtin_popcount(mag[b]);
            n[2] += (size_t)__builtin_popcount(sign[b] & mag[b]);
        }
    }
    const float f[3] = {(float)n[0], (float)n[1], (float)n[2]};
    memcpy(code + 2 * sizeof(float), f, (s->nfloats - 2) * sizeof(float));
}

void bq_decode(const quant *q, const uint8_t *code, float *out, float *scratch) {
    const bq_state *s = q->impl;
    const size_t d = q->dim;
    float f[5];
    memcpy(f, code, s->nfloats * sizeof(float));
    const uint8_t *sign = code + s->nfloats * sizeof(float), *mag = sign + s->plane_bytes;
    /* The code's direction v at the vector's length t, rotated back. */
    double vv = 0;
    for (size_t j = 0; j < d; j++) {
        float level = 1.0f;
        if (q->spec.bits == 2)
            level = (mag[j >> 3] >> (j & 7)) & 1 ? s->c1 : s->c0;
        scratch[j] = (sign[j >> 3] >> (j & 7)) & 1 ? level : -level;
        vv += (double)scratch[j] * scratch[j];
    }
    float scale = vv > 0 ? (float)(f[0] / sqrt(vv)) : 0.0f;
    for (size_t j = 0; j < d; j++)
        scratch[j] *= scale;
    rht_inverse_centred(&s->rot, scratch, s->centroid, out);
}

const rht *bq_rotation(const quant *q, const float **centre) {
    const bq_state *s = q->impl;
    *centre = s->centroid;
    return &s->rot;
}

static void bq_prepare_rotated(const quant *q, const float *rot, double qq, void *qstate,
                               float *scratch) {
    (void)scratch;
    const bq_state *s = q->impl;
    const size_t d = q->dim;
    float *head = qstate;
    uint8_t *planes = (uint8_t *)qstate + BQ_QHEAD;
    float lo, hi;
    quant_range(rot, d, &lo, &hi);
    float delta = hi > lo ? (hi - lo) / (float)((1 << QBITS) - 1) : 1.0f;
    memset(planes, 0, QBITS * s->plane_bytes);
    double sum = 0;
    for (size_t j = 0; j < d; j++) {
        unsigned u = (unsigned)lrintf((rot[j] - lo) / delta);
        if (u > (1u << QBITS) - 1)
            u = (1u << QBITS) - 1;
        sum += lo + delta * (double)u;
        for (unsigned k = 0; k < QBITS; k++)
            if ((u >> k) & 1)
                planes[k * s->plane_bytes + (j >> 3)] |= (uint8_t)(1u << (j & 7));
    }
    head[0] = lo;
    head[1] = delta;
    head[2] = (float)sum;
    head[3] = (float)qq;
}

/* sum of q^ over the set bits of `mask`, given popcount(mask). */
static inline float masked_sum(const simd_ops *ops, const uint8_t *mask, float pop,
                               const uint8_t *planes, size_t pb, float lo, float delta) {
    uint64_t acc = 0;
    for (unsigned k = 0; k < QBITS; k++)
        acc += ops->and_popcount(mask, planes + k * pb, pb) << k;
    return lo * pop + delta * (float)acc;
}

static void bq_scan(const quant *q, const void *qstate, const uint8_t *store, size_t first,
                    size_t n, float *out) {
    const bq_state *s = q->impl;
    const simd_ops *ops = simd_ops_get();
    const float *head = qstate;
    const float lo = head[0], delta = head[1], all = head[2], qq = head[3];
    const uint8_t *planes = (const uint8_t *)qstate + BQ_QHEAD;
    const size_t pb = s->plane_bytes;
    uint8_t both[4096];
    for (size_t i = 0; i < n; i++) {
        const uint8_t *code = store + (first + i) * q->code_bytes;
        float f[5];
        memcpy(f, code, s->nfloats * sizeof(float));
        const uint8_t *sign = code + s->nfloats * sizeof(float);
        float vq; /* <v, q'> */
        float ss = masked_sum(ops, sign, f[2], planes, pb, lo, delta);
        if (q->spec.bits == 1) {
            vq = 2 * ss - all;
        } else {
            const uint8_t *mag = sign + pb;
            float sm_sum = 0;
            for (size_t off = 0; off < pb; off += sizeof both) {
                size_t len = pb - off < sizeof both ? pb - off : sizeof both;
                for (size_t b = 0; b < len; b++)
                    both[b] = sign[off + b] & mag[off + b];
                uint64_t acc = 0;
                for (unsigned k = 0; k < QBITS; k++)
                    acc += ops->and_popcount(both, planes + k * pb + off, len) << k;
                sm_sum += delta * (float)acc;
            }
            sm_sum += lo * f[4];
            float m_sum = masked_sum(ops, mag, f[3], planes, pb, lo, delta);
            vq = s->c0 * (2 * ss - all) + (s->c1 - s->c0) * (2 * sm_sum - m_sum);
        }
        /* <x - c, q - c> ~ t * <v, q'> / <v, o'_unit>, mult = f[1] */
        float ip = f[1] * vq;
        out[i] = cm_ip_distance(q->metric, ip, f[0] * f[0], qq);
    }
}

void bq_release(quant *q) {
    bq_state *s = q->impl;
    if (s == NULL)
        return;
    rht_release(&s->rot, &q->alloc);
    cm_free(&q->alloc, s->centroid);
    cm_free(&q->alloc, s);
    q->impl = NULL;
}

/* The payload is the centroid, zero when not centred, so the block's length
 * follows from its header. */
size_t bq_payload_bytes(const quant *q) { return q->dim * sizeof(float); }

void bq_save_payload(const quant *q, uint8_t *dst) {
    const bq_state *s = q->impl;
    memcpy(dst, s->centroid, q->dim * sizeof(float));
}

rotor_status bq_load_payload(quant *q, const uint8_t *src, size_t n) {
    bq_state *s = q->impl;
    return quant_load_centre(q, src, n, "binary centroid", s->centroid);
}

static const quant_ops bq_ops = {
    .train = bq_train,
    .encode = bq_encode,
    .decode = bq_decode,
    .prepare = quant_prepare_rotating,
    .scan = bq_scan,
    .store_bytes = quant_plain_store_bytes,
    .store = quant_plain_store,
    .load = quant_plain_load,
    .release = bq_release,
    .payload_bytes = bq_payload_bytes,
    .save_payload = bq_save_payload,
    .load_payload = bq_load_payload,
    /* No error bound: the deterministic one is too wide to stop a rerank
     * and RaBitQ's is probabilistic (quant.h, "error bounds of
     * estimates"), so these codes keep the fixed rerank depth. */
    .residual = NULL,
    .lower_bounds = NULL,
    .rotation = bq_rotation,
    .prepare_rotated = bq_prepare_rotated,
};

rotor_status quant_bin_setup(quant *q, uint64_t seed) {
    CM_RETURN_IF(q->spec.kind != QUANT_BIN && q->spec.kind != QUANT_BINFS,
                 ROTOR_ERR_INVALID_ARGUMENT, "quantizer kind %d is not binary", (int)q->spec.kind);
    CM_RETURN_IF(q->spec.bits != 1 && q->spec.bits != 2, ROTOR_ERR_INVALID_ARGUMENT,
                 "binary codes have 1 or 2 bits, not %u", q->spec.bits);
    bq_state *s = cm_calloc(&q->alloc, sizeof *s, "binary quantizer");
    if (s == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    q->impl = s;
    q->ops = &bq_ops;
    s->centroid = cm_calloc(&q->alloc, q->dim * sizeof(float), "binary centroid");
    rotor_status st =
        s->centroid ? rht_init(&s->rot, &q->alloc, q->dim, 3, seed) : ROTOR_ERR_OUT_OF_MEMORY;
    if (st == ROTOR_OK && q->spec.bits == 2 && q->dim >= 2) {
        tq_codebook cb;
        st = tq_codebook_solve(&q->alloc, 2, q->dim, &cb);
        s->c0 = cb.centroid[2];
        s->c1 = cb.centroid[3];
        s->threshold = cb.boundary[2];
    } else if (q->spec.bits == 2) {
        s->c0 = 0.4528f, s->c1 = 1.5104f, s->threshold = 0.9816f; /* Gaussian limit */
    }
    if (st != ROTOR_OK) {
        bq_release(q);
        return st;
    }
    s->plane_bytes = (q->dim + 7) / 8;
    s->nfloats = q->spec.bits == 1 ? 3 : 5;
    q->code_bytes = s->nfloats * sizeof(float) + q->spec.bits * s->plane_bytes;
    q->query_bytes = BQ_QHEAD + QBITS * s->plane_bytes;
    q->scratch_floats = 2 * q->dim;
    if (q->spec.kind == QUANT_BINFS) {
        const size_t dims_per_group = 4 / q->spec.bits;
        s->groups = (q->dim + dims_per_group - 1) / dims_per_group;
        s->npairs = (s->groups + 1) / 2;
        s->block_bytes = s->npairs * BQFS_BLOCK + 2 * BQFS_BLOCK * sizeof(float);
        s->lut_bytes = (s->npairs + 1) / 2 * 128;
        q->ops = &bqfs_ops;
        q->query_bytes = BQFS_QHEAD_BYTES + s->lut_bytes;
        q->scratch_floats = 2 * q->dim + 16 * s->groups;
    }
    q->needs_training = false; /* the centroid helps L2, nothing requires it */
    return ROTOR_OK;
}
