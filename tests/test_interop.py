"""PyTorch parity of the seven architectures: same weights -> same logits and same gradients.

The PyTorch twins (tests/torch_reference.py) are initialised randomly by torch, with random
BatchNorm statistics and layer scales so that nothing is an identity; their state dict is
loaded into NNOTT's model with ``load_torch_state_dict``. Both run in float32, except where a
test says float64: there the two must agree to rounding in every gradient.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from convolutional.architectures import build_model  # noqa: E402
from convolutional.interop import export_torch_state_dict, load_torch_state_dict  # noqa: E402
from torch_reference import build_torch_model  # noqa: E402

TOL = 1e-4
TOL64 = 1e-9


def randomise(torch_model, seed=0):
    """Random BN affine + running stats and ConvNeXt gammas, so every tensor matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
            gamma = getattr(m, "gamma", None)
            if isinstance(gamma, torch.nn.Parameter):
                gamma.copy_(0.5 + torch.rand(gamma.shape, generator=gen))
    return torch_model


def twins(name, shape, variant="auto", num_classes=10, **options):
    ours = build_model(name, shape, num_classes, variant=variant, **options)
    torch.manual_seed(1)
    theirs = randomise(build_torch_model(name, shape, num_classes, ours.variant, **options))
    skipped = load_torch_state_dict(ours, theirs.state_dict())
    assert skipped == []
    return ours, theirs


def compare(ours, theirs, shape, batch=2, train=False, seed=0, dtype=np.float32, forward_only=False):
    """Forward + backward of the same input and output gradient through both; assert equal."""
    tol = TOL64 if dtype == np.float64 else TOL
    if dtype == np.float64:
        ours, theirs = ours.astype(np.float64), theirs.double()
    ours.train(train)
    theirs.train(train)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *shape)).astype(dtype)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = theirs(x_t)
    y = ours(x)
    assert y.dtype == dtype
    scale = float(np.abs(y_t.detach().numpy()).max())
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=tol, atol=tol * max(scale, 1e-3))
    if forward_only:
        return

    g = rng.standard_normal(y.shape).astype(dtype)
    y_t.backward(torch.tensor(g))
    ours.zero_grad()
    dx = ours.backward(g)
    ref = x_t.grad.numpy()
    np.testing.assert_allclose(dx, ref, rtol=tol, atol=tol * np.abs(ref).max())
    torch_params = dict(theirs.named_parameters())
    ours_params = dict(ours.named_parameters())
    assert set(ours_params) == set(torch_params)
    for key, p in ours_params.items():
        ref = torch_params[key].grad.numpy()
        np.testing.assert_allclose(p.grad, ref, rtol=tol, atol=tol * max(np.abs(ref).max(), 1e-6),
                                   err_msg=key)


# One supported small input per architecture (the small-input variant, except LeNet/Baseline
# which have theirs); the vgg16 and resnet18 cases at 28x28 exercise the dropped last pool and
# the 1-channel stem.
PARITY_CASES = [
    ("lenet", (1, 28, 28)),
    ("baseline", (1, 28, 28)),
    ("alexnet", (3, 32, 32)),
    ("vgg16", (1, 28, 28)),
    ("resnet18", (3, 32, 32)),
    ("efficientnet_lite0", (3, 32, 32)),
    pytest.param("convnext_tiny", (1, 28, 28), marks=pytest.mark.slow),
]


@pytest.mark.torch
@pytest.mark.parametrize("name,shape", PARITY_CASES, ids=[getattr(c, "values", c)[0] for c in PARITY_CASES])
def test_eval_parity_with_pytorch(name, shape):
    """float32 logits agree to 1e-4; logits and every gradient agree to 1e-9 in float64.

    The gradients are compared in float64 because in float32 a max-pool window can hold two
    values within rounding of each other (AlexNet's random input here has one such window of
    18,816): any change of summation order, in either library, may then route that window's
    gradient to the other input. Both choices are right; float64 separates the values.
    """
    ours, theirs = twins(name, shape)
    compare(ours, theirs, shape, forward_only=True)
    compare(ours, theirs, shape, dtype=np.float64)


