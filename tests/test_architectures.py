"""The seven architectures: exact parameter counts, output shapes, minimum sizes, variants,
summaries and checkpoint-style state-dict round trips (every tensor comes back)."""
import functools

import numpy as np
import pytest

from common.errors import UserError
from convolutional.architectures import ARCHITECTURES, architecture_names, build_model, min_input_size, \
    resolve_variant

NAMES = architecture_names()


@functools.lru_cache(maxsize=None)
def cached(name, shape, num_classes=10, variant="auto", **options):
    """Models only read here (counts, shapes, summaries) are built once per session."""
    return build_model(name, shape, num_classes, variant=variant, **options)


def forward(model, shape, batch=2, seed=0):
    model.eval()
    x = np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)
    return model(x)


def test_registry_lists_the_seven():
    assert NAMES == ["lenet", "baseline", "alexnet", "vgg16", "resnet18", "efficientnet_lite0", "convnext_tiny"]


# ----------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("name", NAMES)
def test_canonical_parameter_count(name):
    spec = ARCHITECTURES[name]
    model = cached(name, spec.canonical_input, spec.canonical_classes, "canonical")
    assert model.variant == "canonical"
    assert model.num_parameters() == spec.canonical_params


@pytest.mark.parametrize("name,shape,classes,variant,options,expected", [
    ("resnet18", (3, 32, 32), 10, "auto", (), 11_173_962),                  # CIFAR ResNet18
    ("resnet18", (1, 28, 28), 10, "auto", (), 11_172_810),
    ("vgg16", (3, 32, 32), 10, "auto", (), 14_728_266),                     # CIFAR VGG16-BN
    ("vgg16", (1, 28, 28), 10, "auto", (), 14_727_114),
    ("vgg16", (3, 32, 32), 10, "small", (("batch_norm", False),), 14_719_818),
    ("lenet", (1, 28, 28), 10, "auto", (), 61_706),                        # padding 2
    ("lenet", (1, 32, 32), 10, "auto", (), 61_706),                        # LeCun's geometry
    ("efficientnet_lite0", (3, 224, 224), 10, "canonical", (), 3_383_818),
    ("efficientnet_lite0", (3, 224, 224), 1000, "canonical", (("se", True),), 5_288_548),   # = B0
    ("efficientnet_lite0", (3, 32, 32), 10, "auto", (), 3_383_818),         # stride-1 stem, same weights
    ("convnext_tiny", (3, 32, 32), 10, "auto", (), 27_827_818),             # stem stride 2, same weights
    ("alexnet", (3, 32, 32), 10, "auto", (), 28_711_754),                   # 3x3 stem, 3x3 pool
    ("baseline", (1, 28, 28), 10, "auto", (), 1_701_578),                  # the previous NNOTT's
    ("baseline", (3, 32, 32), 10, "auto", (), 1_702_154),                  # 8x8 map averaged to 7x7
    ("baseline", (3, 224, 224), 10, "auto", (), 1_702_154),
    ("baseline", (3, 17, 23), 10, "auto", (), 751_882),                    # 4x5 map flattened as it is
    ("baseline", (1, 28, 28), 10, "gap", (), 94_186),                      # global-average-pool variant
    ("baseline", (3, 224, 224), 10, "gap", (), 94_762),
])
def test_variant_parameter_count(name, shape, classes, variant, options, expected):
    assert cached(name, shape, classes, variant, **dict(options)).num_parameters() == expected


@pytest.mark.parametrize("name", NAMES)
def test_registry_small_parameter_count(name):
    """The gallery prints spec.small_params without building the model: keep it true."""
    spec = ARCHITECTURES[name]
    assert cached(name, spec.small_input).num_parameters() == spec.small_params


def test_baseline_is_the_previous_nnott_network():
    """Layer for layer the previous NNOTT's BaselineCNN (convs with bias, LeakyReLU 0.1 in the third
    block, dropout 0.15 / 0.25 / 0.5, a 6272 -> 256 -> 10 head)."""
    model = cached("baseline", (1, 28, 28))
    kinds = [type(m).__name__ for m in model.features]
    assert kinds == ["Conv2D", "BatchNorm2D", "ReLU", "Conv2D", "BatchNorm2D", "ReLU", "MaxPool2D", "Dropout",
                     "Conv2D", "BatchNorm2D", "LeakyReLU", "MaxPool2D", "Dropout"]
    assert [m.p for m in model.modules() if type(m).__name__ == "Dropout"] == [0.15, 0.25, 0.5]
    assert [m.negative_slope for m in model.features if type(m).__name__ == "LeakyReLU"] == [0.1]
    linears = [(m.in_features, m.out_features) for m in model.classifier if type(m).__name__ == "Linear"]
    assert linears == [(6272, 256), (256, 10)]
    assert model.state_shapes()["classifier.0.weight"] == (256, 6272)


