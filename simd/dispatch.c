/*
 * The kernel table is chosen once per process, on the first simd_ops_get()
 * or simd_ops_for() from any thread (pthread_once), and never changes: a
 * search caches the pointers it fetched, so switching tables later would
 * leave two threads of one search on different summation orders.
 *
 * ROTOR_SIMD=scalar|avx2|avx512 (any case) lowers the level for tests and
 * benchmarks. It never raises it: asking for a level the hardware lacks
 * would crash with SIGILL, so such a request, like an unknown word, leaves
 * the hardware level in place. The library never prints, so a bad value is
 * not reported; rotor_simd_level() shows what was chosen.
 */
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>

#include "rotor.h"
#include "simd/simd.h"

static pthread_once_t choose_once = PTHREAD_ONCE_INIT;
static simd_level hw_level = SIMD_SCALAR;
static const simd_ops *chosen = &simd_ops_scalar;

static const simd_ops *table_of(simd_level level) {
    switch (level) {
    case SIMD_SCALAR: return &simd_ops_scalar;
    case SIMD_AVX2: return &simd_ops_avx2;
    case SIMD_AVX512: return &simd_ops_avx512;
    }
    return NULL;
}

/* True and *out set when `s` names a level. */
static int parse_level(const char *s, simd_level *out) {
    static const simd_level levels[] = {SIMD_SCALAR, SIMD_AVX2, SIMD_AVX512};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (strcasecmp(s, simd_level_name(levels[i])) == 0) {
            *out = levels[i];
            return 1;
        }
    }
    return 0;
}

static void choose(void) {
    hw_level = simd_level_hw();
    simd_level level = hw_level;
    const char *env = getenv("ROTOR_SIMD");
    simd_level wanted;
    if (env != NULL && parse_level(env, &wanted) && wanted < level)
        level = wanted;
    chosen = table_of(level);
}

const simd_ops *simd_ops_get(void) {
    pthread_once(&choose_once, choose);
    return chosen;
}

const simd_ops *simd_ops_for(simd_level level) {
    pthread_once(&choose_once, choose);
    if ((unsigned)level > (unsigned)hw_level)
        return NULL;
    return table_of(level);
}

const char *simd_level_name(simd_level level) {
    switch (level) {
    case SIMD_SCALAR: return "scalar";
    case SIMD_AVX2: return "avx2";
    case SIMD_AVX512: return "avx512";
    }
    return "unknown";
}

const char *rotor_simd_level(void) { return simd_level_name(simd_ops_get()->level); }
