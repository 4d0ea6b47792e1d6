"""The module's API: dtypes, every error, index files, adds, data set files,
ground truth, documentation and stubs."""
import ast
import gzip
import os
import struct
import tracemalloc

import numpy as np
import pytest

import rotor


@pytest.fixture(scope="module")
def flat(data):
    return rotor.Index.build(data[0])


# ---- dtypes ------------------------------------------------------------------

def small_ints(seed, n, d, dtype):
    rng = np.random.default_rng(seed)
    lo, hi = (0, 256) if dtype == np.uint8 else (-128, 128)
    return rng.integers(lo, hi, (n, d)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_byte_vectors_build_and_search_as_their_float32_values(dtype):
    x = small_ints(3, 500, 24, dtype)
    q = small_ints(4, 20, 24, dtype)
    ref = rotor.Index.build(x.astype(np.float32))
    ix = rotor.Index.build(x)
    want = ref.search(q.astype(np.float32), k=5)
    for got in (ix.search(q, k=5), ref.search(q, k=5)):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    # a single byte query too
    np.testing.assert_array_equal(ix.search(q[3], k=5)[0][0], want[0][3])


def test_whole_numbers_0_to_255_are_kept_as_bytes(tmp_path):
    x = small_ints(5, 800, 16, np.uint8)
    q = small_ints(6, 10, 16, np.uint8)
    ix = rotor.Index.build(x, kind="vamana")
    assert ix.stats()["bytes_vectors"] == x.size  # a byte a coordinate
    np.testing.assert_array_equal(ix.get(7), x[7].astype(np.float32))
    want = ix.search(q, k=5)
    ix.save(tmp_path / "b.rotor")
    back = rotor.Index.open(tmp_path / "b.rotor")
    assert back.stats()["bytes_vectors"] == x.size
    got = back.search(q, k=5)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # a row that is not bytes widens them all to float32, the old rows unchanged
    back.add(np.full((1, 16), 0.5, np.float32))
    assert back.stats()["bytes_vectors"] == (len(x) + 1) * 16 * 4
    np.testing.assert_array_equal(back.get(7), x[7].astype(np.float32))
    # negative whole numbers are not bytes
    signed = rotor.Index.build(small_ints(5, 800, 16, np.int8))
    assert signed.stats()["bytes_vectors"] == 800 * 16 * 4


def test_float64_float16_strided_and_lists_are_converted(flat, data):
    base, queries = data
    want = flat.search(queries, k=5)
    f64 = queries.astype(np.float64)
    np.testing.assert_array_equal(flat.search(f64, k=5)[0], want[0])
    wide = np.zeros((len(queries), 64), np.float32)
    wide[:, ::2] = queries
    strided = wide[:, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(flat.search(strided, k=5)[0], want[0])
    fortran = np.asfortranarray(queries)
    np.testing.assert_array_equal(flat.search(fortran, k=5)[0], want[0])
    np.testing.assert_array_equal(flat.search(queries.tolist(), k=5)[0], want[0])
    swapped = queries.astype(">f4")
    np.testing.assert_array_equal(flat.search(swapped, k=5)[0], want[0])
    h = queries.astype(np.float16)
    np.testing.assert_array_equal(flat.search(h, k=5)[0],
                                  flat.search(h.astype(np.float32), k=5)[0])
    ix64 = rotor.Index.build(base.astype(np.float64))
    np.testing.assert_array_equal(ix64.search(queries, k=5)[0], want[0])


def test_float32_batches_are_not_copied_and_float64_ones_are(data):
    base, _ = data
    big = np.tile(base, (4, 1))  # 12,000 x 32 float32: 1.5 MiB
    ix = rotor.Index.build(base[:200])
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        ix.search(big, k=1, threads=1)
        peak32 = tracemalloc.get_traced_memory()[1] - before
        f64 = big.astype(np.float64)
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        ix.search(f64, k=1, threads=1)
        peak64 = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    # results alone: 12,000 x (8 + 4) bytes
    assert peak32 < big.nbytes / 4, peak32
    assert peak64 >= big.nbytes, peak64


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.bool_, np.complex64, object])
def test_other_dtypes_raise_type_error(flat, data, dtype):
    q = data[1][:2].astype(dtype)
    with pytest.raises(TypeError, match="must be float32, float64, uint8 or int8"):
        flat.search(q)
    with pytest.raises(TypeError):
        rotor.Index.build(q)


