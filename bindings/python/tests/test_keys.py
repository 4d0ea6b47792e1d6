"""User keys: build(x, keys=...) and add(x, keys=...), searches that return
them, `key in index`, get(key) and the errors for bad keys."""
import numpy as np
import pytest

import rotor

# past 2^32, scattered, none a row number
def keys_for(n, offset=0):
    return (5_000_000_000 + ((np.arange(n) + offset) * 7919) % 1_000_003 * 1013).astype(np.int64)


@pytest.mark.parametrize("kind", ["flat", "vamana", "ivf"])
def test_searches_return_the_keys_of_a_build_with_default_codes(data, kind):
    x, q = data
    keys = keys_for(len(x))
    plain = rotor.Index.build(x, kind=kind, threads=1)
    keyed = rotor.Index.build(x, kind=kind, threads=1, keys=keys)
    rows, d_rows = plain.search(q, k=10)
    ids, d = keyed.search(q, k=10)
    np.testing.assert_array_equal(ids, keys[rows])
    np.testing.assert_array_equal(d, d_rows)
    one, _ = keyed.search(q[3], k=10)
    np.testing.assert_array_equal(one[0], ids[3])
    assert keyed.stats()["user_keys"] and keyed.stats()["bytes_keys"] >= 8 * len(x)
    assert not plain.stats()["user_keys"] and plain.stats()["bytes_keys"] == 0


def test_contains_get_and_key_errors(data):
    x, _ = data
    keys = keys_for(500)
    ix = rotor.Index.build(x[:500], quant="sq8", keys=keys)
    assert int(keys[17]) in ix and ix.contains(keys[17])
    assert 17 not in ix and not ix.contains(17)
    assert -1 not in ix and "a" not in ix and 2**70 not in ix
    np.testing.assert_array_equal(ix.get(keys[17]), x[17])  # the stored vector, exactly
    assert not np.array_equal(ix.reconstruct(int(keys[17])), x[17])  # the decoded code
    with pytest.raises(KeyError) as e:
        ix.get(17)
    assert e.value.args == (17,)
    with pytest.raises(rotor.KeyNotFound):
        ix.reconstruct(17)
    with pytest.raises(KeyError):
        ix.get(-3)
    with pytest.raises(TypeError):
        ix.get(1.5)


def test_bad_keys_are_refused_and_leave_the_index_unchanged(data):
    x, q = data
    keys = keys_for(600)
    with pytest.raises(rotor.InvalidArgument, match="given twice"):
        rotor.Index.build(x[:4], keys=[1, 2, 3, 1])
    with pytest.raises(rotor.InvalidArgument, match="negative"):
        rotor.Index.build(x[:4], keys=[1, -2, 3, 4])
    with pytest.raises(ValueError, match="3 keys were given for 4 vectors"):
        rotor.Index.build(x[:4], keys=[1, 2, 3])
    with pytest.raises(TypeError):
        rotor.Index.build(x[:4], keys=[1.5, 2, 3, 4])
    ix = rotor.Index.build(x[:500], kind="vamana", quant="sq8", keys=keys[:500])
    before = ix.search(q, k=5)
    taken = keys[500:600].copy()
    taken[50] = keys[3]
    with pytest.raises(rotor.InvalidArgument, match="already in the index"):
        ix.add(x[500:600], keys=taken)
    assert len(ix) == 500 and int(keys[500]) not in ix
    np.testing.assert_array_equal(ix.search(q, k=5)[0], before[0])
    ix.add(x[500:600], keys=keys[500:600])
    assert len(ix) == 600 and int(keys[599]) in ix
    # one vector, one key
    ix.add(x[600], keys=12345)
    assert ix.search(x[600], k=1)[0][0, 0] == 12345
    # row numbers continue where they do not collide
    ix.add(x[601:603])
    assert 602 in ix and ix.search(x[602], k=1)[0][0, 0] == 602


def test_keys_survive_save_and_open(tmp_path, data):
    x, q = data
    keys = keys_for(1000)
    ix = rotor.Index.build(x[:1000], kind="vamana", quant="sq8", keys=keys)
    want = ix.search(q, k=10)[0]
    path = str(tmp_path / "k.rotor")
    ix.save(path)
    for vectors in ("ram", "disk"):
        with rotor.Index.open(path, vectors=vectors, io="pread") as o:
            np.testing.assert_array_equal(o.search(q, k=10)[0], want)
            np.testing.assert_array_equal(o.get(keys[999]), x[999])
            assert o.stats()["user_keys"]


def test_labels_and_filters_name_vectors_by_key(data):
    x, q = data
    keys = keys_for(300)
    ix = rotor.Index.build(x[:200], keys=keys[:200], labels=[i % 2 for i in range(200)])
    ix.add(x[200:300], keys=keys[200:300], labels=[7] * 100)
    assert ix.labels(int(keys[250])) == [7]
    ids, _ = ix.search(q, k=5, filter=7)
    assert set(ids.ravel()) <= set(keys[200:300].tolist())
    ix.set_labels([int(keys[0])], [[9]])
    assert ix.search(q[0], k=3, filter=9)[0][0].tolist() == [keys[0], -1, -1]
