"""Run folders as records: what a run saved, read back for listing, comparing and reporting.

A run folder holds::

    config.yaml      the merged flags (common.config); --config config.yaml repeats the run
    config.json      tier, architecture, dataset, class names, normalization
    metrics.csv      one row per epoch: epoch, loss, acc, val_loss, val_acc, lr, ...
    results.json     test loss and accuracy (tiers 2 and 3)
    predictions.npz  the test set's labels and class probabilities, and its worst-classified images
    last.h5, best.h5 checkpoints

:func:`save_predictions` writes ``predictions.npz`` where a launcher finishes; :class:`Run` reads a
folder back; :func:`find_runs` finds every run under a folder (sweeps included).
"""
from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import UserError

WORST = 32  # worst-classified test images kept in predictions.npz


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of (N, K) scores, shifted by the row maximum so exp cannot overflow."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def save_predictions(run_path, y_true, logits, images, class_names, *, test_loss=None, worst: int = WORST) -> Path:
    """Write ``predictions.npz``: labels (N,), probabilities (N, K), and the ``worst`` test images.

    ``images``: the test images (N, C, H, W) uint8. The worst-classified are the misclassified ones
    whose true class got the lowest probability: p_true = probs[i, y_i], smallest first.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = softmax(logits).astype(np.float32)
    pred = probs.argmax(axis=1)
    p_true = probs[np.arange(len(y_true)), y_true]
    wrong = np.flatnonzero(pred != y_true)
    order = wrong[np.argsort(p_true[wrong], kind="stable")][:worst]
    out = Path(run_path) / "predictions.npz"
    np.savez_compressed(out, y_true=y_true, probs=probs, class_names=np.asarray([str(c) for c in class_names]),
                        worst_index=order, worst_images=np.asarray(images)[order].astype(np.uint8),
                        test_loss=np.float64(np.nan if test_loss is None else test_loss))
    return out


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class Run:
    """One run folder read back: settings, per-epoch metrics, test results."""

    path: Path
    settings: dict = field(default_factory=dict)   # config.yaml (the flags), else config.json's args
    info: dict = field(default_factory=dict)       # config.json
    metrics: dict = field(default_factory=dict)    # metrics.csv as {column: [values]}
    results: dict = field(default_factory=dict)    # results.json, or the accuracy in predictions.npz

    @classmethod
    def load(cls, path) -> "Run":
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path} is not a run folder (it does not exist)")
        if not any((path / n).exists() for n in ("config.yaml", "config.json", "metrics.csv")):
            raise UserError(f"{path} is not a run folder: it has no config.yaml, config.json or metrics.csv")
        run = cls(path)
        if (path / "config.json").exists():
            run.info = _read_json(path / "config.json")
        if (path / "config.yaml").exists():
            from common.config import read_yaml

            run.settings = {str(k): v for k, v, _ in read_yaml(path / "config.yaml")}
        elif isinstance(run.info.get("args"), dict):
            run.settings = {k.replace("_", "-"): v for k, v in run.info["args"].items() if v is not None}
        if (path / "metrics.csv").exists():
            run.metrics = read_metrics(path / "metrics.csv")
        if (path / "results.json").exists():
            run.results = _read_json(path / "results.json")
        elif (path / "predictions.npz").exists():
            p = run.predictions()
            run.results = {"test_acc": float((p["probs"].argmax(1) == p["y_true"]).mean()),
                           "test_loss": float(p["test_loss"])}
        return run

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def tier(self) -> str:
        return str(self.info.get("tier", "?"))

    @property
    def model(self) -> str:
        arch = self.info.get("architecture", self.settings.get("arch", "?"))
        if self.tier == "scalar" and "hidden_sizes" in self.info:
            arch = "mlp-" + "-".join(str(s) for s in self.info["hidden_sizes"])
        return str(arch)

    @property
    def dataset(self) -> str:
        return str(self.info.get("dataset", self.settings.get("dataset", "?")))

    @property
    def epochs_done(self) -> int:
        return len(self.metrics.get("epoch", []))

    @property
    def finished(self) -> bool:
        return bool(self.results)

    def final(self, key: str) -> float:
        values = self.metrics.get(key) or [math.nan]
        return values[-1]

    def best(self, key: str) -> float:
        values = [v for v in self.metrics.get(key, []) if not math.isnan(v)]
        if not values:
            return math.nan
        return min(values) if key.endswith("loss") else max(values)

    @property
    def test_acc(self) -> float:
        return _number(self.results.get("test_acc"))

    @property
    def test_loss(self) -> float:
        return _number(self.results.get("test_loss"))

    @property
    def history(self) -> dict:
        """metrics.csv as a Trainer-style history (the 'epoch' and 'time' columns left out)."""
        return {k: v for k, v in self.metrics.items() if k not in ("epoch", "time")}

    def predictions(self):
        """The arrays of predictions.npz; UserError when the run saved none."""
        path = self.path / "predictions.npz"
        if not path.exists():
            raise UserError(f"{self.path} has no predictions.npz: the run did not finish its test "
                            "evaluation (or was made before runs saved their test predictions)")
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise UserError(f"{path} is not a readable predictions file: {exc}") from None


def _read_json(path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); the run folder is damaged") from None
    return data if isinstance(data, dict) else {}


def read_metrics(path) -> dict[str, list[float]]:
    """metrics.csv -> {column: [float per epoch]} (empty cells become NaN)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    columns = list(rows[0]) if rows else []
    return {c: [_number(r.get(c)) for r in rows] for c in columns}


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / "metrics.csv").exists() and (
        (path / "config.yaml").exists() or (path / "config.json").exists())


