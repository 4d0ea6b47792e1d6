/*
 * The rotor command-line tool. It sees the library through include/rotor.h
 * only: whatever it needs that the header lacks is an API gap to close, not a
 * reason to reach into the library's internals.
 */
#ifndef ROTOR_CLI_H
#define ROTOR_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rotor.h"

/* Exit codes: 0 success, 1 the work failed (bad data, I/O), 2 bad usage. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

/* --starts: the most sampled starting points a search may score, as
 * rotor_search_params.start_points allows; the help text prints it. */
#define CLI_MAX_STARTS 16384
#define CLI_MAX_STARTS_TEXT "16384"
/* --rerank-window: at most rotor_search_params.rerank_window allows. */
#define CLI_MAX_RERANK_WINDOW 64
#define CLI_MAX_RERANK_WINDOW_TEXT "64"

/* --filter "3|7|9": the most labels one filter names. */
#define CLI_MAX_FILTER_LABELS 64

/* The values of --sweep: "L=10,20" (or "list="), "nprobe=1,2", "rerank=16,32",
 * or a navigator list and a rerank list joined by ';', which measures every
 * pair. */
typedef struct cli_sweep_list {
    size_t n;
    unsigned v[256];
} cli_sweep_list;

typedef struct cli_sweep {
    bool nprobe;              /* the navigator list is nprobe, else the candidate list */
    cli_sweep_list nav;       /* n = 0: the --list / --nprobe value */
    cli_sweep_list neighbors; /* n = 0: the --neighbors value */
    cli_sweep_list starts;    /* n = 0: the --starts value */
    cli_sweep_list refine;    /* n = 0: the --refine value */
    cli_sweep_list rerank;    /* n = 0: the --rerank value */
} cli_sweep;

/* The flags every subcommand shares; each command accepts a subset. */
typedef struct cli_opts {
    const char *base, *queries, *gt, *index, *out, *distances, *json, *quant;
    int64_t rerank; /* -1 = automatic */
    size_t k;
    bool k_set;
    rotor_metric metric;
    unsigned threads;
    unsigned runs;
    size_t max_queries;
    bool quiet;
    /* Navigators: 0 (or -1 for neighbor_codes) keeps the library default. */
    unsigned degree, build_list, nlist, build_threads, list_size, nprobe;
    double alpha;
    int neighbor_codes;
    const char *build_space; /* "full" or "codes" */
    const char *walk_quant;
    unsigned refine;
    unsigned starts;        /* --starts: rotor_search_params.start_points */
    unsigned neighbors;     /* --neighbors: rotor_search_params.max_neighbors */
    double target_recall;   /* --target-recall, 0 = the library default */
    double recall;          /* --recall: rotor_search_params.target_recall, 0 = off */
    int calibrate;          /* --calibrate, -1 = the library default */
    int rerank_all;         /* --rerank-bound off: rotor_search_params.rerank_all */
    unsigned rerank_window; /* --rerank-window: rotor_search_params.rerank_window */
    const char *sweep;      /* "L=10,20,40" or "nprobe=1,2,4" */
    cli_sweep sweep_values; /* --sweep, parsed */
    /* Index files: where the full vectors live (0 = as saved, or the
     * rotor_vectors_place value) and how they are read. */
    int full_vectors;
    int load; /* --load: rotor_open_params.load */
    rotor_io_backend io;
    uint64_t ram_budget;   /* --ram-budget: rotor_params / rotor_open_params.ram_budget */
    uint64_t build_memory; /* --build-memory: rotor_params.build_memory */
    unsigned beam;         /* --beam: rotor_search_params.beam_width */
    /* --labels FILE (text, a line per base row) and --filter EXPR, parsed
     * into `filter` (its labels in filter_labels); --filter-scan. */
    const char *labels;
    const char *filter_text;
    bool filtered;
    rotor_filter filter;
    uint32_t filter_labels[CLI_MAX_FILTER_LABELS];
    int filter_scan;
    const char *keys;   /* --keys FILE: the base rows' keys (tools/keys.c) */
    const char *add;    /* update --add FILE: vectors to add */
    const char *remove; /* update --remove FILE: keys to remove (as --keys reads them) */
    bool compact;       /* update --compact: rewrite the file, its update log folded in */
    int argc_rest;      /* positional arguments left after the flags */
    char **argv_rest;
} cli_opts;

