#!/usr/bin/python3
"""Compare benchmark JSON lines (from `rotor bench --json` and
bench/peers/peers.py): per data set, the best QPS each method reaches at
recall@10 floors, and its ratio to rotor's best.

    bench/compare.py results.jsonl [--floors 0.9,0.95,0.99] [--cpu] [--svg curves.svg]

Below the methods, a "best peer" row: at each floor the highest QPS of any
method that is not rotor's (every peer, build and sweep point), and beside
it, in the ratio column, rotor's best QPS over it, i.e. rotor against the
strongest peer at that recall. One line per floor then names that peer's
method, build and params, and the recall@10 it reached:

    best peer @0.95: hnswlib:hnsw (native) M=16,efC=200,ef=16, recall@10 0.9687, 9585.8

--cpu divides queries by the CPU seconds of the searching threads instead of
wall time, which keeps a comparison readable when the machine is shared.
--svg draws every method's recall/QPS curve into one plot per data set
(curves.svg, or curves-<data set>.svg when there are several).

Rows of filtered searches (with "filter", from `peers.py --labels/--filter`)
are compared only with rows of the same labels file and filter; each such
group is printed with its selectivity.
"""
import argparse
import html
import json
import math
import os
import sys
from collections import defaultdict


def label(r):
    tool = r.get("tool", "rotor")
    build = r.get("build")
    name = f"{tool}:{r['method']}"
    if tool == "rotor" and r.get("quant") and r["quant"] != "none":
        # A walk on other codes first, as rotor's own labels put it.
        walk = r.get("walk_quant")
        name += f" {walk}+{r['quant']}" if walk else f" {r['quant']}"
    if build:
        name += f" ({build})"
    return name


def frontier(pts):
    """The points no other point beats on both recall and QPS, by recall."""
    out = []
    for r, q in sorted(pts, key=lambda p: (-p[0], -p[1])):
        if not out or q > out[-1][1]:
            out.append((r, q))
    return sorted(out)


COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


