/*
 * How every file rotor writes replaces the old one: index files, data sets,
 * ground truth, the spill file of a streaming build.
 *
 * The rule for the target (rotor_path_check_output):
 *   - a missing file or a regular file may be written;
 *   - anything else that exists (directory, FIFO, socket, device) is refused:
 *     renaming over it would replace the node itself, and writing into it
 *     would block or write somewhere unexpected;
 *   - a symbolic link is followed: the link stays, the regular file it names
 *     is replaced (a link to nothing is refused, since it is unclear what the
 *     caller meant to create).
 *
 * Writing without leftovers
 *   - The new contents go into an unnamed file (O_TMPFILE) in the target's
 *     directory: a kill at any point before commit leaves nothing behind,
 *     because the kernel frees an unnamed file with its last descriptor.
 *   - At commit the file is flushed, linked under a short temporary name and
 *     renamed over the target, then the directory is flushed. A kill between
 *     link and rename (two system calls apart) is the one window in which a
 *     named temporary can outlive the writer; so is every kill where the file
 *     system has no O_TMPFILE and the temporary is named from the start.
 *   - A named temporary is ".rotor-tmp-<hash of the target's name>-<random>",
 *     short whatever the target's name (a long name plus a suffix would pass
 *     NAME_MAX), and its owner holds an flock on it for as long as it lives.
 *     A later writer of the same target removes every such file whose lock it
 *     can take and which has not changed for a few seconds (the owner takes
 *     the lock right after creating it): its owner is gone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage/storage.h"

#define OUT_TMP_PREFIX ".rotor-tmp-"
/* A named temporary untouched this long, with its lock free, is an orphan. */
#define OUT_ORPHAN_SECONDS 2

struct ds_out {
    rotor_allocator alloc;
    char *shown; /* the caller's name, quoted in sentences */
    char *dir;   /* the target's directory */
    char *base;  /* the target's name inside it */
    int dirfd, fd;
    char tmp[64];  /* the named temporary, "" while the file has no name */
    char stem[40]; /* OUT_TMP_PREFIX + hash + "-": every temporary of this target */
};

/* Resolves `path` to the file a write would replace, into buf (PATH_MAX):
 * the path itself, or what a symbolic link names. */
static rotor_status resolve_target(const char *path, char *buf) {
    CM_RETURN_IF(path == NULL || path[0] == '\0', ROTOR_ERR_INVALID_ARGUMENT,
                 "the output path is empty");
    CM_RETURN_IF(strlen(path) >= PATH_MAX, ROTOR_ERR_INVALID_ARGUMENT,
                 "the output path '%.64s...' is longer than %d bytes", path, PATH_MAX - 1);
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        CM_RETURN_IF(errno != ENOENT, ROTOR_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        snprintf(buf, PATH_MAX, "%s", path);
        return ROTOR_OK;
    }
    if (S_ISLNK(sb.st_mode)) {
        if (realpath(path, buf) == NULL)
            return cm_fail(ROTOR_ERR_IO,
                           "cannot write '%s': it is a symbolic link to a missing file (%s)", path,
                           strerror(errno));
        CM_RETURN_IF(stat(buf, &sb) != 0, ROTOR_ERR_IO, "cannot write '%s': %s", path,
                     strerror(errno));
    } else {
        snprintf(buf, PATH_MAX, "%s", path);
    }
    CM_RETURN_IF(!S_ISREG(sb.st_mode), ROTOR_ERR_IO,
                 "cannot write '%s': it exists and is %s; rotor replaces only regular files", path,
                 ds_file_kind(sb.st_mode));
    return ROTOR_OK;
}

rotor_status rotor_path_check_output(const char *path) {
    cm_clear_error();
    char buf[PATH_MAX];
    return resolve_target(path, buf);
}

bool ds_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Removes the named temporaries of this target whose owners are gone. */
static void remove_orphans(const ds_out *o) {
    int dfd = openat(o->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return;
    }
    size_t stem = strlen(o->stem);
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, o->stem, stem) != 0)
            continue;
        int fd = openat(o->dirfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat sb;
        if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && now - sb.st_mtime >= OUT_ORPHAN_SECONDS &&
            flock(fd, LOCK_EX | LOCK_NB) == 0)
            (void)unlinkat(o->dirfd, e->d_name, 0);
        close(fd); /* drops the lock */
    }
    closedir(d);
}

