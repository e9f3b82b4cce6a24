"""Toy tasks in the scalar tier: points in the plane through explicit loops.

A 2-16-2 network is small enough to follow by hand (``--trace`` prints every neuron) and still
bends the plane enough to separate rings, moons or XOR.  The decision boundary is computed the
slow, honest way: one ``network.forward`` per grid point, softmax, argmax.

Regression toys (``piecewise``, ``sine``) need a linear output and an MSE loss, which the
vectorized tier has; the scalar tier classifies, and says so.
"""
from __future__ import annotations

import math

from common import toyplots
from common.data.toys import TOYS
from common.errors import UserError
from scalar.losses import softmax

#: a 2-16-2 net, no dropout, many short epochs; applied to flags the user left at their defaults
RECIPE = {"hidden_sizes": [16], "hidden_dropout": [0.0], "epochs": 30, "batch_size": 16, "lr": 0.01, "limit": 0}
GRID_STEPS = 70        # 70 x 70 forward passes per boundary picture
MAX_FRAMES = 40


def toy_name(args) -> str | None:
    name = str(getattr(args, "dataset", None) or "").strip().lower()
    return name if name in TOYS else None


def prepare_args(parser, args) -> bool:
    """For a toy ``--dataset``: refuse regression, apply the recipe (printed). True for a toy task."""
    name = toy_name(args)
    if name is None:
        if getattr(args, "animate", False):
            raise UserError("--animate draws the decision boundary of a toy task: add --dataset rings "
                            "(or moons, spirals, blobs, xor)")
        return False
    if TOYS[name].task == "regression":
        raise UserError(f"{name} is a regression task and the scalar tier classifies; "
                        f"run python vectorized/main.py --dataset {name} --plot")
    from common.cli import apply_toy_recipe

    changed = apply_toy_recipe(parser, args, RECIPE)
    if changed:
        shown = ", ".join(f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, list) else v}"
                          for k, v in changed.items())
        print(f"[toy] {name}: {shown} (a toy task's recipe; give a flag to change it)")
    return True


def grid_probabilities(network, normalizer, points) -> list[list[float]]:
    """softmax(network(normalized point)) for every grid point (M, 2), in eval mode."""
    network.eval()
    rows = normalizer(points[:, :, None, None]).reshape(len(points), -1).tolist()
    probs = [softmax(network.forward(row)) for row in rows]
    network.train()
    return probs


class FrameRecorder:
    """Called after each epoch (``--animate``): the boundary on a coarse grid, every few epochs."""

    def __init__(self, data, epochs: int):
        self.data, self.frames = data, []
        self.every = max(1, math.ceil(epochs / MAX_FRAMES))
        self.extent, self.grid = toyplots.plane_grid(data.x_train.reshape(len(data.x_train), -1), steps=40)

    def __call__(self, trainer):
        if trainer.epoch % self.every == 0 or trainer.epoch == 1:
            acc = (trainer.history["val_acc"] or trainer.history["acc"])[-1]
            self.frames.append((f"epoch {trainer.epoch}  acc {acc:.3f}",
                                grid_probabilities(trainer.network, self.data.normalizer, self.grid)))


def save_figures(args, data, trainer, run, recorder=None) -> list:
    """boundary.png (and boundary.gif with --animate) for a toy task."""
    x = data.x_train.reshape(len(data.x_train), -1)
    extent, grid = toyplots.plane_grid(x, steps=GRID_STEPS)
    probs = grid_probabilities(trainer.network, data.normalizer, grid)
    sizes = "-".join(str(v) for v in [x.shape[1], *args.hidden_sizes, data.num_classes])
    paths = [toyplots.plot_decision_boundary(extent, probs, x, data.y_train, run.plot_path("boundary"),
                                             title=f"{data.name}: scalar mlp {sizes}")]
    if recorder is not None and recorder.frames:
        paths.append(toyplots.animate_boundary(recorder.frames, recorder.extent, x, data.y_train,
                                               run.path / "boundary.gif"))
    return paths
