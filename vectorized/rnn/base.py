"""What RNN, LSTM and GRU share: the stack of layers, the loop over time, and BPTT.

A recurrent layer reads a sequence x_1 .. x_T and keeps a state s_t (h_t, or (h_t, c_t) for the
LSTM). Each step computes the pre-activations from the input and the previous hidden state,

    gx_t = x_t W_ih^T + b_ih        (G*H values: G gates of H units; all t in one product)
    gh_t = h_{t-1} W_hh^T + b_hh    (one product per step: it needs h_{t-1})

and the cell (:mod:`vectorized.rnn.cells`) turns (gx_t, gh_t, s_{t-1}) into s_t. Layer l > 0
reads the hidden states of layer l-1. Names and shapes are PyTorch's: ``weight_ih_l{l}``
(G*H, in), ``weight_hh_l{l}`` (G*H, H), ``bias_ih_l{l}`` and ``bias_hh_l{l}`` (G*H,).

Backpropagation through time runs the loop backwards: the gradient reaching h_t is what the
output at t receives plus what flows back from step t+1 through W_hh. With ``bptt=k``
(truncated BPTT) the time axis is cut into windows of k steps and the backward flow stops at
each window's start (t = k, 2k, ...): the forward pass still carries the state across, but a
gradient never leaves the window of the output it came from. The first window's gradient
still reaches the initial state.
"""
from __future__ import annotations

import numpy as np

from common.backend import xp
from common.errors import UserError
from common.seed import host_rng
from vectorized.module import Module, parameter


