"""Data parallelism over MPI: shards, SyncBatchNorm, and 2-rank runs under ``mpiexec -n 2``.

The 2-rank tests need the ``mpi`` extra (``pip install "nnott[mpi]"``: the mpich wheel, which
brings ``mpiexec``, and mpi4py); they skip, saying so, where it is not installed.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.checkpoint import load_checkpoint
from common.rank_watch import UNKNOWN_CAUSE
from common.data.shards import check_divisible, shard_slice
from common.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "mpi_worker.py"
CONV = ROOT / "convolutional" / "main.py"


def _mpi_missing():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return 'mpi4py is not installed (pip install "nnott[mpi]")'
    if shutil.which("mpiexec") is None:
        return 'no mpiexec on PATH (pip install "nnott[mpi]" installs MPICH\'s)'
    return None


# the 2-rank runs start mpiexec and several interpreters: slow (CI runs them; so does -m "slow or not slow")
def needs_mpi(test):
    return pytest.mark.slow(pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))(test))


def mpiexec(n, *args, timeout=120, **kw):
    cmd = ["mpiexec", "-n", str(n), sys.executable, *map(str, args)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=kw.get("cwd"), env=env)


def python(*args, timeout=120, cwd=None):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS="1"))


def weights(npz):
    data = np.load(npz)
    return {k: data[k] for k in data.files if k.startswith("w:")}


# ---------------------------------------------------------------------- no MPI needed
@pytest.mark.parametrize("count,size", [(24, 2), (25, 2), (25, 3), (7, 7), (64, 5)])
def test_shards_cover_the_batch_in_order(count, size):
    parts = [shard_slice(count, r, size) for r in range(size)]
    rows = np.concatenate([np.arange(count)[p] for p in parts])
    np.testing.assert_array_equal(rows, np.arange(count))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_a_batch_smaller_than_the_ranks_is_refused():
    check_divisible(100, 25, 4)
    with pytest.raises(UserError, match="cannot be shared by 2 ranks"):
        check_divisible(101, 25, 2)
    with pytest.raises(UserError, match="--batch-size"):
        check_divisible(100, 2, 3)


class OneRank:
    """A communicator of one rank: the sums are the local sums."""
    rank, size, is_root = 0, 1, True

    def allreduce_sum(self, array):
        return array

    def broadcast(self, array, root=0):
        return array


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_sync_batchnorm_on_one_rank_is_batchnorm(kind, momentum):
    """Forward, running statistics, input and parameter gradients equal the plain layer's."""
    from convolutional.norm import BatchNorm2D
    from vectorized.data_parallel import DataParallel
    from vectorized.layers import BatchNorm1d
    from vectorized.sync_bn import SyncBatchNorm

    rng = np.random.default_rng(0)
    shape = (6, 5) if kind == "1d" else (3, 4, 4, 5)
    x, g = rng.normal(size=shape) * 2 + 1, rng.normal(size=shape)
    plain = (BatchNorm1d(5, momentum=momentum) if kind == "1d" else BatchNorm2D(5, momentum=momentum)).astype(np.float64)
    plain.weight.data[...] = rng.normal(size=5)
    group = DataParallel(OneRank())
    group.shard(shape[0])
    twin = (BatchNorm1d(5, momentum=momentum) if kind == "1d" else BatchNorm2D(5, momentum=momentum)).astype(np.float64)
    twin.load_state_dict(plain.state_dict())
    sync = SyncBatchNorm(twin, group)
    for mode in ("train", "eval"):
        getattr(plain, mode)(), getattr(sync, mode)()
        np.testing.assert_allclose(sync(x), plain(x), atol=1e-12)
        plain.zero_grad(), sync.zero_grad()
        np.testing.assert_allclose(sync.backward(g), plain.backward(g), atol=1e-12)
        np.testing.assert_allclose(sync.weight.grad, plain.weight.grad, atol=1e-12)
        np.testing.assert_allclose(sync.bias.grad, plain.bias.grad, atol=1e-12)
    for k, v in plain.state_dict().items():
        np.testing.assert_allclose(sync.state_dict()[k], v, atol=1e-12, err_msg=k)


