/*
 * AVX2 kernels (Haswell, Zen 1 and later). The instructions they rely on:
 *
 *   VFMADD231PS      fused multiply-add: one rounding per term, and the sum
 *                    chain is the only latency that matters (4-5 cycles,
 *                    2 per cycle), hence 4 independent accumulators
 *   VMASKMOVPS       tail of a float array: masked-off lanes are neither
 *                    read nor faulted, so no scalar loop and no overread
 *   VCMPPS+VMOVMSKPS first_below: 8 compares to a bit mask; its trailing
 *                    zero count is the index
 *   VPSHUFB          popcount of 32 bytes by two 16-entry nibble lookups
 *   VPSADBW          sums the byte counts into four 64-bit lanes
 *   POPCNT           64-bit words left after the 32-byte blocks
 *   VPMOVZXBW/SXBW   bytes widened to 16 bits in the load
 *   VPMADDWD         16x16 -> 32-bit products summed in pairs. Exact here:
 *                    widened bytes are at most 255 in magnitude, so a pair
 *                    of products cannot overflow 32 bits. (VPMADDUBSW would
 *                    save the widening but saturates 255*127*2 at 16 bits.)
 *
 * The single-pair, _rows and _x4 forms of a float kernel share one
 * accumulation scheme per (query, row) pair: 4 accumulators over 32-float
 * blocks, up to three 8-float blocks in accumulators 0-2, the masked tail in
 * accumulator 3, then (acc0 + acc1) + (acc2 + acc3) reduced by hsum(). So
 * the three forms return bit-identical results, and a batch search ranks
 * exactly as the same queries searched one by one.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "simd/simd.h"
#include "simd/tq_plain.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ---- floats ------------------------------------------------------------- */

/* A sliding window over 8 ones then 8 zeros: mask for the first `rem` lanes. */
static const int32_t tail_mask_src[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

static ALWAYS_INLINE __m256i tail_mask(size_t rem) {
    return _mm256_loadu_si256((const __m256i *)(tail_mask_src + 8 - rem));
}

static ALWAYS_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One accumulation step; `l2` is a constant after inlining. */
static ALWAYS_INLINE __m256 step(__m256 acc, __m256 a, __m256 b, int l2) {
    if (l2) {
        __m256 t = _mm256_sub_ps(a, b);
        return _mm256_fmadd_ps(t, t, acc);
    }
    return _mm256_fmadd_ps(a, b, acc);
}

/* Rows stream from memory, so a row's cache lines are requested a few rows
 * before it is read: prefetch distance counted in bytes, since short rows are
 * consumed quickly and need more rows in flight to cover memory latency.
 * The requests are spread through the loop, one per 64 bytes of row
 * consumed, rather than issued a row at a time (kern_avx512.c has the
 * measurement; AVX2 is hurt less by bursts but gains nothing from them). */
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

/* Eight coordinates of row x from i (n < 8: the first n, the rest zero, as
 * a masked load leaves them). A row of bytes is widened to the floats its
 * bytes hold, so pair() runs the same steps on the same values whatever
 * the row's type: its sums are bit for bit those of the widened row.
 * `bytes` is a constant after inlining. */
static ALWAYS_INLINE __m256 row8(const void *x, size_t i, int bytes) {
    if (!bytes)
        return _mm256_loadu_ps((const float *)x + i);
    const __m128i b = _mm_loadl_epi64((const __m128i *)((const uint8_t *)x + i));
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
}

static ALWAYS_INLINE __m256 row_tail(const void *x, size_t i, size_t n, __m256i m, int bytes) {
    if (!bytes)
        return _mm256_maskload_ps((const float *)x + i, m);
    uint8_t b[8] = {0};
    memcpy(b, (const uint8_t *)x + i, n);
    return row8(b, 0, 1);
}

/* Query a against row b (floats, or with `bytes` one byte a coordinate).
 * `pf`, unless NULL, is a later float row to prefetch while this one is
 * read. */
static ALWAYS_INLINE float pair(const float *a, const void *b, const float *pf, size_t d, int l2,
                                int bytes) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        if (pf != NULL) {
            _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + i + 16), _MM_HINT_T0);
        }
        acc0 = step(acc0, _mm256_loadu_ps(a + i), row8(b, i, bytes), l2);
        acc1 = step(acc1, _mm256_loadu_ps(a + i + 8), row8(b, i + 8, bytes), l2);
        acc2 = step(acc2, _mm256_loadu_ps(a + i + 16), row8(b, i + 16, bytes), l2);
        acc3 = step(acc3, _mm256_loadu_ps(a + i + 24), row8(b, i + 24, bytes), l2);
    }
    /* The rest of the prefetched row, starting from the line of the last
     * element already requested: a misaligned row spills into one more. */
    if (pf != NULL)
        prefetch_lines(pf, i > 0 ? i - 1 : 0, d);
    if (i + 8 <= d) {
        acc0 = step(acc0, _mm256_loadu_ps(a + i), row8(b, i, bytes), l2);
        i += 8;
    }
    if (i + 8 <= d) {
        acc1 = step(acc1, _mm256_loadu_ps(a + i), row8(b, i, bytes), l2);
        i += 8;
    }
    if (i + 8 <= d) {
        acc2 = step(acc2, _mm256_loadu_ps(a + i), row8(b, i, bytes), l2);
        i += 8;
    }
    if (i < d) {
        __m256i m = tail_mask(d - i);
        acc3 = step(acc3, _mm256_maskload_ps(a + i, m), row_tail(b, i, d - i, m, bytes), l2);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

/* Two queries against one row: the scheme of pair() for each, with x loaded
 * once for both. Four queries at once would need 16 accumulators plus the
 * row, more than the 16 YMM registers, and the spills would cost more than
 * loading x twice. */
static ALWAYS_INLINE void pair2(const float *q0, const float *q1, const float *x, size_t d, int l2,
                                float *out0, float *out1) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        __m256 x2 = _mm256_loadu_ps(x + i + 16), x3 = _mm256_loadu_ps(x + i + 24);
        /* Pins x in registers. Without it GCC 12 folds each load of x into
         * both queries' VSUBPS, loading it twice, and x4 runs no faster than
         * four single calls (33 vs 43 million distances/s, d = 784). */
        __asm__("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3));
        a0 = step(a0, _mm256_loadu_ps(q0 + i), x0, l2);
        a1 = step(a1, _mm256_loadu_ps(q0 + i + 8), x1, l2);
        a2 = step(a2, _mm256_loadu_ps(q0 + i + 16), x2, l2);
        a3 = step(a3, _mm256_loadu_ps(q0 + i + 24), x3, l2);
        b0 = step(b0, _mm256_loadu_ps(q1 + i), x0, l2);
        b1 = step(b1, _mm256_loadu_ps(q1 + i + 8), x1, l2);
        b2 = step(b2, _mm256_loadu_ps(q1 + i + 16), x2, l2);
        b3 = step(b3, _mm256_loadu_ps(q1 + i + 24), x3, l2);
    }
    if (i + 8 <= d) {
        __m256 xv = _mm256_loadu_ps(x + i);
        a0 = step(a0, _mm256_loadu_ps(q0 + i), xv, l2);
        b0 = step(b0, _mm256_loadu_ps(q1 + i), xv, l2);
        i += 8;
    }
    if (i + 8 <= d) {
        __m256 xv = _mm256_loadu_ps(x + i);
        a1 = step(a1, _mm256_loadu_ps(q0 + i), xv, l2);
        b1 = step(b1, _mm256_loadu_ps(q1 + i), xv, l2);
        i += 8;
    }
    if (i + 8 <= d) {
        __m256 xv = _mm256_loadu_ps(x + i);
        a2 = step(a2, _mm256_loadu_ps(q0 + i), xv, l2);
        b2 = step(b2, _mm256_loadu_ps(q1 + i), xv, l2);
        i += 8;
    }
    if (i < d) {
        __m256i m = tail_mask(d - i);
        __m256 xv = _mm256_maskload_ps(x + i, m);
        a3 = step(a3, _mm256_maskload_ps(q0 + i, m), xv, l2);
        b3 = step(b3, _mm256_maskload_ps(q1 + i, m), xv, l2);
    }
    *out0 = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    *out1 = hsum(_mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3)));
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

