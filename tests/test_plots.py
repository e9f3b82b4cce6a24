"""Every plot writes a non-empty PNG under a temporary folder, headless (Agg)."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from common import plots  # noqa: E402
from common.augment import demo_batches  # noqa: E402
from common.errors import UserError  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert not matplotlib.pyplot.get_fignums()   # the figure was closed


def images(n=12, c=1, dtype=np.uint8):
    x = np.random.default_rng(0).random((n, c, 8, 8))
    return (x * 255).astype(np.uint8) if dtype == np.uint8 else x.astype(dtype)


HISTORY = {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.7, 0.5], "acc": [0.5, 0.7, 0.8],
           "val_acc": [0.45, 0.65, 0.75], "lr": [0.1, 0.05, 0.01]}


def test_history_and_comparisons(tmp_path):
    assert_png(plots.plot_history(HISTORY, tmp_path / "new" / "dir" / "history.png"))
    assert_png(plots.plot_history({"loss": [1.0, 0.5]}, tmp_path / "loss_only.png"))
    assert_png(plots.plot_histories({"sgd": HISTORY, "adam": HISTORY}, tmp_path / "cmp.png"))
    with pytest.raises(UserError):
        plots.plot_histories({"sgd": {"loss": [1.0]}}, tmp_path / "x.png", metric="val_acc")
    with pytest.raises(UserError):
        plots.plot_history({"epoch_time": [1.0]}, tmp_path / "x.png")


def test_lr_schedule(tmp_path):
    steps = np.arange(50)
    assert_png(plots.plot_lr_schedule(list(0.1 * 0.95 ** steps), tmp_path / "lr.png"))
    assert_png(plots.plot_lr_schedule({"step": list(0.1 * 0.5 ** (steps // 20)),
                                       "cosine": list(0.05 * (1 + np.cos(np.pi * steps / 50)))},
                                      tmp_path / "lrs.png"))


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_matrix(tmp_path, normalize):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 4]])
    assert_png(plots.plot_confusion_matrix(cm, tmp_path / "cm.png", ["a", "b", "c"], normalize=normalize))


@pytest.mark.parametrize("channels,dtype", [(1, np.uint8), (3, np.uint8), (1, np.float32), (3, np.float32)])
def test_samples_and_misclassified(tmp_path, channels, dtype):
    x = images(c=channels, dtype=dtype)
    y = np.arange(12) % 10
    assert_png(plots.plot_samples(x, y, tmp_path / "samples.png", ncols=5))
    pred = y.copy()
    pred[::3] = (pred[::3] + 1) % 10
    assert_png(plots.plot_misclassified(x, y, pred, tmp_path / "wrong.png", class_names=list("ABCDEFGHIJ")))
    assert_png(plots.plot_misclassified(x, y, y, tmp_path / "none_wrong.png"))


def test_normalized_float_images_are_rescaled():
    shown = plots.to_display(np.array([[[-2.0, 0.0], [1.0, 3.0]]]))
    assert shown.min() == 0 and shown.max() == 1
    with pytest.raises(UserError):
        plots.to_display(np.zeros((2, 4, 4)))


@pytest.mark.parametrize("in_channels", [1, 3, 16])
def test_filters(tmp_path, in_channels):
    w = np.random.default_rng(0).standard_normal((20, in_channels, 5, 5))
    assert_png(plots.plot_filters(w, tmp_path / "filters.png", max_filters=16))


def test_augmentations(tmp_path):
    x = images(n=3, dtype=np.float32)
    assert_png(plots.plot_augmentations(demo_batches(x), tmp_path / "aug.png"))


def test_show_is_harmless_without_a_display(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert_png(plots.plot_history(HISTORY, tmp_path / "h.png", show=True))
    plots.wait_for_windows()   # returns at once