def test_baseline_small_is_canonical_and_gap_is_baseline_only():
    assert resolve_variant("baseline", (1, 28, 28), "small") == "canonical"
    assert cached("baseline", (1, 28, 28), 10, "gap").variant == "gap"
    with pytest.raises(UserError, match="resnet18 has no variant 'gap'"):
        build_model("resnet18", (3, 32, 32), 10, variant="gap")


# ----------------------------------------------------------------------------- variants and sizes
@pytest.mark.parametrize("name,shape,expected", [
    ("resnet18", (1, 28, 28), "small"), ("resnet18", (3, 64, 64), "small"), ("resnet18", (3, 96, 96), "canonical"),
    ("vgg16", (3, 32, 32), "small"), ("alexnet", (3, 224, 224), "canonical"), ("convnext_tiny", (3, 28, 28), "small"),
    ("efficientnet_lite0", (3, 128, 128), "canonical"), ("lenet", (1, 28, 28), "small"),
    ("lenet", (1, 32, 32), "canonical"), ("baseline", (3, 224, 224), "canonical"),
])
def test_auto_variant(name, shape, expected):
    assert resolve_variant(name, shape, "auto") == expected


def test_variant_is_recorded_and_labelled():
    model = cached("resnet18", (3, 32, 32))
    assert (model.arch_name, model.variant) == ("resnet18", "small")
    assert "CIFAR" in model.variant_label
    assert "small" in repr(model).splitlines()[0]
    b0 = cached("efficientnet_lite0", (3, 224, 224), 1000, "canonical", se=True)
    assert "Lite0 blocks + SE (B0-style" in b0.variant_label
    assert "no SE, ReLU6" in cached("efficientnet_lite0", (3, 32, 32)).variant_label


