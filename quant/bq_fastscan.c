/*
 * Binary codes in the fast-scan layout (bin1fs, bin2fs): RaBitQ's estimator,
 * scored the way 4-bit PQ is (Gao & Long, RaBitQ, section 3.3.2, batch
 * estimation with fast-scan).
 *
 * A code is the bytes bq.c writes; only its place in the store differs. Its
 * bits are cut into 4-bit fields of 4 / bits dimensions each:
 *
 *   bin1fs: field g = the signs of dimensions 4g..4g+3       (bit i: dim 4g+i)
 *   bin2fs: field g = [m(2g+1) s(2g+1) m(2g) s(2g)]           (low bit first:
 *           sign and magnitude of dimension 2g, then of 2g+1)
 *
 * so <v, q'> = sum_g T[g][field g], with T[g][f] the sum over the field's
 * dimensions j of v_j(f) q'_j, 16 entries per field computed once per query.
 * Quantized to uint8 (quant_fastscan_tables), the sums run in the simd
 * fastscan_accumulate kernel, 32 codes per call. A block is
 *
 *   [npairs rows of 32 bytes]  row p, byte v: fields 2p (low nibble) and
 *                              2p + 1 (high nibble) of the block's vector v,
 *                              the layout of quant/pq_fastscan.c
 *   [32 floats t]              |x - c| of each vector
 *   [32 floats mult]           t / <v, o'> of each vector (the correction)
 *
 * and a vector's estimate is mult * (bias + delta * sum), turned into the
 * index's distance as bq.c does. For bin1fs field bytes are the sign
 * plane's bytes as they are: a byte of the plane holds 8 dimensions, low bit
 * first, which is two fields in the nibble order above.
 *
 * Against the popcount scan of bq.c: the same code bytes, a 4-bit quantized
 * query there, an 8-bit quantized table here, and one shuffle per 64 fields
 * of 32 codes instead of 4 popcounts per code.
 */
#include <string.h>

#include "quant/bq_impl.h"
#include "simd/simd.h"

/* Field g of a code: its 4 bits, in the order drawn above. Bits past the
 * last dimension are zero in the planes, so the last field needs no care. */
static unsigned field_of(unsigned bits, const uint8_t *sign, const uint8_t *mag, size_t g) {
    if (bits == 1)
        return (sign[g / 2] >> (4 * (g & 1))) & 15u;
    /* Dimensions 2g and 2g + 1 sit in bits (2g & 7) and (2g & 7) + 1 of
     * the same byte of each plane. */
    const unsigned sh = (unsigned)(2 * g) & 7u;
    const unsigned sb = (sign[g / 4] >> sh) & 3u, mb = (mag[g / 4] >> sh) & 3u;
    return (sb & 1u) | (mb & 1u) << 1 | (sb >> 1) << 2 | (mb >> 1) << 3;
}

static void bqfs_store(const quant *q, uint8_t *store, size_t i, const uint8_t *code) {
    const bq_state *s = q->impl;
    uint8_t *blk = store + i / BQFS_BLOCK * s->block_bytes;
    const size_t v = i % BQFS_BLOCK;
    const uint8_t *sign = code + s->nfloats * sizeof(float), *mag = sign + s->plane_bytes;
    for (size_t p = 0; p < s->npairs; p++) {
        unsigned lo = field_of(q->spec.bits, sign, mag, 2 * p);
        unsigned hi = 2 * p + 1 < s->groups ? field_of(q->spec.bits, sign, mag, 2 * p + 1) : 0;
        blk[p * BQFS_BLOCK + v] = (uint8_t)(lo | hi << 4);
    }
    float *factors = (float *)(void *)(blk + s->npairs * BQFS_BLOCK);
    memcpy(factors + v, code, sizeof(float));                              /* t */
    memcpy(factors + BQFS_BLOCK + v, code + sizeof(float), sizeof(float)); /* mult */
}

