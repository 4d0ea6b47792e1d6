/*
 * Binary code internals shared by bq.c (the codes, their plain store and the
 * popcount scan) and bq_fastscan.c (the same codes in 32-code fast-scan
 * blocks). Private to quant/; tests include it to reach the rotation.
 */
#ifndef ROTOR_BQ_IMPL_H
#define ROTOR_BQ_IMPL_H

#include "quant/quant.h"

/* Vectors per fast-scan block (as for 4-bit PQ). */
#define BQFS_BLOCK 32

typedef struct bq_state {
    rht rot;
    float c0, c1, threshold; /* 2-bit levels and magnitude boundary, unit variance */
    float *centroid;         /* dim floats; zero until trained (L2 only) */
    size_t plane_bytes;      /* ceil(dim / 8) */
    size_t nfloats;          /* 3 for bin1, 5 for bin2 */
    /* fast-scan only */
    size_t groups;      /* 4-bit fields of a code: ceil(dim / (4 / bits)) */
    size_t npairs;      /* ceil(groups / 2): bytes of a code's fields, rows of a block */
    size_t block_bytes; /* npairs * 32 field bytes, then 32 lengths and 32 multipliers */
    size_t lut_bytes;   /* uint8 tables in the simd fastscan_accumulate layout */
} bq_state;

/* The prepared query of the fast-scan kind, at the start of its query state,
 * padded to 64 bytes; the uint8 tables follow. */
typedef struct bqfs_qhead {
    float delta, bias; /* <v, q'> ~ bias + delta * (integer sum) */
    float qq;          /* |q - c|^2 */
} bqfs_qhead;

#define BQFS_QHEAD_BYTES 64

/* quant_ops members both kinds share: a code is the same bytes either way
 * (bq.c documents it); only the store and the scan differ. */
rotor_status bq_train(quant *q, const float *x, size_t n, unsigned threads);
void bq_encode(const quant *q, const float *x, uint8_t *code, float *scratch);
void bq_decode(const quant *q, const uint8_t *code, float *out, float *scratch);
void bq_release(quant *q);
size_t bq_payload_bytes(const quant *q);
void bq_save_payload(const quant *q, uint8_t *dst);
rotor_status bq_load_payload(quant *q, const uint8_t *src, size_t n);
const rht *bq_rotation(const quant *q, const float **centre);

/* Writes the counts a code keeps after t and mult (set bits of the sign
 * plane; for bin2 also of the magnitude plane and of both), from its planes. */
void bq_put_counts(const quant *q, uint8_t *code);

extern const quant_ops bqfs_ops;

#endif /* ROTOR_BQ_IMPL_H */
