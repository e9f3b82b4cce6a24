"""Finite-difference gradient checks (float64): is a backward pass the derivative of its forward?

The central difference  (f(x + eps) - f(x - eps)) / (2 eps)  has error O(eps^2); in float64
with eps = 1e-6 an analytic gradient that is right agrees to about 1e-9 relative, and one
that is wrong is off by 1e-2 or more. Points within eps of a kink (ReLU at 0) differ
legitimately; keep inputs away from kinks.

To check a module we need a scalar: L = sum(module(x) * G) with a fixed random G, so that
dL/dy = G is the upstream gradient that ``backward`` receives.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.backend import CHECK_DTYPE, to_device, to_float, xp


def relative_error(a, b) -> float:
    """||a - b|| / (||a|| + ||b||), 0 when both are 0 (norms over all elements)."""
    a = xp.asarray(a, dtype=CHECK_DTYPE)
    b = xp.asarray(b, dtype=CHECK_DTYPE)
    num = to_float(xp.sqrt(((a - b) ** 2).sum()))
    den = to_float(xp.sqrt((a * a).sum())) + to_float(xp.sqrt((b * b).sum()))
    return 0.0 if den == 0.0 else num / den


def numerical_gradient(f, x, eps: float = 1e-6):
    """dF/dx by central differences; ``f(x)`` returns a scalar, ``x`` is perturbed in place
    (and restored). Costs 2 * x.size calls of f."""
    grad = xp.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        old = float(x[idx])
        x[idx] = old + eps
        f_plus = float(f(x))
        x[idx] = old - eps
        f_minus = float(f(x))
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


@dataclass
class GradCheckReport:
    """Relative error and largest absolute difference per checked tensor ('input', 'weight'...)."""

    errors: dict = field(default_factory=dict)      # name -> relative error
    abs_diffs: dict = field(default_factory=dict)   # name -> max |analytic - numeric|
    rtol: float = 1e-6
    atol: float = 1e-9

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def failures(self) -> list:
        return [n for n in self.errors if self.errors[n] > self.rtol and self.abs_diffs[n] > self.atol]

    @property
    def ok(self) -> bool:
        return not self.failures()

    def __str__(self):
        rows = [f"{'tensor':<24} {'rel. error':>12} {'max abs diff':>14}"]
        for n in self.errors:
            flag = "" if n not in self.failures() else "  <-- FAIL"
            rows.append(f"{n:<24} {self.errors[n]:>12.2e} {self.abs_diffs[n]:>14.2e}{flag}")
        return "\n".join(rows)


def _add(report, name, analytic, numeric):
    report.errors[name] = relative_error(analytic, numeric)
    report.abs_diffs[name] = to_float(xp.abs(xp.asarray(analytic) - xp.asarray(numeric)).max()) \
        if analytic.size else 0.0


def check_module_gradients(module, x, seed: int = 0, eps: float = 1e-6, atol: float = 1e-9,
                           rtol: float = 1e-6) -> GradCheckReport:
    """Compare ``module.backward`` with finite differences for dL/dx and every parameter.

    The module runs in float64 for the check (and is cast back afterwards). ``xp.random`` is
    reseeded with ``seed`` before every forward, so a Dropout mask is the same in every call.
    ``x`` may be a host or device array of any float dtype.
    """
    params = list(module.named_parameters())
    old_dtype = params[0][1].data.dtype if params else None
    module.astype(CHECK_DTYPE)
    try:
        x = xp.asarray(x, dtype=CHECK_DTYPE) if not isinstance(x, np.ndarray) else to_device(x, CHECK_DTYPE)
        x = x.copy()

        def forward(inp):
            xp.random.seed(seed)
            return module(inp)

        out = forward(x)
        upstream = to_device(np.random.default_rng(seed).standard_normal(out.shape), CHECK_DTYPE)

        def loss(_):
            return to_float((forward(x) * upstream).sum())

        module.zero_grad()
        forward(x)
        dx = module.backward(upstream)
        report = GradCheckReport(rtol=rtol, atol=atol)
        _add(report, "input", dx, numerical_gradient(loss, x, eps))
        for name, p in params:
            _add(report, name, p.grad, numerical_gradient(loss, p.data, eps))
        return report
    finally:
        if old_dtype is not None:
            module.astype(old_dtype)


def check_loss_gradients(loss, logits, targets, eps: float = 1e-6, atol: float = 1e-9,
                         rtol: float = 1e-6) -> GradCheckReport:
    """Compare ``loss.backward()`` with finite differences of ``loss(logits, targets)``, in float64."""
    z = xp.asarray(logits, dtype=CHECK_DTYPE) if not isinstance(logits, np.ndarray) \
        else to_device(logits, CHECK_DTYPE)
    z = z.copy()
    t = targets if not isinstance(targets, np.ndarray) else to_device(targets)
    if xp.issubdtype(t.dtype, xp.floating):
        t = t.astype(CHECK_DTYPE)
    loss(z, t)
    analytic = loss.backward()
    report = GradCheckReport(rtol=rtol, atol=atol)
    _add(report, "logits", analytic, numerical_gradient(lambda zz: to_float(loss(zz, t)), z, eps))
    return report
