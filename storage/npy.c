/*
 * NumPy .npy files: the magic "\x93NUMPY", a major and minor version byte, a
 * header length (uint16 little-endian in version 1.0, uint32 in 2.0 and
 * 3.0), then a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (1000, 128), }
 * padded with spaces and a newline, then the raw array.
 *
 * Design choices
 *   - The dict is parsed by a small recursive-descent reader of exactly the
 *     literal subset numpy writes (quoted strings without escapes, True/False,
 *     tuples of integers, trailing commas), not by searching for substrings:
 *     a substring search accepts "'shape': (3, 4)" inside a string value and
 *     cannot say what is wrong. Anything else is "malformed header" with the
 *     offset in the dict.
 *   - Malformed (bad magic, bad dict, missing or unknown keys) is
 *     ROTOR_ERR_FORMAT; a well-formed file rotor cannot use (another dtype,
 *     big-endian, Fortran order, 0-D or 3-D shapes) is ROTOR_ERR_UNSUPPORTED,
 *     so a caller can tell a broken download from a conversion to do.
 *   - Accepted dtypes: '<f4', '<i4', '<i8', and for one-byte types any byte-order
 *     mark ('|u1', '<u1', '|i1', ...), since byte order means nothing there.
 *     A 1-D shape (n,) is read as n x 1.
 *   - The header length is capped (1 MiB) and checked against the file size
 *     before anything is allocated for it.
 *   - Writing always emits version 1.0 with the dict padded so the data starts
 *     on a 64-byte boundary, as numpy does.
 */
#include <stdio.h>
#include <string.h>

#include "storage/storage.h"

#define NPY_MAX_HEADER ((size_t)1 << 20)
#define NPY_MAX_NDIM 32
#define NPY_STR_MAX 32

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

typedef struct npy_parser {
    const char *s;
    size_t n, i;
    const char *path;
} npy_parser;

static rotor_status malformed(const npy_parser *p, const char *what) {
    return cm_fail(ROTOR_ERR_FORMAT, "'%s' has a malformed header: %s at offset %zu of the dict",
                   p->path, what, p->i);
}

static void skip_ws(npy_parser *p) {
    while (p->i < p->n &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static bool accept(npy_parser *p, char c) {
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == c) {
        p->i++;
        return true;
    }
    return false;
}

/* A quoted string without escapes; copies at most NPY_STR_MAX - 1 bytes and
 * sets *long_ when it had to cut. */
static rotor_status parse_string(npy_parser *p, char *out, bool *long_) {
    skip_ws(p);
    if (p->i >= p->n || (p->s[p->i] != '\'' && p->s[p->i] != '"'))
        return malformed(p, "expected a quoted string");
    char quote = p->s[p->i++];
    size_t len = 0;
    *long_ = false;
    while (p->i < p->n && p->s[p->i] != quote) {
        char c = p->s[p->i];
        if (c == '\\' || (unsigned char)c < 0x20 || c == 0x7f)
            return malformed(p, "unexpected character in a string");
        if (len + 1 < NPY_STR_MAX)
            out[len++] = c;
        else
            *long_ = true;
        p->i++;
    }
    if (p->i >= p->n)
        return malformed(p, "unterminated string");
    p->i++;
    out[len] = '\0';
    return ROTOR_OK;
}

static bool accept_word(npy_parser *p, const char *word) {
    skip_ws(p);
    size_t len = strlen(word);
    if (p->n - p->i >= len && memcmp(p->s + p->i, word, len) == 0) {
        p->i += len;
        return true;
    }
    return false;
}

static rotor_status parse_bool(npy_parser *p, bool *out) {
    if (accept_word(p, "True"))
        *out = true;
    else if (accept_word(p, "False"))
        *out = false;
    else
        return malformed(p, "expected True or False");
    return ROTOR_OK;
}

/* A tuple of non-negative integers (Python 2 files may add an L). Values too
 * large for size_t are reported as SIZE_MAX and rejected by the caller. */
static rotor_status parse_shape(npy_parser *p, size_t *dims, size_t *ndim) {
    if (!accept(p, '('))
        return malformed(p, "expected '(' to open the shape");
    *ndim = 0;
    for (;;) {
        if (accept(p, ')'))
            return ROTOR_OK;
        skip_ws(p);
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
            return malformed(p, "expected a non-negative integer in the shape");
        size_t v = 0;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
            size_t digit = (size_t)(p->s[p->i] - '0');
            if (v != SIZE_MAX && (cm_mul_overflow(v, 10, &v) || cm_add_overflow(v, digit, &v)))
                v = SIZE_MAX;
            p->i++;
        }
        if (p->i < p->n && p->s[p->i] == 'L')
            p->i++;
        if (*ndim == NPY_MAX_NDIM)
            return malformed(p, "too many dimensions in the shape");
        dims[(*ndim)++] = v;
        if (accept(p, ','))
            continue;
        if (accept(p, ')'))
            return ROTOR_OK;
        return malformed(p, "expected ',' or ')' in the shape");
    }
}

