"""Check that CuPy, the GPU and NNOTT's GPU path work on this machine, then stress the GPU.

    python scripts/test_cupy.py                        # all checks, 10 s GEMM stress
    python scripts/test_cupy.py --stress-seconds 60 --stress-size 8192

Each check prints one ``[OK]`` or ``[FAIL]`` line:

1. device visibility and memory (name, compute capability, free/total memory, an allocation);
2. elementwise math against NumPy (exp, log, tanh, sqrt, where, a broadcast);
3. matmul against NumPy (float32 and float64);
4. NumPy parity of reductions, argmax, sorting, fancy indexing and cumulative sums;
5. a custom ``cupy.ElementwiseKernel`` (a fused bias + ReLU) against the same sum in NumPy;
6. NNOTT's ``Conv2D`` (dense, strided, depthwise) forward and backward on the GPU against
   the CPU with the same weights;
7. a float32 GEMM loop for ``--stress-seconds`` seconds, reporting TFLOP/s and checking that
   every product equals the first (a flaky GPU gives different answers under load).

Exit code 0 when everything passes, 1 when any check fails, 2 when there is no CuPy or no
CUDA device (one line, no traceback).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np

CHECKS = []


def check(title):
    """Register a check: a function that returns a detail string or raises AssertionError."""
    def register(fn):
        CHECKS.append((title, fn))
        return fn
    return register


def close(name, got, want, rtol, atol):
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {got.shape} on the GPU, {want.shape} on the CPU")
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        err = float(np.max(np.abs(got.astype(np.float64) - want)))
        raise AssertionError(f"{name}: max abs difference {err:.3g} (rtol {rtol}, atol {atol})")


# ---------------------------------------------------------------------------- the checks
@check("device visibility and memory")
def check_device(cp, args):
    count = cp.cuda.runtime.getDeviceCount()
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    free, total = cp.cuda.runtime.memGetInfo()
    block = cp.ones(64 * 2**20 // 4, dtype=cp.float32)  # 64 MiB
    assert float(block.sum()) == block.size, "a 64 MiB allocation did not read back as ones"
    del block
    runtime = cp.cuda.runtime.runtimeGetVersion()
    return (f"{count} device(s); using {dev.id}: {name}, compute capability {dev.compute_capability}, "
            f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free, CUDA runtime {runtime // 1000}.{runtime % 1000 // 10}, "
            f"CuPy {cp.__version__}")


@check("elementwise math matches NumPy")
def check_elementwise(cp, args):
    rng = np.random.default_rng(0)
    a = rng.uniform(0.1, 3.0, (257, 129)).astype(np.float32)
    b = rng.standard_normal((129,)).astype(np.float32)
    g = cp.asarray(a), cp.asarray(b)
    for name, f in [("exp", lambda m, x, y: m.exp(x)), ("log", lambda m, x, y: m.log(x)),
                    ("tanh", lambda m, x, y: m.tanh(x - 1.5)), ("sqrt", lambda m, x, y: m.sqrt(x)),
                    ("where", lambda m, x, y: m.where(x > 1.0, x, -x)),
                    ("broadcast", lambda m, x, y: x * y + y ** 2)]:
        close(name, cp.asnumpy(f(cp, *g)), f(np, a, b), rtol=1e-5, atol=1e-6)
    return "exp, log, tanh, sqrt, where, broadcast (float32, rtol 1e-5)"


@check("matmul matches NumPy")
def check_matmul(cp, args):
    rng = np.random.default_rng(1)
    for dtype, rtol in ((np.float32, 1e-4), (np.float64, 1e-10)):
        a = rng.standard_normal((300, 200)).astype(dtype)
        b = rng.standard_normal((200, 150)).astype(dtype)
        got = cp.asnumpy(cp.asarray(a) @ cp.asarray(b))
        # float32 GPU GEMMs may use TF32 only when asked; CuPy's default is full float32
        close(f"matmul {np.dtype(dtype).name}", got, a.astype(np.float64) @ b, rtol=rtol, atol=rtol * 10)
    return "300x200 @ 200x150 in float32 and float64"


@check("NumPy parity: reductions, argmax, sort, indexing, cumsum")
def check_parity(cp, args):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 1000)).astype(np.float32)
    idx = rng.integers(0, 1000, size=300)
    g = cp.asarray(x)
    close("sum", cp.asnumpy(g.sum(axis=1)), x.sum(axis=1), rtol=1e-4, atol=1e-4)
    close("mean", cp.asnumpy(g.mean(axis=0)), x.mean(axis=0), rtol=1e-4, atol=1e-5)
    close("max", cp.asnumpy(g.max(axis=1)), x.max(axis=1), rtol=0, atol=0)
    assert np.array_equal(cp.asnumpy(g.argmax(axis=1)), x.argmax(axis=1)), "argmax differs"
    close("sort", cp.asnumpy(cp.sort(g, axis=1)), np.sort(x, axis=1), rtol=0, atol=0)
    close("fancy indexing", cp.asnumpy(g[:, cp.asarray(idx)]), x[:, idx], rtol=0, atol=0)
    close("cumsum", cp.asnumpy(cp.cumsum(g, axis=1)), np.cumsum(x, axis=1), rtol=1e-3, atol=1e-3)
    return "sum, mean, max, argmax, sort, take, cumsum on 64x1000"


@check("custom ElementwiseKernel (fused bias + ReLU)")
def check_kernel(cp, args):
    kernel = cp.ElementwiseKernel("T x, T b", "T y", "y = max(x + b, (T)0)", "nnott_bias_relu")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((128, 256)).astype(np.float32)
    b = rng.standard_normal((256,)).astype(np.float32)
    got = cp.asnumpy(kernel(cp.asarray(x), cp.asarray(b)))
    close("bias_relu", got, np.maximum(x + b, 0), rtol=0, atol=0)
    return "y = max(x + b, 0) compiled and exact"


@check("NNOTT Conv2D forward/backward: GPU equals CPU")
def check_conv(cp, args):
    from common import backend
    from common.seed import seed_everything
    from convolutional.conv import Conv2D

    layers = {"dense 3x3": dict(in_channels=8, out_channels=16, kernel_size=3, padding=1),
              "strided 3x3 s2": dict(in_channels=8, out_channels=16, kernel_size=3, stride=2, padding=1),
              "depthwise 5x5": dict(in_channels=8, out_channels=8, kernel_size=5, padding=2, groups=8)}
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 12, 12, 8)).astype(np.float32)   # channels-last, as inside a network
    done = []
    try:
        for name, kw in layers.items():
            results = {}
            state = None
            for device in ("cpu", "gpu"):
                if device == "gpu":
                    assert backend.use_gpu(warn=False), backend.gpu_unavailable_reason()
                else:
                    backend.use_cpu()
                seed_everything(0)
                layer = Conv2D(**kw)
                if state is None:
                    state = layer.state_dict()
                else:
                    layer.load_state_dict(state)
                out = layer(backend.to_device(x))
                dy = np.random.default_rng(5).standard_normal(out.shape).astype(np.float32)
                dx = layer.backward(backend.to_device(dy))
                results[device] = [backend.to_numpy(a) for a in
                                   (out, dx, layer.weight.grad, layer.bias.grad)]
            for what, g, c in zip(("output", "dx", "dW", "db"), results["gpu"], results["cpu"]):
                close(f"{name} {what}", g, c, rtol=1e-4, atol=1e-4)
            done.append(name)
    finally:
        backend.use_cpu()
    return ", ".join(done) + ": output, dx, dW, db within 1e-4"


@check("stress GEMM")
def check_stress(cp, args):
    n = args.stress_size
    rng = np.random.default_rng(6)
    a = cp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = cp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    c = cp.empty((n, n), dtype=cp.float32)
    reference = a @ b
    cp.cuda.Device().synchronize()
    start_event, end_event = cp.cuda.Event(), cp.cuda.Event()
    times, mismatches, runs = [], 0, 0
    deadline = time.perf_counter() + args.stress_seconds
    while time.perf_counter() < deadline or runs == 0:
        start_event.record()
        cp.matmul(a, b, out=c)
        end_event.record()
        end_event.synchronize()
        times.append(cp.cuda.get_elapsed_time(start_event, end_event) / 1000.0)
        runs += 1
        if runs % 10 == 1 and not bool(cp.array_equal(c, reference)):
            mismatches += 1
    if not bool(cp.isfinite(c).all()):
        raise AssertionError("the product contains NaN or Inf")
    flops = 2.0 * n**3
    median = flops / statistics.median(times) / 1e12
    best = flops / min(times) / 1e12
    if mismatches:
        raise AssertionError(f"{mismatches} of {(runs + 9) // 10} checked products differ from the first "
                             f"(unstable GPU?); {median:.1f} TFLOP/s")
    return (f"{runs} float32 {n}x{n} products in {sum(times):.1f} s: median {median:.1f} TFLOP/s, "
            f"best {best:.1f} TFLOP/s, all checked results identical")


# ---------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="test_cupy.py", description="Check CuPy, the GPU and NNOTT's GPU path; stress the GPU.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python scripts/test_cupy.py                       # every check, a 10 s stress loop\n"
               "  python scripts/test_cupy.py --stress-seconds 0    # the checks and one stress product only\n"
               "  python scripts/test_cupy.py --stress-seconds 60 --stress-size 8192   # a longer, larger stress\n"
               "  python scripts/test_cupy.py --debug               # the traceback of a failed check")
    p.add_argument("--stress-seconds", type=float, default=10.0, help="length of the GEMM stress loop (default 10)")
    p.add_argument("--stress-size", type=int, default=4096, help="matrix side of the stress GEMM (default 4096)")
    p.add_argument("--debug", action="store_true", help="print the traceback of a failed check")
    args = p.parse_args(argv)
    if args.stress_seconds < 0 or args.stress_size < 1:
        print("error: --stress-seconds must be >= 0 and --stress-size >= 1", file=sys.stderr)
        return 2
    from common.backend import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason is not None:
        print(f"no GPU to test: {reason}")
        return 2
    import cupy as cp

    failures = 0
    for title, fn in CHECKS:
        t0 = time.perf_counter()
        try:
            detail = fn(cp, args)
        except Exception as exc:
            failures += 1
            print(f"[FAIL] {title}: {type(exc).__name__ + ': ' if not isinstance(exc, AssertionError) else ''}{exc}",
                  flush=True)
            if args.debug:
                traceback.print_exc()
            continue
        print(f"[OK]   {title} ({time.perf_counter() - t0:.1f} s): {detail}", flush=True)
    print(f"{len(CHECKS) - failures} of {len(CHECKS)} checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
