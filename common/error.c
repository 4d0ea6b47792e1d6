/*
 * The error channel: every public call returns a rotor_status, and the
 * sentence that explains it lives in a thread-local buffer. A per-index
 * message would race, because many threads search one index at once; a
 * static string could not carry the numbers ("query has 768 dimensions,
 * index has 384").
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

#define ERROR_TEXT_MAX 512

static _Thread_local char error_text[ERROR_TEXT_MAX];

rotor_status cm_fail(rotor_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_text, sizeof error_text, fmt, ap);
    va_end(ap);
    return status;
}

rotor_status cm_fail_prefix(rotor_status status, const char *prefix) {
    char detail[ERROR_TEXT_MAX];
    memcpy(detail, error_text, sizeof detail);
    const char *why = detail[0] != '\0' ? detail : rotor_strerror(status);
    /* An over-long sentence keeps its start, which names the fault. */
    size_t pos = 0;
    const char *parts[] = {prefix, ": ", why};
    for (size_t i = 0; i < 3; i++)
        for (const char *c = parts[i]; *c != '\0' && pos + 1 < sizeof error_text; c++)
            error_text[pos++] = *c;
    error_text[pos] = '\0';
    return status;
}

void cm_clear_error(void) { error_text[0] = '\0'; }

const char *rotor_last_error(void) { return error_text; }

const char *rotor_strerror(rotor_status status) {
    switch (status) {
    case ROTOR_OK: return "ok";
    case ROTOR_ERR_INVALID_ARGUMENT: return "invalid argument";
    case ROTOR_ERR_DIMENSION: return "dimension mismatch";
    case ROTOR_ERR_NOT_FINITE: return "not a finite number";
    case ROTOR_ERR_EMPTY: return "no vectors";
    case ROTOR_ERR_OUT_OF_MEMORY: return "out of memory";
    case ROTOR_ERR_IO: return "input/output error";
    case ROTOR_ERR_FORMAT: return "malformed file";
    case ROTOR_ERR_CORRUPT: return "checksum mismatch";
    case ROTOR_ERR_UNSUPPORTED: return "not supported";
    case ROTOR_ERR_THREAD: return "cannot start thread";
    case ROTOR_ERR_CANCELLED: return "cancelled";
    case ROTOR_ERR_NOT_FOUND: return "key not found";
    }
    return "unknown status";
}
