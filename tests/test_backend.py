"""The xp proxy and the strict-device backend that keeps the GPU path honest in CI."""
import threading

import numpy as np
import pytest

from common import backend
from common.backend import StrictArray, to_device, to_numpy, xp
from engine import parallel, tuning


def test_xp_defaults_to_numpy():
    assert backend.backend_name() == "cpu"
    assert xp.zeros(3).__class__ is np.ndarray
    assert backend.get_array_module(np.zeros(2)) is np


def test_use_gpu_without_cupy_warns_and_stays_on_cpu(capsys, monkeypatch):
    monkeypatch.setattr(backend.arrays, "gpu_unavailable_reason", lambda: "CuPy is not installed")
    assert backend.use_gpu() is False
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "running on the CPU" in out
    assert backend.backend_name() == "cpu" and not backend.is_gpu()


def test_strict_arrays_compute_like_numpy(strict_backend):
    a = to_device(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert isinstance(a, StrictArray)
    b = xp.exp(a) * 2.0 + a @ xp.ones((3, 1), dtype=np.float32)
    expected = np.exp(np.arange(6).reshape(2, 3)) * 2 + np.arange(6).reshape(2, 3).sum(1, keepdims=True)
    np.testing.assert_allclose(to_numpy(b), expected, rtol=1e-6)
    a[0, 0] = 5.0  # Python scalars are fine
    assert float(a[0, 0]) == 5.0


@pytest.mark.parametrize("mix", [
    lambda a: a + np.ones(3, np.float32),
    lambda a: np.ones(3, np.float32) * a,
    lambda a: np.asarray(a),
    lambda a: np.exp(a),
    lambda a: np.concatenate([a, a]),
    lambda a: xp.maximum(a, np.zeros(3, np.float32)),
    lambda a: a.__setitem__(slice(None), np.zeros(3, np.float32)),
])
def test_strict_refuses_to_mix_host_and_device(strict_backend, mix):
    a = to_device(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="strict device backend"):
        mix(a)


def test_explicit_transfers_round_trip(strict_backend):
    host = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    dev = to_device(host)
    back = to_numpy(dev)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, host)
    assert backend.get_array_module(dev) is backend.strict
    assert to_device(host, dtype=np.float64).dtype == np.float64


def test_device_name_is_reported():
    assert "CPU" in backend.device_name()
    backend.use_strict()
    assert "strict" in backend.device_name()


def test_run_blocks_covers_every_block_once_and_nests_safely():
    from engine.parallel import run_blocks
    seen = []
    outer = [(i, i + 3) for i in range(0, 30, 3)]

    def work(r0, r1, buf):
        buf.setdefault("calls", 0)
        buf["calls"] += 1
        inner = []
        run_blocks([(r0, r0 + 1), (r0 + 1, r1)], lambda a, b, _buf: inner.append((a, b)))  # nested: runs in order
        seen.append((r0, r1, sorted(inner)))

    run_blocks(outer, work)
    assert sorted(s[:2] for s in seen) == outer
    assert all(inner == [(r0, r0 + 1), (r0 + 1, r1)] for r0, r1, inner in seen)


def test_run_blocks_gives_every_worker_the_same_share_each_call_and_waits_on_errors(monkeypatch):
    """Worker t takes blocks t, t + workers, ... (the caller is worker 0), so sums over blocks are
    the same on every call; an error in one share is raised only after every block has finished."""
    import threading
    import time

    monkeypatch.setattr(parallel, "_workers", 3)
    ranges = [(i, i + 1) for i in range(8)]
    for _ in range(3):
        owner = {}
        parallel.run_blocks(ranges, lambda r0, r1, buf: owner.setdefault(r0, threading.current_thread().name))
        caller = threading.current_thread().name
        assert {owner[r] for r in (0, 3, 6)} == {caller}
        assert all(len({owner[r] for r in range(t, 8, 3)}) == 1 for t in range(3))
    done = []

    def work(r0, r1, buf):
        if r0 == 0:
            raise ValueError("block 0")
        time.sleep(0.01)
        done.append(r0)

    with pytest.raises(ValueError, match="block 0"):
        parallel.run_blocks(ranges, work)
    assert sorted(done) == [1, 2, 4, 5, 7]  # the other workers' shares, all finished


