/*
 * The command table, the flags and their parser, and --help. Parsing looks
 * at the arguments only (no file is opened, nothing runs), so that every
 * option is refused before any work starts and a fuzz target can drive it:
 * a malformed number, an empty or stray separator, a value out of range, a
 * flag given twice, a quantizer spec the library would refuse, a --sweep
 * that does not parse are each one line on stderr and CLI_EXIT_USAGE.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const cli_command cli_commands[] = {
    {"gt", "exact ground truth (ids and distances) by brute force",
     "rotor gt --base FILE --queries FILE --k N --metric l2|ip|cosine --out FILE\n"
     "         [--distances FILE] [--threads N] [--labels FILE --filter EXPR]\n"
     "Computes the exact k nearest neighbours of every query among the base\n"
     "vectors and writes their ids (.ivecs, .ibin or .npy) and, with --distances,\n"
     "their distances (.fvecs, .fbin or .npy). With --filter, among the base\n"
     "vectors the filter allows (id -1 past the last when fewer than k do).",
     OPT_BASE | OPT_QUERIES | OPT_K | OPT_METRIC | OPT_OUT | OPT_DISTANCES | OPT_THREADS |
         OPT_QUIET | OPT_LABELS | OPT_FILTER},
    {"bench", "recall@1/@10, QPS and latency of an index over a data set",
     "rotor bench --index flat|vamana|ivf|FILE [--base FILE] --queries FILE --gt FILE\n"
     "            [--k 10] [--metric l2] [--quant SPEC] [--sweep \"L=10,20,40;rerank=16,32\"]\n"
     "            [--threads N] [--runs N] [--max-queries N] [--json FILE]\n"
     "Builds the index (or opens an index file), runs every query one at a time on\n"
     "N threads and prints recall (by distance, as ann-benchmarks counts it), QPS,\n"
     "mean and p99 latency; --json appends one JSON object per line. With --runs N\n"
     "the run with the median QPS is reported. --sweep searches the same index once\n"
     "per value of the candidate list L (vamana) or of the partitions probed nprobe\n"
     "(ivf), and of the rerank depth, one line per pair. An index file needs no\n"
     "--base: recall then reads its own vectors. With vectors on disk the\n"
     "mean and p99 reads per query and the I/O wait per query are reported too.",
     OPT_INDEX | OPT_BASE | OPT_QUERIES | OPT_GT | OPT_K | OPT_METRIC | OPT_THREADS | OPT_RUNS |
         OPT_MAX_QUERIES | OPT_JSON | OPT_QUIET | OPT_QUANT | OPT_RERANK | OPT_GRAPH | OPT_SWEEP |
         OPT_SEARCH | OPT_STORE | OPT_LABELS | OPT_FILTER},
    {"search", "k nearest neighbours of every query",
     "rotor search --index flat|vamana|ivf|FILE [--base FILE] --queries FILE --k N\n"
     "             --out FILE [--metric l2] [--quant SPEC] [--distances FILE] [--threads N]\n"
     "Builds the index in memory from --base (or opens an index file, checking\n"
     "every section's checksum first), searches every query and writes the ids\n"
     "(and with --distances the distances). The ids are the vectors' keys: row\n"
     "numbers, or the keys of an index built with --keys, written as int64 to\n"
     ".npy and refused by the int32 formats when they do not fit.",
     OPT_INDEX | OPT_BASE | OPT_QUERIES | OPT_K | OPT_METRIC | OPT_OUT | OPT_DISTANCES |
         OPT_THREADS | OPT_QUIET | OPT_QUANT | OPT_RERANK | OPT_GRAPH | OPT_SEARCH | OPT_STORE |
         OPT_LABELS | OPT_FILTER},
    {"build", "build an index and save it to a file",
     "rotor build --index flat|vamana|ivf --base FILE --out FILE [--metric l2]\n"
     "            [--quant SPEC] [--full-vectors ram|disk] [graph options]\n"
     "Builds the index over the base vectors and writes it to --out in one\n"
     "checksummed file, atomically (the old file stays whole until the new one\n"
     "is). The base file is streamed into a temporary file beside --out that\n"
     "the build maps, so the vectors need not fit in memory (the codes and\n"
     "graph do). --full-vectors disk marks the index to be opened with only\n"
     "the graph and codes in RAM, reading the vectors each rerank needs.\n"
     "--labels gives every vector its labels, which 'rotor search|bench --filter'\n"
     "then filters on. --keys gives every vector a key of its own, which searches\n"
     "return instead of its row number.",
     OPT_INDEX | OPT_BASE | OPT_METRIC | OPT_OUT | OPT_QUIET | OPT_QUANT | OPT_GRAPH | OPT_STORE |
         OPT_LABELS | OPT_KEYS},
    {"info", "what a data set or index file holds",
     "rotor info FILE\n"
     "For a data set: the format, element type, rows and dimensions from its header.\n"
     "For an index file: its kind, metric, size, quantizer, memory per part and,\n"
     "with vectors on disk, the I/O backend an open would use.",
     OPT_STORE | OPT_FILE_ARG},
    {"verify", "check every byte of a data set or index file",
     "rotor verify FILE\n"
     "Reads the whole file: for a data set, record headers, sizes, NaN and infinity;\n"
     "for an index file, every section's checksum and every graph and list id.\n"
     "Exit 0 when the file is sound, 1 with one line naming the first fault.",
     OPT_FILE_ARG},
    {"tune", "measure an index file's calibration table again",
     "rotor tune FILE [--queries FILE] [--max-queries N] [--threads N]\n"
     "Measures recall@10 and the modelled cost of the index's search settings,\n"
     "with --queries (exact neighbours computed over the index's vectors) or with\n"
     "1,000 of its own rows searched as if held out (their own nodes skipped), and\n"
     "saves the table in the file (atomically), where 'rotor search|bench --recall R'\n"
     "reads it. A build's own table searches rows the graph left out until then.",
     OPT_FILE_ARG | OPT_QUERIES | OPT_MAX_QUERIES | OPT_THREADS},
    {"update", "remove vectors from an index file and add others",
     "rotor update FILE [--add VECTORS [--keys FILE] [--labels FILE]] [--remove KEYS]\n"
     "             [--compact]\n"
     "Opens the index file, removes the vectors whose keys --remove lists (text, one\n"
     "key per line, or .npy), then adds the vectors of --add (with the keys of\n"
     "--keys, else the numbers of the slots they take; a removed key may be given\n"
     "again, which replaces its vector), labelled by --labels (as build's, a line\n"
     "per added vector) in the same change. Every key and label is checked first:\n"
     "bad input changes nothing.\n"
     "Each change is appended to the file's update log, which is synced before\n"
     "the command exits 0: the changes are then on disk, and every open of the\n"
     "file replays them. --compact (alone, or with changes) rewrites the file\n"
     "instead, atomically, with its update log folded into its sections, so\n"
     "opens no longer replay it; adds to a file that keeps its full vectors on\n"
     "disk are always written that way. A removed vector is never returned by\n"
     "a search again; the graph is repaired around removed vectors once they\n"
     "pass 5 % of the index, and later adds take their slots.",
     OPT_FILE_ARG | OPT_UPDATE | OPT_KEYS | OPT_LABELS | OPT_QUIET},
    {"eval-quant", "compression, distortion and scan recall of quantizers",
     "rotor eval-quant --base FILE --queries FILE --gt FILE --quant SPEC[,SPEC...]\n"
     "                 [--metric l2] [--k 10] [--max-queries N] [--threads N] [--json FILE]\n"
     "For each quantizer: bits per dimension, bytes per vector (factors included),\n"
     "training seconds, encoding speed, the squared error of reconstructed vectors\n"
     "relative to their squared norm (the MSE of unit-normalised vectors), the\n"
     "bias and variance of the inner-product estimate relative to |q||x|, and\n"
     "recall@10 of an exhaustive scan over the codes, alone and with the best\n"
     "10k candidates reranked on full vectors.\n"
     "SPEC: tq1..tq8, tqip2..tqip8, bin1, bin2, bin1fs, bin2fs, pq<M>, pq<M>x4.",
     OPT_BASE | OPT_QUERIES | OPT_GT | OPT_QUANT | OPT_METRIC | OPT_K | OPT_MAX_QUERIES |
         OPT_THREADS | OPT_JSON | OPT_QUIET},
};
const size_t cli_n_commands = sizeof cli_commands / sizeof cli_commands[0];

static const struct flag {
    const char *name;
    unsigned bit;
    const char *help;
} flags[] = {
    {"--base", OPT_BASE, "FILE  base vectors"},
    {"--queries", OPT_QUERIES, "FILE  query vectors"},
    {"--gt", OPT_GT, "FILE  ground-truth ids (.ivecs, .ibin, .npy)"},
    {"--k", OPT_K, "N  neighbours per query"},
    {"--metric", OPT_METRIC, "l2|ip|cosine  (default l2)"},
    {"--index", OPT_INDEX, "flat|vamana|ivf|FILE  the kind to build, or an index file"},
    {"--out", OPT_OUT, "FILE  output"},
    {"--distances", OPT_DISTANCES, "FILE  also write distances"},
    {"--threads", OPT_THREADS, "N  worker threads (default: bench 1, others all cores)"},
    {"--runs", OPT_RUNS, "N  repeat the measurement, report the median (default 1)"},
    {"--max-queries", OPT_MAX_QUERIES, "N  use only the first N queries"},
    {"--json", OPT_JSON, "FILE  append results as JSON lines"},
    {"--quiet", OPT_QUIET, "no progress bar"},
    {"--quant", OPT_QUANT,
     "SPEC  compress vectors: auto (default: measured on a sample), none, tq1..tq8,\n"
     "   tqip2..tqip8, bin1, bin2, bin1fs, bin2fs, sq8, pq<M>, pq<M>x4"},
    {"--rerank", OPT_RERANK, "N  candidates rescored on full vectors (default 10 x k; 0 = none)"},
    {"--degree", OPT_GRAPH,
     "N  vamana: most neighbours per node (default 64; 32 with neighbours' codes in each\n"
     "   node)"},
    {"--build-list", OPT_GRAPH, "N  vamana: candidate list while building (default 100)"},
    {"--alpha", OPT_GRAPH, "A  vamana: pruning factor of the second pass (default 1.2)"},
    {"--neighbor-codes", OPT_GRAPH,
     "0|1  vamana: keep neighbours' codes in each node (default 1 with --quant)"},
    {"--walk-quant", OPT_GRAPH,
     "SPEC  vamana: walk the graph on these codes, estimate again with --quant"},
    {"--refine", OPT_SEARCH,
     "N  vamana with --walk-quant: candidates estimated again (default 4 x rerank)"},
    {"--build-space", OPT_GRAPH,
     "full|codes  vamana: link on the full vectors (default) or on the decoded codes"},
    {"--nlist", OPT_GRAPH, "N  ivf: partitions (default about 2 sqrt(n); 4 sqrt(n) for ip)"},
    {"--target-recall", OPT_GRAPH,
     "R  --quant auto: the recall@10 the chosen codes must reach (default 0.95)"},
    {"--calibrate", OPT_GRAPH,
     "0|1  measure the calibration table --recall reads at the end of the build (default 1)"},
    {"--build-threads", OPT_GRAPH, "N  threads building the index (default all cores)"},
    {"--build-memory", OPT_GRAPH,
     "BYTES  vamana: the most memory the graph's build may use (suffix K, M or G); a\n"
     "   build that needs more is split into overlapping shards built one at a time and\n"
     "   merged (default: no cap)"},
    {"--list", OPT_SEARCH, "N  vamana: candidate list while searching (default max(k, 64))"},
    {"--nprobe", OPT_SEARCH, "N  ivf: partitions scanned per query (default 16)"},
    {"--recall", OPT_SEARCH,
     "R  search with the cheapest calibrated settings reaching recall R (flags given\n"
     "   above still win); refused when the index cannot promise it"},
    {"--starts", OPT_SEARCH,
     "N  quantized vamana: N sampled starting points scored first, from the groups\n"
     "   nearest the query (default 256, at most " CLI_MAX_STARTS_TEXT ")"},
    {"--neighbors", OPT_SEARCH,
     "N  vamana: read only the first N of each node's neighbours, those its prune chose\n"
     "   first (default all; --recall takes it from the calibration)"},
    {"--rerank-bound", OPT_SEARCH,
     "on|off  stop the rerank once the codes' error bound proves no other candidate can\n"
     "   enter the top k (default on; same results, fewer vectors scored: sq8, pq, tq)"},
    {"--rerank-window", OPT_SEARCH,
     "N  vectors on disk, rerank stopping on the bound: reads in flight after the\n"
     "   first k (default 4, at most " CLI_MAX_RERANK_WINDOW_TEXT ")"},
    {"--beam", OPT_SEARCH, "N  graph on disk: record reads in flight (default 4, at most 64)"},
    {"--load", OPT_SEARCH,
     "auto|0|1  an index file: 1 reads it into memory (huge pages), 0 maps it, auto (default)\n"
     "   maps it and copies the graph, codes and vectors when they fit in half the free RAM"},
    {"--sweep", OPT_SWEEP,
     "L=A,B,..|nprobe=A,B,..[;neighbors=..][;starts=..][;refine=..][;rerank=A,B,..]  one\n"
     "   measurement per combination of the values (neighbors, starts, refine: 0 = the\n"
     "   default)"},
    {"--full-vectors", OPT_STORE,
     "ram|disk  where full vectors live once the index is opened (default: as built)"},
    {"--io", OPT_STORE, "auto|uring|pread  how vectors on disk are read (default auto)"},
    {"--ram-budget", OPT_STORE,
     "BYTES  vamana: the most the graph and its codes keep in RAM (suffix K, M or G for\n"
     "   KiB, MiB, GiB). build: writes the graph's records to disk too, beside each\n"
     "   node's vector; an open under a budget too small for the graph reads them from\n"
     "   disk, caching what the budget leaves (default: the build's budget, else none)"},
    {"--labels", OPT_LABELS,
     "FILE  the base vectors' labels: a text line per vector of space-separated whole\n"
     "   numbers (an empty line: none)"},
    {"--add", OPT_UPDATE, "FILE  update: vectors to add to the index"},
    {"--remove", OPT_UPDATE, "FILE  update: keys of the vectors to remove, one per line (or .npy)"},
    {"--compact", OPT_UPDATE, "update: rewrite the file with its update log folded in"},
    {"--keys", OPT_KEYS,
     "FILE  the base vectors' keys, returned by searches instead of row numbers: a text\n"
     "   line per vector holding a whole number from 0 to 2^63 - 1, or a .npy of int64\n"
     "   (or int32) with one column; no key twice"},
    {"--filter", OPT_FILTER,
     "EXPR  return only vectors carrying label 3 (\"3\"), any of 3 and 7 (\"3|7\") or\n"
     "   all of them (\"3&7\")"},
    {"--filter-scan", OPT_FILTER,
     "auto|always|never  with --filter: scan the vectors it allows rather than search\n"
     "   for them when that is cheaper (auto, default), always, or never"},
};
enum { N_FLAGS = sizeof flags / sizeof flags[0] };

void cli_usage_all(void) {
    FILE *f = stdout;
    fprintf(f,
            "rotor %s — approximate nearest-neighbour search\n\n"
            "usage: rotor COMMAND [OPTIONS]   (rotor COMMAND --help for details)\n\n"
            "commands:\n",
            rotor_version_string());
    for (size_t i = 0; i < cli_n_commands; i++)
        fprintf(f, "  %-8s %s\n", cli_commands[i].name, cli_commands[i].summary);
    fprintf(f,
            "\nFile formats are recognised by extension: .fvecs .ivecs .bvecs .fbin .u8bin\n"
            ".i8bin .ibin .npy, and MNIST IDX files (gzip or not) by their magic.\n"
            "SIMD kernels in use: %s (set ROTOR_SIMD=scalar|avx2|avx512 to lower).\n",
            rotor_simd_level());
}

void cli_usage_command(const cli_command *c) {
    printf("usage: %s\n", c->usage);
    if (c->flags & ~(unsigned)OPT_FILE_ARG) {
        printf("\noptions:\n");
        for (int i = 0; i < N_FLAGS; i++)
            if (c->flags & flags[i].bit)
                printf("  %-14s %s\n", flags[i].name, flags[i].help);
    }
}

/* Digits only: strtoull alone would take " 5", "+5" and "-0". */
static bool all_digits(const char *s) {
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static int parse_size(const char *flag, const char *s, size_t lo, size_t hi, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = all_digits(s) ? strtoull(s, &end, 10) : 0;
    if (!all_digits(s) || *end != '\0' || errno != 0 || v < lo || v > hi)
        return cli_error(CLI_EXIT_USAGE, "%s takes a whole number from %zu to %zu, not '%s'", flag,
                         lo, hi, s);
    *out = (size_t)v;
    return CLI_EXIT_OK;
}

/* A byte count, with an optional K, M or G (powers of 1024). */
static int parse_bytes(const char *flag, const char *s, uint64_t *out) {
    const size_t len = strlen(s);
    char digits[32];
    uint64_t scale = 1;
    size_t n = len;
    if (len > 0 && strchr("KMG", s[len - 1]) != NULL) {
        scale = s[len - 1] == 'K' ? 1u << 10 : s[len - 1] == 'M' ? 1u << 20 : 1u << 30;
        n = len - 1;
    }
    size_t v = 0;
    if (n == 0 || n >= sizeof digits)
        return cli_error(CLI_EXIT_USAGE, "%s takes a byte count (suffix K, M or G), not '%s'", flag,
                         s);
    memcpy(digits, s, n);
    digits[n] = '\0';
    if (!all_digits(digits) || parse_size(flag, digits, 1, SIZE_MAX / scale, &v) != CLI_EXIT_OK)
        return cli_error(CLI_EXIT_USAGE, "%s takes a byte count (suffix K, M or G), not '%s'", flag,
                         s);
    *out = (uint64_t)v * scale;
    return CLI_EXIT_OK;
}

/* One quantizer spec, as the library would parse it at build time. */
static int check_quant_spec(const char *flag, const char *spec) {
    rotor_params p = rotor_params_default();
    p.quant = spec;
    if (spec[0] == '\0' || rotor_params_check(&p) != ROTOR_OK)
        return cli_error(CLI_EXIT_USAGE, "%s: '%s' is not a quantizer spec%s%s", flag, spec,
                         spec[0] ? ": " : "", spec[0] ? rotor_last_error() : "");
    return CLI_EXIT_OK;
}

/* --quant: one spec, or for eval-quant a comma-separated list of them
 * (no empty item, no stray comma). */
static int check_quant_list(const cli_command *c, const char *value) {
    if (strcmp(c->name, "eval-quant") != 0)
        return check_quant_spec("--quant", value);
    char spec[64];
    for (const char *p = value;;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof spec)
            return cli_error(CLI_EXIT_USAGE,
                             "--quant '%s' is not a comma-separated list of quantizer specs",
                             value);
        memcpy(spec, p, len);
        spec[len] = '\0';
        int rc = check_quant_spec("--quant", spec);
        if (rc != CLI_EXIT_OK)
            return rc;
        if (p[len] == '\0')
            return CLI_EXIT_OK;
        p += len + 1;
    }
}

