"""Inference passes of the fast engine against the reference: BatchNorm2D folded into convolutions.

Every architecture, built small, in evaluation mode: the fast engine (folding on and off) gives the
reference engine's logits (float64 to 1e-10, float32 to 1e-4), gradients in evaluation mode stay
exact, the saved tensors never change, and the folded weights follow every change of the model.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convolutional as C
import engine
from common.seed import seed_everything
from convolutional.architectures import build_model
from engine import inference, tuning
from vectorized.losses import CrossEntropyLoss
from vectorized.module import Sequential
from vectorized.optim import Adam

ARCHS = [("lenet", (1, 16, 16)), ("baseline", (1, 12, 12)), ("alexnet", (3, 15, 15)), ("resnet18", (3, 8, 8)),
         ("vgg16", (3, 16, 16)), ("efficientnet_lite0", (3, 16, 16)), ("convnext_tiny", (3, 16, 16))]


@pytest.fixture(autouse=True)
def fast_engine():
    engine.use("fast")
    yield
    engine.use("fast")


def model_with_statistics(arch, shape, dtype, seed=0):
    """The architecture with every BatchNorm2D's running statistics, gamma and beta made random, so
    folding has something to fold."""
    seed_everything(seed)
    model = build_model(arch, shape, 10).astype(dtype)
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, C.BatchNorm2D):
            c = m.num_features
            m.running_mean[...] = rng.standard_normal(c) * 0.3
            m.running_var[...] = rng.uniform(0.5, 2.0, c)
            m.weight.data[...] = rng.uniform(0.5, 1.5, c)
            m.bias.data[...] = rng.standard_normal(c) * 0.3
        if isinstance(m, C.ConvNeXtBlock) and m.gamma is not None:  # layer scales that matter
            m.gamma.data[...] = rng.uniform(0.5, 1.5, m.dim)
    return model.eval()


def logits(model, x, engine_name):
    engine.use(engine_name)
    try:
        return model(x.copy())
    finally:
        engine.use("fast")


@pytest.mark.parametrize("arch, shape", ARCHS, ids=[a for a, _ in ARCHS])
@pytest.mark.parametrize("fold", [True, False], ids=["folded", "unfolded"])
def test_fast_eval_equals_reference_eval(arch, shape, fold, monkeypatch):
    monkeypatch.setattr(tuning, "FOLD_BATCHNORM", fold)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        model = model_with_statistics(arch, shape, dtype)
        x = np.random.default_rng(1).standard_normal((2, *shape)).astype(dtype)
        ref = logits(model, x, "reference")
        np.testing.assert_allclose(logits(model, x, "fast"), ref, rtol=tol, atol=tol)


def test_every_batchnorm_of_the_convolutional_architectures_is_folded():
    for arch, shape in ARCHS:
        model = model_with_statistics(arch, shape, np.float32)
        norms = [m for m in model.modules() if isinstance(m, C.BatchNorm2D)]
        assert len(inference.conv_bn_pairs(model)) == len(norms), arch
        model.train()
        assert inference.conv_bn_pairs(model) == [], arch  # training mode: batch statistics, nothing to fold


def test_folding_leaves_parameters_and_state_dict_bit_identical():
    model = model_with_statistics("resnet18", (3, 8, 8), np.float32)
    arrays = [p.data for p in model.parameters()] + [b for _, b in model.named_buffers()]
    state = model.state_dict()
    model(np.ones((2, 3, 8, 8), np.float32))
    after = model.state_dict()
    assert list(after) == list(state)
    for k in state:
        assert after[k].dtype == state[k].dtype and after[k].tobytes() == state[k].tobytes(), k
    assert all(a is b for a, b in zip(arrays, [p.data for p in model.parameters()]
                                      + [b for _, b in model.named_buffers()]))
    conv = model.layer1[0].conv1
    assert conv.ran_folded is not None and conv.ran_folded.weight is not conv.weight.data
    assert getattr(conv, "inference_fold") is None  # the marks last one pass only


def assert_eval_follows_an_adam_step(model, x, rng):
    """One training step (Adam, batch statistics) changes what eval computes; the fast engine's eval
    follows it and equals the reference's."""
    first = logits(model, x, "fast")
    loss_fn, opt = CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2)
    model.train()
    loss_fn.forward(model(x), rng.integers(0, 10, len(x)))
    model.backward(loss_fn.backward())
    opt.step()
    model.eval()
    after_step = logits(model, x, "fast")
    assert np.abs(after_step - first).max() > 1e-6
    np.testing.assert_allclose(after_step, logits(model, x, "reference"), rtol=1e-10, atol=1e-10)