static float l2sq_f32(const float *a, const float *b, size_t d) {
    return pair(a, b, NULL, d, 1, 0);
}

static float dot_f32(const float *a, const float *b, size_t d) { return pair(a, b, NULL, d, 0, 0); }

static float l2sq_f32_u8(const float *q, const uint8_t *x, size_t d) {
    return pair(q, x, NULL, d, 1, 1);
}

static float dot_f32_u8(const float *q, const uint8_t *x, size_t d) {
    return pair(q, x, NULL, d, 0, 1);
}

static void l2sq_f32_rows(const float *q, const float *base, size_t n, size_t d, size_t stride,
                          float *out) {
    rows(q, base, n, d, stride, out, 1);
}

static void dot_f32_rows(const float *q, const float *base, size_t n, size_t d, size_t stride,
                         float *out) {
    rows(q, base, n, d, stride, out, 0);
}

static void l2sq_f32_x4(const float *const q[4], const float *x, size_t d, float out[4]) {
    pair2(q[0], q[1], x, d, 1, &out[0], &out[1]);
    pair2(q[2], q[3], x, d, 1, &out[2], &out[3]);
}

static void dot_f32_x4(const float *const q[4], const float *x, size_t d, float out[4]) {
    pair2(q[0], q[1], x, d, 0, &out[0], &out[1]);
    pair2(q[2], q[3], x, d, 0, &out[2], &out[3]);
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
    __m256 ab0 = _mm256_setzero_ps(), ab1 = ab0, aa0 = ab0, aa1 = ab0, bb0 = ab0, bb1 = ab0;
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m256 x0 = _mm256_loadu_ps(a + i), y0 = _mm256_loadu_ps(b + i);
        __m256 x1 = _mm256_loadu_ps(a + i + 8), y1 = _mm256_loadu_ps(b + i + 8);
        ab0 = _mm256_fmadd_ps(x0, y0, ab0);
        aa0 = _mm256_fmadd_ps(x0, x0, aa0);
        bb0 = _mm256_fmadd_ps(y0, y0, bb0);
        ab1 = _mm256_fmadd_ps(x1, y1, ab1);
        aa1 = _mm256_fmadd_ps(x1, x1, aa1);
        bb1 = _mm256_fmadd_ps(y1, y1, bb1);
    }
    if (i + 8 <= d) {
        __m256 x0 = _mm256_loadu_ps(a + i), y0 = _mm256_loadu_ps(b + i);
        ab0 = _mm256_fmadd_ps(x0, y0, ab0);
        aa0 = _mm256_fmadd_ps(x0, x0, aa0);
        bb0 = _mm256_fmadd_ps(y0, y0, bb0);
        i += 8;
    }
    if (i < d) {
        __m256i m = tail_mask(d - i);
        __m256 x1 = _mm256_maskload_ps(a + i, m), y1 = _mm256_maskload_ps(b + i, m);
        ab1 = _mm256_fmadd_ps(x1, y1, ab1);
        aa1 = _mm256_fmadd_ps(x1, x1, aa1);
        bb1 = _mm256_fmadd_ps(y1, y1, bb1);
    }
    return cos_dist_finish(hsum(_mm256_add_ps(ab0, ab1)), hsum(_mm256_add_ps(aa0, aa1)),
                           hsum(_mm256_add_ps(bb0, bb1)));
}

static size_t first_below(const float *v, size_t from, size_t n, float threshold) {
    if (from >= n)
        return n;
    const __m256 t = _mm256_set1_ps(threshold);
    size_t i = from;
    for (; i + 8 <= n; i += 8) {
        /* Ordered, quiet less-than: false for NaN, like the scalar `<`. */
        unsigned m =
            (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(v + i), t, _CMP_LT_OQ));
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
    }
    if (i < n) {
        __m256i lanes = tail_mask(n - i);
        __m256 x = _mm256_maskload_ps(v + i, lanes);
        unsigned m = (unsigned)_mm256_movemask_ps(
            _mm256_and_ps(_mm256_cmp_ps(x, t, _CMP_LT_OQ), _mm256_castsi256_ps(lanes)));
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
    }
    return n;
}

/* ---- bit codes ---------------------------------------------------------- */

static ALWAYS_INLINE __m256i popcount_bytes(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2,
                                         1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_and_si256(v, low4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

static ALWAYS_INLINE uint64_t load_u64(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, sizeof(w));
    return w;
}

/* Popcount of a XOR b (hamming) or a AND b; `use_and` is constant. */
static ALWAYS_INLINE uint64_t popcount_op(const uint8_t *a, const uint8_t *b, size_t nbytes,
                                          int use_and) {
    __m256i acc = _mm256_setzero_si256();
    const __m256i zero = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= nbytes; i += 32) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(a + i));
        __m256i y = _mm256_loadu_si256((const __m256i *)(b + i));
        __m256i v = use_and ? _mm256_and_si256(x, y) : _mm256_xor_si256(x, y);
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(popcount_bytes(v), zero));
    }
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    uint64_t count = (uint64_t)_mm_cvtsi128_si64(s) + (uint64_t)_mm_extract_epi64(s, 1);
    for (; i + 8 <= nbytes; i += 8) {
        uint64_t x = load_u64(a + i), y = load_u64(b + i);
        count += (uint64_t)_mm_popcnt_u64(use_and ? x & y : x ^ y);
    }
    for (; i < nbytes; i++)
        count +=
            (uint64_t)_mm_popcnt_u32(use_and ? (unsigned)(a[i] & b[i]) : (unsigned)(a[i] ^ b[i]));
    return count;
}