def find_runs(root) -> list[Run]:
    """Every run folder under ``root`` (at any depth), oldest first."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} does not exist; train a model first (its runs go to runs/) or name the folder")
    folders = sorted({p.parent for p in root.rglob("metrics.csv") if is_run_folder(p.parent)},
                     key=lambda p: (p.stat().st_mtime, str(p)))
    runs = []
    for folder in folders:
        try:
            runs.append(Run.load(folder))
        except UserError as exc:  # one damaged folder does not hide the others
            print(f"[warn] skipped {folder}: {exc}", file=sys.stderr)
    return runs


def differing_settings(runs, ignore=("run-dir", "run-name", "config")) -> list[str]:
    """The setting keys that every run has but not with the same value (in the first run's order).

    Flags only one launcher has (runs of different tiers) are left out: the model column tells them apart.
    """
    if not runs:
        return []
    shared = [k for k in runs[0].settings if k not in ignore and all(k in r.settings for r in runs)]
    return [k for k in shared if len({repr(r.settings[k]) for r in runs}) > 1]


def format_value(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    return "-" if value is None else str(value)


def format_table(header, rows) -> str:
    """A plain-text table with columns padded to their widest cell."""
    cells = [[str(h) for h in header]] + [[format_value(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def metric_pct(value) -> float:
    """An accuracy in [0, 1] as a percentage (NaN stays NaN)."""
    return round(value * 100, 1) if not math.isnan(value) else value


def compare_table(runs, book: dict | None = None) -> str:
    """Runs side by side: the settings that differ, then final and best metrics and test accuracy.

    ``book``: a sweep's sweep.json; then every planned run gets a row (in the sweep's order) with
    its status, including runs that failed before making a folder.
    """
    by_name = {r.name: r for r in runs}
    rows = []  # (label, run or None, settings, status)
    if book is not None:
        for item in book["plan"]:
            state = book["trials"][item["id"]]
            run = by_name.get(state.get("run") or "")
            rows.append((item["id"], run, run.settings if run else item["params"], state["status"]))
    else:
        rows = [(r.name, r, {"model": f"{r.tier}/{r.model}", **r.settings},
                 "done" if r.finished else f"stopped ({r.epochs_done} epochs)") for r in runs]

    class _Settings:  # differing_settings reads .settings
        def __init__(self, settings):
            self.settings = settings

    present = [_Settings(s) for _, run, s, _ in rows if run is not None]
    keys = differing_settings(present) if len(present) > 1 else []
    if book is not None:  # the values a sweep varies come first, even where only one run has a folder
        varied = list(dict.fromkeys(k for item in book["plan"] for k in item["params"]))
        keys = varied + [k for k in keys if k not in varied]
    header = ["run", *keys, "epochs run", "final loss", "final val loss", "best val acc %", "test acc %", "status"]
    table = []
    for label, run, settings, status in rows:
        if run is None:
            metrics = ["-"] * 5
        else:
            metrics = [run.epochs_done, run.final("loss"), run.final("val_loss"),
                       metric_pct(run.best("val_acc")), metric_pct(run.test_acc)]
        table.append([label, *[settings.get(k, "-") for k in keys], *metrics, status])
    text = format_table(header, table)
    errors = [f"  {item['id']}: {book['trials'][item['id']].get('error')}" for item in (book or {}).get("plan", [])
              if book["trials"][item["id"]].get("error")]
    return text + ("\nfailed runs:\n" + "\n".join(errors) if errors else "")
