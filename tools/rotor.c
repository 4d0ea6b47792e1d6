/*
 * rotor — the command-line tool: subcommand table, shared flag parsing,
 * --help. Every failure ends in one line on stderr and a non-zero exit:
 * 2 for a usage mistake, 1 when the work itself failed.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const cli_command commands[] = {
    {"gt", "exact ground truth (ids and distances) by brute force",
     "rotor gt --base FILE --queries FILE --k N --metric l2|ip|cosine --out FILE\n"
     "         [--distances FILE] [--threads N]\n"
     "Computes the exact k nearest neighbours of every query among the base\n"
     "vectors and writes their ids (.ivecs, .ibin or .npy) and, with --distances,\n"
     "their distances (.fvecs, .fbin or .npy).",
     OPT_BASE | OPT_QUERIES | OPT_K | OPT_METRIC | OPT_OUT | OPT_DISTANCES | OPT_THREADS |
         OPT_QUIET,
     cmd_gt},
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
     "--base; without it recall counts ground-truth ids. With vectors on disk the\n"
     "mean and p99 reads per query and the I/O wait per query are reported too.",
     OPT_INDEX | OPT_BASE | OPT_QUERIES | OPT_GT | OPT_K | OPT_METRIC | OPT_THREADS | OPT_RUNS |
         OPT_MAX_QUERIES | OPT_JSON | OPT_QUIET | OPT_QUANT | OPT_RERANK | OPT_GRAPH | OPT_SWEEP |
         OPT_SEARCH | OPT_STORE,
     cmd_bench},
    {"search", "k nearest neighbours of every query",
     "rotor search --index flat|vamana|ivf|FILE [--base FILE] --queries FILE --k N\n"
     "             --out FILE [--metric l2] [--quant SPEC] [--distances FILE] [--threads N]\n"
     "Builds the index in memory from --base (or opens an index file, checking\n"
     "every section's checksum first), searches every query and writes the ids\n"
     "(and with --distances the distances).",
     OPT_INDEX | OPT_BASE | OPT_QUERIES | OPT_K | OPT_METRIC | OPT_OUT | OPT_DISTANCES |
         OPT_THREADS | OPT_QUIET | OPT_QUANT | OPT_RERANK | OPT_GRAPH | OPT_SEARCH | OPT_STORE,
     cmd_search},
    {"build", "build an index and save it to a file",
     "rotor build --index flat|vamana|ivf --base FILE --out FILE [--metric l2]\n"
     "            [--quant SPEC] [--full-vectors ram|disk] [graph options]\n"
     "Builds the index over the base vectors and writes it to --out in one\n"
     "checksummed file, atomically (the old file stays whole until the new one\n"
     "is). The base file is streamed into a temporary file beside --out that\n"
     "the build maps, so the vectors need not fit in memory (the codes and\n"
     "graph do). --full-vectors disk marks the index to be opened with only\n"
     "the graph and codes in RAM, reading the vectors each rerank needs.",
     OPT_INDEX | OPT_BASE | OPT_METRIC | OPT_OUT | OPT_QUIET | OPT_QUANT | OPT_GRAPH | OPT_STORE,
     cmd_build},
    {"info", "what a data set or index file holds",
     "rotor info FILE\n"
     "For a data set: the format, element type, rows and dimensions from its header.\n"
     "For an index file: its kind, metric, size, quantizer, memory per part and,\n"
     "with vectors on disk, the I/O backend an open would use.",
     OPT_STORE | OPT_FILE_ARG, cmd_info},
    {"verify", "check every byte of a data set or index file",
     "rotor verify FILE\n"
     "Reads the whole file: for a data set, record headers, sizes, NaN and infinity;\n"
     "for an index file, every section's checksum and every graph and list id.\n"
     "Exit 0 when the file is sound, 1 with one line naming the first fault.",
     OPT_FILE_ARG, cmd_verify},
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
         OPT_THREADS | OPT_JSON | OPT_QUIET,
     cmd_eval_quant},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

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
     "SPEC  compress vectors: tq1..tq8, tqip2..tqip8, bin1, bin2, bin1fs, bin2fs, pq<M>, "
     "pq<M>x4"},
    {"--rerank", OPT_RERANK, "N  candidates rescored on full vectors (default 10 x k; 0 = none)"},
    {"--degree", OPT_GRAPH, "N  vamana: most neighbours per node (default 32)"},
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
    {"--nlist", OPT_GRAPH, "N  ivf: partitions (default about 4 sqrt(n))"},
    {"--build-threads", OPT_GRAPH, "N  threads building the index (default all cores)"},
    {"--list", OPT_SEARCH, "N  vamana: candidate list while searching (default max(k, 64))"},
    {"--nprobe", OPT_SEARCH, "N  ivf: partitions scanned per query (default 16)"},
    {"--starts", OPT_SEARCH,
     "N  quantized vamana: about N sampled starting points scored first, from the groups\n"
     "   nearest the query (default 256, at most 16384)"},
    {"--load", OPT_SEARCH,
     "0|1  an index file: 1 copies it into memory (huge pages) instead of mapping it"},
    {"--sweep", OPT_SWEEP,
     "L=A,B,..|nprobe=A,B,..[;rerank=A,B,..]  one measurement per value (pair)"},
    {"--full-vectors", OPT_STORE,
     "ram|disk  where full vectors live once the index is opened (default: as built)"},
    {"--io", OPT_STORE, "auto|uring|pread  how vectors on disk are read (default auto)"},
};
enum { N_FLAGS = sizeof flags / sizeof flags[0] };

static void usage_all(void) {
    FILE *f = stdout;
    fprintf(f,
            "rotor %s — approximate nearest-neighbour search\n\n"
            "usage: rotor COMMAND [OPTIONS]   (rotor COMMAND --help for details)\n\n"
            "commands:\n",
            rotor_version_string());
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\nFile formats are recognised by extension: .fvecs .ivecs .bvecs .fbin .u8bin\n"
            ".i8bin .ibin .npy, and MNIST IDX files (gzip or not) by their magic.\n"
            "SIMD kernels in use: %s (set ROTOR_SIMD=scalar|avx2|avx512 to lower).\n",
            rotor_simd_level());
}

static void usage_command(const cli_command *c) {
    printf("usage: %s\n", c->usage);
    if (c->flags & ~(unsigned)OPT_FILE_ARG) {
        printf("\noptions:\n");
        for (int i = 0; i < N_FLAGS; i++)
            if (c->flags & flags[i].bit)
                printf("  %-14s %s\n", flags[i].name, flags[i].help);
    }
}

static int parse_size(const char *flag, const char *s, size_t lo, size_t hi, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] == '\0' || s[0] == '-' || *end != '\0' || errno != 0 || v < lo || v > hi)
        return cli_error(CLI_EXIT_USAGE, "%s takes a whole number from %zu to %zu, not '%s'", flag,
                         lo, hi, s);
    *out = (size_t)v;
    return CLI_EXIT_OK;
}

static int parse_navigator_flag(const char *name, const char *value, cli_opts *o) {
    size_t n = 0;
    int rc = CLI_EXIT_OK;
    if (strcmp(name, "--alpha") == 0) {
        char *end;
        errno = 0;
        o->alpha = strtod(value, &end);
        if (*value == '\0' || *end != '\0' || errno != 0 || !(o->alpha >= 1 && o->alpha <= 4))
            rc = cli_error(CLI_EXIT_USAGE, "--alpha takes a number from 1 to 4, not '%s'", value);
    } else if (strcmp(name, "--walk-quant") == 0) {
        o->walk_quant = value;
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
    } else if (strcmp(name, "--starts") == 0) {
        rc = parse_size(name, value, 1, 4096, &n);
        o->starts = (unsigned)n;
    } else if (strcmp(name, "--load") == 0) {
        rc = parse_size(name, value, 0, 1, &n);
        o->load = (int)n;
    }
    return rc;
}

static int parse_flags(const cli_command *c, int argc, char **argv, cli_opts *o) {
    memset(o, 0, sizeof *o);
    o->metric = ROTOR_METRIC_L2;
    o->k = 10;
    o->runs = 1;
    o->rerank = -1;
    o->neighbor_codes = -1;
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
            return cli_error(CLI_EXIT_USAGE, "unknown option '%s'; see 'rotor %s --help'", arg,
                             c->name);
        memcpy(name, arg, len);
        name[len] = '\0';
        const struct flag *fl = NULL;
        for (int j = 0; j < N_FLAGS; j++)
            if (strcmp(flags[j].name, name) == 0)
                fl = &flags[j];
        if (fl == NULL || !(c->flags & fl->bit))
            return cli_error(CLI_EXIT_USAGE, "%s does not take '%s'; see 'rotor %s --help'",
                             c->name, name, c->name);
        if (fl->bit == OPT_QUIET) {
            o->quiet = true;
            continue;
        }
        if (eq)
            value = eq + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return cli_error(CLI_EXIT_USAGE, "%s needs a value", name);

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
        case OPT_QUANT: o->quant = value; break;
        case OPT_SWEEP: o->sweep = value; break;
        case OPT_STORE:
            if (strcmp(name, "--io") == 0) {
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

int main(int argc, char **argv) {
    if (argc < 2)
        return cli_error(CLI_EXIT_USAGE, "no command given; see 'rotor --help'");
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage_all();
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("rotor %s (simd %s)\n", rotor_version_string(), rotor_simd_level());
        return CLI_EXIT_OK;
    }
    const cli_command *c = NULL;
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            c = &commands[i];
    if (c == NULL)
        return cli_error(CLI_EXIT_USAGE, "unknown command '%s'; see 'rotor --help'", name);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage_command(c);
            return CLI_EXIT_OK;
        }
    }
    cli_opts o;
    int rc = parse_flags(c, argc - 2, argv + 2, &o);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (!(c->flags & OPT_FILE_ARG) && o.argc_rest > 0)
        return cli_error(CLI_EXIT_USAGE, "unexpected argument '%s'; see 'rotor %s --help'",
                         o.argv_rest[0], c->name);
    return c->run(&o);
}