# ---- errors --------------------------------------------------------------------

def test_input_errors_carry_the_librarys_sentence(flat, data):
    base, queries = data
    with pytest.raises(rotor.DimensionError, match="queries have 31 dimensions, index has 32"):
        flat.search(queries[:, :31])
    with pytest.raises(ValueError, match="31 dimensions, index has 32"):
        flat.search(queries[0, :31])
    bad = queries.copy()
    bad[3, 5] = np.nan
    with pytest.raises(rotor.NotFiniteError, match="NaN"):
        flat.search(bad)
    with pytest.raises(ValueError, match="NaN"):
        flat.search(bad[3])
    bad[3, 5] = np.inf
    with pytest.raises(rotor.NotFiniteError):
        rotor.Index.build(bad)
    for k in (0, -3):
        with pytest.raises(ValueError, match="k must be at least 1"):
            flat.search(queries, k=k)
    with pytest.raises(TypeError, match="k must be an integer"):
        flat.search(queries, k=2.5)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        flat.search(queries.reshape(5, 10, 32))
    with pytest.raises(rotor.EmptyError):
        rotor.Index.build(np.zeros((0, 8), np.float32))
    with pytest.raises(ValueError, match="unknown metric 'hamming'"):
        rotor.Index.build(base, metric="hamming")
    with pytest.raises(ValueError, match="unknown index kind 'hnsw'"):
        rotor.Index.build(base, kind="hnsw")
    with pytest.raises(rotor.InvalidArgument, match="pq7"):
        rotor.Index.build(base, quant="pq7")
    with pytest.raises(rotor.InvalidArgument):
        rotor.Index.build(base, kind="vamana", degree=1)
    with pytest.raises(ValueError, match="threads must be between"):
        rotor.Index.build(base, threads=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'ef'"):
        flat.search(queries, ef=3)
    with pytest.raises(TypeError):
        rotor.Index()
    # The index is unchanged by the failed calls.
    assert len(flat) == 3000


def test_automatic_codes_and_search_by_recall(data):
    base, queries = data
    ix = rotor.Index.build(base, kind="vamana", threads=2)
    stats = ix.stats()
    assert stats["quant"] in ("none", "sq8") or stats["quant"].startswith("pq")
    exact = rotor.Index.build(base)  # flat: exact under "auto"
    assert exact.stats()["quant"] == "none"
    truth, _ = exact.search(queries, k=10)
    for target in (0.9, 0.95):
        ids, _ = ix.search(queries, k=10, recall=target)
        hit = sum(len(set(a) & set(b)) for a, b in zip(ids.tolist(), truth.tolist()))
        assert hit / truth.size >= target - 0.03
    with pytest.raises(rotor.InvalidArgument, match="recall"):
        ix.search(queries, recall=1.5)
    # quant=None is full precision, as before.
    full = rotor.Index.build(base[:500], kind="vamana", quant=None)
    assert full.stats()["quant"] == "none"


def test_k_beyond_the_index_pads(data):
    ix = rotor.Index.build(data[0][:3])
    ids, dist = ix.search(data[1][:2], k=5)
    assert (ids[:, 3:] == -1).all() and np.isinf(dist[:, 3:]).all()
    assert sorted(ids[0, :3]) == [0, 1, 2]


def test_file_errors_are_rotor_error_subclasses(tmp_path, flat):
    with pytest.raises(rotor.IoError, match="No such file") as e:
        rotor.Index.open(tmp_path / "missing.rotor")
    assert isinstance(e.value, OSError) and isinstance(e.value, rotor.Error)
    (tmp_path / "junk.rotor").write_bytes(b"not an index" * 1000)
    with pytest.raises(rotor.FormatError):
        rotor.Index.open(tmp_path / "junk.rotor")
    path = tmp_path / "ix.rotor"
    flat.save(path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) - 100] ^= 0xFF
    (tmp_path / "flip.rotor").write_bytes(bytes(raw))
    with pytest.raises(rotor.CorruptFile):
        rotor.verify(tmp_path / "flip.rotor")
    with pytest.raises(rotor.CorruptFile):
        rotor.Index.open(tmp_path / "flip.rotor", verify=True)
    (tmp_path / "short.rotor").write_bytes(bytes(raw[:5000]))
    with pytest.raises(rotor.FormatError):
        rotor.Index.open(tmp_path / "short.rotor")
    (tmp_path / "bad.fvecs").write_bytes(struct.pack("<i", 4) + b"\0" * 10)
    with pytest.raises(rotor.FormatError, match="bad.fvecs"):
        rotor.read_vectors(tmp_path / "bad.fvecs")
    with pytest.raises(rotor.IoError):
        flat.save(tmp_path / "no" / "such" / "dir.rotor")
    with pytest.raises(ValueError, match="vectors must be 'ram' or 'disk'"):
        rotor.Index.open(path, vectors="tape")


