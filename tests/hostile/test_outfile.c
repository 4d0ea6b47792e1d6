/*
 * How a file is replaced (storage/outfile.c): through an unnamed file that
 * leaves nothing behind, or, where the file system lacks O_TMPFILE, through
 * a named temporary that its writer keeps locked and that the next writer
 * of the same target removes once its owner is gone: killed (lock free,
 * untouched for seconds), but not while the owner lives, not when it was
 * just created, and never another target's.
 */
#include "support/support.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/storage.h"

static char *g_dir;

static int setup(void **state) {
    (void)state;
    g_dir = ts_tmpdir_create();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ts_tmpdir_remove(g_dir);
    g_dir = NULL;
    return 0;
}

/* Entries of g_dir other than . and .., sorted names joined by spaces. */
static void listing(char *out, size_t cap) {
    struct dirent **names;
    int n = scandir(g_dir, &names, NULL, alphasort);
    assert_true(n >= 0);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0) {
            strncat(out, names[i]->d_name, cap - strlen(out) - 2);
            strcat(out, " ");
        }
        free(names[i]);
    }
    free(names);
}

static void write_through(ds_out *o, const char *text) {
    size_t n = strlen(text);
    assert_int_equal(write(ds_out_fd(o), text, n), (ssize_t)n);
}

static void assert_contents(const char *path, const char *text) {
    size_t n;
    char *got = ts_read_file(path, &n);
    assert_int_equal(n, strlen(text));
    assert_memory_equal(got, text, n);
    free(got);
}

/* Moves a file's modification time `seconds` into the past. */
static void age(const char *name, int seconds) {
    char *path = ts_path(g_dir, name);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    struct timespec t[2] = {sb.st_atim, sb.st_mtim};
    t[0].tv_sec -= seconds;
    t[1].tv_sec -= seconds;
    assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
    free(path);
}

static void test_unnamed_file_shows_no_name_until_commit(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    char *target = ts_path(g_dir, "a.rotor");
    ts_write_file(target, "old", 3);
    ds_out *o;
    assert_int_equal(ds_out_open(&a, target, &o), ROTOR_OK);
    if (ds_out_temp_name(o)[0] != '\0') {
        print_message("this file system has no O_TMPFILE (the writer made '%s'): skipped\n",
                      ds_out_temp_name(o));
        ds_out_abort(o);
        free(target);
        skip();
    }
    write_through(o, "new contents");
    char names[4096];
    listing(names, sizeof names);
    assert_string_equal(names, "a.rotor ");
    assert_contents(target, "old");
    assert_int_equal(ds_out_commit(o), ROTOR_OK);
    listing(names, sizeof names);
    assert_string_equal(names, "a.rotor ");
    assert_contents(target, "new contents");
    free(target);
}

static void test_named_temporary_is_locked_and_gone_after_commit_or_abort(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    char *target = ts_path(g_dir, "b.ivecs");
    ds_out *o;
    assert_int_equal(ds_out_open_named(&a, target, &o), ROTOR_OK);
    const char *tmp = ds_out_temp_name(o);
    assert_true(strncmp(tmp, ".rotor-tmp-", 11) == 0);
    char *tmp_path = ts_path(g_dir, tmp);
    int fd = open(tmp_path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), -1);
    assert_int_equal(errno, EWOULDBLOCK);
    close(fd);
    write_through(o, "ids");
    assert_int_equal(ds_out_commit(o), ROTOR_OK);
    char names[4096];
    listing(names, sizeof names);
    assert_string_equal(names, "b.ivecs ");
    assert_contents(target, "ids");

    assert_int_equal(ds_out_open_named(&a, target, &o), ROTOR_OK);
    write_through(o, "never");
    ds_out_abort(o);
    listing(names, sizeof names);
    assert_string_equal(names, "b.ivecs ");
    assert_contents(target, "ids");
    free(tmp_path);
    free(target);
}

/* A child opens a named temporary and dies by SIGKILL mid-write; returns
 * the name it left (the temporary that is not `known`). */
static void killed_writer(const char *target, const char *known, char *left, size_t cap) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rotor_allocator a = cm_allocator_default();
        ds_out *o;
        if (ds_out_open_named(&a, target, &o) != ROTOR_OK)
            _exit(1);
        (void)write(ds_out_fd(o), "half", 4);
        raise(SIGKILL);
        _exit(2);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    left[0] = '\0';
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, ".rotor-tmp-", 11) == 0 && strcmp(e->d_name, known) != 0)
            snprintf(left, cap, "%s", e->d_name);
    closedir(d);
    assert_true(left[0] != '\0');
}

