"""The shared Trainer: exact resume, Ctrl-C, NaN guard, early stopping, schedules, strict device."""
import numpy as np
import pytest

from common import backend
from common.augment import AugmentConfig, Augmenter
from common.checkpoint import load_checkpoint
from common.cli import RunDir, TrainingInterrupted
from common.data import Normalizer
from common.errors import CheckpointError
from common.seed import seed_everything
from vectorized.losses import CrossEntropyLoss
from vectorized.mlp import build_mlp
from vectorized.optim import Adam, Lookahead, SGD
from vectorized.schedules import make_schedule
from vectorized.trainer import EarlyStopping, Trainer, TrainingDiverged


def toy_images(n=240, seed=0):
    """Ten classes of 1x8x8 uint8 images: a bright bar whose position encodes the class, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 60, size=(n, 1, 8, 8))
    for i, label in enumerate(y):
        x[i, 0, label % 8, :] += 150
        x[i, 0, :, label // 8 * 4] += 40
    return x.clip(0, 255).astype(np.uint8), y.astype(np.int64)


def make_trainer(tmp_path=None, *, seed=0, augment=True, schedule=None, lookahead=False, early=None,
                 lr=1e-2, callbacks=()):
    seed_everything(seed)
    x, _ = toy_images()
    model = build_mlp(64, 10, [32, 16], ["relu"], [0.1], batchnorm=True)
    opt = Adam(model.parameters(), lr=lr)
    if lookahead:
        opt = Lookahead(opt, k=3, alpha=0.5)
    sched = make_schedule(schedule, opt, epochs=4, steps_per_epoch=8) if schedule else None
    aug = Augmenter(AugmentConfig(max_shift=1, rotate_deg=0, noise_prob=0.5), seed=seed + 1) if augment else None
    run_dir = RunDir(path=tmp_path) if tmp_path is not None else None
    return Trainer(model, CrossEntropyLoss(), opt, normalizer=Normalizer.fit(x), num_classes=10,
                   schedule=sched, augmenter=aug, early_stopping=early, run_dir=run_dir,
                   config={"tier": "vectorized", "architecture": "toy", "num_classes": 10, "input_shape": [1, 8, 8]},
                   flatten_input=True, progress=False, seed=seed, grad_clip=5.0, callbacks=callbacks)


def weights(trainer):
    return trainer.model.state_dict()


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("lookahead,schedule", [(False, "cosine"), (True, "multistep")])
def test_resume_at_epoch_boundary_is_bitwise_identical(tmp_path, lookahead, schedule):
    x, y = toy_images()
    full = make_trainer(tmp_path / "full", lookahead=lookahead, schedule=schedule)
    full.fit((x, y), (x[:40], y[:40]), epochs=4, batch_size=32)

    first = make_trainer(tmp_path / "part", lookahead=lookahead, schedule=schedule)
    first.fit((x, y), (x[:40], y[:40]), epochs=2, batch_size=32)
    second = make_trainer(tmp_path / "part", seed=123, lookahead=lookahead, schedule=schedule)  # other seed: resume must overwrite
    second.resume(tmp_path / "part" / "last.h5")
    second.fit((x, y), (x[:40], y[:40]), epochs=4, batch_size=32)

    assert_same_weights(weights(full), weights(second))
    assert second.history["loss"] == full.history["loss"]
    assert second.history["lr"] == full.history["lr"]
    assert second.optimizer.lr == full.optimizer.lr


class InterruptAt:
    """A callback that presses Ctrl-C after a given optimizer step."""

    def __init__(self, step):
        self.at = step

    def on_step_end(self, trainer, step):
        if step == self.at:
            raise KeyboardInterrupt


def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(tmp_path):
    x, y = toy_images()
    full = make_trainer(tmp_path / "full")
    full.fit((x, y), None, epochs=3, batch_size=32)

    interrupted = make_trainer(tmp_path / "int", callbacks=[InterruptAt(13)])  # 8 steps/epoch: mid epoch 2
    with pytest.raises(TrainingInterrupted) as info:
        interrupted.fit((x, y), None, epochs=3, batch_size=32)
    path = info.value.checkpoint_path
    assert path == tmp_path / "int" / "last.h5" and path.exists()
    ckpt = load_checkpoint(path)
    assert ckpt.step == 13 and ckpt.epoch == 1 and ckpt.extra["batch_index"] == 5

    resumed = make_trainer(tmp_path / "int")
    resumed.resume(path)
    resumed.fit((x, y), None, epochs=3, batch_size=32)
    assert_same_weights(weights(full), weights(resumed))
    np.testing.assert_allclose(resumed.history["loss"], full.history["loss"], rtol=1e-6)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path):
    x, y = toy_images()
    trainer = make_trainer(tmp_path, augment=False)
    trainer.fit((x, y), None, epochs=1, batch_size=32)
    good = load_checkpoint(tmp_path / "last.h5")

    class Poison:
        def on_step_end(self, trainer, step):
            trainer.model.parameters()[0].data[...] = np.nan

    trainer.callbacks.append(Poison())
    trainer.log_every = 1
    with pytest.raises(TrainingDiverged, match="became nan.*last good checkpoint"):
        trainer.fit((x, y), None, epochs=3, batch_size=32)
    after = load_checkpoint(tmp_path / "last.h5")
    assert after.epoch == good.epoch == 1
    assert_same_weights(after.model_state, good.model_state)


def test_early_stopping_restores_the_best_weights(tmp_path):
    x, y = toy_images()
    early = EarlyStopping("val_loss", patience=2, min_delta=0.0)
    trainer = make_trainer(tmp_path, early=early, lr=0.3)  # a large lr makes validation loss bounce
    trainer.fit((x, y), (x[:60], y[:60]), epochs=30, batch_size=32)
    best_epoch = int(np.argmin(trainer.history["val_loss"]))
    assert early.best_epoch == best_epoch
    assert len(trainer.history["loss"]) < 30 or best_epoch == 29
    restored = trainer.evaluate(x[:60], y[:60])["loss"]
    assert restored == pytest.approx(trainer.history["val_loss"][best_epoch], rel=1e-5)
    best = load_checkpoint(tmp_path / "best.h5")
    assert best.epoch == best_epoch + 1


def test_plateau_schedule_reads_the_validation_loss():
    x, y = toy_images()
    trainer = make_trainer(schedule="plateau", lr=1e-6)  # lr too small to improve: plateau must cut it
    trainer.schedule.patience = 0
    trainer.fit((x, y), (x[:40], y[:40]), epochs=3, batch_size=32)
    assert trainer.history["lr"][-1] < trainer.history["lr"][0]


def test_predict_and_evaluate_agree():
    x, y = toy_images()
    trainer = make_trainer(augment=False)
    trainer.fit((x, y), None, epochs=3, batch_size=32)
    metrics = trainer.evaluate(x, y)
    pred = trainer.predict(x)
    proba = trainer.predict_proba(x)
    np.testing.assert_array_equal(pred, metrics["pred"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert metrics["acc"] == pytest.approx((pred == y).mean())
    assert metrics["acc"] > 0.5  # the toy task is learnable


def test_fit_picks_the_parallelism_from_the_flops_of_a_batch(monkeypatch):
    from engine import parallel as backend, tuning

    x, y = toy_images()
    trainer = make_trainer(augment=False)
    trainer.fit((x, y), None, epochs=1, batch_size=32)
    assert backend.parallelism() == "blas"  # 32 x 2 x (64*32 + 32*16 + 16*10) FLOPs: a small model
    monkeypatch.setattr(tuning, "SMALL_MODEL_FLOPS", 32 * trainer.model.forward_flops((64,)))
    trainer.fit((x, y), None, epochs=2, batch_size=32)
    assert backend.parallelism() == "blocks"  # exactly the threshold: worker threads


def test_resume_rejects_a_checkpoint_of_another_model(tmp_path):
    x, y = toy_images()
    trainer = make_trainer(tmp_path)
    trainer.fit((x, y), None, epochs=1, batch_size=32)
    other = make_trainer()
    other.config["architecture"] = "something-else"
    with pytest.raises(CheckpointError, match="architecture"):
        other.resume(tmp_path / "last.h5")


def test_full_training_step_under_the_strict_device_backend(strict_backend):
    x, y = toy_images(64)
    seed_everything(0)
    model = build_mlp(64, 10, [16], ["gelu"], [0.2], batchnorm=True)
    opt = Lookahead(SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True), k=2)
    trainer = Trainer(model, CrossEntropyLoss(label_smoothing=0.1), opt, normalizer=Normalizer.fit(x),
                      num_classes=10, grad_clip=1.0, flatten_input=True, progress=False,
                      augmenter=Augmenter(AugmentConfig(mixup_prob=1.0, cutmix_prob=0.5), seed=0),
                      schedule=make_schedule("cosine", opt, epochs=2, steps_per_epoch=4, per="step"))
    history = trainer.fit((x, y), (x[:16], y[:16]), epochs=2, batch_size=16)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    assert isinstance(model.parameters()[0].data, backend.StrictArray)
