"""PyTorch parity of every conv-tier layer and block: the same weights and inputs through
NNOTT (channels-last) and PyTorch (NCHW); outputs, input gradients and parameter gradients
compared in float64 and float32. Weights move by ``state_dict`` name, so this also checks
that our names and shapes are PyTorch's."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn
from torch.nn import functional as F

import convolutional as C
import torch_reference  # noqa: E402  (tests/ is on sys.path under pytest)

TOL = {np.float64: {"rtol": 1e-9, "atol": 1e-10}, np.float32: {"rtol": 2e-4, "atol": 2e-5}}


def to_nhwc(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)) if a.ndim == 4 else a


def to_nchw(a):
    return np.ascontiguousarray(np.moveaxis(a, -1, 1)) if a.ndim == 4 else a


def compare(ours, theirs, x_nchw, dtype=np.float64, tol=None, steps=1):
    """Run both on x (NCHW host array); assert outputs and all gradients agree."""
    tol = tol or TOL[dtype]
    ours.astype(dtype)
    theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    theirs.train(ours.training)
    rng = np.random.default_rng(1)
    for _ in range(steps):  # several steps: running statistics must keep agreeing
        x = x_nchw.astype(dtype)
        ours.zero_grad()
        theirs.zero_grad()
        y = ours(to_nhwc(x))
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        np.testing.assert_allclose(to_nchw(y), yt.detach().numpy(), **tol)
        g = rng.standard_normal(tuple(yt.shape)).astype(dtype)
        dx = ours.backward(to_nhwc(g))
        yt.backward(torch.tensor(g))
        np.testing.assert_allclose(to_nchw(dx), xt.grad.numpy(), **tol)
        theirs_params = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            np.testing.assert_allclose(p.grad, theirs_params[name].grad.numpy(), err_msg=name, **tol)
    theirs_state = theirs.state_dict()
    for name, value in ours.state_dict().items():  # running statistics, num_batches_tracked
        np.testing.assert_allclose(value, theirs_state[name].numpy(), err_msg=name, **tol)


def image(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


CONV_CASES = [
    (3, 4, 3, 1, 1, 1, 1, 7, 6), (3, 4, 3, 2, 1, 1, 1, 7, 6), (4, 6, 3, 1, "same", 2, 2, 8, 9),
    (5, 5, 7, 1, 3, 1, 5, 9, 9), (6, 6, 3, 2, 1, 1, 6, 9, 8), (3, 4, 1, 2, 0, 1, 1, 5, 5),
    (2, 3, (2, 3), 1, "same", 1, 1, 6, 5), (2, 3, (3, 2), (2, 1), (0, 1), (1, 2), 1, 7, 6),
    (4, 8, 3, 1, 1, 1, 4, 5, 5), (16, 32, 3, 1, 1, 1, 1, 16, 16),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(case, dtype):
    cin, cout, k, s, p, d, g, h, w = case
    bias = cin != 2
    ours = C.Conv2D(cin, cout, k, s, p, d, g, bias=bias)
    if bias:
        ours.bias.data[...] = np.random.default_rng(0).standard_normal(cout)
    compare(ours, nn.Conv2d(cin, cout, k, s, p, d, g, bias=bias), image((2, cin, h, w)), dtype)


def test_depthwise_conv():
    compare(C.DepthwiseConv2D(6, 5, stride=2, padding=2), nn.Conv2d(6, 6, 5, 2, 2, groups=6), image((2, 6, 9, 9)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1))])
def test_pools(k, s, p, dtype):
    x = image((2, 3, 7, 8))
    compare(C.MaxPool2D(k, s, p), nn.MaxPool2d(k, s, p), x, dtype)
    compare(C.AvgPool2D(k, s, p), nn.AvgPool2d(k, s, p), x, dtype)


def test_maxpool_ties_match_pytorch():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1:3, 1:3] = 1.0  # ties inside overlapping windows
    compare(C.MaxPool2D(2, 1), nn.MaxPool2d(2, 1), x)
    compare(C.MaxPool2D(3, 2, 1), nn.MaxPool2d(3, 2, 1), np.ones((1, 2, 5, 5)))


@pytest.mark.parametrize("hw, out", [((13, 13), 6), ((5, 7), (6, 6)), ((12, 12), 6), ((1, 1), (6, 6)), ((9, 7), (4, 3))])
def test_adaptive_avgpool(hw, out):
    compare(C.AdaptiveAvgPool2D(out), nn.AdaptiveAvgPool2d(out), image((2, 3, *hw)))


def test_global_pool_and_flatten():
    compare(C.GlobalAvgPool2D(), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), image((2, 4, 5, 3)))
    compare(C.Flatten(), nn.Flatten(), image((2, 4, 5, 3)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm2d(training, dtype):
    ours = C.BatchNorm2D(5, momentum=0.2).train(training)
    ours.weight.data[...] = np.linspace(0.5, 2, 5)
    ours.bias.data[...] = np.linspace(-1, 1, 5)
    ours.running_mean[...] = 0.3
    ours.running_var[...] = 1.7
    compare(ours, nn.BatchNorm2d(5, momentum=0.2), image((4, 5, 6, 3)) * 3 + 1, dtype, steps=3)


class TorchLayerNorm2d(nn.Module):
    """ConvNeXt's channels-first LayerNorm: over C at every position."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c)), eps

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layernorm2d(dtype):
    ours = C.LayerNorm2D(6)
    ours.weight.data[...] = np.linspace(0.5, 2, 6)
    ours.bias.data[...] = np.linspace(-1, 1, 6)
    compare(ours, TorchLayerNorm2d(6), image((2, 6, 4, 5)) * 2 + 1, dtype)


class TorchSqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation."""

    def __init__(self, c, s, activation=nn.ReLU):
        super().__init__()
        self.avgpool, self.fc1, self.fc2 = nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, s, 1), nn.Conv2d(s, c, 1)
        self.activation, self.scale_activation = activation(), nn.Sigmoid()

    def forward(self, x):
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


@pytest.mark.parametrize("act, torch_act", [("relu", nn.ReLU), ("silu", nn.SiLU)])
def test_squeeze_excite(act, torch_act):
    compare(C.SqueezeExcite(8, 2, act), TorchSqueezeExcitation(8, 2, torch_act), image((2, 8, 4, 5)))


class TorchLayerScale(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(c))

    def forward(self, x):
        return x * self.gamma.view(1, -1, 1, 1)


def test_layerscale():
    compare(C.LayerScale(4, init=0.3), TorchLayerScale(4), image((2, 4, 3, 3)))


# ----------------------------------------------------------------------------- blocks
# The torch twins of the blocks are the ones the architecture tests use (tests/torch_reference.py).
TorchBasicBlock, TorchMBConv, TorchConvNeXtBlock = torch_reference.BasicBlock, torch_reference.MBConv, \
    torch_reference.ConvNeXtBlock


def randomise(module, seed=0):
    """Non-trivial BN/LN affine parameters and running statistics, and a visible layer scale."""
    rng = np.random.default_rng(seed)
    for m in module.modules():
        for name in ("weight", "bias") if isinstance(m, (C.BatchNorm2D, C.LayerNorm2D)) else ():
            p = getattr(m, name)
            p.data[...] = rng.uniform(0.5, 1.5, p.shape) if name == "weight" else rng.uniform(-0.3, 0.3, p.shape)
        if isinstance(m, C.BatchNorm2D):
            m.running_mean[...] = rng.uniform(-0.3, 0.3, m.num_features)
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
        if getattr(m, "gamma", None) is not None:
            m.gamma.data[...] = rng.uniform(0.2, 1.0, m.gamma.shape)
    return module


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("cin, cout, stride", [(8, 8, 1), (4, 8, 2)])
def test_basic_block(cin, cout, stride, training, dtype):
    ours = randomise(C.BasicBlock(cin, cout, stride)).train(training)
    compare(ours, TorchBasicBlock(cin, cout, stride), image((2, cin, 9, 9)), dtype, steps=2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("cfg", [(8, 8, 3, 1, 1, None, "relu6"), (8, 12, 5, 2, 6, 0.25, "silu"),
                                 (8, 8, 3, 1, 4, 0.25, "relu6")])
def test_mbconv(cfg, training, dtype):
    cin, cout, k, s, e, se, act = cfg
    ours = randomise(C.MBConv(cin, cout, k, s, e, se_ratio=se, activation=act)).train(training)
    compare(ours, TorchMBConv(*cfg), image((2, cin, 8, 7)), dtype, steps=2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [1e-6, 0.0])
def test_convnext_block(scale, dtype):
    ours = randomise(C.ConvNeXtBlock(8, layer_scale_init=scale))
    # our exact GELU evaluates erf by a fit good to ~1e-7 absolute; summed over the 4C hidden
    # units and the batch, float64 gradients agree to a few 1e-6
    tol = {"rtol": 1e-5, "atol": 5e-6} if dtype == np.float64 else None
    compare(ours, TorchConvNeXtBlock(8, scale), image((2, 8, 9, 8)), dtype, tol)
