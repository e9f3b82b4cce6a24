"""LeNet-5 on synth-digits with the Keras-style API, in about ten lines.

    python scripts/keras_style_lenet.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from any folder

from common.data.synth_digits import generate  # noqa: E402
from vectorized.callbacks import CSVLogger, EarlyStopping  # noqa: E402
from vectorized.model_api import Model  # noqa: E402

x_train, y_train = generate(3000, seed=0, split="train")
x_test, y_test = generate(1000, seed=0, split="test")
model = Model.architecture("lenet", input_shape=(1, 28, 28), num_classes=10)
model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], lr=2e-3)
model.summary()
history = model.fit(x_train, y_train, epochs=3, batch_size=64, validation_split=0.1,
                    callbacks=[EarlyStopping(patience=2), CSVLogger("runs/keras-lenet/log.csv")])
print("test:", model.evaluate(x_test, y_test))
model.save("runs/keras-lenet/lenet.h5")
