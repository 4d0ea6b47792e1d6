/*
 * The rotor Python module: a CPython extension over include/rotor.h alone.
 *
 * Arrays come in through NumPy. A float32 (or, where the library takes them,
 * uint8 / int8) array that is C-contiguous, aligned and in native byte order
 * is handed to the library where it lies; anything else a caller may
 * reasonably mean (float64, float16, a strided view, a list) is converted to
 * float32 first, and an element type that cannot be a vector (integers wider
 * than a byte, complex, objects) is refused with TypeError rather than
 * guessed at.
 *
 * Every call into the library that can take long (build, add, batch search,
 * save, open, file reads and writes, ground truth) runs with the GIL
 * released. A single-query search releases it too: the search itself takes
 * microseconds, releasing costs tens of nanoseconds, and other Python
 * threads keep running. Searches run beside a writer in the library
 * itself (rotor.h, "Threads"); each Index carries a readers-writer lock
 * only so that close never frees an index a call is using (every call
 * reads it, close writes it), and a writers' mutex, so that an add and
 * the labels it sets are one change to other Python writers. The locks
 * are always taken after the GIL is released, never the other way round,
 * so a thread waiting for them never blocks one that needs the GIL.
 *
 * Errors: every rotor_status maps to one exception class, each a subclass
 * of rotor.Error and, where Python has a natural base, of that too
 * (DimensionError is a ValueError, IoError an OSError), so `except
 * ValueError` catches a wrong dimension. The message is the library's
 * sentence from rotor_last_error(), read on the thread that made the call.
 *
 * Progress and Ctrl-C: a graph build reports progress from the thread that
 * started it. The callback takes the GIL back (at most every 50 ms, so a
 * busy interpreter does not slow the build), runs pending signal handlers
 * and the caller's callback, and asks the library to stop when either
 * raised; the library then frees what it built and returns, and the
 * pending exception (KeyboardInterrupt) propagates. Nothing is written to
 * disk by a build, and a save is atomic, so an interrupted run leaves no
 * partial file.
 */
#define PY_SSIZE_T_CLEAN
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <Python.h>
#include <numpy/arrayobject.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include <rotor.h>

PyMODINIT_FUNC PyInit_rotor(void);

/* Py_BEGIN/END_ALLOW_THREADS as statements, so the GIL-free region reads as
 * plain code (and formats as such). */
#define GIL_RELEASE() PyThreadState *gil_state_ = PyEval_SaveThread()
#define GIL_ACQUIRE() PyEval_RestoreThread(gil_state_)

/* ---- exceptions ---------------------------------------------------------- */

static PyObject *Error;
/* Indexed by rotor_status; entry 0 unused. */
static PyObject *status_exc[ROTOR_ERR_NOT_FOUND + 1];

static PyObject *raise_status(rotor_status st) {
    const char *why = rotor_last_error();
    if (why == NULL || why[0] == '\0')
        why = rotor_strerror(st);
    PyObject *cls = (st > ROTOR_OK && st <= ROTOR_ERR_NOT_FOUND) ? status_exc[st] : Error;
    PyErr_SetString(cls, why);
    return NULL;
}

/* ---- arrays in -------------------------------------------------------------- */

/* A matrix view of a Python object, with the array that owns the memory. */
typedef struct {
    PyArrayObject *arr; /* owned reference; NULL when empty */
    rotor_matrix m;
    int ndim; /* of the caller's object: 1 (one vector) or 2 */
} matrix_in;

static void matrix_in_release(matrix_in *mi) {
    Py_CLEAR(mi->arr);
    mi->m.data = NULL;
}

enum { ACCEPT_BYTES = 1, ACCEPT_I32 = 2 };

/* Views `obj` as a 1-D or 2-D matrix for the library. float32 and, with
 * ACCEPT_BYTES, uint8 / int8 are used in place when C-contiguous, aligned
 * and native; ACCEPT_I32 admits int32 (id files). float64 and float16 (and
 * anything that is not an ndarray) become float32. Returns 0 or -1 with an
 * exception set. */
static int matrix_from(PyObject *obj, const char *what, int accept, matrix_in *mi) {
    memset(mi, 0, sizeof *mi);
    int target = NPY_FLOAT32;
    if (PyArray_Check(obj)) {
        PyArrayObject *a = (PyArrayObject *)obj;
        int t = PyArray_TYPE(a);
        if (t == NPY_FLOAT32 || t == NPY_FLOAT64 || t == NPY_FLOAT16)
            target = NPY_FLOAT32;
        else if ((accept & ACCEPT_BYTES) && (t == NPY_UINT8 || t == NPY_INT8))
            target = t;
        else if ((accept & ACCEPT_I32) && (t == NPY_INT32 || t == NPY_UINT8 || t == NPY_INT8))
            target = t;
        else {
            PyErr_Format(PyExc_TypeError, "%s must be %s, not %s", what,
                         (accept & ACCEPT_I32)
                             ? "float32, float64, uint8, int8 or int32"
                             : ((accept & ACCEPT_BYTES) ? "float32, float64, uint8 or int8"
                                                        : "float32 or float64"),
                         PyArray_DESCR(a)->typeobj->tp_name);
            return -1;
        }
        if (t == target && PyArray_IS_C_CONTIGUOUS(a) && PyArray_ISALIGNED(a) &&
            PyArray_ISNOTSWAPPED(a)) {
            Py_INCREF(obj);
            mi->arr = a;
        }
    }
    if (mi->arr == NULL) {
        mi->arr = (PyArrayObject *)PyArray_FromAny(
            obj, PyArray_DescrFromType(target), 0, 0,
            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST, NULL);
        if (mi->arr == NULL)
            return -1;
    }
    int nd = PyArray_NDIM(mi->arr);
    if (nd != 1 && nd != 2) {
        PyErr_Format(PyExc_ValueError, "%s must be a 1-D or 2-D array, not %d-D", what, nd);
        matrix_in_release(mi);
        return -1;
    }
    npy_intp *shape = PyArray_DIMS(mi->arr);
    mi->ndim = nd;
    mi->m.data = PyArray_DATA(mi->arr);
    mi->m.rows = nd == 1 ? 1 : (size_t)shape[0];
    mi->m.cols = (size_t)shape[nd - 1];
    switch (PyArray_TYPE(mi->arr)) {
    case NPY_UINT8: mi->m.type = ROTOR_ELEM_U8; break;
    case NPY_INT8: mi->m.type = ROTOR_ELEM_I8; break;
    case NPY_INT32: mi->m.type = ROTOR_ELEM_I32; break;
    default: mi->m.type = ROTOR_ELEM_F32; break;
    }
    return 0;
}

/* ---- small argument helpers ----------------------------------------------- */

static int parse_metric(PyObject *obj, rotor_metric *out) {
    if (obj == NULL || obj == Py_None) {
        *out = ROTOR_METRIC_L2;
        return 0;
    }
    const char *s = PyUnicode_Check(obj) ? PyUnicode_AsUTF8(obj) : NULL;
    if (s == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "metric must be a string: 'l2', 'ip' or 'cosine'");
        return -1;
    }
    if (rotor_metric_parse(s, out) != ROTOR_OK) {
        PyErr_Format(PyExc_ValueError, "unknown metric '%s'; use 'l2', 'ip' or 'cosine'", s);
        return -1;
    }
    return 0;
}

static int parse_kind(PyObject *obj, rotor_index_kind *out) {
    const char *s = obj == NULL || obj == Py_None ? "flat"
                    : PyUnicode_Check(obj)        ? PyUnicode_AsUTF8(obj)
                                                  : NULL;
    if (s == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "kind must be a string: 'flat', 'vamana' or 'ivf'");
        return -1;
    }
    if (strcmp(s, "flat") == 0)
        *out = ROTOR_INDEX_FLAT;
    else if (strcmp(s, "vamana") == 0)
        *out = ROTOR_INDEX_VAMANA;
    else if (strcmp(s, "ivf") == 0)
        *out = ROTOR_INDEX_IVF;
    else {
        PyErr_Format(PyExc_ValueError, "unknown index kind '%s'; use 'flat', 'vamana' or 'ivf'", s);
        return -1;
    }
    return 0;
}

/* Where full vectors live: None / "as_saved", "ram", "disk". */
static int parse_place(PyObject *obj, const char *what, int *out) {
    const char *s = obj == NULL || obj == Py_None ? "as_saved"
                    : PyUnicode_Check(obj)        ? PyUnicode_AsUTF8(obj)
                                                  : NULL;
    if (s == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "%s must be 'ram' or 'disk'", what);
        return -1;
    }
    if (strcmp(s, "as_saved") == 0)
        *out = ROTOR_VECTORS_AS_SAVED;
    else if (strcmp(s, "ram") == 0)
        *out = ROTOR_VECTORS_RAM;
    else if (strcmp(s, "disk") == 0)
        *out = ROTOR_VECTORS_DISK;
    else {
        PyErr_Format(PyExc_ValueError, "%s must be 'ram' or 'disk', not '%s'", what, s);
        return -1;
    }
    return 0;
}

/* An optional non-negative integer no larger than `max`; None keeps *out. */
static int opt_uint(PyObject *obj, const char *name, unsigned long long max,
                    unsigned long long *out) {
    if (obj == NULL || obj == Py_None)
        return 0;
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an integer, not %s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow != 0 || v < 0 || (unsigned long long)v > max) {
        PyErr_Format(PyExc_ValueError, "%s must be between 0 and %llu, not %S", name, max, obj);
        return -1;
    }
    *out = (unsigned long long)v;
    return 0;
}

