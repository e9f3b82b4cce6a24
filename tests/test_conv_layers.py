"""Conv-tier layers: float64 gradient checks, fast kernels == naive loop twins, shape errors,
max-pool ties, stochastic depth statistics, and a training step under the strict-device backend."""
import numpy as np
import pytest

import convolutional as C
from common.backend import StrictArray, to_device, to_numpy
from common.errors import UserError
from convolutional import naive
from engine import tuning
from vectorized.gradcheck import check_module_gradients


def nchw(a):
    return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2)))


def nhwc(a):
    return np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))


@pytest.fixture(autouse=True)
def split_small_work(monkeypatch):
    """The shapes here are tiny; without this they would run as one block on the calling thread
    (engine.tuning.SMALL_WORK_BYTES, SMALL_PASS_BYTES) and the multi-worker code would go untested."""
    monkeypatch.setattr(tuning, "SMALL_WORK_BYTES", 0)
    monkeypatch.setattr(tuning, "SMALL_PASS_BYTES", 0)


def assert_grads_ok(module, x, **kw):
    report = check_module_gradients(module, x, **kw)
    assert report.ok, "\n" + str(report)
    return report


def randomise_norms(module, rng):
    """Non-trivial gamma, beta and running statistics in every BatchNorm2D / LayerNorm2D."""
    for m in module.modules():
        if isinstance(m, (C.BatchNorm2D, C.LayerNorm2D)):
            c = m.weight.shape[0]
            m.weight.data[...] = rng.uniform(0.5, 2, c)
            m.bias.data[...] = rng.uniform(-0.5, 0.5, c)
        if isinstance(m, C.BatchNorm2D):
            m.running_mean[...] = rng.uniform(-0.5, 0.5, c)
            m.running_var[...] = rng.uniform(0.5, 2, c)


# (in, out, kernel, stride, padding, dilation, groups, H, W)
CONV_CASES = [
    (3, 4, 3, 1, 1, 1, 1, 7, 6),              # the common 3x3 "same"
    (3, 4, 3, 2, 1, 1, 1, 7, 6),              # stride 2 on odd sizes
    (4, 6, 3, 1, "same", 2, 2, 8, 9),         # dilation, groups, 'same'
    (5, 5, 7, 1, 3, 1, 5, 9, 9),              # 7x7 depthwise (ConvNeXt)
    (6, 6, 3, 2, 1, 1, 6, 9, 8),              # depthwise stride 2 (MBConv)
    (3, 4, 1, 1, 0, 1, 1, 5, 5),              # 1x1: a single GEMM
    (3, 4, 1, 2, 0, 1, 1, 5, 5),              # 1x1 stride 2 (ResNet downsample)
    (2, 3, (2, 3), 1, "same", 1, 1, 6, 5),    # even kernel 'same': extra pad bottom/right
    (2, 3, (3, 2), (2, 1), (0, 1), (1, 2), 1, 7, 6),  # every pair asymmetric
    (4, 8, 3, 1, 1, 1, 4, 5, 5),              # grouped with a channel multiplier
    (4, 4, 3, 1, 1, 1, 1, 2, 2),              # 2x2 map, mostly padding
    (2, 3, 5, 1, 0, 1, 1, 5, 6),              # kernel as large as the input
    (2, 3, 3, 1, (3, 0), 1, 1, 4, 5),         # padding beyond the kernel's reach (dY is cropped)
    (1, 3, 3, 1, 1, 1, 1, 7, 6),              # one channel: columns copied window by window
    (1, 2, 3, 2, 1, 2, 1, 9, 8),              # ... with stride and dilation
    (4, 4, 3, 1, 2, 2, 4, 7, 6),              # depthwise, dilated (dX: flipped, dilated taps)
    (3, 3, 3, 1, (3, 0), 1, 3, 4, 5),         # depthwise, padding beyond the kernel's reach
    (4, 4, 5, 2, 2, 1, 4, 9, 9),              # depthwise 5x5 stride 2 (EfficientNet)
]


