"""convolutional.receptive_field: the recurrence, checked by hand and by backpropagation."""
import numpy as np
import pytest

from convolutional.architectures import build_model
from convolutional.conv import Conv2D
from convolutional.pooling import AvgPool2D
from convolutional.receptive_field import receptive_fields
from vectorized.module import Sequential


def test_lenet_by_hand():
    rows = receptive_fields(build_model("lenet", input_shape=(1, 28, 28), num_classes=10), (1, 28, 28))
    # conv 5 -> 5; pool 2/2 -> 6, jump 2; conv 5 -> 6 + 4*2 = 14; pool 2/2 -> 14 + 2 = 16, jump 4
    assert [(r.field, r.jump) for r in rows] == [(5, 1), (6, 2), (14, 2), (16, 4)]


def test_resnet18_skips_the_shortcuts_and_vgg16_matches_the_published_212():
    resnet = receptive_fields(build_model("resnet18", input_shape=(3, 32, 32), num_classes=10), (3, 32, 32))
    assert not any("downsample" in r.name for r in resnet)
    assert (resnet[-1].field, resnet[-1].jump) == (109, 8)
    vgg = receptive_fields(build_model("vgg16", input_shape=(3, 32, 32), num_classes=10), (3, 32, 32))
    assert vgg[-1].field == 212 and vgg[-1].jump == 32


def test_forward_order_not_attribute_order():
    # ConvNeXt declares all its downsampling layers before its stages; the walk follows the calls
    rows = receptive_fields(build_model("convnext_tiny", input_shape=(3, 32, 32), num_classes=10), (3, 32, 32))
    names = [r.name for r in rows]
    assert names.index("downsample_layers.1.1") > names.index("stages.0.0.dwconv")
    model = build_model("convnext_tiny", input_shape=(3, 32, 32), num_classes=10)
    receptive_fields(model, (3, 32, 32))
    assert all("forward" not in vars(m) for _, m in model.named_modules())   # the tracing is undone


@pytest.mark.parametrize("dilation", [1, 2])
def test_matches_the_gradient_support_of_a_linear_network(dilation):
    """With no nonlinearity, one output depends on exactly its receptive field of input pixels."""
    net = Sequential(Conv2D(1, 2, 3, dilation=dilation), AvgPool2D(2, 2), Conv2D(2, 1, 3, stride=2))
    for p in net.parameters():
        p.data[...] = 1.0
    x = np.random.default_rng(0).uniform(1, 2, (1, 32, 32, 1))
    out = net(x)
    grad = np.zeros_like(out)
    grad[0, 2, 2, 0] = 1.0
    dx = net.backward(grad)[0, :, :, 0]
    rows_seen = np.flatnonzero(np.abs(dx).sum(axis=1))
    field = receptive_fields(net, (32, 32, 1))[-1].field   # Sequential takes channels-last input
    assert rows_seen[-1] - rows_seen[0] + 1 == field
