"""Train every tier and the small architectures on one dataset; write the results as JSON.

    python scripts/results.py --dataset sklearn-digits          # -> tutorial/data/results-sklearn-digits.json
    python scripts/results.py --dataset mnist --epochs 5 --models mlp,lenet,resnet18

Each model is trained by its own command-line entry point with the same seed, so every number
can be reproduced by the command recorded next to it. The JSON holds, per model: the command,
parameter count, training history (loss, accuracy, validation accuracy per epoch), test
accuracy, the test confusion matrix (tiers 2 and 3) and the training time. The tutorial's
results page renders every ``tutorial/data/results-*.json`` it finds. Where a dataset cannot be
downloaded, the script stops with the loader's one-line error and writes nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file from any folder

from common.cli.entry import without_options  # noqa: E402
from common.errors import UserError  # noqa: E402

CONV_MODELS = ("lenet", "baseline", "alexnet", "vgg16", "resnet18", "efficientnet_lite0", "convnext_tiny")
ALL_MODELS = ("scalar", "mlp") + CONV_MODELS
DEFAULT_MODELS = ("scalar", "mlp", "lenet", "baseline", "resnet18")


def _common_flags(args, run_dir):
    flags = ["--dataset", args.dataset, "--epochs", str(args.epochs), "--seed", str(args.seed),
             "--run-dir", str(run_dir)]
    if args.data_dir:
        flags += ["--data-dir", str(args.data_dir)]
    return flags


def _shown(argv):
    """The command as a reader would type it: without this machine's folders."""
    return " ".join(without_options(argv, ("--run-dir", "--data-dir")))


def run_scalar(args, run_dir):
    """Tier 1 in a subprocess (pure Python is slow: one small hidden layer); read its run folder."""
    argv = ["scalar/main.py", *_common_flags(args, run_dir), "--limit", "0", "--hidden-sizes", "32"]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"scalar/main.py failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    match = re.search(r"test acc ([\d.]+)%", done.stdout)
    folder = next(Path(run_dir).glob("scalar-mlp-*"))
    rows = list(csv.DictReader((folder / "metrics.csv").open()))
    params = re.search(r"params=([\d,]+)", done.stdout)
    return {"tier": "scalar", "command": "python " + _shown(argv),
            "params": int(params.group(1).replace(",", "")) if params else None,
            "history": {k: [float(r[k]) for r in rows if r.get(k) not in (None, "")] for k in rows[0]},
            "test_acc": float(match.group(1)) / 100 if match else None, "confusion": None,
            "seconds": time.perf_counter() - t0}


def run_vectorized_or_conv(args, name, run_dir):
    """Tiers 2 and 3 in this process through their launchers' parsers and ``run_experiment``."""
    from common import metrics
    from vectorized.experiment import run_experiment

    if name == "mlp":
        from vectorized import main as launcher
        argv = _common_flags(args, run_dir)
        kwargs = {"tier": "vectorized", "model_name": "mlp", "flatten_input": True}
        script = "vectorized/main.py"
    else:
        from convolutional import main as launcher
        argv = [name, *_common_flags(args, run_dir)]
        kwargs = {"tier": "convolutional", "model_name": name}
        script = "convolutional/main.py"
    parsed = launcher.build_parser().parse_args(argv)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = run_experiment(parsed, build_model=launcher.model_builder(parsed), quiet=True, **kwargs)
    seconds = time.perf_counter() - t0
    data = out["data"]
    pred = out["trainer"].evaluate(data.x_test, data.y_test)["pred"]
    cm = metrics.confusion_matrix(data.y_test, pred, data.num_classes)
    return {"tier": kwargs["tier"], "command": f"python {script} " + _shown(argv),
            "params": int(out["model"].num_parameters()),
            "history": {k: [float(v) for v in vals] for k, vals in out["history"].items()},
            "test_acc": float(out["test_acc"]), "confusion": cm.tolist(), "seconds": seconds}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="sklearn-digits", help="a registered dataset (default sklearn-digits)")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset cache folder")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per model (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated, from {','.join(ALL_MODELS)} (default {','.join(DEFAULT_MODELS)})")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default tutorial/data/results-<dataset>.json)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown or not models:
        parser.error(f"--models: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(ALL_MODELS)}")
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    from common.data import load_dataset

    data = load_dataset(args.dataset, args.data_dir, progress=False)   # fails early, with the loader's message
    out_path = args.out or ROOT / "tutorial" / "data" / f"results-{data.name}.json"
    results = {"dataset": data.name, "description": data.describe(), "epochs": args.epochs, "seed": args.seed,
               "class_names": list(data.class_names), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            print(f"[results] {name} ...", flush=True)
            run_dir = Path(tmp) / name
            entry = run_scalar(args, run_dir) if name == "scalar" else run_vectorized_or_conv(args, name, run_dir)
            results["models"][name] = entry
            print(f"[results] {name}: test accuracy {entry['test_acc']:.4f} ({entry['seconds']:.0f} s)", flush=True)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(results, indent=1) + "\n")   # after each model: a stopped run keeps its results
    print(f"[results] wrote {out_path}")
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