@pytest.fixture(params=["gather", "columns", "gather-blocks", "columns-blocks", "banded", "banded-segments", "taps"])
def conv_path(request, monkeypatch):
    """Run a test once per fast path: 'gather' (column blocks built in forward and again in
    backward) and 'columns' (the whole column matrix, kept; used for thin first layers), each as
    the default blocks and as tiny ones (one image each) shared out to the worker threads;
    and 'banded' (whole output rows times a banded matrix, forward, dW and dX), which every
    stride-1, dilation-1 case takes under that setting (the others fall back to 'gather'), once
    with whole rows and once cut into one-pixel segments ('banded-segments'), their input rows
    copied as plain values in the first and one run per item in the second (BAND_ITEM_BYTES).
    1x1 stride-1 unpadded cases take the 'pointwise' path (one product) under every setting.
    Depthwise layers sum their k² taps with one einsum on the CPU, or one pass per tap
    ('taps', the GPU's way)."""
    monkeypatch.setattr(tuning, "DEPTHWISE_EINSUM", request.param != "taps")
    banded = request.param.startswith("banded")
    for name in ("BAND_MAX_RUN", "BAND_MAX_WASTE"):
        monkeypatch.setattr(tuning, name, 10**9 if banded else 0)
    monkeypatch.setattr(tuning, "BAND_MIN_COLUMNS", 1 if request.param == "banded-segments" else 10**9)
    monkeypatch.setattr(tuning, "BAND_ITEM_BYTES", 10**9 if request.param == "banded-segments" else 0)
    columns = request.param.startswith("columns")
    monkeypatch.setattr(tuning, "COLUMNS_MAX_K", 10**9 if columns else 0)
    if request.param.endswith("blocks"):
        monkeypatch.setattr(tuning, "CONV_BLOCK_BYTES", 1)
        monkeypatch.setattr(tuning, "MIN_BLOCK_ROWS", 1)
        monkeypatch.setattr(tuning, "DEPTHWISE_BLOCK_BYTES", 1)
    return request.param


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_fast_equals_naive(case, conv_path):
    cin, cout, k, s, p, d, g, h, w = case
    rng = np.random.default_rng(cin * 7 + h)
    conv = C.Conv2D(cin, cout, k, s, p, d, g).astype(np.float64)
    conv.bias.data[...] = rng.standard_normal(cout)
    x = rng.standard_normal((2, h, w, cin))
    y = conv(x)
    ref = naive.conv2d_naive(nchw(x), conv.weight.data, conv.bias.data, conv.stride, conv.pads, conv.dilation, g)
    np.testing.assert_allclose(y, nhwc(ref), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)
    rdx, rdw, rdb = naive.conv2d_backward_naive(nchw(dy), nchw(x), conv.weight.data, conv.stride, conv.pads,
                                                conv.dilation, g)
    np.testing.assert_allclose(dx, nhwc(rdx), atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, rdw, atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, rdb, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_copy_pixels_equals_a_plain_copy(dtype):
    """Pixels copied as single items (few channels), plainly (many), or when an axis is not a run."""
    from engine.arrays import copy_pixels

    rng = np.random.default_rng(1)
    for c in (1, 3, 6, 16, 40):
        x = (rng.standard_normal((2, 7, 9, c)) * 50).astype(dtype)
        for src in (x[:, :, 0::2], x[:, 1::3, 1::2], x[:, :, :4, :][..., ::-1]):
            dst = np.zeros(src.shape, dtype)
            assert copy_pixels(dst, src) is dst
            np.testing.assert_array_equal(dst, src)
        wide = np.zeros((2, 7, 18, c), dtype)
        copy_pixels(wide[:, :, 1::2], x)          # into a strided view
        np.testing.assert_array_equal(wide[:, :, 1::2], x)
        assert not wide[:, :, 0::2].any()


def test_lenet_layers_take_the_banded_path_and_match_naive():
    """LeNet's grey first layer (kw*C = 5) and its second layer (kw*C = 30) run banded forward
    and backward, and equal the loops; at LeNet's own sizes each output row is cut into two
    segments (BAND_MIN_COLUMNS). The grey input is a transposed NCHW array, as
    ToChannelsLast gives it: with one channel NumPy calls it contiguous although its channel
    stride is not the item size, which the row view of the banded path must not trust."""
    rng = np.random.default_rng(5)

    def banded_equals_naive(conv, inputs):
        conv.bias.data[...] = rng.standard_normal(conv.out_channels)
        y = conv(inputs)
        assert conv.cache.plan.path == "banded"
        ref = naive.conv2d_naive(nchw(inputs), conv.weight.data, conv.bias.data, conv.stride, conv.pads, conv.dilation, 1)
        np.testing.assert_allclose(y, nhwc(ref), atol=1e-12)
        dy = rng.standard_normal(y.shape)
        rdx, rdw, rdb = naive.conv2d_backward_naive(nchw(dy), nchw(inputs), conv.weight.data, conv.stride, conv.pads)
        np.testing.assert_allclose(conv.backward(dy), nhwc(rdx), atol=1e-12)
        np.testing.assert_allclose(conv.weight.grad, rdw, atol=1e-12)
        np.testing.assert_allclose(conv.bias.grad, rdb, atol=1e-12)
        return y

    x = np.transpose(rng.standard_normal((2, 1, 12, 12)), (0, 2, 3, 1))
    x6 = rng.standard_normal((2, 9, 9, 6))
    second = C.Conv2D(6, 4, 5).astype(np.float64)
    for conv, inputs in [(C.Conv2D(1, 3, 5, padding=2), x), (C.Conv2D(1, 3, 5), x), (second, x6)]:
        banded_equals_naive(conv.astype(np.float64), inputs)
    assert_grads_ok(second, x6)
    for conv, size in [(C.Conv2D(1, 6, 5, padding=2), 28), (C.Conv2D(6, 16, 5), 14)]:
        conv = conv.astype(np.float64)  # LeNet's own sizes: each output row is cut into two segments
        y = banded_equals_naive(conv, rng.standard_normal((1, size, size, conv.in_channels)))
        assert y.shape[2] // conv.cache.plan.seg_ow == 2
    wide = C.Conv2D(8, 4, 5)            # kw*C = 40: columns, not a band
    wide(rng.standard_normal((2, 9, 9, 8)))
    assert wide.cache.plan.path == "gather"


#: Finite-difference checks are the suite's longest tests: the two main paths run by default, the
#: other five (each already compared with the naive convolution above) only with -m slow.
SLOW_PATHS = ("gather-blocks", "columns-blocks", "banded", "banded-segments", "taps")


@pytest.mark.parametrize("conv_path", ["gather", "columns", *(pytest.param(p, marks=pytest.mark.slow)
                                                             for p in SLOW_PATHS)], indirect=True)
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if i in (2, 3, 4) else c
                                  for i, c in enumerate(CONV_CASES[:9])])  # 2-4: the longest checks
