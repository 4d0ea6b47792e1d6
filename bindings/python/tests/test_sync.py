"""Index.open(path, writable=True): every change goes to the file, sync()
flushes it, and every open sees it; one writer per file; save over the
file folds the log in; sync on an index not opened writable is refused."""
import os
import subprocess
import sys

import numpy as np
import pytest

import rotor


@pytest.fixture
def saved(tmp_path, data):
    x, _ = data
    ix = rotor.Index.build(x[:1000], kind="vamana", quant="sq8", threads=1)
    path = str(tmp_path / "ix.rotor")
    ix.save(path)
    return path, x


def test_changes_reach_the_file(saved):
    path, x = saved
    size = os.path.getsize(path)
    with rotor.Index.open(path, writable=True) as ix:
        assert ix.stats()["writable"]
        ix.add(x[1000:1010], keys=np.arange(5000, 5010))
        ix.remove([3, 5000])
        ix.update([7], x[1010:1011])
        ix.set_labels([8, 9], [4, [1, 2]])
        ix.sync()
        s = ix.stats()
        assert s["log_records"] == 4 and s["log_bytes"] == os.path.getsize(path) - size
    back = rotor.Index.open(path)
    assert not back.stats()["writable"] and back.stats()["log_records"] == 4
    assert len(back) == 1000 + 10 - 2
    assert 3 not in back and 5000 not in back and 5009 in back
    np.testing.assert_array_equal(back.get(5009), x[1009])
    np.testing.assert_array_equal(back.get(7), x[1010])
    assert back.labels(9) == [1, 2]
    ids, _ = back.search(x[1005], k=1)
    assert ids[0, 0] == 5005
    rotor.verify(path)


def test_add_with_labels_is_one_change(saved):
    """add(labels=) writes one record: the vectors never reach the file
    without their labels; a refused add leaves neither."""
    path, x = saved
    with rotor.Index.open(path, writable=True) as ix:
        ix.add(x[1000:1003], keys=[6000, 6001, 6002], labels=[[5], [], [2, 9]])
        ix.add(x[1003:1005], labels=[7, 7])  # keys the add gives
        assert ix.stats()["log_records"] == 2
        with pytest.raises(ValueError):
            ix.add(x[1005:1006], keys=[6000], labels=[[4]])
        assert ix.stats()["log_records"] == 2 and ix.stats()["labelled"] == 4
    back = rotor.Index.open(path)
    assert back.stats()["log_records"] == 2
    assert back.labels(6000) == [5] and back.labels(6001) == [] and back.labels(6002) == [2, 9]
    assert back.labels(1003) == [7] and back.labels(1004) == [7]  # their slots
    ids, _ = back.search(x[1004], k=1, filter=7)
    assert ids[0, 0] == 1004


def test_changes_survive_a_killed_process(saved):
    """Not synced: still in the file once the call returned (kill -9)."""
    path, x = saved
    code = (
        "import os, signal, numpy as np, rotor\n"
        f"ix = rotor.Index.open({path!r}, writable=True)\n"
        "ix.remove([1, 2, 3])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", code])
    assert r.returncode == -9
    back = rotor.Index.open(path)
    assert 1 not in back and len(back) == 997


def test_one_writer_and_save_over_the_file(saved, tmp_path):
    path, x = saved
    w = rotor.Index.open(path, writable=True, sync_each_change=True)
    with pytest.raises(rotor.IoError, match="writable"):
        rotor.Index.open(path, writable=True)
    reader = rotor.Index.open(path)
    with pytest.raises(rotor.IoError, match="writable"):
        reader.save(path)
    w.remove([10, 11])
    w.save(path)  # folds the log in
    assert w.stats()["log_records"] == 0
    w.remove([12])  # appended to the new file
    w.close()
    back = rotor.Index.open(path)
    assert back.stats()["log_records"] == 1 and len(back) == 997
    other = str(tmp_path / "other.rotor")
    back.save(other)
    assert rotor.Index.open(other).stats()["log_records"] == 0


def test_sync_needs_a_writable_open(saved, data):
    path, x = saved
    with pytest.raises(rotor.Unsupported, match="writable"):
        rotor.Index.open(path).sync()
    with pytest.raises(rotor.Unsupported):
        rotor.Index.build(x[:100]).sync()
    with pytest.raises(rotor.InvalidArgument, match="sync_each_change"):
        rotor.Index.open(path, sync_each_change=True)
