/*
 * Product quantization (Jegou, Douze, Schmid, "Product quantization for
 * nearest neighbor search", TPAMI 2011): cut each vector into m subvectors
 * of dsub = dim / m coordinates, learn a codebook of ksub centroids per
 * subspace by k-means, and store a vector as the index of the nearest
 * centroid in each subspace. This file holds what both code widths share
 * (setup, training, nearest-centroid search, ADC tables) and the 8-bit
 * codes; pq_fastscan.c has the 4-bit codes and their SIMD layout.
 *
 * Search uses asymmetric distance computation (ADC, paper section 3.1): the
 * query stays exact, and for each subspace a table holds its distance to
 * every centroid, |q_s - c_sj|^2 for L2 or <q_s, c_sj> for inner product
 * (and cosine, whose inputs arrive normalised). A code's estimate is then
 * the sum of m table entries, exactly the distance from the query to the
 * decoded vector, since both L2 and the inner product split over disjoint
 * subspaces. No norm is stored: the tables already hold everything.
 *
 * 8-bit codes are m bytes side by side (the plain store). The scan is m
 * dependent loads per code; four codes are summed at once so the loads of
 * one can overlap the adds of another. Each code's sum runs over the
 * subspaces in order, so the result does not depend on that interleaving.
 *
 * Training samples at most PQ_TRAIN_PER_CENTROID rows per centroid, evenly
 * spaced (the first, and every n/ns-th after), so the cost is bounded and a given
 * training set always gives the same codebooks; each subspace gets its own
 * k-means seed derived from the quantizer's. Unlike the other kinds, PQ
 * does not rotate: its subspaces are contiguous runs of the input's
 * coordinates. (OPQ's learned rotation, which balances variance across
 * subspaces, is not implemented.)
 *
 * Before training the codebooks are all zero: every operation is safe and
 * every code is 0. The index layer refuses to encode while q->trained is
 * false, so functions here assume training happened.
 */
#include <math.h>
#include <string.h>

#include "quant/kmeans.h"
#include "quant/pq_impl.h"
#include "simd/simd.h"

static const float *centroid(const pq_state *s, size_t sub, size_t j) {
    return s->centroids + (sub * s->ksub + j) * s->dsub;
}

/* Row i of an evenly spaced sample of ns rows out of n, without forming
 * i * n (which could overflow for huge n). */
static size_t sample_row(size_t i, size_t n, size_t ns) { return i * (n / ns) + i * (n % ns) / ns; }

void pq_build_ct(pq_state *s) {
    const size_t kp = km_pad(s->ksub);
    double xx = 0;
    for (size_t m = 0; m < s->m; m++) {
        km_transpose(centroid(s, m, 0), s->ksub, s->dsub, s->ct + m * s->dsub * kp);
        double top = 0;
        for (size_t j = 0; j < s->ksub; j++) {
            double cc = 0;
            for (size_t t = 0; t < s->dsub; t++)
                cc += (double)centroid(s, m, j)[t] * centroid(s, m, j)[t];
            top = cc > top ? cc : top;
        }
        xx += top;
    }
    s->xmax = (float)(sqrt(xx) * (1.0 + 0x1p-20)); /* rounded up */
}

