/*
 * The quantizer interface: spec parsing, construction by kind, and the plain
 * code store most kinds share. See quant.h for the contract.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "simd/simd.h"

static bool parse_uint(const char *s, unsigned *out, const char **end) {
    unsigned long v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9' && v < 1000000)
        v = v * 10 + (unsigned long)(*p++ - '0');
    if (p == s || v >= 1000000)
        return false;
    *out = (unsigned)v;
    *end = p;
    return true;
}

rotor_status quant_spec_parse(const char *s, quant_spec *out) {
    CM_RETURN_IF(s == NULL, ROTOR_ERR_INVALID_ARGUMENT, "quantizer spec must not be NULL");
    memset(out, 0, sizeof *out);
    const char *end = NULL;
    unsigned v = 0;
    if (strncmp(s, "tqip", 4) == 0 && parse_uint(s + 4, &v, &end) && *end == '\0') {
        CM_RETURN_IF(v < 2 || v > TQ_MAX_BITS, ROTOR_ERR_INVALID_ARGUMENT,
                     "quantizer '%s': tqip takes 2 to %d bits", s, TQ_MAX_BITS);
        *out = (quant_spec){QUANT_TQIP, v, 0};
        return ROTOR_OK;
    }
    if (strncmp(s, "tq", 2) == 0 && parse_uint(s + 2, &v, &end) && *end == '\0') {
        CM_RETURN_IF(v < 1 || v > TQ_MAX_BITS, ROTOR_ERR_INVALID_ARGUMENT,
                     "quantizer '%s': tq takes 1 to %d bits", s, TQ_MAX_BITS);
        *out = (quant_spec){QUANT_TQ, v, 0};
        return ROTOR_OK;
    }
    if (strcmp(s, "bin1") == 0 || strcmp(s, "bin2") == 0) {
        *out = (quant_spec){QUANT_BIN, (unsigned)(s[3] - '0'), 0};
        return ROTOR_OK;
    }
    if (strcmp(s, "sq8") == 0) {
        *out = (quant_spec){QUANT_SQ, 8, 0};
        return ROTOR_OK;
    }
    if (strcmp(s, "bin1fs") == 0 || strcmp(s, "bin2fs") == 0) {
        *out = (quant_spec){QUANT_BINFS, (unsigned)(s[3] - '0'), 0};
        return ROTOR_OK;
    }
    if (strncmp(s, "pq", 2) == 0 && parse_uint(s + 2, &v, &end)) {
        CM_RETURN_IF(v == 0, ROTOR_ERR_INVALID_ARGUMENT,
                     "quantizer '%s': pq needs 1 or more subspaces", s);
        if (*end == '\0') {
            *out = (quant_spec){QUANT_PQ, 8, v};
            return ROTOR_OK;
        }
        if (strcmp(end, "x4") == 0) {
            *out = (quant_spec){QUANT_PQ4, 4, v};
            return ROTOR_OK;
        }
    }
    return cm_fail(ROTOR_ERR_INVALID_ARGUMENT,
                   "unknown quantizer '%s'; use tq1..tq8, tqip2..tqip8, bin1, bin2, bin1fs, "
                   "bin2fs, sq8, pq<M> or pq<M>x4",
                   s);
}

void quant_spec_name(const quant_spec *s, char *buf, size_t size) {
    switch (s->kind) {
    case QUANT_TQ: snprintf(buf, size, "tq%u", s->bits); break;
    case QUANT_TQIP: snprintf(buf, size, "tqip%u", s->bits); break;
    case QUANT_BIN: snprintf(buf, size, "bin%u", s->bits); break;
    case QUANT_BINFS: snprintf(buf, size, "bin%ufs", s->bits); break;
    case QUANT_SQ: snprintf(buf, size, "sq8"); break;
    case QUANT_PQ: snprintf(buf, size, "pq%u", s->m); break;
    case QUANT_PQ4: snprintf(buf, size, "pq%ux4", s->m); break;
    default: snprintf(buf, size, "unknown"); break;
    }
}

rotor_status quant_create(const quant_spec *spec, size_t dim, rotor_metric metric, uint64_t seed,
                          const rotor_allocator *a, quant **out) {
    *out = NULL;
    CM_RETURN_IF(dim == 0, ROTOR_ERR_DIMENSION, "a quantizer needs at least 1 dimension");
    quant *q = cm_calloc(a, sizeof *q, "quantizer");
    if (q == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    q->alloc = *a;
    q->spec = *spec;
    q->dim = dim;
    q->metric = metric;
    q->seed = seed;
    q->trained = true;
    rotor_status st;
    switch (spec->kind) {
    case QUANT_TQ:
    case QUANT_TQIP: st = quant_tq_setup(q, seed); break;
    case QUANT_BIN:
    case QUANT_BINFS: st = quant_bin_setup(q, seed); break;
    case QUANT_SQ: st = quant_sq_setup(q, seed); break;
    case QUANT_PQ:
    case QUANT_PQ4: st = quant_pq_setup(q, seed); break;
    default: st = cm_fail(ROTOR_ERR_INVALID_ARGUMENT, "unknown quantizer kind %d", (int)spec->kind);
    }
    if (st != ROTOR_OK) {
        cm_free(a, q);
        return st;
    }
    q->trained = !q->needs_training;
    *out = q;
    return ROTOR_OK;
}

void quant_free(quant *q) {
    if (q == NULL)
        return;
    if (q->ops != NULL && q->ops->release != NULL)
        q->ops->release(q);
    rotor_allocator a = q->alloc;
    cm_free(&a, q);
}

rotor_status quant_mean(const quant *q, const float *x, size_t n, float *out) {
    rotor_allocator a = q->alloc;
    double *acc = cm_calloc(&a, q->dim * sizeof(double), "mean sums");
    if (acc == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < q->dim; j++)
            acc[j] += x[i * q->dim + j];
    for (size_t j = 0; j < q->dim; j++)
        out[j] = n ? (float)(acc[j] / (double)n) : 0.0f;
    cm_free(&a, acc);
    return ROTOR_OK;
}

bool quant_same_rotation(const quant *a, const quant *b) {
    if (a == NULL || b == NULL || a->ops->rotation == NULL || b->ops->rotation == NULL ||
        a->dim != b->dim)
        return false;
    const float *ca, *cb;
    const rht *ra = a->ops->rotation(a, &ca), *rb = b->ops->rotation(b, &cb);
    return ra->rounds == rb->rounds && ra->seed == rb->seed &&
           memcmp(ca, cb, a->dim * sizeof(float)) == 0;
}

double quant_rotate_query(const quant *q, const float *query, float *scratch, float *rot) {
    const float *centre;
    const rht *r = q->ops->rotation(q, &centre);
    return rht_forward_centred(r, query, centre, scratch, rot);
}

void quant_prepare_rotating(const quant *q, const float *query, void *qstate, float *scratch) {
    float *rot = scratch + q->dim;
    const double qq = quant_rotate_query(q, query, scratch, rot);
    q->ops->prepare_rotated(q, rot, qq, qstate, scratch);
}

void quant_range(const float *v, size_t n, float *lo_out, float *hi_out) {
    simd_ops_get()->range_f32(v, n, lo_out, hi_out);
}

size_t quant_plain_store_bytes(const quant *q, size_t n) { return n * q->code_bytes; }

void quant_plain_store(const quant *q, uint8_t *store, size_t i, const uint8_t *code) {
    memcpy(store + i * q->code_bytes, code, q->code_bytes);
}

void quant_plain_load(const quant *q, const uint8_t *store, size_t i, uint8_t *code) {
    memcpy(code, store + i * q->code_bytes, q->code_bytes);
}