def _fit(parallel, sync_bn=False, epochs=2):
    """Two epochs of a BatchNorm MLP on generated images, optionally as a 1-rank DataParallel.
    (SGD, not Adam: Adam would blow up the rounding noise in the gradient of the bias that
    BatchNorm cancels.)"""
    from common.augment import AugmentConfig, Augmenter
    from common.data import Normalizer
    from common.seed import seed_everything
    from vectorized.losses import CrossEntropyLoss
    from vectorized.mlp import build_mlp
    from vectorized.optim import SGD
    from vectorized.sync_bn import convert_sync_batchnorm
    from vectorized.trainer import Trainer

    seed_everything(0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, size=(40, 1, 4, 4), dtype=np.uint8), rng.integers(0, 3, size=40)
    model = build_mlp(16, 3, [8], ["relu"], [0.0], batchnorm=True)
    if sync_bn:
        assert convert_sync_batchnorm(model, parallel) == 1
    trainer = Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1, momentum=0.9), normalizer=Normalizer.fit(x),
                      num_classes=3, flatten_input=True, progress=False, parallel=parallel,
                      augmenter=Augmenter(AugmentConfig(max_shift=1), seed=1))
    trainer.fit((x, y), (x[:10], y[:10]), epochs=epochs, batch_size=16)
    return trainer


def test_one_rank_trainer_matches_the_plain_trainer_under_the_strict_backend(strict_backend):
    """DataParallel and SyncBatchNorm on a 1-rank group change no number, and mix no host and
    device arrays (CuPy's rules)."""
    from vectorized.data_parallel import DataParallel

    plain = _fit(None)
    for sync_bn in (False, True):
        ranked = _fit(DataParallel(OneRank()), sync_bn=sync_bn)
        assert ranked.history["loss"] == pytest.approx(plain.history["loss"], rel=1e-6)
        for k, v in plain.model.state_dict().items():
            np.testing.assert_allclose(ranked.model.state_dict()[k], v, rtol=1e-5, atol=1e-6, err_msg=k)


def test_distributed_without_mpi_exits_1_with_the_install_line(tmp_path):
    blocked = ("import runpy, sys; sys.modules['mpi4py'] = None; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')")
    out = python("-c", blocked, CONV, "lenet", "--dataset", "synth-digits", "--distributed", cwd=tmp_path)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install" in lines[0] and "mpi" in lines[0], out.stderr


def test_sync_bn_without_distributed_is_an_error(tmp_path):
    out = python(CONV, "lenet", "--dataset", "synth-digits", "--sync-bn", "--epochs", "1", "--limit", "64",
                 cwd=tmp_path)
    assert out.returncode == 1 and "--sync-bn" in out.stderr and "Traceback" not in out.stderr


# ---------------------------------------------------------------------- 2 ranks
@needs_mpi
@pytest.mark.parametrize("model,flags", [("cnn-bn", ["--sync-bn"]), ("mlp", [])])
def test_two_ranks_give_the_weights_of_one_process_float64(tmp_path, model, flags):
    """Global batch 25 (shards of 13 and 12), 8 steps, augmentation on: equal to 1e-9."""
    one = python(WORKER, tmp_path / "one.npz", "--model", model, "--batch-size", 25)
    two = mpiexec(2, WORKER, tmp_path / "two.npz", "--model", model, "--batch-size", 25, "--distributed", *flags)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = weights(tmp_path / "one.npz"), weights(tmp_path / "two.npz")
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst < 1e-9, worst


@needs_mpi
def test_local_batchnorm_differs_from_one_process(tmp_path):
    """Without --sync-bn each rank normalises its own shard: not the single-process model."""
    python(WORKER, tmp_path / "one.npz", "--model", "mlp-bn")
    mpiexec(2, WORKER, tmp_path / "two.npz", "--model", "mlp-bn", "--distributed")
    a, b = weights(tmp_path / "one.npz"), weights(tmp_path / "two.npz")
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) > 1e-6