rotor_status pq_train(quant *q, const float *x, size_t n, unsigned threads) {
    pq_state *s = q->impl;
    char name[32];
    quant_spec_name(&q->spec, name, sizeof name);
    CM_RETURN_IF(n < s->ksub, ROTOR_ERR_INVALID_ARGUMENT,
                 "%s needs at least %zu training vectors, got %zu", name, s->ksub, n);
    const size_t cap = PQ_TRAIN_PER_CENTROID * s->ksub;
    const size_t ns = n < cap ? n : cap;
    for (size_t i = 0; i < ns; i++) {
        const size_t row = sample_row(i, n, ns);
        for (size_t t = 0; t < q->dim; t++)
            CM_RETURN_IF(!isfinite(x[row * q->dim + t]), ROTOR_ERR_NOT_FINITE,
                         "%s training vector %zu holds NaN or infinity at dimension %zu", name, row,
                         t);
    }
    /* New codebooks go to a fresh buffer and replace the old ones only when
     * every subspace succeeded, so a failed retraining changes nothing. */
    float *sub = cm_alloc(&q->alloc, ns * s->dsub * sizeof(float), "pq training sample");
    float *cent = cm_alloc(&q->alloc, s->m * s->ksub * s->dsub * sizeof(float), "pq codebooks");
    rotor_status st = ROTOR_ERR_OUT_OF_MEMORY;
    if (sub == NULL || cent == NULL)
        goto out;
    for (size_t m = 0; m < s->m; m++) {
        for (size_t i = 0; i < ns; i++)
            memcpy(sub + i * s->dsub, x + sample_row(i, n, ns) * q->dim + m * s->dsub,
                   s->dsub * sizeof(float));
        km_params p = {
            .k = s->ksub,
            .iters = KM_DEFAULT_ITERS,
            .threads = threads,
            .seed = s->seed + 0x9e3779b97f4a7c15ULL * (m + 1),
        };
        st = km_train(&q->alloc, sub, ns, s->dsub, s->dsub, &p, cent + m * s->ksub * s->dsub, NULL,
                      NULL);
        if (st != ROTOR_OK) {
            cm_fail_prefix(st, name);
            goto out;
        }
    }
    memcpy(s->centroids, cent, s->m * s->ksub * s->dsub * sizeof(float));
    pq_build_ct(s);
    st = ROTOR_OK;
out:
    cm_free(&q->alloc, sub);
    cm_free(&q->alloc, cent);
    return st;
}

uint32_t pq_nearest(const pq_state *s, size_t sub, const float *x) {
    const size_t kp = km_pad(s->ksub);
    return km_nearest_t(x + sub * s->dsub, s->ct + sub * s->dsub * kp, s->ksub, s->dsub, NULL);
}

void pq_decode_sub(const pq_state *s, size_t sub, size_t j, float *out) {
    memcpy(out + sub * s->dsub, centroid(s, sub, j), s->dsub * sizeof(float));
}

void pq_tables(const quant *q, const float *query, float *tab) {
    const pq_state *s = q->impl;
    if (s->ksub == 16) {
        simd_ops_get()->pq16_tables(query, s->ct, s->m, s->dsub, q->metric == ROTOR_METRIC_L2, tab);
        return;
    }
    const size_t kp = km_pad(s->ksub);
    /* From the transposed codebooks (coordinate-major, centroids along a
     * row), so the inner loop runs over centroids with no dependency
     * between iterations and vectorises at any baseline; a query's tables
     * are on the path of every search. */
    float acc[256];
    for (size_t m = 0; m < s->m; m++) {
        const float *qs = query + m * s->dsub;
        const float *ct = s->ct + m * s->dsub * kp;
        for (size_t j = 0; j < s->ksub; j++)
            acc[j] = 0.0f;
        if (q->metric == ROTOR_METRIC_L2) {
            for (size_t t = 0; t < s->dsub; t++) {
                const float x = qs[t], *row = ct + t * kp;
                for (size_t j = 0; j < s->ksub; j++) {
                    float diff = x - row[j];
                    acc[j] += diff * diff;
                }
            }
        } else {
            for (size_t t = 0; t < s->dsub; t++) {
                const float x = qs[t], *row = ct + t * kp;
                for (size_t j = 0; j < s->ksub; j++)
                    acc[j] += x * row[j];
            }
        }
        memcpy(tab + m * s->ksub, acc, s->ksub * sizeof(float));
    }
}

/* ---- the error bound (quant.h, "error bounds of estimates") --------------
 *
 * A float-table estimate is the distance from q to the decoded vector x~ (a
 * sum of table entries), so the bound is the distance form with
 * r = |x - x~|. (4-bit codes' uint8 tables add their rounding: see
 * pq_fastscan.c.) */

float pq_query_norm(const quant *q, const float *query) {
    double qq = 0;
    for (size_t j = 0; j < q->dim; j++)
        qq += (double)query[j] * query[j];
    return (float)sqrt(qq);
}

float pq_residual(const quant *q, const float *x, const uint8_t *code, float *scratch) {
    (void)scratch;
    const pq_state *s = q->impl;
    const bool four = q->spec.kind == QUANT_PQ4;
    double rr = 0;
    for (size_t m = 0; m < s->m; m++) {
        const unsigned j = four ? (code[m / 2] >> (4 * (m & 1))) & 15u : code[m];
        const float *c = centroid(s, m, j), *xs = x + m * s->dsub;
        for (size_t t = 0; t < s->dsub; t++) {
            const double e = (double)xs[t] - c[t];
            rr += e * e;
        }
    }
    return (float)sqrt(rr);
}