static int opt_u32(PyObject *obj, const char *name, uint32_t *out) {
    unsigned long long v = *out;
    if (opt_uint(obj, name, UINT32_MAX, &v) < 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* ---- progress ------------------------------------------------------------- */

typedef struct {
    PyObject *callback; /* borrowed: a callable, or NULL for the built-in bar */
    int bar;            /* draw the bar on sys.stderr */
    int failed;         /* an exception is pending: stop */
    double started, last;
    uint64_t total, done;
} progress_state;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void draw_bar(progress_state *ps, uint64_t done, uint64_t total) {
    enum { WIDTH = 30 };
    double frac = total ? (double)done / (double)total : 1.0;
    if (frac > 1)
        frac = 1;
    int fill = (int)(frac * WIDTH);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    double elapsed = now_seconds() - ps->started;
    double eta = frac > 0 ? elapsed * (1 - frac) / frac : 0;
    char line[160];
    snprintf(line, sizeof line, "\rbuild [%s] %5.1f%%  %6.1fs elapsed, %6.1fs left ", bar,
             100 * frac, elapsed, eta);
    PySys_WriteStderr("%s", line);
}

/* The library's progress callback; runs on the thread that started the
 * build, without the GIL. */
static int progress_cb(void *opaque, uint64_t done, uint64_t total) {
    progress_state *ps = opaque;
    double t = now_seconds();
    /* The end is shown at once, but only once: a build calibrating after
     * its graph keeps reporting everything done. */
    const bool new_end = done >= total && (done != ps->done || ps->last == 0);
    ps->total = total;
    ps->done = done;
    if (t - ps->last < 0.05 && !new_end)
        return 0;
    ps->last = t;
    PyGILState_STATE g = PyGILState_Ensure();
    if (PyErr_CheckSignals() < 0)
        ps->failed = 1;
    if (!ps->failed && ps->callback != NULL) {
        PyObject *r = PyObject_CallFunction(ps->callback, "KK", (unsigned long long)done,
                                            (unsigned long long)total);
        if (r == NULL)
            ps->failed = 1;
        else if (PyObject_IsTrue(r) == 1)
            /* a true return asks to stop, as the C callback's does */
            ps->failed = -1;
        Py_XDECREF(r);
        if (PyErr_Occurred() && ps->failed == 0)
            ps->failed = 1;
    }
    if (!ps->failed && ps->bar)
        draw_bar(ps, done, total);
    PyGILState_Release(g);
    return ps->failed != 0;
}

/* progress=False: nothing; True: a bar on sys.stderr when it is a
 * terminal; a callable: called as f(done, total). */
static int progress_setup(PyObject *progress, progress_state *ps, rotor_params *p) {
    memset(ps, 0, sizeof *ps);
    ps->started = now_seconds();
    /* Even without a bar or a callable, the callback is how Ctrl-C reaches
     * a long build: it is always installed. */
    p->progress = progress_cb;
    p->progress_opaque = ps;
    if (progress == NULL || progress == Py_None || progress == Py_False)
        return 0;
    if (PyCallable_Check(progress)) {
        ps->callback = progress;
    } else {
        int truth = PyObject_IsTrue(progress);
        if (truth < 0)
            return -1;
        if (!truth)
            return 0;
        PyObject *err = PySys_GetObject("stderr"); /* borrowed */
        if (err != NULL && err != Py_None) {
            PyObject *tty = PyObject_CallMethod(err, "isatty", NULL);
            if (tty == NULL)
                PyErr_Clear();
            else
                ps->bar = PyObject_IsTrue(tty) == 1;
            Py_XDECREF(tty);
        }
    }
    return 0;
}

/* Ends the bar and turns the outcome into an exception when the build
 * stopped on request. Returns -1 when an exception is set. */
static int progress_finish(progress_state *ps, rotor_status st) {
    if (ps->bar && !ps->failed) {
        if (st == ROTOR_OK)
            draw_bar(ps, ps->total, ps->total);
        PySys_WriteStderr("\n");
    }
    if (ps->failed > 0 && PyErr_Occurred())
        return -1;
    if (ps->failed < 0 && st != ROTOR_OK) {
        PyErr_SetString(status_exc[ROTOR_ERR_CANCELLED],
                        "build stopped: the progress callback returned true");
        return -1;
    }
    /* The signal may have landed after the last callback. */
    if (PyErr_CheckSignals() < 0)
        return -1;
    return 0;
}

/* ---- build parameters -------------------------------------------------------- */

/* Holds the strings rotor_params points at while a call runs. */
typedef struct {
    PyObject *quant, *walk_quant; /* UTF-8 bytes kept alive, or NULL */
} params_keep;

static void params_keep_release(params_keep *k) {
    Py_CLEAR(k->quant);
    Py_CLEAR(k->walk_quant);
}

/* Not given: *out keeps its default ("auto" for quant); None: full
 * precision (NULL); else the spec string, kept alive by *keep. */
static int quant_spec(PyObject *obj, const char *name, PyObject **keep, const char **out) {
    if (obj == NULL)
        return 0;
    *out = NULL;
    if (obj == Py_None)
        return 0;
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a quantizer spec string or None, not %s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    *keep = PyUnicode_AsUTF8String(obj);
    if (*keep == NULL)
        return -1;
    *out = PyBytes_AS_STRING(*keep);
    return 0;
}

static const char *const build_kwlist[] = {
    "x",          "metric",   "kind",           "quant",
    "threads",    "progress", "seed",           "degree",
    "build_list", "alpha",    "neighbor_codes", "build_space",
    "walk_quant", "nlist",    "full_vectors",   "target_recall",
    "labels",     "keys",     "ram_budget",     "build_memory",
    NULL};

/* Fills rotor_params from build()'s keywords (all but x, parsed by the
 * caller into `o`). */
typedef struct {
    PyObject *metric, *kind, *quant, *threads, *progress, *seed, *degree, *build_list, *alpha,
        *neighbor_codes, *build_space, *walk_quant, *nlist, *full_vectors, *target_recall, *labels,
        *ram_budget, *build_memory;
} build_args;

static int build_params(const build_args *a, rotor_params *p, params_keep *keep) {
    *p = rotor_params_default();
    memset(keep, 0, sizeof *keep);
    if (parse_metric(a->metric, &p->metric) < 0 || parse_kind(a->kind, &p->kind) < 0 ||
        quant_spec(a->quant, "quant", &keep->quant, &p->quant) < 0 ||
        quant_spec(a->walk_quant, "walk_quant", &keep->walk_quant, &p->walk_quant) < 0 ||
        opt_u32(a->threads, "threads", &p->threads) < 0 ||
        opt_u32(a->degree, "degree", &p->graph_degree) < 0 ||
        opt_u32(a->build_list, "build_list", &p->build_list) < 0 ||
        opt_u32(a->nlist, "nlist", &p->nlist) < 0)
        goto fail;
    unsigned long long seed = p->seed;
    if (opt_uint(a->seed, "seed", UINT64_MAX, &seed) < 0)
        goto fail;
    p->seed = seed;
    /* As the CLI does: a build list below the degree follows the degree. */
    if ((a->build_list == NULL || a->build_list == Py_None) && p->build_list != 0 &&
        p->build_list < p->graph_degree)
        p->build_list = p->graph_degree;
    if (a->alpha != NULL && a->alpha != Py_None) {
        double v = PyFloat_AsDouble(a->alpha);
        if (v == -1.0 && PyErr_Occurred())
            goto fail;
        p->alpha = (float)v;
    }
    if (a->target_recall != NULL && a->target_recall != Py_None) {
        double v = PyFloat_AsDouble(a->target_recall);
        if (v == -1.0 && PyErr_Occurred())
            goto fail;
        p->target_recall = (float)v;
    }
    if (a->neighbor_codes != NULL && a->neighbor_codes != Py_None) {
        int v = PyObject_IsTrue(a->neighbor_codes);
        if (v < 0)
            goto fail;
        p->neighbor_codes = v;
    }
    if (a->build_space != NULL && a->build_space != Py_None) {
        const char *s = PyUnicode_Check(a->build_space) ? PyUnicode_AsUTF8(a->build_space) : NULL;
        if (s == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "build_space must be 'full' or 'codes'");
            goto fail;
        }
        if (strcmp(s, "full") == 0)
            p->build_space = ROTOR_BUILD_FULL;
        else if (strcmp(s, "codes") == 0)
            p->build_space = ROTOR_BUILD_CODES;
        else {
            PyErr_Format(PyExc_ValueError, "build_space must be 'full' or 'codes', not '%s'", s);
            goto fail;
        }
    }
    int place = ROTOR_VECTORS_AS_SAVED;
    if (parse_place(a->full_vectors, "full_vectors", &place) < 0)
        goto fail;
    if (place != ROTOR_VECTORS_AS_SAVED)
        p->full_vectors = place;
    unsigned long long budget = 0;
    if (opt_uint(a->ram_budget, "ram_budget", UINT64_MAX, &budget) < 0)
        goto fail;
    p->ram_budget = budget;
    unsigned long long cap = 0;
    if (opt_uint(a->build_memory, "build_memory", UINT64_MAX, &cap) < 0)
        goto fail;
    p->build_memory = cap;
    return 0;
fail:
    params_keep_release(keep);
    return -1;
}

/* ---- labels and filters --------------------------------------------------------- */

/* Labels of `rows` vectors from a sequence with an item per vector: an
 * int, a sequence of ints, or None (no label). */
typedef struct {
    rotor_labels l;
    uint64_t *off;
    uint32_t *val;
} labels_in;

static void labels_in_release(labels_in *li) {
    PyMem_Free(li->off);
    PyMem_Free(li->val);
    li->off = NULL;
    li->val = NULL;
}

static int label_value(PyObject *o, uint32_t *out) {
    unsigned long long v = 0;
    if (opt_uint(o, "a label", UINT32_MAX, &v) < 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int labels_from(PyObject *obj, size_t rows, labels_in *li) {
    memset(li, 0, sizeof *li);
    PyObject *seq = PySequence_Fast(obj, "labels must be a sequence with an item per vector");
    if (seq == NULL)
        return -1;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if ((size_t)n != rows) {
        PyErr_Format(status_exc[ROTOR_ERR_INVALID_ARGUMENT],
                     "labels has %zd items, there are %zu vectors", n, rows);
        Py_DECREF(seq);
        return -1;
    }
    size_t cap = rows + 16, used = 0;
    li->off = PyMem_Malloc((rows + 1) * sizeof *li->off);
    li->val = PyMem_Malloc(cap * sizeof *li->val);
    if (li->off == NULL || li->val == NULL)
        goto nomem;
    li->off[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *inner = NULL;
        Py_ssize_t m = 0;
        if (item != Py_None && !PyLong_Check(item) && !PyIndex_Check(item)) {
            inner = PySequence_Fast(item, "each vector's labels must be an int, a sequence of "
                                          "ints or None");
            if (inner == NULL)
                goto fail;
            m = PySequence_Fast_GET_SIZE(inner);
        } else if (item != Py_None) {
            m = 1;
        }
        if (used + (size_t)m > cap) {
            cap = 2 * (used + (size_t)m);
            uint32_t *v = PyMem_Realloc(li->val, cap * sizeof *v);
            if (v == NULL) {
                Py_XDECREF(inner);
                goto nomem;
            }
            li->val = v;
        }
        for (Py_ssize_t j = 0; j < m; j++) {
            if (label_value(inner ? PySequence_Fast_GET_ITEM(inner, j) : item, &li->val[used]) <
                0) {
                Py_XDECREF(inner);
                goto fail;
            }
            used++;
        }
        Py_XDECREF(inner);
        li->off[i + 1] = used;
    }
    Py_DECREF(seq);
    li->l = (rotor_labels){li->off, li->val, rows};
    return 0;
nomem:
    PyErr_NoMemory();
fail:
    Py_DECREF(seq);
    labels_in_release(li);
    return -1;
}

/* rotor.all_of(3, 7): a filter that wants every label named. */
static PyStructSequence_Field all_of_fields[] = {{"labels", "the labels a vector must all carry"},
                                                 {NULL, NULL}};
static PyStructSequence_Desc all_of_desc = {
    "rotor.AllOf", "A search filter: vectors carrying all of these labels (rotor.all_of).",
    all_of_fields, 1};
static PyTypeObject *AllOfType;

/* A search's filter from filter= (an int: has that label; a sequence:
 * any of them; rotor.all_of(...): all of them) and allow= (a boolean mask
 * over ids, or an array of allowed ids). */
typedef struct {
    rotor_filter f;
    uint32_t *labels;
    uint64_t *bits;
    int64_t *ids;
    bool set;
} filter_in;

static void filter_in_release(filter_in *fi) {
    PyMem_Free(fi->labels);
    PyMem_Free(fi->bits);
    PyMem_Free(fi->ids);
    fi->labels = NULL;
    fi->bits = NULL;
    fi->ids = NULL;
}

static int filter_from(PyObject *flt, PyObject *allow, filter_in *fi) {
    memset(fi, 0, sizeof *fi);
    if (flt != NULL && flt != Py_None) {
        PyObject *labs = flt;
        if (Py_IS_TYPE(flt, AllOfType)) {
            labs = PyStructSequence_GetItem(flt, 0);
            fi->f.all = 1;
        }
        PyObject *seq = NULL;
        Py_ssize_t n = 1;
        if (!PyLong_Check(labs)) {
            seq = PySequence_Fast(labs, "filter must be a label, a sequence of labels (any of "
                                        "them) or rotor.all_of(...)");
            if (seq == NULL)
                return -1;
            n = PySequence_Fast_GET_SIZE(seq);
        }
        fi->labels = PyMem_Malloc((n ? (size_t)n : 1) * sizeof *fi->labels);
        if (fi->labels == NULL) {
            Py_XDECREF(seq);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            if (label_value(seq ? PySequence_Fast_GET_ITEM(seq, i) : labs, &fi->labels[i]) < 0) {
                Py_XDECREF(seq);
                filter_in_release(fi);
                return -1;
            }
        Py_XDECREF(seq);
        if (n == 0) { /* any of no label: nothing passes */
            fi->f.allow = fi->bits = PyMem_Calloc(1, sizeof *fi->bits);
            fi->f.allow_bits = 0;
        }
        fi->f.labels = fi->labels;
        fi->f.nlabels = (size_t)n;
        fi->set = true;
    }
    if (allow != NULL && allow != Py_None) {
        PyArrayObject *a =
            (PyArrayObject *)PyArray_FROMANY(allow, NPY_NOTYPE, 1, 1, NPY_ARRAY_CARRAY_RO);
        if (a == NULL) {
            filter_in_release(fi);
            return -1;
        }
        const npy_intp n = PyArray_DIM(a, 0);
        if (PyArray_TYPE(a) == NPY_BOOL) { /* a mask over ids */
            PyMem_Free(fi->bits);
            fi->bits = PyMem_Calloc((size_t)n / 64 + 1, sizeof *fi->bits);
            if (fi->bits == NULL) {
                Py_DECREF(a);
                filter_in_release(fi);
                PyErr_NoMemory();
                return -1;
            }
            const npy_bool *mv = PyArray_DATA(a);
            for (npy_intp i = 0; i < n; i++)
                if (mv[i])
                    fi->bits[i / 64] |= (uint64_t)1 << (i % 64);
            fi->f.allow = fi->bits;
            fi->f.allow_bits = (size_t)n;
        } else if (PyArray_ISINTEGER(a)) { /* ids, looked up by the library */
            PyArrayObject *ids = (PyArrayObject *)PyArray_FROMANY((PyObject *)a, NPY_INT64, 1, 1,
                                                                  NPY_ARRAY_CARRAY_RO);
            fi->ids = ids ? PyMem_Malloc(((size_t)n ? (size_t)n : 1) * sizeof *fi->ids) : NULL;
            if (fi->ids == NULL) {
                Py_DECREF(a);
                Py_XDECREF(ids);
                filter_in_release(fi);
                if (!PyErr_Occurred())
                    PyErr_NoMemory();
                return -1;
            }
            memcpy(fi->ids, PyArray_DATA(ids), (size_t)n * sizeof *fi->ids);
            Py_DECREF(ids);
            fi->f.allow_ids = fi->ids;
            fi->f.n_allow_ids = (size_t)n;
        } else {
            Py_DECREF(a);
            filter_in_release(fi);
            PyErr_SetString(PyExc_TypeError,
                            "allow must be a boolean mask over ids or an array of ids");
            return -1;
        }
        Py_DECREF(a);
        fi->set = true;
    }
    return 0;
}

/* Keys for `rows` vectors: None gives NULL (row numbers); otherwise a
 * sequence or array of integers (a single int for one vector) converted
 * to int64 without losing anything (floats are refused), held by *arr. */
static int keys_from(PyObject *obj, size_t rows, PyArrayObject **arr, const int64_t **out) {
    *arr = NULL;
    *out = NULL;
    if (obj == NULL || obj == Py_None)
        return 0;
    PyObject *raw = PyArray_FromAny(obj, NULL, 0, 1, 0, NULL);
    if (raw == NULL)
        return -1;
    if (!PyArray_ISINTEGER((PyArrayObject *)raw)) {
        PyErr_Format(PyExc_TypeError, "keys must be integers (int64), not %s",
                     PyArray_DESCR((PyArrayObject *)raw)->typeobj->tp_name);
        Py_DECREF(raw);
        return -1;
    }
    /* uint64 past 2^63 wraps to a negative key, which the library refuses. */
    PyObject *a = PyArray_FromArray((PyArrayObject *)raw, PyArray_DescrFromType(NPY_INT64),
                                    NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(raw);
    if (a == NULL)
        return -1;
    if ((size_t)PyArray_SIZE((PyArrayObject *)a) != rows) {
        PyErr_Format(PyExc_ValueError, "%zd keys were given for %zu vectors",
                     (Py_ssize_t)PyArray_SIZE((PyArrayObject *)a), rows);
        Py_DECREF(a);
        return -1;
    }
    *arr = (PyArrayObject *)a;
    *out = PyArray_DATA(*arr);
    return 0;
}

/* ---- the Index type ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD rotor_index *ix;
    size_t dim;
    pthread_rwlock_t lock;
    pthread_mutex_t writer;
} IndexObject;

static PyTypeObject IndexType;

/* A call that changes the index: beside searches, after other writers. */
static void write_begin(IndexObject *self) {
    pthread_rwlock_rdlock(&self->lock);
    pthread_mutex_lock(&self->writer);
}

static void write_end(IndexObject *self) {
    pthread_mutex_unlock(&self->writer);
    pthread_rwlock_unlock(&self->lock);
}

/* Takes the read lock for a short call made with the GIL held. When an add
 * holds the lock, waiting for it with the GIL would stall every Python
 * thread for the add's duration, so the wait is made without it. */
static void read_lock_holding_gil(IndexObject *self) {
    if (pthread_rwlock_tryrdlock(&self->lock) == 0)
        return;
    GIL_RELEASE();
    pthread_rwlock_rdlock(&self->lock);
    GIL_ACQUIRE();
}

static int check_open(IndexObject *self) {
    if (self->ix == NULL) {
        PyErr_SetString(PyExc_ValueError, "the index is closed");
        return -1;
    }
    return 0;
}

/* The end of a call that changes or writes the index and returns None:
 * a close from another thread meanwhile, a failure, or None. */
static PyObject *done_or_raise(IndexObject *self, rotor_status st) {
    if (self->ix == NULL) {
        (void)check_open(self);
        return NULL;
    }
    if (st != ROTOR_OK)
        return raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *index_wrap(rotor_index *ix) {
    IndexObject *self = PyObject_New(IndexObject, &IndexType);
    if (self == NULL) {
        rotor_index_close(ix);
        return NULL;
    }
    rotor_index_stats s;
    rotor_index_stats_get(ix, &s);
    self->ix = ix;
    self->dim = s.dim;
    /* Writers first: a close must not wait forever behind a stream of
     * calls from many threads. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&self->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&self->writer, NULL);
    return (PyObject *)self;
}

static void index_dealloc(IndexObject *self) {
    /* No other thread can hold a reference, so nobody holds the lock. */
    rotor_index_close(self->ix);
    self->ix = NULL;
    pthread_rwlock_destroy(&self->lock);
    pthread_mutex_destroy(&self->writer);
    PyObject_Free(self);
}

static PyObject *index_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)type;
    (void)args;
    (void)kwds;
    PyErr_SetString(PyExc_TypeError,
                    "rotor.Index is made by Index.build(vectors, ...) or Index.open(path)");
    return NULL;
}

static PyObject *index_build(PyObject *cls, PyObject *args, PyObject *kw) {
    (void)cls;
    PyObject *x = NULL, *keys_obj = NULL;
    build_args a = {0};
    if (!PyArg_ParseTupleAndKeywords(
            args, kw, "O|$OOOOOOOOOOOOOOOOOOO", (char **)build_kwlist, &x, &a.metric, &a.kind,
            &a.quant, &a.threads, &a.progress, &a.seed, &a.degree, &a.build_list, &a.alpha,
            &a.neighbor_codes, &a.build_space, &a.walk_quant, &a.nlist, &a.full_vectors,
            &a.target_recall, &a.labels, &keys_obj, &a.ram_budget, &a.build_memory))
        return NULL;
    rotor_params p;
    params_keep keep;
    if (build_params(&a, &p, &keep) < 0)
        return NULL;
    matrix_in mi;
    if (matrix_from(x, "vectors", ACCEPT_BYTES, &mi) < 0) {
        params_keep_release(&keep);
        return NULL;
    }
    labels_in li = {0};
    if (a.labels != NULL && a.labels != Py_None) {
        if (labels_from(a.labels, mi.m.rows, &li) < 0) {
            matrix_in_release(&mi);
            params_keep_release(&keep);
            return NULL;
        }
        p.labels = &li.l;
    }
    PyArrayObject *keys_arr;
    const int64_t *keys;
    progress_state ps;
    if (keys_from(keys_obj, mi.m.rows, &keys_arr, &keys) < 0 ||
        progress_setup(a.progress, &ps, &p) < 0) {
        Py_XDECREF(keys_arr);
        labels_in_release(&li);
        matrix_in_release(&mi);
        params_keep_release(&keep);
        return NULL;
    }
    rotor_index *ix = NULL;
    rotor_status st;
    GIL_RELEASE();
    st = rotor_index_build_with_keys(&p, &mi.m, keys, &ix);
    GIL_ACQUIRE();
    int stop = progress_finish(&ps, st);
    labels_in_release(&li);
    Py_XDECREF(keys_arr);
    matrix_in_release(&mi);
    params_keep_release(&keep);
    if (stop < 0) {
        rotor_index_close(ix);
        return NULL;
    }
    if (st != ROTOR_OK)
        return raise_status(st);
    return index_wrap(ix);
}

static PyObject *index_open(PyObject *cls, PyObject *args, PyObject *kw) {
    (void)cls;
    static const char *const kwlist[] = {"path",       "vectors", "io",       "direct_io",
                                         "verify",     "load",    "writable", "sync_each_change",
                                         "ram_budget", NULL};
    PyObject *path = NULL, *vectors = NULL, *io = NULL, *direct = NULL, *budget = NULL;
    PyObject *load = NULL;
    int verify = 0, writable = 0, sync_each = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|$OOOpOppO", (char **)kwlist,
                                     PyUnicode_FSConverter, &path, &vectors, &io, &direct, &verify,
                                     &load, &writable, &sync_each, &budget))
        return NULL;
    rotor_open_params op = rotor_open_params_default();
    if (load != NULL && load != Py_None) {
        /* None: the library's choice (-1); True / False (or 1 / 0): read into
         * memory / map; -1 as None. */
        long v = PyLong_Check(load) ? PyLong_AsLong(load) : -2;
        if (PyErr_Occurred()) { /* past a long */
            PyErr_Clear();
            v = -2;
        }
        if (v < -1 || v > 1) {
            PyErr_SetString(PyExc_ValueError, "load must be True, False or None");
            goto fail;
        }
        op.load = (int)v;
    }
    if (budget != NULL && budget != Py_None) {
        /* "unlimited": the whole graph in RAM whatever the build said. */
        const char *s = PyUnicode_Check(budget) ? PyUnicode_AsUTF8(budget) : NULL;
        unsigned long long v = 0;
        if (s != NULL && strcmp(s, "unlimited") == 0)
            v = ROTOR_RAM_UNLIMITED;
        else if (s != NULL || opt_uint(budget, "ram_budget", UINT64_MAX, &v) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError,
                                "ram_budget must be a byte count, 'unlimited' or None");
            goto fail;
        }
        op.ram_budget = v;
    }
    int place;
    if (parse_place(vectors, "vectors", &place) < 0)
        goto fail;
    op.vectors = (rotor_vectors_place)place;
    if (io != NULL && io != Py_None) {
        const char *s = PyUnicode_Check(io) ? PyUnicode_AsUTF8(io) : NULL;
        if (s != NULL && strcmp(s, "auto") == 0)
            op.io = ROTOR_IO_AUTO;
        else if (s != NULL && strcmp(s, "uring") == 0)
            op.io = ROTOR_IO_URING;
        else if (s != NULL && strcmp(s, "pread") == 0)
            op.io = ROTOR_IO_PREAD;
        else {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "io must be 'auto', 'uring' or 'pread'");
            goto fail;
        }
    }
    if (direct != NULL && direct != Py_None) {
        int v = PyObject_IsTrue(direct);
        if (v < 0)
            goto fail;
        op.direct_io = v;
    }
    op.verify = verify;
    op.writable = writable;
    op.sync_each_change = sync_each;
    rotor_index *ix = NULL;
    rotor_status st;
    const char *cpath = PyBytes_AS_STRING(path);
    GIL_RELEASE();
    st = rotor_index_open(cpath, &op, &ix);
    GIL_ACQUIRE();
    Py_DECREF(path);
    if (st != ROTOR_OK)
        return raise_status(st);
    return index_wrap(ix);
fail:
    Py_DECREF(path);
    return NULL;
}

