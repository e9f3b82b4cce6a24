"""Tier parity for recurrence: the scalar RNN cell (loops) and vectorized.rnn.RNN agree to 1e-9.

The test sits above both tiers: scalar/ imports nothing from vectorized/.
"""
import numpy as np

from scalar.rnn import RNNCell
from vectorized.rnn import RNN


def test_scalar_cell_matches_vectorized_rnn():
    rng = np.random.default_rng(0)
    vec = RNN(3, 4, batch_first=True).astype(np.float64)
    state = vec.state_dict()
    cell = RNNCell(*(state[k].tolist() for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")))
    xs = rng.standard_normal((1, 6, 3))
    h0 = rng.standard_normal((1, 1, 4))
    g = rng.standard_normal((1, 6, 4))

    hs = cell.forward(xs[0].tolist(), h0[0, 0].tolist())
    dxs, dh0 = cell.backward(g[0].tolist())
    vec.zero_grad()
    out = vec(xs, (h0,))
    dx = vec.backward(g)

    np.testing.assert_allclose(np.array(hs), out[0], atol=1e-9, rtol=0)
    np.testing.assert_allclose(np.array(dxs), dx[0], atol=1e-9, rtol=0)
    np.testing.assert_allclose(np.array(dh0), vec.grad_hx[0][0, 0], atol=1e-9, rtol=0)
    for name, grad in cell.gradients().items():
        np.testing.assert_allclose(np.array(grad), dict(vec.named_parameters())[name].grad, atol=1e-9, rtol=0)
