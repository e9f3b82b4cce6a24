"""Invariants of common.augment: shapes, zero fill, identities, soft targets, determinism."""
import json

import numpy as np
import pytest

from common import augment as A
from common.augment import AugmentConfig, Augmenter
from common.errors import UserError


def batch(n=16, c=1, h=12, w=10, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


EVERYTHING = AugmentConfig(max_shift=2, rotate_prob=1.0, hflip_prob=0.5, vflip_prob=0.5, noise_prob=1.0,
                           cutout_prob=0.5, cutout_size=3, cutmix_prob=0.5, mixup_prob=0.5, randaug_layers=2)


@pytest.mark.parametrize("channels", [1, 3])
def test_augmenter_keeps_shape_dtype_and_range(channels):
    x, y = batch(c=channels), np.arange(16) % 4
    x_aug, targets = Augmenter(EVERYTHING, seed=1)(x, y, num_classes=4)
    assert x_aug.shape == x.shape and x_aug.dtype == np.float32
    assert 0.0 <= x_aug.min() and x_aug.max() <= 1.0
    assert targets.shape == (16, 4) and targets.dtype == np.float32
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    assert (targets.max(axis=1) < 1).any()  # some labels really were mixed


def test_no_label_mixing_returns_labels_unchanged():
    y = np.arange(16) % 4
    _, targets = Augmenter(AugmentConfig(), seed=0)(batch(), y, num_classes=4)
    assert targets is y


def test_shift_zero_fills_border_of_the_shift_width():
    ones = np.ones((2, 1, 8, 8), np.float32)
    out = A.shift(ones, dy=np.array([2, -1]), dx=np.array([-3, 0]))
    assert (out[0, 0, :2] == 0).all() and (out[0, 0, :, -3:] == 0).all()   # down 2, left 3
    assert out[0, 0, 2:, :-3].all()
    assert (out[1, 0, -1:] == 0).all() and out[1, 0, :-1].all()           # up 1
    assert out.sum() == (8 - 2) * (8 - 3) + (8 - 1) * 8                    # nothing wrapped around


def test_shift_moves_content():
    x = batch(n=1)
    out = A.shift(x, np.array([1]), np.array([2]))
    np.testing.assert_array_equal(out[0, :, 1:, 2:], x[0, :, :-1, :-2])


def test_random_shift_border_width_is_bounded_by_max_shift():
    out = A.random_shift(np.random.default_rng(0), np.ones((64, 1, 9, 9), np.float32), 2)
    assert out[:, :, 2:-2, 2:-2].all()   # the centre is always covered
    assert (out == 0).any()


def test_rotation_by_zero_is_identity_and_by_90_matches_rot90():
    x = batch(n=3, h=7, w=7)
    np.testing.assert_array_equal(A.rotate(x, np.zeros(3)), x)
    np.testing.assert_allclose(A.rotate(x, np.full(3, 90.0)), np.rot90(x, axes=(2, 3)), atol=1e-6)


def test_rotation_zero_fills_corners():
    out = A.rotate(np.ones((1, 1, 9, 9), np.float32), np.array([45.0]))
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 4, 4] == pytest.approx(1.0)


def test_flips_are_involutions_and_mirror():
    x, rng = batch(), np.random.default_rng(0)
    h = A.random_flip(rng, x, 1.0, 0.0)
    np.testing.assert_array_equal(h, x[..., ::-1])
    np.testing.assert_array_equal(A.random_flip(rng, h, 1.0, 0.0), x)
    v = A.random_flip(rng, x, 0.0, 1.0)
    np.testing.assert_array_equal(A.random_flip(rng, v, 0.0, 1.0), x)
    np.testing.assert_array_equal(A.random_flip(rng, x, 0.0, 0.0), x)


def test_noise_is_clipped_and_respects_probability():
    x = batch(n=200)
    out = A.gaussian_noise(np.random.default_rng(0), x, 0.5, 0.5)
    assert out.min() >= 0 and out.max() <= 1
    changed = (out != x).any(axis=(1, 2, 3)).mean()
    assert 0.3 < changed < 0.7


def test_cutout_zeroes_a_square_of_exact_size():
    out = A.cutout(np.random.default_rng(0), np.ones((50, 2, 10, 10), np.float32), 4, 1.0)
    assert ((out == 0).sum(axis=(2, 3)) == 16).all()
    rows = (out[:, 0] == 0).any(axis=2).sum(axis=1)
    assert (rows == 4).all()
    with pytest.raises(UserError):
        A.cutout(np.random.default_rng(0), np.ones((1, 1, 3, 3), np.float32), 4, 1.0)


