#include "support/support.h"

#include <dirent.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ts_rng_init(ts_rng *r, uint64_t default_seed) {
    uint64_t seed = default_seed;
    const char *env = getenv("ROTOR_TEST_SEED");
    if (env != NULL && *env != '\0')
        seed = strtoull(env, NULL, 0);
    fprintf(stderr, "# random seed %llu (set ROTOR_TEST_SEED to replay)\n",
            (unsigned long long)seed);
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ts_rng_next(ts_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ts_rng_uniform(ts_rng *r) { return (double)(ts_rng_next(r) >> 11) * 0x1.0p-53; }

double ts_rng_normal(ts_rng *r) {
    double u1 = ts_rng_uniform(r), u2 = ts_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void ts_fill_uniform(ts_rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * (float)ts_rng_uniform(r);
}

void ts_fill_clustered(ts_rng *r, float *x, size_t n, size_t dim, size_t clusters, float spread) {
    float *centres = malloc(clusters * dim * sizeof *centres);
    assert_non_null(centres);
    for (size_t i = 0; i < clusters * dim; i++)
        centres[i] = spread * (float)ts_rng_normal(r);
    for (size_t i = 0; i < n; i++) {
        const float *c = centres + (ts_rng_next(r) % clusters) * dim;
        for (size_t j = 0; j < dim; j++)
            x[i * dim + j] = c[j] + (float)ts_rng_normal(r);
    }
    free(centres);
}

char *ts_tmpdir_create(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/rotor-test-XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

void ts_tmpdir_remove(char *dir) {
    if (dir == NULL)
        return;
    DIR *dp = opendir(dir);
    if (dp != NULL) {
        struct dirent *e;
        while ((e = readdir(dp)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *p = ts_path(dir, e->d_name);
            unlink(p);
            free(p);
        }
        closedir(dp);
    }
    rmdir(dir);
    free(dir);
}

char *ts_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void ts_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n > 0)
        assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

void *ts_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    assert_true(len >= 0);
    rewind(f);
    void *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static void *counting_alloc(void *opaque, size_t size, size_t align) {
    ts_counting_alloc *s = opaque;
    long call = atomic_fetch_add(&s->calls, 1) + 1;
    if (s->fail_at != 0 && call == s->fail_at)
        return NULL;
    size_t rounded = (size + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded == 0 ? align : rounded);
    if (p != NULL)
        atomic_fetch_add(&s->live, 1);
    return p;
}

static void counting_free(void *opaque, void *p) {
    ts_counting_alloc *s = opaque;
    if (p != NULL)
        atomic_fetch_sub(&s->live, 1);
    free(p);
}

rotor_allocator ts_counting_allocator(ts_counting_alloc *state) {
    rotor_allocator a = {counting_alloc, counting_free, state};
    return a;
}

typedef struct {
    double d;
    int64_t id;
} scored;

static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->d < y->d)
        return -1;
    if (x->d > y->d)
        return 1;
    return (x->id > y->id) - (x->id < y->id);
}

void ts_brute_force(const float *base, size_t n, const float *queries, size_t nq, size_t dim,
                    rotor_metric metric, size_t k, int64_t *ids, double *dists) {
    scored *s = malloc(n * sizeof *s);
    assert_non_null(s);
    for (size_t qi = 0; qi < nq; qi++) {
        const float *q = queries + qi * dim;
        double qn = 0;
        for (size_t j = 0; j < dim; j++)
            qn += (double)q[j] * q[j];
        for (size_t i = 0; i < n; i++) {
            const float *x = base + i * dim;
            double acc = 0, xn = 0;
            for (size_t j = 0; j < dim; j++) {
                if (metric == ROTOR_METRIC_L2) {
                    double t = (double)q[j] - x[j];
                    acc += t * t;
                } else {
                    acc += (double)q[j] * x[j];
                    xn += (double)x[j] * x[j];
                }
            }
            if (metric == ROTOR_METRIC_IP)
                acc = -acc;
            else if (metric == ROTOR_METRIC_COSINE)
                acc = (qn > 0 && xn > 0) ? 1.0 - acc / sqrt(qn * xn) : 1.0;
            s[i].d = acc;
            s[i].id = (int64_t)i;
        }
        qsort(s, n, sizeof *s, cmp_scored);
        for (size_t j = 0; j < k; j++) {
            ids[qi * k + j] = j < n ? s[j].id : -1;
            if (dists)
                dists[qi * k + j] = j < n ? s[j].d : INFINITY;
        }
    }
    free(s);
}

void ts_check_error(rotor_status st, rotor_status want, const char *path,
                    const char *const *words) {
    const char *e = rotor_last_error();
    if (st != want)
        fail_msg("status %d (%s), wanted %d; error: %s", (int)st, rotor_strerror(st), (int)want, e);
    if (path != NULL && strstr(e, path) == NULL)
        fail_msg("error does not name '%s': %s", path, e);
    for (size_t i = 0; words[i] != NULL; i++)
        if (strstr(e, words[i]) == NULL)
            fail_msg("error lacks '%s': %s", words[i], e);
    size_t len = strlen(e);
    assert_true(len > 0);
    assert_true(e[len - 1] != '.');
    assert_false(e[0] >= 'A' && e[0] <= 'Z');
}
