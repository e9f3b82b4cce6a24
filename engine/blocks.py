"""ConvNeXt's block at evaluation time: the layer scale folded into the last Linear layer.

The reference block computes y = x + drop_path(γ · pwconv2(h)) with h = GELU(pwconv1(norm(dwconv(x)))):
after the product, a pass that writes γ·branch into a new array and one that adds x. In
evaluation mode drop_path is the identity, and γ · (h Wᵀ + b) = h (γ[:, None]·W)ᵀ + γ·b, so
pwconv2 can run with W' = γ[:, None]·W and b' = γ·b (:func:`engine.inference.scaled_linear`,
cached and checked exactly against the weights it came from; the parameters are never written)
and x is added into its output in place: one pass fewer.

The check reads the C × 4C weights once per forward, and the pass it saves has N·H·W × C
values: the fold is taken when the rows N·H·W are at least ``tuning.LAYER_SCALE_FOLD_ROWS`` times
pwconv2's 4C inputs. Elsewhere the block scales its branch in place and adds x into it (the
reference's numbers, without the new array).

A backward after such a forward stays exact: the branch γ multiplied was not kept, so it is made
again from pwconv2's input (one product) and the reference backward runs.
"""
from __future__ import annotations

from convolutional.blocks import ConvNeXtBlock
from engine import tuning
from engine.arrays import gemm
from engine.inference import scaled_linear


def convnext_forward(self, x):
    if self.training or self.gamma is None or self.drop_path.training:
        self.ran_eval = False
        return ConvNeXtBlock.forward.reference(self, x)
    h = self.act(self.pwconv1(self.norm(self.dwconv(x))))
    pw = self.pwconv2
    rows = h.size // h.shape[-1]
    self.branch = None
    self.ran_eval = True
    if rows >= tuning.LAYER_SCALE_FOLD_ROWS * pw.in_features:
        pw.inference_scale = scaled_linear(pw, self.gamma)
        try:
            out = pw(h)
        finally:
            pw.inference_scale = None
    else:
        out = pw(h)
        out *= self.gamma.data
    out = self.drop_path(out)  # the identity in evaluation mode
    out += x
    return out


def convnext_backward(self, grad_out):
    if getattr(self, "ran_eval", False):  # make the unscaled branch again for dL/dγ
        pw = self.pwconv2
        branch = gemm(pw.x, pw.weight.data.T, bias=None if pw.bias is None else pw.bias.data)
        self.branch = branch.reshape(*pw.lead_shape, pw.out_features)
        self.ran_eval = False
    return ConvNeXtBlock.backward.reference(self, grad_out)


REPLACEMENTS = [(ConvNeXtBlock, "forward", convnext_forward), (ConvNeXtBlock, "backward", convnext_backward)]
