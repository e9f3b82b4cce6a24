"""Time every 3×3 and 5×5 stride-1 convolution of a model with and without Winograd's tiles.

    python scripts/bench_winograd.py                                  # ResNet18, CIFAR 3x32x32, batch 64
    python scripts/bench_winograd.py --models resnet18,vgg16 --repeats 7
    python scripts/bench_winograd.py --json tutorial/data/winograd.json

For each distinct layer (input and output channels, map size) of the model, the forward pass,
the input gradient dX and the weight gradient dW of the fast engine are timed on the same random
input with ``engine.tuning.WINOGRAD`` set to each of ``--modes`` ("off" is the column-matrix
path of :mod:`engine.gather`; "f2" and "f4" force F(2×2, 3×3) and F(4×4, 3×3) on 3×3 layers, and
both F(2×2, 5×5) on 5×5 layers; "auto" is the tuning table's rule). The modes take turns within each repeat, in an order that rotates, so
every mode sees the same moments of a shared machine; the table gives medians in milliseconds
and the speed-up of each mode over "off". ``--json`` writes the figures, the machine and the date
(the tutorial's Winograd page reads ``tutorial/data/winograd.json``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np

from common.cli.types import positive_int, shape3

MODES = ("off", "f2", "f4", "auto")


def winograd_layers(arch: str, input_shape):
    """[(C, OC, H, W, k, count)] of the model's 3×3 and 5×5 stride-1 dilation-1 Conv2D layers (groups 1),
    as met in a forward pass of one image; ``count``: how many layers share that shape."""
    import convolutional as C
    from convolutional.architectures import build_model

    model = build_model(arch, input_shape, 10)
    found = {}
    convs = [m for m in model.modules() if type(m) is C.Conv2D]
    originals = {}
    for conv in convs:
        originals[id(conv)] = conv.forward

        def record(x, _conv=conv):
            if (_conv.kernel_size in ((3, 3), (5, 5))
                    and (_conv.stride, _conv.dilation, _conv.groups) == ((1, 1), (1, 1), 1)):
                key = (_conv.in_channels, _conv.out_channels, x.shape[1], x.shape[2], _conv.kernel_size[0])
                found[key] = found.get(key, 0) + 1
            return originals[id(_conv)](x)

        conv.forward = record
    model.eval()
    model(np.zeros((1, *input_shape), dtype=np.float32))
    for conv in convs:
        del conv.forward
    return [(*key, count) for key, count in found.items()]


def time_layer(c, oc, h, w, batch, modes, repeats, dtype=np.float32, k=3):
    """{mode: {phase: [seconds per repeat]}} for one k×k layer padded by k // 2; phases forward, dX, dW."""
    from engine import tuning
    from engine.convolution import (
        conv2d_backward,
        conv2d_forward,
        input_grad_by_flipped_conv,
    )

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, h, w, c)).astype(dtype)
    weight = (rng.standard_normal((oc, c, k, k)) / np.sqrt(k * k * c)).astype(dtype)
    dy = rng.standard_normal((batch, h, w, oc)).astype(dtype)
    geometry = ((1, 1), (k // 2,) * 4, (1, 1), (h, w))
    times = {mode: {"forward": [], "dX": [], "dW": []} for mode in modes}
    before = tuning.WINOGRAD
    try:
        for rep in range(repeats + 1):                  # the first round warms up
            order = modes[rep % len(modes):] + modes[:rep % len(modes)]
            for mode in order:
                tuning.WINOGRAD = mode
                t0 = time.perf_counter()
                _out, cache = conv2d_forward(x, weight, None, *geometry)
                t1 = time.perf_counter()
                conv2d_backward(dy, cache, input_grad=False)
                t2 = time.perf_counter()
                input_grad_by_flipped_conv(dy, cache.wk, cache.plan, x.shape)
                t3 = time.perf_counter()
                if rep:
                    for phase, seconds in (("forward", t1 - t0), ("dW", t2 - t1), ("dX", t3 - t2)):
                        times[mode][phase].append(seconds)
    finally:
        tuning.WINOGRAD = before
    return times


def measure(arch, input_shape, batch, modes, repeats):
    """The per-layer medians (ms) and speed-ups over "off" of one model."""
    from engine import tuning
    from engine.plan import winograd_tile

    rows = []
    for c, oc, h, w, k, count in winograd_layers(arch, input_shape):
        times = time_layer(c, oc, h, w, batch, list(modes), repeats, k=k)
        ms = {mode: {phase: 1e3 * statistics.median(v) for phase, v in phases.items()}
              for mode, phases in times.items()}
        auto = winograd_tile((k, k, c, oc), (1, 1), (1, 1), (h, w), 4) if tuning.WINOGRAD == "auto" else None
        label = f"{c}->{oc} @ {h}x{w}" + (f" ({k}x{k})" if k != 3 else "")
        row = {"layer": label, "kernel": k, "in_channels": c, "out_channels": oc, "size": [h, w],
               "count": count, "ms": ms, "rule": {0: "off", 2: "f2", 4: "f4"}.get(auto)}
        if "off" in ms:
            row["speedup"] = {mode: {phase: ms["off"][phase] / ms[mode][phase] for phase in ms["off"]}
                              for mode in ms if mode != "off"}
        rows.append(row)
        print(render_row(arch, row), flush=True)
    return rows


def render_row(arch, row) -> str:
    parts = [f"{arch:9s} {row['layer']:18s} x{row['count']}  rule {row['rule']}"]
    for mode, phases in row["ms"].items():
        parts.append(f"{mode}: " + " ".join(f"{p} {v:6.1f}" for p, v in phases.items()))
    for mode, phases in row.get("speedup", {}).items():
        parts.append(f"{mode}/off speed-up: " + " ".join(f"{p} {v:.2f}" for p, v in phases.items()))
    return "\n    ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_winograd.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18", help="comma-separated architectures (default resnet18)")
    parser.add_argument("--input-shape", type=shape3, default=(3, 32, 32), help="C,H,W of the images (default 3,32,32)")
    parser.add_argument("--batch", type=positive_int, default=64, help="images per batch (default 64)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed rounds per layer (default 5)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="values of engine.tuning.WINOGRAD to compare (default off,f2,f4,auto)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    shape = args.input_shape
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        parser.error(f"--modes must be distinct values among {', '.join(MODES)}, got {args.modes!r}")

    import engine
    from common.errors import UserError
    from engine.parallel import choose_parallelism
    from scripts.bench.machine import cpu_model, usable_cores

    engine.use("fast")
    choose_parallelism(float("inf"))  # NNOTT's worker threads, as the Trainer uses them for these models
    report = {"date": datetime.date.today().isoformat(), "cpu": cpu_model(), "cores": usable_cores(),
              "load_average": round(os.getloadavg()[0], 1), "numpy": np.__version__,
              "batch": args.batch, "input_shape": list(shape), "repeats": args.repeats, "modes": modes,
              "dtype": "float32", "command": "python scripts/bench_winograd.py " + " ".join(argv or sys.argv[1:]),
              "models": {}}
    try:
        for arch in [a.strip() for a in args.models.split(",") if a.strip()]:
            report["models"][arch] = measure(arch, shape, args.batch, modes, args.repeats)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        try:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc.strerror}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