static uint64_t hamming(const uint8_t *a, const uint8_t *b, size_t nbytes) {
    return popcount_op(a, b, nbytes, 0);
}

static uint64_t and_popcount(const uint8_t *a, const uint8_t *b, size_t nbytes) {
    return popcount_op(a, b, nbytes, 1);
}

/* ---- byte vectors ------------------------------------------------------- */

typedef enum byte_kind { DOT_U8, DOT_I8, DOT_U8I8, L2SQ_U8 } byte_kind;

static ALWAYS_INLINE __m256i widen(const void *p, int is_signed) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    return is_signed ? _mm256_cvtepi8_epi16(v) : _mm256_cvtepu8_epi16(v);
}

/* 16 products summed into 8 int32 lanes. */
static ALWAYS_INLINE __m256i byte_step(__m256i acc, const void *a, const void *b, byte_kind k) {
    __m256i x = widen(a, k == DOT_I8);
    __m256i y = widen(b, k == DOT_I8 || k == DOT_U8I8);
    if (k == L2SQ_U8) {
        __m256i t = _mm256_sub_epi16(x, y);
        return _mm256_add_epi32(acc, _mm256_madd_epi16(t, t));
    }
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, y));
}

static ALWAYS_INLINE uint32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return (uint32_t)_mm_cvtsi128_si32(s);
}

/* The sum of a kind's terms modulo 2^32, as in kern_scalar.c. Fewer than 16
 * trailing bytes go through a scalar loop: there is no masked byte load
 * before AVX-512BW. */
static ALWAYS_INLINE uint32_t byte_kernel(const void *pa, const void *pb, size_t d, byte_kind k) {
    const uint8_t *a = pa, *b = pb;
    __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0;
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        acc0 = byte_step(acc0, a + i, b + i, k);
        acc1 = byte_step(acc1, a + i + 16, b + i + 16, k);
    }
    if (i + 16 <= d) {
        acc0 = byte_step(acc0, a + i, b + i, k);
        i += 16;
    }
    uint32_t sum = hsum_epi32(_mm256_add_epi32(acc0, acc1));
    for (; i < d; i++) {
        int32_t x = k == DOT_I8 ? (int32_t)(int8_t)a[i] : (int32_t)a[i];
        int32_t y = k == DOT_I8 || k == DOT_U8I8 ? (int32_t)(int8_t)b[i] : (int32_t)b[i];
        sum += k == L2SQ_U8 ? (uint32_t)((x - y) * (x - y)) : (uint32_t)(x * y);
    }
    return sum;
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

/* The sums of four registers' lanes, [sum a, sum b, sum c, sum d]. */
static ALWAYS_INLINE __m128i hsum4_epi32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
    const __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
    const __m256i x =
        _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
    return _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
}

/* dot_u8i8 of a with the rows r0..r3 into out[0..4): a is widened once
 * for the four and their lanes summed together. The last d % 16 bytes of
 * a row are read as the 16 ending at d, against qt, a copy of a's last 16
 * whose bytes already counted are zero (window: d >= 16 and a tail): at
 * d = 25 they were nine scalar products a row, which made an 8-bit scan
 * cost about as much a code as at d = 100. Four pointers, not an array of
 * them, which the tail's loop over it kept in memory. */
static ALWAYS_INLINE void dot_u8i8_4(const uint8_t *a, const uint8_t *r0, const uint8_t *r1,
                                     const uint8_t *r2, const uint8_t *r3, size_t d, size_t body,
                                     bool window, __m256i qt, int32_t *out) {
    __m256i p0 = _mm256_setzero_si256(), p1 = p0, p2 = p0, p3 = p0;
    for (size_t j = 0; j < body; j += 16) {
        const __m256i q = widen(a + j, 0);
        p0 = _mm256_add_epi32(p0, _mm256_madd_epi16(q, widen(r0 + j, 1)));
        p1 = _mm256_add_epi32(p1, _mm256_madd_epi16(q, widen(r1 + j, 1)));
        p2 = _mm256_add_epi32(p2, _mm256_madd_epi16(q, widen(r2 + j, 1)));
        p3 = _mm256_add_epi32(p3, _mm256_madd_epi16(q, widen(r3 + j, 1)));
    }
    if (window) {
        p0 = _mm256_add_epi32(p0, _mm256_madd_epi16(qt, widen(r0 + d - 16, 1)));
        p1 = _mm256_add_epi32(p1, _mm256_madd_epi16(qt, widen(r1 + d - 16, 1)));
        p2 = _mm256_add_epi32(p2, _mm256_madd_epi16(qt, widen(r2 + d - 16, 1)));
        p3 = _mm256_add_epi32(p3, _mm256_madd_epi16(qt, widen(r3 + d - 16, 1)));
    }
    uint32_t s[4];
    _mm_storeu_si128((__m128i *)s, hsum4_epi32(p0, p1, p2, p3));
    for (size_t j = window ? d : body; j < d; j++) {
        const int32_t x = a[j];
        s[0] += (uint32_t)(x * (int32_t)(int8_t)r0[j]);
        s[1] += (uint32_t)(x * (int32_t)(int8_t)r1[j]);
        s[2] += (uint32_t)(x * (int32_t)(int8_t)r2[j]);
        s[3] += (uint32_t)(x * (int32_t)(int8_t)r3[j]);
    }
    for (size_t t = 0; t < 4; t++)
        out[t] = (int32_t)s[t];
}

/* qt of dot_u8i8_4 for a of d bytes, and whether it is used. */
static bool dot_window(const uint8_t *a, size_t d, __m256i *qt) {
    const size_t tail = d % 16;
    const bool window = tail > 0 && d >= 16;
    uint8_t a_last[16] = {0};
    for (size_t k = 16 - tail; window && k < 16; k++)
        a_last[k] = a[d - 16 + k];
    *qt = widen(a_last, 0);
    return window;
}

/* out[i] = dot_u8i8(a, rows + i * stride, d) for i < n, four rows at a
 * time. */
