"""Every PyTorch option NNOTT offers, on random configurations, against PyTorch itself.

A seeded generator draws about 1,000 float64 cases over the layers and losses and their options
(pool ``ceil_mode``/``dilation``/``count_include_pad``, conv ``padding_mode`` and F.pad's four
numbers, BatchNorm's ``affine``/``track_running_stats``/``momentum=None`` in training and
evaluation, Linear's leading dims, the new activations, every loss ``reduction``, class
``weight``, ``ignore_index``, ``pos_weight``), with an empty batch in about one case in eight.
Each case compares the output, the input gradient, every parameter gradient and every buffer
with PyTorch's, to 1e-9 of the reference's magnitude in float64 (1e-4 in float32 spot checks).
Every case runs on the fast engine (the default); one in four runs on the reference engine too.
"""
import numpy as np
import pytest

import convolutional as C
import engine
from vectorized import activations as A
from vectorized import losses as L
from vectorized.layers import BatchNorm1d, Linear

torch = pytest.importorskip("torch", reason="the parity check needs PyTorch (pip install 'nnott[torch]')")
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")
F = torch.nn.functional

NHWC = (lambda a: a.transpose(0, 3, 1, 2), lambda a: a.transpose(0, 2, 3, 1))  # ours -> torch, torch -> ours
SAME = (lambda a: a, lambda a: a)
TOL = {np.float64: 1e-9, np.float32: 1e-4}


class Case:
    """One configuration: our layer, PyTorch's, the input shape and layout, and the mode."""

    def __init__(self, what, ours, theirs, shape, layout=SAME, training=True, steps=1, dx_tol=None):
        self.what, self.ours, self.theirs, self.shape = what, ours, theirs, shape
        self.layout, self.training, self.steps, self.dx_tol = layout, training, steps, dx_tol


class PadThenConv(torch.nn.Module):
    """PyTorch's way to a (left, right, top, bottom) border: F.pad, then an unpadded Conv2d."""

    def __init__(self, pad, mode, *args, **kw):
        super().__init__()
        self.pad, self.mode = pad, ("constant" if mode == "zeros" else mode)
        self.conv = torch.nn.Conv2d(*args, **kw)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad, mode=self.mode))


def batch(rng):
    return 0 if rng.random() < 0.125 else int(rng.integers(1, 4))


# ------------------------------------------------------------------------------ generators
def pool_case(rng):
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    stride = None if rng.random() < 0.3 else tuple(int(v) for v in rng.integers(1, 4, 2))
    padding = (int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1)))
    ceil = bool(rng.random() < 0.5)
    c = int(rng.integers(1, 5))
    if rng.random() < 0.5:
        dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        h = int(rng.integers(dil[0] * (kh - 1) + 1, 10))
        w = int(rng.integers(dil[1] * (kw - 1) + 1, 10))
        cfg = dict(kernel_size=(kh, kw), stride=stride, padding=padding, dilation=dil, ceil_mode=ceil)
        return Case(f"MaxPool2D({cfg})", C.MaxPool2D(**cfg), torch.nn.MaxPool2d(**cfg), (batch(rng), h, w, c), NHWC)
    cip = bool(rng.random() < 0.5)
    cfg = dict(kernel_size=(kh, kw), stride=stride, padding=padding, ceil_mode=ceil, count_include_pad=cip)
    h, w = int(rng.integers(kh, 10)), int(rng.integers(kw, 10))
    return Case(f"AvgPool2D({cfg})", C.AvgPool2D(**cfg), torch.nn.AvgPool2d(**cfg), (batch(rng), h, w, c), NHWC)


