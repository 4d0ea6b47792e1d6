"""rotor for ann-benchmarks' algorithm interface (fit, query, batch_query,
get_batch_results, set_query_arguments).

Dropped into an ann-benchmarks checkout as
ann_benchmarks/algorithms/rotor/module.py (with config.yml beside it), it
subclasses the harness's BaseANN; outside the harness it stands alone, so it
can be used and tested with only the rotor module and NumPy.

Constructor arguments, as config.yml passes them: the harness's metric
("euclidean", "angular" or "ip") and a dict of Index.build keywords, e.g.
{"kind": "vamana", "quant": "pq64x4", "degree": 32}; quant "pqx4" stands for
4-bit PQ with M the largest divisor of the dimension not above dim / 4, since
one config serves data sets of many dimensions. Query arguments are a
dict of Index.search keywords ({"list_size": 32, "rerank": 32}) or, in
positional form, list_size then rerank.
"""
import numpy as np

import rotor

try:
    from ann_benchmarks.algorithms.base.module import BaseANN
except ImportError:  # outside the harness
    class BaseANN:
        def done(self):
            pass

        def get_additional(self):
            return {}

        def __str__(self):
            return self.name


METRICS = {"euclidean": "l2", "l2": "l2", "angular": "cosine", "cosine": "cosine", "ip": "ip",
           "dot": "ip"}


class Rotor(BaseANN):
    def __init__(self, metric, index_params=None):
        if metric not in METRICS:
            raise NotImplementedError(f"rotor does not serve the metric '{metric}'")
        self._metric = METRICS[metric]
        self._build = dict(index_params or {})
        self._build.setdefault("kind", "vamana")
        self._query = {}
        self._index = None
        self._results = None
        self.name = self._label()

    def _label(self):
        b = ",".join(f"{k}={v}" for k, v in sorted(self._build.items()))
        q = ",".join(f"{k}={v}" for k, v in sorted(self._query.items()))
        return f"rotor({b}{';' + q if q else ''})"

    def fit(self, X):
        # float32 C-contiguous is read in place; anything else is converted once here
        X = np.ascontiguousarray(X, dtype=np.float32)
        build = dict(self._build)
        if build.get("quant") == "pqx4":
            d = X.shape[1]
            m = next(m for m in range(max(d // 4, 1), 0, -1) if d % m == 0)
            build["quant"] = f"pq{m}x4"
        self._index = rotor.Index.build(X, metric=self._metric, **build)

    def set_query_arguments(self, *args):
        if len(args) == 1 and isinstance(args[0], dict):
            self._query = dict(args[0])
        else:
            names = ("list_size", "rerank")
            if len(args) > len(names):
                raise ValueError(f"query arguments are {names}, got {len(args)} values")
            self._query = dict(zip(names, args))
        self.name = self._label()

    def query(self, v, n):
        # the harness times single queries on one thread
        ids = self._index.search(v, n, threads=1, **self._query)[0][0]
        return ids[ids >= 0]

    def batch_query(self, X, n):
        self._results = self._index.search(X, n, **self._query)[0]

    def get_batch_results(self):
        return [row[row >= 0] for row in self._results]

    def get_memory_usage(self):
        """Bytes the index holds, in KiB as the harness reports memory."""
        return self._index.stats()["bytes_total"] / 1024 if self._index is not None else 0

    def get_additional(self):
        s = self._index.stats()
        return {"index_bytes": s["bytes_total"], "quant": s["quant"]}

    def done(self):
        if self._index is not None:
            self._index.close()
            self._index = None

    def __str__(self):
        return self.name