/* A plain decimal in [lo, hi]. */
static int parse_fraction(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    /* strtod would also take " 2", "+2", "0x1p1", "inf". */
    bool plain = s[0] >= '0' && s[0] <= '9' && strspn(s, "0123456789.") == strlen(s);
    if (!plain || *end != '\0' || errno != 0 || !(v >= lo && v <= hi))
        return cli_error(CLI_EXIT_USAGE, "%s takes a number from %g to %g, not '%s'", flag, lo, hi,
                         s);
    *out = v;
    return CLI_EXIT_OK;
}

static int parse_navigator_flag(const char *name, const char *value, cli_opts *o) {
    size_t n = 0;
    int rc = CLI_EXIT_OK;
    if (strcmp(name, "--target-recall") == 0) {
        rc = parse_fraction(name, value, 0.5, 1, &o->target_recall);
    } else if (strcmp(name, "--recall") == 0) {
        rc = parse_fraction(name, value, 0.01, 1, &o->recall);
    } else if (strcmp(name, "--build-memory") == 0) {
        rc = parse_bytes(name, value, &o->build_memory);
    } else if (strcmp(name, "--calibrate") == 0) {
        rc = parse_size(name, value, 0, 1, &n);
        o->calibrate = (int)n;
    } else if (strcmp(name, "--alpha") == 0) {
        char *end;
        errno = 0;
        o->alpha = strtod(value, &end);
        /* A plain decimal: strtod would also take " 2", "+2", "0x1p1", "inf". */
        bool plain =
            value[0] >= '0' && value[0] <= '9' && strspn(value, "0123456789.") == strlen(value);
        if (!plain || *end != '\0' || errno != 0 || !(o->alpha >= 1 && o->alpha <= 4))
            rc = cli_error(CLI_EXIT_USAGE, "--alpha takes a number from 1 to 4, not '%s'", value);
    } else if (strcmp(name, "--walk-quant") == 0) {
        o->walk_quant = value;
        rc = check_quant_spec(name, value);
    } else if (strcmp(name, "--refine") == 0) {
        rc = parse_size(name, value, 1, 100000, &n);
        o->refine = (unsigned)n;
    } else if (strcmp(name, "--build-space") == 0) {
        if (strcmp(value, "full") != 0 && strcmp(value, "codes") != 0)
            rc = cli_error(CLI_EXIT_USAGE, "--build-space takes full or codes, not '%s'", value);
        o->build_space = value;
    } else if (strcmp(name, "--neighbor-codes") == 0) {
        rc = parse_size(name, value, 0, 1, &n);
        o->neighbor_codes = (int)n;
    } else if (strcmp(name, "--degree") == 0) {
        rc = parse_size(name, value, 2, 1024, &n);
        o->degree = (unsigned)n;
    } else if (strcmp(name, "--build-list") == 0) {
        rc = parse_size(name, value, 2, 100000, &n);
        o->build_list = (unsigned)n;
    } else if (strcmp(name, "--nlist") == 0) {
        rc = parse_size(name, value, 1, 1u << 24, &n);
        o->nlist = (unsigned)n;
    } else if (strcmp(name, "--build-threads") == 0) {
        rc = parse_size(name, value, 1, 1024, &n);
        o->build_threads = (unsigned)n;
    } else if (strcmp(name, "--list") == 0) {
        rc = parse_size(name, value, 1, 100000, &n);
        o->list_size = (unsigned)n;
    } else if (strcmp(name, "--nprobe") == 0) {
        rc = parse_size(name, value, 1, 1u << 24, &n);
        o->nprobe = (unsigned)n;
    } else if (strcmp(name, "--rerank-bound") == 0) {
        if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0)
            rc = cli_error(CLI_EXIT_USAGE, "--rerank-bound takes on or off, not '%s'", value);
        o->rerank_all = strcmp(value, "off") == 0;
    } else if (strcmp(name, "--rerank-window") == 0) {
        rc = parse_size(name, value, 1, CLI_MAX_RERANK_WINDOW, &n);
        o->rerank_window = (unsigned)n;
    } else if (strcmp(name, "--starts") == 0) {
        rc = parse_size(name, value, 1, CLI_MAX_STARTS, &n);
        o->starts = (unsigned)n;
    } else if (strcmp(name, "--neighbors") == 0) {
        rc = parse_size(name, value, 1, 1024, &n);
        o->neighbors = (unsigned)n;
    } else if (strcmp(name, "--load") == 0) {
        if (strcmp(value, "auto") == 0) {
            o->load = -1;
        } else {
            rc = parse_size(name, value, 0, 1, &n);
            o->load = (int)n;
        }
    } else if (strcmp(name, "--beam") == 0) {
        rc = parse_size(name, value, 1, 64, &n);
        o->beam = (unsigned)n;
    }
    return rc;
}

