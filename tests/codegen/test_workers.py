"""ember's worker threads: every chunk once, errors re-raised, a slow worker only costs its chunk,
back-off after a straggler; large products split across them equal numpy's."""
import threading
import time

import numpy as np
import pytest

from ember.kernels import blas_threads, workers


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(workers, "_backoff_until", 0.0)
    monkeypatch.setattr(workers, "_backoff_s", workers.BACKOFF_MIN_S)
    monkeypatch.setattr(workers, "_strikes", 0)
    yield


def test_every_chunk_runs_once():
    counts = [0] * 37
    lock = threading.Lock()

    def run(i):
        time.sleep(0)            # let the workers in
        with lock:
            counts[i] += 1
    for threads in (1, 2, 5):
        counts[:] = [0] * 37
        workers.parallel_for(run, 37, threads)
        assert counts == [1] * 37


def test_errors_reach_the_caller():
    def run(i):
        if i == 3:
            raise ValueError("chunk 3 failed")
    with pytest.raises(ValueError, match="chunk 3 failed"):
        workers.parallel_for(run, 8, 2)


def test_a_slow_worker_costs_only_its_chunk():
    """A worker stuck in its chunk (as if descheduled) does not hold the others: the caller runs them."""
    main = threading.get_ident()
    by_main = []

    def run(i):
        if threading.get_ident() == main:
            by_main.append(i)
            if i == 0:
                time.sleep(0.01)     # give the worker time to wake and claim a chunk
        else:
            time.sleep(0.05)         # the "descheduled" worker
    workers.parallel_for(run, 16, 2)
    assert len(by_main) >= 15


def _straggle(i, main=None):
    """A chunk function whose worker chunks take 50 ms (as if the worker were descheduled)."""
    if threading.get_ident() == main:
        if i == 0:
            time.sleep(0.005)
    else:
        time.sleep(0.05)


def test_backoff_after_stragglers_then_serial():
    main = threading.get_ident()
    workers.parallel_for(lambda i: _straggle(i, main), 8, 2)
    assert not workers.backing_off()            # one straggling loop is not enough
    workers.parallel_for(lambda i: _straggle(i, main), 8, 2)
    assert workers.backing_off()                # two in a row are
    seen = set()
    workers.parallel_for(lambda i: seen.add(threading.get_ident()), 8, 2)
    assert seen == {main}                       # backing off: everything on the calling thread


def test_backoff_grows_while_stragglers_persist_and_shrinks_after(monkeypatch):
    main = threading.get_ident()
    lengths = []
    for _ in range(4):
        monkeypatch.setattr(workers, "_backoff_until", 0.0)      # as if each back-off had expired
        before = workers._backoff_s
        workers.parallel_for(lambda i: _straggle(i, main), 8, 2)
        workers.parallel_for(lambda i: _straggle(i, main), 8, 2)
        lengths.append(before)
    assert lengths == [0.02, 0.04, 0.08, 0.16]
    assert workers._backoff_s == 0.25            # capped at BACKOFF_S
    monkeypatch.setattr(workers, "_backoff_until", 0.0)
    workers.parallel_for(lambda i: None, 8, 2)   # a clean loop halves it
    assert workers._backoff_s == 0.125


@pytest.mark.parametrize("shape_a,shape_b", [((20, 250), (250, 4096)),      # split columns
                                             ((4096, 96), (96, 20)),        # split rows
                                             ((16, 64, 80), (16, 80, 72)),  # split the batch
                                             ((64, 80), (8, 80, 900))])     # broadcast a, split columns
def test_split_products_equal_numpy(monkeypatch, shape_a, shape_b):
    monkeypatch.setenv("EMBER_NUM_THREADS", "3")
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    loops = workers.stats()["loops"]
    got = blas_threads.matmul(a, b)
    assert workers.stats()["loops"] == loops + 1     # it was split
    np.testing.assert_allclose(got, np.matmul(a, b), rtol=1e-5, atol=1e-4)
    out = np.empty_like(got)
    assert blas_threads.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, got, rtol=0, atol=0)


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("shape_a,shape_b,transpose_b", [((10, 25), (25, 36864), False),   # column blocks
                                                         ((10, 36864), (25, 36864), True),  # k blocks
                                                         ((20, 4096), (250, 4096), True),   # transposed
                                                         ((3, 5), (5, 7), False)])           # plain
def test_blocked_products_equal_numpy(monkeypatch, threads, shape_a, shape_b, transpose_b):
    monkeypatch.setenv("EMBER_NUM_THREADS", threads)
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    b = b.T if transpose_b else b
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    got = blas_threads.matmul(a, b)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    # the blocks depend on the shape only: the same bits on any number of threads
    monkeypatch.setenv("EMBER_NUM_THREADS", "3")
    np.testing.assert_array_equal(blas_threads.matmul(a, b), got)
