/*
 * The quantizer's parameter block: what an index file stores so that a
 * trained quantizer comes back exactly as it was, and the one place where
 * bytes from disk become a quantizer.
 *
 * Only trained state is stored. A quantizer is a function of (spec, dim,
 * metric, seed) plus what training learned, so the block holds those few
 * numbers and the learned part: the L2 centre of TurboQuant and binary codes,
 * PQ's codebooks. Rotation signs, Lloyd-Max codebooks, the QJL matrix (d^2
 * floats, 64 MiB at 4096 dimensions) and PQ's transposed codebooks are all
 * rebuilt by quant_create at load, which keeps the block a few kilobytes and
 * leaves no second copy that could disagree with the first. The cost is a
 * promise: the derivation from the seed (three rotation rounds, the codebook
 * solver, the QJL stream) is part of the format, and changing it means
 * raising QIO_VERSION. A recomputed Lloyd-Max codebook may differ from the
 * original in the last bit on another libm; boundaries moving by an ulp do
 * not change what a stored code means.
 *
 * quant_load trusts nothing. It refuses, in this order and each with its own
 * sentence: a big-endian host; a block too short for the magic; a foreign
 * magic; a block too short for the header; an unknown version (newer ones
 * are ROTOR_ERR_UNSUPPORTED, everything else ROTOR_ERR_FORMAT); a header
 * size it did not write; then the spec (kind, bits, subspaces), dimension,
 * metric and trained flag; a payload size other than the one the header
 * implies (computed with overflow checks); a block longer or shorter than
 * header plus payload. Only then does it build the quantizer, and the kind's
 * load_payload checks every float before installing any: finite, and for a
 * centre zero unless the metric is L2 (training centres nothing else). The
 * header is read field by field at fixed offsets, so no read depends on a
 * value not yet checked, and nothing past buf[size) is touched.
 *
 * What a valid block may cost is bounded by the dimension limit, not by the
 * block's size: an untrained PQ block has no payload, so 56 bytes can ask
 * for pq8 over 2^20 dimensions (2 GiB of zeroed codebooks), and tqip's
 * d x d matrix grows with the square of its payload (up to tq_ip_init's
 * 1 GiB). Such blocks describe quantizers quant_create would build just the
 * same; a caller with a memory budget enforces it through the allocator and
 * gets ROTOR_ERR_OUT_OF_MEMORY, as the fuzz target does.
 *
 * The format is little-endian. Header fields are assembled byte by byte and
 * would be right on any host, but the payload floats are copied with memcpy,
 * so a big-endian host refuses to save or load rather than read every float
 * byte-swapped.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant/quant.h"

/*
 * Block layout, version 1 (all fields little-endian, no padding):
 *
 *   offset  size  field
 *        0     4  magic "RQNT"
 *        4     4  format version, u32 = 1
 *        8     4  header size, u32 = 56 (where the payload starts)
 *       12     4  kind, u32 (quant_kind: 1 tq, 2 tqip, 3 bin, 4 pq, 5 pq4, 6 binfs, 7 sq)
 *       16     4  bits, u32 (quant_spec.bits)
 *       20     4  m, u32 (PQ subspaces; 0 for the other kinds)
 *       24     8  dim, u64
 *       32     4  metric, u32 (rotor_metric)
 *       36     8  seed, u64
 *       44     4  trained, u32 (0 or 1)
 *       48     8  payload bytes, u64
 *       56     .  payload
 *
 *   payload    tq, tqip   centre, dim f32 (zero when not centred)
 *              bin        centroid, dim f32 (zero when not centred)
 *              pq, pq4    codebooks, m x ksub x dsub f32 (ksub 256 or 16,
 *                         dsub = dim / m); nothing when untrained
 */
#define QIO_MAGIC "RQNT"
#define QIO_VERSION 1u
#define QIO_HEADER 56u
/* Far beyond any embedding, yet small enough that no size derived from it
 * (dim^2 for the QJL matrix, dim x 256 floats of PQ codebooks) overflows
 * 64 bits; a larger value is damage, not data. */
#define QIO_MAX_DIM ((uint64_t)1 << 20)

enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 4,
    OFF_HEADER = 8,
    OFF_KIND = 12,
    OFF_BITS = 16,
    OFF_M = 20,
    OFF_DIM = 24,
    OFF_METRIC = 32,
    OFF_SEED = 36,
    OFF_TRAINED = 44,
    OFF_PAYLOAD = 48,
};

typedef struct qio_header {
    uint32_t version, header_bytes, kind, bits, m, metric, trained;
    uint64_t dim, seed, payload;
} qio_header;