/* A fresh name for a temporary of this target into o->tmp. */
static void fresh_name(ds_out *o) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static atomic_ulong counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x =
        (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_nsec * 0xbf58476d1ce4e5b9ull ^
        (uint64_t)atomic_fetch_add(&counter, 1) * 0x94d049bb133111ebull ^ (uint64_t)(uintptr_t)o;
    char suffix[9];
    for (int i = 0; i < 8; i++) {
        x ^= x >> 29;
        x *= 0xbf58476d1ce4e5b9ull;
        suffix[i] = alphabet[(x >> 40) % (sizeof alphabet - 1)];
    }
    suffix[8] = '\0';
    snprintf(o->tmp, sizeof o->tmp, "%s%s", o->stem, suffix);
}

/* The file system has no O_TMPFILE: a named temporary, locked at once. */
static int create_named(ds_out *o) {
    for (int attempt = 0; attempt < 100; attempt++) {
        fresh_name(o);
        int fd = openat(o->dirfd, o->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            (void)flock(fd, LOCK_EX | LOCK_NB); /* a fresh file: nobody else holds it */
            return fd;
        }
        if (errno != EEXIST) {
            o->tmp[0] = '\0';
            return -1;
        }
    }
    o->tmp[0] = '\0';
    errno = EEXIST;
    return -1;
}

static void out_free(ds_out *o) {
    rotor_allocator a = o->alloc;
    if (o->fd >= 0)
        close(o->fd);
    if (o->tmp[0] != '\0')
        (void)unlinkat(o->dirfd, o->tmp, 0);
    if (o->dirfd >= 0)
        close(o->dirfd);
    cm_free(&a, o->shown);
    cm_free(&a, o->dir);
    cm_free(&a, o->base);
    cm_free(&a, o);
}

static char *copy_str(const rotor_allocator *a, const char *s, size_t n) {
    char *p = cm_alloc(a, n + 1, "a file name");
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static rotor_status out_open(const rotor_allocator *a, const char *path, bool named, ds_out **out) {
    *out = NULL;
    char target[PATH_MAX];
    CM_FORWARD(resolve_target(path, target));
    ds_out *o = cm_calloc(a, sizeof *o, "an output file");
    if (o == NULL)
        return ROTOR_ERR_OUT_OF_MEMORY;
    o->alloc = *a;
    o->fd = o->dirfd = -1;
    const char *slash = strrchr(target, '/');
    const char *base = slash ? slash + 1 : target;
    o->shown = copy_str(a, path, strlen(path));
    o->base = copy_str(a, base, strlen(base));
    o->dir = slash == NULL     ? copy_str(a, ".", 1)
             : slash == target ? copy_str(a, "/", 1)
                               : copy_str(a, target, (size_t)(slash - target));
    if (o->shown == NULL || o->base == NULL || o->dir == NULL) {
        out_free(o);
        return ROTOR_ERR_OUT_OF_MEMORY;
    }
    rotor_status st = ROTOR_OK;
    if (o->base[0] == '\0')
        st = cm_fail(ROTOR_ERR_IO, "cannot write '%s': it names a directory", path);
    if (st == ROTOR_OK) {
        o->dirfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (o->dirfd < 0)
            st = cm_fail(ROTOR_ERR_IO, "cannot write '%s': its directory '%s': %s", path, o->dir,
                         strerror(errno));
    }
    if (st == ROTOR_OK) {
        snprintf(o->stem, sizeof o->stem, OUT_TMP_PREFIX "%016llx-",
                 (unsigned long long)name_hash(o->base));
        remove_orphans(o);
        o->fd = named ? -1 : openat(o->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
        if (o->fd >= 0)
            (void)flock(o->fd, LOCK_EX | LOCK_NB); /* held once it has a name */
        if (named || (o->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)))
            o->fd = create_named(o);
        if (o->fd < 0)
            st = cm_fail(ROTOR_ERR_IO, "cannot create a file in '%s' to write '%s': %s", o->dir,
                         path, strerror(errno));
    }
    if (st != ROTOR_OK) {
        out_free(o);
        return st;
    }
    *out = o;
    return ROTOR_OK;
}

rotor_status ds_out_open(const rotor_allocator *a, const char *path, ds_out **out) {
    return out_open(a, path, false, out);
}

rotor_status ds_out_open_named(const rotor_allocator *a, const char *path, ds_out **out) {
    return out_open(a, path, true, out);
}

const char *ds_out_temp_name(const ds_out *o) { return o->tmp; }

int ds_out_fd(const ds_out *o) { return o->fd; }
const char *ds_out_name(const ds_out *o) { return o->shown; }

/* Gives the unnamed file a temporary name in its directory. */
static rotor_status link_unnamed(ds_out *o) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", o->fd);
    for (int attempt = 0; attempt < 100; attempt++) {
        fresh_name(o);
        int rc = linkat(AT_FDCWD, proc, o->dirfd, o->tmp, AT_SYMLINK_FOLLOW);
        if (rc != 0 && errno == ENOENT) /* no /proc: needs CAP_DAC_READ_SEARCH */
            rc = linkat(o->fd, "", o->dirfd, o->tmp, AT_EMPTY_PATH);
        if (rc == 0)
            return ROTOR_OK;
        int e = errno;
        o->tmp[0] = '\0';
        if (e != EEXIST)
            return cm_fail(ROTOR_ERR_IO, "cannot write '%s': cannot link the new file: %s",
                           o->shown, strerror(e));
    }
    return cm_fail(ROTOR_ERR_IO, "cannot write '%s': no free temporary name", o->shown);
}

