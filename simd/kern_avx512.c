/*
 * AVX-512 kernels (Ice Lake, Sapphire Rapids, Zen 4 and later; cpu.c grants
 * this level only with all of F, BW, DQ, VL, VPOPCNTDQ and VNNI). The
 * instructions they rely on:
 *
 *   VFMADD231PS      one rounding per term; 4 accumulators of 16 floats per
 *                    (query, row) pair cover the 4-cycle latency of 2 FMA
 *                    units
 *   VMOVUPS {k}{z}   masked loads for every tail: masked-off lanes read as
 *                    zero (adding nothing to any sum here) and never fault,
 *                    so no scalar loop and no read past an array (BW gives
 *                    the byte form, VMOVDQU8)
 *   VCMPPS -> k      first_below: 16 compares straight into a mask register
 *   VPOPCNTQ         (VPOPCNTDQ) popcount of 8 words per instruction
 *   VPDPBUSD         (VNNI) four u8 x s8 products summed into each int32 lane,
 *                    wrapping, never saturating. u8 x u8, s8 x s8 and the
 *                    squared u8 difference are brought to that form exactly
 *                    by flipping the top bit of one operand (b ^ 0x80 is
 *                    b - 128 read as s8) and adding back 128 * (sum of the
 *                    other operand), which a second VPDPBUSD against a
 *                    vector of ones provides:
 *                      a.b       = a.(b - 128)      + 128 * sum(a)
 *                      a.b (s8)  = (a + 128).b      - 128 * sum(b)
 *                      |a - b|^2 = |a-b|.(|a-b| - 128) + 128 * sum(|a-b|)
 *                    Two VPDPBUSD per 64 bytes beat widening to 16 bits,
 *                    which takes two shuffles and two VPMADDWD.
 *   VPMAXUB/VPMINUB  |a - b| of bytes as max - min, with no overflow
 *
 * The single-pair, _rows and _x4 forms of a float kernel share one
 * accumulation scheme per (query, row) pair: 4 accumulators, each taking one
 * 16-float chunk of every 64-float block (the last block masked), then
 * (acc0 + acc1) + (acc2 + acc3) reduced by hsum(). So the three forms
 * return bit-identical results, and a batch search ranks exactly as the same
 * queries searched one by one. hsum() is written out rather than
 * _mm512_reduce_add_ps so that the order is fixed by this file, not by the
 * compiler.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "simd/simd.h"
#include "simd/tq_plain.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ---- floats ------------------------------------------------------------- */

/* The first `rem` of 16 lanes, rem in 1..15. */
static ALWAYS_INLINE __mmask16 tail16(size_t rem) { return (__mmask16)((1u << rem) - 1u); }

static ALWAYS_INLINE float hsum(__m512 v) {
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One accumulation step; `l2` is a constant after inlining. */
static ALWAYS_INLINE __m512 step(__m512 acc, __m512 q, __m512 x, int l2) {
    if (l2) {
        __m512 t = _mm512_sub_ps(q, x);
        return _mm512_fmadd_ps(t, t, acc);
    }
    return _mm512_fmadd_ps(q, x, acc);
}

/* Up to 64 floats of a row x: four chunks of 16 lanes, each with its load
 * mask and its offset into x (and into the query). Whole blocks have full
 * masks, which the compiler turns into plain loads. The last, partial block
 * (1-63 floats) has some chunks partly or wholly masked off: zero lanes add
 * nothing to a sum, and one block shape for the tail keeps the code free of
 * per-size branches. An empty chunk's offset is clamped to the end of the
 * array, where a load with an empty mask touches nothing. */
typedef struct block {
    __m512 x0, x1, x2, x3;
    __mmask16 m0, m1, m2, m3;
    size_t o0, o1, o2, o3;
} block;

/* Sixteen coordinates of row x from o, whole or under mask m. A row of
 * bytes (`bytes`, a constant after inlining) is widened to the floats its
 * bytes hold, so pair() runs the same steps on the same values whatever the
 * row's type: its sums are bit for bit those of the widened row. */
static ALWAYS_INLINE __m512 chunk(const void *x, size_t o, int bytes) {
    if (!bytes)
        return _mm512_loadu_ps((const float *)x + o);
    const __m128i b = _mm_loadu_si128((const __m128i *)((const uint8_t *)x + o));
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
}

static ALWAYS_INLINE __m512 chunk_masked(const void *x, size_t o, __mmask16 m, int bytes) {
    if (!bytes)
        return _mm512_maskz_loadu_ps(m, (const float *)x + o);
    const __m128i b = _mm_maskz_loadu_epi8(m, (const uint8_t *)x + o);
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
}

static ALWAYS_INLINE block whole_block(const void *x, size_t i, int bytes) {
    block b;
    b.m0 = b.m1 = b.m2 = b.m3 = 0xffff;
    b.o0 = i;
    b.o1 = i + 16;
    b.o2 = i + 32;
    b.o3 = i + 48;
    b.x0 = chunk(x, b.o0, bytes);
    b.x1 = chunk(x, b.o1, bytes);
    b.x2 = chunk(x, b.o2, bytes);
    b.x3 = chunk(x, b.o3, bytes);
    return b;
}

static ALWAYS_INLINE __mmask16 chunk_mask(size_t rem, size_t lo) {
    size_t lanes = rem <= lo ? 0 : rem - lo >= 16 ? 16 : rem - lo;
    return (__mmask16)((1u << lanes) - 1u);
}

static ALWAYS_INLINE size_t chunk_offset(size_t i, size_t rem, size_t lo) {
    return i + (lo < rem ? lo : rem);
}

/* The block starting at i when d - i is 1..63. */
static ALWAYS_INLINE block tail_block(const void *x, size_t i, size_t d, int bytes) {
    size_t rem = d - i;
    block b;
    b.m0 = chunk_mask(rem, 0);
    b.m1 = chunk_mask(rem, 16);
    b.m2 = chunk_mask(rem, 32);
    b.m3 = chunk_mask(rem, 48);
    b.o0 = chunk_offset(i, rem, 0);
    b.o1 = chunk_offset(i, rem, 16);
    b.o2 = chunk_offset(i, rem, 32);
    b.o3 = chunk_offset(i, rem, 48);
    b.x0 = chunk_masked(x, b.o0, b.m0, bytes);
    b.x1 = chunk_masked(x, b.o1, b.m1, bytes);
    b.x2 = chunk_masked(x, b.o2, b.m2, bytes);
    b.x3 = chunk_masked(x, b.o3, b.m3, bytes);
    return b;
}

/* Adds one block of query q against x to q's four accumulators. The
 * accumulators are separate variables, not an array, which GCC would keep in
 * memory. */
static ALWAYS_INLINE void accumulate(__m512 *s0, __m512 *s1, __m512 *s2, __m512 *s3, const float *q,
                                     const block *b, int l2) {
    *s0 = step(*s0, _mm512_maskz_loadu_ps(b->m0, q + b->o0), b->x0, l2);
    *s1 = step(*s1, _mm512_maskz_loadu_ps(b->m1, q + b->o1), b->x1, l2);
    *s2 = step(*s2, _mm512_maskz_loadu_ps(b->m2, q + b->o2), b->x2, l2);
    *s3 = step(*s3, _mm512_maskz_loadu_ps(b->m3, q + b->o3), b->x3, l2);
}

static ALWAYS_INLINE float total(__m512 s0, __m512 s1, __m512 s2, __m512 s3) {
    return hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* Rows stream from memory, so a row's cache lines are requested a few rows
 * before it is read: prefetch distance counted in bytes, since short rows are
 * consumed quickly and need more rows in flight to cover memory latency.
 * The requests are spread through the loop, one per 64 bytes of row
 * consumed, rather than issued a row at a time: a burst of 49 requests per
 * 3 KiB row (d = 784) cost a quarter of the bandwidth on a 400 MB scan
 * (about 27 GB/s bursty, 35-40 GB/s spread, on a Zen 5 core). */
enum { PREFETCH_BYTES = 8192, PREFETCH_MIN_ROWS = 2, PREFETCH_MAX_ROWS = 16 };

static size_t prefetch_rows_ahead(size_t d) {
    size_t row_bytes = d * sizeof(float);
    size_t rows = row_bytes == 0 ? PREFETCH_MAX_ROWS : PREFETCH_BYTES / row_bytes;
    if (rows < PREFETCH_MIN_ROWS)
        rows = PREFETCH_MIN_ROWS;
    if (rows > PREFETCH_MAX_ROWS)
        rows = PREFETCH_MAX_ROWS;
    return rows;
}

/* Every cache line holding part of row[from..d). */
static ALWAYS_INLINE void prefetch_lines(const float *row, size_t from, size_t d) {
    uintptr_t line = (uintptr_t)(row + from) & ~(uintptr_t)63;
    uintptr_t end = (uintptr_t)(row + d);
    for (; line < end; line += 64)
        _mm_prefetch((const char *)line, _MM_HINT_T0);
}

/* `pf`, unless NULL, is a later row to prefetch while this one is read. */
static ALWAYS_INLINE float pair(const float *a, const void *b, const float *pf, size_t d, int l2,
                                int bytes) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= d; i += 64) {
        if (pf != NULL) {
            _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + i + 16), _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + i + 32), _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + i + 48), _MM_HINT_T0);
        }
        block blk = whole_block(b, i, bytes);
        accumulate(&s0, &s1, &s2, &s3, a, &blk, l2);
    }
    /* The rest of the prefetched row, starting from the line of the last
     * element already requested: a misaligned row spills into one more. */
    if (pf != NULL)
        prefetch_lines(pf, i > 0 ? i - 1 : 0, d);
    if (i < d) {
        block blk = tail_block(b, i, d, bytes);
        accumulate(&s0, &s1, &s2, &s3, a, &blk, l2);
    }
    return total(s0, s1, s2, s3);
}