def test_conv2d_gradients(case, conv_path):
    cin, cout, k, s, p, d, g, h, w = case
    bias = case[0] % 2 == 1
    conv = C.Conv2D(cin, cout, k, s, p, d, g, bias=bias)
    assert_grads_ok(conv, np.random.default_rng(h).standard_normal((2, h, w, cin)))


def test_depthwise_module_and_weight_layout():
    dw = C.DepthwiseConv2D(6, 3, stride=2, padding=1)
    assert dw.weight.shape == (6, 1, 3, 3) and dw.depthwise
    assert_grads_ok(dw, np.random.default_rng(1).standard_normal((2, 7, 6, 6)))
    single = C.DepthwiseConv2D(1, 3, padding=1)  # one channel: an ordinary convolution
    assert_grads_ok(single, np.random.default_rng(2).standard_normal((2, 4, 4, 1)))


def test_conv_output_is_float32_and_contiguous():
    conv = C.Conv2D(3, 8, 3, padding=1)
    y = conv(np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32))
    assert y.dtype == np.float32 and y.flags.c_contiguous
    dx = conv.backward(np.ones_like(y))
    assert dx.dtype == np.float32 and conv.weight.grad.dtype == np.float32


# (kernel, stride, padding, H, W)
POOL_CASES = [(2, None, 0, 6, 6), (3, 2, 1, 7, 8), (3, 1, 1, 5, 5), (2, 2, 0, 5, 7), ((2, 3), (1, 2), (1, 1), 6, 7)]


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if i in (1, 4) else c
                                  for i, c in enumerate(POOL_CASES)])  # 1 and 4: the longest checks
@pytest.mark.parametrize("short_run", [0, 10**9], ids=["views", "copied-planes"])
def test_maxpool_fast_equals_naive_and_gradients(case, short_run, monkeypatch):
    """Both ways of reading the k² windows: strided views, and (few channels, ``SHORT_RUN``) each
    window copied out to a contiguous plane first."""
    from convolutional import pooling

    monkeypatch.setattr(tuning, "SHORT_RUN", short_run)
    k, s, p, h, w = case
    pool = C.MaxPool2D(k, s, p)
    x = np.random.default_rng(h * w).standard_normal((3, h, w, 3))  # 3 images: blocks of 2 and 1
    y = pool(x)
    ref, arg = naive.maxpool2d_naive(nchw(x), pool.kernel_size, pool.stride, pool.pads)
    np.testing.assert_array_equal(y, nhwc(ref))
    dy = np.random.default_rng(1).standard_normal(y.shape)
    ref_dx = naive.maxpool2d_backward_naive(nchw(dy), nchw(x).shape, arg, pool.kernel_size, pool.stride, pool.pads)
    np.testing.assert_allclose(pool.backward(dy), nhwc(ref_dx), atol=1e-12)
    assert_grads_ok(pool, x)


