"""Finite-difference gradient checks (float64) of every PyTorch option added to the layers and losses."""
import numpy as np
import pytest

import convolutional as C
from vectorized import activations as A
from vectorized import losses as L
from vectorized.gradcheck import check_loss_gradients, check_module_gradients
from vectorized.layers import BatchNorm1d

rng = np.random.default_rng(27)

LAYERS = [
    ("maxpool-dilated-ceil", lambda: C.MaxPool2D(3, 2, 1, dilation=2, ceil_mode=True), (2, 8, 7, 2)),
    ("avgpool-ceil-no-pad-count", lambda: C.AvgPool2D(3, 2, 1, ceil_mode=True, count_include_pad=False),
     (2, 6, 7, 2)),
    ("conv-reflect", lambda: C.Conv2D(2, 3, 3, padding=2, padding_mode="reflect"), (2, 5, 6, 2)),
    ("conv-replicate-stride", lambda: C.Conv2D(2, 3, 3, stride=2, padding=(1, 2), padding_mode="replicate"),
     (1, 5, 6, 2)),
    ("conv-circular-grouped", lambda: C.Conv2D(4, 2, 2, padding=1, groups=2, padding_mode="circular"),
     (2, 4, 5, 4)),
    ("conv-four-pads", lambda: C.Conv2D(2, 3, 3, padding=(0, 2, 1, 0)), (2, 5, 5, 2)),
    ("batchnorm2d-cumulative-no-affine", lambda: C.BatchNorm2D(3, momentum=None, affine=False), (3, 2, 2, 3)),
    ("batchnorm2d-batch-stats-only", lambda: C.BatchNorm2D(3, track_running_stats=False), (3, 2, 2, 3)),
    ("batchnorm1d-ncl", lambda: BatchNorm1d(3), (4, 3, 5)),
    ("linear-leading-dims", lambda: C.Linear(4, 3), (2, 3, 4)),
    ("softplus", lambda: A.Softplus(2.0, 3.0), (4, 7)),
    ("mish", lambda: A.Mish(), (4, 7)),
    ("hardswish", lambda: A.Hardswish(), (4, 7)),
    ("hardsigmoid", lambda: A.Hardsigmoid(), (4, 7)),
    ("prelu-per-channel", lambda: A.PReLU(3, 0.1), (2, 4, 4, 3)),
    ("prelu-shared", lambda: A.PReLU(), (4, 7)),
    ("logsoftmax", lambda: A.LogSoftmax(1), (4, 5, 2)),
]


@pytest.mark.parametrize("name, build, shape", LAYERS, ids=[c[0] for c in LAYERS])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_layer_gradients(name, build, shape, training):
    layer = build()
    layer.train(training)
    x = rng.standard_normal(shape) * 2
    report = check_module_gradients(layer, x)
    assert report.ok, str(report)


class Weighted:
    """sum(G * loss(z, t)) for a reduction='none' loss: backward is loss.backward(G)."""

    def __init__(self, loss, g):
        self.loss, self.g = loss, g

    def __call__(self, z, t):
        return (self.loss(z, t) * self.g).sum()

    def backward(self):
        return self.loss.backward(self.g)


def _labels(shape, k, ignore):
    y = rng.integers(0, k, shape)
    y[rng.random(shape) < 0.3] = ignore
    return y


LOSSES = [
    ("ce-weight-ignore", lambda r: L.CrossEntropyLoss(reduction=r, weight=[0.5, 2.0, 1.0, 1.5], ignore_index=1),
     (6, 4), lambda: _labels(6, 4, 1)),
    ("ce-smoothing-weight-spatial", lambda r: L.CrossEntropyLoss(0.2, r, weight=[0.5, 2.0, 1.0]), (2, 3, 2, 3),
     lambda: _labels((2, 2, 3), 3, -100)),
    ("ce-soft-weight", lambda r: L.CrossEntropyLoss(0.1, r, weight=[0.5, 2.0, 1.0]), (4, 3),
     lambda: rng.dirichlet(np.ones(3), 4)),
    ("mse", lambda r: L.MSELoss(r), (3, 4), lambda: rng.standard_normal((3, 4))),
    ("l1", lambda r: L.L1Loss(r), (3, 4), lambda: rng.standard_normal((3, 4))),
    ("huber", lambda r: L.HuberLoss(r, delta=0.7), (3, 4), lambda: rng.standard_normal((3, 4))),
    ("bce-pos-weight", lambda r: L.BCEWithLogitsLoss(r, weight=[1.0, 0.5, 2.0, 1.0], pos_weight=[2.0, 1.0, 0.5, 3.0]),
     (3, 4), lambda: rng.random((3, 4))),
]


@pytest.mark.parametrize("name, build, shape, targets", LOSSES, ids=[c[0] for c in LOSSES])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_gradients(name, build, shape, targets, reduction):
    z = rng.standard_normal(shape) * 2
    t = targets()
    loss = build(reduction)
    if reduction == "none":
        loss = Weighted(loss, rng.standard_normal(loss(z, t).shape))
    report = check_loss_gradients(loss, z, t)
    assert report.ok, str(report)
