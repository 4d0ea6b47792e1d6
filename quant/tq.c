/*
 * TurboQuant, MSE variant (Zandieh, Daliri, Hadian, Mirrokni 2025, Alg. 1).
 *
 * Store the norm, rotate the unit vector, and quantize every rotated
 * coordinate with the one Lloyd-Max codebook solved for the coordinate
 * distribution (tq_codebook.c). Nothing is learned from data, so an index
 * can encode its first vector the moment it exists, and adding vectors never
 * invalidates earlier codes.
 *
 * Codes are kept bit-packed and generic here; the layouts the search kernels
 * want (nibbles in 32-vector blocks, bit planes) are built from these.
 */
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "simd/simd.h"

rotor_status tq_init(tq *q, const rotor_allocator *a, size_t dim, unsigned bits, uint64_t seed) {
    memset(q, 0, sizeof *q);
    CM_RETURN_IF(bits < 1 || bits > TQ_MAX_BITS, ROTOR_ERR_INVALID_ARGUMENT,
                 "TurboQuant bits must be 1 to %d, not %u", TQ_MAX_BITS, bits);
    CM_FORWARD(rht_init(&q->rot, a, dim, 3, seed));
    rotor_status st = tq_codebook_solve(a, bits, q->rot.n, &q->cb);
    if (st != ROTOR_OK) {
        rht_release(&q->rot, a);
        return st;
    }
    q->code_bytes = (q->rot.n * bits + 7) / 8;
    return ROTOR_OK;
}

void tq_release(tq *q, const rotor_allocator *a) {
    rht_release(&q->rot, a);
    memset(q, 0, sizeof *q);
}

void tq_encode(const tq *q, const float *x, float *scratch, uint8_t *code, float *norm,
               float *align) {
    const size_t n = q->rot.n;
    double ss = 0;
    for (size_t j = 0; j < q->rot.dim; j++)
        ss += (double)x[j] * x[j];
    *norm = (float)sqrt(ss);
    rht_forward(&q->rot, x, scratch);
    /* Rotating first and scaling after keeps one pass: the unit vector's
     * coordinate times sqrt(n) is x_rot * sqrt(n) / |x|. */
    float scale = ss > 0 ? (float)(sqrt((double)n) / sqrt(ss)) : 0.0f;
    memset(code, 0, q->code_bytes);
    double dot = 0;
    for (size_t j = 0; j < n; j++) {
        float t = scratch[j] * scale;
        unsigned c = tq_codebook_encode(&q->cb, t);
        tq_put_bits(code, j, q->cb.bits, c);
        dot += (double)t * q->cb.centroid[c];
    }
    if (align != NULL) /* <u, u^>: both coordinates carry a factor sqrt(n) */
        *align = (float)(dot / (double)n);
}

void tq_decode(const tq *q, const uint8_t *code, float norm, float *scratch, float *out) {
    const size_t n = q->rot.n;
    float scale = norm / (float)sqrt((double)n);
    for (size_t j = 0; j < n; j++)
        scratch[j] = q->cb.centroid[tq_get_bits(code, j, q->cb.bits)] * scale;
    rht_inverse(&q->rot, scratch, out);
}

float tq_mse_estimate(const tq *q, const float *y_rotated, const uint8_t *code, float norm) {
    const size_t n = q->rot.n;
    float acc = simd_ops_get()->tq_dot(y_rotated, q->cb.centroid, code, n, q->cb.bits);
    return acc * norm / sqrtf((float)n);
}

/*
 * The inner-product variant. Quantizing with the MSE codebook alone shrinks
 * inner products: the centroids are conditional means, so the reconstruction
 * is shorter than the vector on average and <y, x~> underestimates <y, x>
 * (at 1 bit by the factor 2/pi). TurboQuant spends one of the b bits on a
 * QJL sketch of the residual r = u - u~ instead: for a Gaussian row s,
 * E[s sign(<s, r>)] = sqrt(2/pi) r / |r|, so
 *
 *     <y, u~> + sqrt(pi/2) / d * |r| * <S y, sign(S r)>
 *
 * is an unbiased estimate of <y, u>. Everything is computed in the rotated
 * space, where the residual is known coordinate by coordinate; S composed
 * with an orthogonal rotation is again Gaussian, so nothing is lost.
 *
 * S is dense (d^2 floats and O(d^2) per encode and per query), as in the
 * paper; practitioners report the sketch rarely pays for ranking, which is
 * what rotor's evaluation measures before any index relies on it.
 */
