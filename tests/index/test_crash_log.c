/*
 * Crash safety of the update log: a child process opens an index file
 * writable and changes it without pause (adds of a few to a few hundred
 * rows, removes, updates, labels), syncing now and then and telling the
 * parent through a pipe how many of its changes each sync made durable;
 * the parent kills it with SIGKILL at a random moment, then opens the
 * file and checks that it opens, verifies, and holds exactly the first j
 * changes of the child for some j at least the number synced: never
 * fewer, never a part of one. Then the next child goes on from there.
 *
 * The child's changes are a function of a seed and of the facts it starts
 * from (which keys are live, the version of each one's vector, its
 * label), so the parent, which keeps the same facts, computes the
 * expected state after any j changes by making the same j changes to its
 * own copy. j is read from the file: every change is one record.
 * Some rounds sync every change (sync_each_change); every few rounds the
 * parent folds the log into the sections (a save over the file), so the
 * log's replay stays short and the fold is crash-tested too.
 *
 *   test_crash_log [kills [kind]]   kind: flat (default) or vamana
 * ROTOR_TEST_SEED replays a run.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rotor.h"

enum {
    D = 16,
    BASE = 2000,
    KMAX = 20000,   /* the key universe */
    MAXN = 4000,    /* rows of the largest add: 256 KiB, long enough to be killed inside */
    FOLD_EVERY = 4, /* rounds between saves over the file */
};

typedef struct model {
    uint8_t live[KMAX];
    uint32_t version[KMAX];
    int32_t label[KMAX]; /* -1: none */
    int64_t keys[KMAX];  /* the live keys, in any order */
    size_t at[KMAX];     /* each live key's place in keys */
    size_t nlive;
} model;

typedef enum op_kind { OP_ADD, OP_REMOVE, OP_UPDATE, OP_LABELS } op_kind;