def test_the_folded_weights_follow_training_steps_and_in_place_changes():
    """An Adam step, a training-mode forward (running statistics), an in-place edit and
    load_state_dict all change what eval computes; the fast engine's eval follows each time."""
    model = model_with_statistics("efficientnet_lite0", (3, 16, 16), np.float64)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 16, 16))
    assert_eval_follows_an_adam_step(model, x, rng)
    stem = model.features[0]
    stem[0].weight.data[...] *= 2.0          # in place: the same array object, new values
    stem[1].running_var[...] *= 3.0
    np.testing.assert_allclose(logits(model, x, "fast"), logits(model, x, "reference"), rtol=1e-10, atol=1e-10)
    model.load_state_dict(model_with_statistics("efficientnet_lite0", (3, 16, 16), np.float64, seed=5).state_dict())
    np.testing.assert_allclose(logits(model, x, "fast"), logits(model, x, "reference"), rtol=1e-10, atol=1e-10)


def test_training_mode_numbers_are_untouched_by_an_eval_pass():
    x = np.random.default_rng(3).standard_normal((4, 3, 8, 8))
    out = {}
    for name in ("reference", "fast"):
        engine.use(name)
        model = model_with_statistics("resnet18", (3, 8, 8), np.float64)
        model(x)                              # an eval pass (folded on the fast engine)
        model.train()
        out[name] = (model(x), model.layer2[0].bn1.running_mean.copy())
    np.testing.assert_allclose(out["fast"][0], out["reference"][0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out["fast"][1], out["reference"][1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("arch, shape", [("resnet18", (3, 8, 8)), ("efficientnet_lite0", (3, 16, 16)),
                                         ("convnext_tiny", (3, 16, 16))])
def test_gradients_in_evaluation_mode_stay_exact_after_a_folded_forward(arch, shape):
    """dL/dx and every parameter's gradient (conv weights, gamma, beta) of an eval-mode backward."""
    x = np.random.default_rng(4).standard_normal((2, *shape))
    grads = {}
    for name in ("reference", "fast"):
        engine.use(name)
        model = model_with_statistics(arch, shape, np.float64)
        out = model(x)
        g = np.random.default_rng(5).standard_normal(out.shape)
        dx = model.backward(g)
        grads[name] = [dx] + [p.grad.copy() for p in model.parameters()]
    for a, b in zip(grads["reference"], grads["fast"]):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-10)


def test_a_sequential_of_its_own_folds_grouped_and_biased_convolutions():
    """A user's Sequential: a biased grouped convolution, a depthwise one and a BatchNorm2D without
    gamma and beta; a BatchNorm2D with batch statistics in evaluation is left alone."""
    def make():
        seed_everything(7)
        model = Sequential(C.Conv2D(4, 6, 3, padding=1, groups=2), C.BatchNorm2D(6),
                           C.DepthwiseConv2D(6, 3, padding=1), C.BatchNorm2D(6, affine=False),
                           C.Conv2D(6, 5, 1), C.BatchNorm2D(5, track_running_stats=False)).astype(np.float64)
        rng = np.random.default_rng(8)
        for m in model.modules():
            if isinstance(m, C.BatchNorm2D) and m.track_running_stats:
                m.running_mean[...] = rng.standard_normal(m.num_features)
                m.running_var[...] = rng.uniform(0.5, 2, m.num_features)
        return model.eval()

    x = np.random.default_rng(9).standard_normal((3, 6, 6, 4))
    g = np.random.default_rng(10).standard_normal((3, 6, 6, 5))
    result = {}
    for name in ("reference", "fast"):
        engine.use(name)
        model = make()
        result[name] = [model(x), model.backward(g)] + [p.grad.copy() for p in model.parameters()]
    assert len(inference.conv_bn_pairs(make())) == 2
    for a, b in zip(result["reference"], result["fast"]):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-10)


def test_a_layer_used_twice_is_not_folded():
    conv, bn = C.Conv2D(3, 3, 3, padding=1), C.BatchNorm2D(3)
    model = Sequential(conv, bn, Sequential(conv, C.ReLU())).eval()
    assert inference.conv_bn_pairs(model) == []


def test_activations_overwrite_only_arrays_nothing_else_reads():
    model = model_with_statistics("resnet18", (3, 8, 8), np.float32)
    acts = [act for _before, act in inference.inplace_activations(model)]
    assert model.relu in acts and model.layer1[0].relu_out in acts and len(acts) == 17
    first = Sequential(C.ReLU(), C.Conv2D(2, 2, 1), C.ReLU(), C.Conv2D(2, 2, 1), C.ReLU(), C.MaxPool2D(2)).eval()
    assert inference.inplace_activations(first) == [(first[1], first[2])]  # not the first (its input is the caller's),
    x = -np.ones((1, 4, 4, 2), np.float32)                     # nor one the engine may run after the pool
    first(x)
    assert (x == -1).all()
    vgg = model_with_statistics("vgg16", (3, 16, 16), np.float32)
    assert len(inference.inplace_activations(vgg)) == 13 - 4   # four ReLUs sit before a max-pool


@pytest.mark.parametrize("transposed", [True, False], ids=["yT=WxT", "y=xWT"])
def test_relu_after_linear_runs_in_place_with_the_reference_numbers(transposed, monkeypatch):
    """An MLP at eval: ReLUs overwrite the Linear outputs, and with LINEAR_EVAL_TRANSPOSED the
    layers pass their outputs column by column; the numbers and the gradients stay the reference's."""
    from vectorized.layers import Dropout, Linear

    monkeypatch.setattr(tuning, "LINEAR_EVAL_TRANSPOSED", transposed)

    def make():
        seed_everything(4)
        return Sequential(Linear(12, 9), C.ReLU(), Dropout(0.3), Linear(9, 7), C.ReLU(), Linear(7, 3)).astype(np.float64).eval()

    model = make()
    assert inference.inplace_activations(model) == [(model[0], model[1]), (model[3], model[4])]
    x = np.random.default_rng(2).standard_normal((5, 12))
    g = np.random.default_rng(3).standard_normal((5, 3))
    result = {}
    for name in ("reference", "fast"):
        engine.use(name)
        model = make()
        result[name] = [model(x), model.backward(g)] + [p.grad.copy() for p in model.parameters()]
    assert result["fast"][0].flags.f_contiguous == transposed
    for a, b in zip(result["reference"], result["fast"]):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-13)


