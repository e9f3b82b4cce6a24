"""Fast activations: ReLU, ReLU6 and LeakyReLU on blocks shared out to every core, GELU in
cache-sized blocks.

The math is the reference's (:mod:`vectorized.activations`); only the way through memory differs.
ReLU's forward is clip(x, 0, ∞) (:func:`engine.arrays.relu_into`), not max(x, 0): the same numbers, and
NumPy 2.4 runs ``maximum`` against a scalar through a loop three times slower than ``clip``'s
(98 vs 31 us on 2**18 float32 values on the AMD machine, in place or not). For the same reason
GELU takes e^y as 2^(y·log2 e) (``exp2``: 58 us against ``exp``'s 118) and 1/t as
``divide(1, t)`` (28 us against ``reciprocal``'s 54).
"""
from __future__ import annotations

import math

from common.backend import xp
from engine import tuning
from engine.arrays import relu_into
from engine.inference import absorbed_activation, overwrites_input
from engine.parallel import blocks_of, elementwise, run_blocks, scratch
from vectorized.activations import _ERFC_COEFFS, GELU, LeakyReLU, ReLU, ReLU6


_LOG2E = 1 / math.log(2)  # e^y = 2^(y·log2 e)


def _output(self, x):
    """A new array, or ``x`` itself where an inference pass lets the layer overwrite its input
    (engine.inference); backward reads the output then, whose signs and bounds are x's."""
    whole = x.flags.c_contiguous or x.flags.f_contiguous
    out = x if overwrites_input(self) and whole else xp.empty(x.shape, dtype=x.dtype)
    self.x = x
    return out


def relu_forward(self, x):
    if absorbed_activation(self):  # the convolution before it applied it (engine.inference)
        self.x = x
        return x
    return elementwise(lambda o, a: relu_into(a, o), _output(self, x), x)


def relu_backward(self, grad_out):
    dx = xp.empty(grad_out.shape, dtype=grad_out.dtype)
    return elementwise(lambda o, g, a: xp.multiply(g, a > 0, out=o), dx, grad_out, self.x)


def relu6_forward(self, x):
    if absorbed_activation(self):
        self.x = x
        return x
    return elementwise(lambda o, a: xp.clip(a, 0, 6, out=o), _output(self, x), x)


def relu6_backward(self, grad_out):
    dx = xp.empty(grad_out.shape, dtype=grad_out.dtype)

    def grad(o, g, a):  # g where 0 < x < 6, else 0
        inside = xp.greater(a, 0)
        inside &= a < 6
        xp.multiply(g, inside, out=o)

    return elementwise(grad, dx, grad_out, self.x)


def leaky_relu_forward(self, x):
    """For a slope in (0, 1], max(x, slope·x) is x where x > 0 and slope·x elsewhere: two ufunc
    loops and no mask (the same rounded product as the reference's, so the same numbers)."""
    slope = self.negative_slope
    if not 0 < slope <= 1:
        return LeakyReLU.forward.reference(self, x)
    self.x = x
    scale = xp.asarray(slope, dtype=x.dtype)

    def leaky(o, a):
        xp.multiply(a, scale, out=o)
        xp.maximum(o, a, out=o)

    return elementwise(leaky, xp.empty(x.shape, dtype=x.dtype), x)


def leaky_relu_backward(self, grad_out):
    dx = xp.empty(grad_out.shape, dtype=grad_out.dtype)
    one, slope = xp.asarray(1, dtype=dx.dtype), xp.asarray(self.negative_slope, dtype=dx.dtype)
    return elementwise(lambda o, g, a: xp.multiply(g, xp.where(a > 0, one, slope), out=o), dx, grad_out, self.x)


def gelu_forward(self, x):
    """float32 exact GELU in blocks. In evaluation mode the shorter fit of :func:`_gelu_eval_float32`
    and no slope (made in backward if asked, from the training formula)."""
    if self.approximate == "tanh" or x.dtype != xp.float32:
        return GELU.forward.reference(self, x)
    self.x = x
    if not self.training:
        self.slope = None
        return _gelu_eval_float32(x)
    out, self.slope = _gelu_float32(x, with_slope=True)
    return out


def gelu_backward(self, grad_out):
    if self.approximate == "none" and self.slope is None:  # an evaluation-mode forward pass left it out
        self.slope = _gelu_float32(self.x)[1]
    return GELU.backward.reference(self, grad_out)


