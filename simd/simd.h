/*
 * simd/ — distance kernels and nothing else. One translation unit per
 * instruction set (kern_scalar.c, kern_avx2.c, kern_avx512.c), each compiled
 * with its own flags; all other code is compiled for the baseline. A table of
 * function pointers (simd_ops) is filled once, from CPUID and the operating
 * system's register support, and may be lowered with the environment variable
 * ROTOR_SIMD=scalar|avx2|avx512. Callers fetch the table once per search and
 * keep the pointers, so inner loops never branch on the instruction set.
 *
 * Every kernel accepts any length (including 0 and odd sizes) and unaligned
 * pointers, and reads no byte outside its arrays. The scalar kernels are the
 * reference the others are tested against; floating-point kernels may differ
 * from them only by summation order, integer kernels not at all.
 */
#ifndef ROTOR_SIMD_H
#define ROTOR_SIMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum simd_level {
    SIMD_SCALAR = 0,
    SIMD_AVX2 = 1,   /* AVX2 + FMA + POPCNT + BMI2 (Haswell, Zen 1) */
    SIMD_AVX512 = 2, /* AVX-512 F/BW/DQ/VL + VPOPCNTDQ + VNNI (Ice Lake, Zen 4);
                        other AVX-512 parts run AVX2 */
} simd_level;