/* Fast keyword parsing for search(): it runs once per query, and the
 * generic parser costs about as much as a small search. */
enum {
    SA_Q,
    SA_K,
    SA_LIST,
    SA_RERANK,
    SA_REFINE,
    SA_NPROBE,
    SA_STARTS,
    SA_THREADS,
    SA_RECALL,
    SA_FILTER,
    SA_ALLOW,
    SA_BEAM,
    SA_NEIGHBORS,
    SA_COUNT
};
static const char *const search_names[SA_COUNT] = {
    "q",       "k",      "list_size", "rerank", "refine",     "nprobe",       "starts",
    "threads", "recall", "filter",    "allow",  "beam_width", "max_neighbors"};
static PyObject *search_names_obj[SA_COUNT];

static int search_parse(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                        PyObject **slot) {
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "search() takes the query and k as positional arguments (%zd given)", nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        slot[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, j);
        int found = -1;
        for (int s = 0; s < SA_COUNT && found < 0; s++)
            if (name == search_names_obj[s])
                found = s;
        for (int s = 0; s < SA_COUNT && found < 0; s++)
            if (PyUnicode_Compare(name, search_names_obj[s]) == 0)
                found = s;
        if (found < 0) {
            PyErr_Format(PyExc_TypeError, "search() got an unexpected keyword argument '%U'", name);
            return -1;
        }
        if (slot[found] != NULL) {
            PyErr_Format(PyExc_TypeError, "search() got multiple values for argument '%s'",
                         search_names[found]);
            return -1;
        }
        slot[found] = args[nargs + j];
    }
    if (slot[SA_Q] == NULL) {
        PyErr_SetString(PyExc_TypeError, "search() missing the query argument 'q'");
        return -1;
    }
    return 0;
}

