"""Losses and regularizers: finite-difference gradients, PyTorch parity, stability, device-resident values."""
import warnings

import numpy as np
import pytest

from common.errors import UserError
from vectorized.gradcheck import check_loss_gradients, numerical_gradient, relative_error
from vectorized.layers import Linear
from vectorized.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from vectorized.regularizers import l1_penalty, l2_penalty, weights

rng = np.random.default_rng(0)


def soft_targets(n, k, seed=0):
    q = np.random.default_rng(seed).uniform(0.1, 1, (n, k))
    return q / q.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("n, k", [(4, 3), (7, 10), (1, 2)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradients(n, k, smoothing, reduction):
    z = rng.standard_normal((n, k)) * 3
    loss = CrossEntropyLoss(smoothing, reduction)
    assert check_loss_gradients(loss, z, rng.integers(0, k, n)).ok
    assert check_loss_gradients(loss, z, soft_targets(n, k)).ok


@pytest.mark.parametrize("loss", [MSELoss(), MSELoss("sum"), BCEWithLogitsLoss(), BCEWithLogitsLoss("sum")])
def test_mse_bce_gradients(loss):
    z = rng.standard_normal((5, 3)) * 2
    t = rng.uniform(0, 1, (5, 3))
    report = check_loss_gradients(loss, z, t)
    assert report.ok, str(report)


def test_cross_entropy_value_is_a_device_array_and_mean_divides_by_n():
    z = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.integers(0, 4, 8)
    mean = CrossEntropyLoss()(z, y)
    assert isinstance(mean, np.ndarray) and mean.ndim == 0 and mean.dtype == np.float32
    summed = CrossEntropyLoss(reduction="sum")
    assert np.isclose(summed(z, y), 8 * mean)
    assert np.allclose(summed.backward(), 8 * _grad(z, y))


def _grad(z, y):
    loss = CrossEntropyLoss()
    loss(z, y)
    return loss.backward()


def test_cross_entropy_stable_on_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]], dtype=np.float32)
    loss = CrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = loss(z, np.array([2, 0]))
        grad = loss.backward()
    assert np.isfinite(value) and np.isclose(value, (2e4 + np.log(3)) / 2, rtol=1e-5)
    assert np.all(np.isfinite(grad))


def test_one_hot_soft_targets_equal_class_indices():
    z = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    a, b = CrossEntropyLoss(0.2), CrossEntropyLoss(0.2)
    assert np.isclose(a(z, y), b(z, np.eye(5)[y]))
    assert np.allclose(a.backward(), b.backward())


def test_loss_shape_errors():
    with pytest.raises(UserError):
        CrossEntropyLoss()(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(UserError):
        CrossEntropyLoss()(np.zeros((3, 4)), np.zeros(3))  # float class indices
    with pytest.raises(UserError):
        MSELoss()(np.zeros((3, 4)), np.zeros((3,)))
    with pytest.raises(UserError):
        CrossEntropyLoss(reduction="avg")


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy_matches_torch(smoothing):
    torch = pytest.importorskip("torch")
    z = (rng.standard_normal((9, 6)) * 4).astype(np.float32)
    for targets in (rng.integers(0, 6, 9), soft_targets(9, 6).astype(np.float32)):
        for reduction in ("mean", "sum"):
            ours = CrossEntropyLoss(smoothing, reduction)
            zt = torch.tensor(z, requires_grad=True)
            ref = torch.nn.CrossEntropyLoss(label_smoothing=smoothing, reduction=reduction)(zt, torch.tensor(targets))
            ref.backward()
            assert np.isclose(ours(z, targets), ref.item(), rtol=1e-5)
            assert np.allclose(ours.backward(), zt.grad.numpy(), atol=1e-6)


@pytest.mark.parametrize("cls, name", [(MSELoss, "MSELoss"), (BCEWithLogitsLoss, "BCEWithLogitsLoss")])
def test_mse_bce_match_torch(cls, name):
    torch = pytest.importorskip("torch")
    z = (rng.standard_normal((4, 7)) * 5).astype(np.float32)
    t = rng.uniform(0, 1, (4, 7)).astype(np.float32)
    for reduction in ("mean", "sum"):
        ours = cls(reduction)
        zt = torch.tensor(z, requires_grad=True)
        ref = getattr(torch.nn, name)(reduction=reduction)(zt, torch.tensor(t))
        ref.backward()
        assert np.isclose(ours(z, t), ref.item(), rtol=1e-5)
        assert np.allclose(ours.backward(), zt.grad.numpy(), atol=1e-6)


@pytest.mark.parametrize("penalty", [l1_penalty, l2_penalty])
def test_penalty_gradient_is_its_derivative(penalty):
    layer = Linear(4, 3).astype(np.float64)
    params = weights(layer)
    assert params == [layer.weight]
    layer.zero_grad()
    value = penalty(params, 0.3)
    w = layer.weight.data
    numeric = numerical_gradient(lambda _: penalty([_Frozen(w)], 0.3), w)
    assert relative_error(layer.weight.grad, numeric) < 1e-6
    expected = 0.3 * np.abs(w).sum() if penalty is l1_penalty else 0.15 * (w * w).sum()
    assert np.isclose(value, expected)


class _Frozen:
    """A parameter stand-in whose gradient is thrown away (for the numerical derivative)."""

    def __init__(self, data):
        self.data, self.grad = data, np.zeros_like(data)


def test_l2_penalty_gradient_equals_sgd_weight_decay():
    from vectorized.optim import SGD

    a, b = Linear(3, 2), Linear(3, 2)
    b.load_state_dict(a.state_dict())
    for layer in (a, b):
        layer.zero_grad()
        layer.backward(layer(np.ones((2, 3), np.float32)))
    l2_penalty(a.parameters(), 0.1)
    SGD(a.parameters(), 0.5).step()
    SGD(b.parameters(), 0.5, weight_decay=0.1).step()
    assert np.allclose(a.weight.data, b.weight.data, atol=1e-7)
