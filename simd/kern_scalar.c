/*
 * Reference kernels: the plainest loops that compute each distance, one
 * element at a time, in the order of the index. They run on machines without
 * AVX2 and are the yardstick the AVX2 and AVX-512 kernels are tested against,
 * so clarity beats speed here. CMake compiles this file with -mno-avx and
 * -fno-tree-vectorize, keeping it scalar even in a -march=native build.
 *
 * Floating-point sums accumulate in float, like the vector kernels, so the
 * levels differ only by summation order. Integer sums accumulate in uint32:
 * unsigned arithmetic wraps instead of overflowing into undefined behaviour,
 * and the vector kernels wrap the same way, so all levels agree bit for bit
 * even beyond the lengths for which simd.h promises an exact result.
 */
#include <math.h>
#include <string.h>

#include "simd/simd.h"
#include "simd/tq_plain.h"

static float l2sq_f32(const float *a, const float *b, size_t d) {
    float sum = 0.0f;
    for (size_t i = 0; i < d; i++) {
        float diff = a[i] - b[i];
        sum += diff * diff;
    }
    return sum;
}

static float dot_f32(const float *a, const float *b, size_t d) {
    float sum = 0.0f;
    for (size_t i = 0; i < d; i++)
        sum += a[i] * b[i];
    return sum;
}

/* Shared by every level: the cosine is formed in double so that the product
 * of two large squared norms cannot overflow, and clamped because rounding
 * can push it a hair past +-1 for (anti)parallel vectors; a distance must not
 * come out negative. NaN passes through both comparisons unchanged. */
static float cos_dist_finish(float dot, float norm_a, float norm_b) {
    if (norm_a == 0.0f || norm_b == 0.0f)
        return 1.0f;
    double c = (double)dot / sqrt((double)norm_a * (double)norm_b);
    if (c > 1.0)
        c = 1.0;
    if (c < -1.0)
        c = -1.0;
    return (float)(1.0 - c);
}

static float cos_dist_f32(const float *a, const float *b, size_t d) {
    float dot = 0.0f, norm_a = 0.0f, norm_b = 0.0f;
    for (size_t i = 0; i < d; i++) {
        dot += a[i] * b[i];
        norm_a += a[i] * a[i];
        norm_b += b[i] * b[i];
    }
    return cos_dist_finish(dot, norm_a, norm_b);
}

static float l2sq_f32_u8(const float *a, const uint8_t *b, size_t d) {
    float sum = 0.0f;
    for (size_t i = 0; i < d; i++) {
        float diff = a[i] - (float)b[i];
        sum += diff * diff;
    }
    return sum;
}

static float dot_f32_u8(const float *a, const uint8_t *b, size_t d) {
    float sum = 0.0f;
    for (size_t i = 0; i < d; i++)
        sum += a[i] * (float)b[i];
    return sum;
}

static void l2sq_f32_rows(const float *q, const float *base, size_t n, size_t d, size_t stride,
                          float *out) {
    for (size_t i = 0; i < n; i++)
        out[i] = l2sq_f32(q, base + i * stride, d);
}

static void dot_f32_rows(const float *q, const float *base, size_t n, size_t d, size_t stride,
                         float *out) {
    for (size_t i = 0; i < n; i++)
        out[i] = dot_f32(q, base + i * stride, d);
}

static void l2sq_f32_x4(const float *const q[4], const float *x, size_t d, float out[4]) {
    for (int j = 0; j < 4; j++)
        out[j] = l2sq_f32(q[j], x, d);
}

static void dot_f32_x4(const float *const q[4], const float *x, size_t d, float out[4]) {
    for (int j = 0; j < 4; j++)
        out[j] = dot_f32(q[j], x, d);
}

/* Codes are byte strings with no alignment promise, so whole words are read
 * through memcpy (one unaligned load after optimisation). */
static uint64_t load_u64(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, sizeof(w));
    return w;
}

static uint64_t hamming(const uint8_t *a, const uint8_t *b, size_t nbytes) {
    uint64_t count = 0;
    size_t i = 0;
    for (; i + 8 <= nbytes; i += 8)
        count += (uint64_t)__builtin_popcountll(load_u64(a + i) ^ load_u64(b + i));
    for (; i < nbytes; i++)
        count += (uint64_t)__builtin_popcount((unsigned)(a[i] ^ b[i]));
    return count;
}