@pytest.mark.parametrize("case", POOL_CASES)
def test_avgpool_fast_equals_naive_and_gradients(case):
    k, s, p, h, w = case
    pool = C.AvgPool2D(k, s, p)
    x = np.random.default_rng(h + w).standard_normal((2, h, w, 3))
    ref = naive.avgpool2d_naive(nchw(x), pool.kernel_size, pool.stride, pool.pads)
    np.testing.assert_allclose(pool(x), nhwc(ref), atol=1e-12)
    assert_grads_ok(pool, x)


def test_maxpool_tie_sends_the_gradient_to_the_first_maximum_only():
    x = np.zeros((1, 2, 2, 1))
    pool = C.MaxPool2D(2)
    pool(x)
    dx = pool.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])
    # overlapping windows on a constant map: each window credits its own top-left element
    x = np.full((1, 3, 3, 1), 2.0)
    pool = C.MaxPool2D(2, stride=1)
    pool(x)
    dx = pool.backward(np.ones((1, 2, 2, 1)))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("kernel, shape", [(2, (3, 7, 10, 4)), (3, (3, 7, 10, 4)), ((2, 3), (3, 7, 10, 4)),
                                           (16, (2, 16, 33, 2))])  # 256 offsets: an int32 arg
@pytest.mark.parametrize("short_run", [0, 10**9], ids=["views", "copied-planes"])
def test_tiling_maxpool_with_many_ties_matches_naive(kernel, shape, short_run, monkeypatch):
    """Windows that tile the input (stride = kernel): with values from {0, 1, 2} most windows
    hold ties, and each must still credit its first maximum in row-major order, like the loops
    and PyTorch. Both passes: the tiling pass on strided views (along rows, then down columns),
    and for few channels (``SHORT_RUN``, ``PIXEL_ITEM_BYTES``) the window-by-window pass on
    contiguous copies, with a backward pass that writes through a contiguous buffer."""
    from convolutional import pooling

    monkeypatch.setattr(tuning, "SHORT_RUN", short_run)
    monkeypatch.setattr(tuning, "PIXEL_ITEM_BYTES", short_run)
    x = np.random.default_rng(4).integers(0, 3, size=shape).astype(np.float64)
    pool = C.MaxPool2D(kernel)
    from engine.pooling import _tiles
    assert _tiles(pool)  # the engine's pass for windows that tile the input
    y = pool(x)
    ref, arg = naive.maxpool2d_naive(nchw(x), pool.kernel_size, pool.stride, pool.pads)
    np.testing.assert_array_equal(y, nhwc(ref))
    dy = np.random.default_rng(5).standard_normal(y.shape)
    ref_dx = naive.maxpool2d_backward_naive(nchw(dy), nchw(x).shape, arg, pool.kernel_size, pool.stride, pool.pads)
    np.testing.assert_array_equal(pool.backward(dy), nhwc(ref_dx))


@pytest.mark.parametrize("pool_args", [(2,), (3, 2, 1), ((2, 3),)])
def test_sequential_runs_relu_after_max_pool_with_the_same_numbers(pool_args):
    """A ReLU listed before a max-pool runs after it (on fewer values). Output, input gradient and
    every weight gradient must equal, bit for bit, the layers run one by one in listed order; the
    input has many negative and tied windows (values from {-2, ..., 2}, some windows all <= 0)."""
    rng = np.random.default_rng(6)
    x = rng.integers(-2, 3, size=(3, 9, 10, 2)).astype(np.float64)
    results = []
    for fused in (True, False):
        layers = [C.Conv2D(2, 3, 1, bias=False), C.ReLU(), C.MaxPool2D(*pool_args), C.ReLU(), C.Conv2D(3, 2, 1)]
        for i in (0, 4):
            layers[i].weight.data = np.random.default_rng(i).integers(-2, 3, size=layers[i].weight.shape) * 1.0
        model = C.Sequential(*layers)
        if fused:
            y = model(x)
            assert layers[1].x.shape == y.shape[:3] + (3,)  # the first ReLU saw the pooled values
            dy = np.random.default_rng(7).standard_normal(y.shape)
            dx = model.backward(dy)
        else:
            y = x
            for layer in layers:
                y = layer(y)
            dy = np.random.default_rng(7).standard_normal(y.shape)
            dx = dy
            for layer in reversed(layers):
                dx = layer.backward(dx)
        results.append((y, dx, [p.grad.copy() for p in model.parameters()]))
    (y1, dx1, g1), (y2, dx2, g2) = results
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a, b)


