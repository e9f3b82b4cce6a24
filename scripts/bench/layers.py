"""Where does a training step of one of our models spend its time? Per-layer forward/backward timings.

    python scripts/bench/layers.py resnet18              # 5 timed steps at batch 64
    python scripts/bench/layers.py mlp --steps 50 --top 10

Every leaf module (one without child modules) gets its ``forward`` and ``backward`` wrapped
with a timer; containers and blocks are charged only for what their children do not cover
(residual additions, reshapes: the "block glue" line). The loss and the Adam step are timed
on their own. Conv and Linear rows also show their achieved GFLOP/s from the layer shapes.
Run it on a quiet machine: a loaded one slows multithreaded BLAS calls far more than the rest.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.bench.workloads import MODELS, batch, build_ours


def instrument(model, totals, flops):
    """Wrap every leaf module's forward/backward to add its seconds into ``totals[(name, phase)]``."""
    for name, module in model.named_modules():
        if module._modules:
            continue

        def timed(fn, key, module=module):
            def call(x):
                t0 = time.perf_counter()
                out = fn(x)
                totals[key] += time.perf_counter() - t0
                if key[1] == "forward" and key[0] not in flops:
                    w = module._parameters.get("weight")
                    if w is not None and w.data.ndim >= 2:
                        flops[key[0]] = 2 * int(w.data.size) * (math.prod(out.shape[1:]) // w.data.shape[0])
                return out
            return call

        object.__setattr__(module, "forward", timed(module.forward, (name, "forward")))
        object.__setattr__(module, "backward", timed(module.backward, (name, "backward")))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="one of: " + ", ".join(n for n, w in MODELS.items() if w.tier != "scalar"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="timed training steps (after 2 warm-up steps)")
    p.add_argument("--top", type=int, default=15, help="layers to list (the per-type summary lists all)")
    args = p.parse_args(argv)
    workload = MODELS.get(args.model)
    if workload is None or workload.tier == "scalar":
        print(f"error: unknown model {args.model!r}; choose one of "
              f"{', '.join(n for n, w in MODELS.items() if w.tier != 'scalar')}", file=sys.stderr)
        return 2
    from vectorized.losses import CrossEntropyLoss
    from vectorized.optim import Adam

    model = build_ours(workload)
    x, y = batch(workload, args.batch_size)
    loss, opt = CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3)
    totals, flops = defaultdict(float), {}
    parts = defaultdict(list)

    def step(record):
        t = [time.perf_counter()]
        model.train()
        model.zero_grad()
        t.append(time.perf_counter())
        logits = model(x)
        t.append(time.perf_counter())
        loss.forward(logits, y)
        g = loss.backward()
        t.append(time.perf_counter())
        model.backward(g)
        t.append(time.perf_counter())
        opt.step()
        t.append(time.perf_counter())
        if record:
            for key, a, b in (("zero_grad", 0, 1), ("forward", 1, 2), ("loss", 2, 3), ("backward", 3, 4),
                              ("adam", 4, 5), ("step", 0, 5)):
                parts[key].append(t[b] - t[a])

    for _ in range(2):
        step(False)
    instrument(model, totals, flops)
    history = defaultdict(list)
    for _ in range(args.steps):
        totals.clear()
        step(True)
        for key, s in totals.items():
            history[key].append(s)
    # medians over the steps, so one step slowed by another process does not skew a layer
    totals = {key: statistics.median(v) for key, v in history.items()}
    n = 1
    step_s = statistics.median(parts["step"])
    print(f"{args.model}: batch {args.batch_size}, {args.steps} steps, median step {1000 * step_s:.1f} ms "
          f"({args.batch_size / step_s:.1f} images/s)")
    print("  " + ", ".join(f"{k} {1000 * statistics.median(v):.1f} ms" for k, v in parts.items() if k != "step"))
    leaf_total = sum(totals.values()) / n
    glue = statistics.median(parts["forward"]) + statistics.median(parts["backward"]) - leaf_total
    print(f"  leaf layers {1000 * leaf_total:.1f} ms, block glue (residual adds, containers) {1000 * glue:.1f} ms")

    by_type = defaultdict(lambda: [0, 0.0, 0.0, 0])
    modules = dict(model.named_modules())
    for (name, phase), s in totals.items():
        row = by_type[type(modules[name]).__name__]
        row[1 if phase == "forward" else 2] += s / n
    for name, module in modules.items():
        if not module._modules:
            by_type[type(module).__name__][0] += 1
            by_type[type(module).__name__][3] += flops.get(name, 0)
    print(f"\n{'layer type':<22}{'count':>6}{'fwd ms':>9}{'bwd ms':>9}{'% step':>8}{'GFLOP/s':>9}")
    for kind, (count, f, b, fl) in sorted(by_type.items(), key=lambda kv: -(kv[1][1] + kv[1][2])):
        rate = f"{3 * fl * args.batch_size / (f + b) / 1e9:9.1f}" if fl and f + b else " " * 9
        print(f"{kind:<22}{count:>6}{1000 * f:>9.1f}{1000 * b:>9.1f}{100 * (f + b) / step_s:>8.1f}{rate}")

    rows = []
    for name, module in modules.items():
        if module._modules:
            continue
        f, b = totals.get((name, "forward"), 0.0) / n, totals.get((name, "backward"), 0.0) / n
        rows.append((f + b, name, type(module).__name__, f, b, flops.get(name, 0)))
    rows.sort(reverse=True)
    print(f"\n{'layer':<34}{'type':<18}{'fwd ms':>9}{'bwd ms':>9}{'% step':>8}{'GFLOP/s':>9}")
    for total, name, kind, f, b, fl in rows[:args.top]:
        rate = f"{3 * fl * args.batch_size / total / 1e9:9.1f}" if fl and total else " " * 9
        print(f"{name:<34}{kind:<18}{1000 * f:>9.2f}{1000 * b:>9.2f}{100 * total / step_s:>8.1f}{rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