def test_closed_index_refuses_calls(data):
    ix = rotor.Index.build(data[0][:50])
    with ix as same:
        assert same is ix
        same.search(data[1])
    assert ix.closed
    with pytest.raises(ValueError, match="closed"):
        ix.search(data[1])
    with pytest.raises(ValueError, match="closed"):
        len(ix)
    ix.close()  # twice is fine
    assert "closed" in repr(ix)


# ---- index files and adds -----------------------------------------------------

@pytest.mark.parametrize("kind,quant", [("flat", None), ("flat", "sq8"), ("vamana", "pq8x4"),
                                        ("vamana", None), ("ivf", "pq8x4")])
def test_save_and_open_in_ram_and_on_disk(tmp_path, data, kind, quant):
    base, queries = data
    ix = rotor.Index.build(base, kind=kind, quant=quant, metric="cosine", threads=1)
    want = ix.search(queries, k=10)
    path = tmp_path / "ix.rotor"
    ix.save(str(path))
    assert [p.name for p in tmp_path.iterdir()] == ["ix.rotor"]
    places = ["ram", None] + (["disk"] if quant else [])
    for place in places:
        for load in (False, True, None):
            ix2 = rotor.Index.open(path, vectors=place, load=load, verify=True)
            s = ix2.stats()
            assert s["mapped"] and s["count"] == 3000 and s["kind"] == kind
            # None (the default) copies an index this small out of the mapping.
            assert s["copied"] == (load is not False)
            assert s["vectors_on_disk"] == (place == "disk")
            got = ix2.search(queries, k=10)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-6)
    if not quant:
        with pytest.raises(rotor.Error):
            rotor.Index.open(path, vectors="disk")
    assert rotor.Index.open(path, load=1).stats()["copied"]
    assert not rotor.Index.open(path, load=0).stats()["copied"]
    for bad in (2, 1 << 70, "yes", 0.5):
        with pytest.raises(ValueError, match="load must be True, False or None"):
            rotor.Index.open(path, load=bad)


