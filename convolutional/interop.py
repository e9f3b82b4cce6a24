"""Move weights between NNOTT architectures and their PyTorch references.

NNOTT's module tree uses the reference implementation's names (torchvision for ResNet18,
VGG16, AlexNet and EfficientNet; the official code for ConvNeXt) and keeps PyTorch's parameter
layouts (``Conv2D.weight`` is ``(out, in/groups, kh, kw)``, ``Linear.weight`` is
``(out, in)``, a classifier's first Linear reads features in C, H, W order). So a state dict
crosses over *by name*: only the array type changes (torch tensor <-> NumPy array).

    import torch
    from convolutional.architectures import build_model
    from convolutional.interop import load_torch_state_dict, export_torch_state_dict

    model = build_model("resnet18", (3, 224, 224), 1000, variant="canonical")
    load_torch_state_dict(model, torch.load("resnet18.pth"))          # e.g. torchvision's file
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in export_torch_state_dict(model).items()})

Neither function imports torch: a torch tensor is recognised by its ``detach`` method.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from common.errors import UserError

#: PyTorch bookkeeping that carries no weight; taken when the model has it, never required.
OPTIONAL_KEYS = ("num_batches_tracked",)


def to_numpy_array(value) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like -> a NumPy array."""
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        return value.detach().cpu().numpy()
    return np.asarray(value)


def load_torch_state_dict(model, state, strict: bool = True) -> list[str]:
    """Copy a PyTorch ``state_dict`` (tensors or NumPy arrays) into ``model`` in place.

    Every tensor of the model must be present with the right shape (``strict``); keys the model
    lacks are an error too, except ``num_batches_tracked`` when the model does not keep it.
    Floating tensors are cast to the model's dtype. Returns the keys that were skipped.
    Mismatches are reported together, in one :class:`~common.errors.UserError`.
    """
    own = model.state_shapes()
    arrays, skipped = OrderedDict(), []
    for key, value in state.items():
        if key not in own and key.rsplit(".", 1)[-1] in OPTIONAL_KEYS:
            skipped.append(key)
            continue
        arrays[key] = to_numpy_array(value)
    missing = [k for k in own if k not in arrays and k.rsplit(".", 1)[-1] not in OPTIONAL_KEYS]
    unexpected = [k for k in arrays if k not in own]
    wrong = [f"{k}: {tuple(arrays[k].shape)} in the file, {own[k]} in the model"
             for k in arrays if k in own and tuple(arrays[k].shape) != own[k]]
    problems = []
    if strict and missing:
        problems.append(f"{len(missing)} missing ({_first(missing)})")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} with another shape ({_first(wrong)})")
    if problems:
        name = getattr(model, "arch_name", type(model).__name__)
        raise UserError(f"the PyTorch state dict does not fit {name} "
                        f"({getattr(model, 'variant', '?')} variant): " + "; ".join(problems))
    model.load_state_dict({k: v for k, v in arrays.items() if k in own}, strict=False)
    return skipped


def export_torch_state_dict(model) -> "OrderedDict[str, np.ndarray]":
    """The model's tensors under PyTorch's names and in PyTorch's order, as NumPy arrays.

    PyTorch lists each module's parameters, then its buffers, module by module; so does this.
    BatchNorm's ``num_batches_tracked`` is included (int64), so ``torch_model.load_state_dict``
    accepts the result (``torch.from_numpy`` each value) with ``strict=True``.
    """
    state = model.state_dict()
    out = OrderedDict()
    for prefix, module in model.named_modules():
        for name in list(module._parameters) + list(module._buffers):
            if getattr(module, name) is None:
                continue
            key = f"{prefix}.{name}" if prefix else name
            out[key] = np.ascontiguousarray(state[key])
    assert len(out) == len(state), "every tensor of the state dict is exported"
    return out


def _first(items, n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")