static void bqfs_load(const quant *q, const uint8_t *store, size_t i, uint8_t *code) {
    const bq_state *s = q->impl;
    const uint8_t *blk = store + i / BQFS_BLOCK * s->block_bytes;
    const size_t v = i % BQFS_BLOCK;
    uint8_t *sign = code + s->nfloats * sizeof(float), *mag = sign + s->plane_bytes;
    memset(sign, 0, s->plane_bytes * q->spec.bits);
    for (size_t g = 0; g < s->groups; g++) {
        const unsigned f = (blk[g / 2 * BQFS_BLOCK + v] >> (4 * (g & 1))) & 15u;
        if (q->spec.bits == 1) {
            sign[g / 2] |= (uint8_t)(f << (4 * (g & 1)));
            continue;
        }
        for (unsigned k = 0; k < 2; k++) {
            const size_t j = 2 * g + k;
            if (j >= q->dim)
                break;
            if ((f >> (2 * k)) & 1u)
                sign[j >> 3] |= (uint8_t)(1u << (j & 7));
            if ((f >> (2 * k + 1)) & 1u)
                mag[j >> 3] |= (uint8_t)(1u << (j & 7));
        }
    }
    /* The counts bq.c keeps beside t and mult follow from the planes. */
    const uint8_t *factors = blk + s->npairs * BQFS_BLOCK;
    memcpy(code, factors + v * sizeof(float), sizeof(float));
    memcpy(code + sizeof(float), factors + (BQFS_BLOCK + v) * sizeof(float), sizeof(float));
    bq_put_counts(q, code);
}

/* A column of one block to a column of another: the fields and factors as
 * they are, where a load rebuilds the planes bit by bit (2-bit codes of
 * 784 dimensions: 3 % of a Fashion-MNIST build, filling the automatic
 * choice's sample graphs with neighbours' codes). */
static void bqfs_copy(const quant *q, uint8_t *dst, size_t di, const uint8_t *src, size_t si) {
    const bq_state *s = q->impl;
    uint8_t *db = dst + di / BQFS_BLOCK * s->block_bytes;
    const uint8_t *sb = src + si / BQFS_BLOCK * s->block_bytes;
    const size_t dv = di % BQFS_BLOCK, sv = si % BQFS_BLOCK;
    for (size_t p = 0; p < s->npairs; p++)
        db[p * BQFS_BLOCK + dv] = sb[p * BQFS_BLOCK + sv];
    uint8_t *df = db + s->npairs * BQFS_BLOCK;
    const uint8_t *sf = sb + s->npairs * BQFS_BLOCK;
    memcpy(df + dv * sizeof(float), sf + sv * sizeof(float), sizeof(float)); /* t */
    memcpy(df + (BQFS_BLOCK + dv) * sizeof(float), sf + (BQFS_BLOCK + sv) * sizeof(float),
           sizeof(float)); /* mult */
}

static size_t bqfs_store_bytes(const quant *q, size_t n) {
    const bq_state *s = q->impl;
    return (n + BQFS_BLOCK - 1) / BQFS_BLOCK * s->block_bytes;
}