rotor_status tq_ip_init(tq_ip *q, const rotor_allocator *a, size_t dim, unsigned bits,
                        uint64_t seed) {
    memset(q, 0, sizeof *q);
    CM_RETURN_IF(bits < 2 || bits > TQ_MAX_BITS, ROTOR_ERR_INVALID_ARGUMENT,
                 "inner-product TurboQuant bits must be 2 to %d, not %u", TQ_MAX_BITS, bits);
    size_t cells;
    CM_RETURN_IF(
        cm_mul_overflow(dim, dim, &cells) || cells > ((size_t)1 << 28), ROTOR_ERR_DIMENSION,
        "the QJL sketch of %zu dimensions needs a %zu x %zu matrix, too large", dim, dim, dim);
    CM_FORWARD(tq_init(&q->mse, a, dim, bits - 1, seed));
    q->S = cm_alloc(a, cells * sizeof(float), "QJL matrix");
    if (q->S == NULL) {
        tq_release(&q->mse, a);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    /* Box-Muller on a stream independent of the rotation's. */
    uint64_t state = seed ^ 0x5851f42d4c957f2dULL;
    for (size_t i = 0; i < cells; i += 2) {
        double u1 = ((double)(cm_splitmix64(&state) >> 11) + 0.5) * 0x1.0p-53;
        double u2 = (double)(cm_splitmix64(&state) >> 11) * 0x1.0p-53;
        double rad = sqrt(-2.0 * log(u1));
        q->S[i] = (float)(rad * cos(6.283185307179586 * u2));
        if (i + 1 < cells)
            q->S[i + 1] = (float)(rad * sin(6.283185307179586 * u2));
    }
    q->sign_bytes = (dim + 7) / 8;
    return ROTOR_OK;
}

void tq_ip_release(tq_ip *q, const rotor_allocator *a) {
    cm_free(a, q->S);
    tq_release(&q->mse, a);
    memset(q, 0, sizeof *q);
}

void tq_ip_encode(const tq_ip *q, const float *x, float *scratch, uint8_t *code, uint8_t *signs,
                  float *norm, float *gamma) {
    const tq *m = &q->mse;
    const size_t d = m->rot.dim;
    float *rot = scratch, *resid = scratch + d;
    tq_encode(m, x, rot, code, norm, NULL);
    /* rot now holds the rotated x; the residual of the unit vector: */
    float inv = *norm > 0 ? 1.0f / *norm : 0.0f;
    const float cscale = (float)(1.0 / sqrt((double)d));
    double rr = 0;
    for (size_t j = 0; j < d; j++) {
        resid[j] = rot[j] * inv - m->cb.centroid[tq_get_bits(code, j, m->cb.bits)] * cscale;
        rr += (double)resid[j] * resid[j];
    }
    *gamma = (float)sqrt(rr);
    memset(signs, 0, q->sign_bytes);
    const simd_ops *ops = simd_ops_get();
    for (size_t i = 0; i < d; i++)
        if (ops->dot_f32(q->S + i * d, resid, d) >= 0)
            signs[i >> 3] |= (uint8_t)(1u << (i & 7));
}

void tq_ip_prepare(const tq_ip *q, const float *y, tq_ip_query *qp) {
    const size_t d = q->mse.rot.dim;
    rht_forward(&q->mse.rot, y, qp->rotated);
    const simd_ops *ops = simd_ops_get();
    double sum = 0;
    for (size_t i = 0; i < d; i++) {
        qp->sketch[i] = ops->dot_f32(q->S + i * d, qp->rotated, d);
        sum += qp->sketch[i];
    }
    qp->sketch_sum = (float)sum;
}

float tq_ip_estimate(const tq_ip *q, const tq_ip_query *qp, const uint8_t *code,
                     const uint8_t *signs, float norm, float gamma) {
    const size_t d = q->mse.rot.dim;
    double base = tq_mse_estimate(&q->mse, qp->rotated, code, norm);
    /* sum_i sign_i * sketch_i = 2 * (sum over set bits) - (sum over all) */
    double acc = 2.0 * simd_ops_get()->masked_sum_f32(qp->sketch, signs, d) - qp->sketch_sum;
    return (float)(base + norm * gamma * sqrt(3.14159265358979323846 / 2) / (double)d * acc);
}

/* ---- TurboQuant behind the quantizer interface --------------------------
 *
 * Code layout, MSE:  [norm f32][norm / <u, u^> f32][n indices of b bits, packed]
 *             IP:    [norm f32][gamma f32][n indices of b-1 bits][n sign bits]
 * Query state:       [|q|^2 f32][pad][rotated query, n f32][S q, n f32 (IP only)]
 *
 * Distances come from the inner-product estimate: squared L2 as
 * |x|^2 + |q|^2 - 2 <x, q> with the exact stored norm, -<x, q> for IP, and
 * 1 - <x, q> for cosine (inputs arrive normalised).
 *
 * For L2 the vectors are first centred on the mean of the data the index was
 * built from (one pass, nothing iterative, and optional: an index started
 * empty centres on zero), as RaBitQ centres on a centroid. Without it, data
 * whose vectors share a large common part (pixel intensities, SIFT) spend the
 * codes on that part: on Fashion-MNIST 1-bit codes found 4 % of the true
 * top-10 uncentred. Squared distances do not change under a shift, so only
 * the codes get better. Inner products do change, so IP and cosine keep the
 * origin.
 */
typedef struct tq_state {
    tq mse;   /* QUANT_TQ */
    tq_ip ip; /* QUANT_TQIP (its .mse is the MSE stage) */
    bool is_ip;
    float *center; /* dim floats, zero until trained (L2 only) */
    /* The MSE variant's refined bound: the codebook levels squared, and
     * dim ones, so that tq_dot sums a code's squared levels. */
    float *level_sq, *ones;
} tq_state;

enum { TQ_QHEAD = 16 }; /* bytes before the rotated query, keeps it aligned */

static const tq *tq_mse_of(const quant *q) {
    const tq_state *s = q->impl;
    return s->is_ip ? &s->ip.mse : &s->mse;
}

static rotor_status tqq_train(quant *q, const float *x, size_t n, unsigned threads) {
    (void)threads;
    tq_state *s = q->impl;
    if (q->metric != ROTOR_METRIC_L2 || n == 0)
        return ROTOR_OK;
    return quant_mean(q, x, n, s->center);
}

static void tqq_encode(const quant *q, const float *x_in, uint8_t *code, float *scratch) {
    const tq_state *s = q->impl;
    float *x = scratch + 2 * q->dim;
    for (size_t j = 0; j < q->dim; j++)
        x[j] = x_in[j] - s->center[j];
    float norm, gamma = 0;
    if (s->is_ip) {
        const tq *m = &s->ip.mse;
        tq_ip_encode(&s->ip, x, scratch, code + 8, code + 8 + m->code_bytes, &norm, &gamma);
        memcpy(code + 4, &gamma, 4);
    } else {
        float align;
        tq_encode(&s->mse, x, scratch, code + 8, &norm, &align);
        /* The scan scores with |x| / <u, u^> instead of |x|: RaBitQ's
         * estimator <u^, q> / <u^, u> corrects each vector's own shrinkage,
         * which the plain reconstruction estimate leaves in (biased by the
         * distortion, and by a different amount per vector, which is what
         * costs ranking). A degenerate alignment falls back to |x|. */
        float ipscale = align > 1e-6f ? norm / align : norm;
        memcpy(code + 4, &ipscale, 4);
    }
    memcpy(code, &norm, 4);
}

static void tqq_decode(const quant *q, const uint8_t *code, float *out, float *scratch) {
    const tq_state *s = q->impl;
    float norm;
    memcpy(&norm, code, 4);
    if (!s->is_ip) {
        tq_decode(&s->mse, code + 8, norm, scratch, out);
        for (size_t j = 0; j < q->dim; j++)
            out[j] += s->center[j];
        return;
    }
    /* MSE reconstruction plus the QJL term sqrt(pi/2)/d * gamma * S^T signs,
     * in the rotated space, then rotated back. */
    const tq_ip *ip = &s->ip;
    const size_t d = q->dim;
    float gamma;
    memcpy(&gamma, code + 4, 4);
    const uint8_t *codes = code + 8, *signs = code + 8 + ip->mse.code_bytes;
    const float cscale = (float)(1.0 / sqrt((double)d));
    for (size_t j = 0; j < d; j++)
        scratch[j] = ip->mse.cb.centroid[tq_get_bits(codes, j, ip->mse.cb.bits)] * cscale;
    const double k = sqrt(3.14159265358979323846 / 2) / (double)d * gamma;
    for (size_t i = 0; i < d; i++) {
        float sgn = (signs[i >> 3] >> (i & 7)) & 1 ? (float)k : (float)-k;
        const float *row = ip->S + i * d;
        for (size_t j = 0; j < d; j++)
            scratch[j] += sgn * row[j];
    }
    for (size_t j = 0; j < d; j++)
        scratch[j] *= norm;
    rht_inverse(&ip->mse.rot, scratch, out);
    for (size_t j = 0; j < d; j++)
        out[j] += s->center[j];
}

static void tqq_prepare(const quant *q, const float *query_in, void *qstate, float *scratch) {
    const tq_state *s = q->impl;
    const size_t d = q->dim;
    float *head = qstate;
    float *rot = (float *)((uint8_t *)qstate + TQ_QHEAD);
    float *query = scratch;
    double qq = 0;
    for (size_t j = 0; j < d; j++) {
        query[j] = query_in[j] - s->center[j];
        qq += (double)query[j] * query[j];
    }
    head[0] = (float)qq;
    if (s->is_ip) {
        tq_ip_query qp = {rot, rot + d, 0};
        tq_ip_prepare(&s->ip, query, &qp);
        head[1] = qp.sketch_sum;
    } else {
        rht_forward(&s->mse.rot, query, rot);
    }
}

static void tqq_scan(const quant *q, const void *qstate, const uint8_t *store, size_t first,
                     size_t n, float *out) {
    const tq_state *s = q->impl;
    const float qq = ((const float *)qstate)[0];
    const float *rot = (const float *)((const uint8_t *)qstate + TQ_QHEAD);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *code = store + (first + i) * q->code_bytes;
        float norm, ip;
        memcpy(&norm, code, 4);
        if (s->is_ip) {
            float gamma;
            memcpy(&gamma, code + 4, 4);
            tq_ip_query qp = {(float *)rot, (float *)rot + q->dim, ((const float *)qstate)[1]};
            ip =
                tq_ip_estimate(&s->ip, &qp, code + 8, code + 8 + s->ip.mse.code_bytes, norm, gamma);
        } else {
            float ipscale;
            memcpy(&ipscale, code + 4, 4);
            ip = tq_mse_estimate(&s->mse, rot, code + 8, ipscale);
        }
        out[i] = cm_ip_distance(q->metric, ip, norm * norm, qq);
    }
}

