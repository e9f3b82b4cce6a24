"""Fast Adam: small parameters step together as one flat array, large ones in cache-sized slices on every core.

Each NumPy pass costs a few microseconds whatever its size, and LeNet-5's ten parameters would
make 120 of them a step; so parameters of at most ``ADAM_FLAT_BYTES`` keep their moments as views
into flat arrays and take one step together. A large parameter is updated slice by slice
(``ADAM_BLOCK_BYTES``), the slices shared out to every core. The arithmetic is the reference's,
in the same order (:meth:`vectorized.optim.Adam.update`).
"""
from __future__ import annotations

import itertools

from common.backend import xp
from engine import tuning
from engine.parallel import blocks_of, run_blocks
from vectorized.optim import Adam


def _moments_and_step(self, m, v, g, tmp, step_size, bias2):
    """Update the moments m and v with g in place and leave the step lr_t * m / (sqrt(v_t) + eps)
    in ``tmp`` (all flat arrays of one size), one pass at a time."""
    m *= self.beta1
    m += xp.multiply(g, 1 - self.beta1, out=tmp)
    v *= self.beta2
    xp.multiply(g, g, out=tmp)
    tmp *= 1 - self.beta2
    v += tmp
    denom = xp.sqrt(v, out=tmp)
    denom *= bias2
    denom += self.eps
    xp.divide(m, denom, out=tmp)
    tmp *= step_size
    return tmp


def adam_step(self) -> None:
    """Parameters of at most ``tuning.ADAM_FLAT_BYTES`` take their step together, as one flat array
    (each pass is a NumPy call of a few microseconds whatever its size, and LeNet-5's ten
    parameters would make 120 of them); the others one by one, as :meth:`update`."""
    self.t += 1
    small = []
    for i, p in enumerate(self.params):
        if p.data.nbytes <= tuning.ADAM_FLAT_BYTES and p.data.flags.c_contiguous:
            small.append(i)
        else:
            adam_update(self, i, p)
    if len({self.params[i].data.dtype for i in small}) > 1 or len(small) < 2:
        for i in small:
            adam_update(self, i, self.params[i])
    else:
        _update_flat(self, small)


def _flat_state(self, idx):
    """The flat moments of parameters ``idx``, built (from their current state, zeros where
    there is none yet) when the set of parameters changes or a loaded state replaced the
    arrays; each parameter's ``m[i]`` and ``v[i]`` are views into them, so ``state_dict`` and
    ``load_state_dict`` see the usual per-parameter arrays."""
    ps = [self.params[i] for i in idx]
    key = (tuple(idx), tuple(p.data.shape for p in ps), ps[0].data.dtype)
    flat = getattr(self, "_flat", None)
    if (flat is not None and flat["key"] == key
            and all(self.m[i] is flat["m"][k] and self.v[i] is flat["v"][k] for k, i in enumerate(idx))):
        return flat
    sizes = [p.data.size for p in ps]
    offsets = [0, *itertools.accumulate(sizes)]
    flat = {"key": key, "offsets": offsets, "m": [], "v": []}
    for slot in ("m", "v"):
        whole = flat[f"{slot}_flat"] = xp.zeros(offsets[-1], dtype=ps[0].data.dtype)
        arrays = getattr(self, slot)
        for k, (i, p) in enumerate(zip(idx, ps)):
            view = whole[offsets[k]:offsets[k + 1]].reshape(p.data.shape)
            if arrays[i] is not None:
                view[...] = arrays[i]
            arrays[i] = view
            flat[slot].append(view)
    flat["g"] = xp.empty(offsets[-1], dtype=ps[0].data.dtype)
    flat["tmp"] = xp.empty(offsets[-1], dtype=ps[0].data.dtype)
    self._flat = flat
    return flat


def _update_flat(self, idx):
    flat = _flat_state(self, idx)
    ps = [self.params[i] for i in idx]
    g = xp.concatenate([self.decay(p).reshape(-1) for p in ps], out=flat["g"])
    tmp = _moments_and_step(self, flat["m_flat"], flat["v_flat"], g, flat["tmp"], *self._factors())
    o = flat["offsets"]
    for k, p in enumerate(ps):
        w = p.data.reshape(-1)
        w -= tmp[o[k]:o[k + 1]]


def adam_update(self, i, p):
    if not p.data.flags.c_contiguous:  # updated in place through a flat view
        p.data = xp.ascontiguousarray(p.data)
    g = self.decay(p).reshape(-1)
    m, v = self._state("m", i, p).reshape(-1), self._state("v", i, p).reshape(-1)
    w = p.data.reshape(-1)
    factors = self._factors()

    def part(a, b, buf):
        # slice by slice: each slice's passes stay in the core's cache, and for a large
        # parameter the slices are shared out to every core (a large model's Adam step
        # reads and writes four arrays of every parameter: 235 MB for VGG16)
        tmp = buf.get("tmp")
        if tmp is None or tmp.size < blocks[0][1] or tmp.dtype != w.dtype or type(tmp) is not type(w):
            tmp = buf["tmp"] = xp.empty(blocks[0][1], dtype=w.dtype)
        w[a:b] -= _moments_and_step(self, m[a:b], v[a:b], g[a:b], tmp[:b - a], *factors)

    if w.nbytes <= tuning.SMALL_PASS_BYTES:  # not worth sharing out: in slices on this thread
        per_slice = max(1, tuning.ADAM_BLOCK_BYTES // w.itemsize)
        blocks = [(a, min(a + per_slice, w.size)) for a in range(0, w.size, per_slice)]
        for a, b in blocks:
            part(a, b, self.__dict__.setdefault("_scratch", {}))
    else:
        blocks = blocks_of(w.size, w.itemsize, tuning.ADAM_BLOCK_BYTES, tuning.SMALL_PASS_BYTES)
        run_blocks(blocks, part)


REPLACEMENTS = [(Adam, "step", adam_step), (Adam, "update", adam_update)]