/* Four queries against one row: pair() for each, with every block of x loaded
 * once for all four. 16 accumulators and 4 chunks of x use 20 of the 32 ZMM
 * registers, so nothing spills. */
static ALWAYS_INLINE void quad(const float *const q[4], const float *x, size_t d, int l2,
                               float out[4]) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    __m512 c0 = a0, c1 = a0, c2 = a0, c3 = a0, d0 = a0, d1 = a0, d2 = a0, d3 = a0;
    size_t i = 0;
    for (; i + 64 <= d; i += 64) {
        block blk = whole_block(x, i, 0);
        accumulate(&a0, &a1, &a2, &a3, q[0], &blk, l2);
        accumulate(&b0, &b1, &b2, &b3, q[1], &blk, l2);
        accumulate(&c0, &c1, &c2, &c3, q[2], &blk, l2);
        accumulate(&d0, &d1, &d2, &d3, q[3], &blk, l2);
    }
    if (i < d) {
        block blk = tail_block(x, i, d, 0);
        accumulate(&a0, &a1, &a2, &a3, q[0], &blk, l2);
        accumulate(&b0, &b1, &b2, &b3, q[1], &blk, l2);
        accumulate(&c0, &c1, &c2, &c3, q[2], &blk, l2);
        accumulate(&d0, &d1, &d2, &d3, q[3], &blk, l2);
    }
    out[0] = total(a0, a1, a2, a3);
    out[1] = total(b0, b1, b2, b3);
    out[2] = total(c0, c1, c2, c3);
    out[3] = total(d0, d1, d2, d3);
}

static ALWAYS_INLINE void rows(const float *q, const float *base, size_t n, size_t d, size_t stride,
                               float *out, int l2) {
    size_t ahead = prefetch_rows_ahead(d);
    for (size_t i = 0; i < n && i < ahead; i++)
        prefetch_lines(base + i * stride, 0, d);
    size_t i = 0;
    for (; i + ahead < n; i++)
        out[i] = pair(q, base + i * stride, base + (i + ahead) * stride, d, l2, 0);
    for (; i < n; i++)
        out[i] = pair(q, base + i * stride, NULL, d, l2, 0);
}

static float l2sq_f32_u8(const float *q, const uint8_t *x, size_t d) {
    return pair(q, x, NULL, d, 1, 1);
}

static float dot_f32_u8(const float *q, const uint8_t *x, size_t d) {
    return pair(q, x, NULL, d, 0, 1);
}

static float l2sq_f32(const float *a, const float *b, size_t d) {
    return pair(a, b, NULL, d, 1, 0);
}

static float dot_f32(const float *a, const float *b, size_t d) { return pair(a, b, NULL, d, 0, 0); }

static void l2sq_f32_rows(const float *q, const float *base, size_t n, size_t d, size_t stride,
                          float *out) {
    rows(q, base, n, d, stride, out, 1);
}

static void dot_f32_rows(const float *q, const float *base, size_t n, size_t d, size_t stride,
                         float *out) {
    rows(q, base, n, d, stride, out, 0);
}

static void l2sq_f32_x4(const float *const q[4], const float *x, size_t d, float out[4]) {
    quad(q, x, d, 1, out);
}

static void dot_f32_x4(const float *const q[4], const float *x, size_t d, float out[4]) {
    quad(q, x, d, 0, out);
}

/* As in kern_scalar.c, verbatim, so every level finishes identically. */
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

/* Three sums in one pass, two accumulators each: six FMA chains keep both
 * FMA units busy. */