def test_an_inference_pass_leaves_the_model_structure_as_it_is():
    """The marks a pass puts on a BatchNorm2D (which convolution took its work) are not children:
    the model has the same modules during the pass, and what the walk found stays valid."""
    from vectorized.module import Module, structure_version

    class Probe(Module):
        def forward(self, x):
            self.seen = len(list(model.modules()))
            return x

    model = Sequential(C.Conv2D(2, 3, 3, padding=1), C.BatchNorm2D(3), Probe()).eval()
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 2)).astype(np.float32)
    model(x)
    version = structure_version()
    model(x)
    assert model[2].seen == len(list(model.modules())) == 4 and structure_version() == version


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "separate"])
@pytest.mark.parametrize("batch", [3, 0], ids=["batch", "empty"])
def test_activations_fused_into_1x1_and_depthwise_convolutions(fuse, batch, monkeypatch):
    """A 1x1 convolution and a depthwise one, each with its BatchNorm2D folded in, apply the ReLU6 /
    ReLU after them to each block of their output: the reference engine's numbers and gradients."""
    monkeypatch.setattr(tuning, "FUSE_ACTIVATIONS", fuse)

    def make():
        seed_everything(5)
        model = Sequential(C.Conv2D(4, 6, 1), C.BatchNorm2D(6), C.ReLU6(),
                           C.DepthwiseConv2D(6, 3, padding=1), C.BatchNorm2D(6), C.ReLU(),
                           C.Conv2D(6, 5, 3, padding=1), C.BatchNorm2D(5), C.ReLU()).astype(np.float64)
        rng = np.random.default_rng(6)
        for m in model.modules():
            if isinstance(m, C.BatchNorm2D):
                m.running_mean[...] = rng.standard_normal(m.num_features)
                m.running_var[...] = rng.uniform(0.5, 2, m.num_features)
                m.weight.data[...] = rng.uniform(0.5, 4, m.num_features)  # some outputs above 6
        return model.eval()

    model = make()
    fused = inference.fusable_activations(inference.conv_bn_pairs(model), inference.inplace_activations(model))
    assert fused == [(model[0], model[2]), (model[3], model[5])]   # not the 3x3 convolution's ReLU
    x = np.random.default_rng(7).standard_normal((batch, 6, 6, 4)) * 3
    g = np.random.default_rng(8).standard_normal((batch, 6, 6, 5))
    result = {}
    for name in ("reference", "fast"):
        engine.use(name)
        model = make()
        result[name] = [model(x), model.backward(g)] + [p.grad.copy() for p in model.parameters()]
        assert not getattr(model[2], "inference_absorbed", False)  # the marks last for the call only
    assert batch == 0 or (result["fast"][0] > 0).any()
    for a, b in zip(result["reference"], result["fast"]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def test_a_changed_model_is_looked_at_again():
    model = Sequential(C.Conv2D(2, 3, 3, padding=1), C.BatchNorm2D(3), C.ReLU()).eval()
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 2)).astype(np.float32)
    model(x)
    assert len(inference.conv_bn_pairs(model)) == 1 and len(inference.inplace_activations(model)) == 1
    setattr(model, "1", C.ReLU().eval())   # the BatchNorm2D replaced: no pair; the new ReLU follows the convolution
    assert inference.conv_bn_pairs(model) == [] and inference.inplace_activations(model) == [(model[0], model[1])]
    inner = Sequential(C.Conv2D(3, 3, 1), C.BatchNorm2D(3)).eval()
    setattr(model, "2", inner)      # a nested container appears: its pair is found
    assert inference.conv_bn_pairs(model) == [(inner[0], inner[1])]
    np.testing.assert_allclose(model(x), Sequential(*list(model.children()))(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [True, False], ids=["rows", "pixels"])
@pytest.mark.parametrize("make, shape", [
    (lambda: C.DepthwiseConv2D(6, 3, padding=1), (3, 7, 9, 6)),
    (lambda: C.DepthwiseConv2D(5, 5, padding=4, dilation=2), (2, 9, 8, 5)),
    (lambda: C.DepthwiseConv2D(4, 7, padding=3, bias=False), (2, 6, 6, 4)),
    (lambda: C.DepthwiseConv2D(4, 3, stride=2, padding=1), (2, 7, 7, 4))], ids=["3x3", "dilated", "7x7", "stride2"])
def test_depthwise_over_whole_rows_equals_the_reference(make, shape, rows, monkeypatch):
    """Forward, dL/dx (a depthwise convolution itself for stride 1) and the weight gradients."""
    monkeypatch.setattr(tuning, "DEPTHWISE_ROWS", rows)
    x = np.random.default_rng(11).standard_normal(shape)
    result = {}
    for name in ("reference", "fast"):
        engine.use(name)
        seed_everything(12)
        layer = make().astype(np.float64)
        y = layer(x)
        g = np.random.default_rng(13).standard_normal(y.shape)
        result[name] = [y, layer.backward(g)] + [p.grad.copy() for p in layer.parameters()]
    for a, b in zip(result["reference"], result["fast"]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)


def test_profile_layers_times_inference_steps_on_the_cpu_clock(tmp_path):
    """``--eval``: forward times only (no backward column filled), in evaluation mode; ``--clock cpu``."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "profile_layers.py"
    out = tmp_path / "profile.json"
    proc = subprocess.run([sys.executable, str(script), "baseline", "--eval", "--steps", "2", "--warmup", "0",
                           "--batch-size", "8", "--clock", "cpu", "--by", "type", "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "inference (eval, forward only)" in proc.stdout and "cpu clock" in proc.stdout
    report = json.loads(out.read_text())
    assert report["mode"] == "eval"
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["Conv2D"]["forward_ms"] > 0 and rows["BatchNorm2D"]["count"] == 3
    assert all(r["backward_ms"] == 0 for r in report["rows"])
    bad = subprocess.run([sys.executable, str(script), "baseline", "--clock", "sundial"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("torch") is None, reason="needs PyTorch")
def test_profile_layers_times_ours_against_the_torch_twin(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "profile_layers.py"
    out = tmp_path / "ratio.json"
    proc = subprocess.run([sys.executable, str(script), "lenet", "--eval", "--torch", "--steps", "2", "--warmup", "0",
                           "--batch-size", "8", "--threads", "1", "--clock", "cpu", "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert len(report["ours_steps_ms"]) == len(report["torch_steps_ms"]) == 2
    assert report["ratio"] == pytest.approx(report["torch_ms"] / report["ours_ms"])
    wrong = subprocess.run([sys.executable, str(script), "lenet", "--torch"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120, check=False)
    assert wrong.returncode == 2 and "--torch compares inference steps" in wrong.stderr


def test_an_inference_pass_keeps_to_the_device_under_the_strict_backend(strict_backend):
    """Folding, its cache check, in-place ReLUs and an eval-mode backward with CuPy's rules."""
    from common.backend import StrictArray, to_device, to_numpy

    seed_everything(3)
    model = Sequential(C.ToChannelsLast(), C.Conv2D(3, 6, 3, padding=1, bias=False), C.BatchNorm2D(6), C.ReLU(),
                       C.BasicBlock(6, 8, 2), C.DepthwiseConv2D(8, 3, padding=1), C.BatchNorm2D(8), C.ReLU6(),
                       C.GlobalAvgPool2D()).eval()
    assert len(inference.conv_bn_pairs(model)) == 5
    x = to_device(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    for _ in range(2):  # made, then taken from the cache
        out = model(x)
    dx = model.backward(to_device(np.ones(out.shape, np.float32)))
    assert isinstance(out, StrictArray) and isinstance(dx, StrictArray)
    assert all(isinstance(p.grad, StrictArray) and np.isfinite(to_numpy(p.grad)).all() for p in model.parameters())


@pytest.mark.parametrize("fold_rows", [0, 10**9], ids=["layer-scale-folded", "scaled-in-place"])
def test_convnext_blocks_at_eval_equal_the_reference(fold_rows, monkeypatch):
    """engine.blocks: the layer scale folded into pwconv2 (or applied in place): the reference's logits,
    its gradients after the eval forward, and saved tensors that never change."""
    from engine import blocks  # noqa: F401  (registered by importing engine)

    monkeypatch.setattr(tuning, "LAYER_SCALE_FOLD_ROWS", fold_rows)
    shape = (3, 16, 16)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        model = model_with_statistics("convnext_tiny", shape, dtype)
        x = np.random.default_rng(1).standard_normal((2, *shape)).astype(dtype)
        state = model.state_dict()
        ref = logits(model, x, "reference")
        for _ in range(2):  # the folded weights made, then taken from the cache
            np.testing.assert_allclose(logits(model, x, "fast"), ref, rtol=tol, atol=tol)
        after = model.state_dict()
        assert all(after[k].tobytes() == state[k].tobytes() for k in state)
        block = next(m for m in model.modules() if isinstance(m, C.ConvNeXtBlock))
        assert getattr(block.pwconv2, "inference_scale", None) is None  # the mark lasts one call
        assert (inference._scaled.get(block.pwconv2) is not None) == (fold_rows == 0)
    x = np.random.default_rng(4).standard_normal((2, *shape))
    grads = {}
    for name in ("reference", "fast"):
        engine.use(name)
        model = model_with_statistics("convnext_tiny", shape, np.float64)
        out = model(x)
        dx = model.backward(np.random.default_rng(5).standard_normal(out.shape))
        grads[name] = [dx] + [p.grad.copy() for p in model.parameters()]
    for a, b in zip(grads["reference"], grads["fast"]):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-10)


def test_convnext_float32_gradients_after_an_eval_forward():
    """float32: a backward after the eval forward gives the reference engine's gradients to float32
    precision; single blocks at sizes whose products are split over the workers give its outputs."""
    shape = (3, 16, 16)
    x = np.random.default_rng(4).standard_normal((2, *shape)).astype(np.float32)
    result = {}
    for name in ("reference", "fast"):
        engine.use(name)
        model = model_with_statistics("convnext_tiny", shape, np.float32)
        out = model(x)
        dx = model.backward(np.random.default_rng(5).standard_normal(out.shape).astype(np.float32))
        result[name] = [out, dx] + [p.grad.copy() for p in model.parameters()]
    for a, b in zip(result["reference"], result["fast"]):
        scale = max(np.abs(a).max(), 1e-30)
        assert np.abs(b - a).max() / scale < 2e-4
    for dim, size in ((96, 32), (384, 4)):             # more rows than columns, and fewer
        seed_everything(3)
        block = C.ConvNeXtBlock(dim).eval()
        block.gamma.data[...] = np.random.default_rng(7).uniform(0.5, 1.5, dim)
        xb = np.random.default_rng(8).standard_normal((4, size, size, dim)).astype(np.float32)
        want = logits(block, xb, "reference")
        np.testing.assert_allclose(logits(block, xb, "fast"), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_the_folded_layer_scales_follow_training_steps_and_loaded_weights(monkeypatch):
    monkeypatch.setattr(tuning, "LAYER_SCALE_FOLD_ROWS", 0)
    shape = (3, 16, 16)
    model = model_with_statistics("convnext_tiny", shape, np.float64)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, *shape))
    assert_eval_follows_an_adam_step(model, x, rng)
    block = next(m for m in model.modules() if isinstance(m, C.ConvNeXtBlock))
    block.gamma.data[...] *= 2.0            # in place: the same array object, new values
    block.pwconv2.bias.data[...] += 0.5
    np.testing.assert_allclose(logits(model, x, "fast"), logits(model, x, "reference"), rtol=1e-10, atol=1e-10)
    model.load_state_dict(model_with_statistics("convnext_tiny", shape, np.float64, seed=5).state_dict())
    np.testing.assert_allclose(logits(model, x, "fast"), logits(model, x, "reference"), rtol=1e-10, atol=1e-10)