static uint64_t and_popcount(const uint8_t *a, const uint8_t *b, size_t nbytes) {
    uint64_t count = 0;
    size_t i = 0;
    for (; i + 8 <= nbytes; i += 8)
        count += (uint64_t)__builtin_popcountll(load_u64(a + i) & load_u64(b + i));
    for (; i < nbytes; i++)
        count += (uint64_t)__builtin_popcount((unsigned)(a[i] & b[i]));
    return count;
}

/* Each product is converted to uint32 (modulo 2^32, well defined for negative
 * values) and summed with wrap-around; the final conversion to int32 is
 * modulo 2^32 on every compiler rotor supports. */
static int32_t dot_u8(const uint8_t *a, const uint8_t *b, size_t d) {
    uint32_t sum = 0;
    for (size_t i = 0; i < d; i++)
        sum += (uint32_t)a[i] * (uint32_t)b[i];
    return (int32_t)sum;
}

static int32_t dot_i8(const int8_t *a, const int8_t *b, size_t d) {
    uint32_t sum = 0;
    for (size_t i = 0; i < d; i++)
        sum += (uint32_t)((int32_t)a[i] * (int32_t)b[i]);
    return (int32_t)sum;
}

static int32_t dot_u8i8(const uint8_t *a, const int8_t *b, size_t d) {
    uint32_t sum = 0;
    for (size_t i = 0; i < d; i++)
        sum += (uint32_t)((int32_t)a[i] * (int32_t)b[i]);
    return (int32_t)sum;
}

static void dot_u8i8_ids(const uint8_t *a, const int8_t *base, size_t stride, const uint32_t *ids,
                         size_t n, size_t d, int32_t *out) {
    for (size_t i = 0; i < n; i++)
        out[i] = dot_u8i8(a, base + (size_t)ids[i] * stride, d);
}

static void sq8_estimates(const uint8_t *a, const uint8_t *codes, size_t n, size_t d, size_t stride,
                          const float p[5], float *out) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * stride;
        float f[3];
        memcpy(f, c, sizeof f);
        const float dot = (float)dot_u8i8(a, (const int8_t *)(c + sizeof f), d);
        const float ip = (f[0] * f[1]) * (p[0] * f[2] + p[1] * dot);
        out[i] = (p[2] + p[3] * (f[0] * f[0])) + p[4] * ip;
    }
}

static uint32_t l2sq_u8(const uint8_t *a, const uint8_t *b, size_t d) {
    uint32_t sum = 0;
    for (size_t i = 0; i < d; i++) {
        int32_t diff = (int32_t)a[i] - (int32_t)b[i];
        sum += (uint32_t)(diff * diff);
    }
    return sum;
}

static size_t first_below(const float *v, size_t from, size_t n, float threshold) {
    for (size_t i = from; i < n; i++) {
        if (v[i] < threshold)
            return i;
    }
    return n;
}

/* Defined after the table, at the end of the file. */
static void fastscan_accumulate(const uint8_t *codes, size_t nblocks, size_t npairs,
                                const uint8_t *lut, uint32_t *out);
static uint32_t argmin_l2sq_f32_cols(const float *x, const float *cols, size_t k, size_t dim,
                                     size_t stride, float *dist);
static void dot_f32_cols(const float *x, const float *cols, size_t k, size_t dim, size_t stride,
                         float *out);
static float tq_dot_scalar(const float *y, const float *table, const uint8_t *codes, size_t d,
                           unsigned bits);
static float masked_sum_f32_scalar(const float *v, const uint8_t *bits, size_t d);
static void pq8_adc_scalar(const float *tables, const uint8_t *codes, size_t m, size_t n,
                           float *out);
static void fastscan_quantize(const float *tab, size_t m, uint8_t *lut, float *delta, float *bias);
static void pq16_tables(const float *q, const float *ct, size_t m, size_t dsub, bool l2,
                        float *tab);
static void fwht_f32(float *x, const float *signs, size_t n);
static void range_f32(const float *v, size_t n, float *lo_out, float *hi_out);