static void dot_u8i8_rows(const uint8_t *a, const int8_t *rows, size_t n, size_t d, size_t stride,
                          int32_t *out) {
    const uint8_t *r = (const uint8_t *)rows;
    __m256i qt;
    const bool window = dot_window(a, d, &qt);
    const size_t body = d & ~(size_t)15;
    size_t i = 0;
    for (; i + 4 <= n; i += 4, r += 4 * stride) {
        dot_u8i8_4(a, r, r + stride, r + 2 * stride, r + 3 * stride, d, body, window, qt, out + i);
    }
    for (; i < n; i++, r += stride)
        out[i] = (int32_t)byte_kernel(a, r, d, DOT_U8I8);
}

/* out[i] = dot_u8i8(a, base + ids[i] * stride, d) for i < n, four rows at
 * a time. */
static void dot_u8i8_ids(const uint8_t *a, const int8_t *base, size_t stride, const uint32_t *ids,
                         size_t n, size_t d, int32_t *out) {
    const uint8_t *b = (const uint8_t *)base;
    __m256i qt;
    const bool window = dot_window(a, d, &qt);
    const size_t body = d & ~(size_t)15;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        dot_u8i8_4(a, b + (size_t)ids[i] * stride, b + (size_t)ids[i + 1] * stride,
                   b + (size_t)ids[i + 2] * stride, b + (size_t)ids[i + 3] * stride, d, body,
                   window, qt, out + i);
    }
    /* The last one to three rows take a step of four, the last repeated:
     * a prune's calls are short (28 rows on average, 100-d word vectors),
     * and a row alone pays a horizontal sum of its own. */
    if (i < n) {
        const uint8_t *r[4];
        for (size_t t = 0; t < 4; t++)
            r[t] = b + (size_t)ids[i + t < n ? i + t : n - 1] * stride;
        int32_t last[4];
        dot_u8i8_4(a, r[0], r[1], r[2], r[3], d, body, window, qt, last);
        memcpy(out + i, last, (n - i) * sizeof *last);
    }
}

/* Eight codes a step, as the AVX-512 level does sixteen. */
static void sq8_estimates(const uint8_t *a, const uint8_t *codes, size_t n, size_t d, size_t stride,
                          const float p[5], float *out) {
    enum { HEAD = 3 * sizeof(float) };
    const __m256i at = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32((int)stride));
    const __m256 lo = _mm256_set1_ps(p[0]), delta = _mm256_set1_ps(p[1]), c0 = _mm256_set1_ps(p[2]),
                 c1 = _mm256_set1_ps(p[3]), c2 = _mm256_set1_ps(p[4]);
    int32_t dot[8];
    float e[8];
    for (size_t i = 0; i < n; i += 8) {
        const size_t m = n - i < 8 ? n - i : 8;
        const uint8_t *c = codes + i * stride;
        dot_u8i8_rows(a, (const int8_t *)(c + HEAD), m, d, stride, dot);
        /* Lanes past m read code 0 again: valid memory, results unused. */
        const __m256i lanes =
            _mm256_blendv_epi8(_mm256_setzero_si256(), at,
                               _mm256_cmpgt_epi32(_mm256_set1_epi32((int)m),
                                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        const __m256 t = _mm256_i32gather_ps((const float *)c, lanes, 1);
        const __m256 step = _mm256_i32gather_ps((const float *)(c + 4), lanes, 1);
        const __m256 sum = _mm256_i32gather_ps((const float *)(c + 8), lanes, 1);
        for (size_t j = m; j < 8; j++)
            dot[j] = 0;
        const __m256 dv = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)dot));
        const __m256 inner = _mm256_add_ps(_mm256_mul_ps(lo, sum), _mm256_mul_ps(delta, dv));
        const __m256 ip = _mm256_mul_ps(_mm256_mul_ps(t, step), inner);
        _mm256_storeu_ps(e, _mm256_add_ps(_mm256_add_ps(c0, _mm256_mul_ps(c1, _mm256_mul_ps(t, t))),
                                          _mm256_mul_ps(c2, ip)));
        memcpy(out + i, e, m * sizeof *e);
    }
}

/* Defined after the table, at the end of the file. */
static void fastscan_accumulate(const uint8_t *codes, size_t nblocks, size_t npairs,
                                const uint8_t *lut, uint32_t *out);
static uint32_t argmin_l2sq_f32_cols(const float *x, const float *cols, size_t k, size_t dim,
                                     size_t stride, float *dist);
static void dot_f32_cols(const float *x, const float *cols, size_t k, size_t dim, size_t stride,
                         float *out);
static float tq_dot_avx2(const float *y, const float *table, const uint8_t *codes, size_t d,
                         unsigned bits);
static float masked_sum_f32_avx2(const float *v, const uint8_t *bits, size_t d);
static void pq8_adc_avx2(const float *tables, const uint8_t *codes, size_t m, size_t n, float *out);
static void fastscan_quantize(const float *tab, size_t m, uint8_t *lut, float *delta, float *bias);
static void pq16_tables(const float *q, const float *ct, size_t m, size_t dsub, bool l2,
                        float *tab);
static void fwht_f32(float *x, const float *signs, size_t n);
static void range_f32(const float *v, size_t n, float *lo_out, float *hi_out);

const simd_ops simd_ops_avx2 = {
    .level = SIMD_AVX2,
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
    .tq_dot = tq_dot_avx2,
    .masked_sum_f32 = masked_sum_f32_avx2,
    .pq8_adc = pq8_adc_avx2,
    .fastscan_quantize = fastscan_quantize,
    .pq16_tables = pq16_tables,
    .fwht_f32 = fwht_f32,
    .range_f32 = range_f32,
};

/* ---- 4-bit PQ fast-scan ------------------------------------------------- *
 *
 *   VPSHUFB          16-entry table lookup per 128-bit lane: the table is
 *                    stored twice (simd.h) so one load fills both lanes
 *   VPADDW           uint16 sums, 16 lanes
 *
 * A pair row of a block is one load: mask for the low nibbles (subspace
 * 2p), shift and mask for the high ones (2p + 1), one shuffle each. The
 * 32 looked-up bytes are added as 16 uint16 lanes without separating them:
 * lane j then gathers (vector 2j) + 256 * (vector 2j + 1), modulo 2^16,
 * while a second sum takes the high bytes alone (vector 2j + 1). The even
 * vectors' sums are recovered at the end as the first minus 256 times the
 * second, which is exact modulo 2^16 and so exact outright as long as the
 * true sum stays below 2^16: 128 pairs = 256 subspaces * 255 = 65,280.
 * Larger npairs are cut into runs of 128 pairs, each widened to uint32.
 * That saves a mask per lookup over separating even and odd bytes first. */

