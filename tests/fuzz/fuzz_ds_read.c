/*
 * Fuzz target for the data set readers. libFuzzer hands over arbitrary
 * bytes; they are written to a file under each name the readers recognise
 * (every extension, and an extensionless MNIST-style name that is sniffed
 * for the IDX magic) and read back through every entry point: probe, whole
 * reads with and without conversion, and the streaming reader.
 *
 * Besides "no crash, no leak, no out-of-bounds access" (the sanitizers'
 * job), the target checks the readers' promises and aborts when one breaks:
 *   - a failure always leaves a sentence that names the file;
 *   - a successful read agrees with the probe on rows, columns and type;
 *   - streaming the file gives the same bytes as reading it whole.
 * One scratch directory per process is created on first use and removed at
 * exit, so parallel fuzzing jobs do not trample each other's files.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rotor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
    "in.fvecs", "in.ivecs", "in.bvecs", "in.fbin",       "in.u8bin",
    "in.i8bin", "in.ibin",  "in.npy",   "in-idx3-ubyte",
};
#define NAME_COUNT (sizeof names / sizeof names[0])

static char dir[256];
static char paths[NAME_COUNT][320];

static void cleanup(void) {
    for (size_t i = 0; i < NAME_COUNT; i++)
        unlink(paths[i]);
    rmdir(dir);
}

static void setup(void) {
    /* Memory-backed if possible: rewriting a file thousands of times a second
     * on ext4 would wait for the disk. */
    const char *base = getenv("TMPDIR");
    if (base == NULL || *base == '\0')
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/rotor-fuzz-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        abort();
    }
    for (size_t i = 0; i < NAME_COUNT; i++)
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, names[i]);
    atexit(cleanup);
}

static void write_input(const char *path, const uint8_t *data, size_t size) {
    /* Overwrite, then cut to length: O_TRUNC makes ext4 flush on close. */
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    size_t done = 0;
    while (done < size) {
        ssize_t k = write(fd, data + done, size - done);
        if (k <= 0) {
            perror(path);
            abort();
        }
        done += (size_t)k;
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        perror(path);
        abort();
    }
    close(fd);
}

static void require(int cond, const char *path, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_ds_read: %s: %s (last error: %s)\n", path, what, rotor_last_error());
        abort();
    }
}

static void require_sentence(rotor_status st, const char *path) {
    if (st == ROTOR_OK)
        return;
    require(strstr(rotor_last_error(), path) != NULL, path, "error does not name the file");
}

/* Streams the file two rows at a time and compares with the whole read. */
static void check_stream(const char *path, const rotor_matrix *whole) {
    rotor_reader *r = NULL;
    rotor_status st = rotor_reader_open(path, &r);
    require(st == ROTOR_OK, path, "read succeeded but the reader does not open");
    const rotor_file_info *info = rotor_reader_info(r);
    size_t row_bytes = info->cols * rotor_elem_size(info->type);
    unsigned char *buf = malloc(2 * row_bytes);
    require(buf != NULL, path, "out of memory in the fuzz target");
    size_t done = 0, got = 0;
    for (;;) {
        st = rotor_reader_read(r, buf, 2, &got);
        require(st == ROTOR_OK, path, "read succeeded but streaming fails");
        if (got == 0)
            break;
        require(got <= 2 && done + got <= whole->rows, path, "streaming returns too many rows");
        require(memcmp(buf, (const unsigned char *)whole->data + done * row_bytes,
                       got * row_bytes) == 0,
                path, "streamed rows differ from the whole read");
        done += got;
    }
    require(done == whole->rows, path, "streaming returns too few rows");
    free(buf);
    rotor_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (dir[0] == '\0')
        setup();
    for (size_t i = 0; i < NAME_COUNT; i++) {
        const char *path = paths[i];
        write_input(path, data, size);

        rotor_file_info info;
        rotor_status pst = rotor_file_probe(path, &info);
        require_sentence(pst, path);

        rotor_matrix m;
        rotor_status st = rotor_matrix_read(path, -1, 0, &m);
        require_sentence(st, path);
        if (st == ROTOR_OK) {
            require(pst == ROTOR_OK, path, "read succeeds where the probe fails");
            require(m.rows == info.rows && m.cols == info.cols && m.type == info.type, path,
                    "read and probe disagree");
            require(m.rows == 0 || m.data != NULL, path, "rows without data");
            check_stream(path, &m);
        } else {
            require(m.data == NULL && m.rows == 0, path, "failed read left a matrix");
        }
        rotor_matrix_free(&m);

        st = rotor_matrix_read(path, ROTOR_ELEM_F32, 3, &m);
        require_sentence(st, path);
        rotor_matrix_free(&m);
    }
    return 0;
}
