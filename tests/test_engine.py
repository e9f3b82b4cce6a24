"""The engine against the reference: every fast layer equals its layer's own readable code.

Each comparison runs with one worker and with two workers forced (and blocks cut small), so the
fast paths really run their blocks on threads even on a one-core machine. Whole models: the same
seed gives the same losses on both engines (float64 to 1e-9 over three steps, float32 to 1e-5
on the first).
"""
import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import convolutional as C
import engine
from common import dispatch
from engine import parallel, tuning
from vectorized.module import Module, Sequential, parameter

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def workers(request, monkeypatch):
    """One worker, or two worker threads with blocks small enough that every pass is shared out."""
    parallel.set_cpu_workers(request.param)
    if request.param > 1:
        for name in ("SMALL_WORK_BYTES", "SMALL_PASS_BYTES", "GEMM_SPLIT_MIN_MACS"):
            monkeypatch.setattr(tuning, name, 0)
        for name in ("BLOCK_BYTES", "IMAGE_BLOCK_BYTES", "CONV_BLOCK_BYTES", "DEPTHWISE_BLOCK_BYTES",
                     "LAYERNORM_BLOCK_BYTES", "ADAM_BLOCK_BYTES"):
            monkeypatch.setattr(tuning, name, 1)
        monkeypatch.setattr(tuning, "MIN_BLOCK_ROWS", 1)
        monkeypatch.setattr(tuning, "GELU_BLOCK", 7)
    yield request.param
    parallel.set_cpu_workers()


def run_both(make_layer, x, grad_seed=1, training=True):
    """(outputs, input grads, parameter grads, buffers) of one forward/backward, on each engine,
    from two copies of the same layer."""
    results = {}
    for name in ("reference", "fast"):
        engine.use(name)
        layer = make_layer()
        layer.train(training)
        y = layer(x.copy())
        g = np.random.default_rng(grad_seed).standard_normal(y.shape).astype(x.dtype)
        dx = layer.backward(g)
        results[name] = (y, dx, [p.grad.copy() for p in layer.parameters()],
                         [np.array(b) for _, b in layer.named_buffers()])
    engine.use("fast")
    return results["reference"], results["fast"]


def assert_same(ref, fast, tol):
    for a, b in zip(ref[:2], fast[:2]):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
    for group in (2, 3):
        assert len(ref[group]) == len(fast[group])
        for a, b in zip(ref[group], fast[group]):
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


def seeded(build, dtype=np.float64, seed=0):
    """A maker of identical layers: the same random weights (norms' gamma around 1) every call."""
    def make():
        layer = build().astype(dtype)
        rng = np.random.default_rng(seed)
        for name, p in layer.named_parameters():
            gamma = name.endswith("weight") and p.data.ndim == 1
            p.data[...] = (rng.standard_normal(p.data.shape) * 0.5 + (1.0 if gamma else 0.0)).astype(dtype)
        return layer
    return make


CONV_LAYERS = [
    ("conv3x3", lambda: C.Conv2D(3, 5, 3, padding=1), (2, 9, 9, 3)),
    ("conv-stride2", lambda: C.Conv2D(4, 6, 3, stride=2, padding=1), (3, 10, 11, 4)),
    ("conv-dilated", lambda: C.Conv2D(2, 3, 3, padding=2, dilation=2), (2, 8, 8, 2)),
    ("conv-5x5-grey", lambda: C.Conv2D(1, 6, 5, padding=2), (2, 12, 12, 1)),
    ("conv-1x1", lambda: C.Conv2D(8, 4, 1, bias=False), (2, 5, 5, 8)),
    ("conv-grouped", lambda: C.Conv2D(4, 6, 3, padding=1, groups=2), (2, 7, 7, 4)),
    ("depthwise", lambda: C.DepthwiseConv2D(5, 3, padding=1), (2, 8, 8, 5)),
    ("depthwise-stride2", lambda: C.DepthwiseConv2D(4, 5, stride=2, padding=2), (2, 9, 9, 4)),
    ("maxpool", lambda: C.MaxPool2D(2), (3, 8, 8, 4)),
    ("maxpool-overlap", lambda: C.MaxPool2D(3, 2, 1), (2, 9, 9, 20)),
    ("global-pool", lambda: C.GlobalAvgPool2D(), (3, 5, 5, 4)),
    ("batchnorm2d", lambda: C.BatchNorm2D(6), (3, 5, 5, 6)),
    ("layernorm2d", lambda: C.LayerNorm2D(6), (3, 4, 5, 6)),
    # PyTorch's options: the fast path where it has one (F.pad's four numbers), the reference otherwise
    ("conv-four-pads", lambda: C.Conv2D(3, 4, 3, padding=(2, 0, 1, 1)), (2, 7, 6, 3)),
    ("conv-reflect", lambda: C.Conv2D(3, 4, 3, padding=2, padding_mode="reflect"), (2, 7, 6, 3)),
    ("conv-empty-batch", lambda: C.Conv2D(3, 4, 3, padding=1), (0, 7, 6, 3)),
    ("maxpool-ceil-dilated", lambda: C.MaxPool2D(3, 2, 1, dilation=2, ceil_mode=True), (2, 10, 9, 4)),
    ("maxpool-empty-batch", lambda: C.MaxPool2D(2), (0, 8, 8, 4)),
    ("batchnorm2d-options", lambda: C.BatchNorm2D(6, momentum=None, affine=False), (3, 5, 5, 6)),
    ("batchnorm2d-empty-batch", lambda: C.BatchNorm2D(6), (0, 5, 5, 6)),
]
VEC_LAYERS = [
    ("linear", lambda: C.Linear(7, 5), (6, 7)),
    ("linear-leading-dims", lambda: C.Linear(7, 5), (2, 3, 7)),
    ("relu", lambda: C.ReLU(), (4, 33)),
    ("relu6", lambda: C.ReLU6(), (4, 33)),
    ("gelu", lambda: C.GELU(), (4, 33)),
    ("leaky-relu", lambda: C.LeakyReLU(0.1), (4, 33)),
    ("leaky-relu-steep", lambda: C.LeakyReLU(2.0), (4, 33)),     # a slope over 1: the reference's code
    ("sequential-relu-pool", lambda: Sequential(C.ToChannelsLast(), C.Conv2D(2, 3, 3, padding=1), C.ReLU(),
                                                C.MaxPool2D(2), C.Flatten(), C.Linear(3 * 4 * 4, 4)), (2, 2, 8, 8)),
]