const simd_ops simd_ops_scalar = {
    .level = SIMD_SCALAR,
    .l2sq_f32 = l2sq_f32,
    .dot_f32 = dot_f32,
    .cos_dist_f32 = cos_dist_f32,
    .l2sq_f32_rows = l2sq_f32_rows,
    .dot_f32_rows = dot_f32_rows,
    .l2sq_f32_x4 = l2sq_f32_x4,
    .dot_f32_x4 = dot_f32_x4,
    .l2sq_f32_u8 = l2sq_f32_u8,
    .dot_f32_u8 = dot_f32_u8,
    .hamming = hamming,
    .and_popcount = and_popcount,
    .dot_u8 = dot_u8,
    .dot_i8 = dot_i8,
    .dot_u8i8 = dot_u8i8,
    .dot_u8i8_ids = dot_u8i8_ids,
    .sq8_estimates = sq8_estimates,
    .l2sq_u8 = l2sq_u8,
    .first_below = first_below,
    .fastscan_accumulate = fastscan_accumulate,
    .argmin_l2sq_f32_cols = argmin_l2sq_f32_cols,
    .dot_f32_cols = dot_f32_cols,
    .tq_dot = tq_dot_scalar,
    .masked_sum_f32 = masked_sum_f32_scalar,
    .pq8_adc = pq8_adc_scalar,
    .fastscan_quantize = fastscan_quantize,
    .pq16_tables = pq16_tables,
    .fwht_f32 = fwht_f32,
    .range_f32 = range_f32,
};

/* ---- 4-bit PQ fast-scan ------------------------------------------------- */

/* The reference: one vector at a time, both nibbles of each code byte looked
 * up in the tables of its pair. Pair p's tables sit in group p / 2, at
 * offset 32 for an odd pair, and the high nibble's table 64 bytes further
 * (the layout in simd.h). */
static void fastscan_accumulate(const uint8_t *codes, size_t nblocks, size_t npairs,
                                const uint8_t *lut, uint32_t *out) {
    const size_t block_bytes = npairs * 32;
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = codes + b * block_bytes;
        for (size_t v = 0; v < 32; v++) {
            uint32_t sum = 0;
            for (size_t p = 0; p < npairs; p++) {
                const uint8_t byte = blk[p * 32 + v];
                const uint8_t *t = lut + (p / 2) * 128 + (p & 1) * 32;
                sum += t[byte & 15u] + t[64 + (byte >> 4)];
            }
            out[b * 32 + v] = sum;
        }
    }
}

/* ---- nearest of points stored by columns -------------------------------- */

static uint32_t argmin_l2sq_f32_cols(const float *x, const float *cols, size_t k, size_t dim,
                                     size_t stride, float *dist) {
    float best = INFINITY;
    uint32_t best_j = 0;
    for (size_t j = 0; j < k; j++) {
        float sum = 0.0f;
        for (size_t t = 0; t < dim; t++) {
            float diff = x[t] - cols[t * stride + j];
            sum += diff * diff;
        }
        if (sum < best || j == 0) {
            best = sum;
            best_j = (uint32_t)j;
        }
    }
    *dist = best;
    return best_j;
}

static void dot_f32_cols(const float *x, const float *cols, size_t k, size_t dim, size_t stride,
                         float *out) {
    for (size_t j = 0; j < k; j++)
        out[j] = 0.0f;
    for (size_t t = 0; t < dim; t++)
        for (size_t j = 0; j < k; j++)
            out[j] += x[t] * cols[t * stride + j];
}

/* ---- TurboQuant codes ----------------------------------------------------
 * The plain loop of tq_plain.h, with `b` a constant in each inlined copy. */
static float tq_dot_scalar(const float *y, const float *table, const uint8_t *codes, size_t d,
                           unsigned bits) {
    switch (bits) {
    case 1: return tq_dot_plain(y, table, codes, d, 1);
    case 2: return tq_dot_plain(y, table, codes, d, 2);
    case 3: return tq_dot_plain(y, table, codes, d, 3);
    case 4: return tq_dot_plain(y, table, codes, d, 4);
    case 5: return tq_dot_plain(y, table, codes, d, 5);
    case 6: return tq_dot_plain(y, table, codes, d, 6);
    case 7: return tq_dot_plain(y, table, codes, d, 7);
    default: return tq_dot_plain(y, table, codes, d, 8);
    }
}