/* --filter "3", "3|7|9" or "3&7": labels joined by one kind of operator. */
static int parse_filter(const char *value, cli_opts *o) {
    const bool any = strchr(value, '|') != NULL, all = strchr(value, '&') != NULL;
    if (any && all)
        return cli_error(CLI_EXIT_USAGE,
                         "--filter '%s' mixes | and &; give labels joined by one of them", value);
    const char sep = all ? '&' : '|';
    size_t n = 0;
    for (const char *p = value;;) {
        const size_t digits = strspn(p, "0123456789");
        errno = 0;
        const unsigned long long v = digits > 0 ? strtoull(p, NULL, 10) : 0;
        if (digits == 0 || digits > 10 || v > UINT32_MAX || (p[digits] != '\0' && p[digits] != sep))
            return cli_error(CLI_EXIT_USAGE,
                             "--filter takes labels (whole numbers from 0 to 4294967295) joined "
                             "by | or &, not '%s'",
                             value);
        if (n == CLI_MAX_FILTER_LABELS)
            return cli_error(CLI_EXIT_USAGE, "--filter names more than %d labels",
                             CLI_MAX_FILTER_LABELS);
        o->filter_labels[n++] = (uint32_t)v;
        if (p[digits] == '\0')
            break;
        p += digits + 1;
    }
    o->filter_text = value;
    o->filtered = true;
    o->filter = (rotor_filter){.labels = o->filter_labels, .nlabels = n, .all = all};
    return CLI_EXIT_OK;
}

