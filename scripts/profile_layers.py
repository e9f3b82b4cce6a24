"""Per-layer forward/backward timing of one training step (forward + cross-entropy + backward + Adam),
or, with ``--eval``, of one inference step (evaluation mode, forward only).

    python scripts/profile_layers.py resnet18 --input-shape 3,32,32
    python scripts/profile_layers.py efficientnet_lite0 --eval --by type
    python scripts/profile_layers.py efficientnet_lite0 --input-shape 3,32,32 --by type
    python scripts/profile_layers.py lenet --steps 20 --top 10
    python scripts/profile_layers.py mlp                      # the vectorized launcher's MLP

Every *leaf* module (one with no children: Conv2D, BatchNorm2D, ReLU, Linear...) gets its
``forward`` and ``backward`` wrapped in a timer; the loss, the optimizer step and ``zero_grad``
are timed on their own. ``--eval`` times what the benchmark's inference step runs instead:
``model.eval()`` and the forward pass alone (no loss, no backward, no optimizer), so the table
has forward times only. What is left of the step ("glue") is the work blocks do themselves:
residual additions, squeeze-excite products, layer scales. The table gives the median over the
timed steps of each row, in milliseconds, and its share of the median step.

``--by layer`` (default) lists every leaf by its dotted name (``layer1.0.conv1``); ``--by type``
adds up the leaves of one class (all Conv2D, all BatchNorm2D...), which is the quickest way to
see where a model's time goes. The wrappers cost a few microseconds per call: negligible for
the conv models, visible for a tiny MLP (compare the step time with ``scripts/benchmark.py``).

On a shared machine, compare profiles taken in one session, never absolute times alone.

``--ab MODULE.NAME=A,B`` compares two values of a module-level setting instead (no per-layer
table): the training steps alternate between A and B in one process, in the order A B B A A B...,
so both values see the same moments of a noisy machine, and the script prints the median step
for each and in how many pairs of neighbouring steps B was faster::

    python scripts/profile_layers.py baseline --steps 60 --ab engine.tuning.CONV_BLOCK_BYTES=2**22,2**21

``--clock cpu`` times with the process's CPU time (all its threads) instead of the wall clock: on
a machine loaded by other work the time spent waiting for a core is left out, which the wall
clock counts in slices of the scheduler's. Use it with ``--threads 1``: worker threads spinning
between blocks count as CPU time.

``--eval --torch`` times the benchmark's PyTorch twin of the model (same weights, same batch,
``torch.no_grad()``, as many threads as NNOTT's cores) against ours instead, inference steps
alternating in one process, and prints the ratio of images/s ours / torch; with ``--clock cpu
--threads 1`` it is the steadiest inference ratio a loaded machine gives. (With more threads the
two frameworks disturb each other in one process: an OpenBLAS helper thread spinning after our
products slows PyTorch's steps. The benchmark runs each in a process of its own.)::

    python scripts/profile_layers.py efficientnet_lite0 --eval --torch --threads 1 --clock cpu --steps 8

Two runs of one command in separate processes can differ by a third on a shared virtual
machine; steps that alternate within one process moved together, which is how the block sizes
in ``tutorial/performance-notes.md`` were chosen. Only settings read when they are used can be
flipped this way (a constant copied into a default argument is not).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

MLP_HIDDEN = (256, 128, 64)  # the vectorized launcher's default MLP (scripts/bench/workloads.py)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]       # what every timer reads (--clock)


def build(name: str, input_shape, num_classes: int, variant: str):
    """The model to profile: 'mlp' (784-256-128-64-10, dropout 0.2) or a conv-tier architecture."""
    from common.seed import seed_everything

    seed_everything(0)
    if name == "mlp":
        from vectorized.mlp import build_mlp

        return build_mlp(int(np.prod(input_shape)), num_classes, MLP_HIDDEN, ("relu",), (0.2,)), True
    from convolutional.architectures import build_model

    return build_model(name, input_shape, num_classes, variant=variant), False


def leaves(model):
    """(dotted name, module) of every module without children."""
    return [(name or type(model).__name__, m) for name, m in model.named_modules()
            if not list(m.children())]


class Timers:
    """Per-step lists of seconds, keyed by (row name, 'forward' | 'backward' | 'step')."""

    def __init__(self):
        self.step = defaultdict(float)   # accumulated during the current step
        self.history = defaultdict(list)

    def wrap(self, module, name: str):
        """Replace ``module.forward``/``module.backward`` by timed versions (instance attributes)."""
        for phase in ("forward", "backward"):
            inner = getattr(module, phase)

            def timed(arg, _inner=inner, _key=(name, phase)):
                t0 = clock()
                out = _inner(arg)
                self.step[_key] += clock() - t0
                return out

            setattr(module, phase, timed)

    def time(self, key, fn, *args):
        t0 = clock()
        out = fn(*args)
        self.step[key] += clock() - t0
        return out

    def end_step(self, record: bool):
        if record:
            for key, seconds in self.step.items():
                self.history[key].append(seconds)
        self.step = defaultdict(float)


def profile(model, x, y, steps: int, warmup: int, eval_mode: bool = False):
    """Run warmup + steps training steps (inference steps with ``eval_mode``); return (timers, list
    of step seconds, names)."""
    from common import dispatch
    from vectorized.losses import CrossEntropyLoss
    from vectorized.optim import Adam

    timers = Timers()
    names = {}
    for name, m in leaves(model):
        names[id(m)] = name
        timers.wrap(m, name)
    loss_fn, opt = CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3)
    model.train(not eval_mode)
    step_times = []
    for k in range(warmup + steps):
        if eval_mode:  # the benchmark's inference step: forward only, in evaluation mode
            t0 = clock()
            model(x)
            dt = clock() - t0
            timers.end_step(record=k >= warmup)
            if k >= warmup:
                step_times.append(dt)
            continue
        t0 = clock()
        timers.time(("(zero_grad)", "step"), model.zero_grad)
        logits = model(x)
        timers.time(("(loss)", "forward"), loss_fn.forward, logits, y)
        g = timers.time(("(loss)", "backward"), loss_fn.backward)
        dispatch.training_backward(model, g)  # a training step's backward, as in the Trainer and the benchmark
        timers.time(("(Adam step)", "step"), opt.step)
        dt = clock() - t0
        timers.end_step(record=k >= warmup)
        if k >= warmup:
            step_times.append(dt)
    return timers, step_times, names


def table(timers: Timers, step_times, model, by: str, top: int | None):
    """Rows (name, forward ms, backward ms, other ms, total ms) sorted by total, plus the glue row."""
    med = {key: statistics.median(v) for key, v in timers.history.items()}
    rows = defaultdict(lambda: [0.0, 0.0, 0.0, 0])  # forward, backward, step, count
    types = {name: type(m).__name__ for name, m in leaves(model)}
    for (name, phase), seconds in med.items():
        label = types.get(name, name) if by == "type" else name
        if by == "layer" and name in types:
            label = f"{name} ({types[name]})"
        col = {"forward": 0, "backward": 1, "step": 2}[phase]
        rows[label][col] += seconds * 1e3
        if phase == "forward" or phase == "step":
            rows[label][3] += 1
    step_ms = statistics.median(step_times) * 1e3
    accounted = sum(f + b + s for f, b, s, _ in rows.values())
    out = sorted(([label, f, b, s, f + b + s, n] for label, (f, b, s, n) in rows.items()),
                 key=lambda r: -r[4])
    shown = out if not top else out[:top]
    rest = out[len(shown):]
    if rest:
        shown.append([f"({len(rest)} more rows)", *[sum(r[i] for r in rest) for i in (1, 2, 3, 4)],
                      sum(r[5] for r in rest)])
    shown.append(["(glue: block-level adds/products)", 0.0, 0.0, 0.0, max(step_ms - accounted, 0.0), 0])
    return shown, step_ms


def render(rows, step_ms, by: str) -> str:
    head = f"| {'layer' if by == 'layer' else 'layer type'} | {'count' if by == 'type' else ''} " \
           f"| forward ms | backward ms | other ms | total ms | % of step |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for label, f, b, s, tot, n in rows:
        count = str(n) if by == "type" and n else ""
        lines.append(f"| {label} | {count} | {f:.2f} | {b:.2f} | {s:.2f} | {tot:.2f} | {100 * tot / step_ms:.1f} |")
    lines.append(f"| **step (median)** | | | | | **{step_ms:.1f}** | 100 |")
    return "\n".join(lines)


def parse_value(text: str):
    """A Python literal (1e-3, True, 'blas') or a power of integers (2**21)."""
    import ast

    base, sep, exp = text.partition("**")
    if sep and base.strip().isdigit() and exp.strip().isdigit():
        return int(base) ** int(exp)
    return ast.literal_eval(text)


def parse_ab(text: str):
    """MODULE.NAME=A,B -> (module, name, a, b); the module must import and have NAME."""
    import importlib

    target, eq, values = text.partition("=")
    module_name, _, name = target.strip().rpartition(".")
    parts = values.split(",")
    if not eq or not module_name or not name or len(parts) != 2:
        raise argparse.ArgumentTypeError(
            f"--ab must be MODULE.NAME=A,B (e.g. engine.tuning.CONV_BLOCK_BYTES=2**22,2**21), got {text!r}")
    try:
        a, b = (parse_value(v.strip()) for v in parts)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(f"--ab values must be Python literals or powers like 2**21, got {values!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise argparse.ArgumentTypeError(f"--ab: no module {module_name!r} (use a dotted path such as common.backend)")
    if not hasattr(module, name):
        raise argparse.ArgumentTypeError(f"--ab: module {module_name} has no setting {name!r}")
    return module, name, a, b


def ab_steps(model, x, y, flips, steps: int, warmup: int, eval_mode: bool = False):
    """Training steps (inference steps with ``eval_mode``) alternating between the A and the B values
    of ``flips`` (A B B A A B B A ...); returns the step seconds of each side, in pairs. The values in
    force before are put back."""
    from common import dispatch
    from vectorized.losses import CrossEntropyLoss
    from vectorized.optim import Adam

    loss_fn, opt = CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3)
    model.train(not eval_mode)
    before = [getattr(module, name) for module, name, _a, _b in flips]
    times = ([], [])
    try:
        for k in range(2 * (warmup + steps)):
            side = k % 2 if (k // 2) % 2 == 0 else 1 - k % 2
            for module, name, a, b in flips:
                setattr(module, name, (a, b)[side])
            t0 = clock()
            if eval_mode:
                model(x)
            else:
                model.zero_grad()
                loss_fn.forward(model(x), y)
                dispatch.training_backward(model, loss_fn.backward())
                opt.step()
            if k >= 2 * warmup:
                times[side].append(clock() - t0)
    finally:
        for (module, name, _a, _b), value in zip(flips, before):
            setattr(module, name, value)
    return times


def parse_shape(text: str):
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--input-shape must be C,H,W (e.g. 3,32,32), got {text!r}")
    return shape


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="profile_layers.py",
        description="Time every layer's forward and backward pass in a training step "
                    "(forward + cross-entropy + backward + Adam), median over several steps.",
        epilog="examples:\n"
               "  python scripts/profile_layers.py resnet18 --input-shape 3,32,32\n"
               "  python scripts/profile_layers.py efficientnet_lite0 --input-shape 3,32,32 --by type\n"
               "  python scripts/profile_layers.py lenet --steps 30 --top 8\n"
               "  python scripts/profile_layers.py resnet18 --eval --by type\n"
               "  python scripts/profile_layers.py mlp --json mlp_profile.json\n"
               "  python scripts/profile_layers.py baseline --steps 60 --ab engine.tuning.CONV_BLOCK_BYTES=2**22,2**21\n"
               "models: 'mlp' (784-256-128-64-10) or any architecture of convolutional.architectures.\n"
               "The 'glue' row is step time no leaf layer accounts for (residual adds, SE products).\n"
               "Times are medians per row; rows need not add up exactly to the median step.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="'mlp' or an architecture name (lenet, baseline, resnet18, vgg16, ...)")
    parser.add_argument("--input-shape", type=parse_shape, default=None,
                        help="C,H,W of one image (default 1,28,28 for mlp/lenet/baseline, else 3,32,32)")
    parser.add_argument("--variant", default="auto", help="architecture variant: auto (default), small, canonical")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--eval", action="store_true",
                        help="profile inference steps instead: evaluation mode, forward only (as the "
                             "benchmark's inference step); with --ab, alternate inference steps")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall time (default) or the process's CPU time, which leaves out waiting for a "
                             "core on a loaded machine (use with --threads 1)")
    parser.add_argument("--torch", action="store_true",
                        help="with --eval: time PyTorch's twin of the model against ours instead, inference "
                             "steps alternating, and print the ratio (needs torch; benchmark models only)")
    parser.add_argument("--by", choices=("layer", "type"), default="layer",
                        help="one row per leaf layer (default) or per layer class")
    parser.add_argument("--top", type=int, default=None, help="show only the N most expensive rows")
    parser.add_argument("--threads", type=int, default=None,
                        help="cores NNOTT uses; default: the BLAS thread count the process started with")
    parser.add_argument("--parallelism", choices=("auto", "blocks", "blas"), default="auto",
                        help="how the cores share the work: NNOTT's worker threads with one-thread BLAS "
                             "('blocks'), one thread with BLAS on all cores ('blas'), or as the Trainer "
                             "picks it from the model's FLOPs per batch ('auto', default)")
    parser.add_argument("--json", metavar="OUT.json", default=None, help="also write the rows to this file")
    parser.add_argument("--ab", metavar="MODULE.NAME=A,B", type=parse_ab, action="append", default=[],
                        help="compare two values of a module-level setting instead of profiling layers: "
                             "steps alternate A B B A ... in one process, and the median step of each "
                             "is printed (repeat the flag to change several settings together)")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--batch-size and --steps must be at least 1, --warmup at least 0")
    if args.torch and (not args.eval or args.ab):
        parser.error("--torch compares inference steps: give it with --eval and without --ab")

    from common.errors import UserError

    global clock
    clock = CLOCKS[args.clock]
    small = ("mlp", "lenet", "baseline")
    shape = args.input_shape or ((1, 28, 28) if args.model in small else (3, 32, 32))
    try:
        model, flat = build(args.model, shape, 10, args.variant)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    import engine

    engine.use("fast")  # the layers' fast replacements: what is profiled is what trains
    from common.backend import to_device
    from engine.parallel import choose_parallelism, cpu_cores, parallelism

    choose_parallelism(model.forward_flops(shape if not flat else (int(np.prod(shape)),)) * args.batch_size,
                       args.threads, args.parallelism)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, *shape), dtype=np.float32)
    if flat:
        x = x.reshape(args.batch_size, -1)
    y = rng.integers(0, 10, size=args.batch_size).astype(np.int64)
    if args.torch:
        return report_torch(args, model, x, shape)
    if args.ab:
        return report_ab(args, model, to_device(x), to_device(y), shape)
    timers, step_times, _ = profile(model, to_device(x), to_device(y), args.steps, args.warmup, args.eval)
    rows, step_ms = table(timers, step_times, model, args.by, args.top)
    print(f"{args.model} {shape}, batch {args.batch_size}, {args.steps} timed "
          f"{'inference (eval, forward only)' if args.eval else 'training'} steps after {args.warmup} "
          f"warm-up; {args.batch_size / step_ms * 1e3:.1f} images/s (wrapped); "
          f"{cpu_cores()} cores, parallelism '{parallelism()}', {args.clock} clock, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(render(rows, step_ms, args.by))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": args.model, "input_shape": shape, "batch_size": args.batch_size, "step_ms": step_ms,
            "mode": "eval" if args.eval else "train",
            "rows": [dict(zip(("name", "forward_ms", "backward_ms", "other_ms", "total_ms", "count"), r))
                     for r in rows]}, indent=1))
    return 0


def report_torch(args, model, x, shape) -> int:
    """Our inference step against PyTorch's twin (scripts/bench/workloads.py), alternating."""
    import dataclasses
    from importlib.util import find_spec

    from engine.parallel import cpu_cores
    from scripts.bench.workloads import MODELS, build_torch, describe_layers

    if find_spec("torch") is None or args.model not in MODELS or not MODELS[args.model].has_torch:
        print(f"error: --torch needs PyTorch installed and a model of the benchmark with a PyTorch twin "
              f"({', '.join(n for n, w in MODELS.items() if w.has_torch)})", file=sys.stderr)
        return 1
    import torch

    torch.set_num_threads(cpu_cores())
    workload = dataclasses.replace(MODELS[args.model], input_shape=shape)
    flat = workload.tier == "vectorized"
    theirs = build_torch(workload, model.state_dict(), variant=getattr(model, "variant", "small") or "small",
                         layers=describe_layers(model) if flat else None).eval()
    model.eval()
    from common.backend import to_device

    ours_x, torch_x = to_device(x), torch.from_numpy(x)
    times = ([], [])
    with torch.no_grad():
        for k in range(2 * (args.warmup + args.steps)):
            side = k % 2 if (k // 2) % 2 == 0 else 1 - k % 2
            t0 = clock()
            model(ours_x) if side == 0 else theirs(torch_x)
            if k >= 2 * args.warmup:
                times[side].append(clock() - t0)
    ours_ms, torch_ms = (1e3 * statistics.median(t) for t in times)
    wins = sum(o < t for o, t in zip(*times))
    print(f"{args.model} {shape}, batch {args.batch_size}, {args.steps} inference steps of each after "
          f"{args.warmup} warm-up; {cpu_cores()} cores (torch {torch.get_num_threads()} threads), {args.clock} clock")
    print(f"ours {ours_ms:.2f} ms  torch {torch_ms:.2f} ms  images/s ours/torch {torch_ms / ours_ms:.3f}  "
          f"ours faster in {wins} of {len(times[0])} pairs")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": args.model, "input_shape": shape, "batch_size": args.batch_size, "clock": args.clock,
            "ours_ms": ours_ms, "torch_ms": torch_ms, "ratio": torch_ms / ours_ms,
            "ours_steps_ms": [1e3 * t for t in times[0]], "torch_steps_ms": [1e3 * t for t in times[1]]}, indent=1))
    return 0


