"""A recurrent cell in loops: the picture of backpropagation through time, one number at a time.

One sequence x_1 .. x_T (each a list of I floats) and a hidden state h (a list of H floats):

    forward, for t = 1 .. T:
        h_t[j] = tanh( sum_i W_ih[j][i] x_t[i] + b_ih[j] + sum_k W_hh[j][k] h_{t-1}[k] + b_hh[j] )

    backward, for t = T .. 1 (the loop above, unrolled and run in reverse):
        dh      = dL/dh_t from the output at t  +  what step t+1 sent back
        a[j]    = dh[j] * (1 - h_t[j]^2)                 tanh'(z) = 1 - tanh(z)^2
        dW_ih[j][i] += a[j] x_t[i],   dW_hh[j][k] += a[j] h_{t-1}[k],   db[j] += a[j]
        dx_t[i]  = sum_j a[j] W_ih[j][i]
        sent back to step t-1:  dh_{t-1}[k] = sum_j a[j] W_hh[j][k]

Each step multiplies the gradient by W_hh^T and by tanh' <= 1; over many steps that product
shrinks (or grows) geometrically: the vanishing (exploding) gradient. The names are PyTorch's;
the vectorized tier's ``vectorized.rnn.RNN`` computes the same numbers a matrix at a time.
"""
from __future__ import annotations

import math


class RNNCell:
    """weight_ih: H lists of I floats; weight_hh: H lists of H floats; bias_ih, bias_hh: H floats."""

    def __init__(self, weight_ih, weight_hh, bias_ih, bias_hh):
        self.weight_ih = [[float(v) for v in row] for row in weight_ih]
        self.weight_hh = [[float(v) for v in row] for row in weight_hh]
        self.bias_ih = [float(v) for v in bias_ih]
        self.bias_hh = [float(v) for v in bias_hh]
        self.hidden_size, self.input_size = len(self.weight_ih), len(self.weight_ih[0])
        self.zero_grad()

    def zero_grad(self) -> None:
        H, I = self.hidden_size, self.input_size
        self.grad_weight_ih = [[0.0] * I for _ in range(H)]
        self.grad_weight_hh = [[0.0] * H for _ in range(H)]
        self.grad_bias_ih = [0.0] * H
        self.grad_bias_hh = [0.0] * H

    def step(self, x: list[float], h_prev: list[float]) -> list[float]:
        """One time step: h_t from x_t and h_{t-1}."""
        h = []
        for j in range(self.hidden_size):
            z = self.bias_ih[j] + self.bias_hh[j]
            for i in range(self.input_size):
                z += self.weight_ih[j][i] * x[i]
            for k in range(self.hidden_size):
                z += self.weight_hh[j][k] * h_prev[k]
            h.append(math.tanh(z))
        return h

    def forward(self, xs: list[list[float]], h0: list[float] | None = None) -> list[list[float]]:
        """Run the whole sequence; returns [h_1, ..., h_T] and keeps them for backward."""
        h = list(h0) if h0 is not None else [0.0] * self.hidden_size
        self.xs, self.hs = xs, [h]
        for x in xs:
            h = self.step(x, h)
            self.hs.append(h)
        return self.hs[1:]

    def backward(self, grad_hs: list[list[float]]) -> tuple[list[list[float]], list[float]]:
        """grad_hs[t] = dL/dh_{t+1} from the outputs. Returns (dL/dx_t for every t, dL/dh_0)."""
        H, I = self.hidden_size, self.input_size
        from_later = [0.0] * H                      # what step t+1 sends back to h_t
        grad_xs = [None] * len(self.xs)
        for t in reversed(range(len(self.xs))):
            h, h_prev, x = self.hs[t + 1], self.hs[t], self.xs[t]
            a = [(grad_hs[t][j] + from_later[j]) * (1.0 - h[j] * h[j]) for j in range(H)]
            for j in range(H):
                self.grad_bias_ih[j] += a[j]
                self.grad_bias_hh[j] += a[j]
                for i in range(I):
                    self.grad_weight_ih[j][i] += a[j] * x[i]
                for k in range(H):
                    self.grad_weight_hh[j][k] += a[j] * h_prev[k]
            grad_xs[t] = [sum(a[j] * self.weight_ih[j][i] for j in range(H)) for i in range(I)]
            from_later = [sum(a[j] * self.weight_hh[j][k] for j in range(H)) for k in range(H)]
        return grad_xs, from_later

    def gradients(self) -> dict:
        """PyTorch names -> gradients, as nested lists."""
        return {"weight_ih_l0": self.grad_weight_ih, "weight_hh_l0": self.grad_weight_hh,
                "bias_ih_l0": self.grad_bias_ih, "bias_hh_l0": self.grad_bias_hh}