typedef struct change {
    op_kind kind;
    size_t n;
    int64_t keys[MAXN];
    int32_t labels[MAXN];
} change;

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void vector_of(int64_t key, uint32_t version, float *out) {
    uint64_t s = (uint64_t)key * 1000003u + version;
    for (int j = 0; j < D; j++)
        out[j] = (float)(mix(&s) >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

static void set_live(model *m, int64_t k, bool live) {
    if (live && !m->live[k]) {
        m->at[k] = m->nlive;
        m->keys[m->nlive++] = k;
    } else if (!live && m->live[k]) {
        const int64_t last = m->keys[--m->nlive];
        m->keys[m->at[k]] = last;
        m->at[last] = m->at[k];
    }
    m->live[k] = live;
}

/* Whether adds of thousands of rows are made (a graph inserts them too
 * slowly for a round to get past them). */
static bool bulk = true;

/* The next change, from the rng and the facts; distinct keys. */
static void next_op(uint64_t *rng, const model *m, change *o) {
    static uint8_t taken[KMAX];
    const uint64_t r = mix(rng) % 100;
    if (m->nlive < 200 || r < 40)
        o->kind = OP_ADD;
    else if (r < 65)
        o->kind = OP_REMOVE;
    else if (r < 85)
        o->kind = OP_UPDATE;
    else
        o->kind = OP_LABELS;
    if (o->kind == OP_ADD && KMAX - m->nlive < 2 * MAXN)
        o->kind = OP_REMOVE;
    size_t want;
    if (o->kind == OP_ADD)
        want = bulk && mix(rng) % 3 == 0 ? 1000 + mix(rng) % (MAXN - 1000) : 1 + mix(rng) % 40;
    else
        want = 1 + mix(rng) % (o->kind == OP_REMOVE ? 24 : 8);
    o->n = 0;
    while (o->n < want) {
        int64_t k;
        if (o->kind == OP_ADD) {
            k = (int64_t)(mix(rng) % KMAX);
            if (m->live[k])
                continue;
        } else {
            k = m->keys[mix(rng) % m->nlive];
        }
        if (taken[k])
            continue;
        taken[k] = 1;
        o->keys[o->n] = k;
        o->labels[o->n] = mix(rng) % 3 == 0 ? -1 : (int32_t)(mix(rng) % 10);
        o->n++;
    }
    for (size_t i = 0; i < o->n; i++)
        taken[o->keys[i]] = 0;
}

static void apply_model(model *m, const change *o) {
    for (size_t i = 0; i < o->n; i++) {
        const int64_t k = o->keys[i];
        switch (o->kind) {
        case OP_ADD:
        case OP_UPDATE:
            set_live(m, k, true);
            m->version[k]++;
            m->label[k] = -1; /* new vectors carry no labels */
            break;
        case OP_REMOVE: set_live(m, k, false); break;
        case OP_LABELS: m->label[k] = o->labels[i]; break;
        }
    }
}

/* Makes the change on the index (before apply_model: new versions are the
 * model's + 1). */
static rotor_status apply_index(rotor_index *ix, const model *m, const change *o) {
    static float rows[MAXN * D];
    static uint64_t off[MAXN + 1];
    static uint32_t val[MAXN];
    switch (o->kind) {
    case OP_ADD:
    case OP_UPDATE: {
        for (size_t i = 0; i < o->n; i++)
            vector_of(o->keys[i], m->version[o->keys[i]] + 1, rows + i * D);
        rotor_matrix x = {rows, o->n, D, ROTOR_ELEM_F32};
        return o->kind == OP_ADD ? rotor_index_add_with_keys(ix, &x, o->keys)
                                 : rotor_index_update(ix, &x, o->keys);
    }
    case OP_REMOVE: return rotor_index_remove(ix, o->keys, o->n);
    case OP_LABELS: {
        size_t v = 0;
        off[0] = 0;
        for (size_t i = 0; i < o->n; i++) {
            if (o->labels[i] >= 0)
                val[v++] = (uint32_t)o->labels[i];
            off[i + 1] = v;
        }
        rotor_labels l = {off, val, o->n};
        return rotor_index_set_labels(ix, o->keys, &l);
    }
    }
    return ROTOR_ERR_INVALID_ARGUMENT;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The child: changes the file until it is killed. Acks go to fd as the
 * number of changes made so far, each after a sync that covered them. */
static void child(const char *path, uint64_t seed, model *m, int fd, bool sync_each) {
    rotor_open_params op = rotor_open_params_default();
    op.writable = 1;
    op.sync_each_change = sync_each;
    rotor_index *ix = NULL;
    if (rotor_index_open(path, &op, &ix) != ROTOR_OK) {
        fprintf(stderr, "child: open: %s\n", rotor_last_error());
        _exit(3);
    }
    static change o;
    uint64_t rng = seed, made = 0;
    for (;;) {
        next_op(&rng, m, &o);
        if (apply_index(ix, m, &o) != ROTOR_OK) {
            fprintf(stderr, "child: change %llu: %s\n", (unsigned long long)made,
                    rotor_last_error());
            _exit(3);
        }
        apply_model(m, &o);
        made++;
        bool acked = sync_each;
        if (!acked && mix(&rng) % 4 == 0) {
            if (rotor_index_sync(ix) != ROTOR_OK) {
                fprintf(stderr, "child: sync: %s\n", rotor_last_error());
                _exit(3);
            }
            acked = true;
        }
        if (acked && write(fd, &made, sizeof made) != (ssize_t)sizeof made)
            _exit(4);
    }
}

static int fail(const char *what, int round) {
    fprintf(stderr, "test_crash_log: round %d: %s (%s)\n", round, what, rotor_last_error());
    return 1;
}

/* Whether ix holds exactly the facts of m. */
static bool holds(const rotor_index *ix, const model *m, int round) {
    rotor_index_stats s;
    if (rotor_index_stats_get(ix, &s) != ROTOR_OK || s.count != m->nlive) {
        fprintf(stderr, "round %d: %zu vectors, expected %zu\n", round, s.count, m->nlive);
        return false;
    }
    for (int64_t k = 0; k < KMAX; k++) {
        int found = 0;
        if (rotor_index_contains(ix, k, &found) != ROTOR_OK || found != m->live[k]) {
            fprintf(stderr, "round %d: key %lld is%s in the index\n", round, (long long)k,
                    found ? "" : " not");
            return false;
        }
        if (!found)
            continue;
        float got[D], want[D];
        vector_of(k, m->version[k], want);
        if (rotor_index_get(ix, k, got) != ROTOR_OK || memcmp(got, want, sizeof got) != 0) {
            fprintf(stderr, "round %d: key %lld holds another vector\n", round, (long long)k);
            return false;
        }
        uint32_t lab[4];
        size_t n = 0;
        if (rotor_index_get_labels(ix, k, lab, 4, &n) != ROTOR_OK ||
            n != (m->label[k] >= 0 ? 1u : 0u) || (n == 1 && lab[0] != (uint32_t)m->label[k])) {
            fprintf(stderr, "round %d: key %lld carries other labels\n", round, (long long)k);
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv) {
    const int kills = argc > 1 ? atoi(argv[1]) : 200;
    const bool vamana = argc > 2 && strcmp(argv[2], "vamana") == 0;
    bulk = !vamana;
    uint64_t seed = (uint64_t)time(NULL);
    const char *env = getenv("ROTOR_TEST_SEED");
    if (env != NULL)
        seed = strtoull(env, NULL, 10);
    printf("# random seed %llu (set ROTOR_TEST_SEED to replay)\n", (unsigned long long)seed);
    uint64_t rng = seed;

    const char *tmp = getenv("TMPDIR");
    char dir[200];
    snprintf(dir, sizeof dir, "%s/rotor-crash-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL)
        return fail("mkdtemp", -1);
    char path[256 + 16];
    snprintf(path, sizeof path, "%s/crash.rotor", dir);

    static model m;
    for (int64_t k = 0; k < KMAX; k++)
        m.label[k] = -1;
    float *base = malloc(BASE * D * sizeof *base);
    for (int64_t k = 0; k < BASE; k++) {
        vector_of(k, 0, base + k * D);
        set_live(&m, k, true);
    }
    rotor_params p = rotor_params_default();
    p.kind = vamana ? ROTOR_INDEX_VAMANA : ROTOR_INDEX_FLAT;
    p.quant = vamana ? "sq8" : NULL;
    p.graph_degree = 16;
    p.build_list = 32;
    p.calibrate = 0;
    p.threads = 1;
    rotor_matrix x = {base, BASE, D, ROTOR_ELEM_F32};
    rotor_index *ix = NULL;
    if (rotor_index_build(&p, &x, &ix) != ROTOR_OK || rotor_index_save(ix, path) != ROTOR_OK)
        return fail("build", -1);
    rotor_index_close(ix);
    free(base);

    const double t0 = now();
    size_t records0 = 0, torn = 0, beyond = 0, folds = 0, found = 0, synced = 0;
    static model scratch;
    static change o;
    for (int round = 0; round < kills; round++) {
        int pipefd[2];
        if (pipe(pipefd) != 0)
            return fail("pipe", round);
        const uint64_t child_seed = mix(&rng);
        const bool sync_each = round % 5 == 4;
        fflush(stdout);
        const pid_t pid = fork();
        if (pid < 0)
            return fail("fork", round);
        if (pid == 0) {
            close(pipefd[0]);
            child(path, child_seed, &m, pipefd[1], sync_each);
        }
        close(pipefd[1]);
        /* Long enough for the child to open the file and change it for a
         * while, short enough that most kills land in its changes (a
         * graph's inserts are slower). */
        const long us =
            vamana ? 5000 + (long)(mix(&rng) % 60000) : 2000 + (long)(mix(&rng) % 30000);
        struct timespec ts = {0, us * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
            fprintf(stderr, "round %d: the child ended by itself (status %d)\n", round, status);
            return 1;
        }
        uint64_t acked = 0, got;
        while (read(pipefd[0], &got, sizeof got) == (ssize_t)sizeof got)
            acked = got;
        close(pipefd[0]);

        if (rotor_index_verify(path) != ROTOR_OK)
            return fail("verify", round);
        rotor_open_params op = rotor_open_params_default();
        if (rotor_index_open(path, &op, &ix) != ROTOR_OK)
            return fail("open", round);
        rotor_index_stats s;
        rotor_index_stats_get(ix, &s);
        if (s.log_records < records0 || s.log_skipped != 0) {
            fprintf(stderr, "round %d: %zu records (%zu skipped), %zu before\n", round,
                    s.log_records, s.log_skipped, records0);
            return 1;
        }
        const uint64_t held = s.log_records - records0;
        if (held < acked) {
            fprintf(stderr, "round %d: the file holds %llu changes, %llu were synced\n", round,
                    (unsigned long long)held, (unsigned long long)acked);
            return 1;
        }
        /* The parent's copy of the facts, taken through the same changes. */
        scratch = m;
        uint64_t crng = child_seed;
        for (uint64_t j = 0; j < held; j++) {
            next_op(&crng, &scratch, &o);
            apply_model(&scratch, &o);
            if (!sync_each)
                (void)mix(&crng); /* the child's draw for syncing */
        }
        if (!holds(ix, &scratch, round)) {
            fprintf(stderr, "round %d: after %llu changes (%llu synced)\n", round,
                    (unsigned long long)held, (unsigned long long)acked);
            return 1;
        }
        m = scratch;
        torn += s.log_tail_bytes > 0;
        beyond += held > acked;
        found += held;
        synced += acked;
        records0 = s.log_records;
        rotor_index_close(ix);
        if (round % FOLD_EVERY == FOLD_EVERY - 1) {
            op.writable = 1;
            if (rotor_index_open(path, &op, &ix) != ROTOR_OK ||
                rotor_index_save(ix, path) != ROTOR_OK)
                return fail("save over the file", round);
            rotor_index_close(ix);
            records0 = 0;
            folds++;
        }
    }
    printf("%d kills in %.1f s (%s): %zu changes found in the file, %zu of them synced; "
           "%zu kills left an unfinished record, %zu files held changes past the last sync; "
           "%zu saves folded the log\n",
           kills, now() - t0, vamana ? "vamana" : "flat", found, synced, torn, beyond, folds);
    unlink(path);
    rmdir(dir);
    return 0;
}