typedef struct simd_ops {
    simd_level level;

    /* float32 distances of two vectors of d elements. */
    float (*l2sq_f32)(const float *a, const float *b, size_t d);
    float (*dot_f32)(const float *a, const float *b, size_t d);
    /* 1 - cos(a, b), clamped to [0, 2]; 1 when either vector is zero. */
    float (*cos_dist_f32)(const float *a, const float *b, size_t d);

    /* One query against `n` vectors stored row-major with `stride` floats
     * between rows: out[i] = l2sq(q, base + i*stride) (or dot). Lets the
     * kernel keep the query in registers and prefetch rows ahead. Each out[i]
     * is bit-identical to the single-pair kernel of the same level. */
    void (*l2sq_f32_rows)(const float *q, const float *base, size_t n, size_t d, size_t stride,
                          float *out);
    void (*dot_f32_rows)(const float *q, const float *base, size_t n, size_t d, size_t stride,
                         float *out);

    /* Four queries (q0..q3, each d floats) against one row x: out[j] =
     * l2sq(qj, x) (or dot). The building block of tiled batch search: x is
     * loaded once for four queries. Bit-identical to four single-pair calls,
     * so batch and one-by-one search rank alike. q[j] may repeat. */
    void (*l2sq_f32_x4)(const float *const q[4], const float *x, size_t d, float out[4]);
    void (*dot_f32_x4)(const float *const q[4], const float *x, size_t d, float out[4]);

    /* l2sq_f32 and dot_f32 of a float query against a row of bytes, each
     * byte the value of its coordinate (rows of 0..255 stored compactly).
     * Bit-identical to the float kernel of the same level over the row
     * widened to floats, so such an index ranks exactly as its float twin. */
    float (*l2sq_f32_u8)(const float *q, const uint8_t *x, size_t d);
    float (*dot_f32_u8)(const float *q, const uint8_t *x, size_t d);

    /* Number of differing bits of two codes of `nbytes` bytes. */
    uint64_t (*hamming)(const uint8_t *a, const uint8_t *b, size_t nbytes);
    /* Number of set bits of (a AND b). */
    uint64_t (*and_popcount)(const uint8_t *a, const uint8_t *b, size_t nbytes);

    /* Integer dot products and squared L2 of byte vectors. Exact for
     * d <= 2^15 (dot_u8: 255*255*2^15 < 2^31), d <= 2^16 (dot_u8i8, l2sq_u8)
     * and d < 2^17 (dot_i8); beyond that the sum wraps modulo 2^32, the same
     * on every level. u8 x i8 is the VNNI form. */
    int32_t (*dot_u8)(const uint8_t *a, const uint8_t *b, size_t d);
    int32_t (*dot_i8)(const int8_t *a, const int8_t *b, size_t d);
    int32_t (*dot_u8i8)(const uint8_t *a, const int8_t *b, size_t d);
    uint32_t (*l2sq_u8)(const uint8_t *a, const uint8_t *b, size_t d);
    /* out[i] = dot_u8i8(a, base + ids[i] * stride, d) for i < n: rows picked
     * by id (a build's prune compares one 8-bit copy with many), a loaded
     * once for four rows and their lanes summed together. Exact, as
     * dot_u8i8. */
    void (*dot_u8i8_ids)(const uint8_t *a, const int8_t *base, size_t stride, const uint32_t *ids,
                         size_t n, size_t d, int32_t *out);
    /* Estimates of n 8-bit scalar codes (quant/sq.c's layout: floats t,
     * step and sum, then d int8 values) `stride` bytes apart, against a
     * query of d uint8 values a: with dot_i = dot_u8i8(a, values_i, d),
     *     ip_i = (t_i * step_i) * (p[0] * sum_i + p[1] * dot_i)
     *     out[i] = (p[2] + p[3] * (t_i * t_i)) + p[4] * ip_i,
     * every product and sum rounded once in this order (no fused
     * multiply-add), so each level gives the same floats. A scan of many
     * codes (a graph's starting points, a node's neighbours) then loads a
     * once for four rows, sums their lanes together and does the float
     * part sixteen codes at a time, where a call per code spent more on
     * the call, its horizontal sum and the scalar tail than on the code. */
    void (*sq8_estimates)(const uint8_t *a, const uint8_t *codes, size_t n, size_t d, size_t stride,
                          const float p[5], float *out);

    /* Index of the first value < threshold in v[from..n); n if none (or if
     * from >= n). NaN is never below. Lets top-k selection skip blocks of
     * distances that cannot enter the heap without a branch per element. */
    size_t (*first_below)(const float *v, size_t from, size_t n, float threshold);

    /* 4-bit PQ fast-scan lookups (layout drawn in quant/pq_fastscan.c).
     * `codes` holds `nblocks` blocks of 32 codes, npairs * 32 bytes each:
     * byte p * 32 + v of a block packs subspace 2p (low nibble) and 2p + 1
     * (high nibble) of the block's vector v. `lut` holds ceil(npairs / 2)
     * groups of 128 bytes, each the 16-entry uint8 tables T of subspaces
     * 4g..4g+3, every table twice, so that one 256- or 512-bit load gives
     * the register a byte shuffle wants:
     *     [T(4g) T(4g) T(4g+2) T(4g+2)] [T(4g+1) T(4g+1) T(4g+3) T(4g+3)]
     * (tables of subspaces >= 2 * npairs must exist; their values are not
     * used). out[32 b + v] = the sum over s < 2 * npairs of
     * T(s)[nibble s of vector v of block b]. Exact, and equal on every
     * level, for any npairs: the vector kernels keep partial sums in uint16
     * over at most 128 pairs (256 * 255 < 2^16), then widen to uint32. */
    void (*fastscan_accumulate)(const uint8_t *codes, size_t nblocks, size_t npairs,
                                const uint8_t *lut, uint32_t *out);

    /* The uint8 tables of fastscan_accumulate from m tables of 16 floats
     * (tab[s * 16 + j]): one step delta = max_s (max_j - min_j) / 255 for
     * all tables, entry s, j = round((tab[s][j] - min_j tab[s][j]) / delta)
     * (half up; 255 at most; 255 for NaN, when a table overflowed to
     * infinity), bias = sum_s min_j tab[s][j] summed in order of s. Writes
     * only the bytes of tables 0..m-1, both copies (simd_fastscan_table),
     * and *delta, *bias. Bit-identical on every level for tables without
     * NaN. */
    void (*fastscan_quantize)(const float *tab, size_t m, uint8_t *lut, float *delta, float *bias);

    /* A query's float tables of 16-centroid PQ: for s < m and j < 16,
     * tab[s * 16 + j] = the sum over t < dsub, in order of t, of
     * (q[s dsub + t] - ct[(s dsub + t) 16 + j])^2 (l2) or of their product
     * (inner product), each product and sum rounded on its own: equal on
     * every level. ct holds each subspace's centroids by columns (16
     * floats a coordinate). On the path of every probe of an IVF whose
     * lists hold residual codes, where the query is prepared per list. */
    void (*pq16_tables)(const float *q, const float *ct, size_t m, size_t dsub, bool l2,
                        float *tab);

    /* In-place unnormalised Walsh-Hadamard transform of n floats, n a power
     * of two, after x[j] *= signs[j] (each product rounded once; none when
     * signs is NULL): stages h = 1, 2, 4, ... of butterflies (x[j], x[j + h])
     * <- (x[j] + x[j + h], x[j] - x[j + h]). Every level computes each
     * butterfly alike, so results are bit-identical. The multiply rides on
     * the first stage's pass: a rotation round is one pass fewer. */
    void (*fwht_f32)(float *x, const float *signs, size_t n);

    /* The smallest and largest of n >= 1 finite floats (a query's range
     * before it is quantized to a grid). Exact, so equal on every level. */
    void (*range_f32)(const float *v, size_t n, float *lo, float *hi);

    /* Nearest of k points stored by columns, under squared L2: `cols` has
     * `dim` rows of `stride` floats, row t holding coordinate t of points
     * 0..k-1 (stride >= k rounded up to 16; the padding is read but never
     * chosen). Returns the index of the point nearest to x (ties: the
     * lowest) and its distance in *dist. k >= 1. The k-means assignment
     * and PQ encoding kernel: for the few dimensions of a PQ subspace, 16
     * centroids per vector beat a call and horizontal sum per centroid.
     * Levels may differ in summation order, like the other float kernels. */
    uint32_t (*argmin_l2sq_f32_cols)(const float *x, const float *cols, size_t k, size_t dim,
                                     size_t stride, float *dist);
    /* out[j] = the dot product of x with point j < k of `cols`, laid out as
     * for argmin_l2sq_f32_cols (the padding is read, nothing past k
     * written). An IVF's distances to all its centroids: one broadcast and
     * two FMAs a coordinate for 16 centroids, where a row each paid its
     * loop and horizontal sum (at 25 dimensions, 63 instructions a
     * centroid). Levels may differ in summation order. */
    void (*dot_f32_cols)(const float *x, const float *cols, size_t k, size_t dim, size_t stride,
                         float *out);

    /* TurboQuant scoring: sum over j < d of y[j] * table[c_j], where c_j is
     * the j-th `bits`-bit field (1..8) of `codes`, packed little-endian, and
     * `table` holds 256 floats (entries past 2^bits are read but unused).
     * Reads exactly ceil(d * bits / 8) bytes of codes. */
    float (*tq_dot)(const float *y, const float *table, const uint8_t *codes, size_t d,
                    unsigned bits);

    /* Sum of v[j] over the j < d whose bit j of `bits` (little-endian) is
     * set: the signed sums of sign sketches (QJL) in one pass. Reads
     * exactly ceil(d / 8) bytes of bits. */
    float (*masked_sum_f32)(const float *v, const uint8_t *bits, size_t d);

    /* 8-bit PQ asymmetric distances: for each of n codes of m bytes stored
     * side by side, out[i] = sum over k < m of tables[k * 256 + codes[i * m + k]].
     * The tables are the query's per-subspace distance tables, 256 floats
     * each. Levels may differ in summation order. */
    void (*pq8_adc)(const float *tables, const uint8_t *codes, size_t m, size_t n, float *out);
} simd_ops;