def write_svg(path, title, methods, qps_label):
    w, h, ml, mr, mt, mb = 820, 520, 70, 250, 40, 50
    pts = [p for v in methods.values() for p in v]
    rmin = max(0.5, min(r for r, _ in pts) - 0.01)
    qlo = math.log10(max(1.0, min(q for _, q in pts)) / 1.3)
    qhi = math.log10(max(q for _, q in pts) * 1.3)

    def xy(r, q):
        x = ml + (r - rmin) / (1.0 - rmin) * (w - ml - mr)
        y = h - mb - (math.log10(q) - qlo) / (qhi - qlo) * (h - mt - mb)
        return x, y

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{ml}" y="24" font-size="15">{html.escape(title)}</text>']
    for i in range(11):
        r = rmin + (1.0 - rmin) * i / 10
        x, _ = xy(r, 10 ** qlo)
        out.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{h - mb}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{h - mb + 16}" text-anchor="middle">{r:.3f}</text>')
    for e in range(int(math.floor(qlo)), int(math.ceil(qhi)) + 1):
        for m in (1, 2, 5):
            q = m * 10 ** e
            if not qlo <= math.log10(q) <= qhi:
                continue
            _, y = xy(rmin, q)
            out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{w - mr}" y2="{y:.1f}" stroke="#eee"/>')
            out.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end">{q:g}</text>')
    out.append(f'<text x="{(ml + w - mr) / 2}" y="{h - 12}" text-anchor="middle">recall@10</text>')
    out.append(f'<text x="16" y="{(mt + h - mb) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(mt + h - mb) / 2})">{html.escape(qps_label)} (log)</text>')
    for i, (m, p) in enumerate(sorted(methods.items(), key=lambda kv: not kv[0].startswith("rotor"))):
        c = COLOURS[i % len(COLOURS)]
        line = [pt for pt in frontier(p) if pt[0] >= rmin]
        if not line:
            continue
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(r, q) for r, q in line))
        out.append(f'<polyline points="{coords}" fill="none" stroke="{c}" stroke-width="2"/>')
        for r, q in line:
            x, y = xy(r, q)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{c}"/>')
        ly = mt + 14 + 18 * i
        out.append(f'<line x1="{w - mr + 12}" y1="{ly - 4}" x2="{w - mr + 32}" y2="{ly - 4}" '
                   f'stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{w - mr + 38}" y="{ly}">{html.escape(m)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="+")
    p.add_argument("--floors", default="0.9,0.95,0.99")
    p.add_argument("--cpu", action="store_true", help="QPS per CPU-second of search threads")
    p.add_argument("--threads", type=int, default=1, help="only rows with this many threads")
    p.add_argument("--svg", help="write the recall/QPS curves to this SVG file")
    a = p.parse_args()
    floors = [float(x) for x in a.floors.split(",")]
    rows = []
    for path in a.files:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    # A bench of an index file names the file as its data set; it joins the
    # rows of the data set the file was built from: the one other run of
    # the same size, dimension and metric.
    shape = lambda r: (r.get("n_base"), r.get("dim"), r["metric"])
    named = {}
    for r in rows:
        if "index_file" not in r:
            named.setdefault(shape(r), r["dataset"])
    for r in rows:
        if "index_file" in r and shape(r) in named:
            r["dataset"] = named[shape(r)]
    by_set = defaultdict(lambda: defaultdict(list))
    selectivity = {}
    for r in rows:
        if r.get("kind") == "eval-quant" or r.get("threads", 1) != a.threads \
                or r.get("recall_at_10") is None:
            continue
        qps = r["n_queries"] / r["cpu_seconds"] if a.cpu else r["qps"]
        key = (r["dataset"], r["metric"], r.get("labels") or "", r.get("filter") or "")
        by_set[key][label(r)].append((r["recall_at_10"], qps, r.get("params") or ""))
        if r.get("filter") is not None:
            selectivity.setdefault(key, r.get("selectivity"))
    if not by_set:
        sys.exit("compare: no rows with recall@10")
    for (dataset, metric, labels, filt), methods in sorted(by_set.items()):
        where = ""
        if filt:
            sel = selectivity.get((dataset, metric, labels, filt))
            where = f", filter '{filt}' on {labels}" + \
                (f" (selectivity {sel:.4g})" if sel is not None else "")
        print(f"\n{dataset} ({metric}){where}, {'QPS per CPU-second' if a.cpu else 'QPS'}, "
              f"{a.threads} thread(s)")
        best = {m: [max([q for r, q, _ in pts if r >= fl], default=None) for fl in floors]
                for m, pts in methods.items()}
        # rotor's best configuration at each floor is what peers are held to.
        rotor_rows = [m for m in best if m.startswith("rotor:")]
        rotor = None
        if rotor_rows:
            rotor = "rotor (best of above)" if len(rotor_rows) > 1 else rotor_rows[0]
            best[rotor] = [max([best[m][i] for m in rotor_rows if best[m][i]], default=None)
                           for i in range(len(floors))]
        head = f"{'method':34s}" + "".join(f"{'@' + str(fl):>12s}{'ratio':>8s}" for fl in floors)
        print(head)
        order = sorted(best.items(), key=lambda kv: (not kv[0].startswith("rotor"), kv[0] == rotor,
                                                    kv[0]))
        # The best peer at each floor: (qps, method, recall, params) of the
        # fastest sweep point of any non-rotor method that reaches it.
        peers = sorted(m for m in methods if not m.startswith("rotor"))
        best_peer = [max([(q, m, r, prm) for m in peers for r, q, prm in methods[m] if r >= fl],
                         key=lambda p: p[0], default=None) for fl in floors]
        rows = order + ([("best peer", [bp[0] if bp else None for bp in best_peer])]
                        if peers else [])
        for m, vals in rows:
            line = f"{m:34s}"
            for i, v in enumerate(vals):
                ref = best[rotor][i] if rotor else None
                is_rotor = m.startswith("rotor")
                ratio = f"{ref / v:8.2f}" if v and ref and not is_rotor else f"{'':8s}"
                line += (f"{v:12.1f}" if v else f"{'-':>12s}") + ratio
            print(line)
        if rotor:
            print("(ratio = rotor's best QPS / this method's QPS at the same recall floor)")
        if peers:
            print("(best peer = the fastest sweep point of any non-rotor method at that floor)")
        width = max(len(str(fl)) for fl in floors) + 2
        for fl, bp in zip(floors, best_peer) if peers else ():
            head = f"best peer {'@' + str(fl) + ':':{width}s}"
            if bp is None:
                print(f"{head} no peer reaches it")
                continue
            q, m, r, prm = bp
            print(f"{head} {m}{' ' + prm if prm else ''}, recall@10 {r:.4f}, {q:.1f}")
        if a.svg:
            path = a.svg
            if len(by_set) > 1:
                root, ext = os.path.splitext(a.svg)
                tag = dataset.split('.')[0]
                if filt:
                    tag += "-" + labels.split(".")[0] + "-" + \
                        "".join(ch if ch.isalnum() else "_" for ch in filt)
                path = f"{root}-{tag}{ext or '.svg'}"
            write_svg(path, f"{dataset} ({metric}){where}, {a.threads} thread(s)",
                      {m: [(r, q) for r, q, _ in pts] for m, pts in methods.items()},
                      "queries per CPU-second" if a.cpu else "QPS")
            print(f"curves: {path}")


if __name__ == "__main__":
    main()