def report_ab(args, model, x, y, shape) -> int:
    from engine.parallel import cpu_cores, parallelism

    try:
        a_times, b_times = ab_steps(model, x, y, args.ab, args.steps, args.warmup, args.eval)
    except (TypeError, ValueError, ZeroDivisionError) as exc:  # a value the setting cannot take
        print(f"error: --ab: a training step failed with these values ({type(exc).__name__}: {exc}); "
              "give each setting values of the type it has now", file=sys.stderr)
        return 2
    a_ms, b_ms = (1e3 * statistics.median(t) for t in (a_times, b_times))
    wins = sum(b < a for a, b in zip(a_times, b_times))
    settings = ", ".join(f"{m.__name__}.{name} = {a!r} (A) / {b!r} (B)" for m, name, a, b in args.ab)
    print(f"{args.model} {shape}, batch {args.batch_size}, {args.steps} "
          f"{'inference ' if args.eval else ''}steps of each after {args.warmup} warm-up; "
          f"{cpu_cores()} cores, parallelism '{parallelism()}', {args.clock} clock")
    print(settings)
    print(f"A {a_ms:.2f} ms  B {b_ms:.2f} ms  B/A {b_ms / a_ms:.3f}  B faster in {wins} of {len(b_times)} pairs")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": args.model, "input_shape": shape, "batch_size": args.batch_size,
            "settings": [{"name": f"{m.__name__}.{name}", "a": a, "b": b} for m, name, a, b in args.ab],
            "a_ms": a_ms, "b_ms": b_ms, "b_faster_pairs": wins, "pairs": len(b_times),
            "a_steps_ms": [1e3 * t for t in a_times], "b_steps_ms": [1e3 * t for t in b_times]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