/* Offset of subspace s's 16-entry table in fastscan_accumulate's table
 * layout: groups of four subspaces in 128 bytes, [T0 T0 T2 T2][T1 T1 T3 T3]. */
static inline size_t simd_fastscan_table(size_t s) {
    return (s / 4) * 128 + (s & 1) * 64 + ((s >> 1) & 1) * 32;
}

/* The table for the best level this machine supports, lowered by ROTOR_SIMD.
 * Thread-safe; the choice is made once. Never NULL. */
const simd_ops *simd_ops_get(void);

/* The table for a given level, or NULL if this CPU/OS cannot run it (or
 * `level` is not one). Ignores ROTOR_SIMD. For tests and benchmarks that
 * compare levels. */
const simd_ops *simd_ops_for(simd_level level);

/* Highest level the hardware and OS support (ignores ROTOR_SIMD). Runs
 * CPUID each call, which traps under a hypervisor: not for hot paths. */
simd_level simd_level_hw(void);

/* "scalar", "avx2", "avx512"; "unknown" for any other value. */
const char *simd_level_name(simd_level level);

/* Per-ISA tables, all compiled into every (x86-64) build; only dispatch.c
 * should hand them out, since running one the CPU lacks raises SIGILL. */
extern const simd_ops simd_ops_scalar;
extern const simd_ops simd_ops_avx2;
extern const simd_ops simd_ops_avx512;

#endif /* ROTOR_SIMD_H */
