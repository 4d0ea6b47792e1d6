#!/usr/bin/python3
"""Make GloVe-like word-vector benchmark sets from text that Debian ships.

    bench/make_wordvec.py [OUT_DIR] [--dims 25,100,200] [--epoch 5 | 5,3,2]
        [--min-count 5] [--threads 2] [--nq 1000] [--seed 2024]
        [--rotor build/release/rotor] [--max-tokens N] [--packages a,b,..]

OUT_DIR defaults to ./data/wordvec. It must not be inside the repository:
the corpus and the models are large and are made again on each machine.

What it does:
  1. corpus.txt from the files of the packages in TEXT_PACKAGES (listed
     with dpkg-query -L): English man pages (man1..man8, rendered with
     groff to plain text), documentation text (READMEs, NEWS, changelogs,
     .txt/.md/.rst, the English HTML of the Debian handbook), fortunes,
     dictd dictionaries, the common licences; lower-cased, split on
     anything that is not a-z, one paragraph a line. Exact duplicate
     paragraphs are dropped so that boilerplate (licence texts, a page
     installed under two names) does not dominate the statistics.
  2. fastText skip-gram without sub-words (-minn 0 -maxn 0) for each
     dimension, run under nice.
  3. A seeded choice of NQ words is held out as queries; the rest is the
     base, in fastText's order (most frequent first). The same words are
     held out at every dimension. Words are written to wordvec_base.txt and
     wordvec_query.txt (line i = row i).
  4. Exact cosine top-100 with `rotor gt`, then a check of a sample of it
     in float64 numpy, and the statistics of each set.

Outputs per dimension D: wordvec-D_base.fbin, wordvec-D_query.fbin,
wordvec-D_gt.ivecs (.fbin = u32 rows, u32 dims, float32 rows).

Determinism: the corpus, the held-out choice and the ground truth are
deterministic. fastText is deterministic only with one thread
(--threads 1, about twice as slow); with 2 threads the vectors differ from
run to run (the sets' statistics do not, to the precision quoted).

Debian packages needed: fasttext, groff-base, python3-numpy, gzip and the
text packages of TEXT_PACKAGES; the script names what is missing and
installs nothing. On an image whose dpkg configuration excludes
/usr/share/man or /usr/share/doc (path-exclude), those files are absent and
the corpus is smaller.
"""
import argparse
import gzip
import hashlib
import html
import os
import re
import shutil
import subprocess
import sys
import time

try:
    import numpy as np
except ImportError:
    sys.exit("make_wordvec: numpy is missing: run with Debian's /usr/bin/python3 "
             "(package python3-numpy)")

NEEDED = {"fasttext": "fasttext", "groff": "groff-base", "zcat": "gzip",
          "dpkg-query": "dpkg"}
# The text comes only from these Debian packages (Debian 12 names), listed
# with dpkg: the same packages give the same corpus on any machine, whatever
# else is installed (a machine's own extra packages, e.g. a cloud vendor's
# CLI with thousands of near-identical man pages, would otherwise dominate).
TEXT_PACKAGES = ["manpages", "manpages-dev", "perl-doc", "libssl-doc", "git-doc",
                 "linux-doc-6.1", "python3.11-doc", "debian-handbook", "debian-reference-en",
                 "fortunes", "dict-gcide", "dict-wn", "dict-foldoc", "dict-jargon", "base-files"]
DOC_NAME = re.compile(r"^(readme|news|changelog|changes|copyright|authors|todo|faq|"
                      r"history|thanks|bugs|install)", re.I)
DOC_EXT = (".txt", ".md", ".rst", ".text")
WORD = re.compile(r"[a-z]+")


def log(*a):
    print(*a, flush=True)