/* Bits naming the flags a command accepts, for parsing and --help. */
enum {
    OPT_BASE = 1 << 0,
    OPT_QUERIES = 1 << 1,
    OPT_GT = 1 << 2,
    OPT_K = 1 << 3,
    OPT_METRIC = 1 << 4,
    OPT_INDEX = 1 << 5,
    OPT_OUT = 1 << 6,
    OPT_THREADS = 1 << 7,
    OPT_JSON = 1 << 8,
    OPT_DISTANCES = 1 << 9,
    OPT_RUNS = 1 << 10,
    OPT_MAX_QUERIES = 1 << 11,
    OPT_QUIET = 1 << 12,
    OPT_QUANT = 1 << 13,
    OPT_RERANK = 1 << 14,
    OPT_GRAPH =
        1 << 15, /* --degree --build-list --alpha --neighbor-codes --nlist --build-threads */
    OPT_SWEEP = 1 << 16,
    OPT_SEARCH = 1 << 17,   /* --list --nprobe --refine --starts --neighbors --load --beam */
    OPT_STORE = 1 << 18,    /* --full-vectors --io --ram-budget */
    OPT_FILE_ARG = 1 << 19, /* takes one positional FILE */
    OPT_LABELS = 1 << 20,   /* --labels */
    OPT_FILTER = 1 << 21,   /* --filter --filter-scan */
    OPT_KEYS = 1 << 22,     /* --keys */
    OPT_UPDATE = 1 << 23,   /* --add --remove */
};

/* Fills build parameters from --index and the navigator flags; returns a
 * CLI exit code (usage error for an unknown index kind). */
int cli_index_params(const cli_opts *o, rotor_params *p);
/* Builds the index --index names over `base`, with a progress bar for the
 * long kinds; *seconds (unless NULL) gets the wall-clock build time. */
int cli_build_index(const cli_opts *o, const rotor_matrix *base, rotor_index **ix, double *seconds);
/* True when --index names a kind to build (flat, vamana, ivf) rather than
 * an index file to open. */
bool cli_index_is_kind(const cli_opts *o);
/* Opens the index file --index names, with --full-vectors and --io, and
 * with `verify` hashes every section first; *seconds (unless NULL) gets
 * the time the open took. */
int cli_open_index(const cli_opts *o, bool verify, rotor_index **ix, double *seconds);

/* Usage error "CMD needs FLAG" when value is NULL, else CLI_EXIT_OK. */
int cli_require(const char *value, const char *flag, const char *cmd);
/* The progress callback of a build: draws a cli_progress. */
int cli_build_progress(void *opaque, uint64_t done, uint64_t total);
/* rotor search and rotor gt: batch search of --queries, ids to --out. */
int cli_run_search(const cli_opts *o, const char *cmd);

/* The index's codes as a label: "quant", or "walk+quant" for a graph
 * walking on other codes than it refines with. */
const char *cli_quant_label(const rotor_index_stats *s, char *buf, size_t size);
/* What the index measured about itself (rotor_index_tuning): the
 * automatic configuration's candidates and the calibration's summary, and
 * with `table` every calibrated setting. */
void cli_print_tuning(FILE *f, const rotor_index *ix, bool table);
/* "float32", "uint8", ... */
const char *cli_elem_type_name(rotor_elem_type t);
/* Opens the one positional FILE of info and verify (usage error otherwise)
 * as cli_open_input does. */
int cli_open_file_arg(const cli_opts *o, const char *cmd, const char **path, int *fd,
                      bool *is_index);

typedef struct cli_command {
    const char *name;
    const char *summary;
    const char *usage; /* the synopsis and what the command does */
    unsigned flags;
} cli_command;

/* args.c: the commands in the order rotor.c runs them, and the parser. */
extern const cli_command cli_commands[];
extern const size_t cli_n_commands;

/* What cli_parse found besides a command to run (CLI_EXIT_OK) or a usage
 * error (CLI_EXIT_USAGE, already said on stderr). */
enum { CLI_PARSED_HELP = -1, CLI_PARSED_VERSION = -2 };
/* Parses the arguments after the program name: the command, then its
 * flags, every value checked (numbers, lists, enumerations, quantizer
 * specs, --sweep, each flag once) and the build parameters checked as the
 * library would. Looks at no file and runs nothing. argv is reordered
 * (positional arguments move to the front of the flags). *cmd is NULL when
 * no command was named; with CLI_PARSED_HELP it names the command whose help
 * was asked for, if any. */
int cli_parse(int argc, char **argv, const cli_command **cmd, cli_opts *o);
void cli_usage_all(void);
void cli_usage_command(const cli_command *c);
/* Parses a --sweep value into out (usage error on stderr otherwise). */
int cli_parse_sweep(const char *s, cli_sweep *out);
/* --sweep L needs a vamana index, nprobe an IVF one: checked against the
 * kind built or opened. */
int cli_check_sweep_kind(const cli_opts *o, const char *kind);

/* paths.c: every output may be written (missing or a regular file, a
 * symbolic link followed), no two outputs are one file, and no output is
 * one of the command's inputs (same device and inode, so hard links and
 * symbolic links count). Checked before any work; one line each. */
