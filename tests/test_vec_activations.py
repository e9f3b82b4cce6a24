"""Activations: finite-difference gradients, PyTorch parity, float32 stability, lookup by name."""
import math
import warnings

import numpy as np
import pytest

from common.errors import UserError
from vectorized.activations import (ACTIVATION_NAMES, ELU, GELU, LeakyReLU, ReLU, ReLU6, SiLU, Sigmoid, Softmax,
                                    Tanh, erf, get_activation)
from vectorized.gradcheck import check_module_gradients
from vectorized.layers import Identity

MODULES = {
    "relu": ReLU, "leaky_relu": lambda: LeakyReLU(0.2), "elu": lambda: ELU(0.7), "sigmoid": Sigmoid,
    "tanh": Tanh, "gelu": GELU, "gelu_tanh": lambda: GELU("tanh"), "silu": SiLU, "relu6": ReLU6,
    "softmax": Softmax, "softmax0": lambda: Softmax(axis=0),
}


def away_from_kinks(shape, seed):
    """Random inputs in [-8, 8] at least 0.01 from the kinks 0 and 6."""
    x = np.random.default_rng(seed).uniform(-8, 8, shape)
    for kink in (0.0, 6.0):
        near = np.abs(x - kink) < 0.01
        x[near] += 0.05
    return x


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 3)])
def test_activation_gradients(name, shape):
    report = check_module_gradients(MODULES[name](), away_from_kinks(shape, len(name)))
    assert report.ok, f"{name}\n{report}"


def torch_twin(torch, name):
    F = torch.nn.functional
    return {
        "relu": F.relu, "leaky_relu": lambda x: F.leaky_relu(x, 0.2), "elu": lambda x: F.elu(x, 0.7),
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "gelu": F.gelu,
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu, "relu6": F.relu6,
        "softmax": lambda x: F.softmax(x, dim=-1), "softmax0": lambda x: F.softmax(x, dim=0),
    }[name]


@pytest.mark.parametrize("name", MODULES)
def test_activation_matches_torch(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = away_from_kinks((6, 7), 3).astype(np.float32)
    g = rng.standard_normal((6, 7)).astype(np.float32)
    ours = MODULES[name]()
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_twin(torch, name)(xt)
    yt.backward(torch.tensor(g))
    y = ours(x)
    assert y.dtype == np.float32
    assert np.allclose(y, yt.detach().numpy(), atol=2e-6, rtol=1e-5)
    assert np.allclose(ours.backward(g), xt.grad.numpy(), atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("name", MODULES)
def test_no_overflow_on_extreme_float32(name):
    x = np.array([[-1e4, -100.0, -88.8, -20.0, 0.0, 20.0, 88.8, 100.0, 1e4]], dtype=np.float32)
    module = MODULES[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = module(x)
        g = module.backward(np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(g)) and y.dtype == np.float32


def test_saturating_values():
    x = np.array([-1e4, 1e4], dtype=np.float32)
    assert np.array_equal(Sigmoid()(x), [0.0, 1.0])
    assert np.allclose(GELU()(x), [0.0, 1e4])
    assert np.allclose(SiLU()(x), [0.0, 1e4])
    s = Softmax()(np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32))
    assert np.allclose(s, [[1, 0, 0]])


def test_erf_accuracy():
    x = np.linspace(-5, 5, 2001)
    assert np.max(np.abs(erf(x) - np.array([math.erf(v) for v in x]))) < 2e-7


def test_get_activation_by_name():
    assert set(ACTIVATION_NAMES) >= {"relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "gelu_tanh",
                                     "silu", "relu6", "linear", "identity"}
    for name in ACTIVATION_NAMES:
        assert get_activation(name) is not get_activation(name)  # a fresh module each time
    assert get_activation("leaky_relu", negative_slope=0.3).negative_slope == 0.3
    assert get_activation("elu", alpha=2.0, negative_slope=0.3).alpha == 2.0
    assert isinstance(get_activation("Linear"), Identity)
    assert get_activation("gelu_tanh").approximate == "tanh"
    with pytest.raises(UserError, match="relu"):
        get_activation("swishy")
    with pytest.raises(UserError):
        GELU("fast")


@pytest.mark.parametrize("block", [7, 2**16])
def test_gelu_float32_blocks_match_float64(block, monkeypatch):
    """The float32 GELU runs in cache-sized blocks on every core; any block size (here a ragged
    7) gives the float64 values and slope to float32 precision."""
    from engine import tuning
    monkeypatch.setattr(tuning, "GELU_BLOCK", block)
    x64 = np.random.default_rng(5).standard_normal((3, 5, 4, 6)) * 4
    ref, ref_module = GELU()(x64), GELU()
    ref_module(x64)
    ref_slope = ref_module.backward(np.ones_like(x64))
    module = GELU()
    y = module(x64.astype(np.float32))
    slope = module.backward(np.ones(x64.shape, dtype=np.float32))
    assert y.dtype == slope.dtype == np.float32 and y.shape == x64.shape
    np.testing.assert_allclose(y, ref, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(slope, ref_slope, rtol=2e-6, atol=1e-6)


def test_evaluation_mode_forward_leaves_work_for_backward_only():
    """In evaluation mode the float32 GELU skips its slope (and uses a shorter fit), BatchNorm2D applies the running
    statistics as one scale and shift, and ReLU6 runs in blocks: a backward pass afterwards
    still gives the training-mode formulas' gradients."""
    import convolutional as C

    rng = np.random.default_rng(9)
    x = (rng.standard_normal((4, 6, 5, 8)) * 3).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    gelu = GELU().eval()
    y = gelu(x)
    assert gelu.slope is None
    np.testing.assert_allclose(y, GELU()(x), rtol=0, atol=1e-6)  # its own erfc fit (engine.activations)
    trained = GELU()
    trained(x)
    np.testing.assert_array_equal(gelu.backward(g), trained.backward(g))
    relu6 = ReLU6()
    np.testing.assert_array_equal(relu6(x), np.clip(x, 0, 6))
    np.testing.assert_array_equal(relu6.backward(g), g * ((x > 0) & (x < 6)))
    bn = C.BatchNorm2D(8).eval()
    bn.running_mean[...] = rng.standard_normal(8)
    bn.running_var[...] = rng.uniform(0.5, 2, 8)
    bn.weight.data[...] = rng.uniform(0.5, 2, 8)
    bn.bias.data[...] = rng.standard_normal(8)
    scale = bn.weight.data / np.sqrt(bn.running_var + bn.eps)
    x_hat = (x - bn.running_mean) / np.sqrt(bn.running_var + bn.eps)
    np.testing.assert_allclose(bn(x), x_hat * bn.weight.data + bn.bias.data, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.backward(g), g * scale, rtol=1e-6)
    np.testing.assert_allclose(bn.weight.grad, (g * x_hat).sum(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)