def _eventually(condition, seconds=5.0):
    import time
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@pytest.mark.parametrize("spins", [True, False], ids=["spinlock", "sleeping-lock"])
def test_worker_thread_runs_jobs_parks_and_takes_the_next_job_after_sleeping(monkeypatch, spins):
    """A worker of run_blocks waits for jobs spinning (or, without spinlocks, on a lock), returns
    a job's exception to the caller, and is sent to sleep by park(): a start() finds it whether it
    is asleep already or still on its way ("parking")."""
    if spins and parallel._SPIN is None:
        pytest.skip("no pthread spinlocks in this C library")
    if not spins:
        monkeypatch.setattr(parallel, "_SPIN", None)
    worker = parallel._Worker(99)
    assert worker.go.spins is spins
    ran = []

    def job():
        ran.append(threading.current_thread().name)

    worker.start(job)
    assert worker.finish() is None and ran == ["nnott-blocks-99"]
    worker.start(lambda: 1 / 0)
    assert isinstance(worker.finish(), ZeroDivisionError)
    assert worker.park(float("inf"))               # idle: sent to sleep
    _eventually(lambda: worker.state == "parked")
    worker.start(job)
    assert worker.finish() is None and len(ran) == 2 and worker.state == "spinning"
    assert not worker.park(0.0)                    # not idle long enough: keeps spinning
    worker.park(float("inf"))
    worker.start(job)                              # started while "parking"
    assert worker.finish() is None and len(ran) == 3
    if spins:  # the parker and the caller both opening the gate: the worker only sleeps early
        worker.go.open()
        for _ in range(3):
            worker.start(job)
            assert worker.finish() is None
        assert len(ran) == 6


def test_idle_workers_are_parked_and_woken_by_the_next_call(monkeypatch):
    """Spinning workers are sent to sleep after SPIN_SECONDS without work (by the parker thread),
    so an idle program does not keep a core busy; the next run_blocks call wakes them."""
    if parallel._SPIN is None:
        pytest.skip("no pthread spinlocks in this C library")
    monkeypatch.setattr(parallel, "_workers", 3)
    monkeypatch.setattr(tuning, "SPIN_SECONDS", 0.01)
    ranges = [(i, i + 1) for i in range(6)]
    total = parallel.sum_blocks(ranges, lambda r0, r1, buf: np.array([float(r0)]))
    assert total[0] == 15.0
    _eventually(lambda: all(w.state == "parked" for w in parallel._threads))
    total = parallel.sum_blocks(ranges, lambda r0, r1, buf: np.array([float(r1)]))
    assert total[0] == 21.0
    _eventually(lambda: all(w.state == "parked" for w in parallel._threads))


def test_run_blocks_from_two_threads_at_once(monkeypatch):
    """One call uses the workers; a call from another thread meanwhile runs its blocks itself."""
    monkeypatch.setattr(parallel, "_workers", 2)
    ranges = [(i, i + 1) for i in range(10)]
    results, errors = [], []

    def caller(offset):
        try:
            for _ in range(50):
                results.append(parallel.sum_blocks(ranges, lambda r0, r1, buf: np.array([float(r0 + offset)]))[0])
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=caller, args=(k,)) for k in (0, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(set(results)) == [45.0, 1045.0] and len(results) == 100


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_run_blocks_in_a_forked_child(monkeypatch):
    """A forked child has none of the parent's threads: it makes its own workers instead of
    waiting for the parent's forever."""
    import os
    import time
    import warnings

    monkeypatch.setattr(parallel, "_workers", 2)
    parallel.run_blocks([(0, 1), (1, 2)], lambda r0, r1, buf: None)  # the parent's workers exist
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork with threads running
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            seen = []
            parallel.run_blocks([(0, 1), (1, 2)], lambda r0, r1, buf: seen.append(r0))
            code = 0 if sorted(seen) == [0, 1] else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("run_blocks hung in a forked child")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_gemm_split_over_workers_equals_matmul():
    from engine.arrays import _add_to_rows, gemm
    from engine.tuning import GEMM_SPLIT_MIN_MACS
    rng = np.random.default_rng(0)
    for m, k, n in [(300, 256, 240), (40, 512, 1100), (3, 4, 5)]:
        a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        assert m * k * n >= GEMM_SPLIT_MIN_MACS or (m, k, n) == (3, 4, 5)
        np.testing.assert_allclose(gemm(a, b), a @ b, rtol=1e-12, atol=1e-12)
        out = np.empty((m, n))
        assert gemm(a, b, out=out) is out
        np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)
        bias = rng.standard_normal(n)   # added by each worker to its rows (or columns) of the product
        np.testing.assert_allclose(gemm(a, b, bias=bias), a @ b + bias, rtol=1e-12, atol=1e-12)
        row = rng.standard_normal(m)
        np.testing.assert_allclose(gemm(b.T, a.T, bias=row), b.T @ a.T + row, rtol=1e-12, atol=1e-12)

        def relu(block):  # a fused activation: gets whole rows, contiguous, whichever way the product is split
            assert block.flags.c_contiguous
            return np.maximum(block, 0, out=block)

        np.testing.assert_allclose(gemm(a, b, bias=bias, then=relu), np.maximum(a @ b + bias, 0), rtol=1e-12, atol=1e-12)
    a, b = rng.standard_normal((4, 6)), rng.standard_normal((6, 3))
    column_major = gemm(b.T, a.T).T      # (4, 3) in Fortran order: the bias still reaches every row
    assert not column_major.flags.c_contiguous
    np.testing.assert_allclose(_add_to_rows(column_major, np.arange(3.0)), a @ b + np.arange(3.0))