enum { FASTSCAN_RUN = 128 };

/* Even and odd vectors' uint16 sums of one run -> uint32 sums in vector
 * order, added to s[0..3] (vectors 0-7, 8-15, 16-23, 24-31). */
static ALWAYS_INLINE void fastscan_widen(__m256i acc, __m256i odd, __m256i s[4]) {
    __m256i even = _mm256_sub_epi16(acc, _mm256_slli_epi16(odd, 8));
    /* Lane j of `even` is vector 2j; interleaving within 128-bit halves
     * gives [v0..v7 | v16..v23] and [v8..v15 | v24..v31]. */
    __m256i lo = _mm256_unpacklo_epi16(even, odd);
    __m256i hi = _mm256_unpackhi_epi16(even, odd);
    s[0] = _mm256_add_epi32(s[0], _mm256_cvtepu16_epi32(_mm256_castsi256_si128(lo)));
    s[1] = _mm256_add_epi32(s[1], _mm256_cvtepu16_epi32(_mm256_castsi256_si128(hi)));
    s[2] = _mm256_add_epi32(s[2], _mm256_cvtepu16_epi32(_mm256_extracti128_si256(lo, 1)));
    s[3] = _mm256_add_epi32(s[3], _mm256_cvtepu16_epi32(_mm256_extracti128_si256(hi, 1)));
}

/* One pair row: 32 codes' two lookups added into acc and odd (above). */
static ALWAYS_INLINE void fastscan_pair(const uint8_t *x, const uint8_t *t, __m256i *acc,
                                        __m256i *odd) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i c = _mm256_loadu_si256((const __m256i *)(const void *)x);
    const __m256i r0 = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(const void *)t),
                                           _mm256_and_si256(c, low4));
    const __m256i r1 =
        _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(const void *)(t + 64)),
                            _mm256_and_si256(_mm256_srli_epi16(c, 4), low4));
    *acc = _mm256_add_epi16(*acc, _mm256_add_epi16(r0, r1));
    *odd = _mm256_add_epi16(*odd,
                            _mm256_add_epi16(_mm256_srli_epi16(r0, 8), _mm256_srli_epi16(r1, 8)));
}

/* Pairs 2g and 2g + 1 share the 128 bytes of table group g (simd.h), so
 * the loop takes two pairs a step and walks codes and tables by pointer:
 * computing each pair's table offset afresh was half the instructions of
 * an IVF probe. A run starts on an even pair (FASTSCAN_RUN is even), so
 * only the last pair of an odd npairs goes alone. */
static void fastscan_accumulate(const uint8_t *codes, size_t nblocks, size_t npairs,
                                const uint8_t *lut, uint32_t *out) {
    const size_t block_bytes = npairs * 32;
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *x = codes + b * block_bytes, *t = lut;
        __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                        _mm256_setzero_si256()};
        for (size_t p0 = 0; p0 < npairs; p0 += FASTSCAN_RUN) {
            const size_t run = npairs - p0 < FASTSCAN_RUN ? npairs - p0 : FASTSCAN_RUN;
            __m256i acc = _mm256_setzero_si256(), odd = _mm256_setzero_si256();
            size_t p = 0;
            for (; p + 2 <= run; p += 2, x += 64, t += 128) {
                fastscan_pair(x, t, &acc, &odd);
                fastscan_pair(x + 32, t + 32, &acc, &odd);
            }
            if (p < run)
                fastscan_pair(x, t, &acc, &odd);
            fastscan_widen(acc, odd, s);
        }
        for (int k = 0; k < 4; k++)
            _mm256_storeu_si256((__m256i *)(out + b * 32 + 8 * k), s[k]);
    }
}

/* ---- dot products with points stored by columns ---------------------------
 *
 *   VFMADD231PS      x_t * c_t for 16 columns, even and odd t in their own
 *                    accumulators: four FMA chains */
static void dot_f32_cols(const float *x, const float *cols, size_t k, size_t dim, size_t stride,
                         float *out) {
    for (size_t c = 0; c < k; c += 16) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
        const float *col = cols + c;
        size_t t = 0;
        for (; t + 2 <= dim; t += 2) {
            const __m256 x0 = _mm256_set1_ps(x[t]), x1 = _mm256_set1_ps(x[t + 1]);
            const float *r0 = col + t * stride, *r1 = r0 + stride;
            a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(r0), a0);
            a1 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(r0 + 8), a1);
            b0 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(r1), b0);
            b1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(r1 + 8), b1);
        }
        if (t < dim) {
            const __m256 x0 = _mm256_set1_ps(x[t]);
            a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(col + t * stride), a0);
            a1 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(col + t * stride + 8), a1);
        }
        float v[16];
        _mm256_storeu_ps(v, _mm256_add_ps(a0, b0));
        _mm256_storeu_ps(v + 8, _mm256_add_ps(a1, b1));
        memcpy(out + c, v, (k - c < 16 ? k - c : 16) * sizeof *v);
    }
}

/* ---- nearest of points stored by columns --------------------------------
 *
 *   VFMADD231PS      (x_t - c_t)^2 added for 16 columns at once, in two
 *                    accumulators per parity of t: four FMA chains
 *   VCMPPS+VBLENDVPS per-lane running minimum and its column index; the
 *                    lanes are reduced once at the end
 *
 * A lane keeps the first column reaching its minimum (strict <), and the
 * final reduction takes the lowest index among equal lane minima, so ties
 * resolve to the lowest index as in the scalar kernel. */
