"""synth-digits: shapes, determinism, balance, seeds, caching, and that it is learnable."""
import numpy as np
import pytest

from common.data import load_dataset
from common.data.baseline import softmax_regression_accuracy
from common.data.glyphs import glyph_bank
from common.data.synth_digits import generate


@pytest.fixture(scope="module")
def small():
    return generate(2000, seed=0, split="train"), generate(500, seed=0, split="test")


def test_glyph_bank_covers_every_digit_in_several_fonts():
    bank, digits = glyph_bank()
    assert bank.ndim == 3 and bank.dtype == np.float32
    counts = np.bincount(digits, minlength=10)
    assert counts.min() == counts.max() >= 20  # at least 10 fonts x 2 weights per digit
    assert np.all(np.diff(digits) >= 0)


def test_shapes_dtypes_and_balance(small):
    (x, y), (xt, yt) = small
    assert x.shape == (2000, 1, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64 and xt.shape == (500, 1, 28, 28)
    assert np.bincount(y, minlength=10).tolist() == [200] * 10
    assert np.bincount(yt, minlength=10).tolist() == [50] * 10
    # ink in the middle, mostly dark background, like MNIST
    assert x[:, :, 10:18, 10:18].mean() > 3 * x[:, :, :3, :].mean()


def test_deterministic_and_seed_dependent(small):
    (x, y), _ = small
    x2, y2 = generate(2000, seed=0, split="train")
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = generate(2000, seed=1, split="train")
    assert np.mean(x != x3) > 0.3
    xt, _ = generate(2000, seed=0, split="test")
    assert np.mean(x != xt) > 0.3  # train and test are different draws


def test_rgb_variant():
    x, y = generate(300, seed=0, rgb=True)
    assert x.shape == (300, 3, 32, 32) and x.dtype == np.uint8
    # colour: the channels differ from each other
    assert np.abs(x[:, 0].astype(int) - x[:, 1].astype(int)).mean() > 10


def test_load_dataset_caches_the_arrays(tmp_path):
    ds = load_dataset("synth-digits", tmp_path, synth_sizes=(100, 30), progress=False)
    assert ds.source.endswith(".npz") and ds.num_classes == 10 and not ds.fell_back
    cached = load_dataset("synth-digits", tmp_path, synth_sizes=(100, 30), progress=False)
    np.testing.assert_array_equal(ds.x_train, cached.x_train)
    assert len(list((tmp_path / "synth-digits").glob("*.npz"))) == 1


def test_softmax_regression_learns_above_chance(small):
    (x, y), (xt, yt) = small
    acc = softmax_regression_accuracy(x, y, xt, yt, epochs=5)
    assert acc > 0.5  # chance is 0.1


def test_identity_warp_reads_the_template_back():
    from common.data.warp import bilinear_sample, source_points

    bank, _ = glyph_bank()
    side = bank.shape[1]
    eye = np.repeat(np.eye(2, dtype=np.float32)[None], 3, axis=0)
    points = source_points(eye, np.zeros((3, 2), np.float32), side)
    out = bilinear_sample(bank, np.array([0, 5, 7]), points)
    np.testing.assert_allclose(out, bank[[0, 5, 7]], atol=1e-5)
    # a shift by one pixel (2/side in normalised units) moves the image by one pixel
    shifted = bilinear_sample(bank, np.array([5]), source_points(eye[:1], np.array([[0, 2 / side]], np.float32), side))
    np.testing.assert_allclose(shifted[0, :, 1:], bank[5, :, :-1], atol=1e-5)
