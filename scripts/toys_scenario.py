"""The ``toys`` scenario of ``quickstart_vectorized.py``: every toy task, narrated, in one table.

Each task trains with its own recipe (``vectorized.playground.RECIPES``); the runs' epoch logs
go to ``log.txt`` in their folders so the narration stays readable.  With ``--plot`` the
decision boundaries of the classification tasks and the fitted curves of the regression tasks
are drawn side by side.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from common import toyplots
from common.data.toys import TOYS
from scripts.scenarios import narrate, variant

CLASSIFICATION = ("moons", "rings", "blobs", "xor", "spirals")
REGRESSION = ("piecewise", "sine")


def _run_quietly(args, run_dir: Path, name: str):
    """One run with its epoch log written to <run>/log.txt; returns run_experiment's dict."""
    from vectorized.experiment import run_experiment
    from vectorized.main import model_builder
    from vectorized.playground import recipe_for

    recipe = {"hidden_activations": None, "activation": "relu", **recipe_for(name)}
    a = variant(args, dataset=name, run_dir=run_dir, run_name=name, plot=False, animate=False, limit=0,
                val_split=0.1, loss=None, **recipe)
    log = run_dir / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f, contextlib.redirect_stdout(f):
        result = run_experiment(a, tier="vectorized", model_name="mlp", build_model=model_builder(a),
                                flatten_input=True, quiet=True)
    result["recipe"], result["log"] = recipe, log
    return result


def _describe(recipe) -> str:
    sizes = "-".join(map(str, recipe["hidden_sizes"]))
    return f"hidden {sizes} {recipe.get('activation', 'relu')}, {recipe['epochs']} epochs, lr {recipe['lr']}"


def run_toys(args, out) -> dict:
    """Train every toy task; print what each shows and a table; draw the figures with --plot."""
    folder = Path(out.path)
    results = {}
    narrate(1, 2, "classification in the plane",
            "Five point clouds, two features each. A linear model can only cut the plane with a straight "
            "line; the hidden layers bend it. Moons and XOR need one bend, rings a closed curve, spirals "
            "a boundary that winds around the origin, so they get a wider net and more epochs.")
    for name in CLASSIFICATION:
        r = results[name] = _run_quietly(args, folder, name)
        print(f"  {name:<9} test accuracy {100 * r['test_acc']:6.2f}%   ({_describe(r['recipe'])}; log {r['log']})")
    narrate(2, 2, "regression on a line",
            "One input, one linear output unit, mean squared error. The piecewise target is two ReLUs, "
            "max(0, 0.5x + 0.2) + 0.3 max(0, -x + 0.5), so 16 ReLU units fit it with room to spare; the sine "
            "is smooth and needs tanh units. R^2 = 1 - SS_res / SS_tot: 1 is a perfect fit, 0 is the mean.")
    for name in REGRESSION:
        r = results[name] = _run_quietly(args, folder, name)
        print(f"  {name:<9} test R^2 {r['test_r2']:.4f}   ({_describe(r['recipe'])}; log {r['log']})")
    print("\n| task | kind | test score |\n|---|---|---|")
    for name, r in results.items():
        score = f"{100 * r['test_acc']:.2f}% accuracy" if TOYS[name].task == "classification" \
            else f"R^2 {r['test_r2']:.4f}"
        print(f"| {name} | {TOYS[name].description} | {score} |")
    if args.plot:
        for path in _figures(results, out):
            print(f"[plot] {path}")
    return results


def _figures(results, out) -> list:
    paths = []
    for name in CLASSIFICATION:
        r = results[name]
        x = r["data"].x_train.reshape(len(r["data"].x_train), -1)
        extent, grid = toyplots.plane_grid(x, steps=100)
        probs = r["trainer"].predict_proba(grid[:, :, None, None])
        paths.append(toyplots.plot_decision_boundary(extent, probs, x, r["data"].y_train,
                                                     out.plot_path(f"toys-{name}"),
                                                     title=f"{name}: {100 * r['test_acc']:.1f}% test"))
    for name in REGRESSION:
        r = results[name]
        x = r["data"].x_train.reshape(-1, 1)
        line = toyplots.line_grid(x)
        paths.append(toyplots.plot_regression_fit(x, r["data"].y_train, line,
                                                  r["trainer"].predict(line[:, :, None, None]),
                                                  out.plot_path(f"toys-{name}"), target=TOYS[name].target,
                                                  title=f"{name}: test R^2 {r['test_r2']:.3f}"))
    return paths
