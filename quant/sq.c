/*
 * 8-bit scalar codes of the rotated vector (sq8), scored by integer dot
 * products: the re-estimating code of a graph whose walk runs on a coarser
 * one.
 *
 * After the rotation every coordinate of a unit vector has the same
 * distribution, so one uniform grid per vector serves all of them (no
 * training, and no per-dimension ranges for outliers to stretch): subtract
 * the centre c (the data mean for L2, zero otherwise), keep t = |x - c|,
 * rotate u = (x - c) / t, and store
 *
 *   [t][s = max_j |u_j| / 127][sum_j c_j]     three floats
 *   [c_j = round(u_j / s)]                    d signed bytes, -127..127
 *
 * The query is rotated the same way and quantized to unsigned bytes,
 * q'_j ~ lo + delta b_j, so that
 *
 *   <u, q'> ~ s (lo sum_j c_j + delta sum_j b_j c_j)
 *
 * and the last sum is one u8 x i8 dot product (VPDPBUSD with AVX-512 VNNI):
 * some 20 ns for 768 dimensions against 250 for a table lookup per
 * coordinate (tq8's Lloyd-Max levels are not a grid). Both roundings are of
 * 8 bits, so an estimate is within about 1e-3 of the exact inner product of
 * unit vectors, which ranks like the float vectors for all but near ties.
 */
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "simd/simd.h"

enum { SQ_FLOATS = 3, SQ_QHEAD = 64, SQ_MAX_DIM = 65536 };

typedef struct sq_state {
    rht rot;
    float *centroid; /* dim floats; zero unless trained (L2) */
} sq_state;

/* Query state: [lo][delta][|q - c|^2][eq][lo2][delta2][eq1] padded to
 * SQ_QHEAD, then d bytes b_j, then d bytes b2_j. The second bytes quantize
 * what the first left, e_j = q_j - (lo + delta b_j) ~ lo2 + delta2 b2_j;
 * eq1 is |e|, eq what remains after both. Only the error bound reads them
 * (a candidate's inner product with the query to 16 bits, at the cost of a
 * second 8-bit dot product). */
enum { SQ_LO, SQ_DELTA, SQ_QQ, SQ_EQ, SQ_LO2, SQ_DELTA2, SQ_EQ1 };

/* Rounds v[j] - lo to the grid of `delta` into b[j] (delta > 0). */
static void to_grid(const float *v, size_t d, float lo, float delta, uint8_t *b) {
    const float inv = 1.0f / delta;
    for (size_t j = 0; j < d; j++) {
        /* >= 0 by construction; the clamp catches rounding past 255 and NaN. */
        const float t = (v[j] - lo) * inv + 0.5f;
        b[j] = (uint8_t)(t < 255.0f ? (int)t : 255);
    }
}

static rotor_status sq_train(quant *q, const float *x, size_t n, unsigned threads) {
    (void)threads;
    sq_state *s = q->impl;
    if (q->metric != ROTOR_METRIC_L2 || n == 0)
        return ROTOR_OK;
    return quant_mean(q, x, n, s->centroid);
}

static void sq_encode(const quant *q, const float *x, uint8_t *code, float *scratch) {
    const sq_state *s = q->impl;
    const size_t d = q->dim;
    float *u = scratch + d;
    const double t = sqrt(rht_forward_centred(&s->rot, x, s->centroid, scratch, u));
    float top = 0.0f;
    for (size_t j = 0; j < d; j++)
        top = fabsf(u[j]) > top ? fabsf(u[j]) : top;
    /* top / t is the largest coordinate of the unit vector; a zero vector
     * keeps step 0 and codes 0, and its estimate reduces to |q - c|^2. */
    const double step = top > 0.0f ? (double)top / t / 127.0 : 0.0;
    int8_t *c = (int8_t *)(code + SQ_FLOATS * sizeof(float));
    long sum = 0;
    for (size_t j = 0; j < d; j++) {
        long v = step > 0 ? lrint(u[j] / t / step) : 0;
        v = v > 127 ? 127 : v < -127 ? -127 : v;
        c[j] = (int8_t)v;
        sum += v;
    }
    const float f[SQ_FLOATS] = {(float)t, (float)step, (float)sum};
    memcpy(code, f, sizeof f);
}

static void sq_decode(const quant *q, const uint8_t *code, float *out, float *scratch) {
    const sq_state *s = q->impl;
    const size_t d = q->dim;
    float f[SQ_FLOATS];
    memcpy(f, code, sizeof f);
    const int8_t *c = (const int8_t *)(code + sizeof f);
    for (size_t j = 0; j < d; j++)
        scratch[j] = f[0] * f[1] * (float)c[j];
    rht_inverse_centred(&s->rot, scratch, s->centroid, out);
}

