/*
 * Randomized Hadamard transform: a fast stand-in for a random rotation.
 *
 * TurboQuant's analysis assumes a uniformly random orthogonal matrix; a dense
 * one costs O(d^2) per vector and d^2 floats of storage. Alternating random
 * sign flips with the Walsh-Hadamard transform mixes every input coordinate
 * into every output one in O(d log d), and a few rounds (three by default)
 * make the output coordinates of any fixed unit vector close to the
 * distribution the codebooks are solved for, including spiky inputs such as
 * one-hot vectors where one round is not enough.
 *
 * The transform needs a power-of-two size. Zero-padding d = 384 to 512 would
 * make every code a third longer and throw away the error that lands in the
 * padding, so instead each round runs the transform twice, on the first h
 * and on the last h coordinates (h the largest power of two <= d, so the two
 * windows overlap and together cover all d), with fresh signs before each:
 *
 *   round:  x *= s1;  x[0, h) = H x[0, h) / sqrt(h);
 *           x *= s2;  x[d-h, d) = H x[d-h, d) / sqrt(h)     (skipped if h == d)
 *
 * Every step is orthogonal, so the whole map is; its inverse runs the steps
 * backwards (H / sqrt(h) is its own inverse). The same alternation of
 * overlapping windows is how RaBitQ's library rotates non-power-of-two
 * dimensions.
 *
 * The scale 1 / sqrt(h) is folded into the signs of the window it follows
 * (s1 on [0, h), s2 on [d - h, d)), so a step is one signed transform and
 * no scaling pass: x[w] = H (s' x)[w]. The inverse of that step is
 * y -> s' H y, the same stored signs, since 1 / (h s c) = s c for
 * c = 1 / sqrt(h) and s = +-1.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "quant/quant.h"
#include "simd/simd.h"

rotor_status rht_init(rht *r, const rotor_allocator *a, size_t dim, unsigned rounds,
                      uint64_t seed) {
    memset(r, 0, sizeof *r);
    CM_RETURN_IF(dim == 0, ROTOR_ERR_DIMENSION, "rotation needs at least 1 dimension");
    CM_RETURN_IF(dim > ((size_t)1 << 24), ROTOR_ERR_DIMENSION,
                 "rotation of %zu dimensions is larger than the %zu supported", dim,
                 (size_t)1 << 24);
    CM_RETURN_IF(rounds == 0 || rounds > RHT_MAX_ROUNDS, ROTOR_ERR_INVALID_ARGUMENT,
                 "rotation rounds must be 1 to %d, not %u", RHT_MAX_ROUNDS, rounds);
    size_t h = 1;
    while (h * 2 <= dim)
        h *= 2;
    size_t count = (size_t)rounds * 2 * dim;
    float *signs = cm_alloc(a, count * sizeof(float), "rotation signs");
    if (signs == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    uint64_t state = seed;
    for (size_t i = 0; i < count; i += 64) {
        uint64_t bits = cm_splitmix64(&state);
        for (size_t j = 0; j < 64 && i + j < count; j++)
            signs[i + j] = (bits >> j) & 1 ? -1.0f : 1.0f;
    }
    const float scale = (float)(1.0 / sqrt((double)h));
    for (size_t i = 0; i < count; i++) {
        const size_t j = i % dim;
        const bool second = (i / dim) % 2 == 1;
        if (second ? h < dim && j >= dim - h : j < h)
            signs[i] *= scale;
    }
    r->dim = dim;
    r->n = dim;
    r->h = h;
    r->rounds = rounds;
    r->seed = seed;
    r->signs = signs;
    return ROTOR_OK;
}

void rht_release(rht *r, const rotor_allocator *a) {
    cm_free(a, r->signs);
    memset(r, 0, sizeof *r);
}

static void flip(float *restrict x, const float *restrict s, size_t n) {
    for (size_t j = 0; j < n; j++)
        x[j] *= s[j];
}

void rht_forward(const rht *r, const float *x, float *out) {
    const size_t d = r->dim, h = r->h;
    const simd_ops *ops = simd_ops_get();
    memcpy(out, x, d * sizeof(float));
    for (unsigned k = 0; k < r->rounds; k++) {
        const float *s1 = r->signs + (size_t)k * 2 * d, *s2 = s1 + d;
        flip(out + h, s1 + h, d - h);
        ops->fwht_f32(out, s1, h);
        if (h < d) {
            flip(out, s2, d - h);
            ops->fwht_f32(out + d - h, s2 + d - h, h);
        }
    }
}

double rht_forward_centred(const rht *r, const float *x, const float *centre, float *scratch,
                           float *out) {
    double ss = 0;
    for (size_t j = 0; j < r->dim; j++) {
        scratch[j] = x[j] - centre[j];
        ss += (double)scratch[j] * scratch[j];
    }
    rht_forward(r, scratch, out);
    return ss;
}

void rht_inverse_centred(const rht *r, float *y, const float *centre, float *out) {
    rht_inverse(r, y, out);
    for (size_t j = 0; j < r->dim; j++)
        out[j] += centre[j];
}

void rht_inverse(const rht *r, float *y, float *out) {
    const size_t d = r->dim, h = r->h;
    const simd_ops *ops = simd_ops_get();
    for (unsigned k = r->rounds; k-- > 0;) {
        const float *s1 = r->signs + (size_t)k * 2 * d, *s2 = s1 + d;
        if (h < d) {
            ops->fwht_f32(y + d - h, NULL, h);
            flip(y, s2, d);
        }
        ops->fwht_f32(y, NULL, h);
        flip(y, s1, d);
    }
    memcpy(out, y, d * sizeof(float));
}