typedef struct npy_dict {
    char descr[NPY_STR_MAX];
    bool descr_long, descr_structured, fortran;
    size_t dims[NPY_MAX_NDIM], ndim;
    bool has_descr, has_fortran, has_shape;
} npy_dict;

static rotor_status parse_dict(npy_parser *p, npy_dict *d) {
    if (!accept(p, '{'))
        return malformed(p, "expected '{'");
    for (;;) {
        if (accept(p, '}'))
            break;
        char key[NPY_STR_MAX];
        bool long_;
        CM_FORWARD(parse_string(p, key, &long_));
        if (!accept(p, ':'))
            return malformed(p, "expected ':' after a key");
        if (!long_ && strcmp(key, "descr") == 0) {
            if (d->has_descr)
                return malformed(p, "key 'descr' given twice");
            d->has_descr = true;
            skip_ws(p);
            if (p->i < p->n && p->s[p->i] == '[') {
                /* A structured dtype: a list of fields. Not parsed further. */
                d->descr_structured = true;
                return ROTOR_OK;
            }
            CM_FORWARD(parse_string(p, d->descr, &d->descr_long));
        } else if (!long_ && strcmp(key, "fortran_order") == 0) {
            if (d->has_fortran)
                return malformed(p, "key 'fortran_order' given twice");
            d->has_fortran = true;
            CM_FORWARD(parse_bool(p, &d->fortran));
        } else if (!long_ && strcmp(key, "shape") == 0) {
            if (d->has_shape)
                return malformed(p, "key 'shape' given twice");
            d->has_shape = true;
            CM_FORWARD(parse_shape(p, d->dims, &d->ndim));
        } else {
            return cm_fail(ROTOR_ERR_FORMAT,
                           "'%s' has a malformed header: unknown key '%s%s' in the dict", p->path,
                           key, long_ ? "..." : "");
        }
        if (accept(p, ','))
            continue;
        if (accept(p, '}'))
            break;
        return malformed(p, "expected ',' or '}' after a value");
    }
    skip_ws(p);
    if (p->i != p->n)
        return malformed(p, "unexpected text after the dict");
    if (!d->has_descr || !d->has_fortran || !d->has_shape)
        return cm_fail(ROTOR_ERR_FORMAT, "'%s' has a malformed header: the dict lacks '%s'",
                       p->path,
                       !d->has_descr     ? "descr"
                       : !d->has_fortran ? "fortran_order"
                                         : "shape");
    return ROTOR_OK;
}

static rotor_status npy_dtype(const rotor_reader *r, const npy_dict *d, rotor_elem_type *type) {
    if (d->descr_structured)
        return cm_fail(
            ROTOR_ERR_UNSUPPORTED,
            "'%s' has a structured dtype; supported are '<f4', '|u1', '|i1', '<i4' and '<i8'",
            r->path);
    const char *s = d->descr;
    if (!d->descr_long && strlen(s) == 3) {
        char order = s[0];
        bool one_byte = s[2] == '1';
        if (one_byte && (order == '|' || order == '<' || order == '>' || order == '=')) {
            if (s[1] == 'u') {
                *type = ROTOR_ELEM_U8;
                return ROTOR_OK;
            }
            if (s[1] == 'i') {
                *type = ROTOR_ELEM_I8;
                return ROTOR_OK;
            }
        }
        if ((s[2] == '4' && (s[1] == 'f' || s[1] == 'i')) || (s[2] == '8' && s[1] == 'i')) {
            if (order == '>')
                return cm_fail(ROTOR_ERR_UNSUPPORTED,
                               "'%s' is big-endian (dtype '%s'); only little-endian data is "
                               "supported",
                               r->path, s);
            if (order == '<' || order == '=') {
                *type = s[1] == 'f'   ? ROTOR_ELEM_F32
                        : s[2] == '8' ? ROTOR_ELEM_I64
                                      : ROTOR_ELEM_I32;
                return ROTOR_OK;
            }
        }
    }
    return cm_fail(ROTOR_ERR_UNSUPPORTED,
                   "'%s' has dtype '%s%s'; supported are '<f4', '|u1', '|i1', '<i4' and '<i8'",
                   r->path, s, d->descr_long ? "..." : "");
}

