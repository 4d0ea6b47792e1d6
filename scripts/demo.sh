#!/usr/bin/env bash
# The main job on a fresh Debian machine: install the dependencies, build
# rotor, compute exact ground truth for Fashion-MNIST (Debian's
# dataset-fashion-mnist: 60,000 train images as base, 10,000 test images as
# queries, L2), benchmark the exact flat index and a Vamana graph on it,
# then save that graph to an index file and benchmark it with the full
# vectors read from disk.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)"
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
