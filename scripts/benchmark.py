"""Benchmark NNOTT against PyTorch on this machine: training and inference images/s, memory, FLOP/s.

    python scripts/benchmark.py                       # every model, 3 alternating repeats
    python scripts/benchmark.py --models mlp,lenet --quick
    python scripts/benchmark.py --models resnet18 --json out.json
    python scripts/benchmark.py --gpu                 # CuPy against torch CUDA

One measurement is a training step (forward + cross-entropy + backward + Adam) or an
inference step (eval mode, forward only) on one batch of 64 float32 images (``--batch-size``),
timed after warm-up; the figure is the median images/s over the timed steps. Each model
runs in its own child process, ours and PyTorch's in separate ones, so each peak RSS belongs
to one model in one framework. PyTorch gets our initial weights (and must reproduce our
logits), the same batch and the same thread count, and the two alternate segment by segment
for ``--repeats`` rounds; the ratio ours/torch is given per round, with its min and max.

FLOPs per image are counted from the layer shapes (a conv 2*k*k*Cin/g*Cout*OH*OW, a linear
layer 2*in*out, training ~3x forward) and compared with a float32 GEMM measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.bench.machine import blas_threads, describe, machine_info
from scripts.bench.report import format_gflops
from scripts.bench.workloads import MODELS

WORKER = ROOT / "scripts" / "bench" / "worker.py"
DEFAULT_ORDER = ["mlp", "scalar", "lenet", "baseline", "baseline_gap", "alexnet", "resnet18", "vgg16",
                 "efficientnet_lite0", "convnext_tiny"]


class BenchError(Exception):
    """A problem the user can fix; printed as one line."""


# ---------------------------------------------------------------------------- child processes
class Worker:
    """A running ``scripts/bench/worker.py``: send a JSON command, read one ``@@`` JSON reply."""

    def __init__(self, role: str, model: str, args, workdir: Path, log_name: str, engine: str | None = None):
        self.log_path = workdir / f"{log_name}.log"
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, str(WORKER), "--role", role, "--model", model,
               "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--workdir", str(workdir)]
        if args.gpu:
            cmd.append("--gpu")
        if role == "ours":
            cmd += ["--parallelism", args.parallelism, "--engine", engine or args.engine]
        if role == "gemm":
            cmd += ["--gemm-size", str(args.gemm_size), "--gemm-repeats", str(3 if args.quick else 7)]
            if args.torch_side:
                cmd.append("--gemm-torch")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, cwd=str(ROOT), env=env)

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                return json.loads(line[3:])
        self.proc.wait()
        return {"error": f"worker exited with code {self.proc.returncode}: {self.log_tail()}"}

    def ask(self, **cmd) -> dict:
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return {"error": f"worker is gone: {self.log_tail()}"}
        return self.read()

    def log_tail(self) -> str:
        self.log.flush()
        lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1] if lines else "(no output)"

    def close(self) -> dict:
        final = self.ask(cmd="quit") if self.proc.poll() is None else {}
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        return final


# ---------------------------------------------------------------------------- measuring
def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "per_repeat": values}


def measure_model(name: str, args, workdir: Path, bar) -> dict:
    """All repeats of one model: ours and torch alternating, segment by segment."""
    workload = MODELS[name]
    steps = args.steps or (workload.quick_steps if args.quick else workload.steps)
    # one warm-up step is plenty for the large models (a step takes seconds); two for the small ones
    warmup = args.warmup if args.warmup is not None else (1 if args.quick or workload.steps <= 8 else 2)
    result = {"model": name, "label": workload.label, "input_shape": list(workload.input_shape),
              "tier": workload.tier, "batch_size": args.batch_size,
              "steps": steps, "warmup": warmup}
    mdir = workdir / name
    mdir.mkdir()
    sides = {"ours": Worker("ours", name, args, mdir, "ours")}
    ready = {"ours": sides["ours"].read()}
    with_torch = args.torch_side and workload.has_torch and "error" not in ready["ours"]
    if with_torch:
        sides["torch"] = Worker("torch", name, args, mdir, "torch")
        ready["torch"] = sides["torch"].read()
    repeats = 1 if workload.tier == "scalar" else args.repeats
    if args.torch_side and workload.has_torch and not with_torch:
        bar.update(2 * repeats)  # the torch runs counted in the bar's total will not happen
    modes = ("train", "infer")
    segments = {side: {m: [] for m in modes} for side in sides}
    errors = {side: r["error"] for side, r in ready.items() if "error" in r}
    for r in range(repeats):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for mode in modes:
            for side in order:
                bar.set_postfix_str(f"{name} {side} {mode} {r + 1}/{repeats}")
                if side not in errors:
                    time.sleep(args.gap)  # let the other process's BLAS/OpenMP threads stop spinning
                    seg = sides[side].ask(cmd=mode, steps=steps, warmup=warmup, budget=args.budget)
                    if "error" in seg:
                        errors[side] = seg["error"]
                    else:
                        segments[side][mode].append(seg)
                bar.update(1)
    finals = {side: w.close() for side, w in sides.items()}
    if args.reference and workload.tier != "scalar" and "error" not in ready["ours"]:
        sides["reference"], ready["reference"], finals["reference"] = None, {}, {}
        segments["reference"] = measure_reference(name, args, mdir, bar, steps, ready, finals, errors)
    for side in sides:
        info = {k: v for k, v in ready[side].items() if k not in ("ready", "error")}
        info.update({k: v for k, v in finals[side].items() if k != "error"})
        for mode in modes:
            segs = segments[side][mode]
            if segs:
                info[f"{mode}_ips"] = statistics.median(s["ips"] for s in segs)
                info[f"{mode}_ips_per_repeat"] = [s["ips"] for s in segs]
                info[f"{mode}_step_ms"] = 1000 * statistics.median(s["median_s"] for s in segs)
                info[f"{mode}_steps_timed"] = [len(s["times"]) for s in segs]
        if segments[side]["train"]:
            info["loss_finite"] = all(s["finite"] for s in segments[side]["train"])
        if side in errors:
            info["error"] = errors[side]
        result[side] = info
    ours = result["ours"]
    result["params"] = ours.get("params")
    result["flops_fwd"] = ours.get("flops_fwd")
    if result["flops_fwd"]:
        result["flops_train"] = 3 * result["flops_fwd"]
    for side in sides:
        s = result[side]
        if result.get("flops_fwd") and "train_ips" in s:
            s["train_gflops"] = s["train_ips"] * result["flops_train"] / 1e9
            s["infer_gflops"] = s.get("infer_ips", 0) * result["flops_fwd"] / 1e9
    if "torch" in result:
        for mode in modes:
            a = result["ours"].get(f"{mode}_ips_per_repeat", [])
            b = result["torch"].get(f"{mode}_ips_per_repeat", [])
            if a and len(a) == len(b):
                result[f"ratio_{mode}"] = spread([x / y for x, y in zip(a, b)])
        if ours.get("peak_rss_mb") and result["torch"].get("peak_rss_mb"):
            result["rss_ratio"] = ours["peak_rss_mb"] / result["torch"]["peak_rss_mb"]
    ref = result.get("reference", {})
    for mode in modes:
        if ours.get(f"{mode}_ips") and ref.get(f"{mode}_ips"):
            result[f"engine_speedup_{mode}"] = ours[f"{mode}_ips"] / ref[f"{mode}_ips"]
    return result


def measure_reference(name, args, mdir, bar, steps, ready, finals, errors) -> dict:
    """The same model on the reference engine (each layer's own readable code): one train and one
    inference measurement of a few steps, so the table can show what the engine's tricks buy."""
    worker = Worker("ours", name, args, mdir, "reference", engine="reference")
    ready["reference"] = worker.read()
    segs = {"train": [], "infer": []}
    if "error" in ready["reference"]:
        errors["reference"] = ready["reference"]["error"]
    else:
        for mode in segs:
            bar.set_postfix_str(f"{name} reference {mode}")
            time.sleep(args.gap)
            seg = worker.ask(cmd=mode, steps=min(steps, 3), warmup=1, budget=args.budget)
            if "error" in seg:
                errors["reference"] = seg["error"]
                break
            segs[mode].append(seg)
            bar.update(1)
    finals["reference"] = worker.close()
    return segs


def measure_gemm(args, workdir: Path) -> dict:
    w = Worker("gemm", "mlp", args, workdir, "gemm")
    out = w.read()
    w.close()
    return out


# ---------------------------------------------------------------------------- output
def fmt_num(v, digits=0) -> str:
    if v is None:
        return "-"
    if v >= 100 or digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fmt_ratio(r) -> str:
    if not r:
        return "-"
    return f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]"