def conv_case(rng):
    groups = int(rng.choice([1, 1, 2, 3]))
    cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    if rng.random() < 0.2:  # depthwise
        groups, cin = cin, cin
        cout = cin
    k = tuple(int(v) for v in rng.integers(1, 4, 2))
    stride = tuple(int(v) for v in rng.integers(1, 3, 2))
    dil = tuple(int(v) for v in rng.integers(1, 3, 2))
    mode = str(rng.choice(["zeros", "reflect", "replicate", "circular"]))
    bias = bool(rng.random() < 0.7)
    kind = rng.choice(["int", "pair", "four", "same", "valid"])
    if kind == "same":
        stride = (1, 1)
    pads = [int(v) for v in rng.integers(0, 3, 4)]
    padding = {"int": pads[0], "pair": (pads[0], pads[1]), "four": tuple(pads), "same": "same", "valid": "valid"}[kind]
    h = max(pads) + 1 + int(rng.integers(dil[0] * (k[0] - 1), dil[0] * (k[0] - 1) + 4))
    w = max(pads) + 1 + int(rng.integers(dil[1] * (k[1] - 1), dil[1] * (k[1] - 1) + 4))
    cfg = dict(stride=stride, dilation=dil, groups=groups, bias=bias)
    ours = C.Conv2D(cin, cout, k, padding=padding, padding_mode=mode, **cfg)
    if kind == "four":
        theirs = PadThenConv(padding, mode, cin, cout, k, **cfg)
    else:
        theirs = torch.nn.Conv2d(cin, cout, k, padding=padding, padding_mode=mode, **cfg)
    return Case(f"Conv2D({cin}, {cout}, {k}, padding={padding}, padding_mode={mode}, {cfg})", ours, theirs,
                (batch(rng), h, w, cin), NHWC)


def batchnorm_case(rng):
    c = int(rng.integers(1, 5))
    cfg = dict(momentum=None if rng.random() < 0.3 else float(rng.uniform(0.05, 0.5)),
               affine=bool(rng.random() < 0.6), track_running_stats=bool(rng.random() < 0.7))
    training = bool(rng.random() < 0.6)
    n = batch(rng)
    if rng.random() < 0.5:
        shape = (n, int(rng.integers(1, 4)), int(rng.integers(1, 4)), c)
        layers, layout = (C.BatchNorm2D(c, **cfg), torch.nn.BatchNorm2d(c, **cfg)), NHWC
    else:
        shape = (n, c) if rng.random() < 0.5 else (n, c, int(rng.integers(1, 4)))
        layers, layout = (BatchNorm1d(c, **cfg), torch.nn.BatchNorm1d(c, **cfg)), SAME
    if np.prod(shape) == c and (training or not cfg["track_running_stats"]):
        shape = (2, *shape[1:])  # one value per channel has no batch variance (refused by both)
    return Case(f"{type(layers[0]).__name__}({c}, {cfg}) train={training} on {shape}", *layers, shape, layout,
                training, steps=2)


def linear_case(rng):
    i, o = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    bias = bool(rng.random() < 0.7)
    lead = tuple(int(v) for v in rng.integers(0, 4, int(rng.integers(0, 3))))
    shape = (batch(rng), *lead, i)
    return Case(f"Linear({i}, {o}, bias={bias}) on {shape}", Linear(i, o, bias=bias), torch.nn.Linear(i, o, bias=bias),
                shape)


def activation_case(rng):
    shape = (batch(rng), int(rng.integers(1, 5)), *(int(v) for v in rng.integers(1, 4, int(rng.integers(0, 3)))))
    choice = int(rng.integers(0, 7))
    if choice == 0:
        beta, threshold = float(rng.uniform(0.5, 3)), float(rng.uniform(1, 20))
        return Case(f"Softplus({beta}, {threshold})", A.Softplus(beta, threshold), torch.nn.Softplus(beta, threshold),
                    shape)
    if choice == 1:
        return Case("Mish", A.Mish(), torch.nn.Mish(), shape)
    if choice == 2:
        return Case("Hardswish", A.Hardswish(), torch.nn.Hardswish(), shape)
    if choice == 3:  # PyTorch's float64 Hardsigmoid slope is float32's 1/6 (2.98e-8 off)
        return Case("Hardsigmoid", A.Hardsigmoid(), torch.nn.Hardsigmoid(), shape, dx_tol=1e-7)
    if choice == 4:
        dim = int(rng.integers(-len(shape), len(shape)))
        return Case(f"LogSoftmax({dim})", A.LogSoftmax(dim), torch.nn.LogSoftmax(dim), shape)
    init = float(rng.uniform(-0.5, 0.5))
    if choice == 5 or len(shape) == 4 and rng.random() < 0.5:
        shape = shape if choice == 5 else shape
        return Case(f"PReLU(1, {init}) on {shape}", A.PReLU(1, init), torch.nn.PReLU(1, init), shape)
    if len(shape) == 4:  # channels last: our last axis is PyTorch's axis 1
        return Case(f"PReLU({shape[3]}, {init}) on NHWC", A.PReLU(shape[3], init), torch.nn.PReLU(shape[3], init),
                    shape, NHWC)
    return Case(f"PReLU({shape[1]}, {init}) on {shape}", A.PReLU(shape[1], init), torch.nn.PReLU(shape[1], init), shape)


