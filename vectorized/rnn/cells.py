"""The three recurrent cells, one step each, with PyTorch's gate equations and gate order.

Shapes: gx, gh: (N, G*H) pre-activations from the input and from h_{t-1} (see
:mod:`vectorized.rnn.base`); h, c: (N, H). sigma is the logistic sigmoid, * is elementwise.
"""
from __future__ import annotations

from common.backend import xp
from vectorized.activations import sigmoid
from vectorized.rnn.base import RecurrentBase


class RNN(RecurrentBase):
    """Elman RNN:  h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh).

    Backward: a = dh * (1 - h^2) is the gradient of both pre-activations, so dgx = dgh = a.
    """

    cell_name = "RNN"

    def cell(self, gx, gh, state):
        h = xp.tanh(gx + gh)
        return (h,), h

    def cell_backward(self, d_state, h):
        a = d_state[0] * (1 - h * h)
        return a, a, (None,)


class LSTM(RecurrentBase):
    """Long short-term memory. Gates in PyTorch's order i, f, g, o (input, forget, cell, output):

        [i, f, g, o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh     (each (N, H))
        i, f, o = sigma(i), sigma(f), sigma(o);   g = tanh(g)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    The cell state c is updated by a sum, not a squashing product: while f is near 1 the
    gradient dL/dc flows back through many steps almost unchanged (no vanishing).
    """

    gates = 4
    state_parts = 2
    cell_name = "LSTM"

    def cell(self, gx, gh, state):
        h_prev, c_prev = state
        a = gx + gh
        H = self.hidden_size
        i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 3 * H:])
        g = xp.tanh(a[:, 2 * H:3 * H])
        c = f * c_prev + i * g
        tc = xp.tanh(c)
        return (o * tc, c), (i, f, g, o, c_prev, tc)

    def cell_backward(self, d_state, cache):
        dh, dc = d_state
        i, f, g, o, c_prev, tc = cache
        dc = dc + dh * o * (1 - tc * tc)     # h = o * tanh(c)
        da = xp.concatenate([dc * g * i * (1 - i),       # d/d(pre-activation of i)
                             dc * c_prev * f * (1 - f),  # f
                             dc * i * (1 - g * g),       # g
                             dh * tc * o * (1 - o)],     # o
                            axis=1)
        return da, da, (None, dc * f)


class GRU(RecurrentBase):
    """Gated recurrent unit. Gates in PyTorch's order r, z, n (reset, update, new):

        r = sigma(x W_ir^T + b_ir + h_{t-1} W_hr^T + b_hr)
        z = sigma(x W_iz^T + b_iz + h_{t-1} W_hz^T + b_hz)
        n = tanh(x W_in^T + b_in + r * (h_{t-1} W_hn^T + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    Unlike the RNN and LSTM, the n gate's two parts differ: r multiplies only the h part, so
    dgh_n = dn_pre * r while dgx_n = dn_pre.
    """

    gates = 3
    cell_name = "GRU"

    def cell(self, gx, gh, state):
        (h_prev,) = state
        H = self.hidden_size
        r = sigmoid(gx[:, :H] + gh[:, :H])
        z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        hn = gh[:, 2 * H:]
        n = xp.tanh(gx[:, 2 * H:] + r * hn)
        h = (1 - z) * n + z * h_prev
        return (h,), (r, z, n, hn, h_prev)

    def cell_backward(self, d_state, cache):
        (dh,) = d_state
        r, z, n, hn, h_prev = cache
        dn_pre = dh * (1 - z) * (1 - n * n)
        dr_pre = dn_pre * hn * r * (1 - r)
        dz_pre = dh * (h_prev - n) * z * (1 - z)
        dgx = xp.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
        dgh = xp.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
        return dgx, dgh, (dh * z,)