static uint32_t argmin_l2sq_f32_cols(const float *x, const float *cols, size_t k, size_t dim,
                                     size_t stride, float *dist) {
    const __m256 inf = _mm256_set1_ps(INFINITY);
    const __m256i kv = _mm256_set1_epi32((int32_t)k), sixteen = _mm256_set1_epi32(16);
    __m256 best0 = inf, best1 = inf;
    __m256i idx0 = _mm256_setzero_si256(), idx1 = idx0;
    __m256i j0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i j1 = _mm256_add_epi32(j0, _mm256_set1_epi32(8));
    for (size_t c = 0; c < k; c += 16) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
        const float *col = cols + c;
        size_t t = 0;
        for (; t + 2 <= dim; t += 2) {
            const __m256 x0 = _mm256_set1_ps(x[t]), x1 = _mm256_set1_ps(x[t + 1]);
            const float *r0 = col + t * stride, *r1 = r0 + stride;
            __m256 d;
            d = _mm256_sub_ps(x0, _mm256_loadu_ps(r0));
            a0 = _mm256_fmadd_ps(d, d, a0);
            d = _mm256_sub_ps(x0, _mm256_loadu_ps(r0 + 8));
            a1 = _mm256_fmadd_ps(d, d, a1);
            d = _mm256_sub_ps(x1, _mm256_loadu_ps(r1));
            b0 = _mm256_fmadd_ps(d, d, b0);
            d = _mm256_sub_ps(x1, _mm256_loadu_ps(r1 + 8));
            b1 = _mm256_fmadd_ps(d, d, b1);
        }
        if (t < dim) {
            const __m256 x0 = _mm256_set1_ps(x[t]);
            const float *r0 = col + t * stride;
            __m256 d = _mm256_sub_ps(x0, _mm256_loadu_ps(r0));
            a0 = _mm256_fmadd_ps(d, d, a0);
            d = _mm256_sub_ps(x0, _mm256_loadu_ps(r0 + 8));
            a1 = _mm256_fmadd_ps(d, d, a1);
        }
        a0 = _mm256_add_ps(a0, b0);
        a1 = _mm256_add_ps(a1, b1);
        if (c + 16 > k) { /* padding columns: +inf, never below a minimum */
            a0 = _mm256_blendv_ps(inf, a0, _mm256_castsi256_ps(_mm256_cmpgt_epi32(kv, j0)));
            a1 = _mm256_blendv_ps(inf, a1, _mm256_castsi256_ps(_mm256_cmpgt_epi32(kv, j1)));
        }
        const __m256 m0 = _mm256_cmp_ps(a0, best0, _CMP_LT_OQ);
        const __m256 m1 = _mm256_cmp_ps(a1, best1, _CMP_LT_OQ);
        best0 = _mm256_blendv_ps(best0, a0, m0);
        best1 = _mm256_blendv_ps(best1, a1, m1);
        idx0 = _mm256_castps_si256(
            _mm256_blendv_ps(_mm256_castsi256_ps(idx0), _mm256_castsi256_ps(j0), m0));
        idx1 = _mm256_castps_si256(
            _mm256_blendv_ps(_mm256_castsi256_ps(idx1), _mm256_castsi256_ps(j1), m1));
        j0 = _mm256_add_epi32(j0, sixteen);
        j1 = _mm256_add_epi32(j1, sixteen);
    }
    /* The least distance, and the first column holding it, across the
     * lanes without leaving the registers (as in kern_avx512.c): the
     * minimum broadcast by shuffles, then the least index among the lanes
     * holding it (indices are below 2^31: signed minima serve). */
    __m256 m = _mm256_min_ps(best0, best1);
    m = _mm256_min_ps(m, _mm256_permute2f128_ps(m, m, 1));
    m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0x4e));
    m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0xb1));
    const __m256i none = _mm256_set1_epi32(INT32_MAX);
    const __m256i i0 = _mm256_castps_si256(_mm256_blendv_ps(
        _mm256_castsi256_ps(none), _mm256_castsi256_ps(idx0), _mm256_cmp_ps(best0, m, _CMP_EQ_OQ)));
    const __m256i i1 = _mm256_castps_si256(_mm256_blendv_ps(
        _mm256_castsi256_ps(none), _mm256_castsi256_ps(idx1), _mm256_cmp_ps(best1, m, _CMP_EQ_OQ)));
    __m256i i = _mm256_min_epi32(i0, i1);
    i = _mm256_min_epi32(i, _mm256_permute2x128_si256(i, i, 1));
    i = _mm256_min_epi32(i, _mm256_shuffle_epi32(i, 0x4e));
    i = _mm256_min_epi32(i, _mm256_shuffle_epi32(i, 0xb1));
    *dist = _mm256_cvtss_f32(m);
    return (uint32_t)_mm256_cvtsi256_si32(i);
}

/* ---- TurboQuant codes ----------------------------------------------------
 * sum_j y[j] * table[code_j]. Eight b-bit codes fill exactly b bytes; two
 * 32-bit words of four codes each are spread over the 8 lanes and shifted
 * apart (VPSRLVD) and looked up in registers (tq_lookup8). */
/* `avail`: code bytes from p to the end; 8 or more takes the one-instruction
 * load (bits past the group are masked off), fewer copies exactly. */
static ALWAYS_INLINE __m256i tq_indices8(const uint8_t *p, unsigned b, size_t avail) {
    uint64_t w = 0;
    if (avail >= 8)
        memcpy(&w, p, 8);
    else
        memcpy(&w, p, avail);
    __m256i v = _mm256_setr_m128i(_mm_set1_epi32((int)(uint32_t)w),
                                  _mm_set1_epi32((int)(uint32_t)(w >> (4 * b))));
    const __m256i shift =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3), _mm256_set1_epi32((int)b));
    return _mm256_and_si256(_mm256_srlv_epi32(v, shift), _mm256_set1_epi32((1 << b) - 1));
}

/* Up to 8 levels one VPERMPS; 16 levels two of them and a blend on bit 3
 * of the index (VPERMPS reads only the low 3 bits). Wider codes never get
 * here: gathers lose to scalar loads on the CPUs measured (see tq_dot_avx2). */
static ALWAYS_INLINE __m256 tq_lookup8(__m256i idx, __m256 t0, __m256 t1, unsigned b) {
    __m256 lo = _mm256_permutevar8x32_ps(t0, idx);
    if (b <= 3)
        return lo;
    __m256 hi = _mm256_permutevar8x32_ps(t1, idx);
    __m256 upper = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)); /* bit 3 -> sign */
    return _mm256_blendv_ps(lo, hi, upper);
}

static ALWAYS_INLINE float tq_dot_b256(const float *y, const float *table, const uint8_t *codes,
                                       size_t d, unsigned b) {
    const __m256 t0 = _mm256_loadu_ps(table), t1 = _mm256_loadu_ps(table + 8);
    const size_t total = (d * b + 7) / 8;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 16 <= d; j += 16) {
        __m256i i0 = tq_indices8(codes + j / 8 * b, b, total - j / 8 * b);
        __m256i i1 = tq_indices8(codes + (j / 8 + 1) * b, b, total - (j / 8 + 1) * b);
        acc0 = _mm256_fmadd_ps(tq_lookup8(i0, t0, t1, b), _mm256_loadu_ps(y + j), acc0);
        acc1 = _mm256_fmadd_ps(tq_lookup8(i1, t0, t1, b), _mm256_loadu_ps(y + j + 8), acc1);
    }
    float tail = 0;
    for (; j < d; j += 8) {
        size_t rem = d - j < 8 ? d - j : 8;
        if (rem == 8) {
            __m256i idx = tq_indices8(codes + j / 8 * b, b, total - j / 8 * b);
            acc0 = _mm256_fmadd_ps(tq_lookup8(idx, t0, t1, b), _mm256_loadu_ps(y + j), acc0);
        } else {
            uint64_t w = 0;
            memcpy(&w, codes + j / 8 * b, (rem * b + 7) / 8);
            for (size_t i = 0; i < rem; i++)
                tail += y[j + i] * table[(w >> (b * i)) & ((1u << b) - 1)];
        }
    }
    return hsum(_mm256_add_ps(acc0, acc1)) + tail;
}

