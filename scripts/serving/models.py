"""A trained checkpoint of any tier, ready to answer: probabilities and first-layer feature maps.

:func:`load_served_model` reads a checkpoint written by a launcher (``runs/<run>/best.h5`` or
``last.h5``), rebuilds the network from the config stored in it, checks that the tensors fit
and loads them, exactly as ``--load`` does in each launcher:

| tier | config keys it reads | network |
|---|---|---|
| scalar | hidden_sizes, activations, dropouts, image_shape | ``scalar.io.network_from_checkpoint`` |
| vectorized | args (the launcher's MLP flags) | ``vectorized.main.model_builder`` |
| convolutional | architecture, variant, args.se | ``convolutional.architectures.build_model`` |

The run's ``Normalizer`` (mean, std of its training split) comes from the checkpoint too, so
``pixels -> normalise -> network`` is the path a training batch took.
"""
from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.backend import to_device, to_numpy
from common.checkpoint import check_compatible, load_checkpoint
from common.data import Normalizer
from common.errors import CheckpointError, UserError

TIERS = ("scalar", "vectorized", "convolutional")


@dataclass
class ServedModel:
    """One loaded network and what it was trained on.

    ``input_shape`` is ``(C, H, W)``; ``forward`` maps normalised ``(N, C, H, W)`` float32 host
    arrays to logits ``(N, K)``; ``network`` is the tier's own model object.
    """

    path: Path
    tier: str
    architecture: str
    input_shape: tuple
    class_names: list
    dataset: str
    seed: int
    normalizer: Normalizer
    network: object
    forward: object = field(repr=False)
    epoch: int = 0
    label: str = ""

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``(N, C, H, W)`` (or one ``(C, H, W)`` image) -> softmax ``(N, K)`` float64."""
        x = np.asarray(pixels)
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise UserError(f"{self.label} takes {'x'.join(map(str, self.input_shape))} images, "
                            f"got {'x'.join(map(str, x.shape[1:]))}")
        logits = np.asarray(self.forward(self.normalizer(x)), dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)          # softmax, stable: exp of values <= 0
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def top_k(self, probs: np.ndarray, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most likely ``(class name, probability)`` of one row, most likely first."""
        order = np.argsort(-probs, kind="stable")[:k]
        return [(str(self.class_names[i]), float(probs[i])) for i in order]

    def feature_maps(self, pixels: np.ndarray) -> np.ndarray | None:
        """The first convolution's output for one image: ``(channels, h, w)`` float32, or None
        for a model without convolutions (scalar and vectorized MLPs)."""
        if self.tier != "convolutional":
            return None
        from convolutional.conv import Conv2D

        conv = next((m for m in self.network.modules() if isinstance(m, Conv2D)), None)
        if conv is None:
            return None
        seen = []
        plain = conv.forward

        def recording(x):                                    # (N, H, W, C) channels-last inside
            out = plain(x)
            seen.append(to_numpy(out))
            return out

        conv.forward = recording
        try:
            self.probabilities(pixels)
        finally:
            del conv.forward                                 # back to the class's method
        return np.ascontiguousarray(seen[0][0].transpose(2, 0, 1)) if seen else None


def load_served_model(path) -> ServedModel:
    """Rebuild and load the network of checkpoint ``path`` for inference (eval mode).

    A missing, damaged or unusable checkpoint is one :class:`CheckpointError` line.
    """
    ckpt = load_checkpoint(path)
    c = ckpt.config
    tier = c.get("tier")
    if tier not in TIERS:
        raise CheckpointError(f"{ckpt.path} has no known tier in its config ({tier!r}); serve a checkpoint "
                              "written by scalar/main.py, vectorized/main.py or convolutional/main.py")
    stats = c.get("normalization") or c.get("normalizer")
    shape = c.get("image_shape") if tier == "scalar" else c.get("input_shape")
    if not stats or not shape or len(shape) != 3:
        missing = "normalization statistics" if not stats else "(C, H, W) input shape"
        raise CheckpointError(f"{ckpt.path} stores no {missing}; it cannot be served "
                              "(retrain it with this version of NNOTT)")
    try:
        build = {"scalar": _scalar, "vectorized": _vectorized, "convolutional": _convolutional}[tier]
        network, forward, arch = build(ckpt)
    except CheckpointError:
        raise
    except (UserError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{ckpt.path} does not describe a {tier} model this NNOTT can build: "
                              f"{' '.join(str(exc).split())}") from None
    args = c.get("args") or {}
    classes = c.get("class_names") or [str(i) for i in range(int(c["num_classes"]))]
    return ServedModel(path=Path(path), tier=tier, architecture=arch, input_shape=tuple(int(s) for s in shape),
                       class_names=[str(n) for n in classes], dataset=str(c.get("dataset", "")),
                       seed=int(args.get("seed", c.get("seed", 0)) or 0),
                       normalizer=Normalizer(stats["mean"], stats["std"]), network=network, forward=forward,
                       epoch=int(ckpt.epoch), label=_label(Path(path), tier, arch))


def _label(path: Path, tier: str, arch: str) -> str:
    return f"{tier} {arch} · {path.parent.name}/{path.name}"


def _scalar(ckpt):
    from scalar.io import network_from_checkpoint

    net = network_from_checkpoint(ckpt).eval()

    def forward(x):                                          # lists of floats, one image at a time
        return [net.forward(row) for row in x.reshape(len(x), -1).astype(np.float64).tolist()]

    return net, forward, ckpt.config.get("architecture", "mlp")


def _vectorized(ckpt):
    from vectorized.main import model_builder

    c = ckpt.config
    model = model_builder(Namespace(**c["args"]))(tuple(c["input_shape"]), int(c["num_classes"]))
    model, forward = _loaded(ckpt, model, flatten=True)
    return model, forward, c.get("architecture", model.arch_name)


def _convolutional(ckpt):
    from convolutional.architectures import build_model

    c = ckpt.config
    options = {"se": True} if (c.get("args") or {}).get("se") else {}
    model = build_model(c["architecture"], tuple(c["input_shape"]), int(c["num_classes"]),
                        variant=c.get("variant") or "auto", **options)
    model, forward = _loaded(ckpt, model, flatten=False)
    return model, forward, c["architecture"]


def _loaded(ckpt, model, flatten: bool):
    """(model, forward) after the shape check and the weights; forward runs in eval mode."""
    check_compatible(ckpt, model_shapes=model.state_shapes())
    model.load_state_dict(ckpt.model_state)
    model.eval()

    def forward(x):
        x = x.reshape(len(x), -1) if flatten else x
        return to_numpy(model(to_device(np.ascontiguousarray(x, dtype=np.float32))))

    return model, forward


def unique_labels(models: list[ServedModel]) -> None:
    """Make every ``label`` distinct (two runs' ``best.h5`` of the same architecture)."""
    seen: dict[str, int] = {}
    for m in models:
        n = seen[m.label] = seen.get(m.label, 0) + 1
        if n > 1:
            m.label = f"{m.label} #{n}"
