"""Toy tasks in the vectorized tier: the recipe, the loss, the figures and the final report.

:func:`vectorized.experiment.run_experiment` hands a run over to this module when the dataset
is a toy task (points in the plane, or a 1-D regression; see :mod:`common.data.toys`):

- classification toys train with cross-entropy, like images, and draw the decision boundary;
- regression toys (``piecewise``, ``sine``) end in one linear output unit, train with
  ``--loss mse|mae|huber`` through :class:`vectorized.regression.RegressionTrainer`, report R^2
  and draw the fitted curve over the target;
- ``--animate`` records the boundary (or the curve) after every epoch of the real training, and
  writes the frames as a GIF at the end.
"""
from __future__ import annotations

import json
import math

from common import plots, toyplots
from common.checkpoint import save_checkpoint
from common.data.toys import TOYS, as_points
from common.errors import UserError

#: a small net and many short epochs; applied to flags the user left at their defaults
RECIPES = {
    "default": {"hidden_sizes": [32, 32], "dropout": [0.0], "epochs": 40, "batch_size": 32, "lr": 0.01},
    "spirals": {"hidden_sizes": [64, 64], "dropout": [0.0], "epochs": 60, "batch_size": 32, "lr": 0.01},
    "sine": {"hidden_sizes": [64, 64], "activation": "tanh", "dropout": [0.0], "epochs": 150, "lr": 0.003,
             "batch_size": 32},
    "piecewise": {"hidden_sizes": [16], "dropout": [0.0], "epochs": 60, "batch_size": 32, "lr": 0.01},
}
MAX_FRAMES = 60        # an animation keeps at most this many epochs (evenly spaced)


def recipe_for(name: str) -> dict:
    return dict(RECIPES.get(name, RECIPES["default"]))


def check_flags(args, data, tier: str) -> None:
    """A toy task in the convolutional tier, or a flag that only fits one kind of task, ends with one line."""
    if data.is_points and tier == "convolutional":
        raise UserError(f"{data.name} is a toy task of points, not images, so the convolutional tier cannot "
                        f"train on it; use python vectorized/main.py --dataset {data.name}")
    if getattr(args, "loss", None) and data.task != "regression":
        raise UserError(f"--loss {args.loss} is for the regression tasks (piecewise, sine); "
                        f"{data.name} is a classification task and trains with cross-entropy")
    if getattr(args, "animate", False) and not data.is_points:
        raise UserError("--animate draws the decision boundary of a toy task: add --dataset rings (or moons, "
                        "spirals, blobs, xor, piecewise, sine)")
    if data.task == "regression" and getattr(args, "early_metric", None) == "val_acc":
        args.early_metric = "val_r2"   # the regression score


def trainer_parts(args, data):
    """(Trainer class, loss) for a toy task."""
    from vectorized.losses import CrossEntropyLoss, make_regression_loss
    from vectorized.regression import RegressionTrainer
    from vectorized.trainer import Trainer

    if data.task == "regression":
        return RegressionTrainer, make_regression_loss(args.loss or "mse", getattr(args, "huber_delta", 1.0))
    return Trainer, CrossEntropyLoss(label_smoothing=getattr(args, "label_smoothing", 0.0))


class FrameRecorder:
    """A Trainer callback: after every ``every``-th epoch, the model's view of the input space.

    Classification: class probabilities on a grid over the plane; regression: the predicted
    curve on a line of x values. ``frames`` = [(title, values), ...].
    """

    def __init__(self, data, epochs: int, steps: int = 80):
        self.data, self.frames = data, []
        self.every = max(1, math.ceil(epochs / MAX_FRAMES))
        x = data.x_train.reshape(len(data.x_train), -1)
        if data.task == "regression":
            self.grid = toyplots.line_grid(x)
        else:
            self.extent, self.grid = toyplots.plane_grid(x, steps=steps)

    def view(self, trainer):
        if self.data.task == "regression":
            return trainer.predict(as_points(self.grid))
        return trainer.predict_proba(as_points(self.grid))

    def on_epoch_end(self, trainer, row):
        if row["epoch"] % self.every == 0 or row["epoch"] == 1:
            score = row.get("val_" + trainer.score, row[trainer.score])
            self.frames.append((f"epoch {row['epoch']}  {trainer.score} {score:.3f}", self.view(trainer)))