def test_sum_blocks_adds_every_blocks_partial_once():
    from engine.parallel import sum_blocks
    ranges = [(i, i + 1) for i in range(7)]

    def partial(r0, r1, buf):  # reuses one buffer per worker, as the kernels do
        out = buf.setdefault("out", np.empty(2))
        out[...] = (r0, 10 * r0)
        return out

    np.testing.assert_array_equal(sum_blocks(ranges, partial), [21, 210])


def test_blocks_of_gives_every_worker_as_many_blocks_and_the_largest_first(monkeypatch):
    monkeypatch.setattr(parallel, "_workers", 2)
    for total, item_bytes in [(64, 100_000), (64, 200_000), (50176, 128), (10, 300_000), (7, 2**20)]:
        blocks = parallel.blocks_of(total, item_bytes)
        sizes = [r1 - r0 for r0, r1 in blocks]
        assert blocks[0][0] == 0 and blocks[-1][1] == total
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))          # contiguous, in order
        assert max(sizes) - min(sizes) <= 1 and sizes[0] == max(sizes)       # even; scratch sized by the first
        assert len(blocks) % 2 == 0 or len(blocks) == total                   # both workers get the same count
    assert parallel.blocks_of(1000, 4) == [(0, 1000)]                           # small work: one block
    assert parallel.blocks_of(1000, 4, small_bytes=0) != [(0, 1000)]            # ... unless told otherwise
    assert len(parallel.blocks_of(2**19, 4, small_bytes=2**21)) == 1            # a memory-bound pass under 2 MiB