float pq_lower_bound(const quant *q, float est, float err, float qnorm, float r) {
    const pq_state *s = q->impl;
    const float eps = quant_round_slack(q);
    if (!(r >= 0.0f && r < INFINITY))
        return -INFINITY;
    if (q->metric == ROTOR_METRIC_L2) {
        /* |q - x~|^2 >= est - err, then |q - x| >= |q - x~| - r. Every
         * term is a sum of squares, so the rounding is relative to est. */
        const float a = est - err;
        const float b = (a > 0.0f ? sqrtf(a) : 0.0f) - r;
        return (b > 0.0f ? b * b : 0.0f) - eps * (2.0f * fabsf(est) + err + r * r);
    }
    /* -<q, x> >= -<q, x~> - |q| r; est is -<q, x~> (1 - <q, x~> for
     * cosine) within err, and |x| <= xmax + r. */
    const float one = q->metric == ROTOR_METRIC_COSINE ? 1.0f : 0.0f;
    return est - err - qnorm * r - eps * (fabsf(est) + err + one + 2.0f * qnorm * (s->xmax + r));
}

static void pq8_lower_bounds(const quant *q, const void *qstate, const uint8_t *store,
                             const float *resid, const uint32_t *ids, size_t n, float *est) {
    (void)store;
    const pq_state *s = q->impl;
    const float qnorm = ((const float *)qstate)[s->m * 256];
    for (size_t i = 0; i < n; i++)
        est[i] = pq_lower_bound(q, est[i], 0.0f, qnorm, resid[ids[i]]);
}

/* ---- serialization ------------------------------------------------------
 *
 * The payload is the codebooks as training left them, m x ksub x dsub
 * floats in s->centroids order; the transposed copy is rebuilt from them,
 * and an untrained quantizer has nothing to store (its codebooks are zero). */

size_t pq_payload_bytes(const quant *q) {
    const pq_state *s = q->impl;
    return q->trained ? s->m * s->ksub * s->dsub * sizeof(float) : 0;
}

void pq_save_payload(const quant *q, uint8_t *dst) {
    const pq_state *s = q->impl;
    if (q->trained)
        memcpy(dst, s->centroids, s->m * s->ksub * s->dsub * sizeof(float));
}

rotor_status pq_load_payload(quant *q, const uint8_t *src, size_t n) {
    pq_state *s = q->impl;
    char name[32];
    quant_spec_name(&q->spec, name, sizeof name);
    const size_t want = s->m * s->ksub * s->dsub * sizeof(float);
    CM_RETURN_IF(n != want, ROTOR_ERR_FORMAT,
                 "%s codebooks of %zu dimensions take %zu bytes, the block holds %zu", name, q->dim,
                 want, n);
    /* Every float is checked before any is installed, so a refused block
     * leaves the codebooks untouched. One NaN would poison every table that
     * reads its centroid, and every search through it. */
    for (size_t sub = 0; sub < s->m; sub++)
        for (size_t j = 0; j < s->ksub; j++)
            for (size_t t = 0; t < s->dsub; t++) {
                float v;
                memcpy(&v, src + (((sub * s->ksub) + j) * s->dsub + t) * sizeof(float), sizeof v);
                CM_RETURN_IF(!isfinite(v), ROTOR_ERR_FORMAT,
                             "%s centroid %zu of subspace %zu holds %s at coordinate %zu", name, j,
                             sub, isnan(v) ? "NaN" : "infinity", t);
            }
    memcpy(s->centroids, src, want);
    pq_build_ct(s);
    return ROTOR_OK;
}

/* ---- 8-bit codes -------------------------------------------------------- */

static void pq8_encode(const quant *q, const float *x, uint8_t *code, float *scratch) {
    (void)scratch;
    const pq_state *s = q->impl;
    for (size_t m = 0; m < s->m; m++)
        code[m] = (uint8_t)pq_nearest(s, m, x);
}

static void pq8_decode(const quant *q, const uint8_t *code, float *out, float *scratch) {
    (void)scratch;
    const pq_state *s = q->impl;
    for (size_t m = 0; m < s->m; m++)
        pq_decode_sub(s, m, code[m], out);
}

