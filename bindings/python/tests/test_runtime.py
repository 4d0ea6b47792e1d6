"""The module's behaviour around the interpreter: the GIL released during
searches, reference counts and memory over many calls, Ctrl-C during a long
build."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest

import rotor

from conftest import clustered


@pytest.fixture(scope="module")
def big():
    x = clustered(5, 20000, 64)
    return rotor.Index.build(x, threads=1), x


def test_another_thread_runs_while_one_searches(big):
    """A batch search holds no GIL: a Python thread counting meanwhile makes
    progress inside the search's duration."""
    ix, x = big
    q = x[:8000]  # 20,000 x 64 scanned 8,000 times: 0.1-0.5 s on one core
    t0 = time.perf_counter()
    ix.search(q, k=10, threads=1)
    alone = time.perf_counter() - t0
    assert alone > 0.05, "the search is too short to observe"

    counts = []
    stop = threading.Event()

    def count():
        n = 0
        while not stop.is_set():
            n += 1
        counts.append(n)

    inside = []

    def search():
        s = time.perf_counter()
        ix.search(q, k=10, threads=1)
        inside.append(time.perf_counter() - s)

    th = threading.Thread(target=count)
    th.start()
    time.sleep(0.01)
    wakeups = []
    # sample the counter's progress only while the search runs
    t = threading.Thread(target=search)
    t.start()
    while t.is_alive():
        wakeups.append(time.perf_counter())
        time.sleep(0.005)
    t.join()
    stop.set()
    th.join()
    # The main thread itself woke up repeatedly during the search: with
    # the GIL held by the search it could not have.
    assert len(wakeups) >= 5, (len(wakeups), inside)
    assert counts[0] > 1000


def test_threads_searching_one_index_agree(big):
    ix, x = big
    q = x[:400]
    want = ix.search(q, k=10, threads=1)
    results = [None] * 4
    errors = []

    def work(i):
        try:
            if i % 2:
                results[i] = ix.search(q, k=10, threads=2)
            else:
                ids = np.stack([ix.search(row, k=10)[0][0] for row in q])
                results[i] = (ids, None)
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r[0], want[0])


def test_searches_run_beside_adds_and_removes(data):
    """Two threads search while the main thread adds, removes and
    consolidates: searches keep going during the writes, no search
    returns a key removed before it started or one not yet added."""
    base, queries = data
    ix = rotor.Index.build(base[:1000], kind="vamana", threads=1)
    removed_at = {}  # key -> how many removes had returned
    removes = [0]
    given = [1000]
    stop = threading.Event()
    seen = []
    errors = []

    def searcher():
        n = 0
        try:
            while not stop.is_set():
                before = removes[0]
                ids, _ = ix.search(queries[:20], k=5, threads=1)
                for key in ids[ids >= 0].tolist():
                    assert key < given[0], key
                    assert removed_at.get(key, before + 1) > before, key
                n += 1
        except Exception as e:  # reported below
            errors.append(e)
        seen.append(n)

    ts = [threading.Thread(target=searcher) for _ in range(2)]
    for t in ts:
        t.start()
    rng = np.random.default_rng(3)
    for start in range(1000, len(base), 250):
        rows = base[start : start + 250]
        given[0] = start + len(rows)  # raised first: a search may see them from now on
        ix.add(rows, keys=np.arange(start, start + len(rows)))
        gone = [int(k) for k in rng.choice(start, 50, replace=False) if int(k) not in removed_at]
        ix.remove(gone)
        for k in gone:
            removed_at[k] = removes[0] + 1
        removes[0] += 1
    ix.consolidate()
    stop.set()
    for t in ts:
        t.join()
    assert not errors, errors[0]
    assert len(seen) == 2 and min(seen) > 0
    assert len(ix) == len(base) - len(removed_at)


def test_no_reference_or_memory_leak_over_10000_calls(data):
    base, queries = data
    ix = rotor.Index.build(base[:500])
    q1, qb = queries[0], queries[:4]
    q64 = queries[:4].astype(np.float64)
    refs = [sys.getrefcount(o) for o in (ix, q1, qb, q64)]

    def run(n):
        for _ in range(n):
            ix.search(q1, k=5)
            ix.search(qb, k=5, threads=1)
            ix.search(q64, k=5, threads=1)
            try:
                ix.search(qb[:, :3], k=5)
            except rotor.DimensionError:
                pass
            len(ix)
            ix.stats()

    run(200)  # warm caches and free lists
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        run(10000)
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(o) for o in (ix, q1, qb, q64)] == refs
    # 40,000 searches: a leak of one small array each would be megabytes
    assert grown < 64 * 1024, grown


def test_results_own_their_memory(data):
    ix = rotor.Index.build(data[0][:100])
    ids, dist = ix.search(data[1], k=3)
    assert sys.getrefcount(ids) == 2 and ids.base is None and dist.base is None
    assert ids.flags.owndata and ids.flags.writeable


CHILD = textwrap.dedent("""
    import signal, sys, numpy as np, rotor
    # A suite started in the background by a shell without job control
    # inherits SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60000, 64)).astype(np.float32)
    started = []
    def progress(done, total):
        if not started:
            started.append(1)
            print("started", flush=True)
    try:
        if sys.argv[1] == "build":
            ix = rotor.Index.build(x, kind="vamana", threads=1, progress=progress)
            ix.save(sys.argv[2] + "/ix.rotor")
        elif sys.argv[1] == "build-no-progress":
            print("started", flush=True)
            ix = rotor.Index.build(x, kind="vamana", threads=1)
            ix.save(sys.argv[2] + "/ix.rotor")
        else:
            rotor.write_vectors(sys.argv[2] + "/in.fbin", x)
            print("written", flush=True)
            rotor.build_file(sys.argv[2] + "/in.fbin", sys.argv[2] + "/ix.rotor",
                             kind="vamana", threads=1, progress=progress)
    finally:
        print("cleaned up", flush=True)
    print("finished", flush=True)
""")


@pytest.mark.parametrize("how", ["build", "build-no-progress", "build_file"])
def test_ctrl_c_stops_a_long_build_cleanly(tmp_path, how):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(rotor.__file__) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.Popen([sys.executable, "-c", CHILD, how, str(tmp_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        while True:
            line = p.stdout.readline()
            assert line, "the child ended before the build started: " + p.stderr.read()
            if line.strip() == "started":
                break
        time.sleep(0.3)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        stopped_in = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
    # An uncaught KeyboardInterrupt ends Python by SIGINT, as a shell expects;
    # a crash would end it by SIGSEGV or SIGABRT.
    assert p.returncode == -signal.SIGINT, (p.returncode, err)
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert "cleaned up" in out and "finished" not in out
    assert stopped_in < 5, stopped_in  # the build stopped, it did not run to its end
    left = sorted(f.name for f in tmp_path.iterdir())
    assert left == (["in.fbin"] if how == "build_file" else []), left
