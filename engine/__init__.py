"""The engine wing: faster replacements for the reference layers, and every knob in one table.

The layers a student reads (``vectorized/``, ``convolutional/``) hold the reference math. This
package makes them fast without changing a number beyond float rounding:

========================  ============================================================
file                      what it does
========================  ============================================================
``tuning.py``             the one tuning table: every knob, its reason, its machine
``parallel.py``           the parallel block runner: worker threads, blocks, CPU cores
``arrays.py``             products split over the workers, per-channel maps and sums
``plan.py``               a convolution's frozen plan: its path and its blocks
``gather.py``             the column-matrix convolution, a block of images at a time
``banded.py``             the banded convolution (few input channels, stride 1)
``winograd.py``           Winograd's F(2×2, 3×3) and F(4×4, 3×3) tiles (3×3, stride 1)
``depthwise.py``          depthwise convolution as k² fused multiply-adds
``col2im.py``             dX of strided and thin convolutions
``convolution.py``        the fast Conv2D: plan, path, backward
``norm.py``               BatchNorm2D / LayerNorm2D on wide rows, in blocks
``pooling.py``            max-pool in blocks, global average pool as a product
``activations.py``        ReLU, ReLU6, LeakyReLU and GELU in blocks
``blocks.py``             ConvNeXt's block at evaluation: the layer scale folded away
``linear.py``             Linear through the split products
``losses.py``             cross-entropy for the common case in fewer passes
``optim.py``              Adam on flat arrays and slices
``steps.py``              whole-model passes: no dX for the images, ReLU after max-pool, threads
``inference.py``          evaluation passes: BatchNorm2D folded into convolutions, ReLUs in place
========================  ============================================================

Importing ``engine`` registers every replacement with :mod:`common.dispatch`; :func:`use`
switches between ``"fast"`` and ``"reference"``.
"""
from __future__ import annotations

from common import dispatch
from engine import activations, blocks, convolution, linear, losses, norm, optim, pooling, steps

for _module in (activations, blocks, convolution, linear, losses, norm, optim, pooling, steps):
    for _cls, _method, _function in _module.REPLACEMENTS:
        dispatch.register(_cls, _method, _function)
for _name, _hook in steps.HOOKS.items():
    dispatch.register_hook(_name, _hook)

ENGINES = dispatch.ENGINES


def use(name: str) -> None:
    """'fast' (the replacements above) or 'reference' (every layer's own code)."""
    dispatch.use_engine(name)


def current() -> str:
    return dispatch.engine_name()
