"""autograd.Value: every op's gradient against finite differences (and PyTorch when present)."""
import math

import pytest

from scalar.autograd import Value

UNARY = {
    "exp": (lambda v: v.exp(), math.exp),
    "log": (lambda v: v.log(), math.log),
    "tanh": (lambda v: v.tanh(), math.tanh),
    "sigmoid": (lambda v: v.sigmoid(), lambda x: 1 / (1 + math.exp(-x))),
    "relu": (lambda v: v.relu(), lambda x: max(x, 0.0)),
    "neg": (lambda v: -v, lambda x: -x),
    "pow3": (lambda v: v ** 3, lambda x: x ** 3),
    "pow-half": (lambda v: v ** -0.5, lambda x: x ** -0.5),
    "rdiv": (lambda v: 2.0 / v, lambda x: 2.0 / x),
    "rsub": (lambda v: 1.0 - v, lambda x: 1.0 - x),
}


@pytest.mark.parametrize("op", list(UNARY))
@pytest.mark.parametrize("x", [0.3, 1.7])
def test_unary_ops(op, x):
    fv, fx = UNARY[op]
    v = Value(x)
    out = fv(v)
    out.backward()
    h = 1e-6
    assert out.data == pytest.approx(fx(x), rel=1e-12)
    assert v.grad == pytest.approx((fx(x + h) - fx(x - h)) / (2 * h), rel=1e-6)


def test_binary_ops_and_a_reused_node():
    a, b = Value(-1.5), Value(0.8)
    c = a * b + b / a - (a - b) ** 2    # a and b are each used several times
    c.backward()
    # d/da = b - b/a^2 - 2(a-b);  d/db = a + 1/a + 2(a-b)
    assert c.data == pytest.approx(-1.5 * 0.8 + 0.8 / -1.5 - 2.3 ** 2)
    assert a.grad == pytest.approx(0.8 - 0.8 / 2.25 - 2 * (-2.3))
    assert b.grad == pytest.approx(-1.5 + 1 / -1.5 + 2 * (-2.3))


def _graph():
    x, w = Value(0.7), Value(-1.3)
    h = (x * w).tanh()
    y = h * h + h.exp()                 # h is an interior node used twice
    return x, w, y


def test_backward_twice_after_zeroing_gives_the_same_gradients():
    x, w, y = _graph()
    y.backward()
    first = (x.grad, w.grad)
    x.grad = w.grad = 0.0               # zero the leaves only, as an optimizer would
    y.backward()
    assert (x.grad, w.grad) == first


def test_leaves_accumulate_without_zeroing():
    x, w, y = _graph()
    y.backward()
    g = x.grad
    y.backward()
    assert x.grad == pytest.approx(2 * g)


def test_matches_pytorch():
    torch = pytest.importorskip("torch")
    x, w, y = _graph()
    y.backward()
    tx = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(-1.3, dtype=torch.float64, requires_grad=True)
    th = torch.tanh(tx * tw)
    ty = th * th + torch.exp(th)
    ty.backward()
    assert y.data == pytest.approx(ty.item(), abs=1e-14)
    assert (x.grad, w.grad) == pytest.approx((tx.grad.item(), tw.grad.item()), abs=1e-14)