def test_channel_map_equals_broadcasting_for_every_row_count():
    from engine.arrays import channel_map
    from engine.tuning import WIDE_VALUES
    rng = np.random.default_rng(1)
    for m, c in [(1, 6), (WIDE_VALUES // 6 + 5, 6), (3 * (WIDE_VALUES // 32), 32), (17, 200), (50, 9000)]:
        a, vec = rng.standard_normal((m, c)), rng.standard_normal(c)
        for ufunc in (np.add, np.multiply, np.subtract):
            out = np.empty_like(a)
            assert channel_map(ufunc, a, vec, out) is out
            np.testing.assert_array_equal(out, ufunc(a, vec))
        channel_map(np.add, a, vec, a)  # in place
        np.testing.assert_array_equal(a, np.add(a - vec, vec))


def test_elementwise_runs_a_pass_over_flat_blocks(monkeypatch):
    monkeypatch.setattr(tuning, "SMALL_PASS_BYTES", 0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 7, 9, 3))
    g = np.asfortranarray(rng.standard_normal((5, 7, 9, 3)))  # a non-contiguous input is copied first
    out = np.empty_like(x)
    assert parallel.elementwise(lambda o, a, b: np.multiply(a, b > 0, out=o), out, g, x, block_bytes=64) is out
    np.testing.assert_array_equal(out, g * (x > 0))


def test_elementwise_writes_into_an_output_held_column_by_column(monkeypatch):
    """out in Fortran order (an eval-mode Linear's output): the pass runs on the transposes, in
    blocks and as one call, and writes every value in place."""
    rng = np.random.default_rng(3)
    x = np.asfortranarray(rng.standard_normal((40, 13)))
    want = np.maximum(x, 0)
    for small in (0, 2**30):
        monkeypatch.setattr(tuning, "SMALL_PASS_BYTES", small)
        y = x.copy(order="F")
        assert parallel.elementwise(lambda o, a: np.maximum(a, 0, out=o), y, y, block_bytes=64) is y
        np.testing.assert_array_equal(y, want)


def test_zero_bordered_buffers_are_kept_with_their_border_zero(monkeypatch):
    inside = (slice(None), slice(1, 3), slice(2, 4))
    buf = parallel.zero_bordered((2, 4, 5, 3), np.float32, inside)
    assert not buf.any()
    buf[inside] = 7.0                                  # the caller writes inside only
    again = parallel.zero_bordered((2, 4, 5, 3), np.float32, inside)
    assert again is buf and (again == 7.0).sum() == 2 * 2 * 2 * 3   # kept: the border still zero
    other = parallel.zero_bordered((2, 4, 5, 3), np.float32, (slice(None), slice(0, 2), slice(0, 2)))
    assert other is not buf and not other.any()        # another interior: another buffer
    monkeypatch.setattr(tuning, "BORDERED_KEEP", 1)
    parallel.zero_bordered((1, 1), np.float64, (slice(0, 1),))
    assert len(parallel._bordered.buffers) == 1        # the oldest ones let go
    monkeypatch.setattr(tuning, "BORDERED_KEEP", 0)
    assert parallel.zero_bordered((1, 1), np.float64, (slice(0, 1),)) is not parallel.zero_bordered(
        (1, 1), np.float64, (slice(0, 1),)) and not parallel._bordered.buffers


def test_keeping_freed_memory_is_harmless():
    """mallopt on glibc, nothing elsewhere; arrays still allocate, free and fill normally."""
    parallel._keep_freed_memory()
    parallel._keep_freed_memory()
    for _ in range(3):
        a, b = np.ones(2**21, dtype=np.float32), np.full(2**21, 2.0, dtype=np.float32)
        assert float((a + b).sum()) == 3.0 * 2**21


def test_choose_parallelism_by_the_flops_of_a_batch():
    """Small models: one Python thread, BLAS on every core; larger ones: worker threads, one-thread BLAS."""

    cores = parallel.cpu_cores()
    blas = parallel._blas_controllers()
    assert parallel.choose_parallelism(tuning.SMALL_MODEL_FLOPS - 1) == "blas" == parallel.parallelism()
    assert parallel.cpu_workers() == 1 and parallel.cpu_cores() == cores
    assert all(lib.get_num_threads() == cores for lib in blas)
    seen = []
    parallel.run_blocks([(0, 1), (1, 2)], lambda r0, r1, buf: seen.append(threading.current_thread().name))
    assert seen == [threading.current_thread().name] * 2  # every block on the caller
    assert parallel.choose_parallelism(tuning.SMALL_MODEL_FLOPS) == "blocks" == parallel.parallelism()
    assert parallel.cpu_workers() == cores == parallel.cpu_cores()
    assert all(lib.get_num_threads() == 1 for lib in blas)
    assert parallel.choose_parallelism(10**12, mode="blas") == "blas"   # forced, whatever the size
    assert parallel.choose_parallelism(1, mode="blocks") == "blocks"
    with pytest.raises(ValueError):
        parallel.choose_parallelism(1, mode="fast")
    assert parallel.use_blas_threads(1) == 1 and parallel.cpu_cores() == 1  # an explicit core count
    parallel.set_cpu_workers(cores)


def test_both_parallelisms_train_lenet_to_the_same_numbers():
    """The parallelism changes who computes, not what: one LeNet-5 step, parameters compared."""
    from common import dispatch
    from common.seed import seed_everything
    from convolutional.architectures import build_model
    from vectorized.losses import CrossEntropyLoss
    from vectorized.optim import Adam

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    results = []
    for choose in (parallel.set_cpu_workers, parallel.use_blas_threads):
        choose()
        seed_everything(0)
        model = build_model("lenet", input_shape=(1, 28, 28), num_classes=10)
        loss, opt = CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3)
        for _ in range(2):
            model.zero_grad()
            loss.forward(model(x), y)
            dispatch.training_backward(model, loss.backward())
            opt.step()
        results.append(model.state_dict())
    for name, value in results[0].items():
        np.testing.assert_allclose(results[1][name], value, rtol=1e-4, atol=1e-6, err_msg=name)