def _gelu_float32(x, with_slope: bool = True):
    """GELU(x) = x Phi(x) and its slope Phi(x) + x phi(x) (None unless ``with_slope``), float32,
    one cache-sized block at a time.

    The same erfc fit as :func:`vectorized.activations.normal_cdf`, evaluated in place (Horner's rule with ``*=`` and
    ``+=``) on blocks shared out to every core by :func:`engine.parallel.run_blocks`: on a
    ConvNeXt-sized activation the twenty-odd whole-array passes of the plain formula went to
    memory and back each time. The slope uses the exact normal density phi, which is what the
    fit approximates (and what PyTorch's backward uses).
    """
    flat = x.reshape(-1)
    out = xp.empty_like(flat)
    slope = xp.empty_like(flat) if with_slope else None
    blocks = blocks_of(flat.size, flat.itemsize, tuning.GELU_BLOCK * flat.itemsize)  # one block on a GPU
    size = blocks[0][1]  # the first block is a largest

    def work(r0, r1, buf):
        n = r1 - r0
        z, t, p, e = (scratch(buf, k, (size,), x.dtype)[:n] for k in ("z", "t", "p", "e"))
        xb = flat[r0:r1]
        xp.abs(xb, out=z)
        z *= 1 / math.sqrt(2)
        xp.multiply(z, 0.5, out=t)
        t += 1
        xp.divide(1, t, out=t)                      # t = 1 / (1 + z/2)
        p.fill(_ERFC_COEFFS[-1])
        for c in reversed(_ERFC_COEFFS[:-1]):       # P(t) by Horner's rule
            p *= t
            p += c
        xp.multiply(z, z, out=e)
        xp.subtract(p, e, out=p)
        p *= _LOG2E
        xp.exp2(p, out=p)                           # e^(P(t) - z^2)
        p *= t                                      # p = erfc(|x|/sqrt 2) = 2 P(N >= |x|)
        p *= 0.5                                    # p = P(N >= |x|)
        cdf = out[r0:r1]
        # Phi(x) = 1 - p for x >= 0 and p below 0, i.e. p + (x >= 0) * (1 - 2p): arithmetic, as
        # a masked copy (copyto with where=) measured 6x slower
        xp.multiply(p, -2, out=cdf)
        cdf += 1
        cdf *= xb >= 0
        cdf += p
        if with_slope:
            e *= -_LOG2E
            xp.exp2(e, out=e)                       # e^(-x^2/2), since z^2 = x^2/2
            e *= xb * (1 / math.sqrt(2 * math.pi))  # x phi(x)
            xp.add(cdf, e, out=slope[r0:r1])
        cdf *= xb                                   # x Phi(x)

    run_blocks(blocks, work)
    return out.reshape(x.shape), None if slope is None else slope.reshape(x.shape)


#: Abramowitz & Stegun 7.1.26: erfc(z) ~ (a1 t + ... + a5 t^5) e^(-z^2), t = 1 / (1 + p z), z >= 0
_AS_P = 0.3275911
_AS_COEFFS = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _gelu_eval_float32(x):
    """GELU(x) = x Phi(x) for evaluation mode, float32, one cache-sized block at a time: twenty
    passes over a block instead of the training formula's thirty-odd.

    With Q(a) = P(N >= a) = erfc(a / sqrt 2) / 2, x Phi(x) = max(x, 0) - |x| Q(|x|) for either
    sign of x (for x < 0, Phi(x) = Q(|x|); for x >= 0, Phi(x) = 1 - Q(x)). Q comes from the
    five-term erfc fit of Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7:

        erfc(z) ~ (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) e^(-z^2),  t = 1 / (1 + p z),

    with the 1/2 folded into a1..a5, p / sqrt 2 into the first product, and e^(-z^2) = e^(-a^2/2).
    Against the exact erf GELU in float32 the largest absolute error is about 3.3e-7 (the
    training formula's: 4.5e-7), measured on [-10, 10] against x erfc(-x / sqrt 2) / 2 in
    float64. The relative error is under 1e-6 for x > 0 and near 0 but grows in the negative
    tail, where the fit's absolute error is large next to erfc itself: some 5e-4 at x = -4,
    4e-3 at x = -6 and 2e-2 at x = -10, where |GELU(x)| is below 1.4e-4, 6e-9 and 1e-22 (the
    training formula's fit keeps under 1e-5 there).
    """
    flat = x.reshape(-1)
    out = xp.empty_like(flat)
    blocks = blocks_of(flat.size, flat.itemsize, tuning.GELU_BLOCK * flat.itemsize)  # one block on a GPU
    size = blocks[0][1]  # the first block is a largest
    a1, a2, a3, a4, a5 = (0.5 * c for c in _AS_COEFFS)

    def work(r0, r1, buf):
        n = r1 - r0
        a, t, p, e = (scratch(buf, k, (size,), x.dtype)[:n] for k in ("a", "t", "p", "e"))
        xb = flat[r0:r1]
        xp.abs(xb, out=a)
        xp.multiply(a, _AS_P / math.sqrt(2), out=t)
        t += 1
        xp.divide(1, t, out=t)                      # t = 1 / (1 + p |x| / sqrt 2)
        xp.multiply(t, a5, out=p)
        p += a4
        for c in (a3, a2, a1):                      # Horner's rule
            p *= t
            p += c
        p *= t
        xp.multiply(a, a, out=e)
        e *= -0.5 * _LOG2E
        xp.exp2(e, out=e)                           # e^(-x^2/2)
        p *= e
        p *= a                                      # |x| Q(|x|)
        o = out[r0:r1]
        relu_into(xb, o)
        o -= p

    run_blocks(blocks, work)
    return out.reshape(x.shape)


REPLACEMENTS = [(ReLU, "forward", relu_forward), (ReLU, "backward", relu_backward),
                (ReLU6, "forward", relu6_forward), (ReLU6, "backward", relu6_backward),
                (LeakyReLU, "forward", leaky_relu_forward), (LeakyReLU, "backward", leaky_relu_backward),
                (GELU, "forward", gelu_forward), (GELU, "backward", gelu_backward)]
