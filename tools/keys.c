/*
 * --keys files: one key per base row, a whole number from 0 to 2^63 - 1,
 * either as text (a line per row, surrounding blanks allowed; the form any
 * script writes) or as .npy of int64 or int32 with one column (the form
 * numpy writes, read through the library). Every key is checked here, a
 * repeated one included (the library would refuse it too, but as a bad
 * argument, where the tool's exit code for bad data is 1), so the first
 * fault is named by its line or row before any work starts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

static int read_npy(const char *path, size_t rows, int64_t *keys) {
    rotor_matrix m = {0};
    rotor_status st = rotor_matrix_read(path, -1, 0, &m);
    if (st != ROTOR_OK)
        return cli_lib_error(st, "cannot read keys");
    int rc = CLI_EXIT_OK;
    if (m.type != ROTOR_ELEM_I64 && m.type != ROTOR_ELEM_I32)
        rc = cli_error(CLI_EXIT_FAIL, "keys '%s' hold %s values; keys are int64 (or int32)", path,
                       cli_elem_type_name(m.type));
    else if (m.cols != 1)
        rc = cli_error(CLI_EXIT_FAIL, "keys '%s' have %zu columns; give one key per row", path,
                       m.cols);
    else if (m.rows != rows)
        rc = cli_error(CLI_EXIT_FAIL, "keys '%s' hold %zu keys, the base has %zu rows", path,
                       m.rows, rows);
    for (size_t i = 0; rc == CLI_EXIT_OK && i < rows; i++) {
        keys[i] =
            m.type == ROTOR_ELEM_I64 ? ((const int64_t *)m.data)[i] : ((const int32_t *)m.data)[i];
        if (keys[i] < 0)
            rc = cli_error(CLI_EXIT_FAIL, "keys '%s' row %zu: key %lld is negative", path, i,
                           (long long)keys[i]);
    }
    rotor_matrix_free(&m);
    return rc;
}

static int read_text(const char *path, size_t rows, int64_t *keys) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return cli_error(CLI_EXIT_FAIL, "cannot open keys '%s': %s", path, strerror(errno));
    int rc = CLI_EXIT_OK;
    char *line = NULL;
    size_t cap = 0, n = 0;
    ssize_t len;
    while (rc == CLI_EXIT_OK && (len = getline(&line, &cap, f)) >= 0) {
        if (n == rows) {
            rc = cli_error(CLI_EXIT_FAIL, "keys '%s' has more lines than the %zu base rows", path,
                           rows);
            break;
        }
        n++;
        if ((size_t)len != strlen(line)) {
            rc = cli_error(CLI_EXIT_FAIL,
                           "keys '%s' line %zu holds a NUL byte: give a text file of keys, or a "
                           ".npy",
                           path, n);
            break;
        }
        char *p = line + strspn(line, " \t");
        const size_t digits = strspn(p, "0123456789");
        const char *after = p + digits + strspn(p + digits, " \t\r\n");
        errno = 0;
        const long long x = digits > 0 ? strtoll(p, NULL, 10) : 0;
        if (digits == 0 || errno != 0 || *after != '\0') {
            const size_t bad = strcspn(p, "\r\n");
            rc = cli_error(CLI_EXIT_FAIL,
                           "keys '%s' line %zu: '%.*s' is not a key (a whole number from 0 to "
                           "9223372036854775807)",
                           path, n, (int)(bad < 40 ? bad : 40), p);
            break;
        }
        keys[n - 1] = x;
    }
    if (rc == CLI_EXIT_OK && ferror(f))
        rc = cli_error(CLI_EXIT_FAIL, "cannot read keys '%s': %s", path, strerror(errno));
    if (rc == CLI_EXIT_OK && n != rows)
        rc = cli_error(CLI_EXIT_FAIL, "keys '%s' has %zu lines, the base has %zu rows", path, n,
                       rows);
    free(line);
    fclose(f);
    return rc;
}

typedef struct keyed_row {
    int64_t key;
    size_t row;
} keyed_row;

static int by_key(const void *a, const void *b) {
    const keyed_row *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key ? 1 : x->row < y->row ? -1 : x->row > y->row;
}

static int check_unique(const char *path, const int64_t *keys, size_t rows) {
    keyed_row *s = malloc((rows > 0 ? rows : 1) * sizeof *s);
    if (s == NULL)
        return cli_error(CLI_EXIT_FAIL, "out of memory for %zu keys", rows);
    for (size_t i = 0; i < rows; i++)
        s[i] = (keyed_row){keys[i], i};
    qsort(s, rows, sizeof *s, by_key);
    int rc = CLI_EXIT_OK;
    for (size_t i = 1; i < rows && rc == CLI_EXIT_OK; i++)
        if (s[i].key == s[i - 1].key)
            rc =
                cli_error(CLI_EXIT_FAIL, "keys '%s': key %lld is given twice, for rows %zu and %zu",
                          path, (long long)s[i].key, s[i - 1].row, s[i].row);
    free(s);
    return rc;
}

int cli_read_keys(const char *path, size_t rows, int64_t **out) {
    *out = malloc((rows > 0 ? rows : 1) * sizeof **out);
    if (*out == NULL)
        return cli_error(CLI_EXIT_FAIL, "out of memory for %zu keys", rows);
    const size_t n = strlen(path);
    const bool npy = n >= 4 && strcasecmp(path + n - 4, ".npy") == 0;
    int rc = npy ? read_npy(path, rows, *out) : read_text(path, rows, *out);
    if (rc == CLI_EXIT_OK)
        rc = check_unique(path, *out, rows);
    if (rc != CLI_EXIT_OK) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

int cli_read_key_list(const char *path, int64_t **out, size_t *rows) {
    *out = NULL;
    *rows = 0;
    const size_t n = strlen(path);
    if (n >= 4 && strcasecmp(path + n - 4, ".npy") == 0) {
        rotor_file_info info;
        rotor_status st = rotor_file_probe(path, &info);
        if (st != ROTOR_OK)
            return cli_lib_error(st, "cannot read keys");
        *rows = info.rows;
        return cli_read_keys(path, *rows, out);
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return cli_error(CLI_EXIT_FAIL, "cannot open keys '%s': %s", path, strerror(errno));
    /* Lines counted first: the reader then checks each against the count. */
    size_t lines = 0, len = 0;
    int ch, last = '\n';
    while ((ch = getc(f)) != EOF) {
        lines += ch == '\n';
        last = ch;
        len++;
    }
    const bool failed = ferror(f) != 0;
    fclose(f);
    if (failed)
        return cli_error(CLI_EXIT_FAIL, "cannot read keys '%s': %s", path, strerror(errno));
    *rows = lines + (len > 0 && last != '\n');
    return cli_read_keys(path, *rows, out);
}