/* The bound (quant.h, "error bounds of estimates"). Both variants estimate
 * <q, x> as an exact inner product <R q, x~> in the rotated space: the MSE
 * variant with x~_j = (|x| / <u, u^>) c_j / sqrt(n) (the scaled codebook
 * levels it scores with), the inner-product one with the decoded vector
 * |x| (c_j / sqrt(n) + gamma sqrt(pi/2) / d (S^T signs)_j). With the query
 * exact and |x| stored, the error is at most |q| |x - x~|. */
static float tqq_residual(const quant *q, const float *x_in, const uint8_t *code, float *scratch) {
    const tq_state *s = q->impl;
    const tq *m = tq_mse_of(q);
    const size_t d = q->dim;
    float *rot = scratch, *approx = scratch + d, *x = scratch + 2 * d;
    for (size_t j = 0; j < d; j++)
        x[j] = x_in[j] - s->center[j];
    rht_forward(&m->rot, x, rot);
    float f[2];
    memcpy(f, code, sizeof f);
    const uint8_t *codes = code + 8;
    /* f[1] is the MSE variant's |x| / <u, u^>, the inner-product one's gamma */
    const double level = (double)(s->is_ip ? f[0] : f[1]) / sqrt((double)d);
    for (size_t j = 0; j < d; j++)
        approx[j] = (float)(level * m->cb.centroid[tq_get_bits(codes, j, m->cb.bits)]);
    if (s->is_ip) {
        const uint8_t *signs = codes + m->code_bytes;
        const double k = (double)f[0] * f[1] * sqrt(3.14159265358979323846 / 2) / (double)d;
        for (size_t i = 0; i < d; i++) {
            const float sgn = (signs[i >> 3] >> (i & 7)) & 1 ? (float)k : (float)-k;
            const float *row = s->ip.S + i * d;
            for (size_t j = 0; j < d; j++)
                approx[j] += sgn * row[j];
        }
    }
    double rr = 0;
    for (size_t j = 0; j < d; j++) {
        const double e = (double)rot[j] - approx[j];
        rr += e * e;
    }
    return (float)sqrt(rr);
}

