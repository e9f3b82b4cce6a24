"""Run folders (config, metrics, plots, checkpoints of one run) and the one-line run header."""
from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

from common.errors import UserError

class RunDir:
    """A folder per run, ``<base>/<name>-<YYYYmmdd-HHMMSS>/``: config, metrics, plots, checkpoints."""

    def __init__(self, base="runs", name: str = "run", *, path=None):
        if path is not None:  # reopen an existing run folder, e.g. to resume
            self.path = Path(path)
            self.path.mkdir(parents=True, exist_ok=True)
            return
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(base).expanduser()
        base.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            candidate = base / (f"{name}-{stamp}" + (f"-{n}" if n > 1 else ""))
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            self.path = candidate
            return
        raise UserError(f"cannot create a run folder under {base}")

    @classmethod
    def for_checkpoint(cls, checkpoint_path) -> "RunDir":
        """The run folder a checkpoint lives in (``--resume runs/x/last.h5`` logs to runs/x)."""
        return cls(path=Path(checkpoint_path).expanduser().parent)

    def save_config(self, config: dict) -> Path:
        out = self.path / "config.json"
        out.write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")
        return out

    def log_metrics(self, row: dict) -> Path:
        """Append one row to metrics.csv; the header comes from the first row ever written."""
        out = self.path / "metrics.csv"
        if out.exists() and out.stat().st_size > 0:
            with out.open(newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh))
        else:
            header = list(row)
            with out.open("w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(header)
        with out.open("a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=header, extrasaction="ignore").writerow(row)
        return out

    def rewrite_metrics(self, history: dict) -> Path:
        """Write metrics.csv anew from a checkpoint's history, one row per epoch it holds.

        After a resume, rows of epochs the checkpoint does not hold (a run that went on, or
        crashed after logging) would disagree with it; the checkpoint is the truth.
        """
        out = self.path / "metrics.csv"
        n = max((len(v) for v in history.values()), default=0)
        header = []
        if out.exists() and out.stat().st_size > 0:
            with out.open(newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
        header = header or ["epoch"] + [k for k in history if k != "epoch"]
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
            writer.writeheader()
            for i in range(n):
                row = {"epoch": i + 1}
                row.update({k: v[i] for k, v in history.items() if i < len(v)})
                writer.writerow(row)
        return out

    def checkpoint_path(self, kind: str = "last") -> Path:
        if kind not in ("last", "best"):
            raise ValueError(f"checkpoint kind must be 'last' or 'best', got {kind!r}")
        return self.path / f"{kind}.h5"

    def plot_path(self, name: str) -> Path:
        return self.path / (name if Path(name).suffix else f"{name}.png")

    def __fspath__(self):
        return str(self.path)

    def __str__(self):
        return str(self.path)


def run_header(*, tier, model, dataset, fell_back=False, device, seed, params, extra=None) -> str:
    """The one line every run prints first.

    ``fell_back``: False, True (MNIST was unavailable) or a reason string.
    """
    data = str(dataset)
    if fell_back:
        data += f" (fallback: {'mnist unavailable' if fell_back is True else fell_back})"
    parts = [f"tier={tier}", f"model={model}", f"dataset={data}", f"device={device}", f"seed={seed}",
             f"params={params:,}" if isinstance(params, int) else f"params={params}"]
    parts += [f"{k}={v}" for k, v in (extra or {}).items()]
    return "[nnott] " + " ".join(parts)