static const rht *sq_rotation(const quant *q, const float **centre) {
    const sq_state *s = q->impl;
    *centre = s->centroid;
    return &s->rot;
}

static void sq_prepare_rotated(const quant *q, const float *rot, double qq, void *qstate,
                               float *scratch) {
    const size_t d = q->dim;
    float *head = qstate;
    uint8_t *b = (uint8_t *)qstate + SQ_QHEAD, *b2 = b + d;
    float lo, hi;
    quant_range(rot, d, &lo, &hi);
    const float delta = hi > lo ? (hi - lo) / 255.0f : 1.0f;
    to_grid(rot, d, lo, delta, b);
    /* What the grid left, quantized again (scratch is free now). */
    float *e = scratch;
    for (size_t j = 0; j < d; j++)
        e[j] = (float)((double)rot[j] - ((double)lo + (double)delta * b[j]));
    float lo2, hi2;
    quant_range(e, d, &lo2, &hi2);
    const float delta2 = hi2 > lo2 ? (hi2 - lo2) / 255.0f : 1.0f;
    to_grid(e, d, lo2, delta2, b2);
    double ee = 0, ee1 = 0;
    for (size_t j = 0; j < d; j++) {
        const double e1 = (double)rot[j] - ((double)lo + (double)delta * b[j]);
        const double r = e1 - ((double)lo2 + (double)delta2 * b2[j]);
        ee1 += e1 * e1;
        ee += r * r;
    }
    head[SQ_LO] = lo;
    head[SQ_DELTA] = delta;
    head[SQ_QQ] = (float)qq;
    head[SQ_EQ] = (float)(sqrt(ee) * (1.0 + 0x1p-20)); /* rounded up */
    head[SQ_LO2] = lo2;
    head[SQ_DELTA2] = delta2;
    head[SQ_EQ1] = (float)(sqrt(ee1) * (1.0 + 0x1p-20));
}

static void sq_scan(const quant *q, const void *qstate, const uint8_t *store, size_t first,
                    size_t n, float *out) {
    const simd_ops *ops = simd_ops_get();
    const float *head = qstate;
    const float lo = head[SQ_LO], delta = head[SQ_DELTA], qq = head[SQ_QQ];
    const uint8_t *b = (const uint8_t *)qstate + SQ_QHEAD;
    /* <x - c, q - c> = t <u, q'> = t step (lo sum + delta <b, c>), then the
     * metric's distance from it: as cm_ip_distance, term by term. */
    float p[5] = {lo, delta, 0, 0, -1};
    switch (q->metric) {
    case ROTOR_METRIC_L2:
        p[2] = qq;
        p[3] = 1;
        p[4] = -2;
        break;
    case ROTOR_METRIC_IP: break;
    case ROTOR_METRIC_COSINE: p[2] = 1; break;
    }
    ops->sq8_estimates(b, store + first * q->code_bytes, n, q->dim, q->code_bytes, p, out);
}

/* The bound (quant.h, "error bounds of estimates"). In the rotated, centred
 * space the code stands for x~_j = t s c_j, r = |x - x~|, and the scan's
 * inner product is exactly <q', x~>, q' the 8-bit query.
 *
 * The cheap bound, from the estimate and the code's t alone: with |x| = t
 * exact, <q, x> is within |q| r + |q - q'| |x~| of it, |x~| <= t + r.
 *
 * The refined one, for the candidates the cheap one does not settle: the
 * 8-bit query's error times |x~| was most of the cheap bound on SIFT, so
 * the candidate is scored again with the query to 16 bits, q'' = q' + e',
 * whose error eq is about 1/255 of the first: <q, x~> is within eq |x~| of
 * <q'', x~> = t s ((lo + lo2) sum c + delta <b, c> + delta2 <b2, c>). For
 * L2, with |x~|^2 = (t s)^2 <c, c> read from the code too,
 *
 *   |q - x~|^2 = |q|^2 + |x~|^2 - 2 <q, x~>,   |q - x| >= |q - x~| - r,
 *
 * the distance form, which on SIFT needs about two thirds of the reads of
 * the inner-product form; IP and cosine keep that form (<q, x> within
 * |q| r of <q, x~>), with the 16-bit query. Three 8-bit dot products per
 * candidate: too many to spend on all of a deep rerank's candidates. */
static float sq_residual(const quant *q, const float *x, const uint8_t *code, float *scratch) {
    const sq_state *s = q->impl;
    const size_t d = q->dim;
    float *u = scratch + d;
    rht_forward_centred(&s->rot, x, s->centroid, scratch, u);
    float f[SQ_FLOATS];
    memcpy(f, code, sizeof f);
    const int8_t *c = (const int8_t *)(code + sizeof f);
    const double scale = (double)f[0] * f[1];
    double rr = 0;
    for (size_t j = 0; j < d; j++) {
        const double e = (double)u[j] - scale * c[j];
        rr += e * e;
    }
    return (float)sqrt(rr);
}

