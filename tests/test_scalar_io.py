"""Checkpoint round trip, exact resume, and scalar <-> vectorized export."""
import numpy as np
import pytest

from common.errors import CheckpointError, UserError
from parity import convert
from scalar import io
from scalar.network import Network
from scalar.optimizers import SGD, Adam
from scalar.trainer import Trainer


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)), rng.integers(0, 3, n)


def _trainer(seed=0, opt=Adam):
    net = Network(5, 3, (6, 4), ["relu", "tanh"], [0.3, 0.0], seed=seed)
    return Trainer(net, opt(net, 0.01), seed=seed, progress=False)


@pytest.mark.parametrize("opt", [Adam, lambda n, lr: SGD(n, lr, momentum=0.9)])
def test_resume_from_a_checkpoint_continues_exactly(tmp_path, opt):
    x, y = _data()
    straight = _trainer(opt=opt)
    straight.fit(x, y, epochs=4, batch_size=8, log=None)

    first = _trainer(opt=opt)
    first.fit(x, y, epochs=2, batch_size=8, log=None)
    path = io.save(tmp_path / "run.h5", first, config={"dataset": "toy"})
    resumed = _trainer(seed=99, opt=opt)                     # different seeds: everything must come from the file
    ckpt = io.load(path)
    io.restore(resumed, ckpt)
    assert (resumed.epoch, resumed.step, ckpt.config["dataset"]) == (2, 6, "toy")
    resumed.fit(x, y, epochs=4, batch_size=8, log=None)
    assert resumed.network.state_dict() == straight.network.state_dict()   # bitwise, dropout included
    assert resumed.history["loss"] == straight.history["loss"]


def test_network_from_checkpoint_and_mismatch_messages(tmp_path):
    t = _trainer()
    path = io.save(tmp_path / "a.h5", t)
    net = io.network_from_checkpoint(io.load(path))
    assert net.state_dict() == t.network.state_dict() and net.config["dropouts"] == [0.3, 0.0]
    other = Network(5, 3, (7, 4), ["relu", "tanh"], [0.3, 0.0], seed=0)
    with pytest.raises(CheckpointError, match=r"0.weight \(6, 5\) vs \(7, 5\)"):
        io.load_weights(other, io.load(path))
    with pytest.raises(CheckpointError, match="activations"):
        io.load_weights(Network(5, 3, (6, 4), "relu", [0.3, 0.0], seed=0), io.load(path))


def test_export_to_vectorized_and_back_gives_identical_outputs():
    net = Network(5, 3, (6, 4), ["leaky_relu", "sigmoid"], [0.2, 0.0], seed=4)
    model = convert.to_vectorized(net)
    x, _ = _data(7)
    net.eval(), model.eval()
    np.testing.assert_allclose(np.array([net.forward(r) for r in x.tolist()]), model(x), rtol=0, atol=1e-12)
    assert list(model.state_dict()) == list(net.state_dict())
    back = convert.from_vectorized(model)
    assert back.state_dict() == net.state_dict() and back.config["dropouts"] == [0.2, 0.0]
    assert back.config["activations"] == ["leaky_relu", "sigmoid"]


def test_from_vectorized_refuses_what_the_scalar_tier_lacks():
    from vectorized.mlp import build_mlp
    with pytest.raises(UserError, match="BatchNorm1d"):
        convert.from_vectorized(build_mlp(4, 2, (3,), batchnorm=True))
    with pytest.raises(UserError, match="slope"):
        convert.from_vectorized(build_mlp(4, 2, (3,), ["leaky_relu"], leaky_slope=0.2))


def test_vectorized_weights_load_into_the_scalar_tier(tmp_path):
    from common.checkpoint import Checkpoint, save_checkpoint
    from vectorized.mlp import build_mlp
    model = build_mlp(5, 3, (6,), ["tanh"])
    ckpt = Checkpoint(model_state=model.state_dict(), optimizer_state={}, scheduler_state={}, epoch=1, step=1,
                      rng_state={}, history={}, config={"tier": "vectorized", "input_shape": [5], "num_classes": 3})
    net = Network(5, 3, (6,), "tanh")
    io.load_weights(net, io.load(save_checkpoint(tmp_path / "v.h5", ckpt)))
    assert net.state_dict()["0.weight"][0] == pytest.approx(model.state_dict()["0.weight"][0].tolist(), abs=0)
