"""build_mlp: layer order, init choice, validation, gradients of the whole network, and that it learns."""
import numpy as np
import pytest

from common.errors import UserError
from vectorized.activations import GELU, LeakyReLU, ReLU, Tanh
from vectorized.gradcheck import check_module_gradients
from vectorized.layers import BatchNorm1d, Dropout, Linear
from vectorized.losses import CrossEntropyLoss
from vectorized.mlp import build_mlp
from vectorized.optim import Adam


def test_layer_order_and_parameter_count():
    model = build_mlp(784, 10, [256, 128, 64], ["relu"], [0.2])
    assert model.num_parameters() == 242_762  # the previous NNOTT's default MLP
    kinds = [type(m) for m in model]
    assert kinds == [Linear, ReLU, Dropout] * 3 + [Linear]
    bn = build_mlp(784, 10, [256, 128, 64], ["relu"], [0.0], batchnorm=True, bn_momentum=0.05)
    assert [type(m) for m in bn][:3] == [Linear, BatchNorm1d, ReLU] and len(bn) == 10
    assert bn[1].momentum == 0.05 and bn.num_parameters() == 242_762 + 2 * (256 + 128 + 64)


def test_per_layer_activations_dropout_and_auto_init():
    model = build_mlp(20, 3, [30, 30], ["tanh", "leaky_relu"], [0.0, 0.5], leaky_slope=0.2)
    assert [type(m) for m in model] == [Linear, Tanh, Linear, LeakyReLU, Dropout, Linear]
    assert model[3].negative_slope == 0.2
    assert model[0].init == "xavier_normal" and model[2].init == "kaiming_normal"
    assert build_mlp(4, 2, [5], ["gelu"], [0], init="lecun")[0].init == "lecun_normal"
    assert isinstance(build_mlp(4, 2, [5], ["gelu"], [0])[1], GELU)
    assert len(build_mlp(4, 2, [], ["relu"], [0.1])) == 1  # logistic regression


@pytest.mark.parametrize("kwargs, match", [
    (dict(activations=["relu", "tanh", "relu"]), "activations"),
    (dict(dropout=[0.1, 0.2, 0.3]), "dropout"),
    (dict(activations=["swishy"]), "unknown activation"),
    (dict(init="orthogonal"), "init scheme"),
])
def test_bad_settings_raise_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match):
        build_mlp(4, 2, [5, 5], **kwargs)


def test_whole_network_gradients():
    model = build_mlp(5, 3, [6, 4], ["silu", "elu"], [0.2, 0.0], batchnorm=True)
    report = check_module_gradients(model, np.random.default_rng(0).standard_normal((7, 5)))
    assert report.ok, str(report)
    assert model[0].weight.data.dtype == np.float32  # cast back after the check


def test_mlp_overfits_random_labels():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 20)).astype(np.float32)
    y = rng.integers(0, 5, 128)
    model = build_mlp(20, 5, [64, 64], ["relu"], [0.0], batchnorm=True)
    opt, loss = Adam(model.parameters(), 1e-2), CrossEntropyLoss()
    for _ in range(150):
        opt.zero_grad()
        loss(model(x), y)
        model.backward(loss.backward())
        opt.step()
    model.eval()
    assert (model(x).argmax(axis=1) == y).mean() == 1.0
