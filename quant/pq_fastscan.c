/*
 * 4-bit product quantization with fast-scan search (André, Kermarrec,
 * Le Scouarnec, "Cache locality is not enough: high-performance nearest
 * neighbor search with product quantization fast scan", VLDB 2015; the
 * 32-vector blocks and uint16 accumulation follow FAISS's IndexPQFastScan).
 *
 * With 16 centroids per subspace, one subspace's ADC table has 16 entries:
 * quantized to uint8 it fits one 128-bit register, and a byte shuffle
 * (PSHUFB) looks up 16 codes at once (32 with AVX2, 64 with AVX-512). The
 * m tables of 16 floats are replaced per query by uint8 tables with one
 * step for all (quant_fastscan_tables, quant.h), so a code's estimate is
 * bias + delta * (integer sum), within m * delta / 2 of the float sum (the
 * bound tests/quant/test_pq.c checks). The same tables and kernel score
 * binary fast-scan codes (bq_fastscan.c).
 *
 * A vector's code (encode/decode, code_bytes = ceil(m / 2)) packs subspace
 * 2p in the low nibble of byte p and 2p + 1 in the high nibble (zero past
 * m). The store keeps codes in blocks of 32 vectors; within a block, row p
 * holds byte p of all 32 codes:
 *
 *   block b (npairs * 32 bytes), vector v = 0..31 of the block:
 *
 *            byte 0     byte 1     ...  byte 31
 *   row 0    [s1|s0]v0  [s1|s0]v1  ...  [s1|s0]v31    <- one 256-bit load
 *   row 1    [s3|s2]v0  [s3|s2]v1  ...  [s3|s2]v31
 *   ...
 *   row p    [s2p+1|s2p] for v0..v31
 *
 * so one 256-bit load of row p, masked with 0x0F, gives subspace 2p of all
 * 32 vectors in vector order, and shifted right by 4 and masked, subspace
 * 2p + 1; a 512-bit load takes rows p and p + 1 at once. store() and load()
 * are then a byte scatter and gather, and load() inverts store() exactly.
 * FAISS permutes the vectors inside a row so its uint16 sums come out in
 * order cheaply; rotor keeps them in order and untangles the sums once per
 * block (see the kernels in simd/), which keeps store/load trivial.
 *
 * The lookups and sums run in the simd_ops fastscan_accumulate kernel on
 * whole blocks; scan() converts the integer sums to floats and writes only
 * the requested range, so `first` and `n` need not be multiples of 32.
 * store_bytes(n) rounds up to whole blocks; the bytes of unused slots in the
 * last block are read by the kernel but never reported.
 */
#include <string.h>

#include "quant/pq_impl.h"
#include "simd/simd.h"

static const float *float_tables(const void *qstate) {
    return (const float *)((const uint8_t *)qstate + PQ4_QHEAD_BYTES);
}

static const uint8_t *u8_tables(const pq_state *s, const void *qstate) {
    return (const uint8_t *)qstate + PQ4_QHEAD_BYTES + s->m * 16 * sizeof(float);
}

static void pq4_encode(const quant *q, const float *x, uint8_t *code, float *scratch) {
    (void)scratch;
    const pq_state *s = q->impl;
    memset(code, 0, s->npairs);
    for (size_t m = 0; m < s->m; m++)
        code[m / 2] |= (uint8_t)(pq_nearest(s, m, x) << (4 * (m & 1)));
}

static void pq4_decode(const quant *q, const uint8_t *code, float *out, float *scratch) {
    (void)scratch;
    const pq_state *s = q->impl;
    for (size_t m = 0; m < s->m; m++)
        pq_decode_sub(s, m, (code[m / 2] >> (4 * (m & 1))) & 15u, out);
}

void quant_fastscan_tables(const float *tab, size_t m, size_t lut_bytes, uint8_t *lut, float *delta,
                           float *bias) {
    /* The kernel writes every table below m; only the last group's tables
     * past m need zeros (an IVF prepares a query a probed list). */
    const size_t whole = m / 4 * 128;
    memset(lut + whole, 0, lut_bytes - whole);
    simd_ops_get()->fastscan_quantize(tab, m, lut, delta, bias);
}

static void pq4_prepare(const quant *q, const float *query, void *qstate, float *scratch) {
    (void)scratch;
    const pq_state *s = q->impl;
    pq4_qhead *h = qstate;
    float *tab = (float *)((uint8_t *)qstate + PQ4_QHEAD_BYTES);
    uint8_t *lut = (uint8_t *)qstate + PQ4_QHEAD_BYTES + s->m * 16 * sizeof(float);
    pq_tables(q, query, tab);
    quant_fastscan_tables(tab, s->m, s->lut_bytes, lut, &h->delta, &h->bias);
    /* Only inner-product bounds read |q|; an IVF prepares a query a probe. */
    h->qnorm = q->metric == ROTOR_METRIC_L2 ? 0.0f : pq_query_norm(q, query);
}

/* The scan's estimate is the float-table sum to within m half steps of its
 * uint8 tables (each entry is rounded to nearest; the 2^-10 covers the
 * float arithmetic of that rounding): the cheap bound. On SIFT with 64
 * subspaces that is as much as the residual term itself, so the refined
 * bound scores the candidate again from the float tables: m lookups, and
 * the estimate is exactly |q - x~|^2 (or the inner product) up to float
 * rounding. */