def test_only_a_plain_relu_before_a_max_pool_moves():
    from engine.steps import run_order as _run_order
    relu, leaky, pool, avg = C.ReLU(), C.LeakyReLU(), C.MaxPool2D(2), C.AvgPool2D(2)
    assert _run_order([relu, pool]) == [pool, relu]
    assert _run_order([relu, pool, C.ReLU()])[:2] == [pool, relu]
    assert _run_order([leaky, pool]) == [leaky, pool]
    assert _run_order([relu, avg]) == [relu, avg]
    assert _run_order([pool, relu]) == [pool, relu]
    # summary() traces the listed order, so each row shows its own layer's output shape
    model = C.Sequential(C.ToChannelsLast(), C.Conv2D(1, 2, 3, padding=1), C.ReLU(), C.MaxPool2D(2))
    rows = model.summary((1, 8, 8), print_fn=None).splitlines()[2:6]
    assert [r.split()[1] for r in rows] == ["ToChannelsLast", "Conv2D", "ReLU", "MaxPool2D"]
    assert "(N, 2, 8, 8)" in rows[2] and "(N, 2, 4, 4)" in rows[3]

@pytest.mark.parametrize("hw, out", [((5, 7), 6), ((12, 12), (6, 6)), ((7, 9), (3, None)), ((1, 1), 2),
                                     ((13, 13), (6, 6))])
def test_adaptive_avgpool_matches_naive_and_gradients(hw, out):
    pool = C.AdaptiveAvgPool2D(out)
    x = np.random.default_rng(hw[0]).standard_normal((2, *hw, 3))
    oh, ow = pool.output_size
    ref = naive.adaptive_avgpool2d_naive(nchw(x), (oh or hw[0], ow or hw[1]))
    np.testing.assert_allclose(pool(x), nhwc(ref), atol=1e-12)
    assert_grads_ok(pool, x)


def test_global_avgpool_flatten_and_channels_last():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(C.GlobalAvgPool2D()(x), x.mean(axis=(1, 2)))
    assert_grads_ok(C.GlobalAvgPool2D(), x)
    assert_grads_ok(C.GlobalAvgPool2D(keepdims=True), x)
    images = rng.standard_normal((2, 5, 3, 4))  # NCHW
    flat = C.Flatten()(C.ToChannelsLast()(images))
    np.testing.assert_array_equal(flat, images.reshape(2, -1))  # PyTorch's C, H, W order
    assert_grads_ok(C.Flatten(), x)
    assert_grads_ok(C.ToChannelsLast(), images)
    np.testing.assert_array_equal(C.Flatten()(flat), flat)


@pytest.mark.parametrize("training", [pytest.param(True, marks=pytest.mark.slow), False])
def test_norm_gradients(training):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5, 6)) * 2 + 1
    for layer in (C.BatchNorm2D(6), C.LayerNorm2D(6)):
        layer.weight.data[...] = rng.uniform(0.5, 2, 6)
        layer.bias.data[...] = rng.standard_normal(6)
        if isinstance(layer, C.BatchNorm2D):
            layer.running_mean[...] = rng.standard_normal(6)
            layer.running_var[...] = rng.uniform(0.5, 2, 6)
        layer.train(training)
        assert_grads_ok(layer, x)


def test_layernorm2d_normalises_each_position_over_channels_only():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 8)) * 5 + 3
    y = C.LayerNorm2D(8)(x)
    np.testing.assert_allclose(y.mean(axis=-1), 0, atol=1e-6)
    np.testing.assert_allclose(y.var(axis=-1), 1, atol=1e-4)


