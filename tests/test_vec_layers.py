"""Layers of tier 2: finite-difference gradients, PyTorch parity, BatchNorm and Dropout behaviour."""
import numpy as np
import pytest

from common.backend import to_numpy
from common.errors import UserError
from vectorized.gradcheck import check_module_gradients
from vectorized.init import INIT_NAMES, init_weight
from vectorized.layers import BatchNorm1d, Dropout, Flatten, Identity, Linear
from vectorized.module import Sequential


@pytest.mark.parametrize("shape", [(3, 5, 4), (7, 2, 6), (1, 4, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradients(shape, bias):
    n, i, o = shape
    layer = Linear(i, o, bias=bias)
    report = check_module_gradients(layer, np.random.default_rng(n).standard_normal((n, i)))
    assert report.ok, str(report)
    assert set(report.errors) == {"input", "weight"} | ({"bias"} if bias else set())


@pytest.mark.parametrize("n, c, affine", [(4, 3, True), (9, 5, True), (6, 2, False)])
def test_batchnorm_gradients_train_and_eval(n, c, affine):
    rng = np.random.default_rng(c)
    bn = BatchNorm1d(c, affine=affine)
    if affine:  # non-trivial gamma and beta
        bn.weight.data[...] = rng.uniform(0.5, 2.0, c)
        bn.bias.data[...] = rng.standard_normal(c)
    x = rng.standard_normal((n, c)) * 3 + 1
    assert check_module_gradients(bn, x).ok
    bn.eval()
    report = check_module_gradients(bn, x)
    assert report.ok, str(report)


def test_dropout_flatten_identity_gradients():
    rng = np.random.default_rng(0)
    assert check_module_gradients(Dropout(0.4), rng.standard_normal((5, 6))).ok
    assert check_module_gradients(Flatten(), rng.standard_normal((2, 3, 2, 2))).ok
    assert check_module_gradients(Identity(), rng.standard_normal((3, 4))).ok


def test_gradcheck_catches_a_wrong_backward():
    class Broken(Linear):
        def backward(self, grad_out):
            return 2 * super().backward(grad_out)

    report = check_module_gradients(Broken(3, 2), np.random.default_rng(0).standard_normal((4, 3)))
    assert not report.ok and "input" in report.failures() and report.errors["weight"] < 1e-6


def test_dropout_statistics_and_eval_identity():
    x = np.ones((400, 500), dtype=np.float32)
    drop = Dropout(0.3)
    y = drop(x)
    assert y.dtype == np.float32
    kept = (y != 0).mean()
    assert abs(kept - 0.7) < 0.01
    assert abs(y.mean() - 1.0) < 0.02  # inverted scaling preserves the mean
    assert np.allclose(y[y != 0], 1 / 0.7)
    drop.eval()
    assert drop(x) is x
    assert Dropout(0.0)(x) is x
    with pytest.raises(UserError):
        Dropout(1.0)


def test_flatten_shapes():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    f = Flatten()
    y = f(x)
    assert y.shape == (2, 60) and np.array_equal(y[1], x[1].ravel())
    assert f.backward(y).shape == x.shape


def test_linear_rejects_wrong_width():
    with pytest.raises(UserError, match="expected \\(..., 4\\)"):
        Linear(4, 2)(np.zeros((3, 5), dtype=np.float32))


@pytest.mark.parametrize("scheme, std", [("kaiming", np.sqrt(2 / 400)), ("he_uniform", np.sqrt(2 / 400)),
                                         ("xavier", np.sqrt(2 / 700)), ("glorot_uniform", np.sqrt(2 / 700)),
                                         ("lecun", np.sqrt(1 / 400)), ("normal", 0.01),
                                         ("uniform", 1 / np.sqrt(3 * 400))])
def test_init_schemes_have_their_std(scheme, std):
    w = init_weight((300, 400), scheme, 400, 300, np.random.default_rng(0))
    assert abs(w.std() / std - 1) < 0.02 and abs(w.mean()) < 3 * std / np.sqrt(w.size) * 3


def test_init_constant_zeros_and_unknown():
    assert np.all(init_weight((2, 3), "zeros", 3, 2) == 0)
    assert np.all(init_weight((2, 3), "constant", 3, 2, value=0.5) == 0.5)
    assert "kaiming_uniform" in INIT_NAMES
    with pytest.raises(UserError, match="kaiming"):
        Linear(3, 2, init="bogus")


# ------------------------------------------------------------------------------ PyTorch parity
def test_linear_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    ours = Linear(6, 4)
    ref = torch.nn.Linear(6, 4)
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((5, 6)).astype(np.float32)
    g = rng.standard_normal((5, 4)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    yt.backward(torch.tensor(g))
    assert np.allclose(ours(x), yt.detach().numpy(), atol=1e-6)
    assert np.allclose(ours.backward(g), xt.grad.numpy(), atol=1e-6)
    assert np.allclose(to_numpy(ours.weight.grad), ref.weight.grad.numpy(), atol=1e-5)
    assert np.allclose(to_numpy(ours.bias.grad), ref.bias.grad.numpy(), atol=1e-5)


def test_batchnorm_matches_torch_train_eval_and_running_stats():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    ours = BatchNorm1d(5, momentum=0.2)
    ref = torch.nn.BatchNorm1d(5, momentum=0.2)
    ours.weight.data[...] = rng.uniform(0.5, 1.5, 5).astype(np.float32)
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    for step in range(3):  # running statistics after several batches
        x = (rng.standard_normal((8, 5)) * 2 + step).astype(np.float32)
        g = rng.standard_normal((8, 5)).astype(np.float32)
        xt = torch.tensor(x, requires_grad=True)
        yt = ref(xt)
        yt.backward(torch.tensor(g))
        assert np.allclose(ours(x), yt.detach().numpy(), atol=1e-5)
        assert np.allclose(ours.backward(g), xt.grad.numpy(), atol=1e-5)
    for key, value in ref.state_dict().items():
        assert np.allclose(ours.state_dict()[key], value.numpy(), atol=1e-6), key
    assert np.allclose(to_numpy(ours.weight.grad), ref.weight.grad.numpy(), atol=1e-4)
    ours.eval(), ref.eval()
    x = rng.standard_normal((3, 5)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    yt.sum().backward()
    assert np.allclose(ours(x), yt.detach().numpy(), atol=1e-5)
    assert np.allclose(ours.backward(np.ones((3, 5), np.float32)), xt.grad.numpy(), atol=1e-5)
    with pytest.raises(UserError):
        ours.train()(np.zeros((1, 5), np.float32))


def test_dropout_and_flatten_match_torch_semantics():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    assert np.array_equal(Flatten()(x), torch.nn.Flatten()(torch.tensor(x)).numpy())
    drop = Dropout(0.25)
    y = drop(x)
    mask = y != 0
    assert np.allclose(y[mask], x[mask] / 0.75)  # torch scales survivors by 1/(1-p) too
    assert np.allclose(drop.backward(np.ones_like(x)), mask / 0.75)


def test_sequential_state_dict_loads_into_torch():
    torch = pytest.importorskip("torch")
    ours = Sequential(Linear(4, 3), BatchNorm1d(3), Linear(3, 2))
    ref = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})  # strict: same keys
    ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})


def test_a_layer_set_under_an_existing_name_keeps_its_place():
    """As in PyTorch: replacing a child (or a parameter) by name keeps the run and state order."""
    from vectorized.activations import ReLU

    seq = Sequential(Linear(3, 4), ReLU(), Linear(4, 2))
    names = list(seq.state_dict())
    replacement = Linear(3, 4)
    setattr(seq, "0", replacement)
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"] and seq[0] is replacement
    assert list(seq.state_dict()) == names
    seq[2].weight = type(seq[2].weight)(np.zeros((2, 4)))
    assert list(seq.state_dict()) == names
    assert seq(np.ones((2, 3))).shape == (2, 2)