static float cos_dist_f32(const float *a, const float *b, size_t d) {
    __m512 ab0 = _mm512_setzero_ps(), ab1 = ab0, aa0 = ab0, aa1 = ab0, bb0 = ab0, bb1 = ab0;
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        __m512 x0 = _mm512_loadu_ps(a + i), y0 = _mm512_loadu_ps(b + i);
        __m512 x1 = _mm512_loadu_ps(a + i + 16), y1 = _mm512_loadu_ps(b + i + 16);
        ab0 = _mm512_fmadd_ps(x0, y0, ab0);
        aa0 = _mm512_fmadd_ps(x0, x0, aa0);
        bb0 = _mm512_fmadd_ps(y0, y0, bb0);
        ab1 = _mm512_fmadd_ps(x1, y1, ab1);
        aa1 = _mm512_fmadd_ps(x1, x1, aa1);
        bb1 = _mm512_fmadd_ps(y1, y1, bb1);
    }
    if (i + 16 <= d) {
        __m512 x0 = _mm512_loadu_ps(a + i), y0 = _mm512_loadu_ps(b + i);
        ab0 = _mm512_fmadd_ps(x0, y0, ab0);
        aa0 = _mm512_fmadd_ps(x0, x0, aa0);
        bb0 = _mm512_fmadd_ps(y0, y0, bb0);
        i += 16;
    }
    if (i < d) {
        __mmask16 m = tail16(d - i);
        __m512 x1 = _mm512_maskz_loadu_ps(m, a + i), y1 = _mm512_maskz_loadu_ps(m, b + i);
        ab1 = _mm512_fmadd_ps(x1, y1, ab1);
        aa1 = _mm512_fmadd_ps(x1, x1, aa1);
        bb1 = _mm512_fmadd_ps(y1, y1, bb1);
    }
    return cos_dist_finish(hsum(_mm512_add_ps(ab0, ab1)), hsum(_mm512_add_ps(aa0, aa1)),
                           hsum(_mm512_add_ps(bb0, bb1)));
}

/* Distances that beat the threshold are rare once the heap is full, so the
 * scan tests 32 values per branch. */
static size_t first_below(const float *v, size_t from, size_t n, float threshold) {
    if (from >= n)
        return n;
    const __m512 t = _mm512_set1_ps(threshold);
    size_t i = from;
    for (; i + 32 <= n; i += 32) {
        /* Ordered, quiet less-than: false for NaN, like the scalar `<`. */
        __mmask16 m0 = _mm512_cmp_ps_mask(_mm512_loadu_ps(v + i), t, _CMP_LT_OQ);
        __mmask16 m1 = _mm512_cmp_ps_mask(_mm512_loadu_ps(v + i + 16), t, _CMP_LT_OQ);
        uint32_t m = (uint32_t)m0 | ((uint32_t)m1 << 16);
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
    }
    if (i + 16 <= n) {
        __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(v + i), t, _CMP_LT_OQ);
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
        i += 16;
    }
    if (i < n) {
        __mmask16 lanes = tail16(n - i);
        __mmask16 m =
            _mm512_mask_cmp_ps_mask(lanes, _mm512_maskz_loadu_ps(lanes, v + i), t, _CMP_LT_OQ);
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
    }
    return n;
}

/* ---- bit codes ---------------------------------------------------------- */

/* The first `rem` of 64 bytes, rem in 1..63. */
static ALWAYS_INLINE __mmask64 tail64(size_t rem) { return (__mmask64)(~0ULL >> (64 - rem)); }

/* Written out (not _mm512_reduce_add_epi64) to keep every add in vector
 * registers, where wrap-around is defined. */
static ALWAYS_INLINE uint64_t hsum_epi64(__m512i v) {
    __m256i s4 = _mm256_add_epi64(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
    s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    return (uint64_t)_mm_cvtsi128_si64(s);
}

static ALWAYS_INLINE uint32_t hsum_epi32(__m512i v) {
    __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return (uint32_t)_mm_cvtsi128_si32(s);
}

/* Popcount of a XOR b (hamming) or a AND b; `use_and` is constant. Masked-off
 * tail bytes load as zero on both sides, and 0 ^ 0 = 0 & 0 = 0. */
static ALWAYS_INLINE uint64_t popcount_op(const uint8_t *a, const uint8_t *b, size_t nbytes,
                                          int use_and) {
    __m512i acc0 = _mm512_setzero_si512(), acc1 = acc0;
    size_t i = 0;
#define BITS(x, y) (use_and ? _mm512_and_si512((x), (y)) : _mm512_xor_si512((x), (y)))
    for (; i + 128 <= nbytes; i += 128) {
        __m512i v0 = BITS(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));
        __m512i v1 = BITS(_mm512_loadu_si512(a + i + 64), _mm512_loadu_si512(b + i + 64));
        acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(v0));
        acc1 = _mm512_add_epi64(acc1, _mm512_popcnt_epi64(v1));
    }
    if (i + 64 <= nbytes) {
        __m512i v = BITS(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));
        acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(v));
        i += 64;
    }
    if (i < nbytes) {
        __mmask64 m = tail64(nbytes - i);
        __m512i v = BITS(_mm512_maskz_loadu_epi8(m, a + i), _mm512_maskz_loadu_epi8(m, b + i));
        acc1 = _mm512_add_epi64(acc1, _mm512_popcnt_epi64(v));
    }
#undef BITS
    return hsum_epi64(_mm512_add_epi64(acc0, acc1));
}

static uint64_t hamming(const uint8_t *a, const uint8_t *b, size_t nbytes) {
    return popcount_op(a, b, nbytes, 0);
}

static uint64_t and_popcount(const uint8_t *a, const uint8_t *b, size_t nbytes) {
    return popcount_op(a, b, nbytes, 1);
}

/* ---- byte vectors ------------------------------------------------------- */

typedef enum byte_kind { DOT_U8, DOT_I8, DOT_U8I8, L2SQ_U8 } byte_kind;

/* Terms of one 64-byte block folded into `prod` (VNNI form) and, for the
 * kinds that need the correction, the sum of the unflipped operand into
 * `sum`; see the identities at the top of the file. Zero bytes from a masked
 * tail add nothing to either: a zero u8 operand makes the products zero, and
 * for DOT_I8 the flipped a (128) meets b = 0. */
static ALWAYS_INLINE void byte_step(__m512i *prod, __m512i *sum, __m512i a, __m512i b,
                                    byte_kind k) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i ones = _mm512_set1_epi8(1);
    switch (k) {
    case DOT_U8I8: *prod = _mm512_dpbusd_epi32(*prod, a, b); break;
    case DOT_U8:
        *prod = _mm512_dpbusd_epi32(*prod, a, _mm512_xor_si512(b, flip));
        *sum = _mm512_dpbusd_epi32(*sum, a, ones);
        break;
    case DOT_I8:
        *prod = _mm512_dpbusd_epi32(*prod, _mm512_xor_si512(a, flip), b);
        *sum = _mm512_dpbusd_epi32(*sum, ones, b);
        break;
    case L2SQ_U8: {
        __m512i ad = _mm512_sub_epi8(_mm512_max_epu8(a, b), _mm512_min_epu8(a, b));
        *prod = _mm512_dpbusd_epi32(*prod, ad, _mm512_xor_si512(ad, flip));
        *sum = _mm512_dpbusd_epi32(*sum, ad, ones);
        break;
    }
    }
}

/* The sum of a kind's terms modulo 2^32, as in kern_scalar.c. Two
 * accumulator pairs over 128-byte blocks hide the VPDPBUSD latency. */
