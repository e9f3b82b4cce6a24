"""Winograd's 3×3 and 5×5 convolutions (engine/winograd.py) against the reference Conv2D and by their algebra.

The reference engine's direct convolution is the oracle: forward, dX and dW of F(2×2, 3×3),
F(4×4, 3×3) and F(2×2, 5×5), forced on with ``engine.tuning.WINOGRAD``, must equal it to 1e-10 in
float64 and to the stated float32 tolerances, with one worker and with two worker threads and
blocks of one image.
"""
from fractions import Fraction

import numpy as np
import pytest

import convolutional as C
import engine
from engine import convolution, parallel, tuning, winograd
from engine.plan import make_plan, winograd_tile

#: float32 error of each variant against the float64 direct convolution, relative to the largest
#: value (the direct path's own float32 error is about 5e-7 on these layers; F(2×2) matches it).
FLOAT32_TOLERANCE = {"f2": 5e-6, "f4": 5e-5, "5x5": 5e-5}  # F(2×2, 5×5) has F(4×4, 3×3)'s points


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def workers(request, monkeypatch):
    """One worker, or two worker threads with blocks of one image, so every block runs on a thread."""
    parallel.set_cpu_workers(request.param)
    if request.param > 1:
        monkeypatch.setattr(tuning, "SMALL_WORK_BYTES", 0)
        monkeypatch.setattr(tuning, "WINOGRAD_BLOCK_BYTES", 1)
        monkeypatch.setattr(tuning, "WINOGRAD_KERNEL_SHARE", 0)
    yield request.param
    parallel.set_cpu_workers()


@pytest.fixture(autouse=True)
def fast_engine():
    engine.use("fast")
    yield
    engine.use("fast")


def layer_results(mode, make, x, dtype, monkeypatch):
    """(y, dx, dW, db, plan) of one forward/backward of the layer ``make()`` on the engine ``mode``
    names: 'reference', or the fast engine with ``tuning.WINOGRAD = mode``."""
    engine.use("reference" if mode == "reference" else "fast")
    if mode != "reference":
        monkeypatch.setattr(tuning, "WINOGRAD", mode)
    rng = np.random.default_rng(7)
    layer = make().astype(dtype)
    layer.weight.data[...] = rng.standard_normal(layer.weight.shape) / 3
    if layer.bias is not None:
        layer.bias.data[...] = rng.standard_normal(layer.bias.shape)
    y = layer(x.astype(dtype))
    dx = layer.backward(rng.standard_normal(y.shape).astype(dtype))
    plan = None if mode == "reference" else layer.cache.plan
    db = None if layer.bias is None else layer.bias.grad.copy()
    return y, dx, layer.weight.grad.copy(), db, plan


def relative_errors(got, want):
    return [float(np.abs(g - w).max() / np.abs(w).max()) for g, w in zip(got[:4], want[:4]) if w is not None]


LAYERS = [  # (padding, input (N, H, W, C), out channels, bias)
    (1, (2, 8, 8, 5), 6, True),
    (0, (2, 7, 9, 4), 3, True),             # odd sizes: the last tiles are cropped
    (2, (1, 5, 6, 3), 4, False),            # batch 1, a pad beyond the kernel's reach
    ((2, 0, 1, 1), (2, 9, 6, 3), 5, True),  # F.pad's (left, right, top, bottom): asymmetric
    (1, (3, 1, 1, 2), 2, True),             # a 1x1 map: one tile, almost all padding
]