static void bqfs_prepare_rotated(const quant *q, const float *rot, double qq, void *qstate,
                                 float *scratch) {
    const bq_state *s = q->impl;
    const size_t d = q->dim;
    bqfs_qhead *h = qstate;
    uint8_t *lut = (uint8_t *)qstate + BQFS_QHEAD_BYTES;
    float *tab = scratch + 2 * d;
    /* T[g][f] = sum over the field's dimensions k of v_k(f) y_k: a few
     * multiply-adds by constant rows of levels, which vectorize. */
    static const float sign_of[4][16] = {
        {-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1},
        {-1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1},
        {-1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1},
        {-1, -1, -1, -1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1, 1},
    };
    const size_t per = 4 / q->spec.bits; /* dimensions per field */
    float level[2][16];                  /* bin2: v of the field's two dimensions */
    for (unsigned f = 0; f < 16; f++)
        for (unsigned k = 0; k < 2; k++) {
            const unsigned two = (f >> (2 * k)) & 3u; /* [m s] */
            level[k][f] = (two & 1u ? 1.0f : -1.0f) * (two & 2u ? s->c1 : s->c0);
        }
    for (size_t g = 0; g < s->groups; g++) {
        float y[4] = {0, 0, 0, 0};
        for (size_t k = 0; k < per && g * per + k < d; k++)
            y[k] = rot[g * per + k];
        float *t = tab + g * 16;
        if (per == 4)
            for (unsigned f = 0; f < 16; f++)
                t[f] = sign_of[0][f] * y[0] + sign_of[1][f] * y[1] + sign_of[2][f] * y[2] +
                       sign_of[3][f] * y[3];
        else
            for (unsigned f = 0; f < 16; f++)
                t[f] = level[0][f] * y[0] + level[1][f] * y[1];
    }
    quant_fastscan_tables(tab, s->groups, s->lut_bytes, lut, &h->delta, &h->bias);
    h->qq = (float)qq;
}

/* The corrections of a block's 32 sums run as loops over the block with
 * the metric chosen outside them, so the compiler can vectorize them: as
 * one call per code they were as many instructions as the lookups (on
 * Debian SIFT, bin2fs in an IVF at nprobe 48). The arithmetic is
 * cm_ip_distance's, in its order. */
static void bqfs_scan(const quant *q, const void *qstate, const uint8_t *store, size_t first,
                      size_t n, float *out) {
    const bq_state *s = q->impl;
    const simd_ops *ops = simd_ops_get();
    const bqfs_qhead *h = qstate;
    const uint8_t *lut = (const uint8_t *)qstate + BQFS_QHEAD_BYTES;
    const float bias = h->bias, delta = h->delta, qq = h->qq;
    const size_t end = first + n;
    uint32_t acc[BQFS_BLOCK];
    float t[BQFS_BLOCK], mult[BQFS_BLOCK], est[BQFS_BLOCK];
    for (size_t b = first / BQFS_BLOCK; b * BQFS_BLOCK < end; b++) {
        const uint8_t *blk = store + b * s->block_bytes;
        ops->fastscan_accumulate(blk, 1, s->npairs, lut, acc);
        memcpy(t, blk + s->npairs * BQFS_BLOCK, sizeof t);
        memcpy(mult, blk + s->npairs * BQFS_BLOCK + sizeof t, sizeof mult);
        /* Sums stay below groups * 255 < 2^31: the signed conversion is exact. */
        for (size_t v = 0; v < BQFS_BLOCK; v++)
            est[v] = mult[v] * (bias + delta * (float)(int32_t)acc[v]);
        switch (q->metric) {
        case ROTOR_METRIC_L2:
            for (size_t v = 0; v < BQFS_BLOCK; v++)
                est[v] = t[v] * t[v] + qq - 2 * est[v];
            break;
        case ROTOR_METRIC_IP:
            for (size_t v = 0; v < BQFS_BLOCK; v++)
                est[v] = -est[v];
            break;
        case ROTOR_METRIC_COSINE:
            for (size_t v = 0; v < BQFS_BLOCK; v++)
                est[v] = 1 - est[v];
            break;
        }
        const size_t base = b * BQFS_BLOCK;
        const size_t lo = first > base ? first : base;
        const size_t hi = end < base + BQFS_BLOCK ? end : base + BQFS_BLOCK;
        memcpy(out + (lo - first), est + (lo - base), (hi - lo) * sizeof *est);
    }
}

const quant_ops bqfs_ops = {
    .train = bq_train,
    .encode = bq_encode,
    .decode = bq_decode,
    .prepare = quant_prepare_rotating,
    .scan = bqfs_scan,
    .store_bytes = bqfs_store_bytes,
    .store = bqfs_store,
    .load = bqfs_load,
    .copy = bqfs_copy,
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
    .prepare_rotated = bqfs_prepare_rotated,
};