def test_layernorm2d_in_blocks_on_every_core_equals_the_formula(monkeypatch):
    """Rows cut into uneven blocks of 5 (forced), shared out to the workers: the output, dx and
    the parameter gradients equal the plain whole-array formula, and the gradients still check."""
    from engine import norm, parallel

    monkeypatch.setattr(tuning, "SMALL_PASS_BYTES", 0)
    monkeypatch.setattr(tuning, "LAYERNORM_BLOCK_BYTES", 5 * 7 * 8)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 3, 7)) * 3 + 2
    g = rng.standard_normal(x.shape)
    layer = C.LayerNorm2D(7).astype(np.float64)
    layer.weight.data[...] = rng.uniform(0.5, 2, 7)
    layer.bias.data[...] = rng.standard_normal(7)
    from engine.norm import _layernorm_blocks
    assert len(_layernorm_blocks(36, 7 * 8)) >= 7
    y = layer(x)
    dx = layer.backward(g)
    mean = x.mean(axis=-1, keepdims=True)
    inv_std = 1 / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + layer.eps)
    x_hat = (x - mean) * inv_std
    np.testing.assert_allclose(y, x_hat * layer.weight.data + layer.bias.data, rtol=1e-12, atol=1e-12)
    gw = g * layer.weight.data
    expected = (gw - gw.mean(axis=-1, keepdims=True) - x_hat * (gw * x_hat).mean(axis=-1, keepdims=True)) * inv_std
    np.testing.assert_allclose(dx, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, (g * x_hat).sum(axis=(0, 1, 2)), rtol=1e-10)
    np.testing.assert_allclose(layer.bias.grad, g.sum(axis=(0, 1, 2)), rtol=1e-10)
    assert_grads_ok(C.LayerNorm2D(7), x)


@pytest.mark.slow
def test_squeeze_excite_layerscale_pointwise_gradients():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4, 6))
    for act in ("relu", "silu"):
        se = C.SqueezeExcite(6, 3, activation=act)
        assert {n for n, _ in se.named_parameters()} == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
        assert_grads_ok(se, x)
    ls = C.LayerScale(6, init=0.5)
    assert [n for n, _ in ls.named_parameters()] == ["gamma"]
    assert_grads_ok(ls, x)
    pw = C.PointwiseLinear(6, 10)
    assert pw.weight.shape == (10, 6)
    assert pw(x).shape == (2, 3, 4, 10)
    assert_grads_ok(pw, x)


def test_stochastic_depth_statistics_and_eval_identity():
    sd = C.StochasticDepth(0.3)
    x = np.ones((20000, 2, 2, 3), dtype=np.float32)
    np.random.seed(0)
    y = sd(x)
    per_sample = y.reshape(20000, -1)
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))  # whole samples dropped
    kept = per_sample[:, 0] > 0
    assert abs(kept.mean() - 0.7) < 4 * np.sqrt(0.7 * 0.3 / 20000)
    np.testing.assert_allclose(per_sample[kept, 0], 1 / 0.7, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.03
    np.testing.assert_array_equal(sd.backward(x), y)  # the same mask scales the gradient
    batch = C.StochasticDepth(0.5, mode="batch")(x[:50])
    assert len(np.unique(batch)) == 1
    sd.eval()
    assert sd(x) is x
    assert_grads_ok(C.StochasticDepth(0.5), np.random.default_rng(0).standard_normal((6, 2, 2, 3)))


def test_batchnorm_running_statistics_pytorch_semantics():
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 2)).astype(np.float32) * 3 + 2
    bn = C.BatchNorm2D(2, momentum=0.1)
    bn(x)
    rows = x.reshape(-1, 2)
    np.testing.assert_allclose(bn.running_mean, 0.1 * rows.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * rows.var(0, ddof=1), rtol=1e-5)
    assert int(bn.num_batches_tracked) == 1
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