static rotor_status check_host(void) {
    const uint32_t probe = 0x01020304u;
    uint8_t first;
    memcpy(&first, &probe, 1);
    CM_RETURN_IF(first != 0x04, ROTOR_ERR_UNSUPPORTED,
                 "quantizer blocks are little-endian and this host is not");
    return ROTOR_OK;
}

static const char *metric_name(rotor_metric m) {
    switch (m) {
    case ROTOR_METRIC_L2: return "L2";
    case ROTOR_METRIC_IP: return "inner product";
    case ROTOR_METRIC_COSINE: return "cosine";
    }
    return "unknown";
}

/* The four magic bytes as text, unprintable ones as \xNN: a sentence must
 * stay readable whatever the block holds. out: at least 17 bytes. */
static void show_magic(const uint8_t *p, char *out) {
    size_t pos = 0;
    for (int i = 0; i < 4; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\'' && p[i] != '\\')
            out[pos++] = (char)p[i];
        else
            pos += (size_t)snprintf(out + pos, 5, "\\x%02x", p[i]);
    }
    out[pos] = '\0';
}

/* Payload bytes a quantizer of this spec and dimension stores; fails with a
 * sentence if the size does not fit size_t. */
static rotor_status expected_payload(const quant_spec *spec, size_t dim, bool trained,
                                     size_t *out) {
    size_t floats = dim;
    if (spec->kind == QUANT_PQ || spec->kind == QUANT_PQ4) {
        /* m x ksub x dsub = dim x ksub */
        const size_t ksub = spec->kind == QUANT_PQ4 ? 16 : 256;
        if (!trained)
            floats = 0;
        else
            CM_RETURN_IF(cm_mul_overflow(dim, ksub, &floats), ROTOR_ERR_FORMAT,
                         "codebooks of %zu dimensions do not fit in memory", dim);
    }
    CM_RETURN_IF(cm_mul_overflow(floats, sizeof(float), out), ROTOR_ERR_FORMAT,
                 "a payload of %zu floats does not fit in memory", floats);
    return ROTOR_OK;
}

size_t quant_saved_size(const quant *q) { return QIO_HEADER + q->ops->payload_bytes(q); }

rotor_status quant_save(const quant *q, uint8_t *buf, size_t size) {
    CM_RETURN_IF(q == NULL || (buf == NULL && size > 0), ROTOR_ERR_INVALID_ARGUMENT,
                 "quant_save needs a quantizer and a buffer");
    CM_FORWARD(check_host());
    /* Never write what quant_load would refuse. */
    CM_RETURN_IF((uint64_t)q->dim > QIO_MAX_DIM, ROTOR_ERR_UNSUPPORTED,
                 "a quantizer of %zu dimensions cannot be saved; blocks hold at most %llu", q->dim,
                 (unsigned long long)QIO_MAX_DIM);
    const size_t payload = q->ops->payload_bytes(q);
    const size_t need = QIO_HEADER + payload;
    CM_RETURN_IF(size < need, ROTOR_ERR_INVALID_ARGUMENT,
                 "quantizer block needs %zu bytes, the buffer has %zu", need, size);
    memcpy(buf + OFF_MAGIC, QIO_MAGIC, 4);
    cm_put_le32(buf + OFF_VERSION, QIO_VERSION);
    cm_put_le32(buf + OFF_HEADER, QIO_HEADER);
    cm_put_le32(buf + OFF_KIND, (uint32_t)q->spec.kind);
    cm_put_le32(buf + OFF_BITS, q->spec.bits);
    cm_put_le32(buf + OFF_M, q->spec.m);
    cm_put_le64(buf + OFF_DIM, (uint64_t)q->dim);
    cm_put_le32(buf + OFF_METRIC, (uint32_t)q->metric);
    cm_put_le64(buf + OFF_SEED, q->seed);
    cm_put_le32(buf + OFF_TRAINED, q->trained ? 1u : 0u);
    cm_put_le64(buf + OFF_PAYLOAD, (uint64_t)payload);
    if (payload > 0)
        q->ops->save_payload(q, buf + QIO_HEADER);
    return ROTOR_OK;
}

