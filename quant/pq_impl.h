/*
 * Product quantization internals shared by pq.c (codebooks, training, 8-bit
 * codes) and pq_fastscan.c (4-bit codes in the fast-scan layout). Private to
 * quant/; the rest of the library sees PQ only through struct quant. Tests
 * include it to reach the float-table scan and the query-state header.
 */
#ifndef ROTOR_PQ_IMPL_H
#define ROTOR_PQ_IMPL_H

#include "quant/quant.h"

/* Vectors per fast-scan block. */
#define PQ4_BLOCK 32

/* Rows k-means sees per subspace; larger training sets are sampled evenly.
 * 256 points per centroid for 8-bit codes, as FAISS's default, and plenty
 * for 16 centroids. */
/* Training rows per centroid: 256 of them pin a centroid down to well
 * below the quantization error, and more only cost time (FAISS uses the
 * same cap). 8-bit codes train on up to 65,536 rows, 4-bit on 4,096. */
#define PQ_TRAIN_PER_CENTROID 256

typedef struct pq_state {
    size_t m;         /* subspaces */
    size_t dsub;      /* dimensions per subspace, dim / m */
    size_t ksub;      /* centroids per subspace: 256 or 16 */
    uint64_t seed;    /* k-means++ seed; subspace s uses a mix of seed and s */
    float *centroids; /* m x ksub x dsub: subspace s, centroid j at (s * ksub + j) * dsub */
    float *ct;        /* m x (dsub x km_pad(ksub)): the same, transposed per subspace */
    /* The largest |x~| any code decodes to, sqrt(sum_s max_j |c_sj|^2):
     * bounds |x| <= xmax + r for the rounding allowance of inner-product
     * bounds, which have no norm of x at hand. */
    float xmax;
    /* 4-bit only */
    size_t npairs;      /* subspace pairs, ceil(m / 2): bytes of a code, rows of a block */
    size_t block_bytes; /* npairs * 32 */
    size_t lut_bytes;   /* uint8 tables in the simd_ops fastscan layout */
} pq_state;

/* The prepared query of 4-bit PQ, at the start of its query state:
 *
 *   [pq4_qhead, padded to 64 bytes]
 *   [float tables, m x 16]                 T[s][j], exact
 *   [uint8 tables, lut_bytes]              round((T[s][j] - bias_s) / delta)
 *
 * so sum_s T[s][code_s] ~ bias + delta * sum_s lut[s][code_s], within
 * m * delta / 2 (each table entry is rounded by at most delta / 2). */
typedef struct pq4_qhead {
    float delta; /* the quantization step, max_s (max_j T - min_j T) / 255 */
    float bias;  /* sum_s min_j T[s][j] */
    float qnorm; /* |q|, for the error bound of inner products (0 for L2) */
} pq4_qhead;

#define PQ4_QHEAD_BYTES 64

extern const quant_ops pq4_ops;

/* Shared by both widths: quant_ops.train and .release. */
rotor_status pq_train(quant *q, const float *x, size_t n, unsigned threads);
void pq_release(quant *q);
/* And quant_ops.payload_bytes, .save_payload, .load_payload: the payload is
 * s->centroids as trained, nothing when untrained. */
size_t pq_payload_bytes(const quant *q);
void pq_save_payload(const quant *q, uint8_t *dst);
rotor_status pq_load_payload(quant *q, const uint8_t *src, size_t n);

/* Rebuilds s->ct from s->centroids; training and loading both end here, so
 * the nearest-centroid search never sees a stale transposed copy. */
void pq_build_ct(pq_state *s);

/* Index of the centroid of subspace `sub` nearest to x's part of it (x is
 * the whole vector). */
uint32_t pq_nearest(const pq_state *s, size_t sub, const float *x);
/* Writes centroid j of subspace `sub` into its place in out (dim floats). */
void pq_decode_sub(const pq_state *s, size_t sub, size_t j, float *out);

/* Float ADC tables of one query: tab[s * ksub + j] = |q_s - c_sj|^2 for L2,
 * <q_s, c_sj> for inner product and cosine. */
void pq_tables(const quant *q, const float *query, float *tab);

/* A sum of table entries in the index's distance convention. */
static inline float pq_finish(rotor_metric metric, float sum) {
    switch (metric) {
    case ROTOR_METRIC_L2: return sum;
    case ROTOR_METRIC_IP: return -sum;
    case ROTOR_METRIC_COSINE: return 1.0f - sum;
    }
    return sum;
}

/* |q| of a query (in double), which prepare records for the bound. */
float pq_query_norm(const quant *q, const float *query);
/* quant_ops.residual of both widths: |x - x~|, x~ the code's centroids. */
float pq_residual(const quant *q, const float *x, const uint8_t *code, float *scratch);
/* The lower bound of one estimate (both widths): est is |q - x~|^2 for L2,
 * -<q, x~> for IP, 1 - <q, x~> for cosine, to within err (4-bit codes'
 * uint8 tables; 0 for float tables). */
float pq_lower_bound(const quant *q, float est, float err, float qnorm, float r);

/* 4-bit scan from the float tables instead of the uint8 ones: exact up to
 * float rounding, for checks and for re-ranking fast-scan candidates. Same
 * arguments as quant_ops.scan. */
void pq4_scan_float(const quant *q, const void *qstate, const uint8_t *store, size_t first,
                    size_t n, float *out);

#endif /* ROTOR_PQ_IMPL_H */
