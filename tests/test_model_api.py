"""The Keras-style Model: same weights as the Trainer, callbacks, save/load, recurrent models, errors."""
import csv

import numpy as np
import pytest

from common.data import Normalizer
from common.data.synth_digits import generate
from common.errors import UserError
from common.seed import seed_everything
from convolutional.architectures import build_model
from vectorized.callbacks import CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint, ProgressBar
from vectorized.layers import Linear
from vectorized.losses import CrossEntropyLoss
from vectorized.model_api import Model
from vectorized.optim import Adam
from vectorized.rnn import GRU, LSTM, Embedding, LastStep, TimeDistributed
from vectorized.trainer import Trainer


@pytest.fixture(scope="module")
def digits():
    x, y = generate(160, seed=0)
    return x, y


def test_fit_gives_the_trainers_weights(digits):
    """Same seed, same recipe (Adam 2e-3, batch 32, 2 epochs, last 20% for validation): same numbers."""
    x, y = digits
    seed_everything(3)
    model = Model.architecture("lenet", input_shape=(1, 28, 28), num_classes=10)
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], lr=2e-3)
    history = model.fit(x, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0, seed=5)

    seed_everything(3)
    net = build_model("lenet", input_shape=(1, 28, 28), num_classes=10)
    x_tr, y_tr, x_val, y_val = x[:128], y[:128], x[128:], y[128:]
    trainer = Trainer(net, CrossEntropyLoss(), Adam(net.parameters(), lr=2e-3), normalizer=Normalizer.fit(x_tr),
                      num_classes=10, progress=False, seed=5)
    trainer.fit((x_tr, y_tr), (x_val, y_val), epochs=2, batch_size=32)

    ours, theirs = model.module.state_dict(), net.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
    np.testing.assert_allclose(history.history["val_loss"], trainer.history["val_loss"])
    np.testing.assert_allclose(history.history["accuracy"], trainer.history["acc"])
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}


def test_callbacks_save_and_load(digits, tmp_path):
    x, y = digits
    model = Model.architecture("lenet", input_shape=(1, 28, 28), num_classes=10)
    model.compile(optimizer="sgd", loss="cross_entropy", metrics=["accuracy"], lr=0.05)
    cbs = [CSVLogger(tmp_path / "log.csv"), ModelCheckpoint(tmp_path / "e{epoch}.h5"),
           LearningRateScheduler(lambda epoch, lr: 0.05 / (epoch + 1)), ProgressBar(disable=True),
           EarlyStopping(monitor="val_accuracy", patience=5)]
    history = model.fit(x, y, epochs=3, batch_size=40, validation_data=(x[:40], y[:40]), callbacks=cbs, verbose=0)
    assert history.history["lr"] == pytest.approx([0.05, 0.025, 0.05 / 3])
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and "val_acc" in rows[0]
    assert sorted(p.name for p in tmp_path.glob("e*.h5")) == ["e1.h5", "e2.h5", "e3.h5"]

    model.save(tmp_path / "model.h5")
    loaded = Model.load(tmp_path / "model.h5")
    np.testing.assert_allclose(loaded.predict(x[:8]), model.predict(x[:8]), atol=1e-6)
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y))
    assert loaded.trainer.epoch == 3
    more = loaded.fit(x, y, epochs=1, batch_size=40, verbose=0)  # continues: a 4th epoch
    assert loaded.trainer.epoch == 4 and len(loaded.trainer.history["loss"]) == 4
    assert more.epoch == [3] and len(more.history["loss"]) == 1
    assert "Total params: 61,706" in model.summary(print_fn=None)