def test_ram_budget_reads_the_graph_from_disk(tmp_path):
    # Clustered, so the budget's 8-bit PQ code walks the graph well; no flag
    # but the budget, as a user would build it.
    rng = np.random.default_rng(16)
    centres = rng.normal(0, 3, (40, 32))
    base = (centres[rng.integers(0, 40, 5000)] + rng.normal(0, 1, (5000, 32))).astype(np.float32)
    queries = (centres[rng.integers(0, 40, 50)] + rng.normal(0, 1, (50, 32))).astype(np.float32)
    budget = 40 * len(base)
    ix = rotor.Index.build(base, kind="vamana", ram_budget=budget, threads=1)
    path = tmp_path / "budget.rotor"
    ix.save(path)
    exact = rotor.Index.build(base)  # flat, full precision: the true neighbours
    want = exact.search(queries, k=10)[0]
    on_disk = rotor.Index.open(path)
    s = on_disk.stats()
    assert s["graph_on_disk"] > 0 and s["graph_cached"] > 0
    assert s["graph_on_disk"] + s["graph_cached"] == len(base)
    assert s["bytes_codes"] + s["bytes_graph"] <= budget
    ids, dists = on_disk.search(queries, k=10, list_size=48, beam_width=4)
    hits = sum(len(set(a) & set(b)) for a, b in zip(ids.tolist(), want.tolist()))
    assert hits / want.size >= 0.9
    # distances are exact: those of the vectors returned
    np.testing.assert_allclose(
        dists, ((base[ids] - queries[:, None, :]) ** 2).sum(-1), rtol=1e-4, atol=1e-3)
    in_ram = rotor.Index.open(path, ram_budget="unlimited")
    assert in_ram.stats()["graph_on_disk"] == 0
    with pytest.raises(rotor.InvalidArgument):
        rotor.Index.open(path, ram_budget=1000)
    with pytest.raises(rotor.Unsupported):
        on_disk.add(queries[:1])


def test_build_memory_builds_in_shards(tmp_path):
    # A cap below what the build needs in one piece: the graph is built in
    # shards and merged, from a file as a set larger than memory would be.
    rng = np.random.default_rng(17)
    centres = rng.normal(0, 3, (60, 32))
    base = (centres[rng.integers(0, 60, 12000)] + rng.normal(0, 1, (12000, 32))).astype(np.float32)
    queries = (centres[rng.integers(0, 60, 100)] + rng.normal(0, 1, (100, 32))).astype(np.float32)
    src = tmp_path / "base.npy"
    np.save(src, base)
    budget = 48 * len(base)
    with pytest.raises(rotor.InvalidArgument, match="at least"):
        rotor.build_file(src, tmp_path / "x.rotor", kind="vamana", ram_budget=budget,
                         build_memory=1000)
    assert not (tmp_path / "x.rotor").exists()
    out = tmp_path / "sharded.rotor"
    rotor.build_file(src, out, kind="vamana", ram_budget=budget, build_memory=4 << 20)
    ix = rotor.Index.open(out)
    s = ix.stats()
    assert s["build_shards"] >= 2 and s["graph_on_disk"] > 0 and s["count"] == len(base)
    want = rotor.Index.build(base).search(queries, k=10)[0]
    ids = ix.search(queries, k=10, list_size=48)[0]
    hits = sum(len(set(a) & set(b)) for a, b in zip(ids.tolist(), want.tolist()))
    assert hits / want.size >= 0.95
    with pytest.raises(rotor.InvalidArgument, match="vamana"):
        rotor.Index.build(base, kind="ivf", quant="pq8", build_memory=4 << 20)


def test_add_continues_ids(data):
    base, _ = data
    ix = rotor.Index.build(base[:1000], kind="vamana", quant="pq8x4", threads=1)
    ix.add(base[1000:2000].astype(np.float64))
    ix.add(base[2000:])
    assert len(ix) == 3000
    # pq8x4 on 32-d is coarse: a deep rerank finds each point itself
    probe = [5, 999, 1000, 1500, 2000, 2999]
    ids, dist = ix.search(base[probe], k=1, rerank=400, list_size=400)
    assert ids[:, 0].tolist() == probe
    assert (dist == 0).all()
    with pytest.raises(rotor.DimensionError):
        ix.add(base[:10, :16])
    assert len(ix) == 3000


def test_stats_is_a_dict_of_what_the_index_holds(data):
    ix = rotor.Index.build(data[0], kind="vamana", quant="pq8x4", degree=16, threads=1)
    s = ix.stats()
    assert s["kind"] == "vamana" and s["metric"] == "l2" and s["quant"] == "pq8x4"
    assert s["count"] == 3000 and s["dim"] == 32 and s["graph_degree"] == 16
    assert s["bytes_total"] >= s["bytes_vectors"] + s["bytes_codes"] + s["bytes_graph"]
    assert s["bytes_vectors"] == 3000 * 32 * 4
    assert not s["mapped"] and not s["vectors_on_disk"]
    np.testing.assert_allclose(ix.reconstruct(0), data[0][0], atol=3.0)