static PyObject *index_search(IndexObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    PyObject *slot[SA_COUNT] = {0};
    if (search_parse(args, nargs, kwnames, slot) < 0 || check_open(self) < 0)
        return NULL;
    long long k = 10;
    if (slot[SA_K] != NULL) {
        if (!PyLong_Check(slot[SA_K])) {
            PyErr_Format(PyExc_TypeError, "k must be an integer, not %s",
                         Py_TYPE(slot[SA_K])->tp_name);
            return NULL;
        }
        k = PyLong_AsLongLong(slot[SA_K]);
        if (k == -1 && PyErr_Occurred())
            return NULL;
        if (k < 1) {
            PyErr_Format(status_exc[ROTOR_ERR_INVALID_ARGUMENT], "k must be at least 1, not %lld",
                         k);
            return NULL;
        }
    }
    rotor_search_params sp = rotor_search_params_default();
    if (opt_u32(slot[SA_LIST], "list_size", &sp.list_size) < 0 ||
        opt_u32(slot[SA_REFINE], "refine", &sp.refine) < 0 ||
        opt_u32(slot[SA_NPROBE], "nprobe", &sp.nprobe) < 0 ||
        opt_u32(slot[SA_STARTS], "starts", &sp.start_points) < 0 ||
        opt_u32(slot[SA_NEIGHBORS], "max_neighbors", &sp.max_neighbors) < 0 ||
        opt_u32(slot[SA_THREADS], "threads", &sp.threads) < 0 ||
        opt_u32(slot[SA_BEAM], "beam_width", &sp.beam_width) < 0)
        return NULL;
    if (slot[SA_RERANK] != NULL && slot[SA_RERANK] != Py_None) {
        unsigned long long r = 0;
        if (opt_uint(slot[SA_RERANK], "rerank", INT64_MAX, &r) < 0)
            return NULL;
        sp.rerank = (int64_t)r;
    }
    if (slot[SA_RECALL] != NULL && slot[SA_RECALL] != Py_None) {
        double v = PyFloat_AsDouble(slot[SA_RECALL]);
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        if (!(v > 0 && v <= 1)) {
            PyErr_Format(status_exc[ROTOR_ERR_INVALID_ARGUMENT],
                         "recall must be above 0 and at most 1, not %g", v);
            return NULL;
        }
        sp.target_recall = (float)v;
    }

    filter_in fi;
    if (filter_from(slot[SA_FILTER], slot[SA_ALLOW], &fi) < 0)
        return NULL;
    if (fi.set)
        sp.filter = &fi.f;
    matrix_in mi;
    if (matrix_from(slot[SA_Q], "queries", ACCEPT_BYTES, &mi) < 0) {
        filter_in_release(&fi);
        return NULL;
    }
    npy_intp shape[2] = {(npy_intp)mi.m.rows, (npy_intp)k};
    PyObject *ids = PyArray_SimpleNew(2, shape, NPY_INT64);
    PyObject *dist = ids ? PyArray_SimpleNew(2, shape, NPY_FLOAT32) : NULL;
    if (dist == NULL) {
        Py_XDECREF(ids);
        matrix_in_release(&mi);
        filter_in_release(&fi);
        return NULL;
    }
    int64_t *idp = PyArray_DATA((PyArrayObject *)ids);
    float *dp = PyArray_DATA((PyArrayObject *)dist);
    rotor_status st = ROTOR_OK;
    if (mi.m.rows == 1 && mi.m.type == ROTOR_ELEM_F32) {
        /* One float32 query: the single search, no batch machinery. */
        GIL_RELEASE();
        pthread_rwlock_rdlock(&self->lock);
        st = self->ix ? rotor_index_search(self->ix, &sp, mi.m.data, mi.m.cols, (size_t)k, idp, dp)
                      : ROTOR_ERR_INVALID_ARGUMENT;
        pthread_rwlock_unlock(&self->lock);
        GIL_ACQUIRE();

    } else {
        GIL_RELEASE();
        pthread_rwlock_rdlock(&self->lock);
        st = self->ix ? rotor_index_search_batch(self->ix, &sp, &mi.m, (size_t)k, idp, dp)
                      : ROTOR_ERR_INVALID_ARGUMENT;
        pthread_rwlock_unlock(&self->lock);
        GIL_ACQUIRE();
    }
    matrix_in_release(&mi);
    filter_in_release(&fi);
    if (st != ROTOR_OK) {
        Py_DECREF(ids);
        Py_DECREF(dist);
        if (self->ix == NULL) {
            (void)check_open(self);
            return NULL;
        }
        return raise_status(st);
    }
    PyObject *out = PyTuple_New(2);
    if (out == NULL) {
        Py_DECREF(ids);
        Py_DECREF(dist);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, ids);
    PyTuple_SET_ITEM(out, 1, dist);
    return out;
}

static PyObject *index_add(IndexObject *self, PyObject *args, PyObject *kw) {
    static const char *const kwlist[] = {"x", "labels", "keys", NULL};
    PyObject *x, *labels = NULL, *keys_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$OO", (char **)kwlist, &x, &labels, &keys_obj) ||
        check_open(self) < 0)
        return NULL;
    matrix_in mi;
    if (matrix_from(x, "vectors", ACCEPT_BYTES, &mi) < 0)
        return NULL;
    labels_in li = {0};
    const bool labelled = labels != NULL && labels != Py_None;
    if (labelled && labels_from(labels, mi.m.rows, &li) < 0) {
        labels_in_release(&li);
        matrix_in_release(&mi);
        return NULL;
    }
    PyArrayObject *keys_arr;
    const int64_t *keys;
    if (keys_from(keys_obj, mi.m.rows, &keys_arr, &keys) < 0) {
        labels_in_release(&li);
        matrix_in_release(&mi);
        return NULL;
    }
    rotor_status st;
    GIL_RELEASE();
    write_begin(self);
    /* One change: the vectors with their labels, or nothing. */
    st = self->ix ? rotor_index_add_with_labels(self->ix, &mi.m, keys, labelled ? &li.l : NULL)
                  : ROTOR_ERR_INVALID_ARGUMENT;
    write_end(self);
    GIL_ACQUIRE();
    Py_XDECREF(keys_arr);
    matrix_in_release(&mi);
    labels_in_release(&li);
    return done_or_raise(self, st);
}

static PyObject *index_set_labels(IndexObject *self, PyObject *args, PyObject *kw) {
    static const char *const kwlist[] = {"ids", "labels", NULL};
    PyObject *ids_obj, *labels;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", (char **)kwlist, &ids_obj, &labels) ||
        check_open(self) < 0)
        return NULL;
    PyArrayObject *ids =
        (PyArrayObject *)PyArray_FROMANY(ids_obj, NPY_INT64, 1, 1, NPY_ARRAY_CARRAY_RO);
    if (ids == NULL)
        return NULL;
    labels_in li;
    if (labels_from(labels, (size_t)PyArray_DIM(ids, 0), &li) < 0) {
        Py_DECREF(ids);
        return NULL;
    }
    rotor_status st;
    GIL_RELEASE();
    write_begin(self);
    st = self->ix ? rotor_index_set_labels(self->ix, PyArray_DATA(ids), &li.l)
                  : ROTOR_ERR_INVALID_ARGUMENT;
    write_end(self);
    GIL_ACQUIRE();
    labels_in_release(&li);
    Py_DECREF(ids);
    return done_or_raise(self, st);
}