def test_gelu_at_eval_keeps_to_the_exact_gelu():
    """The evaluation-mode fit (engine.activations._gelu_eval_float32) against x·erfc(-x/√2)/2 in
    float64, over [-10, 10], 0 and tiny values; a backward after it gives the training-mode gradient."""
    import math

    x = np.concatenate([np.linspace(-10, 10, 200_001), [0.0, 1e-30, -1e-30, 1e-8, -1e-8, 1e-38, -1e-38, 10, -10]])
    x = x.astype(np.float32)
    exact = np.array([v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
    act = C.GELU("none").eval()
    y = act(x.reshape(-1, 10))
    assert y.dtype == np.float32 and act.slope is None
    assert np.abs(y.reshape(-1).astype(np.float64) - exact).max() < 5e-7
    assert y.reshape(-1)[-9] == 0 and np.all(np.isfinite(y))
    g = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    dx_eval = act.backward(g)
    train = C.GELU("none").train()
    train(x.reshape(-1, 10))
    np.testing.assert_array_equal(dx_eval, train.backward(g))


@pytest.mark.parametrize("geometry", [  # (H, W, kernel, stride, padding, dilation)
    (4, 4, 5, 1, 2, 1), (8, 8, 3, 2, 1, 1), (8, 6, 5, 1, 2, 1), (4, 4, 5, 2, 2, 1), (2, 2, 3, 1, 1, 1),
    (7, 7, 3, 2, 2, 2), (5, 5, 7, 1, 3, 1), (1, 1, 7, 1, 3, 1), (16, 16, 7, 1, 3, 1), (9, 12, 5, 2, 2, 1)])
def test_a_depthwise_convolution_is_one_matrix_a_channel_or_a_strip(geometry):
    """engine.depthwise: x (C, N, H·W) @ T gives the convolution's output, and so do the strips of
    matrix_strips, each from its input rows to its output rows, within the entries it allows."""
    from engine.depthwise import depthwise_matrices, matrix_strips

    h, w, k, s, p, d = geometry
    rng = np.random.default_rng(0)
    layer = C.DepthwiseConv2D(3, k, stride=s, padding=p, dilation=d, bias=False).astype(np.float64)
    layer.weight.data[...] = rng.standard_normal(layer.weight.data.shape)
    x = rng.standard_normal((2, h, w, 3))
    want = logits(layer, x, "reference")
    (oh, ow), geom = layer.output_hw(h, w), (layer.stride, layer.pads, layer.dilation)
    t = depthwise_matrices(layer.weight.data, (h, w), (oh, ow), *geom)
    xc = x.reshape(2, h * w, 3).transpose(2, 0, 1)
    np.testing.assert_allclose((xc @ t).transpose(1, 2, 0).reshape(2, oh, ow, 3), want, rtol=1e-12, atol=1e-12)
    weights = int(np.count_nonzero(t[0]))  # every tap that reads the input, once
    for max_waste in (1e9, 2.0, 1.5):
        strips = matrix_strips((h, w), (oh, ow), *geom, layer.kernel_size, max_waste, 1)
        if strips is None:
            continue
        got = np.empty((3, 2, oh * ow))
        entries = 0
        for (y0, y1, r0, r1), ts in zip(strips, depthwise_matrices(layer.weight.data, (h, w), (oh, ow), *geom, strips)):
            got[:, :, y0 * ow:y1 * ow] = xc[:, :, r0 * w:r1 * w] @ ts
            entries += ts[0].size
        assert [y0 for y0, *_ in strips] == list(range(0, oh, strips[0][1])) and strips[-1][1] == oh
        assert entries <= max_waste * weights
        np.testing.assert_allclose(got.transpose(1, 2, 0).reshape(2, oh, ow, 3), want, rtol=1e-12, atol=1e-12)


def test_the_strip_rule():
    """ConvNeXt's 16x16 stage: four strips of four rows (64 pixels each), 3.5 entries a weight; none
    when a strip must keep more pixels, or for a 3x3 kernel on 16x16 maps (too few weights a row)."""
    from engine.depthwise import matrix_strips

    convnext = ((16, 16), (16, 16), (1, 1), (3, 3, 3, 3), (1, 1), (7, 7))
    assert matrix_strips(*convnext, 4, 64) == ((0, 4, 0, 7), (4, 8, 1, 11), (8, 12, 5, 15), (12, 16, 9, 16))
    assert matrix_strips(*convnext, 4, 65) is None
    assert matrix_strips(*convnext, 7, 64) == ((0, 16, 0, 16),)  # a whole map's T: 6.5 entries a weight
    assert matrix_strips((16, 16), (16, 16), (1, 1), (1, 1, 1, 1), (1, 1), (3, 3), 4, 1) is None
    assert matrix_strips((4, 4), (4, 4), (1, 1), (2, 2, 2, 2), (1, 1), (5, 5), 4, 64) == ((0, 4, 0, 4),)


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
@pytest.mark.parametrize("block, size, taken", [
    (lambda: C.MBConv(16, 16, 5, 1, 6), 4, True),            # residual, 5x5 on 4x4 maps
    (lambda: C.MBConv(16, 24, 3, 2, 6), 4, True),            # stride 2 to 2x2
    (lambda: C.MBConv(32, 16, 3, 1, 1), 2, True),            # no expand convolution
    (lambda: C.MBConv(16, 16, 5, 1, 6, activation="relu"), 8, True),
    (lambda: C.MBConv(16, 16, 3, 1, 6), 16, False)],          # T too empty: layer by layer
    ids=["4x4-k5-residual", "stride2", "no-expand", "relu-8x8", "16x16-layers"])
def test_mbconv_on_small_maps_runs_channel_major_with_the_reference_numbers(block, size, taken, workers, monkeypatch):
    """engine.blocks: an eval MBConv on a small map is expand, depthwise-as-matrices and project in
    channel-major order; its output and the gradients of a backward after it are the reference's."""
    from engine import parallel

    monkeypatch.setattr(parallel, "_workers", workers)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        seed_everything(0)
        model = Sequential(block()).astype(dtype)
        for m in model.modules():
            if isinstance(m, C.BatchNorm2D):
                m.running_mean[...] = np.random.default_rng(1).standard_normal(m.num_features) * 0.3
                m.running_var[...] = np.random.default_rng(2).uniform(0.5, 2.0, m.num_features)
        model.eval()
        x = np.random.default_rng(3).standard_normal((5, size, size, model[0].in_channels)).astype(dtype)
        want = logits(model, x, "reference")
        for _ in range(2):  # T made, then taken from the cache
            got = model(x.copy())
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
        assert (model[0].eval_input is not None) == taken
        if dtype == np.float64:
            g = np.random.default_rng(4).standard_normal(got.shape)
            dx = model.backward(g)
            fast = [dx] + [p.grad.copy() for p in model.parameters()]
            model.zero_grad()
            engine.use("reference")
            model(x.copy())
            ref = [model.backward(g)] + [p.grad.copy() for p in model.parameters()]
            engine.use("fast")
            for a, b in zip(ref, fast):
                np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-10)


def test_the_depthwise_matrices_follow_changed_weights_and_are_left_out_of_summaries(monkeypatch):
    """T is made again when the weights it came from change in place; a summary (which records each
    layer's output), a layer whose forward is replaced and a threshold of 0 run the blocks layer by layer."""
    from engine import blocks

    model = model_with_statistics("convnext_tiny", (3, 16, 16), np.float64)
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16))
    np.testing.assert_allclose(logits(model, x, "fast"), logits(model, x, "reference"), rtol=1e-10, atol=1e-10)
    block = next(m for m in model.modules() if isinstance(m, C.ConvNeXtBlock))
    assert block.eval_input is not None and blocks._matrices.get(block.dwconv) is not None
    block.dwconv.weight.data[...] *= -2.0
    np.testing.assert_allclose(logits(model, x, "fast"), logits(model, x, "reference"), rtol=1e-10, atol=1e-10)
    text = model.summary((3, 16, 16), print_fn=None)
    assert "stages.0.0.dwconv" in text and "stages.3.2.pwconv1" in text
    calls, plain = [], block.dwconv.forward
    block.dwconv.forward = lambda z: calls.append(z.shape) or plain(z)  # a tool watching the layer
    try:
        np.testing.assert_allclose(logits(model, x, "fast"), logits(model, x, "reference"), rtol=1e-10, atol=1e-10)
    finally:
        del block.dwconv.forward
    assert len(calls) == 2 and block.eval_input is None  # called on both engines: the block ran layer by layer
    monkeypatch.setattr(tuning, "DEPTHWISE_MATRIX_MAX_WASTE", 0)
    np.testing.assert_allclose(logits(model, x, "fast"), logits(model, x, "reference"), rtol=1e-10, atol=1e-10)
    assert block.eval_input is None


@pytest.mark.parametrize("size, taken", [(16, True), (8, True), (1, True), (32, False)])
def test_convnext_blocks_run_channel_major_in_strips_with_the_reference_numbers(size, taken):
    """A ConvNeXt block at eval on 16x16 maps (four strips), 8x8 and 1x1 (one matrix) runs dwconv and
    norm channel-major; its output and a backward after it are the reference's (float64)."""
    seed_everything(0)
    model = Sequential(C.ConvNeXtBlock(8)).astype(np.float64).eval()
    block = model[0]
    block.gamma.data[...] = np.random.default_rng(1).uniform(0.5, 1.5, 8)
    block.norm.weight.data[...] = np.random.default_rng(2).uniform(0.5, 1.5, 8)
    x = np.random.default_rng(3).standard_normal((3, size, size, 8))
    g = np.random.default_rng(4).standard_normal(x.shape)
    result = {}
    for name in ("reference", "fast"):
        engine.use(name)
        model.zero_grad()
        out = model(x.copy())
        if name == "fast":
            assert (block.eval_input is not None) == taken
        result[name] = [out, model.backward(g)] + [p.grad.copy() for p in model.parameters()]
    for a, b in zip(result["reference"], result["fast"]):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-10)
