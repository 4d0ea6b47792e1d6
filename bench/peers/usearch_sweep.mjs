// USearch (its npm package) on the protocol of peers.py: one index built
// with connectivity M, expansion_add --ef-construction, on --build-threads;
// then, for each expansion_search in --ef, every query searched alone on one
// thread (a single-query `index.search(vector, k, 1)` call per query),
// timed per query and over the pass. peers.py runs this as a child and
// computes recall from the ids written here, as for its other methods.
//
//   node bench/peers/usearch_sweep.mjs --usearch DIR --base B --queries Q --out OUTDIR
//       [--metric l2|ip|cosine] [--k 10] [--m 16] [--ef-construction 200]
//       [--ef 10,16,...] [--build-threads N] [--runs 1] [--max-queries N]
//
// DIR: where `npm install usearch` was run (or the usearch package itself).
// B, Q: .fbin (float32), .u8bin (uint8) or .i8bin (int8): u32 rows, u32 dims,
// then the rows; integer rows are converted to float32, the index stores
// float32 (quantization "f32"). Metrics: l2 -> "l2sq", ip -> "ip", cosine ->
// "cos". The index is built once and saved to OUTDIR/index.usearch (its size
// is the reported index_bytes: the binding has no memory_usage()); for each
// ef value (raised to k) it is loaded into an Index made with that
// expansion_search: the binding has no setter for it, and load() keeps the
// expansion_search the Index was made with.
//
// stdout: JSON lines. {"kind": "build", ...}, then per ef {"kind": "point",
// ...} naming OUTDIR/ids-<i>.i64 (queries x k int64, -1 where fewer than k
// came back) and OUTDIR/lat-<i>.f64 (seconds per query), then {"kind":
// "done", ...}. cpu_seconds is the CPU time of the searching (main) thread
// (threadCpuSeconds below; "cpu_seconds_of": "thread"), process_cpu_seconds
// process.cpuUsage() over the same pass, which also counts V8's and libuv's
// helper threads (garbage collection). The search runs on the calling
// thread: with one query and threads = 1, USearch's executor starts no
// thread. Before the first pass, WARMUP_CALLS untimed searches let V8
// compile the binding's JavaScript.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const WARMUP_CALLS = 2000;

function fail(msg) {
    process.stderr.write(`usearch_sweep: ${msg}\n`);
    process.exit(2);
}

function parseArgs(argv) {
    const a = {
        metric: "l2", k: 10, m: 16, efConstruction: 200,
        ef: "10,16,24,32,48,64,96,128,192,256,384,512", buildThreads: 0, runs: 1,
        maxQueries: 0,
    };
    const names = {
        "--usearch": "usearch", "--base": "base", "--queries": "queries", "--out": "out",
        "--metric": "metric", "--k": "k", "--m": "m", "--ef-construction": "efConstruction",
        "--ef": "ef", "--build-threads": "buildThreads", "--runs": "runs",
        "--max-queries": "maxQueries",
    };
    for (let i = 0; i < argv.length; i += 2) {
        const key = names[argv[i]];
        if (!key || i + 1 >= argv.length)
            fail(`unknown or incomplete option '${argv[i]}'`);
        a[key] = argv[i + 1];
    }
    for (const key of ["usearch", "base", "queries", "out"])
        if (!a[key]) fail(`--${key} is required`);
    for (const key of ["k", "m", "efConstruction", "buildThreads", "runs", "maxQueries"]) {
        a[key] = Number(a[key]);
        if (!Number.isInteger(a[key]) || a[key] < 0) fail(`bad value for ${key}`);
    }
    a.ef = String(a.ef).split(",").filter((s) => s.trim()).map(Number);
    if (!a.ef.length || a.ef.some((v) => !Number.isInteger(v) || v <= 0))
        fail("--ef needs a comma list of positive integers");
    if (!["l2", "ip", "cosine"].includes(a.metric)) fail(`unknown metric '${a.metric}'`);
    if (a.k <= 0 || a.m <= 0 || a.runs <= 0) fail("--k, --m and --runs must be positive");
    return a;
}