CLI = ["lenet", "--dataset", "synth-digits", "--limit", "200", "--val-split", "0.1", "--batch-size", "20",
       "--run-dir", "runs"]


def run_folders(cwd):
    return sorted((Path(cwd) / "runs").iterdir())


@needs_mpi
def test_cli_two_ranks_float32_and_rank0_only_files(tmp_path):
    """The launcher with 2 ranks: one run folder, one header, weights equal to one process
    within float32 sum-order tolerance."""
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    one = python(CONV, *CLI, "--epochs", "2", "--save", "w.h5", cwd=tmp_path / "one")
    two = mpiexec(2, CONV, *CLI, "--epochs", "2", "--save", "w.h5", "--distributed", "--plot", cwd=tmp_path / "two")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert two.stdout.count("[nnott] tier=") == 1 and two.stdout.count("test accuracy") == 1
    assert "ranks=2" in two.stdout and "error" not in two.stderr and "Traceback" not in two.stderr
    folders = run_folders(tmp_path / "two")
    assert len(folders) == 1
    names = {p.name for p in folders[0].iterdir()}
    assert {"config.json", "metrics.csv", "last.h5", "results.json", "curves.png"} <= names
    assert not any(n.endswith(".tmp") for n in names)
    a = load_checkpoint(tmp_path / "one" / "w.h5").model_state
    b = load_checkpoint(tmp_path / "two" / "w.h5").model_state
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-5, err_msg=k)


@needs_mpi
def test_resume_with_a_different_rank_count(tmp_path):
    """1 epoch on 2 ranks, then epoch 2 on 1 process == 2 epochs on 1 process (and 1 -> 2)."""
    for d in ("ref", "a", "b"):
        (tmp_path / d).mkdir()
    ref = python(CONV, *CLI, "--epochs", "2", "--save", "w.h5", cwd=tmp_path / "ref")
    first = mpiexec(2, CONV, *CLI, "--epochs", "1", "--distributed", cwd=tmp_path / "a")
    assert ref.returncode == 0 and first.returncode == 0, ref.stderr + first.stderr
    ckpt = run_folders(tmp_path / "a")[0] / "last.h5"
    second = python(CONV, *CLI, "--epochs", "2", "--resume", ckpt, "--save", "w.h5", cwd=tmp_path / "a")
    first_b = python(CONV, *CLI, "--epochs", "1", cwd=tmp_path / "b")
    ckpt_b = run_folders(tmp_path / "b")[0] / "last.h5"
    second_b = mpiexec(2, CONV, *CLI, "--epochs", "2", "--resume", ckpt_b, "--save", "w.h5", "--distributed",
                       cwd=tmp_path / "b")
    assert second.returncode == 0 and first_b.returncode == 0 and second_b.returncode == 0, \
        second.stderr + second_b.stderr
    want = load_checkpoint(tmp_path / "ref" / "w.h5")
    for d in ("a", "b"):
        got = load_checkpoint(tmp_path / d / "w.h5")
        assert got.epoch == 2 and got.history["loss"] == pytest.approx(want.history["loss"], rel=1e-4)
        for k in want.model_state:
            np.testing.assert_allclose(got.model_state[k], want.model_state[k], rtol=1e-4, atol=1e-5, err_msg=k)


@needs_mpi
def test_a_rank_that_raises_stops_every_rank_with_one_line(tmp_path):
    start = time.monotonic()
    out = mpiexec(2, WORKER, tmp_path / "x.npz", "--distributed", "--epochs", "50", "--fail-rank", "1",
                  "--fail-step", "6", "--run-dir", tmp_path / "run", timeout=60)
    assert time.monotonic() - start < 30
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert lines == ["error: rank 1 of 2: RuntimeError: injected fault at step 6 "
                     "(run with --debug for the traceback)"], out.stderr
    ckpt = load_checkpoint(tmp_path / "run" / "last.h5")  # epoch 1 (steps 1-4) was saved and is intact
    assert ckpt.epoch == 1