/* Query state: the float tables, m x 256, then |q| (for the bound). */
static void pq8_prepare(const quant *q, const float *query, void *qstate, float *scratch) {
    (void)scratch;
    const pq_state *s = q->impl;
    pq_tables(q, query, qstate);
    ((float *)qstate)[s->m * 256] = pq_query_norm(q, query);
}

static void pq8_scan(const quant *q, const void *qstate, const uint8_t *store, size_t first,
                     size_t n, float *out) {
    const pq_state *s = q->impl;
    simd_ops_get()->pq8_adc(qstate, store + first * s->m, s->m, n, out);
    for (size_t i = 0; i < n; i++)
        out[i] = pq_finish(q->metric, out[i]);
}

void pq_release(quant *q) {
    pq_state *s = q->impl;
    if (s == NULL)
        return;
    cm_free(&q->alloc, s->centroids);
    cm_free(&q->alloc, s->ct);
    cm_free(&q->alloc, s);
    q->impl = NULL;
}

static const quant_ops pq8_ops = {
    .train = pq_train,
    .encode = pq8_encode,
    .decode = pq8_decode,
    .prepare = pq8_prepare,
    .scan = pq8_scan,
    .store_bytes = quant_plain_store_bytes,
    .store = quant_plain_store,
    .load = quant_plain_load,
    .release = pq_release,
    .payload_bytes = pq_payload_bytes,
    .save_payload = pq_save_payload,
    .load_payload = pq_load_payload,
    .residual = pq_residual,
    .lower_bounds = pq8_lower_bounds,
};

rotor_status quant_pq_setup(quant *q, uint64_t seed) {
    char name[32];
    quant_spec_name(&q->spec, name, sizeof name);
    const bool four = q->spec.kind == QUANT_PQ4;
    CM_RETURN_IF(q->spec.kind != QUANT_PQ && !four, ROTOR_ERR_INVALID_ARGUMENT,
                 "quantizer kind %d is not product quantization", (int)q->spec.kind);
    CM_RETURN_IF(q->spec.bits != (four ? 4u : 8u), ROTOR_ERR_INVALID_ARGUMENT,
                 "%s codes have %u bits per subspace, not %u", name, four ? 4u : 8u, q->spec.bits);
    const size_t m = q->spec.m;
    CM_RETURN_IF(m == 0, ROTOR_ERR_INVALID_ARGUMENT, "%s needs 1 or more subspaces", name);
    CM_RETURN_IF(q->dim % m != 0, ROTOR_ERR_INVALID_ARGUMENT,
                 "%s needs a dimension divisible by %zu, this one has %zu", name, m, q->dim);
    const size_t ksub = four ? 16 : 256;
    size_t floats;
    CM_RETURN_IF(
        cm_mul_overflow(q->dim, ksub, &floats) || cm_mul_overflow(floats, sizeof(float), &floats),
        ROTOR_ERR_INVALID_ARGUMENT, "%s codebooks for %zu dimensions are too large", name, q->dim);
    pq_state *s = cm_calloc(&q->alloc, sizeof *s, "pq quantizer");
    if (s == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    q->impl = s;
    s->m = m;
    s->dsub = q->dim / m;
    s->ksub = ksub;
    s->seed = seed;
    /* ksub (16 or 256) is a multiple of 16, so the transposed tables are
     * no larger. */
    s->centroids = cm_calloc(&q->alloc, floats, "pq codebooks");
    s->ct = cm_calloc(&q->alloc, floats, "pq transposed codebooks");
    if (s->centroids == NULL || s->ct == NULL) {
        pq_release(q);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    q->needs_training = true;
    q->scratch_floats = 0;
    if (four) {
        s->npairs = (m + 1) / 2;
        s->block_bytes = s->npairs * PQ4_BLOCK;
        s->lut_bytes = (s->npairs + 1) / 2 * 128;
        q->ops = &pq4_ops;
        q->code_bytes = s->npairs;
        q->query_bytes = PQ4_QHEAD_BYTES + m * 16 * sizeof(float) + s->lut_bytes;
    } else {
        q->ops = &pq8_ops;
        q->code_bytes = m;
        q->query_bytes = m * 256 * sizeof(float) + CM_ALIGN; /* the tables, then |q| */
    }
    return ROTOR_OK;
}