def test_build_search_parameters_change_results_as_documented(data):
    base, queries = data
    ix = rotor.Index.build(base, kind="vamana", quant="pq8x4", threads=1)
    est = ix.search(queries, k=10, rerank=0)[1]
    exact = ix.search(queries, k=10, rerank=200, list_size=200)[1]
    assert not np.array_equal(est, exact)
    truth = rotor.ground_truth(base, queries, k=10)[1]
    # the deeper search finds at least 95 % of the true 10th-nearest radius
    assert (exact <= truth[:, -1:] * (1 + 1e-5)).mean() >= 0.95
    assert (est != truth).any()
    for name in ("list_size", "refine", "nprobe", "starts", "threads", "rerank", "max_neighbors"):
        ix.search(queries, k=3, **{name: 20})
        with pytest.raises(ValueError):
            ix.search(queries, k=3, **{name: -1})


def test_max_neighbors_reads_the_first_neighbours(data):
    base, queries = data
    # no neighbours' codes in the records: the default degree is 64
    ix = rotor.Index.build(base, kind="vamana", quant="none", threads=1)
    assert ix.stats()["graph_degree"] == 64
    every = ix.search(queries, k=10, list_size=32)[0]
    # as many as the degree, or more, is every neighbour
    for n in (64, 500):
        np.testing.assert_array_equal(ix.search(queries, k=10, list_size=32, max_neighbors=n)[0], every)
    # an eighth of them: another walk; half of them, and a longer list makes
    # up the recall
    narrow = ix.search(queries, k=10, list_size=32, max_neighbors=8)[0]
    assert not np.array_equal(narrow, every)
    truth = rotor.ground_truth(base, queries, k=10)[0]
    deep = ix.search(queries, k=10, list_size=64, max_neighbors=32)[0]
    hits = sum(len(set(a) & set(b)) for a, b in zip(deep, truth))
    assert hits / truth.size >= 0.95


def test_progress_callback_sees_the_build_and_can_stop_it(data):
    seen = []
    rotor.Index.build(data[0], kind="vamana", threads=1, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] > 0
    with pytest.raises(rotor.Cancelled, match="progress callback"):
        rotor.Index.build(data[0], kind="vamana", threads=1, progress=lambda d, t: True)

    def boom(done, total):
        raise RuntimeError("stop here")
    with pytest.raises(RuntimeError, match="stop here"):
        rotor.Index.build(data[0], kind="vamana", threads=1, progress=boom)


# ---- data set files and ground truth -------------------------------------------

@pytest.mark.parametrize("ext,dtype", [("fvecs", np.float32), ("ivecs", np.int32),
                                       ("bvecs", np.uint8), ("fbin", np.float32),
                                       ("u8bin", np.uint8), ("i8bin", np.int8),
                                       ("ibin", np.int32), ("npy", np.float32),
                                       ("npy", np.uint8)])