SHAPES = [(1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("name", NAMES)
def test_output_shape_small_inputs(name, shape):
    y = forward(cached(name, shape), shape)
    assert y.shape == (2, 10)
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("name,shape,classes", [
    ("lenet", (3, 40, 36), 7), ("baseline", (3, 17, 23), 3), ("resnet18", (2, 20, 18), 5),
    ("convnext_tiny", (1, 20, 24), 4), ("efficientnet_lite0", (4, 24, 33), 2), ("alexnet", (1, 15, 16), 6),
    ("vgg16", (3, 18, 25), 100),
])
def test_any_channels_size_and_classes(name, shape, classes):
    y = forward(cached(name, shape, classes), shape, batch=1)
    assert y.shape == (1, classes)


@pytest.mark.parametrize("name", ["lenet", "baseline", "alexnet", "resnet18", "efficientnet_lite0",
                                  "convnext_tiny"])
def test_output_shape_canonical_input(name):
    spec = ARCHITECTURES[name]
    model = cached(name, spec.canonical_input, spec.canonical_classes, "canonical")
    assert forward(model, spec.canonical_input, batch=1).shape == (1, spec.canonical_classes)


def test_vgg16_canonical_head_on_a_small_input():
    """The 7x7 adaptive pool makes canonical VGG16 run (not learn well) from 32x32 up."""
    model = cached("vgg16", (3, 224, 224), 1000, "canonical")
    assert forward(model, (3, 32, 32), batch=1).shape == (1, 1000)


def test_vgg16_small_drops_only_the_last_pool_at_28():
    from convolutional.pooling import MaxPool2D
    from vectorized.layers import Identity

    pools = lambda m: [type(layer) for layer in m.features if type(layer) in (MaxPool2D, Identity)]  # noqa: E731
    assert pools(cached("vgg16", (1, 28, 28))) == [MaxPool2D] * 4 + [Identity]
    assert pools(cached("vgg16", (3, 32, 32))) == [MaxPool2D] * 5


MIN_CASES = [(name, variant) for name in NAMES for variant in ARCHITECTURES[name].variants]


@pytest.mark.parametrize("name,variant", MIN_CASES, ids=[f"{n}-{v}" for n, v in MIN_CASES])
def test_minimum_input_size(name, variant):
    """The documented minimum works; one pixel less is a one-line UserError naming the fix."""
    size = min_input_size(name, variant)
    channels = ARCHITECTURES[name].canonical_input[0]
    with pytest.raises(UserError) as err:
        build_model(name, (channels, size - 1, size + 5), 10, variant=variant)
    message = str(err.value)
    assert f"at least {size}x{size}" in message and f"--image-size {size}" in message and "\n" not in message
    if name in ("vgg16", "alexnet") and variant == "canonical":   # adaptive pool: any input >= min
        spec = ARCHITECTURES[name]
        model = cached(name, spec.canonical_input, spec.canonical_classes, "canonical")
    else:
        model = build_model(name, (channels, size, size), 10, variant=variant)
    assert forward(model, (channels, size, size), batch=1).shape[0] == 1


def test_min_size_error_suggests_small_variant():
    with pytest.raises(UserError, match=r"resnet18 \(canonical\) needs inputs of at least 32x32; got 28x28; "
                                        r"use --image-size 32 or the 'small' variant"):
        build_model("resnet18", (1, 28, 28), 10, variant="canonical")


@pytest.mark.parametrize("call", [
    lambda: build_model("resnet50", (3, 32, 32)),
    lambda: build_model("resnet18", (3, 32, 32), variant="tiny"),
    lambda: build_model("resnet18", (3, 32), 10),
    lambda: build_model("resnet18", (3, 32, 32), 0),
    lambda: build_model("lenet", (1, 28, 28), 10, dropout=0.5),
])
def test_user_errors(call):
    with pytest.raises(UserError):
        call()


# ----------------------------------------------------------------------------- summary
@pytest.mark.parametrize("name", NAMES)
def test_summary(name):
    shape = ARCHITECTURES[name].small_input
    model = cached(name, shape)
    text = model.summary(shape, print_fn=None)
    assert f"Total params: {model.num_parameters():,}" in text
    rows = text.splitlines()[2:-4]
    assert sum(int(row.rsplit(None, 1)[1].replace(",", "")) for row in rows) == model.num_parameters()
    assert "(N, 10)" in rows[-1]


def test_forward_flops_counts_every_multiply_add_twice():
    """LeNet-5 on 28x28, counted by hand: 2 x (weights x output positions) per conv and Linear."""
    shape = (1, 28, 28)
    model = cached("lenet", shape).train()
    conv1 = 2 * (6 * 1 * 5 * 5) * 28 * 28
    conv2 = 2 * (16 * 6 * 5 * 5) * 10 * 10
    fcs = 2 * (400 * 120 + 120 * 84 + 84 * 10)
    assert model.forward_flops(shape) == conv1 + conv2 + fcs == 833_040
    assert model.training  # the trace runs in eval mode and puts the mode back
    model.eval()
    assert model.forward_flops(shape) == 833_040 and not model.training


def test_forward_flops_of_a_depthwise_and_a_pointwise_layer():
    from convolutional.conv import DepthwiseConv2D, PointwiseLinear
    from vectorized.module import Sequential

    model = Sequential(DepthwiseConv2D(8, 3, padding=1), PointwiseLinear(8, 16))
    assert model.forward_flops((5, 5, 8)) == 2 * (8 * 9) * 25 + 2 * (16 * 8) * 25


# ----------------------------------------------------------------------------- checkpoint round trip
ROUND_TRIP = [("lenet", (1, 28, 28)), ("baseline", (1, 28, 28)), ("alexnet", (1, 28, 28)),
              ("vgg16", (3, 32, 32)), ("resnet18", (1, 28, 28)), ("efficientnet_lite0", (3, 32, 32)),
              ("convnext_tiny", (3, 32, 32))]


@pytest.mark.parametrize("name,shape", ROUND_TRIP, ids=[c[0] for c in ROUND_TRIP])
def test_state_dict_round_trip(name, shape):
    """state_dict() -> load_state_dict() into a freshly initialised model: every tensor comes
    back (parameters and BN buffers), and the two models compute the same logits."""
    from common.seed import seed_everything

    seed_everything(1)
    source = build_model(name, shape, 10)
    source.train()
    x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
    source(x)                                   # moves BN running statistics off their defaults
    state = source.state_dict()
    assert list(state) == list(source.state_shapes())
    n_param_values = sum(state[k].size for k, _ in source.named_parameters())
    assert n_param_values == source.num_parameters()   # no parameter left out of the state

    seed_everything(2)
    target = build_model(name, shape, 10)
    target.load_state_dict(state)
    restored = target.state_dict()
    assert list(restored) == list(state)
    for key in state:
        np.testing.assert_array_equal(restored[key], state[key], err_msg=key)
    np.testing.assert_array_equal(forward(target, shape), forward(source, shape))


# ----------------------------------------------------------------------------- strict device
@pytest.mark.parametrize("name,shape,options", [
    ("lenet", (1, 28, 28), {}),
    ("baseline", (3, 12, 12), {}),
    ("efficientnet_lite0", (3, 16, 16), {"se": True, "drop_path_rate": 0.2}),
])
def test_training_step_under_strict_device_backend(strict_backend, name, shape, options):
    """No host array sneaks into a forward or backward pass (CuPy's rules, on the CPU)."""
    from common.backend import to_device, to_numpy

    model = build_model(name, shape, 10, **options)
    model.train()
    x = to_device(np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32))
    y = model(x)
    dx = model.backward(y * 0 + 1)
    assert to_numpy(dx).shape == (2, *shape)
    assert all(np.isfinite(to_numpy(p.grad)).all() for p in model.parameters())


# ----------------------------------------------------------------------------- training backward
@pytest.mark.parametrize("name,shape", ROUND_TRIP, ids=[c[0] for c in ROUND_TRIP])
def test_training_backward_gives_the_same_parameter_gradients_without_the_input_gradient(name, shape):
    """A training step asks for no dL/dx of the images (common.dispatch.training_backward): on the
    fast engine the first convolution skips its input gradient, and every parameter gradient
    equals, bit for bit, the one from the full backward pass."""
    from common import dispatch
    from common.seed import seed_everything
    from engine.steps import entry_layer, skips_input_grad

    seed_everything(3)
    model = build_model(name, shape, 10)
    model.train()
    first = entry_layer(model)
    assert type(first).__name__ == "Conv2D"
    x = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32)
    g = np.random.default_rng(1).standard_normal((3, 10)).astype(np.float32)
    seen, conv_backward = [], first.backward
    first.backward = lambda grad: (seen.append(skips_input_grad(first)), conv_backward(grad))[1]
    grads = []
    for full in (True, False):
        np.random.seed(5)                                 # the same dropout / drop-path masks
        model.zero_grad()
        model(x)
        if full:
            assert model.backward(g).shape == x.shape
        else:
            assert dispatch.training_backward(model, g) is None
            assert not skips_input_grad(first)           # only for that one pass
        grads.append({n: p.grad.copy() for n, p in model.named_parameters()})
    assert seen == [False, True]                          # the first conv was told to skip dL/dx
    for n in grads[0]:
        np.testing.assert_array_equal(grads[1][n], grads[0][n], err_msg=n)


def test_entry_layer_walk_stops_where_nothing_can_be_skipped():
    import convolutional as C
    from common import dispatch
    from engine.steps import entry_layer
    from vectorized.mlp import build_mlp
    from vectorized.module import Sequential

    mlp = build_mlp(784, 10, (32,))
    assert entry_layer(mlp) is mlp[0]                     # a Linear first
    block = C.BasicBlock(3, 3, 1)                         # the shortcut needs dL/dx
    assert entry_layer(Sequential(C.ToChannelsLast(), block, C.Conv2D(3, 2, 1))) is None
    assert entry_layer(Sequential(C.ToChannelsLast(), C.ReLU(), C.Conv2D(3, 2, 1))) is None
    assert entry_layer(Sequential(C.ToChannelsLast(), C.DepthwiseConv2D(3, 3))) is None
    nested = Sequential(C.ToChannelsLast(), Sequential(Sequential(), C.Conv2D(3, 2, 3)))
    assert entry_layer(nested) is nested[1][1]
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5))
    y = nested(x)
    dispatch.training_backward(nested, np.ones_like(y))
    assert nested.backward(np.ones_like(y)).shape == x.shape