LAYERS = {"pool": pool_case, "conv": conv_case, "batchnorm": batchnorm_case, "linear": linear_case,
          "activation": activation_case}


def loss_case(rng):
    """(description, our loss, PyTorch's, logits, targets)."""
    reduction = str(rng.choice(["mean", "sum", "none"]))
    n = batch(rng)
    if rng.random() < 0.5:
        k = int(rng.integers(2, 6))
        extra = tuple(int(v) for v in rng.integers(1, 4, int(rng.integers(0, 3))))
        z = rng.standard_normal((n, k, *extra)) * 3
        smoothing = float(rng.choice([0.0, 0.0, 0.1, 0.3]))
        weight = rng.uniform(0.2, 2, k) if rng.random() < 0.4 else None
        kw = {} if weight is None else {"weight": weight}
        tkw = {} if weight is None else {"weight": torch.tensor(weight)}
        if rng.random() < 0.7:
            ignore = int(rng.choice([-100, 0, k - 1]))
            y = rng.integers(0, k, (n, *extra))
            y[rng.random(y.shape) < 0.2] = ignore
            kw["ignore_index"] = tkw["ignore_index"] = ignore
        else:
            y = rng.random(z.shape)
            y /= y.sum(axis=1, keepdims=True)
        return (f"CrossEntropyLoss({reduction}, smoothing={smoothing}, {sorted(kw)}) on {z.shape}",
                L.CrossEntropyLoss(smoothing, reduction, **kw),
                torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing, **tkw), z, y)
    shape = (n, *(int(v) for v in rng.integers(1, 4, int(rng.integers(1, 3)))))
    z = rng.standard_normal(shape) * 2
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return f"MSELoss({reduction})", L.MSELoss(reduction), torch.nn.MSELoss(reduction=reduction), z, \
            rng.standard_normal(shape)
    if kind == 1:
        return f"L1Loss({reduction})", L.L1Loss(reduction), torch.nn.L1Loss(reduction=reduction), z, \
            rng.standard_normal(shape)
    if kind == 2:
        delta = float(rng.uniform(0.3, 2))
        return f"HuberLoss({reduction}, {delta})", L.HuberLoss(reduction, delta), \
            torch.nn.HuberLoss(reduction=reduction, delta=delta), z, rng.standard_normal(shape)
    kw, tkw = {}, {}
    if rng.random() < 0.5:
        kw["pos_weight"] = rng.uniform(0.3, 3, shape[-1])
    if rng.random() < 0.4:
        kw["weight"] = rng.uniform(0.3, 2, shape[-1])
    tkw = {key: torch.tensor(v) for key, v in kw.items()}
    return f"BCEWithLogitsLoss({reduction}, {sorted(kw)})", L.BCEWithLogitsLoss(reduction, **kw), \
        torch.nn.BCEWithLogitsLoss(reduction=reduction, **tkw), z, rng.random(shape)


# ------------------------------------------------------------------------------ comparisons
def close(ours, theirs, tol, what):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != PyTorch's {theirs.shape}"
    if ours.size == 0:
        return
    if np.isnan(theirs).any():
        assert np.array_equal(np.isnan(ours), np.isnan(theirs)), f"{what}: NaN where PyTorch has none, or not"
        ours, theirs = np.nan_to_num(ours), np.nan_to_num(theirs)
    scale = max(1.0, float(np.abs(theirs).max()))
    err = float(np.abs(ours - theirs).max())
    assert err <= tol * scale, f"{what}: off by {err:.3g} (tolerance {tol * scale:.3g})"


