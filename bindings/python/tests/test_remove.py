"""remove(keys), update(keys, x), consolidate() and len(index): removed keys
never come back from a search, the errors leave the index unchanged, and
removals survive save and open."""
import numpy as np
import pytest

import rotor


@pytest.mark.parametrize("kind", ["flat", "vamana", "ivf"])
def test_removed_keys_are_never_returned(data, kind):
    x, q = data
    ix = rotor.Index.build(x, kind=kind)
    rng = np.random.default_rng(3)
    gone = rng.choice(len(x), 600, replace=False)
    ix.remove(gone[:30])  # 1 %: not consolidated yet
    ix.remove(gone[30:])  # 20 % in all: consolidated on the way
    assert len(ix) == len(x) - 600
    s = ix.stats()
    assert s["count"] == len(ix) and s["slots"] == len(x) and s["deleted"] == 600
    assert s["unconsolidated"] < 600
    ids, _ = ix.search(q, k=50)
    assert not np.isin(ids, gone).any()
    ids, _ = ix.search(x[gone[:20]], k=10)  # at the removed vectors themselves
    assert not np.isin(ids, gone).any()
    assert int(gone[0]) not in ix
    with pytest.raises(KeyError):
        ix.get(int(gone[0]))
    ix.consolidate()
    assert ix.stats()["unconsolidated"] == 0
    ids, _ = ix.search(q, k=50)
    assert not np.isin(ids, gone).any() and (ids >= 0).all()


def test_update_replaces_vectors_under_their_keys(data):
    x, _ = data
    ix = rotor.Index.build(x, kind="vamana")
    new = x[[2000, 2001]] + np.float32(0.01)
    ix.update([5, 900], new)
    assert len(ix) == len(x)
    np.testing.assert_array_equal(ix.get(5), new[0])
    ids, _ = ix.search(new, k=2)
    assert 5 in ids[0] and 900 in ids[1]
    ids, _ = ix.search(x[[5, 900]], k=1)
    assert ids[0, 0] != 5 and ids[1, 0] != 900


def test_bad_keys_change_nothing(data):
    x, q = data
    ix = rotor.Index.build(x[:1000], kind="vamana")
    before = ix.search(q, k=10)[0]
    with pytest.raises(rotor.KeyNotFound):
        ix.remove([1, 2, 5000])
    with pytest.raises(rotor.InvalidArgument, match="given twice"):
        ix.remove([1, 2, 1])
    with pytest.raises(rotor.InvalidArgument, match="negative"):
        ix.remove([-4])
    with pytest.raises(rotor.KeyNotFound):
        ix.update([3, 5000], x[:2])
    with pytest.raises(rotor.NotFiniteError):
        ix.update([3, 4], np.full((2, 32), np.nan, np.float32))
    with pytest.raises(rotor.DimensionError):
        ix.update([3], x[:1, :16])
    with pytest.raises(ValueError, match="2 keys were given for 1 vectors"):
        ix.update([3, 4], x[:1])
    with pytest.raises(TypeError):
        ix.remove(None)
    assert len(ix) == 1000 and ix.stats()["deleted"] == 0
    np.testing.assert_array_equal(ix.search(q, k=10)[0], before)
    ix.remove(7)  # a single key
    assert 7 not in ix and len(ix) == 999
    ix.add(x[:1], keys=[7])  # and back
    assert 7 in ix and len(ix) == 1000


def test_removals_survive_save_and_open(data, tmp_path):
    x, q = data
    ix = rotor.Index.build(x, kind="vamana", quant="sq8")
    gone = np.arange(0, 3000, 50)
    ix.remove(gone)
    path = str(tmp_path / "r.rotor")
    ix.save(path)
    rotor.verify(path)
    o = rotor.Index.open(path)
    assert len(o) == len(x) - len(gone) and o.stats()["deleted"] == len(gone)
    ids, _ = o.search(q, k=20)
    assert not np.isin(ids, gone).any()
    o.consolidate()
    o.remove([1, 2])
    assert len(o) == len(x) - len(gone) - 2


@pytest.mark.parametrize("kind", ["flat", "vamana", "ivf"])
def test_freed_slots_take_later_adds(data, kind, tmp_path):
    """Under churn the index keeps its size: a consolidation frees the
    removed slots, adds fill them first, and a writable file replays the
    keys those adds gave."""
    x, _ = data
    base, fresh = x[:2000], x[2000:3000]
    path = str(tmp_path / "churn.rotor")
    rotor.Index.build(base, kind=kind).save(path)
    with rotor.Index.open(path, writable=True) as ix:
        ix.remove(np.arange(0, 2000, 4))  # 500, consolidated on the way
        ix.consolidate()
        s = ix.stats()
        assert s["free_slots"] == 500 and s["slots"] == 2000
        ix.add(fresh[:300])  # no keys: the numbers of the freed slots, lowest first
        assert ix.stats()["free_slots"] == 200 and ix.stats()["slots"] == 2000
        ix.add(fresh[300:], keys=np.arange(10_000, 10_700))  # 200 reused, 500 appended
        s = ix.stats()
        assert s["slots"] == 2500 and s["free_slots"] == 0 and len(ix) == 2500
        ix.sync()
    o = rotor.Index.open(path)
    for i in (0, 4, 1196):  # slot numbers 0, 4, ... given to fresh[0], fresh[1], ...
        np.testing.assert_array_equal(o.get(i), fresh[i // 4])
    np.testing.assert_array_equal(o.get(10_000), fresh[300])
    np.testing.assert_array_equal(o.get(10_699), fresh[999])
    assert 1200 not in o and len(o) == 2500
    ids, _ = o.search(fresh[:300], k=1)
    assert (ids[:, 0] == np.arange(0, 1200, 4)).mean() >= 0.95


def test_labels_added_into_freed_slots(data):
    """add(x, labels=...) without keys labels the vectors it added, also
    when they went into freed slots."""
    x, _ = data
    ix = rotor.Index.build(x[:1000], kind="vamana")
    ix.remove(np.arange(0, 1000, 10))
    ix.consolidate()
    assert ix.stats()["free_slots"] == 100
    ix.add(x[1000:1150], labels=[[7]] * 150)  # 100 into freed slots, 50 appended
    assert ix.stats()["free_slots"] == 0 and ix.stats()["slots"] == 1050
    for key in (0, 10, 990, 1000, 1049):
        assert list(ix.labels(key)) == [7]
    assert list(ix.labels(1)) == []
    ids, _ = ix.search(x[1000:1010], k=5, filter=7)
    assert ((ids % 10 == 0) | (ids >= 1000)).all()