/* The code's t (|x - c|) with its residual, or false when either is not a
 * finite distance (a damaged, unverified file): then nothing is bounded. */
static bool sq_factors(const quant *q, const uint8_t *store, const float *resid, uint32_t id,
                       float f[SQ_FLOATS], float *r) {
    memcpy(f, store + (size_t)id * q->code_bytes, SQ_FLOATS * sizeof(float));
    *r = resid[id];
    return *r >= 0.0f && *r < INFINITY && f[0] >= 0.0f && f[0] < INFINITY;
}

static void sq_lower_bounds(const quant *q, const void *qstate, const uint8_t *store,
                            const float *resid, const uint32_t *ids, size_t n, float *est) {
    const float *head = qstate;
    const float qq = head[SQ_QQ], eq1 = head[SQ_EQ1], qnorm = sqrtf(qq);
    const float eps = quant_round_slack(q);
    const bool l2 = q->metric == ROTOR_METRIC_L2;
    for (size_t i = 0; i < n; i++) {
        float f[SQ_FLOATS], r;
        if (!sq_factors(q, store, resid, ids[i], f, &r)) {
            est[i] = -INFINITY;
            continue;
        }
        const float t = f[0];
        const float err = qnorm * r + eq1 * (t + r);
        const float mag = 2.0f * (qnorm + eq1) * (t + r) + (l2 ? t * t + qq : 0.0f);
        est[i] = quant_ip_lower_bound(q->metric, est[i], err, mag, eps);
    }
}

static void sq_refine_bounds(const quant *q, const void *qstate, const uint8_t *store,
                             const float *resid, const uint32_t *ids, size_t n, float *lb) {
    const simd_ops *ops = simd_ops_get();
    const size_t d = q->dim;
    const float *head = qstate;
    const uint8_t *b = (const uint8_t *)qstate + SQ_QHEAD, *b2 = b + d;
    const float qq = head[SQ_QQ], eq = head[SQ_EQ], qnorm = sqrtf(qq);
    const float lo = head[SQ_LO] + head[SQ_LO2], delta = head[SQ_DELTA], delta2 = head[SQ_DELTA2];
    const float eps = quant_round_slack(q);
    for (size_t i = 0; i < n; i++) {
        float f[SQ_FLOATS], r;
        if (!sq_factors(q, store, resid, ids[i], f, &r))
            continue; /* the cheap bound already gave up on it */
        const int8_t *c =
            (const int8_t *)(store + (size_t)ids[i] * q->code_bytes + SQ_FLOATS * sizeof(float));
        const float ts = f[0] * f[1];
        const float ip = ts * (lo * f[2] + delta * (float)ops->dot_u8i8(b, c, d) +
                               delta2 * (float)ops->dot_u8i8(b2, c, d));
        const float xn = ts * sqrtf((float)ops->dot_i8(c, c, d)); /* |x~| */
        const float err = eq * xn;                                /* |<q, x~> - ip| */
        float fine;
        if (q->metric == ROTOR_METRIC_L2) {
            const float a = qq + xn * xn - 2.0f * ip - 2.0f * err;
            const float gap = (a > 0.0f ? sqrtf(a) : 0.0f) - r;
            const float sq = gap > 0.0f ? gap * gap : 0.0f;
            fine = sq - eps * (qq + xn * xn + 2.0f * fabsf(ip) + f[0] * f[0] + sq);
        } else {
            const float one = q->metric == ROTOR_METRIC_COSINE ? 1.0f : 0.0f;
            fine = quant_ip_lower_bound(q->metric, one - ip, err + qnorm * r,
                                        one + 2.0f * (qnorm + eq) * (xn + r), eps);
        }
        lb[i] = fine > lb[i] ? fine : lb[i]; /* both hold */
    }
}

float quant_sq8_norm2(const quant *q, const uint8_t *code) {
    float f[SQ_FLOATS];
    memcpy(f, code, sizeof f);
    const int8_t *c = (const int8_t *)(code + sizeof f);
    const float ts = f[0] * f[1];
    return ts * ts * (float)simd_ops_get()->dot_i8(c, c, q->dim);
}

float quant_sq8_l2(const quant *q, const uint8_t *a, float norm2_a, const uint8_t *b,
                   float norm2_b) {
    float fa[SQ_FLOATS], fb[SQ_FLOATS];
    memcpy(fa, a, sizeof fa);
    memcpy(fb, b, sizeof fb);
    const int32_t dot = simd_ops_get()->dot_i8((const int8_t *)(a + sizeof fa),
                                               (const int8_t *)(b + sizeof fb), q->dim);
    const float ip = (fa[0] * fa[1]) * (fb[0] * fb[1]) * (float)dot;
    const float d2 = norm2_a + norm2_b - 2.0f * ip;
    return d2 > 0.0f ? d2 : 0.0f;
}

