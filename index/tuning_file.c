/*
 * The tuning section (storage/FORMAT.md, section 11): the calibration table
 * and the automatic configuration's candidates, written and read field by
 * field in little-endian order. Optional: a file without it opens with no
 * table (files written before it existed).
 */
#include <math.h>
#include <string.h>

#include "index/index_internal.h"

/* Version 2 added each row's max_neighbors; version 1 rows (32 bytes)
 * read with 0, every neighbour, as their searches walked. */
enum {
    TUNING_VERSION = 2,
    TUNING_HEADER = 64,
    TUNING_ROW_V1 = 32,
    TUNING_ROW = 36,
    TUNING_CANDIDATE = 88,
    TUNING_MAX_ROWS = 4096,
    TUNING_MAX_CANDIDATES = 16,
};

static void putf(uint8_t *p, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    cm_put_le32(p, v);
}
static void putd(uint8_t *p, double f) {
    uint64_t v;
    memcpy(&v, &f, 8);
    cm_put_le64(p, v);
}
static float getf(const uint8_t *p) {
    uint32_t v = cm_get_le32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static double getd(const uint8_t *p) {
    uint64_t v = cm_get_le64(p);
    double f;
    memcpy(&f, &v, 8);
    return f;
}

rotor_status ix_tuning_save(const rotor_index *ix, ixf_writer *w) {
    const ix_tuning *t = &ix->tuning;
    if (t->rows == 0 && t->candidates == 0)
        return ROTOR_OK;
    const size_t bytes = TUNING_HEADER + t->rows * TUNING_ROW + t->candidates * TUNING_CANDIDATE;
    uint8_t *b = cm_calloc(&ix->alloc, bytes, "tuning section");
    if (b == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    cm_put_le32(b, TUNING_VERSION);
    cm_put_le32(b + 4, t->k);
    cm_put_le32(b + 8, t->queries);
    cm_put_le32(b + 12, (uint32_t)t->rows);
    cm_put_le32(b + 16, (uint32_t)t->candidates);
    putf(b + 20, t->target_recall);
    cm_put_le64(b + 24, t->sample);
    cm_put_le64(b + 32, t->sample_queries);
    putd(b + 40, t->calibration_seconds);
    putd(b + 48, t->auto_seconds);
    cm_put_le32(b + 56, t->rows_as_queries);
    uint8_t *p = b + TUNING_HEADER;
    for (size_t i = 0; i < t->rows; i++, p += TUNING_ROW) {
        const rotor_calibration_row *r = &t->row[i];
        cm_put_le32(p, r->list_size);
        cm_put_le32(p + 4, r->rerank);
        cm_put_le32(p + 8, r->refine);
        cm_put_le32(p + 12, r->nprobe);
        putf(p + 16, r->recall);
        putf(p + 20, r->recall_low);
        putf(p + 24, r->cost_ns);
        cm_put_le32(p + 28, r->start_points);
        cm_put_le32(p + 32, r->max_neighbors);
    }
    for (size_t i = 0; i < t->candidates; i++, p += TUNING_CANDIDATE) {
        const rotor_auto_candidate *c = &t->candidate[i];
        memcpy(p, c->quant, 32);
        memcpy(p + 32, c->walk_quant, 32);
        cm_put_le32(p + 64, (uint32_t)c->neighbor_codes);
        cm_put_le32(p + 68, c->list_size);
        cm_put_le32(p + 72, c->rerank);
        putf(p + 76, c->recall);
        putf(p + 80, c->cost_ns);
        cm_put_le32(p + 84, (uint32_t)c->chosen);
    }
    rotor_status st = ixf_put_section(w, IXF_SEC_TUNING, b, bytes);
    cm_free(&ix->alloc, b);
    return st;
}

static bool fraction(float f) { return f >= -1.0f && f <= 1.0f; }
static bool cost(float f) { return isfinite(f) && f >= 0; }
/* A candidate's cost may be negative: its measuring stopped (rotor.h). */
static bool candidate_cost(float f) { return isfinite(f); }

/* Names stored in 32 bytes: NUL-terminated inside them. */
static bool name32(const uint8_t *p) { return memchr(p, 0, 32) != NULL; }

rotor_status ix_tuning_load(rotor_index *ix) {
    const ixf_file *f = ix->file;
    const ixf_section sec = ixf_get(f, IXF_SEC_TUNING);
    if (sec.data == NULL)
        return ROTOR_OK;
    CM_FORWARD(ixf_check(f, IXF_SEC_TUNING));
    const uint8_t *b = sec.data;
    const char *path = ixf_path(f);
    CM_RETURN_IF(sec.size < TUNING_HEADER, ROTOR_ERR_FORMAT,
                 "'%s': the tuning section holds %llu bytes, less than its header", path,
                 (unsigned long long)sec.size);
    const uint32_t version = cm_get_le32(b);
    CM_RETURN_IF(version == 0 || version > TUNING_VERSION, ROTOR_ERR_FORMAT,
                 "'%s': the tuning section has version %u; this library reads 1 to %u", path,
                 version, TUNING_VERSION);
    const size_t row_bytes = version == 1 ? TUNING_ROW_V1 : TUNING_ROW;
    ix_tuning t = {
        .k = cm_get_le32(b + 4),
        .queries = cm_get_le32(b + 8),
        .rows = cm_get_le32(b + 12),
        .candidates = cm_get_le32(b + 16),
        .target_recall = getf(b + 20),
        .sample = cm_get_le64(b + 24),
        .sample_queries = cm_get_le64(b + 32),
        .calibration_seconds = getd(b + 40),
        .auto_seconds = getd(b + 48),
        .rows_as_queries = cm_get_le32(b + 56) == 1,
    };
    CM_RETURN_IF(t.rows > TUNING_MAX_ROWS || t.candidates > TUNING_MAX_CANDIDATES ||
                     sec.size !=
                         TUNING_HEADER + t.rows * row_bytes + t.candidates * TUNING_CANDIDATE,
                 ROTOR_ERR_FORMAT,
                 "'%s': the tuning section's %zu rows and %zu candidates do not fill its %llu "
                 "bytes",
                 path, t.rows, t.candidates, (unsigned long long)sec.size);
    CM_RETURN_IF((t.rows > 0 && (t.k == 0 || t.queries == 0)) || !fraction(t.target_recall) ||
                     !(t.calibration_seconds >= 0) || !(t.auto_seconds >= 0) ||
                     cm_get_le32(b + 56) > 1 || cm_get_le32(b + 60) != 0,
                 ROTOR_ERR_FORMAT, "'%s': the tuning section has a damaged header", path);
    const rotor_allocator *a = &ix->alloc;
    t.row = t.rows ? cm_alloc(a, t.rows * sizeof *t.row, "calibration table") : NULL;
    t.candidate =
        t.candidates ? cm_alloc(a, t.candidates * sizeof *t.candidate, "tuning candidates") : NULL;
    if ((t.rows && t.row == NULL) || (t.candidates && t.candidate == NULL)) {
        cm_free(a, t.row);
        cm_free(a, t.candidate);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    const uint8_t *p = b + TUNING_HEADER;
    bool ok = true;
    for (size_t i = 0; i < t.rows; i++, p += row_bytes) {
        rotor_calibration_row *r = &t.row[i];
        *r = (rotor_calibration_row){.list_size = cm_get_le32(p),
                                     .rerank = cm_get_le32(p + 4),
                                     .refine = cm_get_le32(p + 8),
                                     .nprobe = cm_get_le32(p + 12),
                                     .start_points = cm_get_le32(p + 28),
                                     .max_neighbors = version > 1 ? cm_get_le32(p + 32) : 0,
                                     .recall = getf(p + 16),
                                     .recall_low = getf(p + 20),
                                     .cost_ns = getf(p + 24)};
        ok = ok && fraction(r->recall) && fraction(r->recall_low) && cost(r->cost_ns);
    }
    for (size_t i = 0; i < t.candidates; i++, p += TUNING_CANDIDATE) {
        rotor_auto_candidate *c = &t.candidate[i];
        ok = ok && name32(p) && name32(p + 32);
        memcpy(c->quant, p, 32);
        memcpy(c->walk_quant, p + 32, 32);
        c->quant[31] = c->walk_quant[31] = '\0';
        c->neighbor_codes = (int32_t)cm_get_le32(p + 64);
        c->list_size = cm_get_le32(p + 68);
        c->rerank = cm_get_le32(p + 72);
        c->recall = getf(p + 76);
        c->cost_ns = getf(p + 80);
        c->chosen = (int32_t)cm_get_le32(p + 84);
        ok = ok && fraction(c->recall) && candidate_cost(c->cost_ns) && c->neighbor_codes >= 0 &&
             c->neighbor_codes <= 1 && c->chosen >= 0 && c->chosen <= 1;
    }
    if (!ok) {
        cm_free(a, t.row);
        cm_free(a, t.candidate);
        return cm_fail(ROTOR_ERR_FORMAT, "'%s': the tuning section holds an impossible value",
                       path);
    }
    ix_tuning_free(ix);
    ix->tuning = t;
    return ROTOR_OK;
}