def run_layer_case(case, dtype, rng, engines):
    tol = TOL[dtype]
    to_torch, to_ours = case.layout
    theirs = case.theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():  # PyTorch's random parameters and statistics, copied into ours
        for p in theirs.parameters():
            p.add_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.3, dtype=p.dtype))
        for name, b in theirs.named_buffers():
            if b.is_floating_point():
                b.copy_(torch.tensor(rng.uniform(0.5, 1.5, tuple(b.shape)), dtype=b.dtype))
    xs = [rng.standard_normal(case.shape).astype(dtype) for _ in range(case.steps)]
    gs = []
    for eng in engines:
        engine.use(eng)
        ours = case.ours.astype(dtype)
        for p, pt in zip(ours.parameters(), theirs.parameters()):
            p.data[...] = pt.detach().numpy()
        for name, bt in theirs.named_buffers():
            if "." not in name:
                setattr(ours, name, bt.numpy().astype(dict(ours.named_buffers())[name].dtype))
        ours.train(case.training)
        theirs_run = __import__("copy").deepcopy(theirs).train(case.training)
        for step, x in enumerate(xs):
            what = f"{case.what} [{eng}, step {step}]"
            ours.zero_grad()
            theirs_run.zero_grad()
            y = ours(x.copy())
            xt = torch.tensor(to_torch(x), requires_grad=True)
            yt = theirs_run(xt)
            if len(gs) <= step:
                gs.append(rng.standard_normal(y.shape).astype(dtype))
            dx = ours.backward(gs[step])
            yt.backward(torch.tensor(np.ascontiguousarray(to_torch(gs[step]))))
            close(y, to_ours(yt.detach().numpy()), tol, what + " output")
            close(dx, to_ours(xt.grad.numpy()), case.dx_tol or tol, what + " input gradient")
            for (name, p), pt in zip(ours.named_parameters(), theirs_run.parameters()):
                close(p.grad, pt.grad.numpy(), tol, f"{what} gradient of {name}")
            ours_buffers = dict(ours.named_buffers())
            for name, bt in theirs_run.named_buffers():
                close(ours_buffers[name.split(".")[-1]], bt.numpy(), tol, f"{what} buffer {name}")
            assert len(ours_buffers) == len(list(theirs_run.named_buffers())), f"{what}: buffers differ"
    engine.use("fast")


def run_loss_case(case, dtype, rng, engines):
    what, ours, theirs, z, y = case
    tol = TOL[dtype]
    z = z.astype(dtype)
    zt = torch.tensor(z, requires_grad=True)
    yt = torch.tensor(y if np.issubdtype(y.dtype, np.integer) else y.astype(dtype))
    value = theirs.to(zt.dtype)(zt, yt) if hasattr(theirs, "to") else theirs(zt, yt)
    g = rng.standard_normal(tuple(value.shape)).astype(dtype) if reduction_of(ours) == "none" else None
    value.backward(None if g is None else torch.tensor(g))
    for eng in engines:
        engine.use(eng)
        ours_value = ours(z, y if np.issubdtype(y.dtype, np.integer) else y.astype(dtype))
        close(ours_value, value.detach().numpy(), tol, f"{what} [{eng}] value")
        close(ours.backward(g), zt.grad.numpy(), tol, f"{what} [{eng}] gradient")
    engine.use("fast")


def reduction_of(loss):
    return loss.reduction


# ------------------------------------------------------------------------------ the tests
CASES_PER_FAMILY = {"pool": 200, "conv": 200, "batchnorm": 200, "linear": 80, "activation": 120, "loss": 200}


