"""A Keras-style front end: ``compile``, ``fit``, ``evaluate``, ``predict``, ``summary``, ``save``.

    from vectorized.model_api import Model
    model = Model.architecture("lenet", input_shape=(1, 28, 28), num_classes=10)
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], lr=1e-3)
    history = model.fit(x, y, epochs=3, batch_size=64, validation_split=0.1)
    model.evaluate(x_test, y_test)       # {'loss': ..., 'accuracy': ...}

It adds no training loop of its own: ``fit`` hands the arrays to the Trainer shared by tiers 2
and 3 (through :class:`~vectorized.array_trainer.ArrayTrainer`, which also takes sequences and
token ids), so the same seed and recipe give the same weights as the Trainer. uint8
``(N, C, H, W)`` images are scaled to [0, 1] and normalized with statistics of the training
split; other arrays are used as given (floats as float32, integers as token ids).

A model saved with ``save`` is one HDF5 checkpoint (weights, optimizer, history, and how to
rebuild the model when it was made by ``Model.architecture`` or ``Model.from_factory``).
"""
from __future__ import annotations

import importlib

import numpy as np

from common.checkpoint import Checkpoint, check_compatible, library_version, load_checkpoint, save_checkpoint
from common.data import Normalizer
from common.errors import UserError
from vectorized.array_trainer import ArrayTrainer
from vectorized.callbacks import Callback, EarlyStopping
from vectorized.losses import BCEWithLogitsLoss, MSELoss
from vectorized.module import Module, Sequential
from vectorized.optim import make_optimizer
from vectorized.rnn import Embedding, RecurrentBase
from vectorized.rnn.loss import SequenceCrossEntropyLoss

#: loss name -> (factory, task). Cross-entropy takes (N, K) logits or (N, T, K) per-step logits.
LOSSES = {
    "cross_entropy": (SequenceCrossEntropyLoss, "classification"),
    "mse": (MSELoss, "regression"),
    "bce": (BCEWithLogitsLoss, "regression"),
}
_LOSS_ALIASES = {"categorical_crossentropy": "cross_entropy", "sparse_categorical_crossentropy": "cross_entropy",
                 "crossentropy": "cross_entropy", "mean_squared_error": "mse",
                 "binary_crossentropy": "bce", "bce_with_logits": "bce"}
METRICS = ("accuracy", "acc")
_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")


def as_batch_array(data, what: str) -> np.ndarray:
    """A NumPy array from an array or a list; ragged sequences are a one-line error."""
    if isinstance(data, np.ndarray):
        return data
    try:
        return np.asarray(data)
    except ValueError:
        lengths = sorted({len(item) for item in data if hasattr(item, "__len__")})
        raise UserError(f"{what}: the sequences have different lengths ({', '.join(map(str, lengths[:6]))}); "
                        "pad or cut them to one length") from None


class History:
    """What ``fit`` returns: ``history.history`` maps metric names (Keras's: accuracy,
    val_accuracy) to one value per epoch of that call; ``history.epoch`` lists the epoch indices
    (counting earlier calls: a second ``fit`` of 2 epochs reports epochs [2, 3])."""

    def __init__(self, rows: dict, start: int = 0):
        rename = {"acc": "accuracy", "val_acc": "val_accuracy"}
        self.history = {rename.get(k, k): list(v[start:]) for k, v in rows.items() if k not in ("epoch", "time")}
        self.epoch = [int(e) - 1 for e in rows.get("epoch", [])[start:]]

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, metrics={list(self.history)})"