@pytest.mark.parametrize("mode", ["f2", "f4"])
@pytest.mark.parametrize("padding, shape, oc, bias", LAYERS)
def test_winograd_equals_the_direct_convolution(mode, padding, shape, oc, bias, workers, monkeypatch):
    make = lambda: C.Conv2D(shape[3], oc, 3, padding=padding, bias=bias)
    x = np.random.default_rng(3).standard_normal(shape)
    want = layer_results("reference", make, x, np.float64, monkeypatch)
    got = layer_results(mode, make, x, np.float64, monkeypatch)
    assert got[4].path == "winograd" and got[4].tile == int(mode[1])
    if workers > 1:
        assert len(got[4].blocks) == shape[0]  # one image a block
    assert max(relative_errors(got, want)) <= 1e-10
    got32 = layer_results(mode, make, x, np.float32, monkeypatch)
    assert got32[0].dtype == got32[1].dtype == got32[2].dtype == np.float32
    assert max(relative_errors(got32, want)) <= FLOAT32_TOLERANCE[mode]


LAYERS_5X5 = [  # (padding, input (N, H, W, C), out channels, bias)
    (2, (2, 9, 9, 4), 6, True),             # AlexNet's second layer in small: odd size, pad 2
    (0, (2, 8, 11, 3), 2, False),
    (3, (1, 4, 5, 2), 3, True),             # a pad beyond the kernel's reach
    ((1, 3, 0, 2), (2, 6, 7, 3), 4, True),  # asymmetric
]


@pytest.mark.parametrize("padding, shape, oc, bias", LAYERS_5X5)
def test_winograd_5x5_equals_the_direct_convolution(padding, shape, oc, bias, workers, monkeypatch):
    make = lambda: C.Conv2D(shape[3], oc, 5, padding=padding, bias=bias)
    x = np.random.default_rng(4).standard_normal(shape)
    want = layer_results("reference", make, x, np.float64, monkeypatch)
    got = layer_results("f2", make, x, np.float64, monkeypatch)
    assert got[4].path == "winograd" and (got[4].tile, got[4].kernel, got[4].alpha) == (2, (5, 5), 6)
    assert max(relative_errors(got, want)) <= 1e-10
    got32 = layer_results("f4", make, x, np.float32, monkeypatch)   # "f4" too: 5x5 layers have F(2x2) only
    assert got32[4].tile == 2 and max(relative_errors(got32, want)) <= FLOAT32_TOLERANCE["5x5"]


