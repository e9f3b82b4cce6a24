"""Helpers the quickstarts share: narration, variations of one set of flags, comparison tables."""
from __future__ import annotations

import copy
import textwrap
from pathlib import Path

from common import plots
from common.cli import RunDir


def narrate(step: int, total: int, title: str, text: str = "") -> None:
    """Print a numbered step header and a short explanation."""
    print(f"\n=== step {step}/{total}: {title} ===", flush=True)
    if text:
        print(textwrap.fill(" ".join(text.split()), width=100), flush=True)


def variant(args, **changes):
    """A copy of the parsed flags with some values changed (the original stays as it was)."""
    new = copy.copy(args)
    for key, value in changes.items():
        setattr(new, key, value)
    return new


def swap_dataset(args, preferred: str = "fashion-mnist", offline: str = "synth-digits-rgb") -> str:
    """The dataset a dataset-swap scenario trains on: --dataset when given, else ``preferred`` when it
    is cached or can be downloaded, else ``offline`` (generated, so always there). Says once which.

    Both choices differ from the default digits, so the swap shows something new even offline.
    """
    from common.cli import dataset_is_explicit
    from common.data import load_dataset
    from common.errors import DataError

    if dataset_is_explicit(args):
        return args.dataset
    try:
        load_dataset(preferred, args.data_dir, explicit=True, seed=args.seed)
        print(f"[quickstart] dataset-swap: the default digits are swapped for {preferred}")
        return preferred
    except DataError as exc:
        reason = str(exc).split(";")[0].split("(")[0].strip()
        print(f"[quickstart] dataset-swap: {preferred} is not available ({reason}); the default digits are "
              f"swapped for {offline} instead (pass --dataset NAME or a folder to choose)")
        return offline


def scenario_dir(args, scenario: str) -> RunDir:
    """A folder holding the scenario's table and figures, with one sub-folder per run."""
    return RunDir(args.run_dir, f"quickstart-{scenario}")


def compare(runs, run_one, out_dir: RunDir, *, title: str, plot: bool, extra_columns=None):
    """Run each (label, args) pair with ``run_one(args)``, then print a table and overlay the curves.

    ``run_one`` returns the dict of ``vectorized.experiment.run_experiment``. Returns {label: result}.
    """
    results = {}
    for i, (label, args) in enumerate(runs, 1):
        narrate(i, len(runs), f"{title}: {label}")
        results[label] = run_one(variant(args, run_dir=Path(out_dir.path), run_name=_slug(label), plot=False))
    print_table(results, extra_columns or {})
    if plot:
        histories = {label: r["history"] for label, r in results.items() if r["history"]}
        if histories:
            metric = "val_acc" if all("val_acc" in h for h in histories.values()) else "acc"
            path = plots.plot_histories(histories, out_dir.plot_path(f"compare-{metric}"), metric=metric)
            print(f"[plot] {path}")
            path = plots.plot_histories(histories, out_dir.plot_path("compare-loss"), metric="loss")
            print(f"[plot] {path}")
    return results


def print_table(results: dict, extra_columns: dict) -> None:
    """One row per run: final train loss, best validation accuracy, test accuracy, seconds per epoch."""
    header = ["run", *extra_columns, "train loss", "best val acc", "test acc", "s/epoch"]
    rows = []
    for label, r in results.items():
        h = r["history"]
        val = max(h["val_acc"]) if h.get("val_acc") else float("nan")
        sec = sum(h["time"]) / len(h["time"]) if h.get("time") else float("nan")
        loss = h["loss"][-1] if h.get("loss") else float("nan")
        rows.append([label, *(str(fn(r)) for fn in extra_columns.values()),
                     f"{loss:.4f}", f"{100 * val:.2f}%", f"{100 * r['test_acc']:.2f}%", f"{sec:.1f}"])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(header, widths))
    print("\n" + line + "\n" + "-" * len(line))
    for row in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(row, widths)))


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in label).strip("-") or "run"