static float tq_dot_avx2(const float *y, const float *table, const uint8_t *codes, size_t d,
                         unsigned bits) {
    switch (bits) {
    case 1: return tq_dot_b256(y, table, codes, d, 1);
    case 2: return tq_dot_b256(y, table, codes, d, 2);
    case 3: return tq_dot_b256(y, table, codes, d, 3);
    case 4: return tq_dot_b256(y, table, codes, d, 4);
    /* 32 or more levels: VPGATHERDD ran slower than plain loads (tq8 on 768
     * dimensions: 30 vs 33 queries/s), so the plain loop serves. */
    case 5: return tq_dot_plain(y, table, codes, d, 5);
    case 6: return tq_dot_plain(y, table, codes, d, 6);
    case 7: return tq_dot_plain(y, table, codes, d, 7);
    default: return tq_dot_plain(y, table, codes, d, 8);
    }
}

/* ---- masked sums ----------------------------------------------------------
 * Eight bits of the mask become eight lane masks by broadcasting the byte,
 * AND with one bit per lane and a compare; the masked floats are summed. */
static float masked_sum_f32_avx2(const float *v, const uint8_t *bits, size_t d) {
    const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256 acc = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256i b = _mm256_and_si256(_mm256_set1_epi32(bits[j >> 3]), lane_bit);
        __m256 m = _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, lane_bit));
        acc = _mm256_add_ps(acc, _mm256_and_ps(m, _mm256_loadu_ps(v + j)));
    }
    float tail = 0;
    for (; j < d; j++)
        if ((bits[j >> 3] >> (j & 7)) & 1)
            tail += v[j];
    return hsum(acc) + tail;
}

/* ---- 8-bit PQ distances --------------------------------------------------
 * Eight subspaces per VPGATHERDD: index = 256 k + code byte. Two codes are
 * scored side by side so their gathers overlap. */
static ALWAYS_INLINE __m256i pq8_index8(const uint8_t *c, size_t k, size_t avail) {
    uint64_t w = 0;
    memcpy(&w, c + k, avail < 8 ? avail : 8);
    const __m256i sub = _mm256_setr_epi32(0, 256, 512, 768, 1024, 1280, 1536, 1792);
    __m256i idx = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)w));
    return _mm256_add_epi32(idx, _mm256_add_epi32(sub, _mm256_set1_epi32((int)(k * 256))));
}

static void pq8_adc_avx2(const float *tables, const uint8_t *codes, size_t m, size_t n,
                         float *out) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * m;
        __m256 acc = _mm256_setzero_ps();
        size_t k = 0;
        for (; k + 8 <= m; k += 8)
            acc = _mm256_add_ps(acc, _mm256_i32gather_ps(tables, pq8_index8(c, k, 8), 4));
        if (k < m) {
            __m256i live = tail_mask(m - k);
            __m256 part = _mm256_mask_i32gather_ps(
                _mm256_setzero_ps(), tables, pq8_index8(c, k, m - k), _mm256_castsi256_ps(live), 4);
            acc = _mm256_add_ps(acc, part);
        }
        out[i] = hsum(acc);
    }
}

/* One subspace's 16 centroids are two registers; the empty asm keeps the
 * product and the sum two roundings, as on the scalar level. */
static void pq16_tables(const float *q, const float *ct, size_t m, size_t dsub, bool l2,
                        float *tab) {
    for (size_t s = 0; s < m; s++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (size_t t = 0; t < dsub; t++) {
            const __m256 x = _mm256_set1_ps(q[s * dsub + t]);
            const float *row = ct + (s * dsub + t) * 16;
            __m256 p0 = _mm256_loadu_ps(row), p1 = _mm256_loadu_ps(row + 8);
            if (l2) {
                p0 = _mm256_sub_ps(x, p0);
                p1 = _mm256_sub_ps(x, p1);
                p0 = _mm256_mul_ps(p0, p0);
                p1 = _mm256_mul_ps(p1, p1);
            } else {
                p0 = _mm256_mul_ps(x, p0);
                p1 = _mm256_mul_ps(x, p1);
            }
            __asm__("" : "+x"(p0), "+x"(p1));
            a0 = _mm256_add_ps(a0, p0);
            a1 = _mm256_add_ps(a1, p1);
        }
        _mm256_storeu_ps(tab + s * 16, a0);
        _mm256_storeu_ps(tab + s * 16 + 8, a1);
    }
}

/* ---- fast-scan tables and the Hadamard transform ------------------------- *
 *
 * One table of 16 floats is two registers. The minima and maxima of eight
 * tables come from folding their registers together, two into one a step
 * (halves of the table, then 128-bit halves, pairs, single lanes): an IVF
 * quantizes its tables once per probed list, and a reduction per table
 * took three shuffles where the fold takes two. Minima and maxima are
 * exact, so the order does not change them. The arithmetic of the entries
 * is the scalar kernel's, operation for operation; the empty asm between
 * the multiply and the add keeps the compiler from fusing them into an FMA,
 * whose single rounding would move an entry across a half now and then. */

/* Lane i of the result: the least (max false) or greatest entry of table i
 * of eight, v[i] holding the elementwise least or greatest of its two
 * halves; v is clobbered. */
