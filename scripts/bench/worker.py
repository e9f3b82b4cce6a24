"""The benchmark's child process: builds one model in one framework and times it on request.

Started by ``scripts/benchmark.py`` as ``python scripts/bench/worker.py --role ours|torch|gemm ...``.
It answers on stdout with lines that start with ``@@ `` followed by JSON, and takes commands
on stdin, one JSON object a line:

* ``{"cmd": "train", "steps": n, "warmup": w, "budget": s}``: ``w`` untimed then up to ``n``
  timed training steps (forward + loss + backward + Adam), stopping early once ``s`` seconds
  have passed and at least 3 steps are timed; answers the step times.
* ``{"cmd": "infer", ...}``: the same for inference (eval mode, forward only, no gradients).
* ``{"cmd": "quit"}``: answers peak memory and exits.

One process per model and framework keeps the peak RSS (``ru_maxrss``) of each apart.
The thread count comes from the environment the parent sets (OMP/OpenBLAS/MKL_NUM_THREADS)
and, for torch, ``torch.set_num_threads``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np

from scripts.bench.workloads import (MODELS, batch, build_ours, build_torch, describe_layers, export_weights,
                                     torch_forward_flops)


def reply(**payload) -> None:
    sys.stdout.write("@@ " + json.dumps(payload) + "\n")
    sys.stdout.flush()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def current_rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return None


def blas_threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [lib["num_threads"] for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return counts[0] if counts else None


# ---------------------------------------------------------------------------- step functions
class Ours:
    """Our model: the Trainer's step without its bookkeeping (no clipping, no schedule)."""

    def __init__(self, workload, batch_size, workdir: Path, gpu: bool, parallelism: str = "auto",
                 engine_name: str = "fast"):
        import engine
        from common import backend, dispatch
        from engine import parallel

        engine.use(engine_name)
        self.dispatch = dispatch

        if gpu and not backend.use_gpu(warn=False):
            raise RuntimeError(f"--gpu: {backend.gpu_unavailable_reason()}")
        self.backend = backend
        self.model = build_ours(workload)
        x, y = batch(workload, batch_size)
        self.flops_fwd = self.model.forward_flops(x.shape[1:])
        if engine_name == "fast":
            self.parallelism = parallel.choose_parallelism(self.flops_fwd * batch_size, mode=parallelism)
        else:  # the reference layers run no worker threads: BLAS gets every core
            parallel.use_blas_threads()
            self.parallelism = "blas"
        export_weights(self.model, workdir / "weights.npz")
        self.x, self.y = backend.to_device(x), backend.to_device(y)
        self.model.eval()
        np.save(workdir / "logits_ours.npy", backend.to_numpy(self.model(self.x)))
        self.model.train()
        from vectorized.losses import CrossEntropyLoss
        from vectorized.optim import Adam

        self.loss = CrossEntropyLoss()
        self.optimizer = Adam(self.model.parameters(), lr=1e-3)
        self.info = {"params": int(self.model.num_parameters()), "flops_fwd": int(self.flops_fwd),
                     "device": backend.device_name(),
                     "cpu_workers": parallel.cpu_workers(), "parallelism": self.parallelism,
                     "engine": dispatch.engine_name(),
                     "variant": getattr(self.model, "variant", None),
                     "variant_label": getattr(self.model, "variant_label", None)}
        meta = {"variant": self.info["variant"] or "small"}
        if workload.tier == "vectorized":
            meta["layers"] = describe_layers(self.model)
        (workdir / "model.json").write_text(json.dumps(meta))
        self.last_loss = None

    def sync(self):
        if self.backend.is_gpu():
            import cupy

            cupy.cuda.Device().synchronize()

    def train_step(self):
        self.model.train()
        self.model.zero_grad()
        logits = self.model(self.x)
        self.last_loss = self.loss.forward(logits, self.y)
        self.dispatch.training_backward(self.model, self.loss.backward())  # like torch: no gradient for the images
        self.optimizer.step()
        self.sync()

    def infer_step(self):
        self.model.eval()
        self.model(self.x)
        self.sync()

    def loss_value(self):
        return None if self.last_loss is None else self.backend.to_float(self.last_loss)

    def memory(self):
        if self.backend.is_gpu():
            import cupy

            return {"gpu_pool_mb": cupy.get_default_memory_pool().total_bytes() / 2**20}
        return {}


