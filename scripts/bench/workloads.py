"""The models the benchmark knows: how to build ours, its PyTorch twin, and count its FLOPs.

Every architecture is measured at one input shape, stated in :data:`MODELS`, with 10
classes. The PyTorch twin is the same network: for the MLP it is assembled layer by layer
from our ``Sequential``; for the conv tier it is the plain-torch reference in
``tests/torch_reference.py`` that the parity tests use. Weights always go from ours to torch
(:func:`export_weights`, then :func:`build_torch` loads them), so both start identical.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Workload:
    name: str
    label: str            # what the table says the model is
    input_shape: tuple    # (C, H, W) of one image
    tier: str             # "scalar", "vectorized" or "convolutional"
    steps: int            # timed steps per measurement (default run)
    quick_steps: int      # timed steps per measurement with --quick
    has_torch: bool = True
    arch: str = ""        # the architecture to build (default: the workload's name)
    variant: str = "auto" # build_model's variant

    @property
    def flat(self) -> bool:
        """MLPs take (N, C*H*W); conv models take (N, C, H, W)."""
        return self.tier in ("scalar", "vectorized")


MLP_HIDDEN = (256, 128, 64)
MLP_DROPOUT = 0.2  # vectorized/main.py's default

MODELS = {w.name: w for w in (
    Workload("mlp", "MLP 784-256-128-64-10, ReLU, dropout 0.2 (the launcher's default)", (1, 28, 28),
             "vectorized", 60, 10),
    Workload("scalar", "scalar MLP 784-256-128-64-10 (Python floats, per-sample loops)", (1, 28, 28), "scalar", 3, 1,
             has_torch=False),
    Workload("lenet", "LeNet-5", (1, 28, 28), "convolutional", 40, 6),
    Workload("baseline", "BaselineCNN", (1, 28, 28), "convolutional", 30, 5),
    Workload("baseline_gap", "BaselineCNN --variant gap (94k, global-average-pool head)", (1, 28, 28),
             "convolutional", 30, 5, arch="baseline", variant="gap"),
    Workload("alexnet", "AlexNet (small-input variant)", (3, 32, 32), "convolutional", 8, 3),
    Workload("resnet18", "ResNet18 (CIFAR stem)", (3, 32, 32), "convolutional", 6, 2),
    Workload("vgg16", "VGG16-BN (small-input variant)", (3, 32, 32), "convolutional", 6, 2),
    Workload("efficientnet_lite0", "EfficientNet-Lite0 (small-input variant)", (3, 32, 32), "convolutional", 8, 3),
    Workload("convnext_tiny", "ConvNeXt-Tiny (small-input variant)", (3, 32, 32), "convolutional", 6, 2),
)}
NUM_CLASSES = 10


def batch(workload: Workload, batch_size: int, seed: int = 0):
    """The same host batch in every process: standard-normal images and uniform labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, *workload.input_shape), dtype=np.float32)
    if workload.flat:
        x = x.reshape(batch_size, -1)
    y = rng.integers(0, NUM_CLASSES, size=batch_size).astype(np.int64)
    return x, y


# ---------------------------------------------------------------------------- ours
def build_ours(workload: Workload):
    """Our model for ``workload`` on the active backend (seeded host initialisation)."""
    from common.seed import seed_everything

    seed_everything(0)
    if workload.tier == "vectorized":
        from vectorized.mlp import build_mlp

        return build_mlp(math.prod(workload.input_shape), NUM_CLASSES, hidden_sizes=MLP_HIDDEN,
                         activations=("relu",), dropout=(MLP_DROPOUT,))
    if workload.tier == "scalar":
        from scalar.network import Network

        return Network(math.prod(workload.input_shape), NUM_CLASSES, hidden_sizes=MLP_HIDDEN,
                       activations="relu", dropouts=MLP_DROPOUT, seed=0)
    from convolutional.architectures import build_model

    return build_model(workload.arch or workload.name, input_shape=workload.input_shape, num_classes=NUM_CLASSES,
                       variant=workload.variant)


def export_weights(model, path: Path) -> None:
    """Our state dict (PyTorch names and layouts) as an .npz file the torch worker reads."""
    np.savez(path, **model.state_dict())


# ---------------------------------------------------------------------------- torch
def _torch_reference_module():
    """tests/torch_reference.py, imported by path (tests/ is not a package)."""
    path = ROOT / "tests" / "torch_reference.py"
    spec = importlib.util.spec_from_file_location("nnott_torch_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def describe_layers(model) -> list:
    """Our MLP's layers as JSON-ready ``[type, *arguments]`` lists, for :func:`torch_mlp`."""
    layers = []
    for layer in model:
        kind = type(layer).__name__
        if kind == "Linear":
            layers.append([kind, layer.in_features, layer.out_features, layer.bias is not None])
        elif kind == "BatchNorm1d":
            layers.append([kind, layer.num_features, layer.eps, layer.momentum])
        elif kind == "Dropout":
            layers.append([kind, layer.p])
        else:
            layers.append([kind])
    return layers


def torch_mlp(layers: list):
    """torch.nn.Sequential with the same layers, in the same order, as :func:`describe_layers` listed."""
    from torch import nn

    make = {"Linear": lambda i, o, b: nn.Linear(i, o, bias=b), "BatchNorm1d": nn.BatchNorm1d,
            "Dropout": nn.Dropout, "ReLU": nn.ReLU, "LeakyReLU": nn.LeakyReLU, "ELU": nn.ELU, "Tanh": nn.Tanh,
            "Sigmoid": nn.Sigmoid, "GELU": nn.GELU, "SiLU": nn.SiLU, "Identity": nn.Identity}
    modules = []
    for kind, *arguments in layers:
        if kind not in make:
            raise ValueError(f"no PyTorch twin for the MLP layer {kind}")
        modules.append(make[kind](*arguments))
    return nn.Sequential(*modules)


def build_torch(workload: Workload, state: dict, variant: str = "small", layers: list | None = None):
    """The PyTorch twin of ``workload`` with our weights loaded (strict: every tensor must fit).

    ``variant`` is the one our ``build_model`` picked ('small' for every input size measured here);
    ``layers`` is :func:`describe_layers` of our MLP.
    """
    import torch

    if workload.tier == "vectorized":
        model = torch_mlp(layers)
    else:
        ref = _torch_reference_module()
        model = ref.build_torch_model(workload.arch or workload.name, input_shape=workload.input_shape,
                                      num_classes=NUM_CLASSES, variant=variant)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    own = model.state_dict()
    for k, v in list(tensors.items()):  # our int buffers (e.g. num_batches_tracked) keep torch's dtype
        if k in own and own[k].dtype != v.dtype:
            tensors[k] = v.to(own[k].dtype)
    model.load_state_dict(tensors, strict=True)
    return model


def torch_forward_flops(model, example) -> int | None:
    """torch's own FLOP counter on one image (a cross-check of ``Module.forward_flops``)."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)