@pytest.mark.torch
@pytest.mark.parametrize("variant,shape", [("gap", (1, 28, 28)), ("canonical", (3, 40, 36))])
def test_baseline_variants_parity(variant, shape):
    """The GAP variant, and the canonical head's 10x9 map averaged to 7x7 (PyTorch's adaptive rule)."""
    ours, theirs = twins("baseline", shape, variant=variant)
    assert ours.variant == variant
    compare(ours, theirs, shape, dtype=np.float64)


@pytest.mark.torch
def test_lenet_classic_32x32_parity():
    ours, theirs = twins("lenet", (1, 32, 32), variant="canonical", activation="tanh", pool="avg")
    assert ours.variant == "canonical"
    compare(ours, theirs, (1, 32, 32))


@pytest.mark.torch
def test_efficientnet_with_se_parity():
    """The B0-style option: squeeze-and-excite + SiLU."""
    ours, theirs = twins("efficientnet_lite0", (3, 32, 32), se=True, activation="silu")
    assert "SE (B0-style" in ours.variant_label
    compare(ours, theirs, (3, 32, 32))


@pytest.mark.torch
def test_training_mode_parity_and_running_statistics():
    """Batch statistics in BN forward/backward, and the running averages they update.

    Forward in float32; forward, every gradient and the running averages in float64. (In
    float32 a ReLU input within rounding of zero can land on either side in two correct
    implementations, which moves a whole gradient value; float64 leaves no such near-tie.)"""
    ours, theirs = twins("resnet18", (3, 16, 16))
    compare(ours, theirs, (3, 16, 16), batch=4, train=True, forward_only=True)
    compare(ours, theirs, (3, 16, 16), batch=4, train=True, dtype=np.float64)
    exported = export_torch_state_dict(ours)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(exported[key], value.numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.torch
def test_canonical_resnet18_parity_at_64x64():
    ours, theirs = twins("resnet18", (3, 64, 64), variant="canonical", num_classes=1000)
    assert ours.variant == "canonical"
    compare(ours, theirs, (3, 64, 64), batch=1)


@pytest.mark.torch
def test_export_loads_into_pytorch_strictly():
    """NNOTT -> PyTorch: every key and shape fits, and the two models then agree."""
    ours = build_model("convnext_tiny", (3, 32, 32), 10)
    theirs = build_torch_model("convnext_tiny", (3, 32, 32), 10, ours.variant)
    state = {k: torch.from_numpy(v) for k, v in export_torch_state_dict(ours).items()}
    theirs.load_state_dict(state, strict=True)
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=TOL, atol=TOL)


@pytest.mark.torch
def test_export_includes_batchnorm_buffers():
    ours = build_model("resnet18", (3, 32, 32), 10)
    theirs = build_torch_model("resnet18", (3, 32, 32), 10, "small")
    assert list(export_torch_state_dict(ours)) == list(theirs.state_dict())


@pytest.mark.slow
def test_resnet18_training_trajectory_tracks_pytorch_in_float64():
    """Ten Adam steps in training mode (BN batch statistics and running estimates): the same
    parameters as PyTorch to ~1e-10, so a gap between float32 runs is rounding-order chaos, not math."""
    from vectorized.losses import CrossEntropyLoss
    from vectorized.optim import Adam

    shape = (1, 12, 12)
    ours = build_model("resnet18", shape, 10).astype(np.float64)
    ref = build_torch_model("resnet18", shape, 10, variant=ours.variant).double()
    load_torch_state_dict(ours, ref.state_dict())
    opt, ref_opt = Adam(ours.parameters(), 1e-3), torch.optim.Adam(ref.parameters(), 1e-3)
    loss, ref_loss = CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    for _ in range(10):
        x, y = rng.standard_normal((8, *shape)), rng.integers(0, 10, 8)
        ours.zero_grad()
        loss(ours(x), y)
        ours.backward(loss.backward())
        opt.step()
        ref_opt.zero_grad()
        ref_loss(ref(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        ref_opt.step()
    theirs = ref.state_dict()
    for name, value in ours.state_dict().items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(value, theirs[name].numpy(), atol=1e-9, err_msg=name)