def check_tools(packages):
    missing = [pkg for cmd, pkg in NEEDED.items() if shutil.which(cmd) is None]
    for pkg in packages:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if not r.stdout.endswith(" installed"):
            missing.append(pkg)
    if missing:
        sys.exit("make_wordvec: missing Debian packages; install them with:\n"
                 "  apt-get install --no-install-recommends " + " ".join(sorted(set(missing))))


def paragraphs(text):
    """Yield normalised paragraphs (blank-line separated) of a text."""
    for block in re.split(r"\n\s*\n", text):
        words = WORD.findall(block.lower())
        if len(words) >= 3:          # headings and stray tokens carry no context
            yield " ".join(words)


def package_files(packages):
    """The text files of the packages, split into man pages and the rest."""
    man, text = [], []
    for pkg in packages:
        r = subprocess.run(["dpkg-query", "-L", pkg], stdout=subprocess.PIPE, text=True, check=True)
        for p in sorted(r.stdout.split("\n")):
            if not p or os.path.islink(p) or not os.path.isfile(p):
                continue
            name = os.path.basename(p)
            base = name[:-3] if name.endswith(".gz") else name
            if re.search(r"/share/man/man[1-8]/", p):     # English pages only
                man.append(p)
            elif "/debian-handbook/html/" in p:
                if "/en-US/" in p and name.endswith(".html"):
                    text.append(p)
            elif "/games/fortunes/" in p:
                if "." not in name and "/off/" not in p:  # .dat/.u8: indexes; off: rot13
                    text.append(p)
            elif "/share/common-licenses/" in p or name.endswith(".dict.dz"):
                text.append(p)
            elif re.search(r"\.(pdf|html?|pod)$", base):
                continue                          # pod: the same text as perl-doc's pages
            elif DOC_NAME.match(base) or base.lower().endswith(DOC_EXT):
                text.append(p)
    return man, text


def read_maybe_gz(path):
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith((".gz", ".dz")):             # dictd's .dz is gzip with an index
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return ""
    return raw.decode("utf-8", "replace")