static ALWAYS_INLINE uint32_t byte_kernel(const void *pa, const void *pb, size_t d, byte_kind k) {
    const uint8_t *a = pa, *b = pb;
    __m512i p0 = _mm512_setzero_si512(), p1 = p0, s0 = p0, s1 = p0;
    size_t i = 0;
    for (; i + 128 <= d; i += 128) {
        byte_step(&p0, &s0, _mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i), k);
        byte_step(&p1, &s1, _mm512_loadu_si512(a + i + 64), _mm512_loadu_si512(b + i + 64), k);
    }
    if (i + 64 <= d) {
        byte_step(&p0, &s0, _mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i), k);
        i += 64;
    }
    if (i < d) {
        __mmask64 m = tail64(d - i);
        byte_step(&p1, &s1, _mm512_maskz_loadu_epi8(m, a + i), _mm512_maskz_loadu_epi8(m, b + i),
                  k);
    }
    __m512i prod = _mm512_add_epi32(p0, p1);
    __m512i corr = _mm512_slli_epi32(_mm512_add_epi32(s0, s1), 7); /* 128 * sum */
    switch (k) {
    case DOT_U8I8: return hsum_epi32(prod);
    case DOT_I8: return hsum_epi32(_mm512_sub_epi32(prod, corr));
    case DOT_U8:
    case L2SQ_U8: break;
    }
    return hsum_epi32(_mm512_add_epi32(prod, corr));
}

static int32_t dot_u8(const uint8_t *a, const uint8_t *b, size_t d) {
    return (int32_t)byte_kernel(a, b, d, DOT_U8);
}

static int32_t dot_i8(const int8_t *a, const int8_t *b, size_t d) {
    return (int32_t)byte_kernel(a, b, d, DOT_I8);
}

static int32_t dot_u8i8(const uint8_t *a, const int8_t *b, size_t d) {
    return (int32_t)byte_kernel(a, b, d, DOT_U8I8);
}

static uint32_t l2sq_u8(const uint8_t *a, const uint8_t *b, size_t d) {
    return byte_kernel(a, b, d, L2SQ_U8);
}

/* The sums of four registers' lanes, [sum a, sum b, sum c, sum d]: pairs
 * interleaved and added twice, then the four 128-bit lanes added. */
static ALWAYS_INLINE __m128i hsum4_epi32(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    const __m512i x =
        _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    const __m256i y = _mm256_add_epi32(_mm512_castsi512_si256(x), _mm512_extracti64x4_epi64(x, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
}

/* dot_u8i8 of a with the rows r0..r3 into out[0..4): a is loaded once
 * for the four and their lanes summed together. body = d rounded down to
 * 64, m the mask of the bytes past it. */
static ALWAYS_INLINE void dot_u8i8_4(const uint8_t *a, const uint8_t *r0, const uint8_t *r1,
                                     const uint8_t *r2, const uint8_t *r3, size_t body, __mmask64 m,
                                     int32_t *out) {
    __m512i p0 = _mm512_setzero_si512(), p1 = p0, p2 = p0, p3 = p0;
    for (size_t j = 0; j < body; j += 64) {
        const __m512i q = _mm512_loadu_si512(a + j);
        p0 = _mm512_dpbusd_epi32(p0, q, _mm512_loadu_si512(r0 + j));
        p1 = _mm512_dpbusd_epi32(p1, q, _mm512_loadu_si512(r1 + j));
        p2 = _mm512_dpbusd_epi32(p2, q, _mm512_loadu_si512(r2 + j));
        p3 = _mm512_dpbusd_epi32(p3, q, _mm512_loadu_si512(r3 + j));
    }
    if (m != 0) {
        const __m512i q = _mm512_maskz_loadu_epi8(m, a + body);
        p0 = _mm512_dpbusd_epi32(p0, q, _mm512_maskz_loadu_epi8(m, r0 + body));
        p1 = _mm512_dpbusd_epi32(p1, q, _mm512_maskz_loadu_epi8(m, r1 + body));
        p2 = _mm512_dpbusd_epi32(p2, q, _mm512_maskz_loadu_epi8(m, r2 + body));
        p3 = _mm512_dpbusd_epi32(p3, q, _mm512_maskz_loadu_epi8(m, r3 + body));
    }
    _mm_storeu_si128((__m128i *)out, hsum4_epi32(p0, p1, p2, p3));
}

/* out[i] = dot_u8i8(a, rows + i * stride, d) for i < n, four rows at a
 * time. */
static void dot_u8i8_rows(const uint8_t *a, const int8_t *rows, size_t n, size_t d, size_t stride,
                          int32_t *out) {
    const uint8_t *r = (const uint8_t *)rows;
    const size_t body = d & ~(size_t)63;
    const __mmask64 m = d > body ? tail64(d - body) : 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4, r += 4 * stride) {
        dot_u8i8_4(a, r, r + stride, r + 2 * stride, r + 3 * stride, body, m, out + i);
    }
    for (; i < n; i++, r += stride)
        out[i] = (int32_t)byte_kernel(a, r, d, DOT_U8I8);
}

/* out[i] = dot_u8i8(a, base + ids[i] * stride, d) for i < n, four rows at
 * a time. */
static void dot_u8i8_ids(const uint8_t *a, const int8_t *base, size_t stride, const uint32_t *ids,
                         size_t n, size_t d, int32_t *out) {
    const uint8_t *b = (const uint8_t *)base;
    const size_t body = d & ~(size_t)63;
    const __mmask64 m = d > body ? tail64(d - body) : 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        dot_u8i8_4(a, b + (size_t)ids[i] * stride, b + (size_t)ids[i + 1] * stride,
                   b + (size_t)ids[i + 2] * stride, b + (size_t)ids[i + 3] * stride, body, m,
                   out + i);
    }
    /* The last one to three rows take a step of four, the last repeated:
     * a prune's calls are short (28 rows on average, 100-d word vectors),
     * and a row alone pays a horizontal sum of its own. */
    if (i < n) {
        const uint8_t *r[4];
        for (size_t t = 0; t < 4; t++)
            r[t] = b + (size_t)ids[i + t < n ? i + t : n - 1] * stride;
        int32_t last[4];
        dot_u8i8_4(a, r[0], r[1], r[2], r[3], body, m, last);
        memcpy(out + i, last, (n - i) * sizeof *last);
    }
}

/* Sixteen codes a step: their dot products four rows at a time, their
 * three head floats gathered (masked for the last few), the float part in
 * vector form, each operation as simd.h orders it. */