class Torch:
    """The PyTorch twin with our weights, the plain PyTorch training step."""

    def __init__(self, workload, batch_size, workdir: Path, gpu: bool, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device("cuda" if gpu else "cpu")
        if gpu and not torch.cuda.is_available():
            raise RuntimeError("--gpu: torch has no CUDA device")
        state = dict(np.load(workdir / "weights.npz"))
        meta = json.loads((workdir / "model.json").read_text())
        model = build_torch(workload, state, meta["variant"], meta.get("layers"))
        x, y = batch(workload, batch_size)
        flops = torch_forward_flops(model, torch.from_numpy(x[:1]))
        self.model = model.to(self.device)
        self.x = torch.from_numpy(x).to(self.device)
        self.y = torch.from_numpy(y).to(self.device)
        self.model.eval()
        with torch.no_grad():
            logits = self.model(self.x).float().cpu().numpy()
        ours = np.load(workdir / "logits_ours.npy")
        diff = float(np.max(np.abs(logits - ours)))
        scale = float(np.max(np.abs(ours))) or 1.0
        self.model.train()
        self.loss = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.info = {"torch_flops_fwd": flops, "parity_max_abs_diff": diff, "parity_rel_diff": diff / scale,
                     "threads": torch.get_num_threads(),
                     "device": torch.cuda.get_device_name() if gpu else f"CPU (torch {torch.__version__})"}
        self.last_loss = None

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def train_step(self):
        self.model.train()
        self.optimizer.zero_grad()
        self.last_loss = self.loss(self.model(self.x), self.y)
        self.last_loss.backward()
        self.optimizer.step()
        self.sync()

    def infer_step(self):
        self.model.eval()
        with self.torch.no_grad():
            self.model(self.x)
        self.sync()

    def loss_value(self):
        return None if self.last_loss is None else float(self.last_loss.detach())

    def memory(self):
        if self.device.type == "cuda":
            return {"gpu_peak_mb": self.torch.cuda.max_memory_allocated() / 2**20}
        return {}


class Scalar:
    """The scalar tier through its own Trainer: per-sample forward/backward over the batch, then one Adam step."""

    def __init__(self, workload, batch_size, workdir: Path, gpu: bool):
        from scalar.optimizers import Adam
        from scalar.trainer import Trainer

        self.model = build_ours(workload)
        x, y = batch(workload, batch_size)
        self.rows, self.targets = x.tolist(), [int(v) for v in y]
        self.trainer = Trainer(self.model, Adam(self.model, lr=1e-3), progress=False)
        self.info = {"params": int(self.model.num_parameters()),
                     "flops_fwd": 2 * sum(len(n.w) for n in self.model.neurons()),
                     "device": "CPU (Python floats)"}
        self.last_loss = None

    def sync(self):
        pass

    def train_step(self):
        total, _ = self.trainer.train_batch(self.rows, self.targets)
        self.last_loss = total / len(self.rows)

    def infer_step(self):
        self.model.eval()
        for row in self.rows:
            self.model.forward(row)

    def loss_value(self):
        return self.last_loss

    def memory(self):
        return {}


# ---------------------------------------------------------------------------- timing
def run_segment(runner, step, steps: int, warmup: int, budget: float, batch_size: int) -> dict:
    for _ in range(warmup):
        step()
    times = []
    start = time.perf_counter()
    while len(times) < steps:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        if len(times) >= min(3, steps) and time.perf_counter() - start > budget:
            break
    median = statistics.median(times)
    loss = runner.loss_value()
    return {"times": times, "median_s": median, "ips": batch_size / median,
            "loss": None if loss is None or not np.isfinite(loss) else float(loss),
            "finite": loss is None or bool(np.isfinite(loss))}


def gemm_peak(size: int, repeats: int, gpu: bool, with_torch: bool, threads: int) -> dict:
    """Median GFLOP/s of a float32 size^3 matrix product (NumPy or CuPy; torch for reference)."""
    out = {"size": size}
    flops = 2.0 * size**3
    if gpu:
        import cupy as xp

        sync = xp.cuda.Device().synchronize
    else:
        xp, sync = np, (lambda: None)
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((size, size), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((size, size), dtype=np.float32))
    c = a @ b
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        c = xp.matmul(a, b, out=c)
        sync()
        times.append(time.perf_counter() - t0)
    out["gflops"] = flops / statistics.median(times) / 1e9
    out["gflops_best"] = flops / min(times) / 1e9
    out["backend"] = "cupy" if gpu else "numpy"
    if with_torch:
        try:
            import torch
        except ImportError:
            return out
        torch.set_num_threads(threads)
        dev = "cuda" if gpu else "cpu"
        ta = torch.from_numpy(rng.standard_normal((size, size), dtype=np.float32)).to(dev)
        tb = torch.from_numpy(rng.standard_normal((size, size), dtype=np.float32)).to(dev)
        tc = ta @ tb
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(ta, tb, out=tc)
            if gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        out["torch_gflops"] = flops / statistics.median(times) / 1e9
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", choices=("ours", "torch", "gemm"), required=True)
    p.add_argument("--model", default="mlp")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("."))
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--parallelism", choices=("auto", "blocks", "blas"), default="auto")
    p.add_argument("--engine", choices=("fast", "reference"), default="fast")
    p.add_argument("--gemm-size", type=int, default=2048)
    p.add_argument("--gemm-repeats", type=int, default=5)
    p.add_argument("--gemm-torch", action="store_true")
    args = p.parse_args(argv)
    # import the framework first, so that the RSS baseline below includes its libraries
    importlib.import_module("torch" if args.role == "torch" else "common.backend")
    rss_import = current_rss_mb()
    try:
        if args.role == "gemm":
            reply(**gemm_peak(args.gemm_size, args.gemm_repeats, args.gpu, args.gemm_torch, args.threads),
                  blas_threads=blas_threads())
            return 0
        workload = MODELS[args.model]
        if args.role == "torch":
            runner = Torch(workload, args.batch_size, args.workdir, args.gpu, args.threads)
        elif workload.tier == "scalar":
            runner = Scalar(workload, args.batch_size, args.workdir, args.gpu)
        else:
            runner = Ours(workload, args.batch_size, args.workdir, args.gpu, args.parallelism, args.engine)
        per_step = args.batch_size
        reply(ready=True, rss_after_import_mb=rss_import, rss_after_build_mb=current_rss_mb(),
              blas_threads=blas_threads(), **runner.info)
    except Exception as exc:  # reported to the parent as one line; the traceback goes to the log
        traceback.print_exc()
        reply(error=f"{type(exc).__name__}: {exc}")
        return 1

    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "quit":
                reply(peak_rss_mb=peak_rss_mb(), **runner.memory())
                return 0
            step = runner.train_step if cmd["cmd"] == "train" else runner.infer_step
            reply(**run_segment(runner, step, cmd["steps"], cmd.get("warmup", 1), cmd.get("budget", 1e9),
                                per_step))
        except Exception as exc:
            traceback.print_exc()
            reply(error=f"{type(exc).__name__}: {exc}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