static void tqq_lower_bounds(const quant *q, const void *qstate, const uint8_t *store,
                             const float *resid, const uint32_t *ids, size_t n, float *est) {
    const float qq = ((const float *)qstate)[0], qnorm = sqrtf(qq);
    const float eps = quant_round_slack(q);
    const bool l2 = q->metric == ROTOR_METRIC_L2;
    for (size_t i = 0; i < n; i++) {
        const float r = resid[ids[i]];
        float norm;
        memcpy(&norm, store + (size_t)ids[i] * q->code_bytes, sizeof norm);
        if (!(r >= 0.0f && r < INFINITY) || !(norm >= 0.0f && norm < INFINITY)) {
            est[i] = -INFINITY;
            continue;
        }
        const float mag = 2.0f * qnorm * (norm + r) + (l2 ? norm * norm + qq : 0.0f);
        est[i] = quant_ip_lower_bound(q->metric, est[i], qnorm * r, mag, eps);
    }
}

/* The MSE variant's refined bound for L2: the distance form, with |x~|^2 =
 * (|x| / <u, u^>)^2 / n sum_j c_j^2 summed from the code (tq_dot with a
 * table of squared levels) and <q, x~> exact (the query is not quantized):
 *
 *   |q - x~|^2 = |q|^2 + |x~|^2 - 2 <q, x~>,   |q - x| >= |q - x~| - r.
 *
 * Under IP and cosine the cheap bound is already all there is; the
 * inner-product variant's x~ (a QJL term of d^2 work) has no cheap norm. */
