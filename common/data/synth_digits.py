"""``synth-digits``: a generated MNIST-like dataset, so everything runs offline.

Every image starts from a glyph template (a digit in one of matplotlib's fonts, see
:mod:`common.data.glyphs`) and gets, in batched NumPy:

1. a random affine map (rotation, shear, scale, aspect, translation) and an elastic
   displacement field (:mod:`common.data.warp`), applied by bilinear sampling;
2. a stroke-width change: the smooth template is thresholded lower (thicker) or higher (thinner);
3. a random blur, ink intensity and Gaussian pixel noise.

``synth-digits`` is 28x28 grayscale, like MNIST; ``synth-digits-rgb`` is 3x32x32 with coloured
digits on coloured, textured backgrounds.  The output is a deterministic function of
(seed, sizes, GENERATOR_VERSION), and is cached as an ``.npz`` in the data directory.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.data.glyphs import glyph_bank
from common.data.warp import blur3, bilinear_sample, random_affine, smooth_field, source_points

#: Bump when the generator changes, so stale caches are not reused.
GENERATOR_VERSION = 2
DEFAULT_SIZES = (60_000, 10_000)
CHUNK = 2048
_SPLIT_ID = {"train": 0, "test": 1}

# How hard the task is. Tuned so a linear softmax classifier stays well below a small CNN.
AFFINE = dict(rotation_deg=15.0, shear=0.3, scale=(0.78, 1.1), aspect=(0.8, 1.25), shift=0.12)
ELASTIC_MAX = 0.10        # largest elastic displacement (normalised units; 0.1 = 1.4 px at 28x28)
THRESHOLD = (0.30, 0.52)  # lower -> thicker strokes
EDGE = (0.12, 0.30)       # width of the soft edge of a stroke
NOISE_STD = (0.0, 0.12)


def render_ink(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    """Ink coverage in [0, 1] for each label: ``(n, size, size)`` float32."""
    bank, digits = glyph_bank()
    n = len(labels)
    # pick a template (font and weight) of the right digit for every sample
    per_digit = np.bincount(digits, minlength=10)
    first = np.searchsorted(digits, np.arange(10))
    choice = first[labels] + (rng.random(n) * per_digit[labels]).astype(np.int64)

    forward, t = random_affine(rng, n, **AFFINE)
    alpha = rng.uniform(0.0, ELASTIC_MAX, (n, 1, 1, 1)).astype(np.float32)
    field = smooth_field(rng, n, size) * alpha
    ink = bilinear_sample(bank, choice, source_points(forward, t, size, field))

    threshold = rng.uniform(*THRESHOLD, (n, 1, 1)).astype(np.float32)
    edge = rng.uniform(*EDGE, (n, 1, 1)).astype(np.float32)
    ink = np.clip((ink - threshold) / edge + 0.5, 0.0, 1.0)
    blur = rng.random((n, 1, 1)).astype(np.float32)
    return (1.0 - blur) * ink + blur * blur3(ink)


def _gray_chunk(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    ink = render_ink(rng, labels, 28)
    n = len(labels)
    ink *= rng.uniform(0.75, 1.0, (n, 1, 1)).astype(np.float32)
    noise = rng.standard_normal(ink.shape, dtype=np.float32)
    ink += noise * rng.uniform(*NOISE_STD, (n, 1, 1)).astype(np.float32)
    return _to_uint8(ink[:, None])


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _rgb_chunk(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Coloured digits on flat, blotchy or striped backgrounds: (n, 3, 32, 32) uint8."""
    n, size = len(labels), 32
    ink = render_ink(rng, labels, size)[:, None]                          # (n, 1, S, S)
    c1 = rng.random((n, 3)).astype(np.float32)
    c2 = np.clip(c1 + rng.uniform(-0.3, 0.3, (n, 3)).astype(np.float32), 0, 1)
    # texture weight between the two background colours: flat, smooth blobs, or stripes
    kind = rng.integers(0, 3, (n, 1, 1, 1))
    blobs = 1.0 / (1.0 + np.exp(-2.0 * smooth_field(rng, n, size, knots=4, channels=1)))
    angle = rng.uniform(0, np.pi, (n, 1, 1, 1)).astype(np.float32)
    freq = rng.uniform(2.0, 6.0, (n, 1, 1, 1)).astype(np.float32)
    y, x = np.linspace(-1, 1, size, dtype=np.float32)[:, None], np.linspace(-1, 1, size, dtype=np.float32)
    stripes = 0.5 + 0.5 * np.sin(np.pi * freq * (np.cos(angle) * x + np.sin(angle) * y))
    mix = blobs * (kind == 1) + stripes * (kind == 2)                      # kind 0: flat colour
    background = c1[:, :, None, None] + (c2 - c1)[:, :, None, None] * mix

    # foreground colour: random hue, luminance pushed at least 0.35 away from the background's
    lb = _luminance((c1 + c2) / 2)
    fg = rng.random((n, 3)).astype(np.float32)
    target = np.where(lb > 0.5, lb - rng.uniform(0.35, 0.6, n), lb + rng.uniform(0.35, 0.6, n))
    fg = np.clip(fg + (np.clip(target, 0, 1) - _luminance(fg))[:, None], 0, 1).astype(np.float32)

    img = background * (1 - ink) + fg[:, :, None, None] * ink
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(0, 0.06, (n, 1, 1, 1)).astype(np.float32)
    return _to_uint8(img)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def generate(n: int, seed: int = 0, split: str = "train", rgb: bool = False,
             progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` images and labels: uint8 ``(n, 1, 28, 28)`` (or ``(n, 3, 32, 32)``), int64 ``(n,)``.

    Labels are balanced (``n // 10`` or one more per class) and shuffled.  Chunk ``i`` draws
    from its own stream ``SeedSequence([seed, split, i])``, so the result does not depend on
    how the work is scheduled.
    """
    make = _rgb_chunk if rgb else _gray_chunk
    rng = np.random.default_rng([seed, _SPLIT_ID[split], 2**20])
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    shape = (3, 32, 32) if rgb else (1, 28, 28)
    images = np.empty((n, *shape), dtype=np.uint8)
    glyph_bank()  # render the templates once, before the workers share them

    def fill(i: int) -> None:
        start, stop = i * CHUNK, min((i + 1) * CHUNK, n)
        images[start:stop] = make(np.random.default_rng([seed, _SPLIT_ID[split], i]), labels[start:stop])

    # NumPy releases the GIL in its array loops, so threads use several cores
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        jobs = pool.map(fill, range(-(-n // CHUNK)))
        for _ in tqdm(jobs, total=-(-n // CHUNK), desc=f"synth-digits {split}", unit="chunk",
                      disable=not progress, leave=False):
            pass
    return images, labels


def cache_path(data_dir: Path, seed: int, sizes: tuple[int, int], rgb: bool) -> Path:
    name = "synth-digits-rgb" if rgb else "synth-digits"
    return Path(data_dir) / "synth-digits" / f"{name}-v{GENERATOR_VERSION}-seed{seed}-{sizes[0]}-{sizes[1]}.npz"


def _save_atomic(path: Path, **arrays) -> None:
    """Write an .npz through a temporary file and a rename; a read-only data dir only costs the cache."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.part")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def load_synth_digits(data_dir: Path, seed: int = 0, sizes: tuple[int, int] = DEFAULT_SIZES,
                      rgb: bool = False, progress: bool = True):
    """Arrays ``(x_train, y_train, x_test, y_test)`` and the cache path; generated on first use."""
    path = cache_path(data_dir, seed, sizes, rgb)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return (f["x_train"], f["y_train"], f["x_test"], f["y_test"]), path
        except Exception:  # a damaged cache file is simply regenerated
            path.unlink(missing_ok=True)
    start = time.perf_counter()
    x_train, y_train = generate(sizes[0], seed, "train", rgb, progress)
    x_test, y_test = generate(sizes[1], seed, "test", rgb, progress)
    if progress:
        print(f"[data] generated {path.stem} in {time.perf_counter() - start:.1f} s", flush=True)
    _save_atomic(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return (x_train, y_train, x_test, y_test), path