/* ---- --sweep ------------------------------------------------------------ */

/* "A,B,C": whole numbers up to 100000, no empty item, no stray comma. */
static int parse_values(const char *vals, size_t len, const char *whole, cli_sweep_list *out) {
    const char *end_all = vals + len;
    if (len == 0)
        return cli_error(CLI_EXIT_USAGE, "--sweep '%s' lists no values", whole);
    for (;;) {
        unsigned long v = 0;
        const char *p = vals;
        while (p < end_all && *p >= '0' && *p <= '9' && v <= 100000)
            v = v * 10 + (unsigned long)(*p++ - '0');
        if (p == vals || v > 100000 || (p < end_all && *p != ',') ||
            out->n == sizeof out->v / sizeof out->v[0])
            return cli_error(CLI_EXIT_USAGE,
                             "--sweep: '%s' is not a list of up to 256 numbers up to 100000",
                             whole);
        out->v[out->n++] = (unsigned)v;
        if (p == end_all)
            return CLI_EXIT_OK;
        vals = p + 1; /* past the comma: a value must follow */
        if (vals == end_all)
            return cli_error(CLI_EXIT_USAGE, "--sweep '%s' ends with a stray ','", whole);
    }
}

int cli_parse_sweep(const char *s, cli_sweep *out) {
    memset(out, 0, sizeof *out);
    for (const char *part = s;;) {
        const char *semi = strchr(part, ';');
        size_t len = semi ? (size_t)(semi - part) : strlen(part);
        const char *eq = memchr(part, '=', len);
        size_t klen = eq ? (size_t)(eq - part) : 0;
        cli_sweep_list *dst = NULL;
        if (eq && ((klen == 1 && part[0] == 'L') || (klen == 4 && !strncmp(part, "list", 4)))) {
            dst = out->nprobe ? NULL : &out->nav;
        } else if (eq && klen == 6 && !strncmp(part, "nprobe", 6)) {
            dst = out->nav.n > 0 ? NULL : &out->nav;
            out->nprobe = true;
        } else if (eq && klen == 6 && !strncmp(part, "rerank", 6)) {
            dst = &out->rerank;
        } else if (eq && klen == 6 && !strncmp(part, "starts", 6)) {
            dst = &out->starts;
        } else if (eq && klen == 6 && !strncmp(part, "refine", 6)) {
            dst = &out->refine;
        } else if (eq && klen == 9 && !strncmp(part, "neighbors", 9)) {
            dst = &out->neighbors;
        }
        if (dst == NULL || dst->n > 0)
            return cli_error(CLI_EXIT_USAGE,
                             "--sweep takes L=A,B,..., nprobe=A,B,..., neighbors=, starts=, "
                             "refine= and/or rerank=A,B,... joined by ';', each once, not '%s'",
                             s);
        int rc = parse_values(eq + 1, len - klen - 1, s, dst);
        if (rc != CLI_EXIT_OK)
            return rc;
        for (size_t i = 0; dst == &out->nav && i < dst->n; i++)
            if (dst->v[i] == 0)
                return cli_error(CLI_EXIT_USAGE, "--sweep '%s': L and nprobe start at 1", s);
        if (semi == NULL)
            return CLI_EXIT_OK;
        part = semi + 1;
    }
}