static void tqq_refine_bounds(const quant *q, const void *qstate, const uint8_t *store,
                              const float *resid, const uint32_t *ids, size_t n, float *lb) {
    const tq_state *s = q->impl;
    if (s->is_ip || q->metric != ROTOR_METRIC_L2)
        return;
    const simd_ops *ops = simd_ops_get();
    const float qq = ((const float *)qstate)[0];
    const float *rot = (const float *)((const uint8_t *)qstate + TQ_QHEAD);
    const float eps = quant_round_slack(q);
    const size_t d = q->dim;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *code = store + (size_t)ids[i] * q->code_bytes;
        float f[2];
        memcpy(f, code, sizeof f);
        const float r = resid[ids[i]];
        if (!(r >= 0.0f && r < INFINITY) || !(f[1] >= 0.0f && f[1] < INFINITY))
            continue; /* the cheap bound already gave up on it */
        const float ip = tq_mse_estimate(&s->mse, rot, code + 8, f[1]);
        const float xx =
            f[1] * f[1] / (float)d * ops->tq_dot(s->ones, s->level_sq, code + 8, d, s->mse.cb.bits);
        const float a = qq + xx - 2.0f * ip;
        const float gap = (a > 0.0f ? sqrtf(a) : 0.0f) - r;
        const float sq = gap > 0.0f ? gap * gap : 0.0f;
        const float fine = sq - eps * (qq + xx + 2.0f * fabsf(ip) + sq);
        lb[i] = fine > lb[i] ? fine : lb[i]; /* both hold */
    }
}

