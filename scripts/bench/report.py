"""Markdown tables from a benchmark JSON (the tutorial's performance page renders these at build time).

    from scripts.bench.report import render
    print(render("tutorial/data/benchmark.json"))

Nothing here measures; it only formats what ``scripts/benchmark.py --json`` wrote.
"""
from __future__ import annotations

import json
from pathlib import Path

#: Training-set sizes of the datasets each measured input shape stands for (test sets: 10,000).
DATASETS = {
    (1, 28, 28): [("MNIST", 60_000), ("Fashion-MNIST", 60_000), ("synth-digits", 60_000)],
    (3, 32, 32): [("CIFAR-10", 50_000), ("synth-digits-rgb", 60_000)],
}
TEST_IMAGES = 10_000


def load(path) -> dict:
    return json.loads(Path(path).read_text())


def _num(v, digits=0) -> str:
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def _ratio(r) -> str:
    if not r:
        return "–"
    return f"**{r['median']:.2f}** ({r['min']:.2f}–{r['max']:.2f})"


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _mflop(flops) -> str:
    if not flops:
        return "–"
    v = flops / 1e6
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine(report: dict) -> str:
    """A bullet list: CPU, cores, libraries, BLAS kernel and threads, GEMM peak, the command."""
    m = report["machine"]
    blas = (m.get("blas") or [{}])[0]
    g = report.get("gemm") or {}
    lines = [(f"- **CPU:** {m['cpu']}, {m['usable_cores']} usable cores, {m.get('memory_gib') or '?'} GiB memory "
              f"({m.get('os', '')})"),
             f"- **Software:** Python {m['python']}, NumPy {m['numpy']}"
             + (f", PyTorch {m['torch']}" if m.get("torch") else ""),
             f"- **BLAS:** {blas.get('internal_api') or '?'} {blas.get('version') or ''}"
             + (f", {blas['architecture']} kernel" if blas.get("architecture") else "")
             + f"; {report['threads']} threads for NumPy's BLAS and for PyTorch"]
    if g.get("gflops"):
        lines.append(f"- **GEMM peak** (float32 {g['size']}³ matrix product, median, same run): "
                     f"{g['gflops']:.0f} GFLOP/s with NumPy"
                     + (f", {g['torch_gflops']:.0f} GFLOP/s with PyTorch" if g.get("torch_gflops") else ""))
    load = m.get("load_average_at_start")
    lines.append(f"- **Run:** {report['date']}, batch {report['batch_size']}, {report['repeats']} alternating "
                 f"repeats, {report.get('seconds', '?')} s in all"
                 + (f"; load average {load[0]:.2f} at the start" if load else "")
                 + (" — a `--quick` smoke run, not a measurement" if report.get("quick") else ""))
    lines.append(f"- **Command:** `{report['command']}`")
    others = other_load(report)
    if others > 0.75 * m["usable_cores"]:
        lines += ["", f"!!! warning \"A busy machine\"\n    Other jobs shared this machine during the run (about "
                      f"{others:.1f} cores' worth of load besides the benchmark's own, on {m['usable_cores']} "
                      "cores). Multithreaded BLAS and PyTorch slow down "
                      "badly when cores are oversubscribed, so the absolute figures are low and the ratios "
                      "spread wide (see the min–max). Rerun the command on a quiet machine for figures to quote."]
    return "\n".join(lines)


def other_load(report: dict) -> float:
    """Load that is not the benchmark's own: the 1-minute load average before the run, or after
    it minus the benchmark's threads (which keep that many cores busy while they run)."""
    m = report["machine"]
    start = (m.get("load_average_at_start") or [0])[0]
    end = (m.get("load_average_at_end") or [0])[0]
    return max(start, end - (report.get("threads") or 1))