@pytest.mark.parametrize("name, build, shape", CONV_LAYERS + VEC_LAYERS, ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fast_equals_reference_float64(name, build, shape, training, workers):
    x = np.random.default_rng(3).standard_normal(shape) * 2
    if "pool" in name and "global" not in name:
        x = np.round(x * 2) / 2  # ties: both engines must send the gradient to the first maximum
    ref, fast = run_both(seeded(build), x, training=training)
    assert_same(ref, fast, 1e-10)


@pytest.mark.parametrize("name, build, shape", CONV_LAYERS + VEC_LAYERS, ids=lambda v: v if isinstance(v, str) else "")
def test_fast_equals_reference_float32(name, build, shape, workers):
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    ref, fast = run_both(seeded(build, np.float32), x)
    assert_same(ref, fast, 2e-4)


def test_training_backward_leaves_the_first_layers_input_gradient_out_on_the_fast_engine_only():
    model = Sequential(C.ToChannelsLast(), C.Conv2D(1, 2, 3, padding=1), C.Flatten(), C.Linear(2 * 6 * 6, 3))
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    for name in ("reference", "fast"):
        engine.use(name)
        model.zero_grad()
        out = model(x)
        dispatch.training_backward(model, np.ones_like(out))
        grads = [p.grad.copy() for p in model.parameters()]
        if name == "reference":
            ref = grads
        else:
            for a, b in zip(ref, grads):
                np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert model.backward(np.ones_like(out)).shape == x.shape  # a plain backward still returns dL/dx


@pytest.mark.parametrize("arch, shape", [("lenet", (1, 28, 28)), ("baseline", (1, 28, 28)),
                                         ("resnet18", (3, 32, 32)), ("efficientnet_lite0", (3, 32, 32))])
def test_whole_models_give_the_same_losses_on_both_engines(arch, shape):
    """float64: the same loss to 1e-9 over three Adam steps; float32: the first loss to 1e-5."""
    from common.seed import seed_everything
    from convolutional.architectures import build_model
    from vectorized.losses import CrossEntropyLoss
    from vectorized.optim import Adam

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, *shape))
    y = rng.integers(0, 10, 4)
    for dtype, steps, tol in ((np.float64, 3, 1e-9), (np.float32, 1, 1e-5)):
        losses = {}
        for name in ("reference", "fast"):
            engine.use(name)
            seed_everything(1)
            model = build_model(arch, shape, 10).astype(dtype)
            loss_fn, opt = CrossEntropyLoss(), Adam(model.parameters(), 1e-3)
            losses[name] = []
            for _ in range(steps):
                model.zero_grad()
                losses[name].append(float(loss_fn.forward(model(x.astype(dtype)), y)))
                dispatch.training_backward(model, loss_fn.backward())
                opt.step()
        engine.use("fast")
        np.testing.assert_allclose(losses["fast"], losses["reference"], rtol=tol, atol=tol)