rotor_status npy_read_header(rotor_reader *r) {
    unsigned char b[12];
    size_t got;
    CM_FORWARD(ds_read_at(r, b, sizeof b, 0, &got));
    if (got < 8 || memcmp(b, npy_magic, sizeof npy_magic) != 0)
        return cm_fail(ROTOR_ERR_FORMAT, "'%s' does not start with the .npy magic \\x93NUMPY",
                       r->path);
    unsigned major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0)
        return cm_fail(ROTOR_ERR_UNSUPPORTED,
                       "'%s' is .npy version %u.%u; versions 1.0, 2.0 and 3.0 are supported",
                       r->path, major, minor);
    size_t prefix = major == 1 ? 10 : 12;
    if (got < prefix)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' is truncated: the .npy header length is cut short, the file has "
                       "%llu bytes",
                       r->path, (unsigned long long)r->file_size);
    size_t hlen = major == 1 ? (size_t)(b[8] | b[9] << 8) : (size_t)ds_le32(b + 8);
    if (hlen > NPY_MAX_HEADER)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' has a malformed header: its length %zu is above the limit of %zu",
                       r->path, hlen, NPY_MAX_HEADER);
    if (prefix + hlen > r->file_size)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' is truncated: its header needs %zu bytes, the file has %llu", r->path,
                       prefix + hlen, (unsigned long long)r->file_size);

    rotor_allocator a = cm_allocator_default();
    char *text = cm_alloc(&a, hlen + 1, "a .npy header");
    if (text == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    rotor_status st = ds_read_at(r, text, hlen, prefix, &got);
    if (st == ROTOR_OK && got < hlen)
        st = cm_fail(ROTOR_ERR_FORMAT, "'%s' is truncated inside its header", r->path);
    npy_dict d;
    memset(&d, 0, sizeof d);
    if (st == ROTOR_OK) {
        text[hlen] = '\0';
        npy_parser p = {text, hlen, 0, r->path};
        st = parse_dict(&p, &d);
    }
    cm_free(&a, text);
    CM_FORWARD(st);

    CM_FORWARD(npy_dtype(r, &d, &r->info.type));
    if (d.fortran)
        return cm_fail(ROTOR_ERR_UNSUPPORTED,
                       "'%s' is stored in Fortran order; only C order is supported", r->path);
    if (d.ndim == 0)
        return cm_fail(ROTOR_ERR_UNSUPPORTED,
                       "'%s' holds a 0-D array (a scalar); a 2-D (or 1-D) shape is needed",
                       r->path);
    if (d.ndim > 2) {
        char shape[64];
        int len = snprintf(shape, sizeof shape, "%zu", d.dims[0]);
        for (size_t i = 1; i < d.ndim && len > 0 && (size_t)len < sizeof shape; i++)
            len += snprintf(shape + len, sizeof shape - (size_t)len, ", %zu", d.dims[i]);
        return cm_fail(ROTOR_ERR_UNSUPPORTED,
                       "'%s' holds a %zu-D array of shape (%s); only 2-D (or 1-D) arrays are "
                       "supported",
                       r->path, d.ndim, shape);
    }
    size_t rows = d.dims[0], cols = d.ndim == 2 ? d.dims[1] : 1;
    if (cols == 0)
        return cm_fail(ROTOR_ERR_FORMAT, "'%s' has shape (%zu, 0): dimension 0", r->path, rows);
    if (cols > DS_MAX_DIM || rows > DS_MAX_ROWS)
        return cm_fail(ROTOR_ERR_FORMAT,
                       "'%s' has shape (%zu, %zu), above the limits of %zu rows and dimension "
                       "%zu",
                       r->path, rows, cols, DS_MAX_ROWS, DS_MAX_DIM);
    r->info.rows = rows;
    r->info.cols = cols;
    r->data_offset = prefix + hlen;
    snprintf(r->shape, sizeof r->shape, "%zu x %zu %s", rows, cols, ds_elem_name(r->info.type));
    return ds_check_payload(r);
}

size_t npy_format_header(unsigned char *buf, size_t cap, rotor_elem_type type, size_t rows,
                         size_t cols) {
    const char *descr = type == ROTOR_ELEM_F32   ? "<f4"
                        : type == ROTOR_ELEM_U8  ? "|u1"
                        : type == ROTOR_ELEM_I8  ? "|i1"
                        : type == ROTOR_ELEM_I64 ? "<i8"
                                                 : "<i4";
    char dict[160];
    int len = snprintf(dict, sizeof dict,
                       "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }", descr,
                       rows, cols);
    if (len < 0 || (size_t)len >= sizeof dict)
        return 0;
    /* Magic, version, length, dict, spaces, '\n': a multiple of 64 bytes. */
    size_t total = cm_round_up(10 + (size_t)len + 1, 64);
    if (total > cap || total - 10 > 0xffff)
        return 0;
    size_t hlen = total - 10;
    memcpy(buf, npy_magic, sizeof npy_magic);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)len);
    memset(buf + 10 + len, ' ', total - 10 - (size_t)len - 1);
    buf[total - 1] = '\n';
    return total;
}