/* The spec fields of the header: kind, then bits and m as that kind allows. */
static rotor_status check_spec(const qio_header *h, quant_spec *spec) {
    switch (h->kind) {
    case QUANT_TQ:
        CM_RETURN_IF(h->bits < 1 || h->bits > TQ_MAX_BITS, ROTOR_ERR_FORMAT,
                     "tq takes 1 to %d bits, the block says %" PRIu32, TQ_MAX_BITS, h->bits);
        break;
    case QUANT_TQIP:
        CM_RETURN_IF(h->bits < 2 || h->bits > TQ_MAX_BITS, ROTOR_ERR_FORMAT,
                     "tqip takes 2 to %d bits, the block says %" PRIu32, TQ_MAX_BITS, h->bits);
        break;
    case QUANT_BIN:
    case QUANT_BINFS:
        CM_RETURN_IF(h->bits != 1 && h->bits != 2, ROTOR_ERR_FORMAT,
                     "bin takes 1 or 2 bits, the block says %" PRIu32, h->bits);
        break;
    case QUANT_SQ:
        CM_RETURN_IF(h->bits != 8, ROTOR_ERR_FORMAT, "sq takes 8 bits, the block says %" PRIu32,
                     h->bits);
        break;
    case QUANT_PQ:
        CM_RETURN_IF(h->bits != 8, ROTOR_ERR_FORMAT,
                     "pq takes 8 bits per subspace, the block says %" PRIu32, h->bits);
        break;
    case QUANT_PQ4:
        CM_RETURN_IF(h->bits != 4, ROTOR_ERR_FORMAT,
                     "pq<M>x4 takes 4 bits per subspace, the block says %" PRIu32, h->bits);
        break;
    default: return cm_fail(ROTOR_ERR_FORMAT, "quantizer kind %" PRIu32 " is unknown", h->kind);
    }
    const bool pq = h->kind == QUANT_PQ || h->kind == QUANT_PQ4;
    *spec = (quant_spec){(quant_kind)h->kind, h->bits, h->m};
    char name[32];
    quant_spec_name(spec, name, sizeof name);
    CM_RETURN_IF(!pq && h->m != 0, ROTOR_ERR_FORMAT, "%s has no subspaces, the block says %" PRIu32,
                 name, h->m);
    CM_RETURN_IF(pq && h->m == 0, ROTOR_ERR_FORMAT,
                 "pq needs 1 or more subspaces, the block says 0");
    return ROTOR_OK;
}