static PyObject *index_labels(IndexObject *self, PyObject *id_obj) {
    if (check_open(self) < 0)
        return NULL;
    long long id = PyLong_AsLongLong(id_obj);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    size_t n = 0;
    uint32_t buf[256];
    read_lock_holding_gil(self);
    rotor_status st = rotor_index_get_labels(self->ix, id, buf, 256, &n);
    uint32_t *all = buf;
    if (st == ROTOR_OK && n > 256) {
        all = PyMem_Malloc(n * sizeof *all);
        st = all ? rotor_index_get_labels(self->ix, id, all, n, &n) : ROTOR_ERR_OUT_OF_MEMORY;
    }
    pthread_rwlock_unlock(&self->lock);
    PyObject *out = NULL;
    if (st == ROTOR_OK) {
        out = PyList_New((Py_ssize_t)n);
        for (size_t i = 0; out != NULL && i < n; i++) {
            PyObject *v = PyLong_FromUnsignedLong(all[i]);
            if (v == NULL) {
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(out, (Py_ssize_t)i, v);
        }
    }
    if (all != buf)
        PyMem_Free(all);
    if (st != ROTOR_OK)
        return raise_status(st);
    return out;
}

static PyObject *mod_all_of(PyObject *mod, PyObject *args) {
    (void)mod;
    PyObject *o = PyStructSequence_New(AllOfType);
    if (o == NULL)
        return NULL;
    Py_INCREF(args);
    PyStructSequence_SetItem(o, 0, args);
    return o;
}

static PyObject *index_save(IndexObject *self, PyObject *args, PyObject *kw) {
    static const char *const kwlist[] = {"path", NULL};
    PyObject *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&", (char **)kwlist, PyUnicode_FSConverter, &path))
        return NULL;
    if (check_open(self) < 0) {
        Py_DECREF(path);
        return NULL;
    }
    const char *cpath = PyBytes_AS_STRING(path);
    rotor_status st;
    GIL_RELEASE();
    pthread_rwlock_rdlock(&self->lock);
    st = self->ix ? rotor_index_save(self->ix, cpath) : ROTOR_ERR_INVALID_ARGUMENT;
    pthread_rwlock_unlock(&self->lock);
    GIL_ACQUIRE();
    Py_DECREF(path);
    return done_or_raise(self, st);
}

static PyObject *index_sync(IndexObject *self, PyObject *unused) {
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    rotor_status st;
    /* A reader's lock: searches go on while the disk flushes. */
    GIL_RELEASE();
    pthread_rwlock_rdlock(&self->lock);
    st = self->ix ? rotor_index_sync(self->ix) : ROTOR_ERR_INVALID_ARGUMENT;
    pthread_rwlock_unlock(&self->lock);
    GIL_ACQUIRE();
    return done_or_raise(self, st);
}

static PyObject *index_close(IndexObject *self, PyObject *unused) {
    (void)unused;
    rotor_index *ix;
    GIL_RELEASE();
    pthread_rwlock_wrlock(&self->lock);
    ix = self->ix;
    self->ix = NULL;
    pthread_rwlock_unlock(&self->lock);
    rotor_index_close(ix);
    GIL_ACQUIRE();
    Py_RETURN_NONE;
}

static PyObject *index_enter(IndexObject *self, PyObject *unused) {
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *index_exit(IndexObject *self, PyObject *args) {
    (void)args;
    return index_close(self, NULL);
}

static int get_stats(IndexObject *self, rotor_index_stats *s) {
    if (check_open(self) < 0)
        return -1;
    /* Reading stats races only with add and close, which hold the write
     * lock; the call is short, so it is made with the GIL held. */
    read_lock_holding_gil(self);
    rotor_status st = self->ix ? rotor_index_stats_get(self->ix, s) : ROTOR_ERR_INVALID_ARGUMENT;
    pthread_rwlock_unlock(&self->lock);
    if (st != ROTOR_OK) {
        if (check_open(self) < 0)
            return -1;
        raise_status(st);
        return -1;
    }
    return 0;
}

static PyObject *index_stats(IndexObject *self, PyObject *unused) {
    (void)unused;
    rotor_index_stats s;
    if (get_stats(self, &s) < 0)
        return NULL;
    return Py_BuildValue(
        "{s:s,s:s,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:d,s:n,s:s,s:s,s:O,s:O,s:O,s:n,s:s,s:O,s:O,s:I,s:n,"
        "s:n,"
        "s:n,s:n,s:n,s:O,s:n,s:n,s:n,s:n,s:n,s:O,s:n,s:n,s:n,s:n,s:n,s:n,s:n}",
        "kind", rotor_index_kind_name(s.kind), "metric", rotor_metric_name(s.metric), "count",
        (Py_ssize_t)s.count, "dim", (Py_ssize_t)s.dim, "bytes_vectors", (Py_ssize_t)s.bytes_vectors,
        "bytes_codes", (Py_ssize_t)s.bytes_codes, "code_bytes", (Py_ssize_t)s.code_bytes,
        "bytes_graph", (Py_ssize_t)s.bytes_graph, "bytes_graph_codes",
        (Py_ssize_t)s.bytes_graph_codes, "train_seconds", s.train_seconds, "bytes_total",
        (Py_ssize_t)s.bytes_total, "quant", s.quant, "walk_quant", s.walk_quant, "mapped",
        s.mapped ? Py_True : Py_False, "copied", s.copied ? Py_True : Py_False, "vectors_on_disk",
        s.vectors_on_disk ? Py_True : Py_False, "bytes_vectors_disk",
        (Py_ssize_t)s.bytes_vectors_disk, "io_backend", s.io_backend, "direct_io",
        s.direct_io ? Py_True : Py_False, "io_fallback", s.io_fallback ? Py_True : Py_False,
        "graph_degree", (unsigned)s.graph_degree, "start_points", (Py_ssize_t)s.start_points,
        "start_groups", (Py_ssize_t)s.start_groups, "labelled", (Py_ssize_t)s.labelled, "labels",
        (Py_ssize_t)s.labels, "bytes_labels", (Py_ssize_t)s.bytes_labels, "user_keys",
        s.user_keys ? Py_True : Py_False, "bytes_keys", (Py_ssize_t)s.bytes_keys, "slots",
        (Py_ssize_t)s.slots, "deleted", (Py_ssize_t)s.deleted, "unconsolidated",
        (Py_ssize_t)s.unconsolidated, "free_slots", (Py_ssize_t)s.free_slots, "writable",
        s.writable ? Py_True : Py_False, "log_records", (Py_ssize_t)s.log_records, "log_bytes",
        (Py_ssize_t)s.log_bytes, "log_skipped", (Py_ssize_t)s.log_skipped, "log_tail_bytes",
        (Py_ssize_t)s.log_tail_bytes, "graph_on_disk", (Py_ssize_t)s.graph_on_disk, "graph_cached",
        (Py_ssize_t)s.graph_cached, "build_shards", (Py_ssize_t)s.build_shards);
}

/* Keys of any number (one int, a sequence, an array). */
static int any_keys_from(PyObject *obj, PyArrayObject **arr, const int64_t **out, size_t *n) {
    PyObject *raw = PyArray_FromAny(obj, NULL, 0, 1, 0, NULL);
    if (raw == NULL)
        return -1;
    *n = (size_t)PyArray_SIZE((PyArrayObject *)raw);
    Py_DECREF(raw);
    return keys_from(obj, *n, arr, out);
}

static PyObject *index_remove(IndexObject *self, PyObject *keys_obj) {
    if (check_open(self) < 0)
        return NULL;
    PyArrayObject *arr;
    const int64_t *keys;
    size_t n;
    if (keys_obj == Py_None) {
        PyErr_SetString(PyExc_TypeError, "keys must be integers, not None");
        return NULL;
    }
    if (any_keys_from(keys_obj, &arr, &keys, &n) < 0)
        return NULL;
    rotor_status st;
    GIL_RELEASE();
    write_begin(self);
    st = self->ix ? rotor_index_remove(self->ix, keys, n) : ROTOR_ERR_INVALID_ARGUMENT;
    write_end(self);
    GIL_ACQUIRE();
    Py_XDECREF(arr);
    return done_or_raise(self, st);
}

static PyObject *index_update(IndexObject *self, PyObject *args, PyObject *kw) {
    static const char *const kwlist[] = {"keys", "x", NULL};
    PyObject *keys_obj, *x;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", (char **)kwlist, &keys_obj, &x) ||
        check_open(self) < 0)
        return NULL;
    matrix_in mi;
    if (matrix_from(x, "vectors", ACCEPT_BYTES, &mi) < 0)
        return NULL;
    PyArrayObject *arr;
    const int64_t *keys;
    if (keys_obj == Py_None) {
        matrix_in_release(&mi);
        PyErr_SetString(PyExc_TypeError, "keys must be integers, not None");
        return NULL;
    }
    if (keys_from(keys_obj, mi.m.rows, &arr, &keys) < 0) {
        matrix_in_release(&mi);
        return NULL;
    }
    rotor_status st;
    GIL_RELEASE();
    write_begin(self);
    st = self->ix ? rotor_index_update(self->ix, &mi.m, keys) : ROTOR_ERR_INVALID_ARGUMENT;
    write_end(self);
    GIL_ACQUIRE();
    Py_XDECREF(arr);
    matrix_in_release(&mi);
    return done_or_raise(self, st);
}

static PyObject *index_consolidate(IndexObject *self, PyObject *unused) {
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    rotor_status st;
    GIL_RELEASE();
    write_begin(self);
    st = self->ix ? rotor_index_consolidate(self->ix) : ROTOR_ERR_INVALID_ARGUMENT;
    write_end(self);
    GIL_ACQUIRE();
    return done_or_raise(self, st);
}

static PyObject *index_reconstruct(IndexObject *self, PyObject *arg) {
    long long id = PyLong_AsLongLong(arg);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    if (check_open(self) < 0)
        return NULL;
    npy_intp shape[1] = {(npy_intp)self->dim};
    PyObject *out = PyArray_SimpleNew(1, shape, NPY_FLOAT32);
    if (out == NULL)
        return NULL;
    read_lock_holding_gil(self);
    rotor_status st = self->ix ? rotor_index_reconstruct(self->ix, (int64_t)id,
                                                         PyArray_DATA((PyArrayObject *)out))
                               : ROTOR_ERR_INVALID_ARGUMENT;
    pthread_rwlock_unlock(&self->lock);
    if (st != ROTOR_OK) {
        Py_DECREF(out);
        if (check_open(self) < 0)
            return NULL;
        return raise_status(st);
    }
    return out;
}

/* A key as Python gives it: an int (a numpy integer included). */
static int key_arg(PyObject *arg, int64_t *key) {
    PyObject *i = PyNumber_Index(arg);
    if (i == NULL)
        return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(i, &overflow);
    Py_DECREF(i);
    if (v == -1 && PyErr_Occurred())
        return -1;
    /* Past int64 no vector has the key: the smallest negative stands for it. */
    *key = overflow != 0 ? INT64_MIN : (int64_t)v;
    return 0;
}

static int index_contains_key(IndexObject *self, PyObject *arg) {
    int64_t key;
    if (key_arg(arg, &key) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return -1;
        PyErr_Clear(); /* `"a" in index` is False, as for any container */
        return 0;
    }
    if (check_open(self) < 0)
        return -1;
    read_lock_holding_gil(self);
    int found = 0;
    rotor_status st =
        self->ix ? rotor_index_contains(self->ix, key, &found) : ROTOR_ERR_INVALID_ARGUMENT;
    pthread_rwlock_unlock(&self->lock);
    if (st != ROTOR_OK) {
        if (check_open(self) < 0)
            return -1;
        raise_status(st);
        return -1;
    }
    return found;
}

static PyObject *index_contains(IndexObject *self, PyObject *arg) {
    int64_t key;
    if (key_arg(arg, &key) < 0)
        return NULL;
    int found = index_contains_key(self, arg);
    if (found < 0)
        return NULL;
    return PyBool_FromLong(found);
}

static PyObject *index_get(IndexObject *self, PyObject *arg) {
    int64_t key;
    if (key_arg(arg, &key) < 0 || check_open(self) < 0)
        return NULL;
    npy_intp shape[1] = {(npy_intp)self->dim};
    PyObject *out = PyArray_SimpleNew(1, shape, NPY_FLOAT32);
    if (out == NULL)
        return NULL;
    rotor_status st;
    /* Vectors on disk are read from the file: without the GIL. */
    GIL_RELEASE();
    pthread_rwlock_rdlock(&self->lock);
    st = self->ix ? rotor_index_get(self->ix, key, PyArray_DATA((PyArrayObject *)out))
                  : ROTOR_ERR_INVALID_ARGUMENT;
    pthread_rwlock_unlock(&self->lock);
    GIL_ACQUIRE();
    if (st != ROTOR_OK) {
        Py_DECREF(out);
        if (check_open(self) < 0)
            return NULL;
        if (st == ROTOR_ERR_NOT_FOUND || st == ROTOR_ERR_INVALID_ARGUMENT) {
            /* A mapping's KeyError carries the key, not a sentence. */
            PyObject *k = PyLong_FromLongLong((long long)key);
            if (k != NULL)
                PyErr_SetObject(status_exc[ROTOR_ERR_NOT_FOUND], k);
            Py_XDECREF(k);
            return NULL;
        }
        return raise_status(st);
    }
    return out;
}

static Py_ssize_t index_len(IndexObject *self) {
    rotor_index_stats s;
    if (get_stats(self, &s) < 0)
        return -1;
    return (Py_ssize_t)s.count;
}

static PyObject *index_get_dim(IndexObject *self, void *closure) {
    (void)closure;
    if (check_open(self) < 0)
        return NULL;
    return PyLong_FromSize_t(self->dim);
}

static PyObject *index_get_metric(IndexObject *self, void *closure) {
    (void)closure;
    rotor_index_stats s;
    if (get_stats(self, &s) < 0)
        return NULL;
    return PyUnicode_FromString(rotor_metric_name(s.metric));
}

static PyObject *index_get_kind(IndexObject *self, void *closure) {
    (void)closure;
    rotor_index_stats s;
    if (get_stats(self, &s) < 0)
        return NULL;
    return PyUnicode_FromString(rotor_index_kind_name(s.kind));
}

static PyObject *index_get_quant(IndexObject *self, void *closure) {
    (void)closure;
    rotor_index_stats s;
    if (get_stats(self, &s) < 0)
        return NULL;
    if (strcmp(s.quant, "none") == 0)
        Py_RETURN_NONE;
    return PyUnicode_FromString(s.quant);
}

static PyObject *index_get_closed(IndexObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->ix == NULL);
}

