"""Regression mode: MSE/MAE/Huber gradients and PyTorch parity, R^2, and the RegressionTrainer."""
from types import SimpleNamespace

import numpy as np
import pytest

from common.data import load_run_data
from common.errors import UserError
from common.metrics import r2_score
from vectorized.gradcheck import check_loss_gradients
from vectorized.losses import HuberLoss, L1Loss, MSELoss, make_regression_loss

rng = np.random.default_rng(7)


def away_from_kinks(shape, kinks=(0.0,), gap=0.05, seed=0):
    """Differences y - t whose distance to every kink is at least ``gap`` (finite differences
    straddling a kink legitimately disagree with the one-sided derivative)."""
    r = np.random.default_rng(seed)
    d = r.uniform(-3, 3, shape)
    for k in kinks:
        for s in (k, -k):
            close = np.abs(d - s) < gap
            d[close] = s + np.sign(d[close] - s + 1e-12) * gap
    return d


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("make, kinks", [(MSELoss, ()), (L1Loss, (0.0,)),
                                         (lambda r: HuberLoss(r, delta=1.0), (1.0,)),
                                         (lambda r: HuberLoss(r, delta=0.3), (0.3,))])
def test_regression_loss_gradients_float64(make, kinks, reduction):
    t = rng.standard_normal((6, 1))
    y = t + away_from_kinks((6, 1), kinks, seed=3)
    report = check_loss_gradients(make(reduction), y, t)
    assert report.ok, str(report)


def test_huber_is_squared_near_and_absolute_far():
    loss = HuberLoss(delta=1.0, reduction="sum")
    y, t = np.array([[0.5], [3.0], [-2.0]]), np.zeros((3, 1))
    assert float(loss(y, t)) == pytest.approx(0.5 * 0.25 + (3.0 - 0.5) + (2.0 - 0.5))
    np.testing.assert_allclose(loss.backward(), [[0.5], [1.0], [-1.0]])
    assert float(L1Loss()(y, t)) == pytest.approx((0.5 + 3.0 + 2.0) / 3)


@pytest.mark.parametrize("ours, name, kwargs", [(MSELoss, "MSELoss", {}), (L1Loss, "L1Loss", {}),
                                                (HuberLoss, "HuberLoss", {"delta": 0.7})])
def test_regression_losses_match_torch(ours, name, kwargs):
    torch = pytest.importorskip("torch")
    y = (rng.standard_normal((12, 1)) * 2).astype(np.float32)
    t = rng.standard_normal((12, 1)).astype(np.float32)
    for reduction in ("mean", "sum"):
        loss = ours(reduction=reduction, **kwargs)
        yt = torch.tensor(y, requires_grad=True)
        ref = getattr(torch.nn, name)(reduction=reduction, **kwargs)(yt, torch.tensor(t))
        ref.backward()
        assert np.isclose(float(loss(y, t)), ref.item(), rtol=1e-5)
        np.testing.assert_allclose(loss.backward(), yt.grad.numpy(), atol=1e-6)


def test_loss_factory_and_bad_input():
    assert isinstance(make_regression_loss("mse"), MSELoss)
    assert isinstance(make_regression_loss("mae"), L1Loss)
    assert make_regression_loss("huber", 0.2).delta == 0.2
    with pytest.raises(UserError, match="unknown regression loss"):
        make_regression_loss("hinge")
    with pytest.raises(UserError, match="positive"):
        HuberLoss(delta=0.0)
    with pytest.raises(UserError, match="differ in shape"):
        L1Loss()(np.zeros((3, 1)), np.zeros(3))


def test_r2_score():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.full(4, y.mean())) == pytest.approx(0.0)
    pred = np.array([1.5, 2.0, 2.5, 4.5])
    ss_res, ss_tot = 0.25 + 0 + 0.25 + 0.25, 5.0
    assert r2_score(y, pred) == pytest.approx(1 - ss_res / ss_tot)
    assert r2_score(y, -y) < 0                    # worse than the mean
    with pytest.raises(UserError):
        r2_score(y, y[:3])


def _trainer(dataset, loss="mse", epochs=40, hidden=(16,), activation="relu", lr=0.01, seed=0):
    from common.seed import seed_everything
    from vectorized.mlp import build_mlp
    from vectorized.optim import make_optimizer
    from vectorized.regression import RegressionTrainer

    seed_everything(seed)
    data = load_run_data(SimpleNamespace(dataset=dataset, data_dir=None, seed=seed, limit=0, val_split=0.1,
                                         toy_size=600, toy_noise=None, toy_classes=None))
    model = build_mlp(1, 1, list(hidden), [activation])
    trainer = RegressionTrainer(model, make_regression_loss(loss), make_optimizer("adam", model.parameters(), lr),
                                normalizer=data.normalizer, num_classes=1, flatten_input=True, progress=False,
                                seed=seed)
    trainer.fit((data.x_train, data.y_train), (data.x_val, data.y_val), epochs=epochs, batch_size=32)
    return trainer, data


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_regression_trainer_fits_the_piecewise_target(loss, capsys):
    trainer, data = _trainer("piecewise", loss=loss, epochs=30)
    history = trainer.history
    assert {"loss", "r2", "val_loss", "val_r2", "lr"} <= set(history) and "acc" not in history
    assert history["r2"][-1] > history["r2"][0]
    test = trainer.evaluate(data.x_test, data.y_test)
    assert test["pred"].shape == data.y_test.shape
    assert test["r2"] == pytest.approx(r2_score(data.y_test, trainer.predict(data.x_test)), abs=1e-6)
    assert test["r2"] > 0.95
    assert "| r2 " in capsys.readouterr().out     # the epoch log reports R^2


def test_epoch_r2_is_one_minus_mse_over_the_target_variance():
    trainer, data = _trainer("piecewise", epochs=2)
    # the last epoch's running MSE (weights move during the epoch) is the mean loss for MSELoss
    assert trainer.history["r2"][-1] == pytest.approx(1 - trainer.history["loss"][-1] / data.y_train.var(),
                                                      rel=1e-4)


def test_toy_runs_keep_host_and_device_apart(strict_backend, tmp_path, capsys):
    """Regression and a toy classifier with --animate under CuPy's rules (the strict CPU backend)."""
    from vectorized.experiment import run_experiment
    from vectorized.main import build_parser, model_builder

    for name in ("piecewise", "moons"):
        parser = build_parser()
        args = parser.parse_args(["--dataset", name, "--epochs", "2", "--toy-size", "100", "--animate",
                                  "--run-dir", str(tmp_path)])
        result = run_experiment(args, tier="vectorized", model_name="mlp", build_model=model_builder(args),
                                flatten_input=True, quiet=True)
        assert np.isfinite(result["test_loss"])
        assert any(str(p).endswith(".gif") for p in result["figures"])