def throughput(report: dict) -> str:
    """Images/s for training and inference, ours and PyTorch's, with the ratio ours/torch."""
    header = ["model", "input", "parameters", "MFLOP / image (forward)", "train ours", "train PyTorch",
              "train ratio", "infer ours", "infer PyTorch", "infer ratio"]
    rows = []
    for r in report["models"]:
        o, t = r.get("ours", {}), r.get("torch", {})
        name = r["model"]
        rows.append([name, "×".join(map(str, r["input_shape"])), _num(r.get("params")),
                     _mflop(r.get("flops_fwd")),
                     _num(o.get("train_ips"), 1), _num(t.get("train_ips"), 1), _ratio(r.get("ratio_train")),
                     _num(o.get("infer_ips"), 1), _num(t.get("infer_ips"), 1), _ratio(r.get("ratio_infer"))])
    return _table(header, rows)


def engine(report: dict) -> str:
    """The same model on the reference engine (each layer's own readable code) and on the fast one."""
    header = ["model", "train reference", "train fast", "fast / reference", "infer reference", "infer fast",
              "fast / reference"]
    rows = []
    for r in report["models"]:
        o, ref = r.get("ours", {}), r.get("reference", {})
        if not ref.get("train_ips"):
            continue

        def times(mode):
            value = r.get(f"engine_speedup_{mode}")
            return "-" if not value else f"{value:.1f}×"

        rows.append([r["model"], _num(ref.get("train_ips"), 1), _num(o.get("train_ips"), 1), times("train"),
                     _num(ref.get("infer_ips"), 1), _num(o.get("infer_ips"), 1), times("infer")])
    return _table(header, rows) if rows else ""


def format_gflops(g, peak) -> str:
    """'41.3 (22%)': achieved GFLOP/s and its share of the measured GEMM peak ('-' when unknown)."""
    if g is None:
        return "-"
    text = f"{g:.3g}" if g < 1 else f"{g:.1f}"
    return text + (f" ({100 * g / peak:.0f}%)" if peak else "")


def efficiency(report: dict) -> str:
    """Achieved training GFLOP/s (3x forward FLOPs) against the GEMM peak, and peak memory."""
    peak = (report.get("gemm") or {}).get("gflops")
    header = ["model", "variant", "train GFLOP/s ours", "train GFLOP/s PyTorch",
              "peak RSS ours (MB)", "peak RSS PyTorch (MB)", "RSS ratio"]
    rows = []
    for r in report["models"]:
        o, t = r.get("ours", {}), r.get("torch", {})

        def gf(side):
            return format_gflops(side.get("train_gflops"), peak)

        rss = r.get("rss_ratio")
        rows.append([r["model"], o.get("variant_label") or r.get("label", ""), gf(o), gf(t),
                     _num(o.get("peak_rss_mb")), _num(t.get("peak_rss_mb")), "–" if rss is None else f"{rss:.2f}"])
    return _table(header, rows)


def epochs(report: dict) -> str:
    """Expected time of one epoch per model and dataset, from the measured images/s.

    epoch = training images / training images/s + 10,000 test images / inference images/s.
    """
    header = ["model", "dataset", "train images", "epoch, ours", "epoch, PyTorch"]
    rows = []
    for r in report["models"]:
        for dataset, n in DATASETS.get(tuple(r["input_shape"]), []):
            cells = []
            for side in ("ours", "torch"):
                s = r.get(side, {})
                if s.get("train_ips") and s.get("infer_ips"):
                    cells.append(_duration(n / s["train_ips"] + TEST_IMAGES / s["infer_ips"]))
                else:
                    cells.append("–")
            rows.append([r["model"], dataset, f"{n:,}", *cells])
    return _table(header, rows)


def errors(report: dict) -> str:
    lines = []
    for r in report["models"]:
        for side in ("ours", "torch", "reference"):
            err = r.get(side, {}).get("error")
            if err:
                lines.append(f"- {r['model']} ({side}): {err}")
    return "\n".join(lines)


def render(path) -> str:
    report = load(path)
    parts = [machine(report), "", "### Throughput (images/s, median)", "", throughput(report), "",
             "### Arithmetic rate and memory", "", efficiency(report), "",
             "### Expected time per epoch", "", epochs(report)]
    tricks = engine(report)
    if tricks:
        parts += ["", "### What the engine buys (images/s, reference engine against fast engine)", "", tricks]
    err = errors(report)
    if err:
        parts += ["", "Models that did not run:", "", err]
    return "\n".join(parts)
