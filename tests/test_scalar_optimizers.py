"""Scalar SGD/Adam follow PyTorch's update rules (same gradients in, same parameters out)."""
import random

import pytest

from common.errors import UserError
from scalar.network import Network
from scalar.optimizers import SGD, Adam, make_optimizer

try:
    import torch
except ImportError:  # the PyTorch comparisons skip; the other tests here need no PyTorch
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs PyTorch (pip install torch)")


def _run(make_scalar, make_torch, steps=4):
    net = Network(3, 2, (), "relu", 0.0, seed=5)       # one linear layer: 2 neurons x (3 weights + bias)
    neurons = net.neurons()
    w = torch.tensor([n.w for n in neurons], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([n.b for n in neurons], dtype=torch.float64, requires_grad=True)
    opt_s, opt_t = make_scalar(net), make_torch([w, b])
    rng = random.Random(0)
    for _ in range(steps):
        grads = [[rng.uniform(-1, 1) for _ in range(4)] for _ in neurons]
        for n, g in zip(neurons, grads):
            n.grad_w, n.grad_b = g[:3], g[3]
        w.grad = torch.tensor([g[:3] for g in grads], dtype=torch.float64)
        b.grad = torch.tensor([g[3] for g in grads], dtype=torch.float64)
        opt_s.step()
        opt_t.step()
        assert [v for n in neurons for v in n.w] == pytest.approx(w.detach().flatten().tolist(), abs=1e-14)
        assert [n.b for n in neurons] == pytest.approx(b.detach().tolist(), abs=1e-14)
    return opt_s


@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                dict(momentum=0.5, weight_decay=0.1)])
@needs_torch
def test_sgd_matches_torch(kw):
    _run(lambda net: SGD(net, lr=0.1, **kw), lambda p: torch.optim.SGD(p, lr=0.1, **kw))


@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=0.05)])
@needs_torch
def test_adam_matches_torch(kw):
    _run(lambda net: Adam(net, lr=0.01, **kw), lambda p: torch.optim.Adam(p, lr=0.01, **kw))


def test_state_dict_round_trip_continues_identically():
    net = Network(3, 2, (4,), "tanh", 0.0, seed=1)
    twin = Network(3, 2, (4,), "tanh", 0.0, seed=1)
    a, b = Adam(net, 0.01), Adam(twin, 0.01)
    for n in net.neurons():
        n.grad_w, n.grad_b = [0.3] * len(n.w), -0.2
    a.step()
    twin.load_state_dict(net.state_dict())
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    for opt, network in ((a, net), (b, twin)):
        for n in network.neurons():
            n.grad_w, n.grad_b = [0.1] * len(n.w), 0.4
        opt.step()
    assert net.state_dict() == twin.state_dict()


def test_bad_optimizer_settings_are_user_errors():
    net = Network(2, 2, (), "relu")
    with pytest.raises(UserError):
        make_optimizer("rmsprop", net, 0.1)
    with pytest.raises(UserError):
        SGD(net, lr=-1.0)
    with pytest.raises(UserError):
        SGD(net, lr=0.1, nesterov=True)
