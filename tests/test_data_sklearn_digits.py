"""The sklearn-digits dataset: scikit-learn's bundled scans, resized to 28x28, split the same everywhere."""
import builtins
import importlib.util

import numpy as np
import pytest

from common.data import load_dataset
from common.data.sklearn_digits import stratified_split, to_uint8_images
from common.errors import DataError

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="scikit-learn is not installed (pip install 'nnott[digits]')")


def test_resize_keeps_range_and_shape():
    img = np.zeros((2, 8, 8))
    img[0, 2:6, 3:5] = 16                                      # a bright bar, two pixels wide
    out = to_uint8_images(img, 28)
    assert out.shape == (2, 1, 28, 28) and out.dtype == np.uint8
    assert out[0].max() >= 250 and out[1].max() == 0            # bilinear: the centre stays bright
    assert to_uint8_images(img, 8)[0, 0, 2, 3] == 255          # size 8: only rescaled


def test_stratified_split_is_disjoint_balanced_and_seeded():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    train, test = stratified_split(labels, 0.2, seed=3)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 100
    assert np.bincount(labels[test]).tolist() == [2, 4, 6, 8]
    again = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])


@needs_sklearn
def test_loads_through_the_registry():
    ds = load_dataset("digits")                                # alias of sklearn-digits
    assert ds.name == "sklearn-digits" and ds.image_shape == (1, 28, 28) and ds.num_classes == 10
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert np.bincount(ds.y_test, minlength=10).min() >= 35    # every class in the test split
    again = load_dataset("sklearn-digits")
    assert np.array_equal(ds.x_test, again.x_test) and np.array_equal(ds.y_train, again.y_train)


def test_missing_scikit_learn_is_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(DataError, match=r"pip install 'nnott\[digits\]'"):
        load_dataset("sklearn-digits")
