"""Run a sweep: a grid or a seeded random search over a launcher's flags, one run folder per run.

    python scripts/sweep.py configs/sweeps/optimizers.yaml
    python scripts/sweep.py configs/sweeps/lr-random.yaml --jobs 2

Every run is the launcher itself (``python <tier>/main.py --config <sweep>/configs/<run>.yaml``),
in its own folder under the sweep folder. Running the same command again skips the finished runs
and resumes interrupted ones from their last checkpoint; a run that fails is marked failed with
its error line and the others go on.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from any folder

from common import cli  # noqa: E402
from common.config import ConfigError, dump_yaml  # noqa: E402
from common.sweep import LAUNCHERS, SweepBook, launcher_name, load_sweep, read_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [
    "python scripts/sweep.py configs/sweeps/optimizers.yaml",
    "python scripts/sweep.py configs/sweeps/lr-random.yaml --jobs 2",
    "python scripts/sweep.py configs/sweeps/optimizers.yaml --dry-run",
    "python scripts/runs.py compare runs/sweeps/optimizers",
]


def build_parser():
    parser = cli.make_parser(__doc__.split("\n")[0], EXAMPLES, config=False)
    parser.add_argument("sweep", type=Path, metavar="SWEEP.yaml", help="the sweep file (see configs/sweeps/)")
    parser.add_argument("--jobs", type=cli.positive_int, default=1, metavar="N",
                        help="runs at a time (the CPU cores are shared out between them)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="sweep folder (default: the file's 'out', else runs/sweeps/<file name>)")
    parser.add_argument("--retry-failed", action="store_true", help="run the failed runs again")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def launcher_parser(name: str):
    """The launcher's own parser, to check the sweep's flags before anything runs."""
    import importlib

    return importlib.import_module(LAUNCHERS[name].replace("/", ".").removesuffix(".py")).build_parser()


def error_line(log_path: Path, returncode: int) -> str:
    """The line that says why a run failed: its last 'error' line, else its last line."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if ln.strip()]
    except OSError:
        lines = []
    errors = [ln for ln in lines if "error:" in ln]
    return (errors or lines or [f"exit code {returncode}"])[-1][:300]


def find_run_folder(folder: Path, trial_id: str) -> Path | None:
    """The newest run folder the launcher made for this trial (``<id>-<date>-<time>``)."""
    found = [p for p in folder.glob(f"{trial_id}-*") if p.is_dir() and (p / "config.json").exists()]
    return max(found, key=lambda p: p.name) if found else None


