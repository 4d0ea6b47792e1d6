#!/usr/bin/python3
"""Write a labels file for filtered search: one line per base vector,
space-separated non-negative integers, an empty line for no label (the
format of `rotor build --labels` and `peers.py --labels`).

    bench/make_labels.py --classes train-labels-idx1-ubyte.gz --out classes.txt
    bench/make_labels.py --random 0.5,0.1,0.01,0.001 --n 60000 --seed 7 --out random.txt

--classes: the class of each vector from an IDX label file (magic 0x801,
optionally gzipped, as MNIST / Fashion-MNIST ship), or from a .npy / text
file of one integer per line: one label per line.

--random P0,P1,...: label j is carried by each vector independently with
probability Pj, so the filter "j" passes a fraction Pj of the vectors; a
vector may carry several labels or none. Label j's draws come from their
own stream (seed, j), so adding a probability to the list leaves the
earlier labels unchanged.

Prints the count and fraction of vectors carrying each label.
"""
import argparse
import gzip
import struct
import sys

import numpy as np


def read_classes(path):
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    if path.endswith(".npy"):
        return np.load(path).astype(np.int64).ravel()
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) >= 8 and struct.unpack(">I", data[:4])[0] == 0x801:
        n, = struct.unpack(">I", data[4:8])
        if len(data) != 8 + n:
            sys.exit(f"make_labels: '{path}' is not a complete IDX label file")
        return np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)
    try:
        return np.array([int(v) for v in data.decode().split()], dtype=np.int64)
    except ValueError:
        sys.exit(f"make_labels: cannot read '{path}' (IDX 0x801, .npy or one integer a line)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--classes", metavar="FILE", help="one label per vector from a class file")
    g.add_argument("--random", metavar="P0,P1,...",
                   help="label j carried independently with probability Pj")
    p.add_argument("--n", type=int, help="--random: number of vectors")
    p.add_argument("--seed", type=int, default=2024, help="--random: seed (default 2024)")
    p.add_argument("--out", required=True, help="labels file to write")
    a = p.parse_args()

    if a.classes:
        cls = read_classes(a.classes)
        if (cls < 0).any():
            sys.exit("make_labels: negative class")
        lines = [str(int(c)) for c in cls]
        labels, counts = np.unique(cls, return_counts=True)
        n = len(cls)
    else:
        if not a.n or a.n <= 0:
            p.error("--random needs --n")
        try:
            probs = [float(v) for v in a.random.split(",") if v.strip()]
        except ValueError:
            p.error("--random needs a comma list of probabilities")
        if not probs or any(not 0.0 <= v <= 1.0 for v in probs):
            p.error("--random: probabilities must be within [0, 1]")
        n = a.n
        carry = np.zeros((len(probs), n), dtype=bool)
        for j, pj in enumerate(probs):
            carry[j] = np.random.default_rng([a.seed, j]).random(n) < pj
        cols = carry.T
        lines = [" ".join(str(j) for j in np.nonzero(row)[0]) for row in cols]
        labels = np.arange(len(probs))
        counts = carry.sum(axis=1)
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{a.out}: {n} lines")
    for lab, cnt in zip(labels, counts):
        print(f"  label {int(lab)}: {int(cnt)} vectors ({cnt / n:.5f})")


if __name__ == "__main__":
    main()
