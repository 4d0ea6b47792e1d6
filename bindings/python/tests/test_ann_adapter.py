"""The ann-benchmarks adapter in bench/ann_benchmarks answers as the module does."""
import importlib.util
import os

import numpy as np

import rotor

HERE = os.path.dirname(os.path.abspath(__file__))
ADAPTER = os.path.join(HERE, "..", "..", "..", "bench", "ann_benchmarks", "module.py")


def load_adapter():
    spec = importlib.util.spec_from_file_location("rotor_ann_adapter", ADAPTER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_adapter_fits_queries_and_batches_like_the_module(data):
    base, queries = data
    algo = load_adapter().Rotor("angular", {"kind": "vamana", "quant": "pqx4", "threads": 1})
    algo.fit(base.astype(np.float64))
    algo.set_query_arguments(24, 40)
    assert "list_size=24" in str(algo) and "rerank=40" in str(algo)
    ix = rotor.Index.build(base, metric="cosine", kind="vamana", quant="pq8x4", threads=1)
    want = ix.search(queries, k=10, list_size=24, rerank=40)[0]
    for i in range(0, len(queries), 9):
        np.testing.assert_array_equal(algo.query(queries[i], 10), want[i])
    algo.batch_query(queries, 10)
    got = algo.get_batch_results()
    assert len(got) == len(queries)
    np.testing.assert_array_equal(np.vstack(got), want)
    algo.set_query_arguments({"list_size": 64})
    assert algo.get_memory_usage() > 0 and algo.get_additional()["quant"] == "pq8x4"
    # padding ids (-1) are not answers
    small = load_adapter().Rotor("euclidean", {"kind": "flat"})
    small.fit(base[:3])
    assert sorted(small.query(queries[0], 10).tolist()) == [0, 1, 2]
    small.done()
    algo.done()