int cli_check_paths(const cli_command *c, const cli_opts *o);
/* Opens an input once, without blocking: refuses anything but a regular
 * file with one line, and reads its first bytes to tell an index file
 * (ROTORIDX) from a data set. *fd is for the library's *_fd calls. */
int cli_open_input(const char *path, int *fd, bool *is_index);
/* Appends one line to a regular file with one write; a failed write is
 * taken back and reported with its cause (ENOSPC, EFBIG, ...). */
int cli_append_line(const char *path, const char *line, size_t len);
/* After searches of an index file with vectors on disk: one notice on
 * stderr when io_uring had to give way to pread. */
void cli_note_io_fallback(const rotor_index *ix, const char *path, bool quiet);

/* Prints "rotor: <message>" on one line to stderr and returns `code`. */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same, with rotor_last_error() (or the status text) after the prefix. */
int cli_lib_error(rotor_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* keys.c: a --keys file of exactly `rows` keys (text, one integer per line,
 * or a .npy of int64 or int32 with one column), into *out (malloc'd). A
 * count, a number or a key repeated is refused with one line naming the
 * line or row at fault. */
int cli_read_keys(const char *path, size_t rows, int64_t **out);
/* The same for a file of any number of keys: *rows gets how many. */
int cli_read_key_list(const char *path, int64_t **out, size_t *rows);

/* labels.c: a --labels file for `rows` base rows: one line per row of
 * space-separated non-negative integers (an empty line: no label), refused
 * with one line naming the line at fault. *off and *val are malloc'd and
 * back out; the caller frees both whatever the outcome. */
int cli_read_labels(const char *path, size_t rows, rotor_labels *out, uint64_t **off,
                    uint32_t **val);
/* The search parameters every searching command shares, from the flags. */
rotor_search_params cli_search_params(const cli_opts *o);

/* Reads a vector file as float32 (converting uint8/int8), limited to max_rows
 * rows (0 = all), with a one-line error on failure. */
int cli_read_f32(const char *path, const char *role, size_t max_rows, rotor_matrix *out);

/* Progress on stderr: drawn only when stderr is a terminal and not --quiet. */
typedef struct cli_progress {
    const char *label;
    uint64_t total, last_done;
    double started, last_draw;
    bool enabled;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label, uint64_t total, bool quiet);
void cli_progress_update(cli_progress *p, uint64_t done);
void cli_progress_finish(cli_progress *p);

/* Clocks, memory, JSON. */
double cli_now(void);
double cli_thread_cpu(void);
size_t cli_peak_rss(void);
void cli_json_string(FILE *f, const char *s);

/* Exact distance in double precision (smaller is better), eval.c. */
double cli_exact_distance(rotor_metric m, const float *q, const float *x, size_t d);
/* Mean over queries of the share of the first `at` returned ids that lie
 * within the true at-th distance; `ids` rows have k entries. */
double cli_recall_at(const rotor_matrix *base, const rotor_matrix *queries, const rotor_matrix *gt,
                     const int64_t *ids, size_t k, size_t at, rotor_metric metric);
/* As cli_recall_at, with each vector read from the index by its key (a
 * file benched without --base: its own full vectors, normalised for
 * cosine, which leaves cosine distances as they were). NAN when a
 * ground-truth id is not a key of the index. row: dim floats of scratch. */
double cli_recall_at_index(const rotor_index *ix, const rotor_matrix *queries,
                           const rotor_matrix *gt, const int64_t *ids, size_t k, size_t at,
                           rotor_metric metric, float *row);
/* Share of the first `at` returned ids found among the first `at` ids of
 * the ground truth: recall without the base vectors (ties count only when
 * the ground truth lists them). */
double cli_recall_ids(const rotor_matrix *gt, const int64_t *ids, size_t k, size_t at, size_t nq);
/* Reads --base (when given) and --queries as float32 and --gt as ids, and
 * checks they fit together and with an index of `index_rows` vectors (0:
 * the base's count); the caller frees all three whatever the outcome. */
int cli_load_eval_data(const cli_opts *o, size_t index_rows, rotor_matrix *base,
                       rotor_matrix *queries, rotor_matrix *gt);
/* Checks a ground-truth matrix against the base size and query count. */
int cli_check_gt(const cli_opts *o, const rotor_matrix *gt, size_t base_rows, size_t nq);

/* The subcommands. */
int cmd_gt(const cli_opts *o);
int cmd_bench(const cli_opts *o);
int cmd_search(const cli_opts *o);
int cmd_info(const cli_opts *o);
int cmd_update(const cli_opts *o);
int cmd_verify(const cli_opts *o);
int cmd_tune(const cli_opts *o);
int cmd_build(const cli_opts *o);
int cmd_eval_quant(const cli_opts *o);

#endif