static PyObject *index_repr(IndexObject *self) {
    if (self->ix == NULL)
        return PyUnicode_FromString("<rotor.Index (closed)>");
    rotor_index_stats s;
    if (get_stats(self, &s) < 0)
        return NULL;
    return PyUnicode_FromFormat("<rotor.Index %s, %zu x %zu, metric %s, quant %s%s%s>",
                                rotor_index_kind_name(s.kind), s.count, s.dim,
                                rotor_metric_name(s.metric), s.quant,
                                s.walk_quant[0] ? ", walking " : "", s.walk_quant);
}

/* ---- docstrings ---------------------------------------------------------------- */

PyDoc_STRVAR(
    build_doc,
    "build(x, *, metric='l2', kind='flat', quant=None, threads=0, progress=False, seed=42,\n"
    "      degree=None, build_list=None, alpha=None, neighbor_codes=None, build_space=None,\n"
    "      walk_quant=None, nlist=None, full_vectors=None, target_recall=None, labels=None,\n"
    "      keys=None, ram_budget=None, build_memory=None)\n"
    "--\n\n"
    "Build an index over the rows of x.\n\n"
    "x        (n, d) array of vectors. float32 C-contiguous arrays are read in place;\n"
    "         uint8 and int8 go to the library as they are (it converts them);\n"
    "         float64, float16, strided views and lists are copied to float32 first.\n"
    "         Other integer types raise TypeError. NaN or infinity raises NotFiniteError.\n"
    "metric   'l2' (squared Euclidean), 'ip' (negated inner product) or 'cosine'\n"
    "         (1 - cos; the index keeps normalised copies).\n"
    "kind     'flat' (every vector scanned), 'vamana' (proximity graph) or 'ivf'\n"
    "         (k-means partitions; needs quant).\n"
    "quant    None for full precision, or a quantizer spec: 'tq1'..'tq8', 'tqip2'..'tqip8',\n"
    "         'bin1', 'bin2', 'bin1fs', 'bin2fs', 'sq8', 'pq<M>', 'pq<M>x4'. 'auto' (the\n"
    "         default) measures a few on a sample of x and keeps the cheapest that\n"
    "         reaches target_recall (a flat index stays exact); None: full precision.\n"
    "target_recall  quant='auto': the recall@10 the chosen codes must reach (0.95).\n"
    "threads  build threads; 0 = one per core. A vamana build is bit-for-bit repeatable\n"
    "         with threads=1 and the same seed.\n"
    "progress False, True (a bar on stderr when it is a terminal) or a callable\n"
    "         f(done, total); a callable returning True stops the build (InvalidArgument).\n"
    "         Graph builds report progress; Ctrl-C stops them cleanly with\n"
    "         KeyboardInterrupt whatever this is.\n"
    "degree, build_list, alpha, neighbor_codes, build_space ('full'|'codes'), walk_quant:\n"
    "         vamana build settings (R, L, alpha; see rotor.h). nlist: IVF partitions.\n"
    "full_vectors  'ram' or 'disk': where an index saved from this one keeps its full\n"
    "         vectors when opened (disk needs quant).\n"
    "labels   an item per row: an int, a sequence of ints (non-negative) or None: the\n"
    "         labels search(filter=...) selects on; kept in saved files.\n"
    "keys     None (the row numbers) or one int64 key per row, which searches return:\n"
    "         non-negative, no key twice (InvalidArgument otherwise).\n"
    "ram_budget  vamana: the most bytes a search of the saved index keeps in RAM; the\n"
    "         file then also holds the graph's records beside the full vectors, and an\n"
    "         open under the budget reads them from disk (see open()).\n"
    "build_memory  vamana: the most bytes the graph's build may use; a build that needs\n"
    "         more is split into overlapping shards built one at a time and merged\n"
    "         (stats()['build_shards'] says how many; the README gives the formula).\n\n"
    "The GIL is released while the index is built.");

PyDoc_STRVAR(open_doc,
             "open(path, *, vectors=None, io=None, direct_io=None, verify=False, load=None,\n"
             "     writable=False, sync_each_change=False, ram_budget=None)\n"
             "--\n\n"
             "Open an index file written by Index.save.\n\n"
             "vectors    None (as saved), 'ram' (mapped) or 'disk' (the rerank reads the few\n"
             "           full vectors it scores from the file; needs a quantized index).\n"
             "io         'auto', 'uring' or 'pread': how vectors on disk are read.\n"
             "direct_io  None (O_DIRECT where allowed), False, or True (fail without it).\n"
             "verify     hash every section before returning.\n"
             "load       True: read the index into memory (huge pages), never map it;\n"
             "           False: map it; None: map it, then copy the graph, codes and\n"
             "           vectors into memory when they fit in half the available RAM\n"
             "           (stats()['copied'] says whether it did; searches 4-14 % faster).\n"
             "writable   changes go to the file: each add, update, remove and set_labels is\n"
             "           appended to its update log before it returns (surviving the\n"
             "           process), and sync() makes them survive a power loss; every open\n"
             "           replays the log. One writable open per file at a time (IoError).\n"
             "sync_each_change  with writable: sync each change before it returns.\n"
             "ram_budget  vamana: the most bytes the graph and codes keep in RAM: None (the\n"
             "           build's budget, none if it had none), a byte count, or 'unlimited'.\n"
             "           Under a budget too small for the graph (a file built with one) the\n"
             "           records are read from disk as searches expand them.\n\n"
             "Raises FormatError, CorruptFile, Unsupported or IoError for a file it cannot "
             "use.\nThe GIL is released while the file is opened.");

PyDoc_STRVAR(sync_doc,
             "sync()\n--\n\n"
             "Flush the changes made so far to disk (fdatasync), for an index opened with\n"
             "writable=True: every change that returned before the call then survives a\n"
             "power loss. Changes survive the process's end (a crash, kill -9) as soon as\n"
             "their call returns, sync or not. Unsupported for an index not opened writable\n"
             "(its changes stay in memory until save). After an IoError here the index takes\n"
             "no more changes until it is saved over its file. save(path) over the file\n"
             "folds the log into it. The GIL is released; searches go on meanwhile.");

PyDoc_STRVAR(
    search_doc,
    "search(q, k=10, *, list_size=None, rerank=None, refine=None, nprobe=None, starts=None,\n"
    "       threads=0, recall=None, filter=None, allow=None, beam_width=None,\n"
    "       max_neighbors=None)\n"
    "--\n\n"
    "Find the k nearest neighbours of each query.\n\n"
    "q          one query of shape (d,) or a batch of shape (n, d). A float32 C-contiguous\n"
    "           array is read in place; uint8 and int8 batches go to the library as they\n"
    "           are; float64, float16, strided views and lists are copied to float32.\n"
    "k          neighbours per query, at least 1. Rows are padded with id -1 and\n"
    "           distance +inf when k exceeds the index size.\n"
    "list_size  vamana: the beam search's candidate list L (default max(k, 64)).\n"
    "rerank     quantized indexes: candidates scored again on full vectors (default\n"
    "           10 * k; 0 returns the code estimates).\n"
    "refine     vamana with walk_quant: walk candidates estimated again (default 4 x\n"
    "           rerank).\n"
    "nprobe     ivf: partitions scanned per query (default 16).\n"
    "starts     quantized vamana: sampled starting points scored first (default 256).\n"
    "max_neighbors  vamana: read only the first this many of each node's neighbours,\n"
    "           those its prune chose first (default all; recall= takes it from the\n"
    "           calibration table).\n"
    "beam_width  a graph on disk: record reads in flight (default 4, at most 64).\n"
    "threads    batch searches: worker threads, 0 = one per core.\n"
    "recall     a target recall instead of the settings above: the cheapest\n"
    "           setting of the index's calibration table (measured at build or by\n"
    "           rotor tune) that reaches it; settings given explicitly still win.\n"
    "           rotor.Unsupported when the index cannot promise it.\n"
    "filter     only vectors carrying a label: 3, any of [3, 7], or all of\n"
    "           rotor.all_of(3, 7). Checked inside the search (a graph walks through\n"
    "           the others); when few pass, they are scanned instead.\n"
    "allow      only these ids: a boolean mask over ids or an array of ids (with\n"
    "           filter, both must hold). A filter nothing passes returns ids -1.\n\n"
    "Returns (ids, distances): int64 and float32 arrays of shape (n, k), n = 1 for a\n"
    "single query, ids the vectors' keys (row numbers unless keys were given),\n"
    "each row sorted by increasing distance (squared L2, negated inner\n"
    "product, or 1 - cosine).\n\n"
    "Raises DimensionError (a ValueError) when d differs from the index's, NotFiniteError\n"
    "for NaN or infinity, InvalidArgument for k < 1, TypeError for a dtype that is not\n"
    "a vector. The GIL is released during the search; a batch runs on the library's\n"
    "threads, and any number of Python threads may search one index at once.");

PyDoc_STRVAR(
    add_doc,
    "add(x, *, labels=None, keys=None)\n--\n\n"
    "Add the rows of x (same dtype rules as build); labels as in build; keys one int64 "
    "per row,\nor None: each row takes the number of the slot it lands in (the row numbers "
    "continued,\nbut after removals the slots consolidation freed come first, so an index "
    "that removes\nshould be given keys). A negative key, a key given twice or one the index "
    "holds raises\nInvalidArgument. The rows and their labels are one change (one record of a "
    "writable\nindex's file). On failure the index is unchanged. An index opened with "
    "vectors on disk\ncannot take adds. The GIL is released; searches from other threads go "
    "on beside it.");

PyDoc_STRVAR(remove_doc,
             "remove(keys)\n--\n\n"
             "Remove the vectors with these keys (an int, or a sequence or array of ints): no "
             "search\nreturns them from now on, `key in index` is False, and the keys may be "
             "added again.\nAll or nothing: a key no vector has raises KeyNotFound (a KeyError), "
             "a key given twice\nor a negative one InvalidArgument, and the index is unchanged. "
             "The graph is repaired\naround removed vectors once they pass 5 % of the index "
             "(see consolidate), and\nthe slots it frees take the next adds, so the index does not "
             "grow under churn. The GIL\nis released; searches from other threads go on "
             "beside it.");

PyDoc_STRVAR(update_doc,
             "update(keys, x)\n--\n\n"
             "Replace the vectors with these keys by the rows of x (one key per row, each in the "
             "index\nand given once): a remove and an add under the same keys. On any failure "
             "(KeyNotFound,\nInvalidArgument, DimensionError, NotFiniteError) the index is "
             "unchanged. The new vectors\ncarry no labels. The GIL is released.");

PyDoc_STRVAR(consolidate_doc,
             "consolidate()\n--\n\n"
             "Repair the index around the vectors removed since the last consolidation "
             "(FreshDiskANN):\na graph re-links the nodes that pointed at them, an IVF index "
             "takes them out of its lists.\nSearches never return removed vectors either way; "
             "this stops them spending work on\nthem. remove and update run it once removed "
             "vectors pass 5 % of the index. The GIL is\nreleased.");

