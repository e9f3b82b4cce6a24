"""Network construction, state dicts, dropout, and the Trainer on a problem it must learn."""
import random

import numpy as np
import pytest

from common.errors import UserError
from scalar.layer import DropoutLayer
from scalar.network import Network
from scalar.optimizers import SGD, Adam
from scalar.trainer import Trainer


def test_state_dict_names_follow_the_vectorized_sequential():
    with_dropout = Network(4, 3, (5, 2), ["relu", "tanh"], [0.5, 0.0], seed=0)
    assert list(with_dropout.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias",
                                               "5.weight", "5.bias"]
    assert with_dropout.state_shapes()["0.weight"] == (5, 4)
    assert with_dropout.num_parameters() == (4 + 1) * 5 + (5 + 1) * 2 + (2 + 1) * 3


def test_load_state_dict_accepts_arrays_and_reports_every_mismatch():
    a, b = Network(4, 3, (5,), "relu", seed=1), Network(4, 3, (5,), "relu", seed=2)
    b.load_state_dict({k: np.array(v) for k, v in a.state_dict().items()})
    x = [0.1, -0.2, 0.3, 0.4]
    assert b.forward(x) == a.forward(x)
    bad = a.state_dict()
    bad["0.weight"] = [[0.0] * 3] * 5
    del bad["2.bias"]
    with pytest.raises(UserError, match=r"missing 2.bias.*0.weight has shape \(5, 3\)"):
        b.load_state_dict(bad)


@pytest.mark.parametrize("kwargs, message", [
    (dict(activations=["relu", "tanh", "relu"]), "hidden activations: got 3 values for 2"),
    (dict(activations="swish"), "unknown activation"),
    (dict(dropouts=[0.1, 0.2, 0.3]), "hidden dropout: got 3"),
    (dict(dropouts=1.0), "dropout probability"),
])
def test_bad_configurations_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        Network(4, 2, (3, 3), **kwargs)


def test_inverted_dropout_keeps_the_mean_and_is_off_in_eval():
    layer = DropoutLayer(0.25, random.Random(0))
    out = layer.forward([1.0] * 20000)
    assert sum(out) / len(out) == pytest.approx(1.0, abs=0.03)
    assert set(out) == {0.0, 1 / 0.75}
    assert layer.backward([1.0] * 20000) == out          # same mask on the way back
    layer.training = False
    assert layer.forward([2.0, 3.0]) == [2.0, 3.0]


def _blobs(n, seed):
    rng = random.Random(seed)
    centers = [(-1.0, -1.0), (1.0, -1.0), (0.0, 1.2)]
    y = [rng.randrange(3) for _ in range(n)]
    x = [[centers[k][0] + rng.gauss(0, 0.35), centers[k][1] + rng.gauss(0, 0.35)] for k in y]
    return x, y


@pytest.mark.parametrize("make_opt", [lambda n: Adam(n, 0.05), lambda n: SGD(n, 0.2, momentum=0.9)])
def test_trainer_learns_three_blobs(make_opt):
    x, y = _blobs(240, 0)
    xv, yv = _blobs(90, 1)
    net = Network(2, 3, (8,), "tanh", 0.0, seed=0)
    trainer = Trainer(net, make_opt(net), progress=False)
    history = trainer.fit(x, y, epochs=6, batch_size=16, val=(xv, yv), log=None)
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_acc"][-1] > 0.9
    assert trainer.step == 6 * 15 and trainer.epoch == 6
    assert trainer.evaluate(xv, yv)["acc"] == history["val_acc"][-1]


def test_batch_gradient_is_the_mean_of_the_per_sample_gradients():
    x, y = _blobs(4, 2)
    net = Network(2, 3, (3,), "relu", 0.0, seed=3)
    per_sample = []
    for xi, yi in zip(x, y):
        net.zero_grad()
        from scalar.losses import cross_entropy
        net.backward(cross_entropy(net.forward(xi), yi)[1])
        per_sample.append(net.grad_dict()["0.bias"])
    captured = {}

    class Spy:                                       # records the gradient the optimizer is given
        def zero_grad(self): net.zero_grad()
        def step(self): captured.update(net.grad_dict())
    Trainer(net, Spy(), progress=False).train_batch(x, y)
    mean = [sum(col) / 4 for col in zip(*per_sample)]
    assert captured["0.bias"] == pytest.approx(mean, abs=1e-15)


def test_early_stopping_restores_the_best_weights():
    x, y = _blobs(60, 0)
    net = Network(2, 3, (4,), "relu", 0.0, seed=0)
    trainer = Trainer(net, SGD(net, 5.0), progress=False)       # a learning rate that diverges
    seen = []
    trainer.fit(x, y, epochs=30, batch_size=60, val=(x, y), early_stopping=2,
                on_epoch_end=lambda t: seen.append(t.network.state_dict()), log=None)
    losses = trainer.history["val_loss"]
    assert len(losses) < 30
    best = min(range(len(losses)), key=losses.__getitem__)
    assert net.state_dict() == seen[best]