static void sq8_estimates(const uint8_t *a, const uint8_t *codes, size_t n, size_t d, size_t stride,
                          const float p[5], float *out) {
    enum { HEAD = 3 * sizeof(float) };
    const __m512i at =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)stride));
    const __m512 lo = _mm512_set1_ps(p[0]), delta = _mm512_set1_ps(p[1]), c0 = _mm512_set1_ps(p[2]),
                 c1 = _mm512_set1_ps(p[3]), c2 = _mm512_set1_ps(p[4]);
    int32_t dot[16];
    for (size_t i = 0; i < n; i += 16) {
        const size_t m = n - i < 16 ? n - i : 16;
        const __mmask16 k = (__mmask16)((1u << m) - 1);
        const uint8_t *c = codes + i * stride;
        dot_u8i8_rows(a, (const int8_t *)(c + HEAD), m, d, stride, dot);
        const __m512 zero = _mm512_setzero_ps();
        const __m512 t = _mm512_mask_i32gather_ps(zero, k, at, c, 1);
        const __m512 step = _mm512_mask_i32gather_ps(zero, k, at, c + 4, 1);
        const __m512 sum = _mm512_mask_i32gather_ps(zero, k, at, c + 8, 1);
        const __m512 dv = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(k, dot));
        const __m512 inner = _mm512_add_ps(_mm512_mul_ps(lo, sum), _mm512_mul_ps(delta, dv));
        const __m512 ip = _mm512_mul_ps(_mm512_mul_ps(t, step), inner);
        const __m512 e = _mm512_add_ps(_mm512_add_ps(c0, _mm512_mul_ps(c1, _mm512_mul_ps(t, t))),
                                       _mm512_mul_ps(c2, ip));
        _mm512_mask_storeu_ps(out + i, k, e);
    }
}

/* Defined after the table, at the end of the file. */
static void fastscan_accumulate(const uint8_t *codes, size_t nblocks, size_t npairs,
                                const uint8_t *lut, uint32_t *out);
static uint32_t argmin_l2sq_f32_cols(const float *x, const float *cols, size_t k, size_t dim,
                                     size_t stride, float *dist);
static void dot_f32_cols(const float *x, const float *cols, size_t k, size_t dim, size_t stride,
                         float *out);
static float tq_dot_avx512(const float *y, const float *table, const uint8_t *codes, size_t d,
                           unsigned bits);
static float masked_sum_f32_avx512(const float *v, const uint8_t *bits, size_t d);
static void pq8_adc_avx512(const float *tables, const uint8_t *codes, size_t m, size_t n,
                           float *out);
static void fastscan_quantize(const float *tab, size_t m, uint8_t *lut, float *delta, float *bias);
static void pq16_tables(const float *q, const float *ct, size_t m, size_t dsub, bool l2,
                        float *tab);
static void fwht_f32(float *x, const float *signs, size_t n);
static void range_f32(const float *v, size_t n, float *lo_out, float *hi_out);

const simd_ops simd_ops_avx512 = {
    .level = SIMD_AVX512,
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
    .tq_dot = tq_dot_avx512,
    .masked_sum_f32 = masked_sum_f32_avx512,
    .pq8_adc = pq8_adc_avx512,
    .fastscan_quantize = fastscan_quantize,
    .pq16_tables = pq16_tables,
    .fwht_f32 = fwht_f32,
    .range_f32 = range_f32,
};

/* ---- 4-bit PQ fast-scan ------------------------------------------------- *
 *
 *   VPSHUFB zmm      (BW) four 16-entry lookups per instruction; a 512-bit
 *                    load takes two pair rows of a block, and the table
 *                    layout in simd.h puts the four tables that wants,
 *                    [T(2p) T(2p) T(2p+2) T(2p+2)], in one 64-byte load
 *   VPSHUFB {k}{z}   the odd last pair: the unused half reads as zero
 *
 * The uint16 bookkeeping is that of the AVX2 kernel (even vectors recovered
 * as the full sum minus 256 times the odd ones), with the two 256-bit
 * halves, which hold different subspaces of the same 32 vectors, added at
 * the end of each run of at most 128 pairs: each half holds at most 128
 * subspaces, the total at most 256 * 255 < 2^16. */

enum { FASTSCAN_RUN = 128 };

static void fastscan_accumulate(const uint8_t *codes, size_t nblocks, size_t npairs,
                                const uint8_t *lut, uint32_t *out) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    const __mmask64 half = 0xFFFFFFFFull;
    const size_t block_bytes = npairs * 32;
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = codes + b * block_bytes;
        __m512i s_lo = _mm512_setzero_si512(), s_hi = _mm512_setzero_si512();
        for (size_t p0 = 0; p0 < npairs; p0 += FASTSCAN_RUN) {
            const size_t p1 = npairs - p0 < FASTSCAN_RUN ? npairs : p0 + FASTSCAN_RUN;
            __m512i acc = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
            size_t p = p0;
            for (; p + 2 <= p1; p += 2) {
                const __m512i x = _mm512_loadu_si512(blk + p * 32);
                const uint8_t *t = lut + (p / 2) * 128;
                const __m512i r0 =
                    _mm512_shuffle_epi8(_mm512_loadu_si512(t), _mm512_and_si512(x, low4));
                const __m512i r1 = _mm512_shuffle_epi8(
                    _mm512_loadu_si512(t + 64), _mm512_and_si512(_mm512_srli_epi16(x, 4), low4));
                acc = _mm512_add_epi16(acc, _mm512_add_epi16(r0, r1));
                odd = _mm512_add_epi16(
                    odd, _mm512_add_epi16(_mm512_srli_epi16(r0, 8), _mm512_srli_epi16(r1, 8)));
            }
            if (p < p1) {
                /* p is even here, so its tables open group p / 2. The masked
                 * load reads no byte of the next block (or past the store). */
                const __m512i x = _mm512_maskz_loadu_epi8(half, blk + p * 32);
                const uint8_t *t = lut + (p / 2) * 128;
                const __m512i r0 = _mm512_maskz_shuffle_epi8(half, _mm512_loadu_si512(t),
                                                             _mm512_and_si512(x, low4));
                const __m512i r1 =
                    _mm512_maskz_shuffle_epi8(half, _mm512_loadu_si512(t + 64),
                                              _mm512_and_si512(_mm512_srli_epi16(x, 4), low4));
                acc = _mm512_add_epi16(acc, _mm512_add_epi16(r0, r1));
                odd = _mm512_add_epi16(
                    odd, _mm512_add_epi16(_mm512_srli_epi16(r0, 8), _mm512_srli_epi16(r1, 8)));
            }
            const __m256i acc2 =
                _mm256_add_epi16(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
            const __m256i odd2 =
                _mm256_add_epi16(_mm512_castsi512_si256(odd), _mm512_extracti64x4_epi64(odd, 1));
            const __m256i even = _mm256_sub_epi16(acc2, _mm256_slli_epi16(odd2, 8));
            /* [v0..v7 | v16..v23] and [v8..v15 | v24..v31], then in order. */
            const __m256i lo = _mm256_unpacklo_epi16(even, odd2);
            const __m256i hi = _mm256_unpackhi_epi16(even, odd2);
            s_lo = _mm512_add_epi32(s_lo,
                                    _mm512_cvtepu16_epi32(_mm256_permute2x128_si256(lo, hi, 0x20)));
            s_hi = _mm512_add_epi32(s_hi,
                                    _mm512_cvtepu16_epi32(_mm256_permute2x128_si256(lo, hi, 0x31)));
        }
        _mm512_storeu_si512(out + b * 32, s_lo);
        _mm512_storeu_si512(out + b * 32 + 16, s_hi);
    }
}