def table_rows(report: dict) -> list[list[str]]:
    """The summary table as rows of strings (used by the terminal print and the tutorial page)."""
    peak = (report.get("gemm") or {}).get("gflops")
    rows = [["model", "input", "params", "fwd MFLOP", "train ours", "train torch", "train ratio",
             "infer ours", "infer torch", "infer ratio", "GFLOP/s ours", "GFLOP/s torch",
             "RSS ours MB", "RSS torch MB", "train ref", "fast/ref"]]
    for m in report["models"]:
        o, t = m.get("ours", {}), m.get("torch", {})

        def gf(side):
            return format_gflops(side.get("train_gflops"), peak)

        rows.append([
            m["model"], "x".join(map(str, m["input_shape"])), fmt_num(m.get("params")),
            "-" if not m.get("flops_fwd") else f"{m['flops_fwd'] / 1e6:.2f}",
            fmt_num(o.get("train_ips"), 1), fmt_num(t.get("train_ips"), 1), fmt_ratio(m.get("ratio_train")),
            fmt_num(o.get("infer_ips"), 1), fmt_num(t.get("infer_ips"), 1), fmt_ratio(m.get("ratio_infer")),
            gf(o), gf(t), fmt_num(o.get("peak_rss_mb")), fmt_num(t.get("peak_rss_mb")),
            fmt_num(m.get("reference", {}).get("train_ips"), 1),
            "-" if not m.get("engine_speedup_train") else f"{m['engine_speedup_train']:.1f}x"])
    return rows