PyDoc_STRVAR(save_doc, "save(path)\n--\n\n"
                       "Write the index to path: into a temporary file beside it, flushed and "
                       "renamed, so path\nholds the old file or the new one, never a part. "
                       "Every section is checksummed.\nAn index opened writable saved over its "
                       "own file folds its update log in and goes on\nwriting to the new file; "
                       "a file another writable index holds is refused (IoError).\n"
                       "The GIL is released while it writes.");

PyDoc_STRVAR(close_doc, "close()\n--\n\n"
                        "Release the index now (also done when it is garbage-collected, or on "
                        "leaving a with block).\nLater calls raise ValueError.");

PyDoc_STRVAR(stats_doc, "stats()\n--\n\n"
                        "What the index holds: kind, metric, count (live vectors, len(index)), "
                        "slots (vectors\nstored, removed ones included), deleted, "
                        "unconsolidated, dim, bytes per part "
                        "(vectors, codes, graph,\ngraph codes, total), the quantizer, whether it "
                        "is mapped from a file and whether its graph, codes and vectors were "
                        "copied out of it, whether its vectors\nare on disk and how they "
                        "are read, the graph degree and the sampled starting points; for an "
                        "index opened\nfrom a file, its update log: writable, log_records, "
                        "log_bytes, log_skipped, log_tail_bytes.");

PyDoc_STRVAR(reconstruct_doc, "reconstruct(id)\n--\n\n"
                              "The index's copy of the vector with key id (float32, shape (d,)): "
                              "the stored vector or,\nfor a quantized index, the decoded code. "
                              "Cosine indexes hold normalised vectors.\nKeyNotFound (a "
                              "KeyError) when no vector has the key.");

PyDoc_STRVAR(contains_doc, "contains(key)\n--\n\n"
                           "True when a vector has this key; the same as `key in index`.");

PyDoc_STRVAR(get_doc, "get(key)\n--\n\n"
                      "The full vector stored under key (float32, shape (d,); normalised for "
                      "cosine), read from\nthe file when the vectors stay on disk. KeyNotFound "
                      "(a KeyError) when no vector has it.");

static PyMethodDef index_methods[] = {
    {"build", (PyCFunction)(void (*)(void))index_build, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     build_doc},
    {"open", (PyCFunction)(void (*)(void))index_open, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     open_doc},
    {"search", (PyCFunction)(void (*)(void))index_search, METH_FASTCALL | METH_KEYWORDS,
     search_doc},
    {"add", (PyCFunction)(void (*)(void))index_add, METH_VARARGS | METH_KEYWORDS, add_doc},
    {"remove", (PyCFunction)index_remove, METH_O, remove_doc},
    {"update", (PyCFunction)(void (*)(void))index_update, METH_VARARGS | METH_KEYWORDS, update_doc},
    {"consolidate", (PyCFunction)index_consolidate, METH_NOARGS, consolidate_doc},
    {"set_labels", (PyCFunction)(void (*)(void))index_set_labels, METH_VARARGS | METH_KEYWORDS,
     "set_labels(ids, labels)\n--\n\nGives the vectors `ids` their labels (an item per id: an "
     "int, a sequence of ints or None), replacing what they carried; nothing changes on an "
     "error."},
    {"labels", (PyCFunction)index_labels, METH_O,
     "labels(id)\n--\n\nThe labels vector `id` carries, ascending."},
    {"save", (PyCFunction)(void (*)(void))index_save, METH_VARARGS | METH_KEYWORDS, save_doc},
    {"sync", (PyCFunction)index_sync, METH_NOARGS, sync_doc},
    {"close", (PyCFunction)index_close, METH_NOARGS, close_doc},
    {"stats", (PyCFunction)index_stats, METH_NOARGS, stats_doc},
    {"reconstruct", (PyCFunction)index_reconstruct, METH_O, reconstruct_doc},
    {"contains", (PyCFunction)index_contains, METH_O, contains_doc},
    {"get", (PyCFunction)index_get, METH_O, get_doc},
    {"__enter__", (PyCFunction)index_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)index_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef index_getset[] = {
    {"dim", (getter)index_get_dim, NULL, "dimensions of a vector", NULL},
    {"metric", (getter)index_get_metric, NULL, "'l2', 'ip' or 'cosine'", NULL},
    {"kind", (getter)index_get_kind, NULL, "'flat', 'vamana' or 'ivf'", NULL},
    {"quant", (getter)index_get_quant, NULL, "the quantizer spec, or None for full precision",
     NULL},
    {"closed", (getter)index_get_closed, NULL, "True after close()", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods index_as_sequence = {
    .sq_length = (lenfunc)index_len,
    .sq_contains = (objobjproc)index_contains_key,
};

PyDoc_STRVAR(index_doc,
             "A nearest-neighbour index: flat, vamana (graph) or ivf, over L2, inner product\n"
             "or cosine, optionally searched on compressed codes and reranked on full vectors.\n\n"
             "Made by Index.build(x, ...) or Index.open(path). len(index) is the number of\n"
             "vectors. Every vector has a key, a non-negative int64: build(x, keys=...) and\n"
             "add(x, keys=...) give them, by default row numbers in the order vectors were\n"
             "built and added. Searches return keys; `key in index`, get(key).\n"
             "Any number of threads may search one index at once; add() waits for them.");

static PyTypeObject IndexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rotor.Index",
    .tp_basicsize = sizeof(IndexObject),
    .tp_dealloc = (destructor)index_dealloc,
    .tp_repr = (reprfunc)index_repr,
    .tp_as_sequence = &index_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = index_doc,
    .tp_methods = index_methods,
    .tp_getset = index_getset,
    .tp_new = index_new,
};

/* ---- module functions -------------------------------------------------------- */

static void matrix_capsule_free(PyObject *cap) {
    rotor_matrix *m = PyCapsule_GetPointer(cap, "rotor.matrix");
    if (m != NULL) {
        rotor_matrix_free(m);
        PyMem_Free(m);
    }
}

/* Hands a matrix filled by rotor to NumPy without a copy: the array's base
 * is a capsule that frees it. Takes ownership of *m. */
static PyObject *matrix_to_array(rotor_matrix *m) {
    int type;
    switch (m->type) {
    case ROTOR_ELEM_U8: type = NPY_UINT8; break;
    case ROTOR_ELEM_I8: type = NPY_INT8; break;
    case ROTOR_ELEM_I32: type = NPY_INT32; break;
    default: type = NPY_FLOAT32; break;
    }
    rotor_matrix *own = PyMem_Malloc(sizeof *own);
    if (own == NULL) {
        rotor_matrix_free(m);
        return PyErr_NoMemory();
    }
    *own = *m;
    PyObject *cap = PyCapsule_New(own, "rotor.matrix", matrix_capsule_free);
    if (cap == NULL) {
        rotor_matrix_free(own);
        PyMem_Free(own);
        return NULL;
    }
    npy_intp shape[2] = {(npy_intp)own->rows, (npy_intp)own->cols};
    PyObject *arr = PyArray_SimpleNewFromData(2, shape, type, own->data);
    if (arr == NULL || PyArray_SetBaseObject((PyArrayObject *)arr, cap) < 0) {
        Py_XDECREF(arr);
        Py_DECREF(cap);
        return NULL;
    }
    return arr;
}

PyDoc_STRVAR(read_vectors_doc,
             "read_vectors(path, *, max_rows=0, dtype=None)\n"
             "--\n\n"
             "Read a data set file, in any format the rotor tool reads: .fvecs .ivecs .bvecs,\n"
             ".fbin .u8bin .i8bin .ibin, .npy, and (Fashion-)MNIST IDX files, gzip-compressed\n"
             "or not. Returns a 2-D array in the file's element type (float32, uint8, int8\n"
             "or int32), or float32 with dtype=numpy.float32. max_rows > 0 reads at most that\n"
             "many rows. Malformed files raise FormatError naming the file and the fault.");

static PyObject *mod_read_vectors(PyObject *mod, PyObject *args, PyObject *kw) {
    (void)mod;
    static const char *const kwlist[] = {"path", "max_rows", "dtype", NULL};
    PyObject *path = NULL, *dtype = NULL;
    Py_ssize_t max_rows = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|$nO", (char **)kwlist, PyUnicode_FSConverter,
                                     &path, &max_rows, &dtype))
        return NULL;
    int as = -1;
    if (dtype != NULL && dtype != Py_None) {
        PyArray_Descr *d = NULL;
        if (!PyArray_DescrConverter(dtype, &d)) {
            Py_DECREF(path);
            return NULL;
        }
        int t = d->type_num;
        Py_DECREF(d);
        if (t != NPY_FLOAT32) {
            Py_DECREF(path);
            PyErr_SetString(PyExc_TypeError,
                            "read_vectors converts only to float32 (dtype=numpy.float32)");
            return NULL;
        }
        as = ROTOR_ELEM_F32;
    }
    if (max_rows < 0) {
        Py_DECREF(path);
        PyErr_SetString(PyExc_ValueError, "max_rows must be 0 (every row) or positive");
        return NULL;
    }
    rotor_matrix m = {0};
    rotor_status st;
    const char *cpath = PyBytes_AS_STRING(path);
    GIL_RELEASE();
    st = rotor_matrix_read(cpath, as, (size_t)max_rows, &m);
    GIL_ACQUIRE();
    Py_DECREF(path);
    if (st != ROTOR_OK)
        return raise_status(st);
    return matrix_to_array(&m);
}

PyDoc_STRVAR(write_vectors_doc,
             "write_vectors(path, x)\n"
             "--\n\n"
             "Write a 2-D array in the format named by the extension of path (.fvecs .ivecs\n"
             ".bvecs .fbin .u8bin .i8bin .ibin .npy; not IDX). x may be float32, uint8, int8\n"
             "or int32 (as the format holds); float64 is written as float32. The file is\n"
             "written under a temporary name and renamed, so it appears whole or not at all.");

static PyObject *mod_write_vectors(PyObject *mod, PyObject *args, PyObject *kw) {
    (void)mod;
    static const char *const kwlist[] = {"path", "x", NULL};
    PyObject *path = NULL, *x = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&O", (char **)kwlist, PyUnicode_FSConverter, &path,
                                     &x))
        return NULL;
    matrix_in mi;
    if (matrix_from(x, "x", ACCEPT_BYTES | ACCEPT_I32, &mi) < 0) {
        Py_DECREF(path);
        return NULL;
    }
    if (mi.ndim != 2) {
        matrix_in_release(&mi);
        Py_DECREF(path);
        PyErr_SetString(PyExc_ValueError, "x must be a 2-D array (rows, columns)");
        return NULL;
    }
    rotor_status st;
    const char *cpath = PyBytes_AS_STRING(path);
    GIL_RELEASE();
    st = rotor_matrix_write(cpath, &mi.m);
    GIL_ACQUIRE();
    matrix_in_release(&mi);
    Py_DECREF(path);
    if (st != ROTOR_OK)
        return raise_status(st);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(ground_truth_doc,
             "ground_truth(base, queries, k=100, metric='l2', *, threads=0)\n"
             "--\n\n"
             "The exact k nearest rows of base for each query, by a full scan (what\n"
             "`rotor gt` computes): int64 ids and float32 distances of shape (n, k).\n"
             "Same dtype rules as Index.build. The GIL is released.");

