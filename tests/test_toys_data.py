"""The toy tasks (common.data.toys): shapes, seeds, class balance, geometry, and the run pipeline."""
from types import SimpleNamespace

import numpy as np
import pytest

from common.data import REGISTRY, load_dataset, load_run_data
from common.data.toys import TOY_NAMES, TOYS, make_toy, piecewise_target
from common.errors import UserError

CLASSIFIERS = [n for n in TOY_NAMES if TOYS[n].task == "classification"]
REGRESSORS = [n for n in TOY_NAMES if TOYS[n].task == "regression"]


def run_args(dataset, **kw):
    base = dict(dataset=dataset, data_dir=None, seed=3, limit=0, val_split=0.1, toy_size=None, toy_noise=None,
                toy_classes=None)
    return SimpleNamespace(**{**base, **kw})


def test_every_task_is_registered_offline():
    assert set(CLASSIFIERS) == {"rings", "blobs", "moons", "spirals", "xor"}
    assert set(REGRESSORS) == {"piecewise", "sine"}
    for name in TOY_NAMES:
        assert REGISTRY[name].kind == "toy"
        assert REGISTRY[name].image_shape == (TOYS[name].features, 1, 1)


@pytest.mark.parametrize("name", TOY_NAMES)
def test_shapes_dtypes_and_sizes(name):
    ds = load_dataset(name, seed=0, toy={"size": 300})
    d = TOYS[name].features
    assert ds.x_train.shape == (300, d, 1, 1) and ds.x_test.shape == (150, d, 1, 1)
    assert ds.x_train.dtype == np.float32 and ds.is_points
    assert ds.task == TOYS[name].task
    if ds.task == "regression":
        assert ds.y_train.dtype == np.float32 and ds.class_names == []
        assert "regression" in ds.describe()
    else:
        assert ds.y_train.dtype == np.int64
        assert set(np.unique(ds.y_train)) == set(range(ds.num_classes))
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.y_train).all()


@pytest.mark.parametrize("name", TOY_NAMES)
def test_same_seed_same_points_other_seed_other_points(name):
    a, b = load_dataset(name, seed=5), load_dataset(name, seed=5)
    c = load_dataset(name, seed=6)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_train[:len(a.x_test)], a.x_test)   # test is its own draw


@pytest.mark.parametrize("name, k", [("rings", 2), ("rings", 3), ("blobs", 3), ("blobs", 5), ("spirals", 2),
                                     ("spirals", 4), ("moons", None), ("xor", None)])
def test_classes_are_balanced_to_within_one(name, k):
    x, y = make_toy(name, 997, classes=k, seed=1)
    counts = np.bincount(y)
    assert len(counts) == (k or 2)
    assert counts.max() - counts.min() <= 1


def test_noise_free_geometry():
    x, y = make_toy("piecewise", 200, noise=0.0, seed=0)
    np.testing.assert_allclose(y, piecewise_target(x[:, 0]), rtol=1e-6)
    x, y = make_toy("sine", 200, noise=0.0, seed=0)
    np.testing.assert_allclose(y, np.sin(x[:, 0]), atol=1e-6)
    x, y = make_toy("xor", 400, noise=0.0, seed=0)
    np.testing.assert_array_equal(y, (np.sign(x[:, 0]) != np.sign(x[:, 1])).astype(int))
    x, y = make_toy("rings", 600, noise=0.0, classes=3, seed=0)
    r = np.hypot(x[:, 0], x[:, 1])
    for c in range(3):                                  # class c lies in its own band of radii
        lo, hi = (0.0, 0.6) if c == 0 else (c, c + 0.6)
        assert lo - 1e-6 <= r[y == c].min() and r[y == c].max() <= hi + 1e-6
    x, y = make_toy("blobs", 900, noise=0.0, classes=3, seed=0)
    assert all(len(np.unique(x[y == c].round(5), axis=0)) == 1 for c in range(3))  # every point on its centre


def test_noise_grows_the_spread():
    x1, y1 = make_toy("piecewise", 500, noise=0.3, seed=0)
    residual = y1 - piecewise_target(x1[:, 0])
    assert 0.25 < residual.std() < 0.35


@pytest.mark.parametrize("call, message", [
    (lambda: load_dataset("blobs", toy={"size": 5}), "at least 20"),
    (lambda: load_dataset("blobs", toy={"classes": 11}), "between 2 and 10"),
    (lambda: load_dataset("moons", toy={"classes": 3}), "always has 2"),
    (lambda: load_dataset("sine", toy={"classes": 3}), "regression"),
    (lambda: make_toy("moons", 10, noise=-1.0), ">= 0"),
])
def test_bad_options_are_one_line_user_errors(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_run_data_classification_is_stratified_and_standardized():
    data = load_run_data(run_args("spirals", toy_size=600))
    assert data.is_points and data.task == "classification" and data.num_classes == 3
    assert len(data.x_train) == 540 and len(data.x_val) == 60
    assert np.bincount(data.y_val).tolist() == [20, 20, 20]
    z = data.normalizer(data.x_train)          # per feature: mean 0, std 1 on the training split
    np.testing.assert_allclose(z.mean(axis=0).ravel(), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0).ravel(), 1, atol=1e-3)


def test_run_data_regression_keeps_float_targets():
    data = load_run_data(run_args("piecewise", toy_size=200, val_split=0.25))
    assert data.task == "regression" and data.y_train.dtype == np.float32
    assert len(data.y_train) == 150 and len(data.y_val) == 50 and len(data.y_test) == 100
    limited = load_run_data(run_args("sine", limit=100))
    assert len(limited.y_train) + len(limited.y_val) == 100 and len(limited.y_test) == 20


def test_toy_size_noise_and_classes_flow_from_the_flags():
    data = load_run_data(run_args("blobs", toy_size=100, toy_noise=0.0, toy_classes=4, val_split=0.0))
    assert data.num_classes == 4 and len(data.x_train) == 100
    assert len(np.unique(data.x_train.reshape(100, 2).round(4), axis=0)) == 4
