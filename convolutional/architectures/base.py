"""What every architecture shares: a named chain of children, its metadata, and size arithmetic."""
from __future__ import annotations

from common.dispatch import accelerated
from vectorized.module import Module


@accelerated("forward")
class Network(Module):
    """A model whose children run in the order they were assigned: a Sequential with names.

    Names are chosen so that ``state_dict()`` keys equal the PyTorch reference's
    (``conv1.weight``, ``layer1.0.bn1.running_mean``, ``features.0.weight``).
    ``build_model`` records ``arch_name``, ``variant``, ``variant_label`` and ``input_shape``.

    x: (N, C, H, W) -> logits (N, num_classes); the first child turns x channels-last.
    """

    arch_name = "network"
    variant = "canonical"
    variant_label = ""

    def __init__(self, input_shape, num_classes: int):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)

    def forward(self, x):
        for child in self.children():
            x = child(x)
        return x

    def backward(self, grad_out):
        for child in reversed(list(self.children())):
            grad_out = child.backward(grad_out)
        return grad_out

    def extra_repr(self):
        c, h, w = self.input_shape
        return f"{self.arch_name}, variant={self.variant!r}, input=({c}, {h}, {w}), classes={self.num_classes}"


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling window along one axis (floor division)."""
    return (size + 2 * padding - kernel) // stride + 1