/* ---- dot products with points stored by columns ---------------------------
 *
 *   VFMADD231PS      x_t * c_t for 16 columns, t unrolled by four into four
 *                    accumulators (four FMA chains) */
static void dot_f32_cols(const float *x, const float *cols, size_t k, size_t dim, size_t stride,
                         float *out) {
    for (size_t c = 0; c < k; c += 16) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const float *col = cols + c;
        size_t t = 0;
        for (; t + 4 <= dim; t += 4) {
            const float *r = col + t * stride;
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[t]), _mm512_loadu_ps(r), a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(x[t + 1]), _mm512_loadu_ps(r + stride), a1);
            a2 = _mm512_fmadd_ps(_mm512_set1_ps(x[t + 2]), _mm512_loadu_ps(r + 2 * stride), a2);
            a3 = _mm512_fmadd_ps(_mm512_set1_ps(x[t + 3]), _mm512_loadu_ps(r + 3 * stride), a3);
        }
        for (; t < dim; t++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[t]), _mm512_loadu_ps(col + t * stride), a0);
        const __m512 a = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        const __mmask16 valid = c + 16 > k ? (__mmask16)((1u << (k - c)) - 1u) : (__mmask16)0xFFFF;
        _mm512_mask_storeu_ps(out + c, valid, a);
    }
}

/* ---- nearest of points stored by columns --------------------------------
 *
 *   VFMADD231PS      (x_t - c_t)^2 for 16 columns, t unrolled by four into
 *                    four accumulators (four FMA chains)
 *   VCMPPS -> k      per-lane running minimum, index moved under the mask
 *
 * Ties resolve to the lowest index, as in the AVX2 kernel. */
static uint32_t argmin_l2sq_f32_cols(const float *x, const float *cols, size_t k, size_t dim,
                                     size_t stride, float *dist) {
    const __m512 inf = _mm512_set1_ps(INFINITY);
    const __m512i sixteen = _mm512_set1_epi32(16);
    __m512 best = inf;
    __m512i idx = _mm512_setzero_si512();
    __m512i jv = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (size_t c = 0; c < k; c += 16) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const float *col = cols + c;
        size_t t = 0;
        for (; t + 4 <= dim; t += 4) {
            const float *r = col + t * stride;
            __m512 d;
            d = _mm512_sub_ps(_mm512_set1_ps(x[t]), _mm512_loadu_ps(r));
            a0 = _mm512_fmadd_ps(d, d, a0);
            d = _mm512_sub_ps(_mm512_set1_ps(x[t + 1]), _mm512_loadu_ps(r + stride));
            a1 = _mm512_fmadd_ps(d, d, a1);
            d = _mm512_sub_ps(_mm512_set1_ps(x[t + 2]), _mm512_loadu_ps(r + 2 * stride));
            a2 = _mm512_fmadd_ps(d, d, a2);
            d = _mm512_sub_ps(_mm512_set1_ps(x[t + 3]), _mm512_loadu_ps(r + 3 * stride));
            a3 = _mm512_fmadd_ps(d, d, a3);
        }
        for (; t < dim; t++) {
            __m512 d = _mm512_sub_ps(_mm512_set1_ps(x[t]), _mm512_loadu_ps(col + t * stride));
            a0 = _mm512_fmadd_ps(d, d, a0);
        }
        __m512 a = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        __mmask16 valid = 0xFFFF;
        if (c + 16 > k) /* padding columns are never chosen */
            valid = (__mmask16)((1u << (k - c)) - 1u);
        const __mmask16 lt = _mm512_mask_cmp_ps_mask(valid, a, best, _CMP_LT_OQ);
        best = _mm512_mask_mov_ps(best, lt, a);
        idx = _mm512_mask_mov_epi32(idx, lt, jv);
        jv = _mm512_add_epi32(jv, sixteen);
    }
    /* The least distance, and the first column holding it, across the
     * lanes without leaving the registers: with 16 columns (4-bit PQ's
     * codebooks) a scalar pass over the lanes was most of the call. */
    const float b = _mm512_reduce_min_ps(best);
    const __mmask16 at = _mm512_cmp_ps_mask(best, _mm512_set1_ps(b), _CMP_EQ_OQ);
    *dist = b;
    return _mm512_mask_reduce_min_epu32(at, idx);
}

/* ---- TurboQuant codes ----------------------------------------------------
 * sum_j y[j] * table[code_j]. Sixteen b-bit codes fill exactly 2b bytes:
 * two b-byte loads give codes 0-7 and 8-15; four 32-bit words of four codes
 * each are spread over the 16 lanes (VPERMD) and shifted apart (VPSRLVD).
 * Up to 16 levels (b <= 4) the whole codebook sits in one register and
 * VPERMPS looks all 16 up at once; 32 levels take VPERMT2PS over two
 * registers; wider codes go to the scalar kernel (see tq_dot_avx512). */
/* `avail`: code bytes from p to the end. With b + 8 or more, two 8-byte
 * loads straight from the codes (bits past the group are masked off);
 * otherwise the group is first copied exactly into a zeroed buffer. */
static ALWAYS_INLINE __m512i tq_indices16(const uint8_t *p, unsigned b, size_t avail) {
    uint64_t lo, hi;
    if (avail >= b + 8) {
        memcpy(&lo, p, 8);
        memcpy(&hi, p + b, 8);
    } else {
        uint8_t buf[16] = {0};
        memcpy(buf, p, avail < 2 * b ? avail : 2 * b);
        memcpy(&lo, buf, 8);
        memcpy(&hi, buf + b, 8);
    }
    __m128i words = _mm_set_epi32((int)(uint32_t)(hi >> (4 * b)), (int)(uint32_t)hi,
                                  (int)(uint32_t)(lo >> (4 * b)), (int)(uint32_t)lo);
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512i v = _mm512_permutexvar_epi32(spread, _mm512_castsi128_si512(words));
    const __m512i shift =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3),
                           _mm512_set1_epi32((int)b));
    return _mm512_and_si512(_mm512_srlv_epi32(v, shift), _mm512_set1_epi32((1 << b) - 1));
}

static ALWAYS_INLINE __m512 tq_lookup16(__m512i idx, __m512 t0, __m512 t1, unsigned b) {
    if (b <= 4)
        return _mm512_permutexvar_ps(idx, t0);
    return _mm512_permutex2var_ps(t0, idx, t1); /* b == 5: 32 levels */
}