// Rows of a .fbin / .u8bin / .i8bin file as one Float32Array, read in chunks
// (fs.readFileSync stops at 2 GiB).
function readVectors(file, maxRows) {
    const ext = path.extname(file).toLowerCase();
    const Elem = { ".fbin": Float32Array, ".u8bin": Uint8Array, ".i8bin": Int8Array }[ext];
    if (!Elem) fail(`'${file}': only .fbin, .u8bin and .i8bin are read`);
    const fd = fs.openSync(file, "r");
    const head = Buffer.alloc(8);
    if (fs.readSync(fd, head, 0, 8, 0) !== 8) fail(`'${file}' is truncated`);
    let rows = head.readUInt32LE(0);
    const dim = head.readUInt32LE(4);
    if (maxRows && maxRows < rows) rows = maxRows;
    const esize = Elem.BYTES_PER_ELEMENT;
    const out = new Float32Array(rows * dim);
    const chunkRows = Math.max(1, Math.floor((64 << 20) / (dim * esize)));
    const buf = Buffer.alloc(chunkRows * dim * esize);
    for (let r = 0; r < rows; r += chunkRows) {
        const nr = Math.min(chunkRows, rows - r);
        const bytes = nr * dim * esize;
        let got = 0;
        while (got < bytes) {
            const n = fs.readSync(fd, buf, got, bytes - got, 8 + r * dim * esize + got);
            if (n <= 0) fail(`'${file}' is truncated`);
            got += n;
        }
        const view = new Elem(buf.buffer, buf.byteOffset, nr * dim);
        out.set(view, r * dim);
    }
    fs.closeSync(fd);
    return { rows, dim, data: out };
}

// CPU seconds of the calling thread: process.threadCpuUsage() where Node has
// it (23.9 and later), else the kernel's run time of the thread from
// /proc/thread-self/schedstat (ns), which the kernel brings up to date only
// at scheduler ticks and switches: a 0.1 ms sleep first makes it current
// (without it a reading is up to a tick, ~4 ms, stale; a 1 us sleep often
// returns without a switch). null when neither is there. Called outside
// the timed window.
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
const schedstat = { fd: undefined, buf: Buffer.alloc(256) };

function threadCpuSeconds() {
    if (typeof process.threadCpuUsage === "function") {
        const u = process.threadCpuUsage();
        return (u.user + u.system) / 1e6;
    }
    if (schedstat.fd === undefined) {
        try {
            schedstat.fd = fs.openSync("/proc/thread-self/schedstat", "r");
        } catch {
            schedstat.fd = null;
        }
    }
    if (schedstat.fd === null) return null;
    Atomics.wait(sleepCell, 0, 0, 0.1);
    const got = fs.readSync(schedstat.fd, schedstat.buf, 0, schedstat.buf.length, 0);
    const ns = schedstat.buf.toString("latin1", 0, got).split(" ")[0];
    return Number(BigInt(ns)) / 1e9;
}

function processCpuSeconds(u) {
    return (u.user + u.system) / 1e6;
}

function loadUsearch(dir) {
    const nested = path.join(dir, "node_modules", "usearch");
    const pkgDir = fs.existsSync(path.join(nested, "package.json")) ? nested : dir;
    const pkgFile = path.join(pkgDir, "package.json");
    if (!fs.existsSync(pkgFile))
        fail(`no usearch package in '${dir}' (run npm install usearch there)`);
    const pkg = JSON.parse(fs.readFileSync(pkgFile, "utf8"));
    if (pkg.name !== "usearch") fail(`'${pkgDir}' holds package '${pkg.name}', not usearch`);
    const require = createRequire(pkgFile);
    return { usearch: require(pkgDir), version: pkg.version };
}

