"""Sequence tasks, generated (seeded, offline) or shipped: data for the recurrent networks.

Every generator returns host NumPy arrays, batch first:

| task | x | y | what it tests |
|---|---|---|---|
| :func:`sine_waves` | (n, T, 1) float32: T samples of a sine | (n, 1) the next sample | forecasting a smooth signal |
| :func:`adding_problem` | (n, T, 2) float32: values in [0, 1) and a 0/1 marker channel | (n, 1) the sum of the two marked values | remembering across T steps |
| :func:`char_windows` | (n, T) int64 character ids | (n, T) the ids one step later | next-character prediction |

The adding problem (Hochreiter & Schmidhuber, 1997): one marker falls in the first half of the
sequence, the other in the second half, so the answer needs something seen up to T steps
ago. Always answering 1 (the mean) gives MSE 1/6 ~ 0.167; a vanilla RNN stays near it once T
is long, while an LSTM or GRU learns to carry the first marked value forward.

The text is seven sonnets by William Shakespeare (1609), in the public domain, shipped in
``common/data/text/sonnets.txt`` (about 4 KB).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import UserError

TEXT_DIR = Path(__file__).resolve().parent / "text"
TEXTS = {"sonnets": "sonnets.txt"}
ADDING_BASELINE_MSE = 1.0 / 6.0   # Var(u1 + u2) for u1, u2 ~ U(0, 1): the MSE of always answering 1


def _check(n, seq_len, least=1):
    if int(n) < 1:
        raise UserError(f"a sequence task needs at least 1 sample, got {n}")
    if int(seq_len) < least:
        raise UserError(f"this sequence task needs sequences of at least {least} steps, got {seq_len}")


def sine_waves(n: int, seq_len: int, seed: int = 0, noise: float = 0.0):
    """Windows of sin(w t + phi) with random frequency w in [0.1, 0.4] rad/step and phase; the
    target is the sample after the window. Optional Gaussian noise on the inputs only."""
    _check(n, seq_len)
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 0.4, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    t = np.arange(seq_len + 1)[None, :]
    wave = np.sin(w * t + phase)
    x = wave[:, :-1] + noise * rng.standard_normal((n, seq_len))
    return x[:, :, None].astype(np.float32), wave[:, -1:].astype(np.float32)


def adding_problem(n: int, seq_len: int, seed: int = 0):
    """x[:, :, 0] ~ U(0, 1), x[:, :, 1] = 1 at one step of each half; y = sum of the two marked values."""
    _check(n, seq_len, least=2)
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, (n, seq_len))
    half = seq_len // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, seq_len, n)
    markers = np.zeros((n, seq_len))
    rows = np.arange(n)
    markers[rows, first] = 1
    markers[rows, second] = 1
    y = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=2).astype(np.float32), y[:, None].astype(np.float32)


def load_text(name: str = "sonnets") -> str:
    """A shipped text by name, or any UTF-8 text file by path."""
    path = TEXT_DIR / TEXTS[name] if name in TEXTS else Path(name)
    if not path.is_file():
        raise UserError(f"no text {name!r}: give one of {', '.join(TEXTS)} or the path of a UTF-8 text file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    if len(text) < 2:
        raise UserError(f"{path} holds fewer than 2 characters: nothing to predict")
    return text


class CharVocab:
    """The sorted set of characters of a text; ``encode`` maps str -> ids, ``decode`` ids -> str."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise UserError(f"characters not in the vocabulary: {''.join(unknown)!r}")
        return np.array([self.index[c] for c in text], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def char_windows(ids: np.ndarray, seq_len: int, stride: int | None = None):
    """Cut a long id sequence into (x, y) windows of ``seq_len``: y is x shifted by one character.

    Windows start every ``stride`` characters (default: ``seq_len``, no overlap).
    """
    stride = stride or seq_len
    if len(ids) < seq_len + 1:
        raise UserError(f"the text has {len(ids)} characters, fewer than --seq-len {seq_len} + 1")
    starts = np.arange(0, len(ids) - seq_len, stride)
    x = np.stack([ids[s:s + seq_len] for s in starts])
    y = np.stack([ids[s + 1:s + seq_len + 1] for s in starts])
    return x, y