def test_cutmix_targets_match_pasted_area():
    x = np.stack([np.full((1, 8, 8), i, np.float32) for i in range(6)]) / 10   # image i is constant i/10
    y = np.arange(6)
    x_out, t = A.cutmix(np.random.default_rng(3), x, A.one_hot(y, 6), 1.0, 1.0)
    partner = np.random.default_rng(3).permutation(6)   # the op's first draw
    own_share = (x_out[:, 0] == x[:, 0]).mean(axis=(1, 2))
    partner_share = (x_out[:, 0] == x[partner, 0]).mean(axis=(1, 2))
    moved = partner != y
    np.testing.assert_allclose(t[y, y][moved], own_share[moved], atol=1e-6)
    np.testing.assert_allclose(t[y, partner][moved], partner_share[moved], atol=1e-6)
    np.testing.assert_allclose(t.sum(1), 1, atol=1e-6)
    assert (own_share[moved] < 1).any()


def test_mixup_is_a_convex_blend():
    rng = np.random.default_rng(0)
    x, y = batch(n=8), np.arange(8)
    x_out, t = A.mixup(rng, x, A.one_hot(y, 8), 1.0, 0.4)
    np.testing.assert_allclose(t.sum(1), 1, atol=1e-6)
    lam = t[y, y]
    partner = np.random.default_rng(0).permutation(8)   # the op's first draw
    np.testing.assert_allclose(t[y, partner][partner != y], 1 - lam[partner != y], atol=1e-6)
    expected = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[partner]
    np.testing.assert_allclose(x_out, expected, atol=1e-5)


@pytest.mark.parametrize("name", sorted(A.RAND_AUGMENT_OPS))
def test_each_rand_augment_op_keeps_shape_and_range(name):
    x = batch(n=4, c=3)
    out = A.RAND_AUGMENT_OPS[name](np.random.default_rng(0), x, 0.8)
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


def test_rand_augment_magnitude_zero_keeps_images_close():
    x = batch(n=32)
    out = A.rand_augment(np.random.default_rng(0), x, 2, 0.0)
    assert out.shape == x.shape
    changed = A.rand_augment(np.random.default_rng(0), x, 2, 0.9)
    assert np.abs(changed - x).mean() > np.abs(out - x).mean()


def test_determinism_and_resume():
    x, y = batch(), np.arange(16) % 4
    a, b = Augmenter(EVERYTHING, seed=7), Augmenter(EVERYTHING, seed=7)
    xa, ta = a(x, y, 4)
    xb, tb = b(x, y, 4)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ta, tb)
    other, _ = Augmenter(EVERYTHING, seed=8)(x, y, 4)
    assert not np.array_equal(xa, other)
    state = json.loads(json.dumps(a.state_dict()))   # survives a text round trip
    first, _ = a(x, y, 4)
    b.load_state_dict(state)
    again, _ = b(x, y, 4)
    np.testing.assert_array_equal(first, again)


def test_input_is_not_modified():
    x = batch()
    keep = x.copy()
    Augmenter(EVERYTHING, seed=0)(x, np.arange(16) % 4, 4)
    np.testing.assert_array_equal(x, keep)


def test_augmenter_rejects_uint8_and_bad_labels():
    aug = Augmenter(AugmentConfig(), seed=0)
    with pytest.raises(UserError):
        aug(np.zeros((2, 1, 4, 4), np.uint8), np.zeros(2, np.int64), 10)
    with pytest.raises(UserError):
        aug(batch(n=2), np.zeros(3, np.int64), 10)


@pytest.mark.parametrize("bad", [dict(rotate_prob=1.5), dict(hflip_prob=-0.1), dict(max_shift=-1),
                                 dict(cutout_size=-2), dict(noise_std=-0.1), dict(mixup_alpha=0.0),
                                 dict(randaug_magnitude=2.0), dict(max_shift=1.5), dict(randaug_layers=-1)])
def test_validate_rejects_out_of_range(bad):
    with pytest.raises(UserError):
        AugmentConfig(**bad).validate()
    with pytest.raises(UserError):
        Augmenter(AugmentConfig(**bad))


def test_for_dataset_defaults_and_overrides():
    for digits in ("mnist", "synth-digits", "synth-digits-rgb"):
        cfg = AugmentConfig.for_dataset(digits)
        assert cfg.hflip_prob == 0 and cfg.vflip_prob == 0
    for other in ("cifar10", "fashion-mnist", "/data/my_photos", "old_npy_folder"):   # flips only when asked
        assert AugmentConfig.for_dataset(other).hflip_prob == 0
    assert AugmentConfig.for_dataset("cifar10", hflip_prob=0.5).hflip_prob == 0.5
    cfg = AugmentConfig.for_dataset("mnist", max_shift=None, cutout_prob=0.5)
    assert cfg.max_shift == AugmentConfig().max_shift and cfg.cutout_prob == 0.5
    with pytest.raises(UserError):
        AugmentConfig.for_dataset("mnist", rotate_prob=3.0)
    with pytest.raises(UserError):
        AugmentConfig.for_dataset("mnist", not_a_setting=1)


def test_demo_batches_has_every_op():
    rows = A.demo_batches(batch(n=3, h=28, w=28))
    assert len(rows) >= 9 and all(v.shape == (3, 1, 28, 28) for v in rows.values())