/* An index opened writable (rotor_open_params.writable) holds an
 * exclusive flock on its file while it appends to it (storage/ixlog.c).
 * Renaming a new file over it then would send the writer's later changes,
 * synced or not, into a file no name reaches: the replacement is refused
 * instead. The shared lock taken here is held across the rename, so no
 * writer starts on the old file meanwhile. A file that cannot be opened
 * or locked at all (no read permission, no flock on the file system) is
 * replaced as before: nothing of rotor's can hold it. */
static rotor_status hold_target(const ds_out *o, int *held) {
    *held = -1;
    int fd = openat(o->dirfd, o->base, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return ROTOR_OK;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ROTOR_OK;
    }
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        const int e = errno;
        close(fd);
        CM_RETURN_IF(e == EWOULDBLOCK, ROTOR_ERR_IO,
                     "cannot replace '%s': an index opened writable is appending to it (close "
                     "that index, or save it from that index)",
                     o->shown);
        return ROTOR_OK;
    }
    *held = fd;
    return ROTOR_OK;
}

static rotor_status commit(ds_out *o, bool check_target) {
    rotor_status st = ROTOR_OK;
    int held = -1;
    if (fsync(o->fd) != 0)
        st = cm_fail(ROTOR_ERR_IO, "cannot write '%s': %s", o->shown, strerror(errno));
    if (st == ROTOR_OK && check_target)
        st = hold_target(o, &held);
    if (st == ROTOR_OK && o->tmp[0] == '\0')
        st = link_unnamed(o);
    if (st == ROTOR_OK && renameat(o->dirfd, o->tmp, o->dirfd, o->base) != 0)
        st = cm_fail(ROTOR_ERR_IO, "cannot write '%s': cannot rename the new file over it: %s",
                     o->shown, strerror(errno));
    if (held >= 0)
        close(held);
    if (st == ROTOR_OK) {
        o->tmp[0] = '\0'; /* renamed: nothing to remove */
        /* Best effort: the file is whole under its name already. */
        (void)fsync(o->dirfd);
    }
    /* The descriptor (and the lock a later writer tests) goes last. */
    out_free(o);
    return st;
}

rotor_status ds_out_commit(ds_out *o) { return commit(o, true); }

rotor_status ds_out_commit_keep(ds_out *o, int *fd) {
    *fd = fcntl(o->fd, F_DUPFD_CLOEXEC, 0);
    if (*fd < 0) {
        rotor_status st = cm_fail(ROTOR_ERR_IO, "cannot write '%s': %s", o->shown, strerror(errno));
        out_free(o);
        return st;
    }
    rotor_status st = commit(o, false);
    if (st != ROTOR_OK) {
        close(*fd);
        *fd = -1;
    }
    return st;
}

void ds_out_abort(ds_out *o) {
    if (o != NULL)
        out_free(o);
}