static PyObject *mod_ground_truth(PyObject *mod, PyObject *args, PyObject *kw) {
    (void)mod;
    static const char *const kwlist[] = {"base", "queries", "k", "metric", "threads", NULL};
    PyObject *base = NULL, *queries = NULL, *metric = NULL, *threads_obj = NULL;
    Py_ssize_t k = 100;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|nO$O", (char **)kwlist, &base, &queries, &k,
                                     &metric, &threads_obj))
        return NULL;
    rotor_params p = rotor_params_default();
    uint32_t threads = 0;
    if (parse_metric(metric, &p.metric) < 0 || opt_u32(threads_obj, "threads", &threads) < 0)
        return NULL;
    if (k < 1) {
        PyErr_Format(status_exc[ROTOR_ERR_INVALID_ARGUMENT], "k must be at least 1, not %zd", k);
        return NULL;
    }
    p.threads = threads;
    matrix_in mb, mq;
    if (matrix_from(base, "base", ACCEPT_BYTES, &mb) < 0)
        return NULL;
    if (matrix_from(queries, "queries", ACCEPT_BYTES, &mq) < 0) {
        matrix_in_release(&mb);
        return NULL;
    }
    npy_intp shape[2] = {(npy_intp)mq.m.rows, (npy_intp)k};
    PyObject *ids = PyArray_SimpleNew(2, shape, NPY_INT64);
    PyObject *dist = ids ? PyArray_SimpleNew(2, shape, NPY_FLOAT32) : NULL;
    if (dist == NULL) {
        Py_XDECREF(ids);
        matrix_in_release(&mb);
        matrix_in_release(&mq);
        return NULL;
    }
    rotor_search_params sp = rotor_search_params_default();
    sp.threads = threads;
    rotor_index *ix = NULL;
    rotor_status st;
    GIL_RELEASE();
    st = rotor_index_build(&p, &mb.m, &ix);
    if (st == ROTOR_OK)
        st = rotor_index_search_batch(ix, &sp, &mq.m, (size_t)k, PyArray_DATA((PyArrayObject *)ids),
                                      PyArray_DATA((PyArrayObject *)dist));
    rotor_index_close(ix);
    GIL_ACQUIRE();
    matrix_in_release(&mb);
    matrix_in_release(&mq);
    if (st != ROTOR_OK) {
        Py_DECREF(ids);
        Py_DECREF(dist);
        return raise_status(st);
    }
    return Py_BuildValue("(NN)", ids, dist);
}

PyDoc_STRVAR(build_file_doc,
             "build_file(input, output, **build_options)\n"
             "--\n\n"
             "Build an index over the vectors of a data set file and save it to output,\n"
             "without holding the vectors in memory (they are streamed into a temporary file\n"
             "the build maps). Takes Index.build's keyword options. The GIL is released.");

static PyObject *mod_build_file(PyObject *mod, PyObject *args, PyObject *kw) {
    (void)mod;
    static const char *const kwlist[] = {
        "input",        "output",         "metric",      "kind",         "quant",
        "threads",      "progress",       "seed",        "degree",       "build_list",
        "alpha",        "neighbor_codes", "build_space", "walk_quant",   "nlist",
        "full_vectors", "target_recall",  "ram_budget",  "build_memory", NULL};
    PyObject *in = NULL, *out = NULL;
    build_args a = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&O&|$OOOOOOOOOOOOOOOOO", (char **)kwlist,
                                     PyUnicode_FSConverter, &in, PyUnicode_FSConverter, &out,
                                     &a.metric, &a.kind, &a.quant, &a.threads, &a.progress, &a.seed,
                                     &a.degree, &a.build_list, &a.alpha, &a.neighbor_codes,
                                     &a.build_space, &a.walk_quant, &a.nlist, &a.full_vectors,
                                     &a.target_recall, &a.ram_budget, &a.build_memory)) {
        Py_XDECREF(in);
        return NULL;
    }
    rotor_params p;
    params_keep keep;
    progress_state ps;
    PyObject *result = NULL;
    if (build_params(&a, &p, &keep) < 0)
        goto done;
    if (progress_setup(a.progress, &ps, &p) < 0) {
        params_keep_release(&keep);
        goto done;
    }
    rotor_status st;
    const char *cin = PyBytes_AS_STRING(in), *cout = PyBytes_AS_STRING(out);
    GIL_RELEASE();
    st = rotor_index_build_file(&p, cin, cout);
    GIL_ACQUIRE();
    params_keep_release(&keep);
    if (progress_finish(&ps, st) < 0)
        goto done;
    if (st != ROTOR_OK) {
        raise_status(st);
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    Py_DECREF(in);
    Py_DECREF(out);
    return result;
}

PyDoc_STRVAR(verify_doc, "verify(path)\n--\n\n"
                         "Check every byte of an index file: header, section checksums and "
                         "structure. Raises\nCorruptFile, FormatError or IoError on the first "
                         "fault. The GIL is released.");

static PyObject *mod_verify(PyObject *mod, PyObject *arg) {
    (void)mod;
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    rotor_status st;
    const char *cpath = PyBytes_AS_STRING(path);
    GIL_RELEASE();
    st = rotor_index_verify(cpath);
    GIL_ACQUIRE();
    Py_DECREF(path);
    if (st != ROTOR_OK)
        return raise_status(st);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(probe_doc, "probe(path)\n--\n\n"
                        "What a data set file holds, from its header: format, dtype, rows, "
                        "cols, compressed.");

static PyObject *mod_probe(PyObject *mod, PyObject *arg) {
    (void)mod;
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    rotor_file_info info;
    rotor_status st;
    const char *cpath = PyBytes_AS_STRING(path);
    GIL_RELEASE();
    st = rotor_file_probe(cpath, &info);
    GIL_ACQUIRE();
    Py_DECREF(path);
    if (st != ROTOR_OK)
        return raise_status(st);
    static const char *const types[] = {"float32", "uint8", "int8", "int32"};
    return Py_BuildValue("{s:s,s:s,s:n,s:n,s:O}", "format", rotor_file_format_name(info.format),
                         "dtype", (unsigned)info.type < 4 ? types[info.type] : "unknown", "rows",
                         (Py_ssize_t)info.rows, "cols", (Py_ssize_t)info.cols, "compressed",
                         info.compressed ? Py_True : Py_False);
}

static PyObject *mod_simd_level(PyObject *mod, PyObject *unused) {
    (void)mod;
    (void)unused;
    return PyUnicode_FromString(rotor_simd_level());
}

static PyMethodDef module_methods[] = {
    {"read_vectors", (PyCFunction)(void (*)(void))mod_read_vectors, METH_VARARGS | METH_KEYWORDS,
     read_vectors_doc},
    {"write_vectors", (PyCFunction)(void (*)(void))mod_write_vectors, METH_VARARGS | METH_KEYWORDS,
     write_vectors_doc},
    {"ground_truth", (PyCFunction)(void (*)(void))mod_ground_truth, METH_VARARGS | METH_KEYWORDS,
     ground_truth_doc},
    {"build_file", (PyCFunction)(void (*)(void))mod_build_file, METH_VARARGS | METH_KEYWORDS,
     build_file_doc},
    {"verify", (PyCFunction)mod_verify, METH_O, verify_doc},
    {"probe", (PyCFunction)mod_probe, METH_O, probe_doc},
    {"all_of", (PyCFunction)mod_all_of, METH_VARARGS,
     "all_of(*labels)\n--\n\nA search filter: only vectors carrying every one of these "
     "labels (search(q, filter=rotor.all_of(3, 7))); a list filter=[3, 7] wants any of them."},
    {"simd_level", (PyCFunction)mod_simd_level, METH_NOARGS,
     "simd_level()\n--\n\nThe instruction set the distance kernels run on: 'avx512', "
     "'avx2' or 'scalar'."},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
             "rotor: approximate nearest-neighbour search over dense vectors.\n\n"
             "    import numpy as np, rotor\n"
             "    ix = rotor.Index.build(x, metric='cosine', kind='vamana', quant='pq64x4')\n"
             "    ids, dist = ix.search(q, k=10)     # (n, k) int64 / float32\n"
             "    ix.save('ix.rotor'); ix2 = rotor.Index.open('ix.rotor', vectors='disk')\n\n"
             "Errors are rotor.Error subclasses, one per library status; those about the\n"
             "caller's input are also ValueError (DimensionError, NotFiniteError, EmptyError,\n"
             "InvalidArgument), file problems FormatError, CorruptFile, Unsupported and\n"
             "IoError (an OSError).");

static struct PyModuleDef rotor_module = {
    PyModuleDef_HEAD_INIT, "rotor", module_doc, -1, module_methods, NULL, NULL, NULL, NULL,
};

/* Creates one exception class; `extra` is a second base or NULL. */
static PyObject *add_exception(PyObject *m, const char *name, PyObject *extra, const char *doc) {
    char qual[64];
    snprintf(qual, sizeof qual, "rotor.%s", name);
    PyObject *bases = extra ? PyTuple_Pack(2, Error, extra) : PyTuple_Pack(1, Error);
    if (bases == NULL)
        return NULL;
    PyObject *cls = PyErr_NewExceptionWithDoc(qual, doc, bases, NULL);
    Py_DECREF(bases);
    if (cls == NULL || PyModule_AddObjectRef(m, name, cls) < 0) {
        Py_XDECREF(cls);
        return NULL;
    }
    return cls; /* the module and status_exc share it: one reference kept here */
}

PyMODINIT_FUNC PyInit_rotor(void) {
    import_array();
    for (int i = 0; i < SA_COUNT; i++) {
        search_names_obj[i] = PyUnicode_InternFromString(search_names[i]);
        if (search_names_obj[i] == NULL)
            return NULL;
    }
    AllOfType = PyStructSequence_NewType(&all_of_desc);
    if (AllOfType == NULL)
        return NULL;
    if (PyType_Ready(&IndexType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&rotor_module);
    if (m == NULL)
        return NULL;
    Error = PyErr_NewExceptionWithDoc(
        "rotor.Error", "Base class of every error the rotor library reports.", NULL, NULL);
    if (Error == NULL || PyModule_AddObjectRef(m, "Error", Error) < 0)
        goto fail;
    struct {
        rotor_status st;
        const char *name;
        PyObject *extra;
        const char *doc;
    } map[] = {
        {ROTOR_ERR_INVALID_ARGUMENT, "InvalidArgument", PyExc_ValueError,
         "A parameter is out of range."},
        {ROTOR_ERR_DIMENSION, "DimensionError", PyExc_ValueError,
         "A vector's dimension does not match the index's."},
        {ROTOR_ERR_NOT_FINITE, "NotFiniteError", PyExc_ValueError,
         "The input holds NaN or infinity."},
        {ROTOR_ERR_EMPTY, "EmptyError", PyExc_ValueError, "No vectors where some are required."},
        {ROTOR_ERR_OUT_OF_MEMORY, "OutOfMemory", PyExc_MemoryError,
         "An allocation failed; nothing was changed."},
        {ROTOR_ERR_IO, "IoError", PyExc_OSError, "The operating system refused a read or write."},
        {ROTOR_ERR_FORMAT, "FormatError", NULL, "A file is malformed, truncated or foreign."},
        {ROTOR_ERR_CORRUPT, "CorruptFile", NULL, "A checksum does not match."},
        {ROTOR_ERR_UNSUPPORTED, "Unsupported", NULL,
         "A valid request this build or index cannot serve (e.g. a newer file version)."},
        {ROTOR_ERR_THREAD, "ThreadError", PyExc_RuntimeError,
         "A worker thread could not be started."},
        {ROTOR_ERR_CANCELLED, "Cancelled", NULL, "The progress callback asked the work to stop."},
        {ROTOR_ERR_NOT_FOUND, "KeyNotFound", PyExc_KeyError,
         "No vector of the index has the key asked for."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        status_exc[map[i].st] = add_exception(m, map[i].name, map[i].extra, map[i].doc);
        if (status_exc[map[i].st] == NULL)
            goto fail;
    }
    if (PyModule_AddObjectRef(m, "AllOf", (PyObject *)AllOfType) < 0)
        goto fail;
    Py_INCREF(&IndexType);
    if (PyModule_AddObject(m, "Index", (PyObject *)&IndexType) < 0) {
        Py_DECREF(&IndexType);
        goto fail;
    }
    if (PyModule_AddStringConstant(m, "__version__", rotor_version_string()) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