static ALWAYS_INLINE float tq_dot_b512(const float *y, const float *table, const uint8_t *codes,
                                       size_t d, unsigned b) {
    const __m512 t0 = _mm512_loadu_ps(table), t1 = _mm512_loadu_ps(table + 16);
    const size_t total = (d * b + 7) / 8;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t j = 0;
    for (; j + 32 <= d; j += 32) {
        __m512i i0 = tq_indices16(codes + j / 16 * 2 * b, b, total - j / 16 * 2 * b);
        __m512i i1 = tq_indices16(codes + (j / 16 + 1) * 2 * b, b, total - (j / 16 + 1) * 2 * b);
        acc0 = _mm512_fmadd_ps(tq_lookup16(i0, t0, t1, b), _mm512_loadu_ps(y + j), acc0);
        acc1 = _mm512_fmadd_ps(tq_lookup16(i1, t0, t1, b), _mm512_loadu_ps(y + j + 16), acc1);
    }
    for (; j < d; j += 16) {
        size_t rem = d - j < 16 ? d - j : 16;
        __mmask16 m = (__mmask16)((1u << rem) - 1u);
        __m512i idx = tq_indices16(codes + j / 16 * 2 * b, b, total - j / 16 * 2 * b);
        acc0 = _mm512_fmadd_ps(tq_lookup16(idx, t0, t1, b), _mm512_maskz_loadu_ps(m, y + j), acc0);
    }
    return hsum(_mm512_add_ps(acc0, acc1));
}

/* 64 to 256 levels: the codebook fills 4 to 16 registers; VPERMT2PS looks
 * 16 codes up in each pair of them (the low five bits), and the high bits
 * pick among the pairs' answers with masked blends. Eight bits: sixteen
 * codes are sixteen bytes, widened with one VPMOVZXBD. */
static ALWAYS_INLINE __m512 tq_lookup_wide(__m512i idx, const __m512 *t, unsigned b) {
    __m512 r[8];
    const unsigned pairs = 1u << (b - 5);
    for (unsigned k = 0; k < pairs; k++)
        r[k] = _mm512_permutex2var_ps(t[2 * k], idx, t[2 * k + 1]);
    for (unsigned bit = 5, n = pairs; n > 1; bit++, n /= 2) {
        const __mmask16 m = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(1 << bit));
        for (unsigned k = 0; k < n / 2; k++)
            r[k] = _mm512_mask_blend_ps(m, r[2 * k], r[2 * k + 1]);
    }
    return r[0];
}

static ALWAYS_INLINE __m512i tq_indices_wide(const uint8_t *codes, size_t j, unsigned b,
                                             size_t total) {
    if (b == 8)
        return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + j)));
    return tq_indices16(codes + j / 16 * 2 * b, b, total - j / 16 * 2 * b);
}

static ALWAYS_INLINE float tq_dot_wide512(const float *y, const float *table, const uint8_t *codes,
                                          size_t d, unsigned b) {
    __m512 t[16];
    for (unsigned k = 0; k < (1u << b) / 16; k++)
        t[k] = _mm512_loadu_ps(table + 16 * k);
    const size_t total = (d * b + 7) / 8;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t j = 0;
    for (; j + 32 <= d; j += 32) {
        __m512i i0 = tq_indices_wide(codes, j, b, total);
        __m512i i1 = tq_indices_wide(codes, j + 16, b, total);
        acc0 = _mm512_fmadd_ps(tq_lookup_wide(i0, t, b), _mm512_loadu_ps(y + j), acc0);
        acc1 = _mm512_fmadd_ps(tq_lookup_wide(i1, t, b), _mm512_loadu_ps(y + j + 16), acc1);
    }
    float tail = 0;
    if (j + 16 <= d) {
        __m512i idx = tq_indices_wide(codes, j, b, total);
        acc0 = _mm512_fmadd_ps(tq_lookup_wide(idx, t, b), _mm512_loadu_ps(y + j), acc0);
        j += 16;
    }
    /* Fewer than sixteen codes left: the byte loads above would run past
     * the codes, and the plain loop is as fast for so few. */
    if (j < d) {
        const size_t first = j * b / 8; /* j is a multiple of 16: a whole byte */
        tail = tq_dot_plain(y + j, table, codes + first, d - j, b);
    }
    return hsum(_mm512_add_ps(acc0, acc1)) + tail;
}

static float tq_dot_avx512(const float *y, const float *table, const uint8_t *codes, size_t d,
                           unsigned bits) {
    switch (bits) {
    case 1: return tq_dot_b512(y, table, codes, d, 1);
    case 2: return tq_dot_b512(y, table, codes, d, 2);
    case 3: return tq_dot_b512(y, table, codes, d, 3);
    case 4: return tq_dot_b512(y, table, codes, d, 4);
    case 5: return tq_dot_b512(y, table, codes, d, 5);
    /* 64 or more levels: VGATHERDPS ran slower than plain loads (tq8 on 768
     * dimensions: 20 vs 33 queries/s); permutes over the register-resident
     * codebook beat both. */
    case 6: return tq_dot_wide512(y, table, codes, d, 6);
    case 7: return tq_dot_wide512(y, table, codes, d, 7);
    default: return tq_dot_wide512(y, table, codes, d, 8);
    }
}

/* ---- masked sums ----------------------------------------------------------
 * Sixteen bits of the mask are a k register as they stand: a masked add. */
static float masked_sum_f32_avx512(const float *v, const uint8_t *bits, size_t d) {
    __m512 acc = _mm512_setzero_ps();
    size_t j = 0;
    for (; j + 16 <= d; j += 16) {
        uint16_t m;
        memcpy(&m, bits + j / 8, 2);
        acc = _mm512_mask_add_ps(acc, (__mmask16)m, acc, _mm512_loadu_ps(v + j));
    }
    if (j < d) {
        size_t rem = d - j;
        uint16_t m = 0;
        memcpy(&m, bits + j / 8, (rem + 7) / 8);
        __mmask16 live = (__mmask16)(m & ((1u << rem) - 1u));
        acc = _mm512_mask_add_ps(acc, live, acc, _mm512_maskz_loadu_ps(live, v + j));
    }
    return hsum(acc);
}

/* ---- 8-bit PQ distances --------------------------------------------------
 * Sixteen subspaces per VGATHERDPS: index = 256 k + code byte; the tail is a
 * masked gather, so no table entry past the last subspace is touched. */
static void pq8_adc_avx512(const float *tables, const uint8_t *codes, size_t m, size_t n,
                           float *out) {
    const __m512i sub =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32(256));
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * m;
        __m512 acc = _mm512_setzero_ps();
        size_t k = 0;
        for (; k + 16 <= m; k += 16) {
            __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + k)));
            idx = _mm512_add_epi32(idx, _mm512_add_epi32(sub, _mm512_set1_epi32((int)(k * 256))));
            acc = _mm512_add_ps(acc, _mm512_i32gather_ps(idx, tables, 4));
        }
        if (k < m) {
            __mmask16 live = (__mmask16)((1u << (m - k)) - 1u);
            __m512i idx = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(live, c + k));
            idx = _mm512_add_epi32(idx, _mm512_add_epi32(sub, _mm512_set1_epi32((int)(k * 256))));
            acc = _mm512_add_ps(
                acc, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, idx, tables, 4));
        }
        out[i] = hsum(acc);
    }
}