def setup(trainer, args, data) -> None:
    """A toy run: record frames for --animate; write the per-epoch checkpoints every 10th epoch
    (``finish`` writes the last one), since a toy epoch takes a fraction of a second."""
    trainer.checkpoint_every = 10 if args.epochs >= 20 else 1
    if getattr(args, "animate", False):
        trainer.callbacks.append(FrameRecorder(data, args.epochs))


def save_figures(args, trainer, data, run_dir) -> list:
    """history.png, then boundary.png (classification) or fit.png (regression), and the GIF."""
    out = []
    if trainer.history:
        out.append(plots.plot_history(trainer.history, run_dir.plot_path("curves")))
    x = data.x_train.reshape(len(data.x_train), -1)
    title = f"{data.name}: {trainer.model.arch_name if hasattr(trainer.model, 'arch_name') else 'model'}"
    if data.task == "regression":
        x_line = toyplots.line_grid(x)
        out.append(toyplots.plot_regression_fit(x, data.y_train, x_line, trainer.predict(as_points(x_line)),
                                                run_dir.plot_path("fit"), target=TOYS[data.name].target,
                                                title=title))
    else:
        extent, grid = toyplots.plane_grid(x)
        out.append(toyplots.plot_decision_boundary(extent, trainer.predict_proba(as_points(grid)), x,
                                                   data.y_train, run_dir.plot_path("boundary"), title=title))
    recorder = next((cb for cb in trainer.callbacks if isinstance(cb, FrameRecorder)), None)
    if recorder is not None and recorder.frames:
        gif = run_dir.path / ("fit.gif" if data.task == "regression" else "boundary.gif")
        if data.task == "regression":
            out.append(toyplots.animate_fit(recorder.frames, x, data.y_train, recorder.grid, gif,
                                            target=TOYS[data.name].target))
        else:
            out.append(toyplots.animate_boundary(recorder.frames, recorder.extent, x, data.y_train, gif))
    return out


def finish(args, trainer, data, run_dir, model) -> dict:
    """Test the trained model, print the final line, save figures, checkpoint and results.json."""
    test = trainer.evaluate(data.x_test, data.y_test, batch_size=max(args.batch_size, 256))
    if data.task == "regression":
        print(f"test loss {test['loss']:.4f} | test R^2 {test['r2']:.4f} ({len(data.y_test)} points)")
        results = {"test_loss": test["loss"], "test_r2": test["r2"], "epochs": trainer.epoch}
    else:
        print(f"test loss {test['loss']:.4f} | test accuracy {100 * test['acc']:.2f}% ({len(data.y_test)} points)")
        results = {"test_loss": test["loss"], "test_acc": test["acc"], "epochs": trainer.epoch}
    figures = []
    if getattr(args, "plot", False) or getattr(args, "animate", False):
        figures = save_figures(args, trainer, data, run_dir)
        for path in figures:
            print(f"[plot] {path}")
    if trainer.epoch % trainer.checkpoint_every:  # the epoch loop skipped the last one
        trainer.save(run_dir.checkpoint_path("last"))
    if args.save:
        print(f"[save] {save_checkpoint(args.save, trainer.checkpoint())}")
    (run_dir.path / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return {"history": trainer.history, "test_acc": test.get("acc"), "test_r2": test.get("r2"),
            "test_loss": test["loss"], "run_dir": run_dir, "trainer": trainer, "model": model, "data": data,
            "figures": figures}


def apply_recipe(parser, args) -> None:
    """For a toy ``--dataset``, the flags left at their defaults take the task's recipe (printed)."""
    name = str(getattr(args, "dataset", None) or "").strip().lower()
    if name not in TOYS:
        return
    from common.cli import apply_toy_recipe

    changed = apply_toy_recipe(parser, args, recipe_for(name))
    if changed:
        shown = ", ".join(f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, list) else v}"
                          for k, v in changed.items())
        print(f"[toy] {name}: {shown} (a toy task's recipe; give a flag to change it)")