class Model:
    """A Module with a compile/fit/evaluate/predict workflow.

    ``module``: a Module, or a list of Modules (run in order, as a Sequential).
    ``input_shape``: one sample's shape (no batch axis), for ``summary``; ``fit`` records it too.
    """

    def __init__(self, module, input_shape=None, *, spec: dict | None = None):
        if isinstance(module, (list, tuple)):
            module = Sequential(*module)
        if not isinstance(module, Module):
            raise UserError(f"Model wraps a Module or a list of Modules, got {type(module).__name__}")
        self.module = module
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.spec = spec
        self.compiled = None
        self.trainer = None
        self.normalizer = None
        self.target_epochs = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_factory(cls, factory: str, kwargs: dict | None = None, input_shape=None) -> "Model":
        """Build with ``factory(**kwargs)``, named ``"package.module:function"``; saved models
        remember the name and the arguments (JSON values) and ``Model.load`` rebuilds them.
        ``input_shape`` is one sample's shape, for ``summary``."""
        kwargs = dict(kwargs or {})
        return cls(_call_factory(factory, kwargs), input_shape, spec={"factory": factory, "kwargs": kwargs})

    @classmethod
    def architecture(cls, name: str, input_shape=(1, 28, 28), num_classes: int = 10, **options) -> "Model":
        """One of the convolutional tier's architectures by name (``lenet``, ``resnet18``, ...)."""
        shape = [int(s) for s in input_shape]
        return cls.from_factory("convolutional.architectures:build_model",
                                dict(name=name, input_shape=shape, num_classes=int(num_classes), **options),
                                input_shape=shape)

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer: str = "adam", loss: str = "cross_entropy", metrics=None, lr: float = 1e-3,
                momentum: float = 0.9, weight_decay: float = 0.0, grad_clip: float | None = None) -> "Model":
        """Choose the optimizer (by name), the loss (by name) and the metrics (``["accuracy"]``)."""
        loss_name = _LOSS_ALIASES.get(str(loss).lower(), str(loss).lower())
        if loss_name not in LOSSES:
            raise UserError(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)} "
                            f"(or {', '.join(_LOSS_ALIASES)})")
        if str(optimizer).lower() not in _OPTIMIZERS:
            raise UserError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(_OPTIMIZERS)}")
        metrics = [str(m).lower() for m in (metrics or [])]
        for m in metrics:
            if m not in METRICS:
                raise UserError(f"unknown metric {m!r}; this API reports: accuracy")
        task = LOSSES[loss_name][1]
        if metrics and task == "regression":
            raise UserError(f"metric 'accuracy' needs a classification loss, not {loss_name!r}")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise UserError(f"lr must be a positive number, got {lr!r}")
        self.compiled = {"optimizer": str(optimizer).lower(), "loss": loss_name, "metrics": metrics, "lr": float(lr),
                         "momentum": float(momentum), "weight_decay": float(weight_decay),
                         "grad_clip": None if grad_clip is None else float(grad_clip)}
        self.trainer = None  # a new compile starts a new optimizer
        return self

    def _require_compiled(self):
        if self.compiled is None:
            raise UserError("call model.compile(optimizer=..., loss=...) before fit or evaluate")

    def _make_trainer(self, seed: int, verbose: int, num_classes: int):
        c = self.compiled
        opt = make_optimizer(c["optimizer"], self.module.parameters(), c["lr"], momentum=c["momentum"],
                             weight_decay=c["weight_decay"])
        loss_factory, task = LOSSES[c["loss"]]
        return ArrayTrainer(self.module, loss_factory(), opt, task=task, normalizer=self.normalizer,
                            num_classes=num_classes, grad_clip=c["grad_clip"], config=self._config(),
                            progress=verbose == 1, verbose=verbose >= 1, seed=seed)

    def _config(self) -> dict:
        config = {"tier": "vectorized", "architecture": type(self.module).__name__, "api": "model",
                  "version": library_version(), "compile": self.compiled, "model_spec": self.spec}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        if self.normalizer is not None:
            config["normalization"] = {"mean": self.normalizer.mean.tolist(), "std": self.normalizer.std.tolist()}
        return config

    # ------------------------------------------------------------------ fit
    def fit(self, x, y, epochs: int = 1, batch_size: int = 32, validation_data=None, validation_split: float = 0.0,
            callbacks=(), verbose: int = 1, seed: int = 0) -> History:
        """Train ``epochs`` more epochs. ``validation_split`` holds out the *last* fraction of
        (x, y) (as Keras does); ``verbose``: 0 silent, 1 progress bars and epoch lines, 2 lines."""
        self._require_compiled()
        x, y = self._check_xy(x, y, "fit")
        if validation_data is not None and validation_split:
            raise UserError("give validation_data or validation_split, not both")
        if not 0.0 <= float(validation_split) < 1.0:
            raise UserError(f"validation_split must be in [0, 1), got {validation_split}")
        val = None
        if validation_data is not None:
            if len(validation_data) != 2:
                raise UserError("validation_data must be a pair (x_val, y_val)")
            val = self._check_xy(*validation_data, "validation_data")
        elif validation_split:
            n_val = int(round(len(x) * float(validation_split)))
            if n_val == 0 or n_val == len(x):
                raise UserError(f"validation_split={validation_split} of {len(x)} samples leaves an empty split")
            x, y, val = x[:-n_val], y[:-n_val], (x[-n_val:], y[-n_val:])
        if int(epochs) < 1 or int(batch_size) < 1:
            raise UserError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}")
        if self.input_shape is None:
            self.input_shape = tuple(x.shape[1:])
        if self.trainer is None:
            if x.dtype == np.uint8 and x.ndim == 4 and self.normalizer is None:
                self.normalizer = Normalizer.fit(x)   # statistics of the training split only
            num_classes = int(y.max()) + 1 if np.issubdtype(y.dtype, np.integer) and y.size else 0
            self.trainer = self._make_trainer(seed, verbose, num_classes)
        trainer = self.trainer
        trainer.progress, trainer.verbose = verbose == 1, verbose >= 1
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise UserError(f"callbacks must be vectorized.callbacks objects, got {type(cb).__name__}")
            cb.model = self
        stoppers = [cb for cb in callbacks if isinstance(cb, EarlyStopping)]
        trainer.early_stopping = stoppers[-1].rule if stoppers else None
        if trainer.early_stopping is not None and trainer.early_stopping.metric.startswith("val_") and val is None:
            raise UserError(f"EarlyStopping watches {stoppers[-1].monitor!r}: give validation_data or validation_split")
        trainer.callbacks = [cb for cb in callbacks if not isinstance(cb, EarlyStopping)]
        self.target_epochs = trainer.epoch + int(epochs)
        start = len(trainer.history.get("loss", []))
        for cb in trainer.callbacks:
            cb.on_train_begin(trainer)
        try:
            trainer.fit((x, y), val, epochs=self.target_epochs, batch_size=int(batch_size))
        finally:
            for cb in trainer.callbacks:
                cb.on_train_end(trainer)
        return History(trainer.history, start)

    def _check_input_rank(self, x, where):
        """A recurrent first layer needs (N, T, F) floats, an Embedding (N, T) ids: said before training."""
        first = self.module
        while isinstance(first, Sequential) and first._modules:
            first = next(iter(first._modules.values()))
        if isinstance(first, RecurrentBase) and x.ndim != 3:
            raise UserError(f"{where}: the first layer, {first.cell_name}, reads a batch of sequences "
                            f"(N, T, {first.input_size}); got x of shape {x.shape} (for token ids put an "
                            "Embedding first; for one sequence add a batch axis)")
        if isinstance(first, Embedding) and (x.ndim != 2 or not np.issubdtype(x.dtype, np.integer)):
            raise UserError(f"{where}: the first layer, an Embedding, reads integer token ids (N, T); got "
                            f"x of shape {x.shape} and dtype {x.dtype}")

    def _check_xy(self, x, y, where):
        x, y = as_batch_array(x, f"{where} x"), as_batch_array(y, f"{where} y")
        self._check_input_rank(x, where)
        if len(x) != len(y):
            raise UserError(f"{where}: x has {len(x)} samples but y has {len(y)}")
        if len(x) == 0:
            raise UserError(f"{where}: no samples")
        if x.ndim >= 2 and y.ndim >= 2 and self.compiled and self.compiled["loss"] == "cross_entropy" \
                and x.shape[1] != y.shape[1] and not np.issubdtype(y.dtype, np.floating):
            raise UserError(f"{where}: sequence lengths do not match: x has {x.shape[1]} steps, y has {y.shape[1]}")
        return x, y

    # ------------------------------------------------------------------ use
    def _eval_trainer(self):
        self._require_compiled()
        if self.trainer is None:
            self.trainer = self._make_trainer(0, 0, 0)
        return self.trainer

    def evaluate(self, x, y, batch_size: int = 256) -> dict:
        """{'loss': mean loss, 'accuracy': ...} in eval mode (accuracy for classification)."""
        x, y = self._check_xy(x, y, "evaluate")
        out = self._eval_trainer().evaluate(x, y, batch_size=batch_size)
        result = {"loss": out["loss"]}
        if "acc" in out:
            result["accuracy"] = out["acc"]
        return result

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """The model's outputs (logits for classification) for host arrays, as a host array."""
        x = as_batch_array(x, "predict x")
        self._check_input_rank(x, "predict")
        trainer = self.trainer or ArrayTrainer(self.module, None, None, normalizer=self.normalizer, verbose=False)
        return trainer.predict_logits(x, batch_size=batch_size)

    def summary(self, input_shape=None, print_fn=print) -> str:
        """Layer table with output shapes and parameter counts (one sample's ``input_shape``)."""
        shape = input_shape or self.input_shape
        if shape is None:
            raise UserError("summary needs an input shape: Model(..., input_shape=...) or summary(input_shape)")
        return self.module.summary(tuple(shape), print_fn=print_fn)

    # ------------------------------------------------------------------ save and load
    def save(self, path):
        """One HDF5 checkpoint: weights, optimizer state, history, compile settings, model spec."""
        if self.trainer is not None:
            self.trainer.config = self._config()
            return self.trainer.save(path)
        ckpt = Checkpoint(model_state=self.module.state_dict(), optimizer_state={}, scheduler_state={}, epoch=0,
                          step=0, rng_state={}, history={}, config=self._config())
        return save_checkpoint(path, ckpt)

    @classmethod
    def load(cls, path, module: Module | None = None) -> "Model":
        """A Model from ``save``'s file: rebuilt from its spec (or put into ``module``), compiled
        again with its saved settings, its optimizer and history restored so ``fit`` continues."""
        ckpt = load_checkpoint(path)
        config = ckpt.config
        spec = config.get("model_spec")
        if module is None:
            if not spec:
                raise UserError(f"{path} does not say how to build its model (it was not made by Model.architecture "
                                "or Model.from_factory): pass the module, Model.load(path, module=...)")
            module = _call_factory(spec["factory"], spec["kwargs"])
        check_compatible(ckpt, model_shapes=module.state_shapes())
        module.load_state_dict(ckpt.model_state)
        model = cls(module, config.get("input_shape"), spec=spec)
        if "normalization" in config:
            model.normalizer = Normalizer(**config["normalization"])
        if config.get("compile"):
            model.compile(**config["compile"])
            if ckpt.optimizer_state:
                trainer = model._make_trainer(0, 1, 0)
                trainer.optimizer.load_state_dict(ckpt.optimizer_state)
                trainer.epoch, trainer.step = ckpt.epoch, ckpt.step
                trainer.history = {k: list(v) for k, v in ckpt.history.items()}
                if "data" in ckpt.rng_state:
                    trainer.data_rng.bit_generator.state = ckpt.rng_state["data"]
                model.trainer = trainer
        return model


def _call_factory(factory: str, kwargs: dict) -> Module:
    module_name, _, func_name = str(factory).partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError, ValueError):
        raise UserError(f"cannot find the model factory {factory!r} (expected 'package.module:function')") from None
    built = func(**kwargs)
    if not isinstance(built, Module):
        raise UserError(f"the factory {factory!r} returned a {type(built).__name__}, not a Module")
    return built
