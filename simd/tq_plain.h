/*
 * The plain TurboQuant scoring loop, private to simd/: included by every
 * kernel file so that each compiles it with its own flags. The scalar level
 * uses it for every width; the vector levels for the widths whose lookups
 * would need gathers, which measured slower than these scalar loads. Calling
 * the scalar file's copy from AVX-512 code instead cost a further 30 % (a
 * legacy-SSE body between VEX code), hence one copy per file.
 */
#ifndef ROTOR_SIMD_TQ_PLAIN_H
#define ROTOR_SIMD_TQ_PLAIN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* sum_j y[j] * table[code_j] over b-bit codes packed little-endian. Eight
 * codes fill exactly b bytes, so each group is one load and shifts. */
static inline __attribute__((always_inline)) float
tq_dot_plain(const float *y, const float *table, const uint8_t *codes, size_t d, unsigned b) {
    const uint64_t mask = (1u << b) - 1;
    const size_t total = (d * b + 7) / 8;
    float acc0 = 0, acc1 = 0;
    size_t j = 0;
    for (; j + 8 <= d; j += 8) {
        /* An 8-byte load is one instruction where a b-byte one is a call
         * for odd b; the bits past the group are masked off. */
        const size_t off = j / 8 * b;
        uint64_t w = 0;
        if (off + 8 <= total)
            memcpy(&w, codes + off, 8);
        else
            memcpy(&w, codes + off, total - off);
        acc0 += y[j + 0] * table[w & mask];
        acc1 += y[j + 1] * table[(w >> b) & mask];
        acc0 += y[j + 2] * table[(w >> 2 * b) & mask];
        acc1 += y[j + 3] * table[(w >> 3 * b) & mask];
        acc0 += y[j + 4] * table[(w >> 4 * b) & mask];
        acc1 += y[j + 5] * table[(w >> 5 * b) & mask];
        acc0 += y[j + 6] * table[(w >> 6 * b) & mask];
        acc1 += y[j + 7] * table[(w >> 7 * b) & mask];
    }
    if (j < d) {
        uint64_t w = 0;
        memcpy(&w, codes + j / 8 * b, total - j / 8 * b);
        for (unsigned i = 0; j < d; j++, i++)
            acc0 += y[j] * table[(w >> (b * i)) & mask];
    }
    return acc0 + acc1;
}

#endif /* ROTOR_SIMD_TQ_PLAIN_H */