void quant_sq8_l2_ids(const quant *q, const uint8_t *a, float norm2_a, const uint8_t *store,
                      size_t stride, const uint32_t *ids, size_t n, uint8_t *scratch, float *out) {
    const simd_ops *ops = simd_ops_get();
    float fa[SQ_FLOATS];
    memcpy(fa, a, sizeof fa);
    /* a's values shifted to unsigned bytes, for the u8 x i8 product:
     * sum_j (a_j + 128) b_j = <a, b> + 128 sum_j b_j, and b's head holds
     * that last sum exactly (an integer below 2^24). */
    const uint8_t *va = a + sizeof fa;
    for (size_t j = 0; j < q->dim; j++)
        scratch[j] = va[j] ^ 0x80;
    enum { STEP = 64 };
    int32_t dots[STEP];
    for (size_t i0 = 0; i0 < n; i0 += STEP) {
        const size_t m = n - i0 < STEP ? n - i0 : STEP;
        ops->dot_u8i8_ids(scratch, (const int8_t *)(store + sizeof fa), stride, ids + i0, m, q->dim,
                          dots);
        for (size_t i = 0; i < m; i++) {
            const uint8_t *b = store + (size_t)ids[i0 + i] * stride;
            float fb[SQ_FLOATS], norm2_b;
            memcpy(fb, b, sizeof fb);
            memcpy(&norm2_b, b + q->code_bytes, sizeof norm2_b);
            const int32_t dot = (int32_t)((uint32_t)dots[i] - ((uint32_t)(int32_t)fb[2] << 7));
            const float ip = (fa[0] * fa[1]) * (fb[0] * fb[1]) * (float)dot;
            const float d2 = norm2_a + norm2_b - 2.0f * ip;
            out[i0 + i] = d2 > 0.0f ? d2 : 0.0f;
        }
    }
}

static void sq_release(quant *q) {
    sq_state *s = q->impl;
    if (s == NULL)
        return;
    rht_release(&s->rot, &q->alloc);
    cm_free(&q->alloc, s->centroid);
    cm_free(&q->alloc, s);
    q->impl = NULL;
}

static size_t sq_payload_bytes(const quant *q) { return q->dim * sizeof(float); }

static void sq_save_payload(const quant *q, uint8_t *dst) {
    const sq_state *s = q->impl;
    memcpy(dst, s->centroid, q->dim * sizeof(float));
}

static rotor_status sq_load_payload(quant *q, const uint8_t *src, size_t n) {
    sq_state *s = q->impl;
    return quant_load_centre(q, src, n, "sq8 centre", s->centroid);
}

static const quant_ops sq_ops = {
    .train = sq_train,
    .encode = sq_encode,
    .decode = sq_decode,
    .prepare = quant_prepare_rotating,
    .scan = sq_scan,
    .store_bytes = quant_plain_store_bytes,
    .store = quant_plain_store,
    .load = quant_plain_load,
    .release = sq_release,
    .payload_bytes = sq_payload_bytes,
    .save_payload = sq_save_payload,
    .load_payload = sq_load_payload,
    .residual = sq_residual,
    .lower_bounds = sq_lower_bounds,
    .refine_bounds = sq_refine_bounds,
    .rotation = sq_rotation,
    .prepare_rotated = sq_prepare_rotated,
};

rotor_status quant_sq_setup(quant *q, uint64_t seed) {
    CM_RETURN_IF(q->spec.kind != QUANT_SQ || q->spec.bits != 8, ROTOR_ERR_INVALID_ARGUMENT,
                 "scalar codes have 8 bits");
    /* The integer dot product is exact below 2^31: 255 * 127 * d. */
    CM_RETURN_IF(q->dim > SQ_MAX_DIM, ROTOR_ERR_DIMENSION,
                 "sq8 supports up to %d dimensions, not %zu", SQ_MAX_DIM, q->dim);
    sq_state *s = cm_calloc(&q->alloc, sizeof *s, "sq8 quantizer");
    if (s == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    q->impl = s;
    q->ops = &sq_ops;
    s->centroid = cm_calloc(&q->alloc, q->dim * sizeof(float), "sq8 centre");
    rotor_status st =
        s->centroid ? rht_init(&s->rot, &q->alloc, q->dim, 3, seed) : ROTOR_ERR_OUT_OF_MEMORY;
    if (st != ROTOR_OK) {
        sq_release(q);
        return st;
    }
    q->code_bytes = SQ_FLOATS * sizeof(float) + q->dim;
    q->query_bytes = SQ_QHEAD + 2 * q->dim;
    q->scratch_floats = 2 * q->dim;
    q->needs_training = false;
    return ROTOR_OK;
}