/* ---- masked sums ---------------------------------------------------------- */
static float masked_sum_f32_scalar(const float *v, const uint8_t *bits, size_t d) {
    float acc = 0;
    for (size_t j = 0; j < d; j++)
        if ((bits[j >> 3] >> (j & 7)) & 1)
            acc += v[j];
    return acc;
}

/* ---- 8-bit PQ distances --------------------------------------------------
 * Four codes at a time, so four independent sums hide the load latency. */
static void pq8_adc_scalar(const float *tables, const uint8_t *codes, size_t m, size_t n,
                           float *out) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint8_t *c = codes + i * m;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (size_t k = 0; k < m; k++) {
            const float *t = tables + k * 256;
            a0 += t[c[k]];
            a1 += t[c[m + k]];
            a2 += t[c[2 * m + k]];
            a3 += t[c[3 * m + k]];
        }
        out[i] = a0;
        out[i + 1] = a1;
        out[i + 2] = a2;
        out[i + 3] = a3;
    }
    for (; i < n; i++) {
        const uint8_t *c = codes + i * m;
        float a = 0;
        for (size_t k = 0; k < m; k++)
            a += tables[k * 256 + c[k]];
        out[i] = a;
    }
}

/* ---- fast-scan tables and the Hadamard transform ------------------------- */

static void pq16_tables(const float *q, const float *ct, size_t m, size_t dsub, bool l2,
                        float *tab) {
    for (size_t s = 0; s < m; s++) {
        float *acc = tab + s * 16;
        for (size_t j = 0; j < 16; j++)
            acc[j] = 0.0f;
        for (size_t t = 0; t < dsub; t++) {
            const float x = q[s * dsub + t], *row = ct + (s * dsub + t) * 16;
            for (size_t j = 0; j < 16; j++) {
                const float d = l2 ? x - row[j] : x;
                acc[j] += d * (l2 ? d : row[j]);
            }
        }
    }
}

static void fastscan_quantize(const float *tab, size_t m, uint8_t *lut, float *delta_out,
                              float *bias_out) {
    float range = 0.0f, bias = 0.0f;
    for (size_t s = 0; s < m; s++) {
        const float *t = tab + s * 16;
        float lo = t[0], hi = t[0];
        for (size_t j = 1; j < 16; j++) {
            lo = t[j] < lo ? t[j] : lo;
            hi = t[j] > hi ? t[j] : hi;
        }
        bias += lo;
        range = hi - lo > range ? hi - lo : range;
    }
    /* All tables flat: every sum is the bias, any step will do. */
    const float delta = range > 0.0f ? range / 255.0f : 1.0f;
    const float inv = 1.0f / delta;
    for (size_t s = 0; s < m; s++) {
        const float *t = tab + s * 16;
        float lo = t[0];
        for (size_t j = 1; j < 16; j++)
            lo = t[j] < lo ? t[j] : lo;
        uint8_t *dst = lut + simd_fastscan_table(s);
        for (size_t j = 0; j < 16; j++) {
            /* (t - lo) * inv is >= 0 and may round a hair past 255 for the
             * widest table; the clamp keeps it within delta / 2 all the
             * same. Adding 0.5 and truncating rounds half up. A NaN (a
             * table with infinities) fails the comparison and becomes 255
             * rather than an undefined conversion. */
            const float v = (t[j] - lo) * inv + 0.5f;
            dst[j] = dst[16 + j] = (uint8_t)(v < 255.0f ? (int)v : 255);
        }
    }
    *delta_out = delta;
    *bias_out = bias;
}

static void fwht_f32(float *x, const float *signs, size_t n) {
    for (size_t j = 0; signs != NULL && j < n; j++)
        x[j] *= signs[j];
    for (size_t h = 1; h < n; h *= 2)
        for (size_t i = 0; i < n; i += 2 * h)
            for (size_t j = i; j < i + h; j++) {
                const float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}

static void range_f32(const float *v, size_t n, float *lo_out, float *hi_out) {
    float lo = v[0], hi = v[0];
    for (size_t j = 1; j < n; j++) {
        lo = v[j] < lo ? v[j] : lo;
        hi = v[j] > hi ? v[j] : hi;
    }
    *lo_out = lo;
    *hi_out = hi;
}