static void tqq_release(quant *q) {
    tq_state *s = q->impl;
    if (s == NULL)
        return;
    if (s->is_ip)
        tq_ip_release(&s->ip, &q->alloc);
    else
        tq_release(&s->mse, &q->alloc);
    cm_free(&q->alloc, s->center);
    cm_free(&q->alloc, s->level_sq);
    cm_free(&q->alloc, s->ones);
    cm_free(&q->alloc, s);
    q->impl = NULL;
}

/* The payload is the centre, also when it is zero (not centred): a fixed
 * size keeps the block's length a function of its header alone. */
static size_t tqq_payload_bytes(const quant *q) { return q->dim * sizeof(float); }

static void tqq_save_payload(const quant *q, uint8_t *dst) {
    const tq_state *s = q->impl;
    memcpy(dst, s->center, q->dim * sizeof(float));
}

static rotor_status tqq_load_payload(quant *q, const uint8_t *src, size_t n) {
    tq_state *s = q->impl;
    return quant_load_centre(q, src, n, "TurboQuant centre", s->center);
}

static const quant_ops tq_ops = {
    .train = tqq_train,
    .encode = tqq_encode,
    .decode = tqq_decode,
    .prepare = tqq_prepare,
    .scan = tqq_scan,
    .store_bytes = quant_plain_store_bytes,
    .store = quant_plain_store,
    .load = quant_plain_load,
    .release = tqq_release,
    .payload_bytes = tqq_payload_bytes,
    .save_payload = tqq_save_payload,
    .load_payload = tqq_load_payload,
    .residual = tqq_residual,
    .lower_bounds = tqq_lower_bounds,
    .refine_bounds = tqq_refine_bounds,
};

rotor_status quant_tq_setup(quant *q, uint64_t seed) {
    tq_state *s = cm_calloc(&q->alloc, sizeof *s, "TurboQuant state");
    if (s == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    s->is_ip = q->spec.kind == QUANT_TQIP;
    rotor_status st = s->is_ip ? tq_ip_init(&s->ip, &q->alloc, q->dim, q->spec.bits, seed)
                               : tq_init(&s->mse, &q->alloc, q->dim, q->spec.bits, seed);
    if (st != ROTOR_OK) {
        cm_free(&q->alloc, s);
        return st;
    }
    q->impl = s;
    q->ops = &tq_ops;
    s->center = cm_calloc(&q->alloc, q->dim * sizeof(float), "TurboQuant centre");
    if (!s->is_ip) {
        s->level_sq = cm_alloc(&q->alloc, 256 * sizeof(float), "TurboQuant levels");
        s->ones = cm_alloc(&q->alloc, q->dim * sizeof(float), "TurboQuant levels");
    }
    if (s->center == NULL || (!s->is_ip && (s->level_sq == NULL || s->ones == NULL))) {
        tqq_release(q);
        q->impl = NULL;
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    if (!s->is_ip) {
        for (unsigned j = 0; j < 256; j++)
            s->level_sq[j] = s->mse.cb.centroid[j] * s->mse.cb.centroid[j];
        for (size_t j = 0; j < q->dim; j++)
            s->ones[j] = 1.0f;
    }
    const tq *m = tq_mse_of(q);
    q->code_bytes = 8 + m->code_bytes + (s->is_ip ? s->ip.sign_bytes : 0);
    q->query_bytes = TQ_QHEAD + (s->is_ip ? 2 : 1) * q->dim * sizeof(float);
    q->scratch_floats = 3 * q->dim;
    q->needs_training = false; /* centring helps L2; nothing requires it */
    return ROTOR_OK;
}
