"""Splits, balanced subsets, Normalizer, batch iteration (with prefetch) and resizing."""
import numpy as np
import pytest
from PIL import Image

from common.data import (Normalizer, balanced_subset, iterate_batches, num_batches,
                         resize_images, train_val_split)
from common.errors import UserError


def _data(n=1000, seed=0, classes=10, shape=(1, 4, 4)):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    y = rng.integers(0, classes, n).astype(np.int64)
    return x, y


def test_split_is_stratified_disjoint_and_seeded():
    x, y = _data()
    x_tr, y_tr, x_val, y_val = train_val_split(x, y, 0.2, seed=1)
    assert len(y_val) == 200 and len(y_tr) == 800
    share_all = np.bincount(y, minlength=10) / len(y)
    share_val = np.bincount(y_val, minlength=10) / len(y_val)
    assert np.abs(share_all - share_val).max() < 0.01
    # disjoint and complete: every row lands in exactly one part
    rows = {r.tobytes() for r in np.concatenate([x_tr, x_val])}
    assert len(rows) == len({r.tobytes() for r in x})
    again = train_val_split(x, y, 0.2, seed=1)
    np.testing.assert_array_equal(again[3], y_val)
    other = train_val_split(x, y, 0.2, seed=2)
    assert not np.array_equal(other[2], x_val)


def test_split_zero_fraction_gives_empty_validation():
    x, y = _data(50)
    x_tr, y_tr, x_val, y_val = train_val_split(x, y, 0.0, seed=0)
    assert len(x_tr) == 50 and x_val.shape == (0, 1, 4, 4) and y_val.shape == (0,)
    with pytest.raises(UserError):
        train_val_split(x, y, 1.0, seed=0)


def test_balanced_subset():
    x, y = _data(1000)
    xs, ys = balanced_subset(x, y, 100, seed=0)
    assert len(ys) == 100 and np.bincount(ys, minlength=10).tolist() == [10] * 10
    xs2, _ = balanced_subset(x, y, 100, seed=0)
    np.testing.assert_array_equal(xs, xs2)
    # a rare class gives all it has; the others make up the difference
    y_rare = np.where(np.arange(1000) < 3, 9, np.arange(1000) % 9)
    _, yr = balanced_subset(x, y_rare, 50, seed=0)
    assert len(yr) == 50 and np.sum(yr == 9) == 3
    assert balanced_subset(x, y, 5000, seed=0)[1] is y


def test_normalizer_uses_only_the_training_split():
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 100, (200, 3, 5, 5), dtype=np.uint8)
    x_test = rng.integers(150, 256, (50, 3, 5, 5), dtype=np.uint8)
    norm = Normalizer.fit(x_train)
    scaled = x_train.astype(np.float64) / 255
    np.testing.assert_allclose(norm.mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(norm.std, scaled.std(axis=(0, 2, 3)), rtol=1e-4)
    z = norm(x_train)
    assert z.dtype == np.float32 and z.shape == x_train.shape
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-3)
    assert norm(x_test).mean() > 2  # test images are far from the training statistics: no leak
    np.testing.assert_allclose(norm(x_train / np.float32(255)), z, atol=1e-5)  # float = [0, 1]
    restored = Normalizer.from_state_dict(norm.state_dict())
    np.testing.assert_array_equal(restored(x_test), norm(x_test))
    np.testing.assert_array_equal(norm.inverse(z), x_train)


def test_normalizer_on_strict_device(strict_backend):
    from common.backend import to_device, to_numpy

    x, _ = _data(20, shape=(1, 4, 4))
    norm = Normalizer.fit(x)
    out = norm(to_device(x))
    np.testing.assert_allclose(to_numpy(out), norm(x), rtol=1e-6)


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_cover_each_sample_once(drop_last):
    x = np.arange(103)[:, None]
    y = np.arange(103)
    batches = list(iterate_batches(x, y, 10, rng=np.random.default_rng(0), drop_last=drop_last))
    assert len(batches) == num_batches(103, 10, drop_last) == (10 if drop_last else 11)
    seen = np.concatenate([yb for _, yb in batches])
    assert all(len(yb) == 10 for _, yb in batches[:10])
    if drop_last:
        assert len(seen) == 100 and len(set(seen)) == 100
    else:
        assert sorted(seen) == list(range(103))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], yb)  # x and y stay paired


def test_batches_reshuffle_each_epoch_and_keep_order_without_shuffle():
    x, y = np.arange(50)[:, None], np.arange(50)
    rng = np.random.default_rng(0)
    e1 = np.concatenate([yb for _, yb in iterate_batches(x, y, 8, rng=rng)])
    e2 = np.concatenate([yb for _, yb in iterate_batches(x, y, 8, rng=rng)])
    assert not np.array_equal(e1, e2)
    plain = np.concatenate([yb for _, yb in iterate_batches(x, y, 8, shuffle=False)])
    assert plain.tolist() == list(range(50))


def test_prefetch_gives_the_same_batches_and_runs_the_transform():
    x, y = _data(97)
    plain = list(iterate_batches(x, y, 16, rng=np.random.default_rng(3)))
    fetched = list(iterate_batches(x, y, 16, rng=np.random.default_rng(3), prefetch=2))
    assert len(plain) == len(fetched)
    for (a, b), (c, d) in zip(plain, fetched):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    norm = Normalizer.fit(x)
    transformed = list(iterate_batches(x, y, 16, rng=np.random.default_rng(3), prefetch=2,
                                       transform=lambda xb, yb: (norm(xb), yb)))
    np.testing.assert_array_equal(transformed[0][0], norm(plain[0][0]))


def test_prefetch_stops_early_and_reraises_errors():
    x, y = _data(100)
    it = iterate_batches(x, y, 10, prefetch=3, rng=np.random.default_rng(0))
    next(it)
    it.close()  # the consumer leaves after one batch: the worker must stop, not hang

    def boom(xb, yb):
        raise RuntimeError("transform failed")

    with pytest.raises(RuntimeError, match="transform failed"):
        list(iterate_batches(x, y, 10, prefetch=2, transform=boom))


def test_resize_matches_pillow_and_converts_channels():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    up = resize_images(x, (32, 32))
    assert up.shape == (4, 1, 32, 32) and up.dtype == np.uint8
    for size in ((32, 32), (14, 14)):
        ours = resize_images(x, size)[0, 0].astype(int)
        pil = np.asarray(Image.fromarray(x[0, 0]).resize(size[::-1], Image.Resampling.BILINEAR)).astype(int)
        assert np.abs(ours - pil).max() <= 2
    rgb = resize_images(x, (28, 28), channels=3)
    assert rgb.shape == (4, 3, 28, 28) and np.array_equal(rgb[:, 2], x[:, 0])
    gray = resize_images(rgb, (28, 28), channels=1)
    assert np.abs(gray.astype(int) - x.astype(int)).max() <= 1
    flat = np.full((2, 3, 8, 8), 77, dtype=np.uint8)
    assert np.all(resize_images(flat, (5, 11)) == 77)
