"""Data-parallel throughput: N ranks under mpiexec against one process on the same cores.

    python scripts/bench_distributed.py                        # resnet18 on 32x32, ranks 1,2
    python scripts/bench_distributed.py --arch lenet --image-size 28 --channels 1 --ranks 1,2,4
    python scripts/bench_distributed.py --model-table          # the modelled ring all-reduce only

A measurement is ``--steps`` training steps (forward, loss, backward, the gradient Allreduce,
Adam) on a global batch of ``--batch-size`` generated images, after one warm-up step; rank 0
times them between two barriers. Rows:

* ``1 process, T threads``: no MPI, all T cores of the machine in one process (the baseline);
* ``N ranks x t threads``: ``mpiexec -n N``, each rank on t = T / N threads (at least 1).

images/s is global images per second. Speed-up is against the 1-process row; scaling
efficiency is images/s of N ranks divided by N times images/s of 1 rank with the same threads
per rank (1.0 = perfect). The ``--model-table`` part is arithmetic, not a measurement: the
time a ring all-reduce of a model's gradient would take (see :func:`ring_allreduce_seconds`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESNET18_PARAMS = 11_689_512  # ImageNet ResNet18 (1000 classes), as in torchvision


def ring_allreduce_seconds(params: int, ranks: int, gbit_per_s: float, *, bytes_per_value: int = 4,
                           latency_s: float = 20e-6) -> float:
    """Modelled time of one ring all-reduce of ``params`` values over ``ranks`` machines.

    The ring cuts the buffer into N chunks and takes 2(N-1) steps (N-1 reduce-scatter, N-1
    all-gather); in each step every rank sends one chunk of S/N bytes to its neighbour while
    receiving one. Time = 2(N-1) * (latency + S/N / bandwidth). The bytes each rank sends,
    2(N-1)/N * S, hardly grow with N: that is why the ring is the standard algorithm.
    Assumes full-duplex links, no compute/communication overlap and no congestion.
    """
    if ranks < 2:
        return 0.0
    size = params * bytes_per_value
    bandwidth = gbit_per_s * 1e9 / 8
    return 2 * (ranks - 1) * (latency_s + size / ranks / bandwidth)


def ring_table(params: int = RESNET18_PARAMS, ranks=(2, 4, 8, 16, 32, 64), gbits=(1, 10, 100), *,
               step_compute_s: float | None = None) -> str:
    """A Markdown table of modelled all-reduce times (ms) for each rank count and link speed.

    With ``step_compute_s`` (one rank's forward+backward time per step) a second number per
    cell is the modelled scaling efficiency compute / (compute + all-reduce).
    """
    head = "| ranks | " + " | ".join(f"{g:g} Gbit/s" for g in gbits) + " |"
    lines = [head, "|---:|" + "---:|" * len(gbits)]
    for n in ranks:
        cells = []
        for g in gbits:
            t = ring_allreduce_seconds(params, n, g)
            cell = f"{1e3 * t:,.1f} ms"
            if step_compute_s:
                cell += f" ({step_compute_s / (step_compute_s + t):.0%})"
            cells.append(cell)
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- measurement (one rank)
def measure(args) -> dict:
    """Time ``args.steps`` training steps in this process (one rank, or the single process)."""
    import numpy as np

    import engine
    from common import backend
    from common.data import Normalizer
    from common.seed import seed_everything
    from convolutional.architectures import build_model
    from vectorized.losses import CrossEntropyLoss
    from vectorized.optim import Adam
    from vectorized.trainer import Trainer

    parallel = None
    if args.distributed:
        from common import distributed
        from vectorized.data_parallel import DataParallel

        comm = distributed.world()
        distributed.setup_rank(comm, threads=args.threads)
        parallel = DataParallel(comm)
    else:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads)
    seed_everything(0)
    shape = (args.channels, args.image_size, args.image_size)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(args.batch_size, *shape), dtype=np.uint8)
    y = rng.integers(0, 10, size=args.batch_size)
    model = build_model(args.arch, shape, 10)
    trainer = Trainer(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3),
                      normalizer=Normalizer.fit(x), num_classes=10, progress=False, parallel=parallel)
    keep = slice(None) if parallel is None else parallel.shard(len(x))
    local = len(x[keep])
    engine.use("fast")
    engine.parallel.choose_parallelism(model.forward_flops(shape) * local)
    if parallel is not None:
        parallel.broadcast_model(model)

    def step():
        if parallel is not None:
            parallel.shard(len(x))
        xb, targets = trainer.prepare(x, y, train=True, keep=keep)
        trainer.train_step(xb, targets, backend.to_device(y[keep]))

    step()  # warm-up
    if parallel is not None:
        parallel.comm.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if parallel is not None:
        parallel.comm.barrier()
    elapsed = time.perf_counter() - t0
    return {"images_per_s": args.batch_size * args.steps / elapsed, "step_s": elapsed / args.steps,
            "ranks": 1 if parallel is None else parallel.size, "threads": args.threads,
            "is_root": parallel is None or parallel.is_root}


def _child(args, ranks: int, threads: int, distributed: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", "--arch", args.arch,
           "--image-size", str(args.image_size), "--channels", str(args.channels),
           "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--threads", str(threads)]
    if distributed:
        cmd = ["mpiexec", "-n", str(ranks)] + cmd + ["--distributed"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"error: the measurement failed: {' '.join(cmd)}\n{out.stderr.strip()[-800:]}")
    return json.loads(lines[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet18", help="architecture (convolutional tier)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32, help="global batch")
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--ranks", default="1,2", help="comma-separated rank counts")
    p.add_argument("--cores", type=int, default=None, help="cores to share (default: all of this machine)")
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds; the best of each row is kept")
    p.add_argument("--model-table", action="store_true", help="print the modelled ring all-reduce table only")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.measure:
        if args.distributed:
            from common import distributed

            result = {}

            def run(_argv):
                result.update(measure(args))

            code = distributed.run_main(run, [])
            if result.get("is_root"):
                print(json.dumps(result), flush=True)
            return code
        print(json.dumps(measure(args)), flush=True)
        return 0

    if args.model_table:
        print(f"Modelled ring all-reduce of {RESNET18_PARAMS:,} float32 gradients (a model, not a measurement)")
        print(ring_table())
        return 0
    try:
        ranks = [int(r) for r in args.ranks.split(",")]
    except ValueError:
        p.error(f"--ranks takes comma-separated integers, got {args.ranks!r}")
    if shutil.which("mpiexec") is None:
        print('error: no mpiexec on PATH: pip install "nnott[mpi]"', file=sys.stderr)
        return 1
    cores = args.cores or len(os.sched_getaffinity(0))
    plan = {(1, cores, False)}  # (ranks, threads per rank, under mpiexec)
    for n in ranks:
        plan |= {(n, max(1, cores // n), True), (1, max(1, cores // n), True)}  # and its 1-rank reference
    plan = sorted(plan, key=lambda r: (r[2], r[0], -r[1]))
    rows = {}
    for _ in range(args.repeats):  # alternate, so a slow moment of a shared machine hits every row
        for key in plan:
            r = _child(args, *key)
            if key not in rows or r["images_per_s"] > rows[key]["images_per_s"]:
                rows[key] = r
    base = rows[(1, cores, False)]["images_per_s"]
    print(f"{args.arch}, {args.channels}x{args.image_size}x{args.image_size}, global batch {args.batch_size}, "
          f"{cores} cores, best of {args.repeats} rounds of {args.steps} steps")
    print("| run | threads per rank | images/s | vs 1 process | scaling efficiency |")
    print("|---|---:|---:|---:|---:|")
    for (n, t, dist), r in rows.items():
        label = f"mpiexec -n {n}" if dist else "1 process (no MPI)"
        eff = f"{r['images_per_s'] / (n * rows[(1, t, True)]['images_per_s']):.2f}" if dist else ""
        print(f"| {label} | {t} | {r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f} | {eff} |")
    if args.json:
        args.json.write_text(json.dumps([dict(r, mpiexec=k[2]) for k, r in rows.items()], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