def render_man_batch(paths):
    """Render many pages in one groff run: starting groff once per page costs
    about fifteen times more. Pages that only include another (.so) are
    skipped: their text is rendered under its own name."""
    src = []
    for p in paths:
        t = read_maybe_gz(p)
        if t.lstrip().startswith(".so "):
            continue
        src.append(t)
        src.append("\n")
    # -rHY=0: no hyphenation (it would split words at line ends); a wide line
    # for the same reason; -P-cbou: no overstriking for bold or underline.
    r = subprocess.run(["groff", "-t", "-Tascii", "-man", "-rHY=0", "-rLL=250n", "-P-cbou"],
                       input="".join(src).encode("utf-8", "replace"),
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return r.stdout.decode("ascii", "replace")


def html_text(t):
    """Plain text of an HTML page: enough for word counts, not a parser.
    Block-level tags become paragraph breaks so that paragraphs stay apart."""
    t = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", t)
    t = re.sub(r"(?i)</?(p|div|h[1-6]|li|pre|table|tr|br|dt|dd)\b[^>]*>", "\n\n", t)
    t = re.sub(r"<[^>]*>", " ", t)
    return html.unescape(t)


def make_corpus(path, max_tokens, packages):
    seen = set()
    n_par = n_tok = n_dup = 0
    tmp = path + ".part"
    with open(tmp, "w") as out:
        def emit(text):
            nonlocal n_par, n_tok, n_dup
            for par in paragraphs(text):
                h = hashlib.blake2b(par.encode(), digest_size=8).digest()
                if h in seen:
                    n_dup += 1
                    continue
                seen.add(h)
                out.write(par)
                out.write("\n")
                n_par += 1
                n_tok += par.count(" ") + 1
            return max_tokens and n_tok >= max_tokens

        pages, docs = package_files(packages)
        log(f"corpus: {len(pages)} man pages")
        for i in range(0, len(pages), 200):
            if emit(render_man_batch(pages[i:i + 200])):
                break
        man_tok = n_tok
        log(f"corpus: {len(docs)} documentation files")
        for p in docs:
            if max_tokens and n_tok >= max_tokens:
                break
            t = read_maybe_gz(p)
            emit(html_text(t) if p.endswith(".html") else t.replace("\n%\n", "\n\n"))
    os.replace(tmp, path)
    log(f"corpus: {n_tok:,} tokens in {n_par:,} paragraphs "
        f"({man_tok:,} from man pages; {n_dup:,} duplicate paragraphs dropped)")


def train(corpus, out_prefix, dim, epoch, a):
    cmd = ["nice", "-n", "10", "fasttext", "skipgram", "-input", corpus, "-output", out_prefix,
           "-dim", str(dim), "-epoch", str(epoch), "-minCount", str(a.min_count),
           "-minn", "0", "-maxn", "0", "-thread", str(a.threads), "-seed", str(a.seed),
           "-verbose", "1"]
    log("train: " + " ".join(cmd))
    t = time.time()
    subprocess.run(cmd, check=True)
    log(f"train: dim {dim}: {time.time() - t:.0f} s")


def read_vec(path):
    """fastText's .vec text: a header line 'n d', then 'word v1 .. vd'."""
    words, rows = [], []
    with open(path, encoding="utf-8") as f:
        n, d = map(int, f.readline().split())
        for line in f:
            parts = line.rstrip().split(" ")
            if len(parts) != d + 1 or not WORD.fullmatch(parts[0]):
                continue                     # '</s>', the end-of-line token
            words.append(parts[0])
            rows.append(np.array(parts[1:], dtype=np.float32))
    if len(words) < n - 1:
        sys.exit(f"make_wordvec: {path} has {len(words)} of {n} rows (cut short?): "
                 "remove it and train again")
    return words, np.vstack(rows)


def write_fbin(path, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    with open(path, "wb") as f:
        np.array(x.shape, dtype=np.uint32).tofile(f)
        x.tofile(f)


def read_ivecs(path):
    a = np.fromfile(path, dtype=np.int32)
    k = a[0]
    return a.reshape(-1, k + 1)[:, 1:]


def unit(x):
    x = x.astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


def stats(name, base, queries, gt, words, qwords, seed):
    rng = np.random.default_rng(seed + 1)
    ub = unit(base)
    i = rng.integers(0, len(base), 20000)
    j = rng.integers(0, len(base), 20000)
    keep = i != j
    pair_cos = (ub[i[keep]] * ub[j[keep]]).sum(axis=1)
    mean_dir = ub.mean(axis=0)
    uq = unit(queries)
    # exact float64 top-10 of a sample of queries against the file's top-10
    sample = rng.choice(len(queries), size=min(200, len(queries)), replace=False)
    hits = 0
    nn1, nn10 = [], []
    for qi in sample:
        sims = ub @ uq[qi]
        top = np.argpartition(-sims, 10)[:10]
        ref = sims[top]
        got = sims[gt[qi, :10]]
        # a tie at the 10th place may be ordered either way: count by similarity
        hits += int((got >= np.min(ref) - 1e-6).sum())
        s = np.sort(ref)[::-1]
        nn1.append(s[0])
        nn10.append(s[9])
    norms = np.linalg.norm(base.astype(np.float64), axis=1)
    log(f"stats {name}: rows {base.shape[0]:,} (+{queries.shape[0]:,} queries), dims {base.shape[1]}; "
        f"mean pairwise cosine {pair_cos.mean():.3f} (sd {pair_cos.std():.3f}, 20k pairs); "
        f"norm of the mean unit vector {np.linalg.norm(mean_dir):.3f}; "
        f"vector norms median {np.median(norms):.2f} (p5 {np.percentile(norms, 5):.2f}, "
        f"p95 {np.percentile(norms, 95):.2f}); "
        f"query cosine to 1st/10th neighbour median {np.median(nn1):.3f}/{np.median(nn10):.3f}; "
        f"ground truth recall@10 vs float64 numpy on {len(sample)} queries: "
        f"{hits / (10 * len(sample)):.4f}")
    for qi in range(3):
        log(f"  {qwords[qi]}: " + ", ".join(words[t] for t in gt[qi, :8]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default=os.path.join(".", "data", "wordvec"))
    ap.add_argument("--dims", default="25,100,200")
    ap.add_argument("--epoch", default="5",
                    help="epochs: one number, or one per dimension (e.g. 5,3,2)")
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--max-tokens", type=int, default=0,
                    help="stop gathering text after this many tokens (0: all)")
    ap.add_argument("--packages", default=",".join(TEXT_PACKAGES),
                    help="Debian packages whose text makes the corpus")
    ap.add_argument("--rotor", default=os.path.join("build", "release", "rotor"))
    ap.add_argument("--redo-corpus", action="store_true")
    a = ap.parse_args()
    packages = a.packages.split(",")
    check_tools(packages)
    if not os.access(a.rotor, os.X_OK):
        sys.exit(f"make_wordvec: no rotor binary at {a.rotor}: build it first "
                 "(cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release && "
                 "cmake --build build/release) or pass --rotor")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.abspath(a.out)
    if out == repo or out.startswith(repo + os.sep):
        sys.exit("make_wordvec: the output directory must be outside the repository")
    os.makedirs(out, exist_ok=True)
    corpus = os.path.join(out, "corpus.txt")
    if a.redo_corpus or not os.path.exists(corpus):
        make_corpus(corpus, a.max_tokens, packages)
    else:
        log(f"corpus: reusing {corpus}")

    dims = [int(d) for d in a.dims.split(",")]
    epochs = [int(e) for e in a.epoch.split(",")]
    if len(epochs) == 1:
        epochs *= len(dims)
    if len(epochs) != len(dims):
        sys.exit("make_wordvec: --epoch needs one value or one per dimension")
    qset = None
    for dim, epoch in zip(dims, epochs):
        prefix = os.path.join(out, f"model-{dim}")
        if not os.path.exists(prefix + ".vec"):
            train(corpus, prefix, dim, epoch, a)
        words, x = read_vec(prefix + ".vec")
        if qset is None:
            # held out once, by word, so every dimension has the same queries
            rng = np.random.default_rng(a.seed)
            pick = np.sort(rng.choice(len(words), size=a.nq, replace=False))
            qwords = [words[i] for i in pick]
            qset = set(qwords)
            bwords = [w for w in words if w not in qset]
            with open(os.path.join(out, "wordvec_query.txt"), "w") as f:
                f.write("\n".join(qwords) + "\n")
            with open(os.path.join(out, "wordvec_base.txt"), "w") as f:
                f.write("\n".join(bwords) + "\n")
        index = {w: i for i, w in enumerate(words)}
        missing = [w for w in qwords + bwords if w not in index]
        if missing:
            sys.exit(f"make_wordvec: dim {dim} lacks {len(missing)} words of the first "
                     "vocabulary; remove the .vec files and train again")
        base = x[[index[w] for w in bwords]]
        queries = x[[index[w] for w in qwords]]
        bpath = os.path.join(out, f"wordvec-{dim}_base.fbin")
        qpath = os.path.join(out, f"wordvec-{dim}_query.fbin")
        gpath = os.path.join(out, f"wordvec-{dim}_gt.ivecs")
        write_fbin(bpath, base)
        write_fbin(qpath, queries)
        subprocess.run(["nice", "-n", "10", a.rotor, "gt", "--base", bpath, "--queries", qpath,
                        "--k", str(a.k), "--metric", "cosine", "--out", gpath], check=True)
        stats(f"wordvec-{dim}", base, queries, read_ivecs(gpath), bwords, qwords, a.seed)


if __name__ == "__main__":
    main()
