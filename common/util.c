#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"

unsigned cm_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : (unsigned)n;
}

double cm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t cm_memory_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (f != NULL) {
        char line[128];
        unsigned long long kib = 0;
        bool found = false;
        while (!found && fgets(line, sizeof line, f) != NULL)
            found = sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
        fclose(f);
        if (found)
            return kib > SIZE_MAX / 1024 ? SIZE_MAX : (size_t)kib * 1024;
    }
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0)
        return 0;
    return (size_t)pages > SIZE_MAX / (size_t)page ? SIZE_MAX : (size_t)pages * (size_t)page;
}

unsigned rotor_version(void) { return ROTOR_VERSION_NUMBER; }

#define CM_STR2(x) #x
#define CM_STR(x) CM_STR2(x)
const char *rotor_version_string(void) {
    return CM_STR(ROTOR_VERSION_MAJOR) "." CM_STR(ROTOR_VERSION_MINOR) "." CM_STR(
        ROTOR_VERSION_PATCH);
}

size_t rotor_elem_size(rotor_elem_type type) {
    switch (type) {
    case ROTOR_ELEM_F32: return 4;
    case ROTOR_ELEM_U8: return 1;
    case ROTOR_ELEM_I8: return 1;
    case ROTOR_ELEM_I32: return 4;
    case ROTOR_ELEM_I64: return 8;
    }
    return 0;
}