def print_table(report: dict) -> None:
    rows = table_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    print(describe(report["machine"]))
    g = report.get("gemm") or {}
    if g.get("gflops"):
        extra = f", torch {g['torch_gflops']:.0f}" if g.get("torch_gflops") else ""
        print(f"GEMM peak ({g.get('backend')}, float32 {g['size']}^3, median): {g['gflops']:.0f} GFLOP/s{extra}; "
              f"threads {report['threads']}, batch {report['batch_size']}; images/s are medians; ratio = ours/torch, median [min-max] over {report['repeats']} repeats")
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) if i and j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for m in report["models"]:
        for side in ("ours", "torch", "reference"):
            err = m.get(side, {}).get("error")
            if err:
                print(f"[{m['model']} {side}] {err}")
        diff = m.get("torch", {}).get("parity_rel_diff")
        if diff is not None and diff > 1e-3:
            print(f"[{m['model']}] warning: torch logits differ from ours by {diff:.1e} (relative): "
                  "not the same model?")


# ---------------------------------------------------------------------------- command line
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Training and inference throughput of NNOTT's models, side by side with PyTorch.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="models: " + ", ".join(DEFAULT_ORDER) + " (or 'all')\n\n"
               "examples:\n"
               "  python scripts/benchmark.py                                  # every model, against PyTorch on the CPU\n"
               "  python scripts/benchmark.py --models baseline --repeats 3 --budget 6\n"
               "  python scripts/benchmark.py --models mlp,lenet --quick       # a smoke run\n"
               "  python scripts/benchmark.py --models lenet --engine reference  # the readable layers alone\n"
               "  python scripts/benchmark.py --gpu --models resnet18          # CuPy against torch CUDA\n"
               "  python scripts/benchmark.py --no-torch --json out.json")
    p.add_argument("--models", default="all", help="comma-separated model names, or 'all' (default)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default: per model)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps before each measurement (default 2; 1 for the large models and --quick)")
    p.add_argument("--repeats", type=int, default=None,
                   help="alternating ours/torch rounds (default 3, 1 with --quick)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds after which a measurement stops once 3 steps are timed (default 15)")
    p.add_argument("--threads", type=int, default=None,
                   help="cores for both frameworks: NNOTT's cores and torch's threads (default: NumPy's BLAS thread count)")
    p.add_argument("--parallelism", choices=("auto", "blocks", "blas"), default="auto",
                   help="how NNOTT shares its cores: worker threads with one-thread BLAS ('blocks'), one thread "
                        "with BLAS on all cores ('blas'), or as the Trainer picks it from the FLOPs per batch "
                        "('auto', default)")
    p.add_argument("--engine", choices=("fast", "reference"), default="fast",
                   help="which engine 'ours' runs: the engine's replacements (fast) or every layer's own "
                        "readable code (reference)")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip the reference-engine measurement (by default each model is also timed for a "
                        "few steps on the reference engine, and the table shows fast/ref)")
    p.add_argument("--distributed", type=int, default=None, metavar="N",
                   help="data-parallel scaling instead: images/s and scaling efficiency of ResNet18 on 1..N "
                        "MPI ranks against one process (needs nnott[mpi]; runs scripts/bench_distributed.py)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write every figure to this file")
    p.add_argument("--quick", action="store_true", help="few steps, one round, small GEMM: a smoke run")
    p.add_argument("--gpu", action="store_true", help="CuPy against torch CUDA instead of the CPU")
    side = p.add_mutually_exclusive_group()
    side.add_argument("--torch", dest="torch_mode", action="store_const", const="require",
                      help="fail unless PyTorch is installed")
    side.add_argument("--no-torch", dest="torch_mode", action="store_const", const="skip",
                      help="time NNOTT only")
    p.add_argument("--gap", type=float, default=0.2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.torch_mode = args.torch_mode or "auto"
    return args


def resolve(args) -> list[str]:
    """Validate the flags and fill defaults; raises BenchError with a one-line reason."""
    names = [n.strip().lower().replace("-", "_") for n in args.models.split(",") if n.strip()]
    if not names:
        raise BenchError(f"--models {args.models!r} names no model; give names like mlp,lenet or 'all'")
    if args.budget is not None and not 0 < args.budget < float("inf"):
        raise BenchError(f"--budget must be a positive number of seconds, got {args.budget}")
    if names == ["all"]:
        names = list(DEFAULT_ORDER)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise BenchError(f"unknown model {unknown[0]!r}; choose from {', '.join(DEFAULT_ORDER)} or all")
    for flag in ("batch_size", "steps", "repeats", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise BenchError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    have_torch = find_spec("torch") is not None
    if args.torch_mode == "require" and not have_torch:
        raise BenchError("--torch was given but PyTorch is not installed (pip install torch)")
    args.torch_side = have_torch and args.torch_mode != "skip"
    if not have_torch and args.torch_mode != "skip":
        print("[note] PyTorch is not installed, so the torch columns show '-'; install the CPU build with "
              "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu", file=sys.stderr)
    if args.gpu:
        from common.backend import gpu_unavailable_reason

        reason = gpu_unavailable_reason()
        if reason:
            raise BenchError(f"--gpu needs CuPy and a CUDA device: {reason}")
    args.reference = args.reference and args.engine == "fast"
    args.threads = args.threads or blas_threads()
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.budget = args.budget or (5.0 if args.quick else 15.0)
    args.gemm_size = (4096 if args.gpu else 1024) if args.quick else (8192 if args.gpu else 2048)
    return names


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.distributed is not None:  # the data-parallel scaling benchmark: its own script
        if args.distributed < 1:
            print("error: --distributed must be at least 1", file=sys.stderr)
            return 2
        from scripts import bench_distributed

        extra = ["--json", str(args.json)] if args.json else []
        extra += ["--steps", str(args.steps)] if args.steps else []
        extra += ["--repeats", str(args.repeats)] if args.repeats else []
        return bench_distributed.main(["--ranks", ",".join(str(n) for n in range(1, args.distributed + 1)), *extra])
    try:
        names = resolve(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from tqdm.auto import tqdm

    info = machine_info()
    if info["env"].get("OPENBLAS_CORETYPE"):
        print(f"[note] OPENBLAS_CORETYPE={info['env']['OPENBLAS_CORETYPE']} is set: OpenBLAS may run a slower "
              "kernel than this CPU supports (see the blas architecture below)", file=sys.stderr)
    report = {"command": "python scripts/benchmark.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": info, "quick": args.quick,
              "device": "gpu" if args.gpu else "cpu", "batch_size": args.batch_size, "threads": args.threads,
              "repeats": args.repeats, "budget_s": args.budget, "torch_compared": args.torch_side, "models": []}
    total = 0
    for n in names:
        sides = 2 if args.torch_side and MODELS[n].has_torch else 1
        total += (1 if MODELS[n].tier == "scalar" else args.repeats) * 2 * sides
        total += 2 if args.reference and MODELS[n].tier != "scalar" else 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nnott-bench-") as tmp:
        workdir = Path(tmp)
        report["gemm"] = measure_gemm(args, workdir)
        with tqdm(total=total, desc="benchmark", unit="run", dynamic_ncols=True) as bar:
            for n in names:
                report["models"].append(measure_model(n, args, workdir, bar))
                if args.json:
                    write_json(report, args.json)
    report["seconds"] = round(time.perf_counter() - started, 1)
    try:
        report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    print_table(report)
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    failed = [m["model"] for m in report["models"]
              if any("error" in m.get(s, {}) for s in ("ours", "torch", "reference"))]
    return 1 if failed else 0


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