int cli_check_sweep_kind(const cli_opts *o, const char *kind) {
    if (o->sweep == NULL || o->sweep_values.nav.n == 0)
        return CLI_EXIT_OK;
    const char *need = o->sweep_values.nprobe ? "ivf" : "vamana";
    if (strcmp(kind, need) != 0)
        return cli_error(CLI_EXIT_USAGE, "--sweep %s needs --index %s (this index is %s)", o->sweep,
                         need, kind);
    return CLI_EXIT_OK;
}

/* ---- flags --------------------------------------------------------------- */

static int parse_flags(const cli_command *c, int argc, char **argv, cli_opts *o) {
    memset(o, 0, sizeof *o);
    o->metric = ROTOR_METRIC_L2;
    o->k = 10;
    o->runs = 1;
    o->rerank = -1;
    o->neighbor_codes = -1;
    o->calibrate = -1;
    o->load = -1;
    bool seen[N_FLAGS] = {false};
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || strcmp(arg, "--") == 0) {
            argv[npos++] = argv[i];
            continue;
        }
        /* --name=value or --name value */
        char name[64];
        const char *value = NULL;
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (len >= sizeof name)
            return cli_error(CLI_EXIT_USAGE, "unknown option '%.80s'; see 'rotor %s --help'", arg,
                             c->name);
        memcpy(name, arg, len);
        name[len] = '\0';
        int idx = -1;
        for (int j = 0; j < N_FLAGS; j++)
            if (strcmp(flags[j].name, name) == 0)
                idx = j;
        const struct flag *fl = idx >= 0 ? &flags[idx] : NULL;
        if (fl == NULL || !(c->flags & fl->bit))
            return cli_error(CLI_EXIT_USAGE, "%s does not take '%s'; see 'rotor %s --help'",
                             c->name, name, c->name);
        if (seen[idx])
            return cli_error(CLI_EXIT_USAGE, "%s is given twice; give each option once", name);
        seen[idx] = true;
        if (fl->bit == OPT_QUIET) {
            if (eq)
                return cli_error(CLI_EXIT_USAGE, "--quiet takes no value");
            o->quiet = true;
            continue;
        }
        if (strcmp(name, "--compact") == 0) {
            if (eq)
                return cli_error(CLI_EXIT_USAGE, "--compact takes no value");
            o->compact = true;
            continue;
        }
        if (eq)
            value = eq + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return cli_error(CLI_EXIT_USAGE, "%s needs a value", name);
        if (value[0] == '\0')
            return cli_error(CLI_EXIT_USAGE, "%s needs a value, not an empty string", name);

        size_t n;
        int rc = CLI_EXIT_OK;
        switch (fl->bit) {
        case OPT_BASE: o->base = value; break;
        case OPT_QUERIES: o->queries = value; break;
        case OPT_GT: o->gt = value; break;
        case OPT_INDEX: o->index = value; break;
        case OPT_OUT: o->out = value; break;
        case OPT_DISTANCES: o->distances = value; break;
        case OPT_JSON: o->json = value; break;
        case OPT_QUANT:
            o->quant = value;
            rc = check_quant_list(c, value);
            break;
        case OPT_SWEEP:
            o->sweep = value;
            rc = cli_parse_sweep(value, &o->sweep_values);
            break;
        case OPT_STORE:
            if (strcmp(name, "--ram-budget") == 0) {
                rc = parse_bytes(name, value, &o->ram_budget);
            } else if (strcmp(name, "--io") == 0) {
                if (strcmp(value, "auto") == 0)
                    o->io = ROTOR_IO_AUTO;
                else if (strcmp(value, "uring") == 0)
                    o->io = ROTOR_IO_URING;
                else if (strcmp(value, "pread") == 0)
                    o->io = ROTOR_IO_PREAD;
                else
                    rc = cli_error(CLI_EXIT_USAGE, "--io takes auto, uring or pread, not '%s'",
                                   value);
            } else if (strcmp(value, "ram") == 0) {
                o->full_vectors = ROTOR_VECTORS_RAM;
            } else if (strcmp(value, "disk") == 0) {
                o->full_vectors = ROTOR_VECTORS_DISK;
            } else {
                rc = cli_error(CLI_EXIT_USAGE, "--full-vectors takes ram or disk, not '%s'", value);
            }
            break;
        case OPT_GRAPH:
        case OPT_SEARCH: rc = parse_navigator_flag(name, value, o); break;
        case OPT_LABELS: o->labels = value; break;
        case OPT_KEYS: o->keys = value; break;
        case OPT_UPDATE:
            if (strcmp(name, "--add") == 0)
                o->add = value;
            else
                o->remove = value;
            break;
        case OPT_FILTER:
            if (strcmp(name, "--filter") == 0) {
                rc = parse_filter(value, o);
            } else if (strcmp(value, "auto") == 0 || strcmp(value, "always") == 0 ||
                       strcmp(value, "never") == 0) {
                o->filter_scan = value[0] == 'a' ? (value[1] == 'l' ? 1 : 0) : -1;
            } else {
                rc = cli_error(CLI_EXIT_USAGE,
                               "--filter-scan takes auto, always or never, not '%s'", value);
            }
            break;
        case OPT_RERANK:
            rc = parse_size(name, value, 0, (size_t)1 << 30, &n);
            o->rerank = (int64_t)n;
            break;
        case OPT_K:
            rc = parse_size(name, value, 1, 1u << 20, &o->k);
            o->k_set = true;
            break;
        case OPT_THREADS:
            rc = parse_size(name, value, 1, 1024, &n);
            o->threads = (unsigned)n;
            break;
        case OPT_RUNS:
            rc = parse_size(name, value, 1, 1000, &n);
            o->runs = (unsigned)n;
            break;
        case OPT_MAX_QUERIES: rc = parse_size(name, value, 1, SIZE_MAX, &o->max_queries); break;
        case OPT_METRIC:
            if (rotor_metric_parse(value, &o->metric) != ROTOR_OK)
                rc = cli_error(CLI_EXIT_USAGE, "%s", rotor_last_error());
            break;
        }
        if (rc != CLI_EXIT_OK)
            return rc;
    }
    o->argc_rest = npos;
    o->argv_rest = argv;
    return CLI_EXIT_OK;
}