class RecurrentBase(Module):
    """Multi-layer recurrent network over a whole sequence.

    x: (T, N, input_size), or (N, T, input_size) with ``batch_first``.
    Returns the last layer's hidden states: (T, N, H) or (N, T, H).
    After ``forward``, ``self.final_state`` holds the last step's state of every layer:
    a tuple of (num_layers, N, H) arrays, (h_n,) or (h_n, c_n) for the LSTM.

    ``hx``: the initial state, the same tuple layout (a bare array is accepted for h_0);
    zeros when None. With ``stateful=True`` a forward without ``hx`` starts from the previous
    call's final state (as a constant: no gradient flows into an earlier call); ``reset_state()``
    forgets it. After ``backward``, ``self.grad_hx`` holds dL/d(initial state).
    """

    gates = 1            # G: how many blocks of H pre-activations a step computes
    state_parts = 1      # 1: (h,), 2: (h, c)
    cell_name = "RNN"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, bptt: int | None = None, stateful: bool = False):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if int(value) < 1:
                raise UserError(f"{self.cell_name}: {name} must be at least 1, got {value}")
        if bptt is not None and int(bptt) < 1:
            raise UserError(f"{self.cell_name}: the BPTT window must be at least 1 step, got {bptt}")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.bptt = None if bptt is None else int(bptt)
        self.stateful = bool(stateful)
        self.final_state = None
        self.grad_hx = None
        rng = host_rng()
        k = 1.0 / np.sqrt(self.hidden_size)  # PyTorch: every tensor from U(-1/sqrt(H), 1/sqrt(H))
        gh = self.gates * self.hidden_size
        for layer in range(self.num_layers):
            fan_in = self.input_size if layer == 0 else self.hidden_size
            setattr(self, f"weight_ih_l{layer}", parameter(rng.uniform(-k, k, (gh, fan_in))))
            setattr(self, f"weight_hh_l{layer}", parameter(rng.uniform(-k, k, (gh, self.hidden_size))))
            if self.bias:
                setattr(self, f"bias_ih_l{layer}", parameter(rng.uniform(-k, k, gh)))
                setattr(self, f"bias_hh_l{layer}", parameter(rng.uniform(-k, k, gh)))

    # ------------------------------------------------------------------ one cell (subclasses)
    def cell(self, gx, gh, state):
        """(gx_t, gh_t, s_{t-1}) -> (s_t, cache). gx, gh: (N, G*H); state: tuple of (N, H)."""
        raise NotImplementedError

    def cell_backward(self, d_state, cache):
        """dL/ds_t -> (dL/dgx_t, dL/dgh_t, direct dL/ds_{t-1}: tuple, None where zero).

        "Direct" is every path into s_{t-1} except the one through gh_t = h_{t-1} W_hh^T,
        which the loop adds itself (the LSTM's c_{t-1}, the GRU's z * h_{t-1})."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def _params(self, layer):
        get = self._parameters.get
        return (get(f"weight_ih_l{layer}"), get(f"weight_hh_l{layer}"),
                get(f"bias_ih_l{layer}"), get(f"bias_hh_l{layer}"))

    def _check_input(self, x):
        if x.ndim != 3:
            layout = "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"
            raise UserError(f"{self.cell_name} expects a batch of sequences {layout}, got shape {tuple(x.shape)}"
                            " (for token ids put an Embedding first; for one sequence add a batch axis)")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise UserError(f"{self.cell_name} got an empty batch or a sequence of length 0 (shape {tuple(x.shape)})")
        if x.shape[2] != self.input_size:
            raise UserError(f"{self.cell_name}(input_size={self.input_size}) got {x.shape[2]} features per step "
                            f"(input shape {tuple(x.shape)})")

    def _initial_state(self, hx, batch, dtype):
        if hx is None and self.stateful and self.final_state is not None:
            if self.final_state[0].shape[1] == batch:
                hx = self.final_state
        if hx is None:
            zeros = xp.zeros((self.num_layers, batch, self.hidden_size), dtype=dtype)
            return tuple(zeros.copy() for _ in range(self.state_parts))
        if not isinstance(hx, (tuple, list)):
            hx = (hx,)
        if len(hx) != self.state_parts:
            raise UserError(f"{self.cell_name} needs an initial state of {self.state_parts} array(s), got {len(hx)}")
        want = (self.num_layers, batch, self.hidden_size)
        for part in hx:
            if tuple(part.shape) != want:
                raise UserError(f"{self.cell_name}: initial state of shape {tuple(part.shape)}, expected "
                                f"(num_layers, N, hidden_size) = {want}")
        return tuple(xp.asarray(part, dtype=dtype) for part in hx)

    def reset_state(self) -> None:
        """Forget the carried state of a stateful layer (start a new, unrelated sequence)."""
        self.final_state = None

    # ------------------------------------------------------------------ forward
    def __call__(self, x, hx=None):
        return super().__call__(x) if hx is None else self.forward(x, hx)

    def forward(self, x, hx=None):
        self._check_input(x)
        if self.batch_first:
            x = x.transpose(1, 0, 2)
        dtype = self.weight_ih_l0.data.dtype
        x = x.astype(dtype, copy=False)
        steps, batch = x.shape[0], x.shape[1]
        state0 = self._initial_state(hx, batch, dtype)
        self._layer_caches = []
        finals = []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._params(layer)
            gx = x @ w_ih.data.T                    # (T, N, G*H): every step's input part at once
            if b_ih is not None:
                gx += b_ih.data
            state = tuple(part[layer] for part in state0)
            hs = xp.empty((steps + 1, batch, self.hidden_size), dtype=dtype)  # hs[t] = h_t; hs[0] = h_0
            hs[0] = state[0]
            caches = []
            for t in range(steps):
                gh = state[0] @ w_hh.data.T
                if b_hh is not None:
                    gh = gh + b_hh.data
                state, cache = self.cell(gx[t], gh, state)
                hs[t + 1] = state[0]
                caches.append(cache)
            self._layer_caches.append((x, hs, caches))
            finals.append(state)
            x = hs[1:]
        self.final_state = tuple(xp.stack([f[i] for f in finals]) for i in range(self.state_parts))
        return x.transpose(1, 0, 2) if self.batch_first else x

    # ------------------------------------------------------------------ backward through time
    def backward(self, grad_out, grad_state=None):
        """grad_out: dL/d(output), the output's shape. ``grad_state``: optional dL/d(final_state)."""
        if self.batch_first:
            grad_out = grad_out.transpose(1, 0, 2)
        d_x = grad_out
        grad_hx = []
        for layer in reversed(range(self.num_layers)):
            w_ih, w_hh, b_ih, b_hh = self._params(layer)
            x, hs, caches = self._layer_caches[layer]
            steps = len(caches)
            d_gx = xp.empty((steps, hs.shape[1], w_ih.data.shape[0]), dtype=hs.dtype)
            d_state = [xp.zeros_like(hs[0]) for _ in range(self.state_parts)]
            if grad_state is not None:
                d_state = [d + g[layer] for d, g in zip(d_state, grad_state)]
            for t in reversed(range(steps)):
                d_state[0] = d_state[0] + d_x[t]
                dgx_t, dgh_t, direct = self.cell_backward(tuple(d_state), caches[t])
                d_gx[t] = dgx_t
                w_hh.grad += dgh_t.T @ hs[t]
                if b_hh is not None:
                    b_hh.grad += dgh_t.sum(axis=0)
                d_prev = [dgh_t @ w_hh.data] + [None] * (self.state_parts - 1)
                d_state = [p if d is None else (d if p is None else p + d) for p, d in zip(d_prev, direct)]
                if self.bptt is not None and t > 0 and t % self.bptt == 0:
                    d_state = [xp.zeros_like(d) for d in d_state]   # truncated BPTT: a window starts at t
            grad_hx.append(d_state)
            flat_x = x.reshape(-1, x.shape[2])
            flat_d = d_gx.reshape(-1, d_gx.shape[2])
            w_ih.grad += flat_d.T @ flat_x
            if b_ih is not None:
                b_ih.grad += flat_d.sum(axis=0)
            d_x = d_gx @ w_ih.data                   # (T, N, in): what the layer below receives
        grad_hx.reverse()
        self.grad_hx = tuple(xp.stack([g[i] for g in grad_hx]) for i in range(self.state_parts))
        return d_x.transpose(1, 0, 2) if self.batch_first else d_x

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.bptt is not None:
            text += f", bptt={self.bptt}"
        return text
