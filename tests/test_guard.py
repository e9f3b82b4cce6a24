"""The divergence guard, the deferred Ctrl-C, and the small reliability helpers behind them."""
import math
import os
import signal

import numpy as np
import pytest

from common.checkpoint import Checkpoint, save_checkpoint
from common.cli import RunDir
from common.data.local import to_int_labels, to_nchw_uint8
from common.data.memory import check_fits
from common.errors import DataError, UserError
from common.guard import (DivergenceGuard, TrainingDiverged, checkpoint_is_finite, newest_finite_checkpoint,
                          tensors_finite)
from common.interrupt import DeferredInterrupt


def ckpt(epoch, w=1.0, loss=0.5):
    return Checkpoint({"w": np.full(3, w, np.float32)}, {}, {}, epoch, epoch * 10, {}, {"loss": [loss] * epoch}, {})


def test_tensors_finite_reads_arrays_and_nested_lists():
    assert tensors_finite([np.ones(3), [[1.0, 2.0], [3.0, 4.0]], [0.5]])
    assert not tensors_finite([np.ones(3), [[1.0, math.inf]]])
    assert not tensors_finite([np.array([np.nan], np.float32)])
    assert tensors_finite([np.array([2**40], np.int64)])  # integer buffers are always finite


def test_a_checkpoint_is_good_when_weights_and_last_loss_are_finite():
    assert checkpoint_is_finite(ckpt(2))
    assert not checkpoint_is_finite(ckpt(2, w=np.nan))
    assert not checkpoint_is_finite(ckpt(2, loss=math.inf))


def test_newest_finite_checkpoint_skips_diverged_damaged_and_missing_files(tmp_path):
    good1 = save_checkpoint(tmp_path / "best.h5", ckpt(1))
    good3 = save_checkpoint(tmp_path / "old.h5", ckpt(3))
    save_checkpoint(tmp_path / "last.h5", ckpt(4, w=np.inf))
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    paths = [tmp_path / n for n in ("last.h5", "broken.h5", "missing.h5", "best.h5", "old.h5")]
    assert newest_finite_checkpoint(paths) == good3
    assert newest_finite_checkpoint(paths[:4]) == good1
    assert newest_finite_checkpoint(paths[:3]) is None


def test_guard_messages_name_what_and_where(tmp_path):
    save_checkpoint(tmp_path / "last.h5", ckpt(2))
    guard = DivergenceGuard(candidates=lambda: [tmp_path / "last.h5"])
    guard.check_step(0.3, 0)
    guard.check_epoch(0, loss=0.3, val_loss=0.4, tensors=[np.ones(2)])
    with pytest.raises(TrainingDiverged, match=r"loss became nan in epoch 3, step 7; .*last good checkpoint is "
                                               r".*last\.h5; try a lower --lr"):
        guard.check_step(float("nan"), 2, 7)
    with pytest.raises(TrainingDiverged, match="validation loss became inf in epoch 1"):
        guard.check_epoch(0, loss=0.3, val_loss=math.inf)
    with pytest.raises(TrainingDiverged, match="weights became NaN or infinite in epoch 1"):
        guard.check_epoch(0, loss=0.3, tensors=[np.array([1.0, np.nan])])
    with pytest.raises(TrainingDiverged, match=r"nothing was saved \(no earlier checkpoint\)"):
        DivergenceGuard().check_step(math.inf, 0)


def test_first_ctrl_c_is_deferred_and_the_second_is_not():
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs in the background
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        deferred_ctrl_c_then_forced()
    finally:
        signal.signal(signal.SIGINT, before)


def deferred_ctrl_c_then_forced():
    with DeferredInterrupt(message="") as interrupt:
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupt.requested and not interrupt.forced
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert interrupt.forced
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_rewrite_metrics_keeps_only_the_epochs_a_checkpoint_holds(tmp_path):
    run = RunDir(path=tmp_path)
    for e in range(1, 4):
        run.log_metrics({"epoch": e, "loss": 1.0 / e, "acc": 0.1 * e})
    run.rewrite_metrics({"loss": [1.0, 0.5], "acc": [0.1, 0.2]})
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,loss,acc", "1,1.0,0.1", "2,0.5,0.2"]


def test_labels_and_pixels_are_checked_and_the_file_is_named():
    with pytest.raises(DataError, match=r"y\.npy: label 1\.09951e\+12 is too large; .*K <= 1000"):
        to_int_labels(np.array([0, 1, 2**40]), "y.npy")
    with pytest.raises(DataError, match=r"y\.npy: labels must be whole numbers, found NaN"):
        to_int_labels(np.array([0.0, np.nan]), "y.npy")
    assert to_int_labels(np.array([0, 1999]), "y.npy", max_classes=2000).tolist() == [0, 1999]
    with pytest.raises(DataError, match=r"x\.npy: 4 of 8 pixel values are NaN or infinite"):
        to_nchw_uint8(np.array([[0.1, np.nan, np.inf, 0.2], [np.nan, 0.3, -np.inf, 0.0]]), "x.npy")


def test_memory_estimate_refuses_in_one_line():
    check_fits(10, "a tiny array", "nothing to do", available=100)
    with pytest.raises(UserError, match=r"^resizing needs 2\.0 GiB of memory but only 1\.0 GiB is free; "
                                        r"use --limit$"):
        check_fits(2 * 2**30, "resizing", "use --limit", available=2**30)


def test_limit_applies_before_the_resize(tmp_path, monkeypatch):
    from argparse import Namespace

    import common.data.run as run_module
    from common.data.synth_digits import generate

    x, y = generate(200, 0, "train")
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:100], y_test=y[:100])
    sizes = []
    original = run_module.resize_images

    def counting(images, *a, **k):
        sizes.append(len(images))
        return original(images, *a, **k)

    monkeypatch.setattr(run_module, "resize_images", counting)
    args = Namespace(dataset=str(tmp_path / "d.npz"), data_dir=None, limit=30, val_split=0.0, seed=0, image_size=40)
    data = run_module.load_run_data(args)
    assert data.x_train.shape == (30, 1, 40, 40) and sizes == [30, 10]
