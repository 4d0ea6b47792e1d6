#!/usr/bin/env bash
# The main job on a fresh Debian machine: install the dependencies, build
# rotor, compute exact ground truth for Fashion-MNIST (Debian's
# dataset-fashion-mnist: 60,000 train images as base, 10,000 test images as
# queries, L2), benchmark the exact flat index and a Vamana graph on it,
# then save that graph to an index file and benchmark it with the full
# vectors read from disk. Last, the Python module is installed for Debian's
# python3 and runs the same graph search from Python.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DROTOR_PYTHON=ON >/dev/null
cmake --build build/release -j "$(nproc)"
# The Python module goes where Debian's python3 imports from in any
# directory (its platform site directory, /usr/local/lib/python3.X/dist-packages).
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO cmake --install build/release --component python
data=/usr/share/datasets/fashion-mnist
out=build/demo
mkdir -p "$out"
./build/release/rotor gt --base "$data/train-images-idx3-ubyte.gz" \
  --queries "$data/t10k-images-idx3-ubyte.gz" --k 100 --metric l2 --out "$out/fashion_gt.ivecs"
./build/release/rotor bench --index flat --base "$data/train-images-idx3-ubyte.gz" \
  --queries "$data/t10k-images-idx3-ubyte.gz" --gt "$out/fashion_gt.ivecs" --k 10 \
  --threads "$(nproc)" --json "$out/fashion_bench.jsonl"
# The graph index on 4-bit PQ codes, one thread, at two search settings.
./build/release/rotor bench --index vamana --quant pq196x4 --base "$data/train-images-idx3-ubyte.gz" \
  --queries "$data/t10k-images-idx3-ubyte.gz" --gt "$out/fashion_gt.ivecs" --k 10 \
  --sweep "L=12,32;rerank=32" --threads 1 --json "$out/fashion_bench.jsonl"
# A graph saved to an index file, then searched with only the graph and
# codes in RAM (no neighbour-code copies: 372 bytes per vector instead of
# 6,564): each query reads its 32 rerank candidates from disk.
./build/release/rotor build --index vamana --quant pq196x4 --neighbor-codes 0 \
  --base "$data/train-images-idx3-ubyte.gz" --out "$out/fashion.rotor" --full-vectors disk
./build/release/rotor info "$out/fashion.rotor"
./build/release/rotor bench --index "$out/fashion.rotor" --queries "$data/t10k-images-idx3-ubyte.gz" \
  --gt "$out/fashion_gt.ivecs" --k 10 --sweep "L=12,32;rerank=32" --threads 1 \
  --json "$out/fashion_bench.jsonl"
# The same graph search from Python: build in memory, search one thread at
# a time, count recall@10 by ids against the ground truth computed above.
cd "$out"
/usr/bin/python3 - "$data" <<'PY'
import sys, time
import numpy as np
import rotor

data = sys.argv[1]
base = rotor.read_vectors(f"{data}/train-images-idx3-ubyte.gz")  # uint8, 60000 x 784
queries = rotor.read_vectors(f"{data}/t10k-images-idx3-ubyte.gz", dtype=np.float32)
gt = rotor.read_vectors("fashion_gt.ivecs")[:, :10]
ix = rotor.Index.build(base, kind="vamana", quant="pq196x4", progress=True)
print(ix, f"built from {rotor.__file__}")
for L in (12, 32):
    t0 = time.perf_counter()
    ids = np.vstack([ix.search(q, k=10, list_size=L, rerank=32)[0] for q in queries])
    qps = len(queries) / (time.perf_counter() - t0)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)])
    print(f"python  vamana  pq196x4,L={L},rerank=32  recall@10 (ids) {recall:.4f}  {qps:8.0f} QPS")
PY