def test_recurrent_models_fit_sequences_and_tokens():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6, 3)).astype(np.float32)
    y = (x[:, -1, 0] + x[:, -2, 1] > 0).astype(np.int64)     # the label is in the last two steps
    clf = Model([GRU(3, 8, batch_first=True), LastStep(), Linear(8, 2)])
    clf.compile("adam", "cross_entropy", metrics=["accuracy"], lr=0.02)
    h = clf.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert h.history["accuracy"][-1] > 0.9
    assert "GRU" in clf.summary((6, 3), print_fn=None)

    ids = rng.integers(0, 5, (32, 7))
    lm = Model([Embedding(5, 4), LSTM(4, 8, batch_first=True), TimeDistributed(Linear(8, 5))])
    lm.compile("adam", "cross_entropy", metrics=["accuracy"], lr=0.02)
    h = lm.fit(ids[:, :-1], ids[:, 1:], epochs=2, batch_size=8, verbose=0)
    assert 0.0 <= h.history["accuracy"][-1] <= 1.0            # a fraction of characters, per step
    assert lm.predict(ids[:3, :-1]).shape == (3, 6, 5)

    reg = Model([LSTM(3, 8, batch_first=True), LastStep(), Linear(8, 1)])
    reg.compile("adam", "mse", lr=0.01)
    target = x[:, :, :1].sum(axis=1)
    h = reg.fit(x, target, epochs=10, batch_size=16, verbose=0, validation_split=0.25)
    assert set(h.history) == {"loss", "val_loss", "lr"} and h.history["loss"][-1] < h.history["loss"][0]
    assert set(reg.evaluate(x, target)) == {"loss"}


def test_one_line_errors():
    model = Model([LSTM(3, 4, batch_first=True), LastStep(), Linear(4, 2)])
    with pytest.raises(UserError, match="unknown loss 'hinge'"):
        model.compile(loss="hinge")
    with pytest.raises(UserError, match="compile"):
        model.fit(np.zeros((4, 5, 3)), np.zeros(4, dtype=np.int64))
    model.compile("adam", "cross_entropy")
    with pytest.raises(UserError, match="batch of sequences"):
        model.fit(np.zeros((4, 3), dtype=np.float32), np.zeros(4, dtype=np.int64), verbose=0)
    with pytest.raises(UserError, match="different lengths"):
        model.fit([[[0.0] * 3] * 5, [[0.0] * 3] * 4], [0, 1], verbose=0)
    with pytest.raises(UserError, match="4 samples but y has 3"):
        model.fit(np.zeros((4, 5, 3)), np.zeros(3, dtype=np.int64), verbose=0)
    lm = Model([Embedding(5, 4), GRU(4, 4, batch_first=True), TimeDistributed(Linear(4, 5))])
    lm.compile("adam", "cross_entropy")
    with pytest.raises(UserError, match="sequence lengths do not match"):
        lm.fit(np.zeros((4, 6), dtype=np.int64), np.zeros((4, 5), dtype=np.int64), verbose=0)
    with pytest.raises(UserError, match="validation_data or validation_split"):
        lm.fit(np.zeros((4, 6), dtype=np.int64), np.zeros((4, 6), dtype=np.int64), verbose=0,
               callbacks=[EarlyStopping()])
    with pytest.raises(UserError, match="unknown optimizer"):
        lm.compile(optimizer="adagrad")


def test_load_without_a_spec_needs_the_module(tmp_path):
    model = Model([GRU(2, 3, batch_first=True), LastStep()])
    model.save(tmp_path / "m.h5")
    with pytest.raises(UserError, match="module="):
        Model.load(tmp_path / "m.h5")
    again = Model.load(tmp_path / "m.h5", module=Model([GRU(2, 3, batch_first=True), LastStep()]).module)
    key = "0.weight_hh_l0"
    np.testing.assert_array_equal(again.module.state_dict()[key], model.module.state_dict()[key])


FAST = ("lenet", "baseline")


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow)
                                  for n in ("lenet", "baseline", "alexnet", "vgg16", "resnet18",
                                            "efficientnet_lite0", "convnext_tiny")])
def test_every_architecture_compiles_fits_and_round_trips(name, tmp_path):
    from convolutional.architectures import get_spec

    shape = get_spec(name).small_input
    x = np.random.default_rng(0).integers(0, 256, (4, *shape)).astype(np.uint8)
    y = np.arange(4) % 10
    model = Model.architecture(name, input_shape=shape, num_classes=10)
    model.compile("sgd", "cross_entropy", metrics=["accuracy"], lr=1e-3)
    history = model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    model.save(tmp_path / "m.h5")
    np.testing.assert_allclose(Model.load(tmp_path / "m.h5").predict(x[:2]), model.predict(x[:2]), atol=1e-5)