def test_adam_fast_equals_reference_over_steps(workers):
    from vectorized.optim import Adam

    shapes = [(3,), (4, 5), (300, 200), (7,)]  # small ones step as one flat array, the large one in slices
    result = {}
    for name in ("reference", "fast"):
        engine.use(name)
        rng = np.random.default_rng(0)
        params = [parameter(rng.standard_normal(s)) for s in shapes]
        opt = Adam(params, lr=1e-2, weight_decay=0.01)
        for _ in range(3):
            for p in params:
                p.grad[...] = rng.standard_normal(p.shape)
            opt.step()
        result[name] = [p.data.copy() for p in params]
    engine.use("fast")
    for a, b in zip(result["reference"], result["fast"]):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_the_engine_switch():
    engine.use("reference")
    assert engine.current() == "reference" and dispatch.replacement(C.Conv2D, "forward") is None
    engine.use("fast")
    assert engine.current() == "fast" and dispatch.replacement(C.DepthwiseConv2D, "forward") is not None
    with pytest.raises(ValueError, match="engine must be one of"):
        engine.use("turbo")


def test_every_knob_is_in_the_tuning_table_once_with_a_reason():
    knobs = {n for n in vars(tuning) if n.isupper() and n != "TABLE"}
    assert knobs == set(tuning.TABLE)
    for name, (why, machine) in tuning.TABLE.items():
        assert why and machine, name
    # and nowhere else: no module-level constant of the engine's kind outside the table
    for path in (ROOT / "engine").glob("*.py"):
        if path.name == "tuning.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    assert not (isinstance(target, ast.Name) and target.id in knobs), (path.name, target.id)


def test_module_carries_no_performance_flags():
    for flag in ("commutes_with_relu", "input_grad", "can_skip_input_grad", "passes_no_grad",
                 "runs_children_in_order", "backward_params"):
        assert not hasattr(Module, flag) and not hasattr(Sequential, flag), flag


def test_teaching_files_carry_no_timing_talk():
    """The layers' files state the math; speeds, machines and tuning live in the engine wing."""
    import re
    words = re.compile(r"\b(\d+(\.\d+)? ?(ms|us|µs)|AVX|faster|slower|cache|BLAS|worker threads?)\b")
    teaching = ["vectorized/layers.py", "vectorized/activations.py", "vectorized/module.py", "vectorized/optim.py",
                "convolutional/conv.py", "convolutional/pooling.py", "convolutional/norm.py",
                "convolutional/geometry.py", "convolutional/layout.py", "convolutional/blocks.py",
                "convolutional/scaling.py"]
    for rel in teaching:
        for lineno, line in enumerate((ROOT / rel).read_text().splitlines(), 1):
            assert not words.search(line), f"{rel}:{lineno}: {line.strip()}"


def _imports(path: Path, root: Path) -> set:
    """The project modules a file imports (absolute imports only; the project uses no others)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_no_import_cycle_anywhere_and_the_layers_never_import_the_engine():
    packages = ["common", "scalar", "vectorized", "convolutional", "engine", "parity"]
    modules = {}
    for pkg in packages:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    edges = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path, ROOT):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        edges[name] = targets
        top = name.split(".")[0]
        if top in ("common", "scalar", "vectorized", "convolutional"):
            launcher = '__name__ == "__main__"' in path.read_text()  # an entry point chooses the engine
            assert launcher or not any(t.split(".")[0] == "engine" for t in targets), f"{name} imports the engine"
        if top == "common":
            assert not any(t.split(".")[0] in ("scalar", "vectorized", "convolutional", "engine", "parity")
                           for t in targets), f"{name} imports a tier"
        if top == "scalar":
            assert not any(t.split(".")[0] == "vectorized" for t in targets), f"{name} imports vectorized"
    sys.setrecursionlimit(10000)
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in edges.get(node, ()):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize("k, padding, stride, dilation, size", [
    (7, 3, 1, 1, 2), (5, 2, 1, 1, 2), (7, 3, 1, 1, 1), (5, 2, 2, 1, 3), (5, 4, 1, 2, 2), (3, 1, 1, 1, 1),
    (7, (3, 2, 3, 1), 1, 1, 3)])
def test_depthwise_taps_that_read_only_padding_are_left_out(k, padding, stride, dilation, size):
    """Small maps under a large kernel: the fast depthwise convolution sums only the taps that reach
    the input (engine.depthwise.live_taps) and still gives the reference's output and gradients."""
    import convolutional as C
    from engine.depthwise import live_taps

    def run(name):
        engine.use(name)
        try:
            layer = C.DepthwiseConv2D(4, k, stride=stride, padding=padding, dilation=dilation).astype(np.float64)
            rng = np.random.default_rng(1)
            layer.weight.data[...] = rng.standard_normal(layer.weight.shape)
            x = rng.standard_normal((3, size, size + 1, 4))
            y = layer(x)
            dx = layer.backward(rng.standard_normal(y.shape))
            return [y, dx, layer.weight.grad, layer.bias.grad]
        finally:
            engine.use("fast")

    for a, b in zip(run("reference"), run("fast")):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    assert live_taps(7, 2, 2, 1, 1, 3, 3) == (2, 4, 1, 1)   # ConvNeXt's last stage: 3 of 7 taps a side
    assert live_taps(3, 8, 8, 1, 1, 1, 1) == (0, 2, 1, 1)   # a map larger than the kernel: all of them