rotor_status quant_load(const uint8_t *buf, size_t size, const rotor_allocator *a, quant **out) {
    CM_RETURN_IF(out == NULL, ROTOR_ERR_INVALID_ARGUMENT, "quant_load needs an output pointer");
    *out = NULL;
    CM_RETURN_IF(a == NULL || (buf == NULL && size > 0), ROTOR_ERR_INVALID_ARGUMENT,
                 "quant_load needs a buffer and an allocator");
    CM_FORWARD(check_host());

    /* Framing: magic, version, where the payload starts. */
    CM_RETURN_IF(size < 4, ROTOR_ERR_FORMAT,
                 "quantizer block of %zu bytes is shorter than its %u-byte header", size,
                 QIO_HEADER);
    if (memcmp(buf + OFF_MAGIC, QIO_MAGIC, 4) != 0) {
        char shown[17];
        show_magic(buf + OFF_MAGIC, shown);
        return cm_fail(ROTOR_ERR_FORMAT, "quantizer block has magic '%s', expected '%s'", shown,
                       QIO_MAGIC);
    }
    CM_RETURN_IF(size < QIO_HEADER, ROTOR_ERR_FORMAT,
                 "quantizer block of %zu bytes is shorter than its %u-byte header", size,
                 QIO_HEADER);
    const qio_header h = {
        .version = cm_get_le32(buf + OFF_VERSION),
        .header_bytes = cm_get_le32(buf + OFF_HEADER),
        .kind = cm_get_le32(buf + OFF_KIND),
        .bits = cm_get_le32(buf + OFF_BITS),
        .m = cm_get_le32(buf + OFF_M),
        .dim = cm_get_le64(buf + OFF_DIM),
        .metric = cm_get_le32(buf + OFF_METRIC),
        .seed = cm_get_le64(buf + OFF_SEED),
        .trained = cm_get_le32(buf + OFF_TRAINED),
        .payload = cm_get_le64(buf + OFF_PAYLOAD),
    };
    CM_RETURN_IF(h.version > QIO_VERSION, ROTOR_ERR_UNSUPPORTED,
                 "quantizer block version %" PRIu32 " is newer than this library's %u", h.version,
                 QIO_VERSION);
    CM_RETURN_IF(h.version != QIO_VERSION, ROTOR_ERR_FORMAT,
                 "quantizer block version %" PRIu32 " is not one this library wrote (1)",
                 h.version);
    /* Version 1 has exactly one header size; a later version that grows the
     * header raises the version too, so any other value is damage. */
    CM_RETURN_IF(h.header_bytes != QIO_HEADER, ROTOR_ERR_FORMAT,
                 "quantizer block header size is %" PRIu32 ", expected %u for version 1",
                 h.header_bytes, QIO_HEADER);

    /* What quantizer: spec, shape, metric, training. */
    quant_spec spec;
    CM_FORWARD(check_spec(&h, &spec));
    char name[32];
    quant_spec_name(&spec, name, sizeof name);
    CM_RETURN_IF(h.dim == 0, ROTOR_ERR_FORMAT,
                 "%s block has dimension 0; a quantizer needs at least 1", name);
    CM_RETURN_IF(h.dim > QIO_MAX_DIM, ROTOR_ERR_FORMAT,
                 "%s block has dimension %" PRIu64 ", more than the %" PRIu64
                 " this library accepts",
                 name, h.dim, QIO_MAX_DIM);
    const size_t dim = (size_t)h.dim;
    CM_RETURN_IF(spec.m != 0 && dim % spec.m != 0, ROTOR_ERR_FORMAT,
                 "%s needs a dimension divisible by %u, the block says %zu", name, spec.m, dim);
    CM_RETURN_IF(h.metric > ROTOR_METRIC_COSINE, ROTOR_ERR_FORMAT,
                 "metric %" PRIu32 " is unknown; expected 0 (L2), 1 (IP) or 2 (cosine)", h.metric);
    CM_RETURN_IF(h.trained > 1, ROTOR_ERR_FORMAT,
                 "quantizer block trained flag is %" PRIu32 ", expected 0 or 1", h.trained);
    const bool needs_training = spec.kind == QUANT_PQ || spec.kind == QUANT_PQ4;
    CM_RETURN_IF(!needs_training && h.trained == 0, ROTOR_ERR_FORMAT,
                 "%s needs no training, yet the block marks it untrained", name);

    /* How many bytes follow, and that exactly those are there. */
    size_t want;
    CM_FORWARD(expected_payload(&spec, dim, h.trained != 0, &want));
    CM_RETURN_IF(h.payload != (uint64_t)want, ROTOR_ERR_FORMAT,
                 "quantizer block has a payload of %" PRIu64 " bytes, expected %zu for %s%s of "
                 "%zu dimensions",
                 h.payload, want, h.trained ? "" : "untrained ", name, dim);
    const size_t total = QIO_HEADER + want; /* want <= 2^30: no overflow */
    CM_RETURN_IF(size < total, ROTOR_ERR_FORMAT,
                 "quantizer block of %zu bytes is truncated: its header and payload take %zu", size,
                 total);
    CM_RETURN_IF(size > total, ROTOR_ERR_FORMAT,
                 "quantizer block of %zu bytes has %zu trailing bytes after its %zu-byte header "
                 "and payload",
                 size, size - total, total);

    /* Everything the header says is consistent: rebuild the derived state
     * from the seed, then install the trained part. */
    quant *q = NULL;
    rotor_status st = quant_create(&spec, dim, (rotor_metric)h.metric, h.seed, a, &q);
    if (st != ROTOR_OK)
        return st == ROTOR_ERR_OUT_OF_MEMORY
                   ? st
                   : cm_fail_prefix(ROTOR_ERR_FORMAT, "quantizer block cannot be rebuilt");
    if (want > 0) {
        st = q->ops->load_payload(q, buf + QIO_HEADER, want);
        if (st != ROTOR_OK) {
            quant_free(q);
            return st;
        }
    }
    q->trained = h.trained != 0;
    *out = q;
    return ROTOR_OK;
}

rotor_status quant_load_centre(const quant *q, const uint8_t *src, size_t n, const char *what,
                               float *centre) {
    char name[32];
    quant_spec_name(&q->spec, name, sizeof name);
    CM_RETURN_IF(n != q->dim * sizeof(float), ROTOR_ERR_FORMAT,
                 "%s %s of %zu dimensions takes %zu bytes, the block holds %zu", name, what, q->dim,
                 q->dim * sizeof(float), n);
    /* All checks before the first write, so a refused block changes nothing. */
    for (size_t j = 0; j < q->dim; j++) {
        float v;
        memcpy(&v, src + j * sizeof(float), sizeof v);
        CM_RETURN_IF(!isfinite(v), ROTOR_ERR_FORMAT, "%s %s holds %s at dimension %zu", name, what,
                     isnan(v) ? "NaN" : "infinity", j);
        /* Training centres L2 only: a centre under another metric would
         * shift every inner product, so no saved block can hold one. */
        CM_RETURN_IF(q->metric != ROTOR_METRIC_L2 && v != 0.0f, ROTOR_ERR_FORMAT,
                     "%s %s for %s is not zero (dimension %zu holds %g); only L2 is centred", name,
                     what, metric_name(q->metric), j, (double)v);
    }
    memcpy(centre, src, n);
    return ROTOR_OK;
}
