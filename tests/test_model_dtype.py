"""A model's dtype is set once (astype): inputs are cast to it, and loading says when it rounds."""
import warnings

import numpy as np
import pytest

import convolutional as C
from vectorized.module import Sequential


def model(dtype=np.float32):
    return Sequential(C.Conv2D(2, 3, 3, padding=1), C.ReLU(), C.Flatten(), C.Linear(3 * 4 * 4, 2)).astype(dtype)


@pytest.mark.parametrize("model_dtype, input_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_a_floating_input_of_another_dtype_is_cast_to_the_models(model_dtype, input_dtype):
    m = model(model_dtype)
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 2))
    y = m(x.astype(input_dtype))
    assert y.dtype == model_dtype
    np.testing.assert_array_equal(y, m(x.astype(input_dtype).astype(model_dtype)))
    assert m.backward(np.ones_like(y)).dtype == model_dtype


def test_loading_float64_into_float32_warns_once_in_one_line_and_converts():
    source = model(np.float64)
    target = model(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target.load_state_dict(source.state_dict())
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert messages[0].startswith("load_state_dict: 4 float64 tensors rounded to the model's float32")
    assert all(p.data.dtype == np.float32 for p in target.parameters())
    np.testing.assert_array_equal(target.state_dict()["0.weight"],
                                  source.state_dict()["0.weight"].astype(np.float32))


def test_loading_without_rounding_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(np.float64).load_state_dict(model(np.float32).state_dict())   # widening loses nothing
        model(np.float32).load_state_dict(model(np.float32).state_dict())
