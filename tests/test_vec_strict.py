"""The strict-device backend (CuPy's rules on the CPU): a whole training step must never mix
host and device arrays."""
import numpy as np
import pytest

from common.backend import StrictArray, to_device, to_float, to_numpy
from vectorized.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from vectorized.mlp import build_mlp
from vectorized.optim import Lookahead, clip_grad_norm, make_optimizer, OPTIMIZER_NAMES
from vectorized.regularizers import l1_penalty, l2_penalty, weights
from vectorized.schedules import make_schedule


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_training_step_under_strict_backend(strict_backend, optimizer):
    rng = np.random.default_rng(0)
    model = build_mlp(12, 4, [16, 8], ["gelu", "leaky_relu"], [0.3, 0.1], batchnorm=True)
    assert isinstance(model[0].weight.data, StrictArray)
    opt = Lookahead(make_optimizer(optimizer, model.parameters(), 0.01, weight_decay=1e-4), k=2)
    schedule = make_schedule("cosine", opt, epochs=3, steps_per_epoch=2, per="step", warmup_epochs=1)
    loss = CrossEntropyLoss(label_smoothing=0.1)
    x = to_device(rng.standard_normal((8, 12)), dtype=np.float32)
    y = to_device(rng.integers(0, 4, 8))
    before = model.state_dict()
    for _ in range(3):
        opt.zero_grad()
        value = loss(model(x), y)
        assert isinstance(value, StrictArray) and value.ndim == 0
        grad_in = model.backward(loss.backward())
        assert isinstance(grad_in, StrictArray) and grad_in.shape == (8, 12)
        value = value + l2_penalty(weights(model), 1e-4) + l1_penalty(weights(model), 1e-5)
        norm = clip_grad_norm(model.parameters(), 1.0)
        assert isinstance(norm, StrictArray)
        opt.step()
        schedule.step()
    assert np.isfinite(to_float(value))
    after = model.state_dict()
    assert not np.array_equal(before["0.weight"], after["0.weight"])
    assert not np.array_equal(before["1.running_mean"], after["1.running_mean"])
    opt.load_state_dict(opt.state_dict())
    model.eval()
    assert to_numpy(model(x)).shape == (8, 4)


def test_other_losses_and_soft_targets_under_strict(strict_backend):
    rng = np.random.default_rng(1)
    z = to_device(rng.standard_normal((5, 3)), dtype=np.float32)
    q = to_device(rng.dirichlet(np.ones(3), 5), dtype=np.float32)
    for loss in (CrossEntropyLoss(), MSELoss(), BCEWithLogitsLoss()):
        value = loss(z, q)
        assert isinstance(value, StrictArray) and isinstance(loss.backward(), StrictArray)


def test_strict_backend_refuses_host_labels(strict_backend):
    z = to_device(np.zeros((2, 3)), dtype=np.float32)
    with pytest.raises(TypeError, match="strict device backend"):
        CrossEntropyLoss()(z, np.array([0, 1]))  # labels must be moved to the device first