function main() {
    const a = parseArgs(process.argv.slice(2));
    const { usearch, version } = loadUsearch(a.usearch);
    const metric = { l2: "l2sq", ip: "ip", cosine: "cos" }[a.metric];
    const base = readVectors(a.base, 0);
    const queries = readVectors(a.queries, a.maxQueries);
    if (base.dim !== queries.dim) fail("queries and base differ in dimension");
    const d = base.dim, n = base.rows, nq = queries.rows, k = a.k;
    const buildThreads = a.buildThreads || os.availableParallelism();
    const config = (ef) => ({
        dimensions: d, metric, quantization: "f32", connectivity: a.m,
        expansion_add: a.efConstruction, expansion_search: ef, multi: false,
    });
    const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

    // Build: the time of making the index and adding every row on buildThreads.
    const keys = new BigUint64Array(n);
    for (let i = 0; i < n; i++) keys[i] = BigInt(i);
    const w0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    let built = new usearch.Index(config(64));
    built.add(keys, base.data, buildThreads);
    const buildSeconds = Number(process.hrtime.bigint() - w0) / 1e9;
    const buildCpu = processCpuSeconds(process.cpuUsage(c0));
    if (built.size() !== n) fail(`index holds ${built.size()} vectors, expected ${n}`);
    // Untimed searches so that V8 has compiled the binding's JavaScript
    // (Index.search and its helpers) before the first timed pass; each sweep
    // point then searches a freshly loaded index.
    const q = queries.data;
    for (let i = 0; i < WARMUP_CALLS; i++) {
        const j = i % nq;
        built.search(q.subarray(j * d, (j + 1) * d), k, 1);
    }
    const indexFile = path.join(a.out, "index.usearch");
    built.save(indexFile);
    built = null;
    base.data = null;
    const indexBytes = fs.statSync(indexFile).size;
    emit({
        kind: "build", version, node_version: process.version, metric, n_base: n, dim: d,
        n_queries: nq, connectivity: a.m, expansion_add: a.efConstruction,
        build_threads: buildThreads, build_seconds: buildSeconds, build_cpu_seconds: buildCpu,
        index_bytes: indexBytes,
    });

    for (let p = 0; p < a.ef.length; p++) {
        const ef = Math.max(a.ef[p], k);
        if (global.gc) global.gc();
        const index = new usearch.Index(config(ef));
        index.load(indexFile);
        if (index.size() !== n) fail(`loaded index holds ${index.size()} vectors`);
        const runs = [];
        for (let r = 0; r < a.runs; r++) {
            if (global.gc) global.gc();
            const ids = new BigInt64Array(nq * k).fill(-1n);
            const lat = new Float64Array(nq);
            const t0 = threadCpuSeconds();
            const p0 = process.cpuUsage();
            const wall0 = process.hrtime.bigint();
            for (let i = 0; i < nq; i++) {
                const s = process.hrtime.bigint();
                const res = index.search(q.subarray(i * d, (i + 1) * d), k, 1);
                lat[i] = Number(process.hrtime.bigint() - s) / 1e9;
                ids.set(res.keys, i * k);
            }
            const wall = Number(process.hrtime.bigint() - wall0) / 1e9;
            const pcpu = processCpuSeconds(process.cpuUsage(p0));
            const t1 = threadCpuSeconds();
            const tcpu = t0 !== null && t1 !== null ? t1 - t0 : null;
            runs.push({ qps: nq / wall, wall, tcpu, pcpu, ids, lat });
        }
        runs.sort((x, y) => x.qps - y.qps);
        const med = runs[Math.floor(runs.length / 2)];
        const idsFile = path.join(a.out, `ids-${p}.i64`);
        const latFile = path.join(a.out, `lat-${p}.f64`);
        fs.writeFileSync(idsFile, Buffer.from(med.ids.buffer));
        fs.writeFileSync(latFile, Buffer.from(med.lat.buffer));
        emit({
            kind: "point", ef: a.ef[p], expansion_search: ef, qps: med.qps,
            wall_seconds: med.wall,
            cpu_seconds: med.tcpu !== null ? med.tcpu : med.pcpu,
            cpu_seconds_of: med.tcpu !== null ? "thread" : "process",
            process_cpu_seconds: med.pcpu, ids_file: idsFile, lat_file: latFile,
        });
    }
    emit({ kind: "done", peak_rss_bytes: process.resourceUsage().maxRSS * 1024 });
}

main();
