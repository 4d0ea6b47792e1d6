"""Labels and filtered search through Python, with the default build: every
result carries what the filter asks for, the neighbours match an exact
filtered scan, labels come back from a saved file, and bad labels or filters
are refused."""
import numpy as np
import pytest

import rotor


def clustered(n, d, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, d)).astype(np.float32)
    x = centres[rng.integers(0, 20, n)] + 0.4 * rng.standard_normal((n, d)).astype(np.float32)
    return x.astype(np.float32)


N, D = 3000, 16
X = clustered(N + 30, D, 5)
BASE, QUERIES = X[:N], X[N:]
# label i % 10 on every vector, and 100 on every third
LABELS = [[i % 10] + ([100] if i % 3 == 0 else []) for i in range(N)]


def exact(q, ok, k):
    d = ((BASE - q) ** 2).sum(1)
    d[~ok] = np.inf
    order = np.argsort(d, kind="stable")[:k]
    return [int(i) for i in order if np.isfinite(d[i])]


@pytest.fixture(scope="module", params=["vamana", "ivf", "flat"])
def index(request):
    return rotor.Index.build(BASE, kind=request.param, labels=LABELS)


@pytest.mark.parametrize(
    "flt,ok",
    [
        (3, np.arange(N) % 10 == 3),
        ([1, 2], np.isin(np.arange(N) % 10, [1, 2])),
        (rotor.all_of(4, 100), (np.arange(N) % 10 == 4) & (np.arange(N) % 3 == 0)),
        (rotor.all_of(4, 5), np.zeros(N, bool)),
    ],
)
def test_filtered_results_pass_and_match_exact(index, flt, ok):
    ids, _ = index.search(QUERIES, k=10, filter=flt)
    hits = want = 0
    for q, row in zip(QUERIES, ids):
        got = [int(i) for i in row if i >= 0]
        assert all(ok[i] for i in got)
        truth = exact(q, ok, 10)
        want += len(truth)
        hits += len(set(truth) & set(got))
        if not truth:
            assert (row == -1).all()
    assert want == 0 or hits / want >= 0.9


def test_allow_mask_and_ids(index):
    mask = np.arange(N) % 7 == 0
    ids, _ = index.search(QUERIES[0], k=10, allow=mask)
    assert all(mask[i] for i in ids[0])
    ids, _ = index.search(QUERIES[0], k=5, allow=[11, 22, 33])
    assert sorted(ids[0][:3].tolist()) == [11, 22, 33]
    assert (ids[0][3:] == -1).all()
    ids, _ = index.search(QUERIES[0], k=5, filter=3, allow=[13, 14, 23])
    assert sorted(i for i in ids[0].tolist() if i >= 0) == [13, 23]


def test_labels_saved_and_changed(tmp_path):
    ix = rotor.Index.build(BASE, kind="vamana", labels=LABELS)
    path = str(tmp_path / "l.rotor")
    ix.save(path)
    back = rotor.Index.open(path, verify=True)
    assert back.labels(3) == [3, 100]
    assert back.stats()["labels"] == 11
    a, _ = ix.search(QUERIES, k=10, filter=7)
    b, _ = back.search(QUERIES, k=10, filter=7)
    assert (a == b).all()
    back.set_labels([5, 6], [[42], None])
    assert back.labels(5) == [42] and back.labels(6) == []
    back.add(BASE[:2], labels=[42, []])
    assert back.labels(N) == [42]
    ids, _ = back.search(BASE[0], k=5, filter=42)
    assert sorted(i for i in ids[0].tolist() if i >= 0) == [5, N]


def test_bad_labels_and_filters_refused():
    with pytest.raises(rotor.InvalidArgument):
        rotor.Index.build(BASE, labels=LABELS[:-1])
    with pytest.raises((ValueError, OverflowError)):
        rotor.Index.build(BASE, labels=[[-1]] * N)
    ix = rotor.Index.build(BASE, labels=LABELS)
    with pytest.raises(TypeError):
        ix.search(QUERIES[0], filter="3")
    with pytest.raises(rotor.InvalidArgument):
        ix.set_labels([1, 1], [[2], [3]])
    assert ix.labels(1) == [1]
    with pytest.raises(TypeError):
        ix.search(QUERIES[0], allow=np.ones(N, np.float32))


def test_allow_ids_with_user_keys():
    keys = np.arange(N, dtype=np.int64) * 1_000_003 + 10**12
    ix = rotor.Index.build(BASE, kind="vamana", keys=keys, labels=LABELS)
    want = keys[[11, 22, 33]]
    ids, _ = ix.search(QUERIES[0], k=5, allow=np.concatenate([want, [7]]))  # 7: no such key
    assert sorted(ids[0][:3].tolist()) == sorted(want.tolist())
    assert (ids[0][3:] == -1).all()
    # with a label: only 33 carries label 3
    ids, _ = ix.search(QUERIES[0], k=5, filter=3, allow=want)
    assert ids[0][0] == keys[33] and (ids[0][1:] == -1).all()
    ids, _ = ix.search(QUERIES, k=10, filter=5)
    got = ids[ids >= 0]
    assert len(got) > 0 and all(((k - 10**12) // 1_000_003) % 10 == 5 for k in got.tolist())