static void test_next_writer_removes_what_a_killed_writer_left(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    char *target = ts_path(g_dir, "c.rotor");
    char *other = ts_path(g_dir, "d.rotor");
    char left[256], other_left[256], names[4096];
    killed_writer(other, "", other_left, sizeof other_left);
    killed_writer(target, other_left, left, sizeof left);
    age(left, 60);
    age(other_left, 60);

    ds_out *o;
    assert_int_equal(ds_out_open(&a, target, &o), ROTOR_OK);
    write_through(o, "whole");
    assert_int_equal(ds_out_commit(o), ROTOR_OK);
    listing(names, sizeof names);
    /* c.rotor's orphan is gone; d.rotor's is another target's business. */
    char want[600];
    snprintf(want, sizeof want, "%s c.rotor ", other_left);
    assert_string_equal(names, want);
    assert_contents(target, "whole");
    free(target);
    free(other);
}

static void test_live_or_fresh_temporaries_are_kept(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    char *target = ts_path(g_dir, "e.fvecs");
    ds_out *alive;
    assert_int_equal(ds_out_open_named(&a, target, &alive), ROTOR_OK);
    char alive_name[256];
    snprintf(alive_name, sizeof alive_name, "%s", ds_out_temp_name(alive));
    age(alive_name, 60); /* old, but its owner holds the lock */

    /* Unlocked but just created: its owner may be about to lock it. */
    char fresh[256];
    snprintf(fresh, sizeof fresh, "%s", alive_name);
    memcpy(fresh + strlen(fresh) - 8, "Zfresh00", 8);
    char *fresh_path = ts_path(g_dir, fresh);
    ts_write_file(fresh_path, "x", 1);

    ds_out *o;
    assert_int_equal(ds_out_open(&a, target, &o), ROTOR_OK);
    ds_out_abort(o);
    struct stat sb;
    char *alive_path = ts_path(g_dir, alive_name);
    assert_int_equal(stat(alive_path, &sb), 0);
    assert_int_equal(stat(fresh_path, &sb), 0);

    /* Once it is old too, it is an orphan. */
    age(fresh, 60);
    assert_int_equal(ds_out_open(&a, target, &o), ROTOR_OK);
    ds_out_abort(o);
    assert_int_equal(stat(fresh_path, &sb), -1);
    assert_int_equal(stat(alive_path, &sb), 0);
    ds_out_abort(alive);
    assert_int_equal(stat(alive_path, &sb), -1);
    free(alive_path);
    free(fresh_path);
    free(target);
}

static void test_long_names_and_links(void **state) {
    (void)state;
    rotor_allocator a = cm_allocator_default();
    char name[251];
    memset(name, 'n', 244);
    memcpy(name + 244, ".rotor", 7);
    char *target = ts_path(g_dir, name);
    ds_out *o;
    assert_int_equal(ds_out_open_named(&a, target, &o), ROTOR_OK);
    write_through(o, "long");
    assert_int_equal(ds_out_commit(o), ROTOR_OK);
    assert_contents(target, "long");

    /* Through a symbolic link: the link stays, the file it names changes. */
    char *link = ts_path(g_dir, "link.rotor");
    assert_int_equal(symlink(name, link), 0);
    assert_int_equal(ds_out_open(&a, link, &o), ROTOR_OK);
    write_through(o, "via link");
    assert_int_equal(ds_out_commit(o), ROTOR_OK);
    struct stat sb;
    assert_int_equal(lstat(link, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    assert_contents(target, "via link");

    /* A link to nothing and a directory are refused, saying so. */
    char *dangling = ts_path(g_dir, "dangling.rotor");
    assert_int_equal(symlink("nowhere", dangling), 0);
    assert_int_equal(ds_out_open(&a, dangling, &o), ROTOR_ERR_IO);
    assert_non_null(strstr(rotor_last_error(), "symbolic link to a missing file"));
    assert_int_equal(ds_out_open(&a, g_dir, &o), ROTOR_ERR_IO);
    assert_non_null(strstr(rotor_last_error(), "a directory"));
    free(dangling);
    free(link);
    free(target);
}

/* The library refuses to index a file into itself, under any of its names. */
static void test_build_file_refuses_its_input_as_output(void **state) {
    (void)state;
    float x[40 * 4];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)(i % 13);
    rotor_matrix m = {x, 40, 4, ROTOR_ELEM_F32};
    char *base = ts_path(g_dir, "base.fvecs");
    char *hard = ts_path(g_dir, "hard.fvecs");
    assert_int_equal(rotor_matrix_write(base, &m), ROTOR_OK);
    assert_int_equal(link(base, hard), 0);
    size_t n0;
    char *before = ts_read_file(base, &n0);
    rotor_params p = rotor_params_default();
    const char *outs[] = {base, hard};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(rotor_index_build_file(&p, base, outs[i]), ROTOR_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(rotor_last_error(), "is the input file"));
    }
    size_t n1;
    char *after = ts_read_file(base, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
    free(hard);
    free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unnamed_file_shows_no_name_until_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_named_temporary_is_locked_and_gone_after_commit_or_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_writer_removes_what_a_killed_writer_left, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_live_or_fresh_temporaries_are_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_names_and_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_file_refuses_its_input_as_output, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