class Runner:
    """Runs trials as subprocesses and records each outcome in the book."""

    def __init__(self, sweep, book: SweepBook, jobs: int):
        self.sweep, self.book, self.jobs = sweep, book, jobs
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_MININTERVAL="10")  # fewer bar updates in the logs
        if jobs > 1:  # share the cores out: each run starts with cores // jobs BLAS threads
            share = str(max(1, (os.cpu_count() or 1) // jobs))
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                self.env.setdefault(var, share)

    def command(self, trial, config_path: Path) -> tuple[list[str], str]:
        folder = self.book.folder
        previous = find_run_folder(folder, trial.id)
        if previous is not None and (previous / "last.h5").exists():
            return ([sys.executable, str(ROOT / self.sweep.script), "--config", str(config_path),
                     "--resume", str(previous / "last.h5")], f"resumed from {previous.name}/last.h5")
        for stale in folder.glob(f"{trial.id}-*"):  # started, but stopped before its first checkpoint
            if stale.is_dir() and not any(stale.glob("*.h5")):
                shutil.rmtree(stale)
        return [sys.executable, str(ROOT / self.sweep.script), "--config", str(config_path)], "started"

    def run(self, trial, number: int, total: int) -> str:
        if self.stop.is_set():
            return "pending"
        folder = self.book.folder
        config_path = folder / "configs" / f"{trial.id}.yaml"
        log_path = folder / "logs" / f"{trial.id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv, how = self.command(trial, config_path)
        with self.lock:
            self.book.update(trial.id, status="running", error=None)
            print(f"[sweep] {number}/{total} {trial.id}: {how}", flush=True)
        t0 = time.perf_counter()
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env).returncode
        seconds = round(time.perf_counter() - t0, 1)
        run_folder = find_run_folder(folder, trial.id)
        status = {0: "done", 130: "interrupted"}.get(code, "failed")
        error = error_line(log_path, code) if status == "failed" else None
        with self.lock:
            self.book.update(trial.id, status=status, returncode=code, seconds=seconds, error=error,
                             run=run_folder.name if run_folder else None, log=str(log_path.relative_to(folder)))
            note = f"  {error}" if error else ""
            print(f"[sweep] {number}/{total} {trial.id}: {status} ({seconds:.1f}s){note}", flush=True)
        if code == 130:
            self.stop.set()
        return status


def write_trial_configs(sweep, folder: Path) -> None:
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    for trial in sweep.trials:
        values = {**trial.settings, "run-dir": str(folder), "run-name": trial.id}
        header = f"run {trial.id} of the sweep {sweep.path}"
        (folder / "configs" / f"{trial.id}.yaml").write_text(dump_yaml(values, header), encoding="utf-8")


def sweep_folder(args, sweep) -> Path:
    if args.out is not None:
        return args.out
    if sweep.out is not None:
        return sweep.out
    return Path("runs") / "sweeps" / sweep.path.stem


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        spec, lines = read_spec(args.sweep)
        name = launcher_name(args.sweep, spec["launcher"], lines.get(("launcher",)))
        sweep = load_sweep(args.sweep, launcher_parser(name))
        folder = sweep_folder(args, sweep)
        book = SweepBook(folder, sweep)
    except ConfigError as exc:
        parser.error(str(exc))
    total = len(sweep.trials)
    print(f"[sweep] {sweep.path}: {sweep.search} search, {total} runs of {sweep.script}, "
          f"{args.jobs} at a time, in {folder}")
    todo = []
    for n, trial in enumerate(sweep.trials, 1):
        state = book.get(trial.id)
        status = state["status"]
        if status == "done" or (status == "failed" and not args.retry_failed):
            why = f" ({state.get('error')}; --retry-failed runs it again)" if status == "failed" else ""
            print(f"[sweep] {n}/{total} {trial.id}: {status}, skipped{why}")
            continue
        todo.append((n, trial))
    if args.dry_run:
        for n, trial in todo:
            print(f"[sweep] {n}/{total} {trial.id}: would run {trial.params}")
        return 0
    book.save()
    write_trial_configs(sweep, folder)
    runner = Runner(sweep, book, args.jobs)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(runner.run, trial, n, total) for n, trial in todo]
        try:
            for future in as_completed(futures):
                future.result()
        except KeyboardInterrupt:  # the runs got the Ctrl-C too: each saves a checkpoint and stops
            runner.stop.set()
            for future in futures:
                future.cancel()
            print("\n[sweep] interrupted: waiting for the running runs to save their checkpoints", flush=True)
    return summarize(args, book, folder, runner.stop.is_set())


def summarize(args, book: SweepBook, folder: Path, interrupted: bool) -> int:
    from common.tracking import Run, compare_table

    statuses = {tid: t["status"] for tid, t in book.data["trials"].items()}
    runs = [Run.load(p) for p in book.run_folders()]
    if runs:
        print()
        print(compare_table(runs, book.data))
    counts = {s: list(statuses.values()).count(s) for s in dict.fromkeys(statuses.values())}
    print("\n[sweep] " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"; folder {folder}")
    if interrupted or any(s in ("running", "interrupted", "pending") for s in statuses.values()):
        print(f"[sweep] interrupted: run the same command again to resume "
              f"(python scripts/sweep.py {args.sweep}" + (f" --out {args.out}" if args.out else "") + ")")
        return 130
    print(f"[sweep] compare: python scripts/runs.py compare {folder}")
    return 1 if "failed" in statuses.values() else 0


def main(argv=None) -> int:
    return cli.run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