@pytest.mark.parametrize("shape", [(64, 8, 8, 32), (1, 1, 11, 3), (3, 5, 7, 6), (2, 4, 4, 9000)])
def test_batchnorm_statistics_in_long_rows_keep_float32_precision(shape):
    """The per-channel sums run over wide rows of R*C values (R = 256, 1, 105, 1) and are folded
    back per channel. A channel 1000 standard deviations away from 0 must still get its variance
    to float32 rounding (the mean first, then the mean of (x - mean)²; never mean(x²) - mean(x)²)."""
    rng = np.random.default_rng(8)
    centre = np.linspace(-1000, 1000, shape[3])
    x = (rng.standard_normal(shape) * 0.5 + centre).astype(np.float32)
    bn = C.BatchNorm2D(shape[3], momentum=1.0)
    y = bn(x)
    rows = x.reshape(-1, shape[3]).astype(np.float64)
    m = rows.shape[0]
    np.testing.assert_allclose(bn.running_mean, rows.mean(0), rtol=1e-6)
    np.testing.assert_allclose(bn.running_var, rows.var(0) * m / (m - 1), rtol=2e-3)
    np.testing.assert_allclose(y.reshape(-1, shape[3]), (rows - rows.mean(0)) / np.sqrt(rows.var(0) + 1e-5),
                               atol=2e-3)
    dx = bn.backward(np.ones_like(y))  # a constant gradient has no component left after BN
    # (up to the float32 rounding of a mean 1000 sigma from 0, about 1e-4 sigma, over sigma²)
    np.testing.assert_allclose(dx, 0, atol=1e-2)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_in_blocks_on_every_core_equals_the_formula(monkeypatch, training):
    """Wide rows cut into uneven blocks (forced) shared out to the workers, with per-worker sums
    folded back per channel: the statistics, output, dx and parameter gradients equal the
    whole-array formula, in training and in evaluation mode, and the gradients still check."""
    from engine import norm, parallel

    monkeypatch.setattr(tuning, "SMALL_PASS_BYTES", 0)
    monkeypatch.setattr(tuning, "WIDE_VALUES", 14)  # R = 2 rows of 7 channels per wide row
    monkeypatch.setattr(norm, "blocks_of", lambda total, item, small_bytes=None:
                        parallel.blocks_of(total, item, 5 * item, small_bytes))
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 3, 7)) * 3 + rng.uniform(-50, 50, 7)
    g = rng.standard_normal(x.shape)
    bn = C.BatchNorm2D(7, momentum=1.0).astype(np.float64)
    bn.weight.data[...] = rng.uniform(0.5, 2, 7)
    bn.bias.data[...] = rng.standard_normal(7)
    bn.running_mean[...] = rng.standard_normal(7)
    bn.running_var[...] = rng.uniform(0.5, 2, 7)
    bn.train(training)
    rows = x.reshape(-1, 7)
    if training:
        mean, var = rows.mean(0), rows.var(0)
    else:
        mean, var = bn.running_mean.copy(), bn.running_var.copy()
    y = bn(x)
    assert len(bn.rows.blocks) >= 4 and len({r1 - r0 for r0, r1 in bn.rows.blocks}) == 2  # uneven
    if training:
        np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var, var * 36 / 35, rtol=1e-12)
    inv_std = 1 / np.sqrt(var + bn.eps)
    x_hat = (x - mean) * inv_std
    np.testing.assert_allclose(y, x_hat * bn.weight.data + bn.bias.data, rtol=1e-12, atol=1e-12)
    dx = bn.backward(g)
    gw = g * bn.weight.data
    if training:
        expected = (gw - gw.mean(axis=(0, 1, 2)) - x_hat * (gw * x_hat).mean(axis=(0, 1, 2))) * inv_std
    else:
        expected = gw * inv_std
    np.testing.assert_allclose(dx, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.weight.grad, (g * x_hat).sum(axis=(0, 1, 2)), rtol=1e-10)
    np.testing.assert_allclose(bn.bias.grad, g.sum(axis=(0, 1, 2)), rtol=1e-10)
    layer = C.BatchNorm2D(7).train(training)
    layer.running_var[...] = 2.0
    assert_grads_ok(layer, x)


@pytest.mark.slow   # a whole block through finite differences: 23-70 s each on 2 busy cores
@pytest.mark.parametrize("block", [
    lambda: C.BasicBlock(3, 3, 1), lambda: C.BasicBlock(2, 4, 2),
    lambda: C.MBConv(4, 4, 3, 1, 1), lambda: C.MBConv(3, 5, 5, 2, 2, se_ratio=0.25, activation="silu"),
    lambda: C.MBConv(4, 4, 3, 1, 3, se_ratio=0.5, drop_path=0.5),
    lambda: C.ConvNeXtBlock(4, layer_scale_init=0.5, drop_path=0.5), lambda: C.ConvNeXtBlock(3, layer_scale_init=0),
], ids=["basic", "basic-down", "mbconv-e1", "mbconv-se-s2", "mbconv-droppath", "convnext", "convnext-nogamma"])
@pytest.mark.parametrize("training", [True, False])
def test_block_gradients(block, training):
    module = block().train(training)
    randomise_norms(module, np.random.default_rng(7))  # also keeps exact zeros away from ReLU kinks
    cin = next(m for m in module.modules() if isinstance(m, C.Conv2D)).in_channels
    x = np.random.default_rng(cin).standard_normal((3, 5, 5, cin))
    assert_grads_ok(module, x)


