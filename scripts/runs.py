"""List, compare and report training runs (the folders the launchers write under runs/).

    python scripts/runs.py list
    python scripts/runs.py compare runs/sweeps/optimizers
    python scripts/runs.py compare runs/vectorized-mlp-20260101-120000 runs/convolutional-lenet-20260101-121500
    python scripts/runs.py report runs/convolutional-lenet-20260101-121500
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from any folder

from common import cli  # noqa: E402
from common.errors import UserError  # noqa: E402

EXAMPLES = [
    "python scripts/runs.py list",
    "python scripts/runs.py list runs/sweeps/optimizers",
    "python scripts/runs.py compare runs/sweeps/optimizers",
    "python scripts/runs.py compare runs/<run-a> runs/<run-b> --out figures/",
    "python scripts/runs.py report runs/<run>",
]


def build_parser():
    parser = cli.make_parser(__doc__.split("\n")[0], EXAMPLES, config=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=cli.ArgumentParser)
    p = sub.add_parser("list", help="every run under a folder: key settings and best metrics",
                       formatter_class=cli.HelpFormatter)
    p.add_argument("folder", nargs="?", type=Path, default=Path("runs"), metavar="DIR",
                   help="where to look, at any depth")
    p = sub.add_parser("compare", help="the settings that differ, final and best metrics, overlaid curves",
                       formatter_class=cli.HelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN|SWEEP",
                   help="two or more run folders, or one sweep folder (or any folder holding runs)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where the PNG plots go (default: the sweep folder, else the runs' parent folder)")
    p = sub.add_parser("report", help="a self-contained HTML page about one run",
                       formatter_class=cli.HelpFormatter)
    p.add_argument("run", type=Path, metavar="RUN", help="a run folder")
    p.add_argument("--out", type=Path, default=None, metavar="FILE.html", help="default: RUN/report.html")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def list_runs(folder: Path) -> str:
    from common.tracking import find_runs, format_table, metric_pct

    runs = find_runs(folder)
    if not runs:
        return f"no runs under {folder} (a run folder holds metrics.csv and config.yaml or config.json)"
    rows = []
    for run in runs:
        s = run.settings
        rows.append([str(run.path.relative_to(folder)) if run.path != folder else run.name, run.tier, run.model,
                     run.dataset, f"{run.epochs_done}/{s.get('epochs', '?')}", s.get("optimizer", "-"),
                     s.get("lr", "-"), s.get("batch-size", "-"), metric_pct(run.best("val_acc")),
                     metric_pct(run.test_acc), "done" if run.finished else "stopped"])
    header = ["run", "tier", "model", "dataset", "epochs", "optimizer", "lr", "batch", "best val acc %",
              "test acc %", "status"]
    return format_table(header, rows) + f"\n{len(runs)} run{'' if len(runs) == 1 else 's'} under {folder}"


def collect(paths: list[Path]):
    """(runs, sweep book or None, default plot folder) for the paths given to compare."""
    from common.sweep import read_book
    from common.tracking import Run, find_runs, is_run_folder

    if len(paths) == 1 and not is_run_folder(paths[0]):
        folder = paths[0]
        book = read_book(folder) if folder.is_dir() else None
        runs = find_runs(folder)
        if book is not None:
            order = {item["id"]: i for i, item in enumerate(book["plan"])}
            names = {t.get("run"): tid for tid, t in book["trials"].items()}
            runs = sorted((r for r in runs if r.name in names), key=lambda r: order[names[r.name]])
        if not runs and book is None:
            raise UserError(f"{folder} holds no run folders; name run folders or a sweep folder")
        return runs, book, folder
    runs = [Run.load(p) for p in paths]
    if len(runs) < 2:
        raise UserError("compare needs two or more runs, or one sweep folder")
    parent = paths[0].resolve().parent
    return runs, None, parent


def compare(paths: list[Path], out: Path | None) -> str:
    from common import plots
    from common.tracking import compare_table

    runs, book, default_out = collect(paths)
    lines = [compare_table(runs, book)]
    out = out or default_out
    labels = {}
    for run in runs:
        label = run.name
        if book is not None:
            label = next((tid for tid, t in book["trials"].items() if t.get("run") == run.name), run.name)
        labels[label] = run.history
    histories = {k: h for k, h in labels.items() if h.get("loss")}
    if histories:
        out.mkdir(parents=True, exist_ok=True)
        lines.append("")
        lines.append(f"[plot] {plots.plot_histories(histories, out / 'compare-loss.png', metric='loss')}")
        metric = "val_acc" if all(h.get("val_acc") for h in histories.values()) else "acc"
        lines.append(f"[plot] {plots.plot_histories(histories, out / f'compare-{metric}.png', metric=metric)}")
    return "\n".join(lines)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        print(list_runs(args.folder))
    elif args.command == "compare":
        print(compare(args.runs, args.out))
    else:
        from common.report import write_report

        print(f"[report] {write_report(args.run, args.out)}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