def test_every_format_round_trips(tmp_path, ext, dtype):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((37, 13)) * 50).astype(dtype)
    path = tmp_path / f"x.{ext}"
    rotor.write_vectors(path, x)
    back = rotor.read_vectors(path)
    assert back.dtype == dtype and back.shape == x.shape
    np.testing.assert_array_equal(back, x)
    np.testing.assert_array_equal(rotor.read_vectors(path, max_rows=5), x[:5])
    info = rotor.probe(path)
    assert (info["rows"], info["cols"], info["format"]) == (37, 13, ext)
    if dtype != np.int32:
        f = rotor.read_vectors(path, dtype=np.float32)
        assert f.dtype == np.float32
        np.testing.assert_array_equal(f, x.astype(np.float32))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_mnist_idx_files_are_read(tmp_path):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (9, 4, 5)).astype(np.uint8)
    raw = struct.pack(">IIII", 0x803, 9, 4, 5) + img.tobytes()
    (tmp_path / "images-idx3-ubyte").write_bytes(raw)
    (tmp_path / "images-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    for name in ("images-idx3-ubyte", "images-idx3-ubyte.gz"):
        x = rotor.read_vectors(tmp_path / name)
        assert x.dtype == np.uint8
        np.testing.assert_array_equal(x, img.reshape(9, 20))


def test_read_vectors_keeps_no_reference_to_freed_memory(tmp_path):
    x = np.arange(1000 * 8, dtype=np.float32).reshape(1000, 8)
    rotor.write_vectors(tmp_path / "x.fbin", x)
    views = [rotor.read_vectors(tmp_path / "x.fbin")[i] for i in range(0, 1000, 100)]
    import gc
    gc.collect()
    for j, v in enumerate(views):
        np.testing.assert_array_equal(v, x[j * 100])


def test_ground_truth_equals_a_numpy_brute_force(data):
    base, queries = data
    for metric in ("l2", "ip", "cosine"):
        ids, dist = rotor.ground_truth(base, queries, k=20, metric=metric)
        b, q = base.astype(np.float64), queries.astype(np.float64)
        if metric == "l2":
            d = ((q[:, None, :] - b[None]) ** 2).sum(-1)
        elif metric == "ip":
            d = -q @ b.T
        else:
            d = 1 - (q @ b.T) / np.linalg.norm(q, axis=1)[:, None] / np.linalg.norm(b, axis=1)
        want = np.sort(d, axis=1)[:, :20]
        np.testing.assert_allclose(dist, want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
        assert (np.take_along_axis(d, ids, 1) <= want[:, -1:] + 1e-3 * abs(want).max()).all()


def test_build_file_equals_build_then_save(tmp_path, data):
    base, queries = data
    rotor.write_vectors(tmp_path / "base.fbin", base)
    rotor.build_file(tmp_path / "base.fbin", tmp_path / "f.rotor", kind="vamana",
                     quant="pq8x4", threads=1)
    a = rotor.Index.open(tmp_path / "f.rotor").search(queries, k=10)
    b = rotor.Index.build(base, kind="vamana", quant="pq8x4", threads=1).search(queries, k=10)
    np.testing.assert_array_equal(a[0], b[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.fbin", "f.rotor"]


# ---- documentation and stubs ---------------------------------------------------

def test_help_reads_like_a_manual():
    doc = rotor.Index.search.__doc__
    for word in ("list_size", "rerank", "nprobe", "DimensionError", "GIL", "(n, k)",
                 "float64", "recall", "calibration"):
        assert word in doc, word
    assert rotor.Index.search.__text_signature__ is None or "k" in rotor.Index.search.__doc__
    for name in ("build", "open", "add", "save", "stats"):
        assert len(getattr(rotor.Index, name).__doc__) > 80, name
    for name in ("read_vectors", "write_vectors", "ground_truth", "build_file", "verify"):
        assert len(getattr(rotor, name).__doc__) > 80, name
    # every public callable carries a signature help() and inspect can read
    import inspect
    funcs = [getattr(rotor, n) for n in dir(rotor) if callable(getattr(rotor, n))
             and not n.startswith("_") and not isinstance(getattr(rotor, n), type)]
    funcs += [getattr(rotor.Index, n) for n in dir(rotor.Index) if not n.startswith("_")
              and callable(getattr(rotor.Index, n))]
    for f in funcs:
        assert inspect.signature(f) is not None, f
    assert "list_size" in inspect.signature(rotor.Index.search).parameters
    assert "metric" in inspect.signature(rotor.Index.build).parameters


def test_stubs_name_everything_the_module_has():
    here = os.path.dirname(os.path.abspath(__file__))
    tree = ast.parse(open(os.path.join(here, "..", "rotor.pyi")).read())
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    public = {n for n in dir(rotor) if not n.startswith("_")}
    assert public == names
    index = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Index")
    methods = {n.name for n in index.body if isinstance(n, ast.FunctionDef)}
    assert {n for n in dir(rotor.Index) if not n.startswith("_")} <= methods
