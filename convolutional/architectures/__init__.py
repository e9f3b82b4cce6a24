"""The seven architectures, by name, and ``build_model`` to make one for any input shape.

    from convolutional.architectures import build_model
    model = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10)   # CIFAR stem
    model.variant, model.variant_label    # 'small', 'ResNet18, CIFAR stem (3x3 stride 1, no max-pool)'

Each architecture has a **canonical** variant (the published network; parameter counts equal
the reference implementation's) and, where the canonical one needs large images, a **small**
variant for 28x28 / 32x32 inputs. ``variant='auto'`` (the default) picks by input size; every
variant has a documented minimum input size, and ``build_model`` refuses smaller inputs with a
one-line :class:`~common.errors.UserError`.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from common.errors import UserError
from convolutional.architectures import alexnet, baseline, convnext, efficientnet, lenet, resnet, vgg
from convolutional.architectures.base import Network


@dataclass(frozen=True)
class ArchitectureSpec:
    """What the registry knows about one architecture."""

    name: str                       # registry key, e.g. 'resnet18'
    title: str                      # display name, e.g. 'ResNet18'
    module: ModuleType              # the file that builds it
    canonical_input: tuple          # (C, H, W) of the reference configuration
    canonical_classes: int          # classes of the reference configuration
    canonical_params: int           # its exact parameter count (asserted in the tests)
    small_input: tuple              # a typical small input, e.g. (3, 32, 32)
    small_params: int               # parameters at small_input and 10 classes (asserted in the tests)
    page: str                       # tutorial page, relative to tutorial/architectures/

    @property
    def variants(self) -> dict:
        """variant name -> label."""
        return dict(self.module.VARIANTS)

    @property
    def build(self) -> Callable[..., Network]:
        return self.module.build


ARCHITECTURES: dict[str, ArchitectureSpec] = {
    spec.name: spec for spec in (
        ArchitectureSpec("lenet", "LeNet-5", lenet, (1, 32, 32), 10, 61_706,
                         (1, 28, 28), 61_706, "lenet.md"),
        ArchitectureSpec("baseline", "BaselineCNN", baseline, (1, 28, 28), 10, 1_701_578,
                         (1, 28, 28), 1_701_578, "baseline.md"),
        ArchitectureSpec("alexnet", "AlexNet", alexnet, (3, 224, 224), 1000, 61_100_840,
                         (3, 32, 32), 28_711_754, "alexnet.md"),
        ArchitectureSpec("vgg16", "VGG16", vgg, (3, 224, 224), 1000, 138_357_544,
                         (3, 32, 32), 14_728_266, "vgg16.md"),
        ArchitectureSpec("resnet18", "ResNet18", resnet, (3, 224, 224), 1000, 11_689_512,
                         (3, 32, 32), 11_173_962, "resnet18.md"),
        ArchitectureSpec("efficientnet_lite0", "EfficientNet-Lite0", efficientnet, (3, 224, 224), 1000, 4_652_008,
                         (3, 32, 32), 3_383_818, "efficientnet_lite0.md"),
        ArchitectureSpec("convnext_tiny", "ConvNeXt-Tiny", convnext, (3, 224, 224), 1000, 28_589_128,
                         (3, 32, 32), 27_827_818, "convnext_tiny.md"),
    )
}

VARIANT_CHOICES = ("auto", "canonical", "small", "gap")   # gap: BaselineCNN only


def architecture_names() -> list[str]:
    """The registry keys, in gallery order (from LeNet-5 to ConvNeXt)."""
    return list(ARCHITECTURES)


def get_spec(name: str) -> ArchitectureSpec:
    """The spec of ``name``; an unknown name is a UserError listing the valid ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UserError(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}") from None


def resolve_variant(name: str, input_shape, variant: str = "auto") -> str:
    """'auto' -> the variant that fits ``input_shape``; any other name is checked and returned.

    An architecture with a single variant returns it for any request; an architecture's
    ``ALIASES`` map a shared name onto its own (BaselineCNN: 'small' -> 'canonical').
    """
    spec = get_spec(name)
    if variant not in VARIANT_CHOICES:
        raise UserError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANT_CHOICES)}")
    variant = getattr(spec.module, "ALIASES", {}).get(variant, variant)
    if len(spec.variants) == 1:
        return next(iter(spec.variants))
    if variant == "auto":
        _, h, w = _check_shape(input_shape)
        return spec.module.auto_variant(h, w)
    return variant


def min_input_size(name: str, variant: str = "canonical") -> int:
    """The smallest height (and width) ``name``'s ``variant`` accepts."""
    spec = get_spec(name)
    if len(spec.variants) == 1:
        variant = next(iter(spec.variants))
    variant = getattr(spec.module, "ALIASES", {}).get(variant, variant)
    if variant not in spec.module.MIN_SIZE:
        raise UserError(f"{name} has no variant {variant!r}; choose one of: {', '.join(spec.variants)}")
    return spec.module.MIN_SIZE[variant]


def build_model(name: str, input_shape=(1, 28, 28), num_classes: int = 10, *, variant: str = "auto",
                **options) -> Network:
    """Build architecture ``name`` for inputs ``(C, H, W)`` and ``num_classes`` outputs.

    ``variant``: 'auto' (small inputs -> the small-input variant), 'canonical', 'small', or
    'gap' (BaselineCNN's global-average-pool variant).
    ``options`` go to the architecture (e.g. ``se=True`` for EfficientNet, ``dropout=0.3``).
    The model records ``arch_name``, ``variant`` and ``variant_label``.
    """
    spec = get_spec(name)
    c, h, w = _check_shape(input_shape)
    if int(num_classes) < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    chosen = resolve_variant(name, (c, h, w), variant)
    smallest = min_input_size(name, chosen)
    if min(h, w) < smallest:
        hint = f"use --image-size {smallest}"
        other = [v for v in spec.variants if v != chosen and spec.module.MIN_SIZE[v] <= min(h, w)]
        if other:
            hint += f" or the '{other[0]}' variant (at least {spec.module.MIN_SIZE[other[0]]}x" \
                    f"{spec.module.MIN_SIZE[other[0]]})"
        raise UserError(f"{name} ({chosen}) needs inputs of at least {smallest}x{smallest}; "
                        f"got {h}x{w}; {hint}")
    try:
        model = spec.build((c, h, w), int(num_classes), chosen, **options)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        raise UserError(f"{name}: {exc}") from None  # an option the architecture does not take
    model.arch_name = name
    model.variant = chosen
    label = getattr(spec.module, "label", None)
    model.variant_label = label(model) if label else spec.variants[chosen]
    return model


def _check_shape(input_shape) -> tuple[int, int, int]:
    try:
        c, h, w = (int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise UserError(f"input_shape must be (channels, height, width), got {input_shape!r}") from None
    if min(c, h, w) < 1:
        raise UserError(f"input_shape must be positive, got {input_shape!r}")
    return c, h, w


__all__ = ["ARCHITECTURES", "ArchitectureSpec", "Network", "VARIANT_CHOICES", "architecture_names",
           "build_model", "get_spec", "min_input_size", "resolve_variant"]