def test_block_structure_and_names():
    assert C.BasicBlock(64, 64).downsample is None
    down = C.BasicBlock(64, 128, 2)
    assert {"downsample.0.weight", "downsample.1.running_var"} <= set(down.state_dict())
    mb = C.MBConv(16, 24, 3, 2, 6, se_ratio=0.25)
    keys = set(mb.state_dict())
    assert {"block.0.0.weight", "block.1.0.weight", "block.2.fc1.weight", "block.3.1.bias"} <= keys
    assert mb.block[2].squeeze_channels == 4 and not mb.use_res_connect
    assert mb.block[0][1].eps == 1e-3 and mb.block[0][1].momentum == 0.01
    assert "block.0.0.bias" not in keys
    cn = C.ConvNeXtBlock(8)
    assert set(dict(cn.named_parameters())) == {
        "gamma", "dwconv.weight", "dwconv.bias", "norm.weight", "norm.bias",
        "pwconv1.weight", "pwconv1.bias", "pwconv2.weight", "pwconv2.bias"}
    assert cn.pwconv1.weight.shape == (32, 8) and float(cn.gamma.data[0]) == pytest.approx(1e-6)


@pytest.mark.parametrize("make, shape, match", [
    (lambda: C.Conv2D(3, 4, 5), (1, 3, 3, 3), "smaller than the kernel"),
    (lambda: C.Conv2D(3, 4, 3, dilation=3), (1, 6, 6, 3), "smaller than the kernel"),
    (lambda: C.Conv2D(3, 4, 3), (1, 8, 8, 2), "expected channels-last"),
    (lambda: C.Conv2D(3, 4, 3), (1, 3, 8, 8), "expected channels-last"),
    (lambda: C.MaxPool2D(3), (1, 2, 2, 1), "smaller than the kernel"),
    (lambda: C.BatchNorm2D(4), (1, 1, 1, 4), "more than one value"),
    (lambda: C.ToChannelsLast(), (2, 3, 4), "expects images"),
])
def test_shapes_that_do_not_fit_raise_user_error(make, shape, match):
    with pytest.raises(UserError, match=match):
        make()(np.zeros(shape, dtype=np.float32))


def test_bad_configurations_raise_user_error():
    with pytest.raises(UserError, match="stride 1"):
        C.Conv2D(3, 4, 3, stride=2, padding="same")
    with pytest.raises(UserError, match="divisible by groups"):
        C.Conv2D(3, 4, 3, groups=2)
    with pytest.raises(UserError, match="half the kernel"):
        C.MaxPool2D(2, padding=2)
    with pytest.raises(UserError):
        C.StochasticDepth(1.5)


def test_conv_stack_trains_under_the_strict_device_backend(strict_backend):
    from vectorized.losses import CrossEntropyLoss
    from vectorized.optim import SGD

    model = C.Sequential(
        C.ToChannelsLast(), C.Conv2D(3, 1, 1), C.Conv2D(1, 3, 5, padding=2),  # 1x1, then a banded layer
        C.Conv2D(3, 8, 3, padding=1), C.BatchNorm2D(8), C.ReLU(), C.MaxPool2D(2),
        C.BasicBlock(8, 12, 2), C.MBConv(12, 12, 3, 1, 2, se_ratio=0.25, drop_path=0.2),
        C.ConvNeXtBlock(12, drop_path=0.2), C.DepthwiseConv2D(12, 3, padding="same"), C.AvgPool2D(2, 1),
        C.AdaptiveAvgPool2D(2), C.Conv2D(12, 6, 3, padding=1, groups=3), C.GlobalAvgPool2D(), C.Dropout(0.1),
        C.Linear(6, 4))
    x = to_device(np.random.default_rng(0).standard_normal((4, 3, 10, 10)).astype(np.float32))
    y = to_device(np.array([0, 1, 2, 3]))
    loss_fn, opt = CrossEntropyLoss(), SGD(model.parameters(), lr=0.1)
    before = model.state_dict()
    loss = loss_fn(model(x), y)
    model.zero_grad()
    dx = model.backward(loss_fn.backward())
    opt.step()
    assert isinstance(loss, StrictArray) and isinstance(dx, StrictArray) and dx.shape == (4, 3, 10, 10)
    for name, p in model.named_parameters():
        assert isinstance(p.grad, StrictArray) and p.grad.dtype == np.float32, name
        assert np.isfinite(to_numpy(p.grad)).all(), name
    after = model.state_dict()
    assert not np.allclose(before["1.weight"], after["1.weight"])