/* One subspace's 16 centroids are one register; the empty asm keeps the
 * product and the sum two roundings, as on the scalar level. */
static void pq16_tables(const float *q, const float *ct, size_t m, size_t dsub, bool l2,
                        float *tab) {
    for (size_t s = 0; s < m; s++) {
        __m512 acc = _mm512_setzero_ps();
        for (size_t t = 0; t < dsub; t++) {
            const __m512 x = _mm512_set1_ps(q[s * dsub + t]);
            const __m512 row = _mm512_loadu_ps(ct + (s * dsub + t) * 16);
            __m512 p;
            if (l2) {
                const __m512 d = _mm512_sub_ps(x, row);
                p = _mm512_mul_ps(d, d);
            } else {
                p = _mm512_mul_ps(x, row);
            }
            __asm__("" : "+v"(p));
            acc = _mm512_add_ps(acc, p);
        }
        _mm512_storeu_ps(tab + s * 16, acc);
    }
}

/* ---- fast-scan tables and the Hadamard transform ------------------------- *
 *
 * One table of 16 floats is one register: its minimum and maximum are two
 * reductions, its 16 bytes one VPMOVDB. The arithmetic is the scalar
 * kernel's, operation for operation; the empty asm between the multiply and
 * the add keeps the compiler from fusing them into an FMA, whose single
 * rounding would move an entry across a half now and then. */

static void fastscan_quantize(const float *tab, size_t m, uint8_t *lut, float *delta_out,
                              float *bias_out) {
    float range = 0.0f, bias = 0.0f;
    for (size_t s = 0; s < m; s++) {
        const __m512 t = _mm512_loadu_ps(tab + s * 16);
        const float lo = _mm512_reduce_min_ps(t), hi = _mm512_reduce_max_ps(t);
        bias += lo;
        range = hi - lo > range ? hi - lo : range;
    }
    const float delta = range > 0.0f ? range / 255.0f : 1.0f;
    const __m512 inv = _mm512_set1_ps(1.0f / delta), half = _mm512_set1_ps(0.5f);
    const __m512 top = _mm512_set1_ps(255.0f);
    for (size_t s = 0; s < m; s++) {
        const __m512 t = _mm512_loadu_ps(tab + s * 16);
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(t, _mm512_set1_ps(_mm512_reduce_min_ps(t))), inv);
        __asm__("" : "+v"(v));
        /* MIN returns its second operand for a NaN: 255, as the scalar's
         * failed comparison does. */
        v = _mm512_min_ps(_mm512_add_ps(v, half), top);
        const __m128i bytes = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v));
        uint8_t *dst = lut + simd_fastscan_table(s);
        _mm_storeu_si128((__m128i *)(void *)dst, bytes);
        _mm_storeu_si128((__m128i *)(void *)(dst + 16), bytes);
    }
    *delta_out = delta;
    *bias_out = bias;
}

/* Stages h = 1, 2, 4, 8 inside each register: the partner of lane j is
 * lane j ^ h (a permute), and lanes with bit h set take partner - self, the
 * others self + partner: self * (+-1) + partner, exact in one FMA since the
 * product is. Stages h >= 16 pair whole registers. */
static void fwht_f32(float *x, const float *signs, size_t n) {
    if (n < 16) {
        for (size_t j = 0; signs != NULL && j < n; j++)
            x[j] *= signs[j];
        for (size_t h = 1; h < n; h *= 2)
            for (size_t i = 0; i < n; i += 2 * h)
                for (size_t j = i; j < i + h; j++) {
                    const float a = x[j], b = x[j + h];
                    x[j] = a + b;
                    x[j + h] = a - b;
                }
        return;
    }
    const __m512 s1 = _mm512_castsi512_ps(_mm512_set1_epi64((long long)0xBF8000003F800000ull));
    const __m512 s2 = _mm512_castsi512_ps(
        _mm512_set4_epi32((int)0xBF800000, (int)0xBF800000, 0x3F800000, 0x3F800000));
    const __m512 one = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f);
    const __m512 s4 = _mm512_mask_blend_ps(0xF0F0, one, minus);
    const __m512 s8 = _mm512_mask_blend_ps(0xFF00, one, minus);
    for (size_t i = 0; i < n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        if (signs != NULL)
            v = _mm512_mul_ps(v, _mm512_loadu_ps(signs + i));
        v = _mm512_fmadd_ps(v, s1, _mm512_permute_ps(v, 0xB1));
        v = _mm512_fmadd_ps(v, s2, _mm512_permute_ps(v, 0x4E));
        v = _mm512_fmadd_ps(v, s4, _mm512_shuffle_f32x4(v, v, 0xB1));
        v = _mm512_fmadd_ps(v, s8, _mm512_shuffle_f32x4(v, v, 0x4E));
        _mm512_storeu_ps(x + i, v);
    }
    /* Two stages a pass (h and 2h on four registers): the same butterflies,
     * half the loads and stores. */
    size_t h = 16;
    for (; 4 * h <= n; h *= 4)
        for (size_t i = 0; i < n; i += 4 * h)
            for (size_t j = i; j < i + h; j += 16) {
                const __m512 a = _mm512_loadu_ps(x + j), b = _mm512_loadu_ps(x + j + h);
                const __m512 c = _mm512_loadu_ps(x + j + 2 * h), d = _mm512_loadu_ps(x + j + 3 * h);
                const __m512 ab = _mm512_add_ps(a, b), a_b = _mm512_sub_ps(a, b);
                const __m512 cd = _mm512_add_ps(c, d), c_d = _mm512_sub_ps(c, d);
                _mm512_storeu_ps(x + j, _mm512_add_ps(ab, cd));
                _mm512_storeu_ps(x + j + h, _mm512_add_ps(a_b, c_d));
                _mm512_storeu_ps(x + j + 2 * h, _mm512_sub_ps(ab, cd));
                _mm512_storeu_ps(x + j + 3 * h, _mm512_sub_ps(a_b, c_d));
            }
    if (h < n)
        for (size_t j = 0; j < h; j += 16) {
            const __m512 a = _mm512_loadu_ps(x + j), b = _mm512_loadu_ps(x + j + h);
            _mm512_storeu_ps(x + j, _mm512_add_ps(a, b));
            _mm512_storeu_ps(x + j + h, _mm512_sub_ps(a, b));
        }
}

static void range_f32(const float *v, size_t n, float *lo_out, float *hi_out) {
    __m512 lo = _mm512_set1_ps(v[0]), hi = lo;
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 x = _mm512_loadu_ps(v + j);
        lo = _mm512_min_ps(lo, x);
        hi = _mm512_max_ps(hi, x);
    }
    if (j < n) {
        const __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(m, v + j);
        lo = _mm512_mask_min_ps(lo, m, lo, x);
        hi = _mm512_mask_max_ps(hi, m, hi, x);
    }
    *lo_out = _mm512_reduce_min_ps(lo);
    *hi_out = _mm512_reduce_max_ps(hi);
}
