/*
 * Mapped files. An index opened with `load` reads its file with pread and
 * never maps it: no mapping of the file is left in the process, and a file
 * truncated under the open index (what another program must not do to a
 * mapped index, which would end the process with SIGBUS) changes nothing
 * for its searches. Opened without `load`, the same file is mapped: the
 * check below would see it, so the first assertion can fail.
 */
#include "support/support.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rotor.h"

enum { N = 500, DIM = 24, K = 5 };

/* Whether /proc/self/maps lists `path`. */
static bool mapped(const char *path) {
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[4096];
    bool found = false;
    while (fgets(line, sizeof line, f) != NULL)
        if (strstr(line, path) != NULL)
            found = true;
    fclose(f);
    return found;
}

static void test_loaded_index_is_never_mapped_and_survives_truncation(void **state) {
    (void)state;
    char *dir = ts_tmpdir_create();
    char *path = ts_path(dir, "m.rotor");
    float *x = malloc(sizeof(float) * N * DIM);
    assert_non_null(x);
    ts_rng rng;
    ts_rng_init(&rng, 9);
    ts_fill_uniform(&rng, x, N * DIM, -1, 1);
    rotor_params p = rotor_params_default();
    p.kind = ROTOR_INDEX_VAMANA;
    p.quant = "sq8";
    p.threads = 1;
    rotor_matrix m = {x, N, DIM, ROTOR_ELEM_F32};
    rotor_index *built = NULL;
    assert_int_equal(rotor_index_build(&p, &m, &built), ROTOR_OK);
    assert_int_equal(rotor_index_save(built, path), ROTOR_OK);

    rotor_index *ix = NULL;
    assert_int_equal(rotor_index_open(path, NULL, &ix), ROTOR_OK);
    assert_true(mapped(path)); /* the default open maps: the check can see it */
    rotor_index_close(ix);
    assert_false(mapped(path));

    rotor_open_params op = rotor_open_params_default();
    op.load = 1;
    assert_int_equal(rotor_index_open(path, &op, &ix), ROTOR_OK);
    assert_false(mapped(path));
    assert_int_equal(truncate(path, 0), 0);
    int64_t want[K], got[K];
    float dw[K], dg[K];
    for (int q = 0; q < 20; q++) {
        const float *query = x + (size_t)q * 17 % N * DIM;
        assert_int_equal(rotor_index_search(built, NULL, query, DIM, K, want, dw), ROTOR_OK);
        assert_int_equal(rotor_index_search(ix, NULL, query, DIM, K, got, dg), ROTOR_OK);
        assert_memory_equal(got, want, sizeof want);
    }
    rotor_index_close(ix);
    rotor_index_close(built);
    free(x);
    free(path);
    ts_tmpdir_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loaded_index_is_never_mapped_and_survives_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
