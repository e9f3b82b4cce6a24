"""Every hand-written scalar gradient against central finite differences and against autograd.py."""
import math
import random

import pytest

from scalar import activations as A
from scalar.autograd import Value, activate, network_gradients
from scalar.autograd import cross_entropy as value_cross_entropy
from scalar.losses import cross_entropy, mse
from scalar.network import Network

H = 1e-6
POINTS = [-3.1, -1.2, -0.4, -1e-3, 2e-3, 0.3, 0.9, 2.7]


def numeric(f, x, h=H):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("name", list(A.ACTIVATIONS))
def test_activation_derivative_matches_finite_differences_and_autograd(name):
    act = A.get_activation(name)
    for z in POINTS:
        assert act.df(z) == pytest.approx(numeric(act.f, z), abs=1e-7), (name, z)
        v = Value(z)
        out = activate(v, name)
        out.backward()
        assert out.data == pytest.approx(act.f(z), abs=1e-12)
        assert v.grad == pytest.approx(act.df(z), abs=1e-12), (name, z)


def test_gelu_is_exact_erf_form_and_sigmoid_does_not_overflow():
    assert A.gelu(1.0) == pytest.approx(0.8413447460685429)        # 1 * Phi(1), not the tanh approximation
    assert A.sigmoid(-800.0) == 0.0 and A.sigmoid(800.0) == 1.0


def test_unknown_activation_is_a_user_error():
    from common.errors import UserError
    with pytest.raises(UserError, match="unknown activation 'swish'"):
        A.get_activation("swish")


def _loss_check(loss_fn, target):
    rng = random.Random(3)
    logits = [rng.uniform(-2, 2) for _ in range(5)]
    _, grad = loss_fn(logits, target)
    for k in range(5):
        def f(v, k=k):
            z = list(logits)
            z[k] = v
            return loss_fn(z, target)[0]
        assert grad[k] == pytest.approx(numeric(f, logits[k]), abs=1e-8)
    return logits, grad


@pytest.mark.parametrize("target", [2, [0.1, 0.2, 0.4, 0.2, 0.1]])
def test_cross_entropy_gradient(target):
    logits, grad = _loss_check(cross_entropy, target)
    if isinstance(target, int):
        vs = [Value(z) for z in logits]
        loss = value_cross_entropy(vs, target)
        loss.backward()
        assert loss.data == pytest.approx(cross_entropy(logits, target)[0], abs=1e-12)
        assert [v.grad for v in vs] == pytest.approx(grad, abs=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    loss, grad = cross_entropy([1000.0, 0.0, -1000.0], 0)
    assert loss == pytest.approx(0.0) and all(math.isfinite(g) for g in grad)


def test_mse_gradient_against_finite_differences_and_autograd():
    logits, grad = _loss_check(mse, 1)
    vs = [Value(z) for z in logits]
    t = [1.0 if k == 1 else 0.0 for k in range(5)]
    loss = sum(((v - tk) ** 2 for v, tk in zip(vs, t)), Value(0.0)) / 5
    loss.backward()
    assert [v.grad for v in vs] == pytest.approx(grad, abs=1e-12)


def _all_params(net):
    for layer in net.dense_layers():
        for n in layer.neurons:
            yield n


@pytest.mark.parametrize("acts", [["relu", "gelu"], ["tanh", "sigmoid"], ["leaky_relu", "linear"]])
def test_whole_network_gradients_against_finite_differences_and_autograd(acts):
    rng = random.Random(7)
    net = Network(5, 3, (4, 3), acts, 0.0, seed=11)
    for n in _all_params(net):                       # non-zero biases exercise the bias path
        n.b = rng.uniform(-0.3, 0.3)
    x, label = [rng.uniform(-1, 1) for _ in range(5)], 2
    net.zero_grad()
    net.backward(cross_entropy(net.forward(x), label)[1])
    grads = net.grad_dict()

    def loss_at():
        return cross_entropy(net.forward(x), label)[0]
    # finite differences on every weight and bias
    for name, layer in net.named_layers():
        for j, n in enumerate(layer.neurons):
            for i in range(len(n.w)):
                w0 = n.w[i]
                n.w[i] = w0 + H; up = loss_at()
                n.w[i] = w0 - H; down = loss_at()
                n.w[i] = w0
                assert grads[f"{name}.weight"][j][i] == pytest.approx((up - down) / (2 * H), abs=1e-7)
            b0 = n.b
            n.b = b0 + H; up = loss_at()
            n.b = b0 - H; down = loss_at()
            n.b = b0
            assert grads[f"{name}.bias"][j] == pytest.approx((up - down) / (2 * H), abs=1e-7)
    # autograd re-derives the same numbers to rounding
    loss, auto = network_gradients(net, x, label)
    assert loss == pytest.approx(loss_at(), abs=1e-12)
    for k in grads:
        flat = lambda v: [a for row in v for a in (row if isinstance(row, list) else [row])]
        assert flat(grads[k]) == pytest.approx(flat(auto[k]), abs=1e-12), k