@pytest.mark.parametrize("family", list(CASES_PER_FAMILY))
def test_random_options_match_pytorch_float64(family):
    rng = np.random.default_rng(sum(map(ord, family)))
    for i in range(CASES_PER_FAMILY[family]):
        engines = ("fast", "reference") if i % 4 == 0 else ("fast",)
        if family == "loss":
            run_loss_case(loss_case(rng), np.float64, rng, engines)
        else:
            run_layer_case(LAYERS[family](rng), np.float64, rng, engines)


@pytest.mark.parametrize("family", list(CASES_PER_FAMILY))
def test_random_options_match_pytorch_float32(family):
    rng = np.random.default_rng(1000 + sum(map(ord, family)))
    for _ in range(12):
        if family == "loss":
            run_loss_case(loss_case(rng), np.float32, rng, ("fast",))
        else:
            run_layer_case(LAYERS[family](rng), np.float32, rng, ("fast",))


def test_the_empty_batch_runs_every_layer_on_both_engines():
    """N = 0 through a whole small network, forward and backward, on each engine."""
    from vectorized.module import Sequential
    model = Sequential(C.Conv2D(3, 4, 3, padding=1, padding_mode="reflect"), C.BatchNorm2D(4), C.ReLU(),
                       C.MaxPool2D(2), C.Conv2D(4, 4, 3, padding=1), C.AvgPool2D(2, ceil_mode=True),
                       C.GlobalAvgPool2D(), Linear(4, 3), A.PReLU())
    for eng in ("fast", "reference"):
        engine.use(eng)
        for training in (True, False):
            model.train(training)
            y = model(np.zeros((0, 8, 8, 3), dtype=np.float32))
            assert y.shape == (0, 3)
            loss = L.CrossEntropyLoss()
            assert np.isnan(loss(y, np.zeros(0, dtype=np.int64)))
            assert model.backward(loss.backward()).shape == (0, 8, 8, 3)
    engine.use("fast")


EMPTY_BATCH_LAYERS = [
    lambda: C.AdaptiveAvgPool2D((3, None)), lambda: C.AvgPool2D(3, 2, 1, count_include_pad=False),
    lambda: C.BatchNorm2D(4), lambda: C.BatchNorm2D(4, affine=False, momentum=None),
    lambda: C.Conv2D(4, 4, 3, padding=1), lambda: C.Conv2D(4, 6, 1), lambda: C.Conv2D(4, 6, 3, groups=2),
    lambda: C.DepthwiseConv2D(4, 3, padding=1), lambda: C.Dropout(0.3), lambda: C.Flatten(),
    lambda: C.GELU(), lambda: C.GELU("tanh"), lambda: C.GlobalAvgPool2D(), lambda: C.LayerNorm2D(4),
    lambda: C.MaxPool2D(2), lambda: C.MaxPool2D(3, 2, 1), lambda: C.MaxPool2D(2, dilation=2, ceil_mode=True),
    lambda: C.PointwiseLinear(4, 3), lambda: C.ReLU(), lambda: C.ReLU6(), lambda: C.Softmax(),
    lambda: C.BasicBlock(4, 8, 2), lambda: C.ConvNeXtBlock(4), lambda: C.MBConv(4, 4, 3, 1, expand_ratio=2),
    lambda: C.SqueezeExcite(4, 2), lambda: A.Softplus(), lambda: A.Mish(), lambda: A.Hardswish(),
    lambda: A.Hardsigmoid(), lambda: A.PReLU(4), lambda: A.LogSoftmax()]


@pytest.mark.parametrize("engine_name", ["fast", "reference"])
def test_every_layer_takes_an_empty_batch(engine_name):
    engine.use(engine_name)
    try:
        for build in EMPTY_BATCH_LAYERS:
            for dtype in (np.float32, np.float64):
                layer = build().astype(dtype)
                for training in (True, False):
                    layer.train(training)
                    x = np.zeros((0, 6, 6, 4), dtype=dtype)
                    y = layer(x)
                    assert y.shape[0] == 0 and y.dtype == dtype, layer
                    dx = layer.backward(np.zeros(y.shape, dtype=dtype))
                    assert dx.shape == x.shape, layer
    finally:
        engine.use("fast")