static void pq4_lower_bounds(const quant *q, const void *qstate, const uint8_t *store,
                             const float *resid, const uint32_t *ids, size_t n, float *est) {
    (void)store;
    const pq_state *s = q->impl;
    const pq4_qhead *h = qstate;
    const float err = (float)s->m * h->delta * 0.5f * (1.0f + 0x1p-10f);
    for (size_t i = 0; i < n; i++)
        est[i] = pq_lower_bound(q, est[i], err, h->qnorm, resid[ids[i]]);
}

static void pq4_refine_bounds(const quant *q, const void *qstate, const uint8_t *store,
                              const float *resid, const uint32_t *ids, size_t n, float *lb) {
    const pq4_qhead *h = qstate;
    for (size_t i = 0; i < n; i++) {
        float exact;
        pq4_scan_float(q, qstate, store, ids[i], 1, &exact);
        const float fine = pq_lower_bound(q, exact, 0.0f, h->qnorm, resid[ids[i]]);
        lb[i] = fine > lb[i] ? fine : lb[i]; /* both hold */
    }
}

/* Vectors of fastscan sums per kernel call: 4 KiB of stack. */
enum { SCAN_BLOCKS = 32 };

static void pq4_scan(const quant *q, const void *qstate, const uint8_t *store, size_t first,
                     size_t n, float *out) {
    if (n == 0)
        return;
    const pq_state *s = q->impl;
    const simd_ops *ops = simd_ops_get();
    const pq4_qhead *h = qstate;
    const uint8_t *lut = u8_tables(s, qstate);
    /* The estimate is bias + delta * sum; in the index's convention
     * (pq_finish) that is shift + scale * sum, one multiply-add per code. */
    const float sign = q->metric == ROTOR_METRIC_L2 ? 1.0f : -1.0f;
    const float scale = sign * h->delta;
    const float shift = (q->metric == ROTOR_METRIC_COSINE ? 1.0f : 0.0f) + sign * h->bias;
    uint32_t acc[SCAN_BLOCKS * PQ4_BLOCK];
    const size_t end = first + n, b_end = (end + PQ4_BLOCK - 1) / PQ4_BLOCK;
    for (size_t b = first / PQ4_BLOCK; b < b_end;) {
        const size_t nb = b_end - b < SCAN_BLOCKS ? b_end - b : SCAN_BLOCKS;
        ops->fastscan_accumulate(store + b * s->block_bytes, nb, s->npairs, lut, acc);
        const size_t base = b * PQ4_BLOCK;
        const size_t lo = first > base ? first : base;
        const size_t hi = end < base + nb * PQ4_BLOCK ? end : base + nb * PQ4_BLOCK;
        /* Sums are below m * 255 < 2^31, so the signed conversion (one
         * instruction, unlike the unsigned one) is exact. */
        for (size_t i = lo; i < hi; i++)
            out[i - first] = shift + scale * (float)(int32_t)acc[i - base];
        b += nb;
    }
}

void pq4_scan_float(const quant *q, const void *qstate, const uint8_t *store, size_t first,
                    size_t n, float *out) {
    const pq_state *s = q->impl;
    const float *tab = float_tables(qstate);
    for (size_t i = 0; i < n; i++) {
        const size_t id = first + i;
        const uint8_t *blk = store + id / PQ4_BLOCK * s->block_bytes + id % PQ4_BLOCK;
        float a = 0.0f;
        for (size_t m = 0; m < s->m; m++) {
            unsigned nib = (blk[m / 2 * PQ4_BLOCK] >> (4 * (m & 1))) & 15u;
            a += tab[m * 16 + nib];
        }
        out[i] = pq_finish(q->metric, a);
    }
}

static size_t pq4_store_bytes(const quant *q, size_t n) {
    const pq_state *s = q->impl;
    return (n + PQ4_BLOCK - 1) / PQ4_BLOCK * s->block_bytes;
}

static void pq4_store(const quant *q, uint8_t *store, size_t i, const uint8_t *code) {
    const pq_state *s = q->impl;
    uint8_t *dst = store + i / PQ4_BLOCK * s->block_bytes + i % PQ4_BLOCK;
    for (size_t p = 0; p < s->npairs; p++)
        dst[p * PQ4_BLOCK] = code[p];
}

static void pq4_load(const quant *q, const uint8_t *store, size_t i, uint8_t *code) {
    const pq_state *s = q->impl;
    const uint8_t *src = store + i / PQ4_BLOCK * s->block_bytes + i % PQ4_BLOCK;
    for (size_t p = 0; p < s->npairs; p++)
        code[p] = src[p * PQ4_BLOCK];
}

const quant_ops pq4_ops = {
    .train = pq_train,
    .encode = pq4_encode,
    .decode = pq4_decode,
    .prepare = pq4_prepare,
    .scan = pq4_scan,
    .store_bytes = pq4_store_bytes,
    .store = pq4_store,
    .load = pq4_load,
    .release = pq_release,
    .payload_bytes = pq_payload_bytes,
    .save_payload = pq_save_payload,
    .load_payload = pq_load_payload,
    .residual = pq_residual,
    .lower_bounds = pq4_lower_bounds,
    .refine_bounds = pq4_refine_bounds,
};