def _rank_pid(marker, rank):
    """The pid of the process of MPI rank ``rank`` whose environment carries ``marker``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in env and f"PMI_RANK={rank}".encode() in env:
            return int(entry.name)
    return None


@needs_mpi
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's pid in /proc (Linux)")
def test_a_killed_rank_stops_the_job_and_the_checkpoint_survives(tmp_path):
    marker = f"NNOTT_TEST_RUN={os.getpid()}-{time.time_ns()}"
    env = dict(os.environ, OMP_NUM_THREADS="1", NNOTT_TEST_RUN=marker.split("=", 1)[1])
    proc = subprocess.Popen(["mpiexec", "-n", "2", sys.executable, str(CONV), *CLI, "--epochs", "200",
                             "--distributed"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "runs").glob("*/last.h5")) and time.monotonic() < deadline:
            time.sleep(0.2)
        pid = _rank_pid(marker, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - start < 30 and proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # stderr ends with the watcher's one line (before it: rank 0's progress bar; mpiexec's own
    # banner goes to stdout). Rarely, rank 0's collective fails before mpiexec kills it, and
    # MPICH prints its own "Abort(...) ... error stack" from it as well (see data-parallel.md).
    lines = err.strip().splitlines()
    ours = [line for line in lines if line.startswith("error:")]
    assert len(ours) == 1, err
    last = ours[0]
    assert last == lines[-1] or "Abort(" in err, err
    ckpt_path = next((tmp_path / "runs").glob("*/last.h5"))
    rel = ckpt_path.relative_to(tmp_path)
    assert last.startswith("error: rank 1 of 2 died ("), err
    assert f"); newest checkpoint: {rel} (intact, epoch " in last, err
    cause = last.split("(", 1)[1].split(")", 1)[0]
    assert cause in ("killed by signal 9, SIGKILL", UNKNOWN_CAUSE)  # the status may be collected first
    assert last.endswith(f"resume with: mpiexec -n 2 python {CONV} {' '.join(CLI)} --epochs 200 --distributed "
                         f"--resume {rel}"), last
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt.epoch >= 1


@needs_mpi
@pytest.mark.parametrize("how,cause", [("exit", "exited with code 3 in the middle of the run"),
                                       ("kill", "killed by signal 9, SIGKILL")])
def test_a_rank_that_dies_is_named_in_one_line(tmp_path, how, cause):
    """os._exit or SIGKILL on rank 1 after step 6: mpiexec stops rank 0 at once, and the
    watcher prints the line; the checkpoint of epoch 1 (steps 1-4) is intact."""
    start = time.monotonic()
    out = mpiexec(2, WORKER, tmp_path / "x.npz", "--distributed", "--epochs", "50", "--fail-rank", "1",
                  "--fail-step", "6", "--fail-how", how, "--run-dir", tmp_path / "run", timeout=60)
    assert time.monotonic() - start < 30 and out.returncode != 0
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and (lines[0] == out.stderr.strip() or "Abort(" in out.stderr), out.stderr  # as above
    assert lines[0].startswith("error: rank 1 of 2 died ("), lines[0]
    assert lines[0].split("(", 1)[1].split(")", 1)[0] in (cause, UNKNOWN_CAUSE)  # see rank_watch.UNKNOWN_CAUSE
    assert f"newest checkpoint: {tmp_path / 'run' / 'last.h5'} (intact, epoch 1); resume with: mpiexec -n 2" in lines[0]
    assert load_checkpoint(tmp_path / "run" / "last.h5").epoch == 1


@needs_mpi
def test_ctrl_c_on_mpiexec_saves_and_resumes(tmp_path):
    proc = subprocess.Popen(["mpiexec", "-n", "2", sys.executable, str(CONV), *CLI, "--epochs", "200",
                             "--distributed"], cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "runs").glob("*/last.h5")) and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: checkpoint saved to" in err and "resume with: mpiexec -n 2" in err
    ckpt = next((tmp_path / "runs").glob("*/last.h5"))
    saved = load_checkpoint(ckpt)
    out = python(CONV, *CLI, "--epochs", str(saved.epoch + 1), "--resume", ckpt, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert load_checkpoint(ckpt).epoch == saved.epoch + 1