@pytest.mark.parametrize("mode", ["f2", "f4", "5x5"])
def test_float32_error_on_a_wide_layer_is_within_the_stated_tolerance(mode, monkeypatch):
    """A ResNet18-like layer (64 channels, 8x8), and AlexNet's 5x5 one (64 -> 96 channels at 15x15
    here): the tolerance holds where the sums are long."""
    k = 5 if mode == "5x5" else 3
    make = lambda: C.Conv2D(64, 96 if k == 5 else 64, k, padding=k // 2)
    x = np.random.default_rng(5).standard_normal((2, 15, 15, 64) if k == 5 else (2, 8, 8, 64))
    want = layer_results("reference", make, x, np.float64, monkeypatch)
    direct = relative_errors(layer_results("off", make, x, np.float32, monkeypatch), want)
    errors = relative_errors(layer_results("f2" if k == 5 else mode, make, x, np.float32, monkeypatch), want)
    assert max(errors) <= FLOAT32_TOLERANCE[mode]
    assert max(direct) <= 2e-6  # what the tolerance is compared with


def test_weight_gradient_by_the_column_matrix_when_winograd_dw_is_off(monkeypatch):
    monkeypatch.setattr(tuning, "WINOGRAD_WEIGHT_GRAD", False)
    make = lambda: C.Conv2D(4, 5, 3, padding=1)
    x = np.random.default_rng(1).standard_normal((2, 6, 7, 4))
    want = layer_results("reference", make, x, np.float64, monkeypatch)
    got = layer_results("f4", make, x, np.float64, monkeypatch)
    assert got[4].path == "winograd" and max(relative_errors(got, want)) <= 1e-10


def test_the_input_gradient_runs_through_winograd_too(monkeypatch):
    calls = []
    inner = convolution.winograd_forward

    def counting(x, wk, plan, saved):
        calls.append((x.shape, wk.shape))
        return inner(x, wk, plan, saved)

    monkeypatch.setattr(convolution, "winograd_forward", counting)
    monkeypatch.setattr(tuning, "WINOGRAD", "f2")
    layer = C.Conv2D(3, 4, 3, padding=1)
    y = layer(np.ones((2, 6, 6, 3)))
    layer.backward(np.ones_like(y))
    assert calls == [((2, 6, 6, 3), (3, 3, 3, 4)), ((2, 6, 6, 4), (3, 3, 4, 3))]  # forward, then dX


def test_transforms_compute_the_1d_correlation_exactly():
    """y = Aᵀ[(G g) ⊙ (Bᵀ d)] equals y[i] = Σ_j g[j] d[i+j], in exact fractions, for F(2,3), F(4,3) and F(2,5)."""
    rng = np.random.default_rng(0)
    for m, r in ((2, 3), (4, 3), (2, 5)):
        at, g, bt = winograd.transform_fractions(m, r)
        alpha = m + r - 1
        filt = [Fraction(int(v)) for v in rng.integers(-9, 10, r)]
        data = [Fraction(int(v)) for v in rng.integers(-9, 10, alpha)]
        gg = [sum(row[j] * filt[j] for j in range(r)) for row in g]
        bd = [sum(row[k] * data[k] for k in range(alpha)) for row in bt]
        y = [sum(at[i][k] * gg[k] * bd[k] for k in range(alpha)) for i in range(m)]
        assert y == [sum(filt[j] * data[i + j] for j in range(r)) for i in range(m)]
    at, g, bt = winograd.transforms(2)
    np.testing.assert_array_equal(g, [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
    np.testing.assert_array_equal(bt, [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]])
    np.testing.assert_array_equal(at, [[1, 1, 1, 0], [0, 1, -1, 1]])


def test_the_rule_picks_winograd_where_it_pays(monkeypatch):
    auto = lambda c, oc, size, itemsize=4: winograd_tile((3, 3, c, oc), (1, 1), (1, 1), (size, size), itemsize)
    monkeypatch.setattr(tuning, "WINOGRAD", "auto")
    big = max(tuning.WINOGRAD_F4_MIN_SIZE, 32)
    assert auto(3, 64, 32) == 0                                          # the RGB stem: too few channels
    assert auto(tuning.WINOGRAD_MIN_CHANNELS, tuning.WINOGRAD_MIN_CHANNELS, big) in (2, 4)
    assert auto(tuning.WINOGRAD_MIN_CHANNELS - 1, 256, big) == 0
    assert auto(256, 256, big) == (4 if tuning.WINOGRAD_F4_FLOAT32 else 2)
    assert auto(256, 256, big, itemsize=8) == 4
    assert auto(512, 512, 1) == 0                                        # one tile an image
    small = tuning.WINOGRAD_SMALL_MAP_CHANNELS
    assert auto(small, small, 7) == 4 and auto(small - 1, 512, 7) == 0   # under 8x8: more channels needed
    assert auto(tuning.WINOGRAD_MIN_CHANNELS, tuning.WINOGRAD_MIN_CHANNELS, 8) in (2, 4)
    monkeypatch.setattr(tuning, "WINOGRAD_F4_FLOAT32", False)
    assert auto(256, 256, big) == 2
    assert winograd_tile((5, 5, 64, 192), (1, 1), (1, 1), (15, 15), 4) == 2  # AlexNet's 5x5: F(2x2, 5x5)
    assert winograd_tile((5, 5, 3, 64), (1, 1), (1, 1), (32, 32), 4) == 0    # too few channels
    for geometry in [((7, 7, 64, 64), (1, 1), (1, 1)), ((3, 3, 64, 64), (2, 2), (1, 1)),
                     ((3, 3, 64, 64), (1, 1), (2, 2)), ((5, 5, 64, 64), (2, 2), (1, 1))]:
        monkeypatch.setattr(tuning, "WINOGRAD", "f2")
        assert winograd_tile(*geometry, (8, 8), 4) == 0                  # only 3x3 and 5x5, stride 1, dilation 1
    monkeypatch.setattr(tuning, "WINOGRAD_5X5", False)
    assert winograd_tile((5, 5, 64, 64), (1, 1), (1, 1), (8, 8), 4) == 0
    for mode, tile in (("off", 0), ("f2", 2), ("f4", 4)):
        monkeypatch.setattr(tuning, "WINOGRAD", mode)
        assert winograd_tile((3, 3, 1, 1), (1, 1), (1, 1), (3, 3), 4) == tile
    monkeypatch.setattr(tuning, "WINOGRAD", "fast")
    with pytest.raises(ValueError, match="auto, off, f2 or f4"):
        winograd_tile((3, 3, 64, 64), (1, 1), (1, 1), (8, 8), 4)


def test_the_plan_covers_the_output_with_whole_tiles_and_the_batch_with_blocks(monkeypatch):
    monkeypatch.setattr(tuning, "WINOGRAD", "f4")
    monkeypatch.setattr(tuning, "SMALL_WORK_BYTES", 0)
    parallel.set_cpu_workers(2)
    try:
        plan = make_plan((5, 9, 7, 8), (3, 3, 8, 16), (1, 1), (1, 1, 1, 1), (1, 1), (9, 7), 4)
        assert plan.path == "winograd" and plan.tile == 4 and plan.tiles == (3, 2)
        assert plan.blocks[0][0] == 0 and plan.blocks[-1][1] == 5
        assert all(a[1] == b[0] for a, b in zip(plan.blocks, plan.blocks[1:]))
        # a block holds at least the transformed kernel's bytes: U has 36*64*64 values, an image's 6 tiles
        # 6*36*(64+64), so up to 5 images a block, evened out over the two workers
        monkeypatch.setattr(tuning, "WINOGRAD_BLOCK_BYTES", 1)
        plan = make_plan((6, 9, 7, 64), (3, 3, 64, 64), (1, 1), (1, 1, 1, 1), (1, 1), (9, 7), 4)
        assert plan.blocks == ((0, 3), (3, 6))
    finally:
        parallel.set_cpu_workers()


def test_winograd_under_the_strict_device_backend(strict_backend, monkeypatch):
    from common.backend import StrictArray, to_device

    monkeypatch.setattr(tuning, "WINOGRAD", "f4")
    layer = C.Conv2D(3, 4, 3, padding=1).astype(np.float32)
    x = to_device(np.random.default_rng(0).standard_normal((2, 5, 6, 3)).astype(np.float32))
    y = layer(x)
    assert layer.cache.plan.path == "winograd" and isinstance(y, StrictArray)
    assert isinstance(layer.backward(y), StrictArray)


def test_bench_winograd_script_writes_its_json_and_refuses_bad_input(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_winograd.py"

    def run(*args):
        return subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, check=False)

    proc = run("--models", "baseline", "--input-shape", "1,16,16", "--batch", "2", "--repeats", "1",
               "--modes", "off,f2", "--json", "w.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "w.json").read_text())
    assert report["cpu"] and report["cores"] >= 1 and report["modes"] == ["off", "f2"]
    rows = report["models"]["baseline"]
    assert rows and all(r["ms"]["off"]["forward"] > 0 and set(r["speedup"]) == {"f2"} for r in rows)
    for args, code, message in [(("--models", "nope"), 1, "unknown architecture"),
                                (("--modes", "fast"), 2, "--modes must be"),
                                (("--input-shape", "3,32"), 2, "--input-shape: 3,32: expected 3 values C,H,W"),
                                (("--batch", "0"), 2, "--batch")]:
        proc = run(*args)
        assert proc.returncode == code and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