static inline __m256 fold8(__m256 *v, bool max) {
#define FOLD(a, b) (max ? _mm256_max_ps(a, b) : _mm256_min_ps(a, b))
    /* Lanes 0-3: table 2k, lanes 4-7: table 2k + 1. */
    for (int k = 0; k < 4; k++)
        v[k] = FOLD(_mm256_permute2f128_ps(v[2 * k], v[2 * k + 1], 0x20),
                    _mm256_permute2f128_ps(v[2 * k], v[2 * k + 1], 0x31));
    /* Half c: lanes 0-1 table 4k + c, lanes 2-3 table 4k + 2 + c. */
    for (int k = 0; k < 2; k++)
        v[k] = FOLD(_mm256_shuffle_ps(v[2 * k], v[2 * k + 1], 0x44),
                    _mm256_shuffle_ps(v[2 * k], v[2 * k + 1], 0xEE));
    /* Lane 4c + j: table 2j + c. */
    const __m256 f = FOLD(_mm256_shuffle_ps(v[0], v[1], 0x88), _mm256_shuffle_ps(v[0], v[1], 0xDD));
#undef FOLD
    return _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* lo[i] and (hi != NULL) hi[i]: the least and greatest entry of table
 * s0 + i, for the eight tables from s0 (the last one repeated past m). */
static void table_ranges8(const float *tab, size_t s0, size_t m, float *lo, float *hi) {
    __m256 mn[8], mx[8];
    for (size_t i = 0; i < 8; i++) {
        const float *t = tab + (s0 + i < m ? s0 + i : m - 1) * 16;
        const __m256 a = _mm256_loadu_ps(t), b = _mm256_loadu_ps(t + 8);
        mn[i] = _mm256_min_ps(a, b);
        mx[i] = _mm256_max_ps(a, b);
    }
    _mm256_storeu_ps(lo, fold8(mn, false));
    if (hi != NULL)
        _mm256_storeu_ps(hi, fold8(mx, true));
}

static void fastscan_quantize(const float *tab, size_t m, uint8_t *lut, float *delta_out,
                              float *bias_out) {
    float range = 0.0f, bias = 0.0f, lo[8], hi[8];
    for (size_t s0 = 0; s0 < m; s0 += 8) {
        table_ranges8(tab, s0, m, lo, hi);
        for (size_t i = 0; i < 8 && s0 + i < m; i++) {
            bias += lo[i];
            range = hi[i] - lo[i] > range ? hi[i] - lo[i] : range;
        }
    }
    const float delta = range > 0.0f ? range / 255.0f : 1.0f;
    const __m256 inv = _mm256_set1_ps(1.0f / delta), half = _mm256_set1_ps(0.5f);
    const __m256 top = _mm256_set1_ps(255.0f);
    for (size_t s0 = 0; s0 < m; s0 += 8) {
        table_ranges8(tab, s0, m, lo, NULL);
        for (size_t i = 0; i < 8 && s0 + i < m; i++) {
            const size_t s = s0 + i;
            const __m256 a = _mm256_loadu_ps(tab + s * 16), b = _mm256_loadu_ps(tab + s * 16 + 8);
            const __m256 low = _mm256_set1_ps(lo[i]);
            __m256 va = _mm256_mul_ps(_mm256_sub_ps(a, low), inv);
            __m256 vb = _mm256_mul_ps(_mm256_sub_ps(b, low), inv);
            __asm__("" : "+x"(va), "+x"(vb));
            /* MIN returns its second operand for a NaN: 255, as the scalar's
             * failed comparison does. */
            va = _mm256_min_ps(_mm256_add_ps(va, half), top);
            vb = _mm256_min_ps(_mm256_add_ps(vb, half), top);
            /* 16 int32 in 0..255 to bytes in order: the packs work per 128-bit
             * lane, so the 64-bit quarters are put back in order between them. */
            const __m256i w = _mm256_permute4x64_epi64(
                _mm256_packus_epi32(_mm256_cvttps_epi32(va), _mm256_cvttps_epi32(vb)), 0xD8);
            const __m128i bytes =
                _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
            uint8_t *dst = lut + simd_fastscan_table(s);
            _mm_storeu_si128((__m128i *)(void *)dst, bytes);
            _mm_storeu_si128((__m128i *)(void *)(dst + 16), bytes);
        }
    }
    *delta_out = delta;
    *bias_out = bias;
}

/* Stages h = 1, 2, 4 inside each register (partner lane j ^ h by a
 * permute; self * (+-1) + partner, exact in one FMA since the product is),
 * stages h >= 8 between registers. */
static void fwht_f32(float *x, const float *signs, size_t n) {
    if (n < 8) {
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
    const __m256 s1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1);
    const __m256 s2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1);
    const __m256 s4 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
    for (size_t i = 0; i < n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (signs != NULL)
            v = _mm256_mul_ps(v, _mm256_loadu_ps(signs + i));
        v = _mm256_fmadd_ps(v, s1, _mm256_permute_ps(v, 0xB1));
        v = _mm256_fmadd_ps(v, s2, _mm256_permute_ps(v, 0x4E));
        v = _mm256_fmadd_ps(v, s4, _mm256_permute2f128_ps(v, v, 0x01));
        _mm256_storeu_ps(x + i, v);
    }
    size_t h = 8;
    for (; 4 * h <= n; h *= 4)
        for (size_t i = 0; i < n; i += 4 * h)
            for (size_t j = i; j < i + h; j += 8) {
                const __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);
                const __m256 c = _mm256_loadu_ps(x + j + 2 * h), d = _mm256_loadu_ps(x + j + 3 * h);
                const __m256 ab = _mm256_add_ps(a, b), a_b = _mm256_sub_ps(a, b);
                const __m256 cd = _mm256_add_ps(c, d), c_d = _mm256_sub_ps(c, d);
                _mm256_storeu_ps(x + j, _mm256_add_ps(ab, cd));
                _mm256_storeu_ps(x + j + h, _mm256_add_ps(a_b, c_d));
                _mm256_storeu_ps(x + j + 2 * h, _mm256_sub_ps(ab, cd));
                _mm256_storeu_ps(x + j + 3 * h, _mm256_sub_ps(a_b, c_d));
            }
    if (h < n)
        for (size_t j = 0; j < h; j += 8) {
            const __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);
            _mm256_storeu_ps(x + j, _mm256_add_ps(a, b));
            _mm256_storeu_ps(x + j + h, _mm256_sub_ps(a, b));
        }
}

static void range_f32(const float *v, size_t n, float *lo_out, float *hi_out) {
    __m256 lo = _mm256_set1_ps(v[0]), hi = lo;
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 x = _mm256_loadu_ps(v + j);
        lo = _mm256_min_ps(lo, x);
        hi = _mm256_max_ps(hi, x);
    }
    float l[8], h[8];
    _mm256_storeu_ps(l, lo);
    _mm256_storeu_ps(h, hi);
    float a = l[0], b = h[0];
    for (int i = 1; i < 8; i++) {
        a = l[i] < a ? l[i] : a;
        b = h[i] > b ? h[i] : b;
    }
    for (; j < n; j++) {
        a = v[j] < a ? v[j] : a;
        b = v[j] > b ? v[j] : b;
    }
    *lo_out = a;
    *hi_out = b;
}
