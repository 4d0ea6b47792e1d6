"""The module answers as the rotor tool does: the same ids for every index
kind and metric on the same data and settings (one build thread, so graphs
are built bit for bit alike)."""
import subprocess

import numpy as np
import pytest

import rotor

KINDS = [("flat", None), ("flat", "pq8x4"), ("vamana", None), ("vamana", "pq8x4"),
         ("vamana", "bin1fs"), ("ivf", "pq8x4")]


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("kind,quant", KINDS)
def test_ids_equal_the_tools(tmp_path, cli, data, kind, quant, metric):
    base, queries = data
    rotor.write_vectors(tmp_path / "base.fvecs", base)
    rotor.write_vectors(tmp_path / "q.fvecs", queries)
    cmd = [cli, "search", "--index", kind, "--base", str(tmp_path / "base.fvecs"), "--queries",
           str(tmp_path / "q.fvecs"), "--k", "10", "--metric", metric, "--build-threads", "1",
           "--threads", "1", "--quiet", "--out", str(tmp_path / "ids.ivecs")]
    cmd += ["--quant", quant or "none"]  # None: full precision, as the module's quant=None
    subprocess.run(cmd, check=True, capture_output=True)
    want = rotor.read_vectors(tmp_path / "ids.ivecs")
    assert want.dtype == np.int32 and want.shape == (len(queries), 10)

    ix = rotor.Index.build(base, metric=metric, kind=kind, quant=quant, threads=1)
    assert (ix.kind, ix.metric, ix.quant, len(ix), ix.dim) == (kind, metric, quant, 3000, 32)
    ids, dist = ix.search(queries, k=10, threads=1)
    assert ids.dtype == np.int64 and dist.dtype == np.float32 and ids.shape == (50, 10)
    np.testing.assert_array_equal(ids, want)
    # Single searches agree with the batch.
    for i in range(0, len(queries), 7):
        one, d1 = ix.search(queries[i], k=10)
        np.testing.assert_array_equal(one[0], ids[i])
        np.testing.assert_array_equal(d1[0], dist[i])
    assert np.all(np.diff(dist, axis=1) >= 0)


def test_index_file_from_the_tool_opens_and_answers_alike(tmp_path, cli, data):
    base, queries = data
    rotor.write_vectors(tmp_path / "base.fvecs", base)
    rotor.write_vectors(tmp_path / "q.fvecs", queries)
    subprocess.run([cli, "build", "--index", "vamana", "--quant", "pq8x4", "--base",
                    str(tmp_path / "base.fvecs"), "--out", str(tmp_path / "t.rotor"),
                    "--build-threads", "1", "--quiet"], check=True, capture_output=True)
    subprocess.run([cli, "search", "--index", str(tmp_path / "t.rotor"), "--queries",
                    str(tmp_path / "q.fvecs"), "--k", "10", "--quiet", "--out",
                    str(tmp_path / "ids.ivecs")], check=True, capture_output=True)
    ix = rotor.Index.open(tmp_path / "t.rotor")
    np.testing.assert_array_equal(ix.search(queries, k=10)[0],
                                  rotor.read_vectors(tmp_path / "ids.ivecs"))
    # and a file saved from Python is one the tool reads
    ix.save(tmp_path / "py.rotor")
    out = subprocess.run([cli, "verify", str(tmp_path / "py.rotor")], capture_output=True)
    assert out.returncode == 0, out.stderr