/* Checks that need several flags at once: what the library would refuse
 * only after reading the data. */
static int check_combination(const cli_command *c, const cli_opts *o) {
    if (!(c->flags & OPT_FILE_ARG) && o->argc_rest > 0)
        return cli_error(CLI_EXIT_USAGE, "unexpected argument '%s'; see 'rotor %s --help'",
                         o->argv_rest[0], c->name);
    if (c->flags & OPT_UPDATE) {
        if (o->keys != NULL && o->add == NULL)
            return cli_error(CLI_EXIT_USAGE, "--keys gives the keys of --add's vectors");
        if (o->labels != NULL && o->add == NULL)
            return cli_error(CLI_EXIT_USAGE, "--labels gives the labels of --add's vectors");
        if (o->add == NULL && o->remove == NULL && !o->compact)
            return cli_error(CLI_EXIT_USAGE, "update needs --add, --remove or --compact");
        return CLI_EXIT_OK;
    }
    const bool builds = !(c->flags & OPT_INDEX) || cli_index_is_kind(o);
    if (o->labels != NULL && !builds)
        return cli_error(CLI_EXIT_USAGE,
                         "--labels labels the vectors of a build; an index file keeps its own");
    if (o->filtered && builds && o->labels == NULL)
        return cli_error(CLI_EXIT_USAGE, "--filter needs --labels to know the vectors' labels");
    if (!(c->flags & OPT_INDEX) || !cli_index_is_kind(o))
        return CLI_EXIT_OK;
    const char *kind = o->index ? o->index : "flat";
    int rc = cli_check_sweep_kind(o, kind);
    if (rc != CLI_EXIT_OK)
        return rc;
    rotor_params p;
    if ((rc = cli_index_params(o, &p)) != CLI_EXIT_OK)
        return rc;
    if (rotor_params_check(&p) != ROTOR_OK)
        return cli_error(CLI_EXIT_USAGE, "%s", rotor_last_error());
    return CLI_EXIT_OK;
}

int cli_parse(int argc, char **argv, const cli_command **cmd, cli_opts *o) {
    *cmd = NULL;
    if (argc < 1)
        return cli_error(CLI_EXIT_USAGE, "no command given; see 'rotor --help'");
    const char *name = argv[0];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0)
        return CLI_PARSED_HELP;
    if (strcmp(name, "--version") == 0)
        return CLI_PARSED_VERSION;
    const cli_command *c = NULL;
    for (size_t i = 0; i < cli_n_commands; i++)
        if (strcmp(cli_commands[i].name, name) == 0)
            c = &cli_commands[i];
    if (c == NULL)
        return cli_error(CLI_EXIT_USAGE, "unknown command '%.80s'; see 'rotor --help'", name);
    *cmd = c;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return CLI_PARSED_HELP;
    int rc = parse_flags(c, argc - 1, argv + 1, o);
    if (rc == CLI_EXIT_OK)
        rc = check_combination(c, o);
    return rc;
}
