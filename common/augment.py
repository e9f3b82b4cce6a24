"""Data augmentation on whole batches, on the host, with NumPy.

Every op takes a ``np.random.Generator`` and a float32 batch ``x: (N, C, H, W)`` with values in
``[0, 1]`` (before per-channel normalization, so a filled-in zero is black) and returns a new
batch of the same shape. Random parameters are drawn as arrays, one entry per image, and applied
with vectorised indexing and masks: there is no Python loop over images.

:class:`Augmenter` chains the ops from an :class:`AugmentConfig` and is deterministic for a seed;
its generator state goes into checkpoints (``state_dict()``) so a resumed run continues exactly.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields, replace

import numpy as np

from common.errors import UserError


# --------------------------------------------------------------------------- configuration
@dataclass
class AugmentConfig:
    """Probabilities and magnitudes of every op; 0 switches an op off."""

    max_shift: int = 2            # pixels, each direction, uniform integer
    rotate_deg: float = 10.0      # angle ~ U(-rotate_deg, rotate_deg)
    rotate_prob: float = 0.5
    hflip_prob: float = 0.0       # off by default: a mirrored 3 is not a 3
    vflip_prob: float = 0.0
    noise_std: float = 0.02
    noise_prob: float = 0.3
    cutout_prob: float = 0.0
    cutout_size: int = 4          # side of the zeroed square, in pixels
    cutmix_prob: float = 0.0
    cutmix_alpha: float = 1.0     # lambda ~ Beta(alpha, alpha)
    mixup_prob: float = 0.0
    mixup_alpha: float = 0.2
    randaug_layers: int = 0       # ops drawn per image by RandAugment
    randaug_magnitude: float = 0.5

    @classmethod
    def for_dataset(cls, dataset_name: str, **overrides) -> "AugmentConfig":
        """Defaults that suit ``dataset_name``; ``overrides`` that are None are ignored.

        Every dataset gets small shifts, rotations and noise; 32x32 CIFAR images are shifted up
        to 4 pixels. Nothing is ever flipped unless asked for (``hflip_prob``): a mirrored digit
        is another digit or none, and a folder's name cannot tell digits from photos.
        """
        name = dataset_name.lower()
        config = cls()
        if name.startswith("cifar"):
            config = replace(config, max_shift=4)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UserError(f"unknown augmentation setting(s) {unknown}; valid ones are {sorted(known)}")
        config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        config.validate()
        return config

    def describe(self) -> str:
        """The ops in force, compactly: 'shift 2px, rotate 10deg p0.5, noise 0.02 p0.3' ('none' if none)."""
        parts = []
        if self.max_shift:
            parts.append(f"shift {self.max_shift}px")
        if self.rotate_deg and self.rotate_prob:
            parts.append(f"rotate {self.rotate_deg:g}deg p{self.rotate_prob:g}")
        if self.hflip_prob:
            parts.append(f"hflip p{self.hflip_prob:g}")
        if self.vflip_prob:
            parts.append(f"vflip p{self.vflip_prob:g}")
        if self.noise_std and self.noise_prob:
            parts.append(f"noise {self.noise_std:g} p{self.noise_prob:g}")
        if self.cutout_prob:
            parts.append(f"cutout {self.cutout_size}px p{self.cutout_prob:g}")
        if self.cutmix_prob:
            parts.append(f"cutmix a{self.cutmix_alpha:g} p{self.cutmix_prob:g}")
        if self.mixup_prob:
            parts.append(f"mixup a{self.mixup_alpha:g} p{self.mixup_prob:g}")
        if self.randaug_layers:
            parts.append(f"randaugment {self.randaug_layers}x m{self.randaug_magnitude:g}")
        return ", ".join(parts) or "none"

    def validate(self) -> None:
        """Raise UserError for any value out of range (values are never clamped silently)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") or f.name == "randaug_magnitude":
                if not 0.0 <= value <= 1.0:
                    raise UserError(f"augmentation {f.name}={value} must be in [0, 1]")
            elif f.name in ("max_shift", "cutout_size", "randaug_layers"):
                if int(value) != value or value < 0:
                    raise UserError(f"augmentation {f.name}={value} must be a whole number >= 0")
            elif f.name.endswith("_alpha"):
                if value <= 0:
                    raise UserError(f"augmentation {f.name}={value} must be > 0 (Beta distribution parameter)")
            elif value < 0:
                raise UserError(f"augmentation {f.name}={value} must be >= 0")
        if self.cutout_prob > 0 and self.cutout_size < 1:
            raise UserError("augmentation cutout_size must be >= 1 when cutout_prob > 0")


# --------------------------------------------------------------------------- geometry helpers
def _chosen(rng: np.random.Generator, n: int, prob: float) -> np.ndarray:
    """Indices of the images an op with probability ``prob`` is applied to."""
    return np.flatnonzero(rng.random(n) < prob)


def _sign(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def affine_sample(x: np.ndarray, A: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Bilinear resampling of each image through its own affine map, zero outside.

    x: (N, C, H, W); A: (N, 2, 2); t: (N, 2). Output pixel (row i, col j), taken relative to the
    image centre as p = (j - cx, i - cy), reads the input at A @ p + t (+ centre): the map goes
    from output to source, so every output pixel gets exactly one value.
    """
    n, c, h, w = x.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")       # (H, W)
    src_x = A[:, 0, 0, None, None] * xx + A[:, 0, 1, None, None] * yy + t[:, 0, None, None] + cx
    src_y = A[:, 1, 0, None, None] * xx + A[:, 1, 1, None, None] * yy + t[:, 1, None, None] + cy
    x0, y0 = np.floor(src_x), np.floor(src_y)
    wx, wy = (src_x - x0)[..., None], (src_y - y0)[..., None]                        # (N, H, W, 1)
    # One ring of zeros around each image: any index clipped into the ring reads 0 (zero fill).
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))).transpose(0, 2, 3, 1)       # (N, H+2, W+2, C)
    n_idx = np.arange(n)[:, None, None]

    def at(yi, xi):
        return padded[n_idx, np.clip(yi, -1, h).astype(np.intp) + 1, np.clip(xi, -1, w).astype(np.intp) + 1]

    out = ((1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x0 + 1))
           + wy * ((1 - wx) * at(y0 + 1, x0) + wx * at(y0 + 1, x0 + 1)))
    return out.transpose(0, 3, 1, 2).astype(x.dtype)


def _rotation_matrices(degrees: np.ndarray) -> np.ndarray:
    """(N,) angles -> (N, 2, 2) output-to-source maps that turn the picture counter-clockwise."""
    a = np.deg2rad(degrees)
    cos, sin = np.cos(a), np.sin(a)
    return np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)


def _apply(x, idx, fn):
    """Copy of ``x`` with ``fn`` applied to the images ``idx`` only."""
    out = x.copy()
    if idx.size:
        out[idx] = fn(x[idx])
    return out


# --------------------------------------------------------------------------- basic ops
def shift(x: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Move image n down by dy[n] and right by dx[n] whole pixels; uncovered pixels become 0."""
    n, _, h, w = x.shape
    s = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
    padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))
    rows = np.arange(h)[None, :] - dy[:, None] + s                                   # (N, H)
    cols = np.arange(w)[None, :] - dx[:, None] + s                                   # (N, W)
    return padded[np.arange(n)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def random_shift(rng: np.random.Generator, x: np.ndarray, max_shift: int) -> np.ndarray:
    """Shift every image by independent integers dy, dx ~ U{-max_shift..max_shift}, zero fill."""
    if max_shift <= 0:
        return x.copy()
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=(2, len(x)))
    return shift(x, dy, dx)


def rotate(x: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Rotate image n counter-clockwise by degrees[n] about its centre (bilinear, zero fill)."""
    return affine_sample(x, _rotation_matrices(np.asarray(degrees, float)), np.zeros((len(x), 2)))


def random_rotate(rng: np.random.Generator, x: np.ndarray, max_deg: float, prob: float) -> np.ndarray:
    """With probability ``prob`` per image, rotate by an angle ~ U(-max_deg, max_deg)."""
    idx = _chosen(rng, len(x), prob)
    angles = rng.uniform(-max_deg, max_deg, size=idx.size)
    return _apply(x, idx, lambda xs: rotate(xs, angles))


def random_flip(rng: np.random.Generator, x: np.ndarray, hflip_prob: float, vflip_prob: float) -> np.ndarray:
    """Mirror left-right with probability ``hflip_prob`` and top-bottom with ``vflip_prob``."""
    h_idx = _chosen(rng, len(x), hflip_prob)
    v_idx = _chosen(rng, len(x), vflip_prob)
    out = _apply(x, h_idx, lambda xs: xs[..., ::-1])
    return _apply(out, v_idx, lambda xs: xs[..., ::-1, :])


def gaussian_noise(rng: np.random.Generator, x: np.ndarray, std: float, prob: float) -> np.ndarray:
    """With probability ``prob`` per image, add N(0, std^2) noise to every pixel, then clip to [0, 1]."""
    idx = _chosen(rng, len(x), prob)
    noise = rng.standard_normal((idx.size,) + x.shape[1:], dtype=np.float32) * np.float32(std)
    return _apply(x, idx, lambda xs: np.clip(xs + noise, 0.0, 1.0))


def _box_mask(h, w, top, left, height, width) -> np.ndarray:
    """(N, H, W) boolean masks of the boxes rows [top, top+height) x cols [left, left+width)."""
    r, c = np.arange(h), np.arange(w)
    rows = (r >= top[:, None]) & (r < (top + height)[:, None])
    cols = (c >= left[:, None]) & (c < (left + width)[:, None])
    return rows[:, :, None] & cols[:, None, :]


def cutout(rng: np.random.Generator, x: np.ndarray, size: int, prob: float) -> np.ndarray:
    """With probability ``prob`` per image, zero a size x size square placed fully inside it."""
    n, _, h, w = x.shape
    if size > min(h, w):
        raise UserError(f"cutout size {size} is larger than the {h}x{w} images; use a smaller cutout size")
    idx = _chosen(rng, n, prob)
    top = rng.integers(0, h - size + 1, size=idx.size)
    left = rng.integers(0, w - size + 1, size=idx.size)
    box = _box_mask(h, w, top, left, np.full(idx.size, size), np.full(idx.size, size))
    return _apply(x, idx, lambda xs: np.where(box[:, None], np.float32(0), xs))


# --------------------------------------------------------------------------- label-mixing ops
def one_hot(y: np.ndarray, num_classes: int) -> np.ndarray:
    """int labels (N,) -> float32 (N, num_classes)."""
    return np.eye(num_classes, dtype=np.float32)[y]


def cutmix(rng: np.random.Generator, x: np.ndarray, targets: np.ndarray, prob: float,
           alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Paste a box from a partner image (a random permutation) into each chosen image.

    targets: (N, K) soft targets. lambda ~ Beta(alpha, alpha) sets the box to a (1 - lambda)
    share of the area; after clipping the box to the image, lambda is recomputed from the real
    box area, so the target weights match the pixels: t = lambda t_self + (1 - lambda) t_partner.
    """
    n, _, h, w = x.shape
    partner = rng.permutation(n)
    chosen = rng.random(n) < prob
    lam = rng.beta(alpha, alpha, size=n)
    cut_h, cut_w = np.round(h * np.sqrt(1 - lam)), np.round(w * np.sqrt(1 - lam))
    cy, cx = rng.integers(0, h, size=n), rng.integers(0, w, size=n)
    top, bottom = np.clip(cy - cut_h // 2, 0, h), np.clip(cy + cut_h - cut_h // 2, 0, h)
    left, right = np.clip(cx - cut_w // 2, 0, w), np.clip(cx + cut_w - cut_w // 2, 0, w)
    box = _box_mask(h, w, top, left, bottom - top, right - left) & chosen[:, None, None]
    lam = 1.0 - box.sum(axis=(1, 2)) / (h * w)                # 1 for images left alone
    x_out = np.where(box[:, None], x[partner], x)
    lam = lam.astype(np.float32)[:, None]
    return x_out, lam * targets + (1 - lam) * targets[partner]


def mixup(rng: np.random.Generator, x: np.ndarray, targets: np.ndarray, prob: float,
          alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Blend each chosen image with a partner: x = lambda x + (1 - lambda) x_partner, same for targets."""
    n = len(x)
    partner = rng.permutation(n)
    chosen = rng.random(n) < prob
    lam = np.where(chosen, rng.beta(alpha, alpha, size=n), 1.0).astype(np.float32)
    lam_x = lam[:, None, None, None]
    return lam_x * x + (1 - lam_x) * x[partner], lam[:, None] * targets + (1 - lam[:, None]) * targets[partner]


# --------------------------------------------------------------------------- RandAugment
# Each op maps (rng, x, m) -> x for a sub-batch, with magnitude m in [0, 1]; signed ops draw a
# random direction per image. Pixel ops follow PIL's ImageEnhance: blend(degenerate, x, factor).
def _blend(degenerate, x, factor):
    f = factor.astype(np.float32)[:, None, None, None]
    return np.clip(degenerate + f * (x - degenerate), 0.0, 1.0)


def _enhance_factor(rng, n, m):
    return 1.0 + 0.9 * m * _sign(rng, n)                      # in [0.1, 1.9]


def _ra_affine(kind):
    def op(rng, x, m):
        n, s = len(x), _sign(rng, len(x))
        A, t = np.tile(np.eye(2), (n, 1, 1)), np.zeros((n, 2))
        if kind == "rotate":
            A = _rotation_matrices(30.0 * m * s)
        elif kind == "shear_x":
            A[:, 0, 1] = 0.3 * m * s
        elif kind == "shear_y":
            A[:, 1, 0] = 0.3 * m * s
        elif kind == "translate_x":
            t[:, 0] = np.round(0.3 * m * x.shape[3]) * s
        else:  # translate_y
            t[:, 1] = np.round(0.3 * m * x.shape[2]) * s
        return affine_sample(x, A, t)
    return op


def _brightness(rng, x, m):
    return _blend(np.zeros_like(x), x, _enhance_factor(rng, len(x), m))


def _contrast(rng, x, m):
    gray_mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return _blend(np.broadcast_to(gray_mean, x.shape), x, _enhance_factor(rng, len(x), m))


def _sharpness(rng, x, m):
    """Factor < 1 blurs toward a 3x3 box average, > 1 sharpens away from it."""
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = x.shape[2:]
    blur = sum(p[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0
    return _blend(blur.astype(np.float32), x, _enhance_factor(rng, len(x), m))


def _autocontrast(rng, x, m):
    lo, hi = x.min(axis=(2, 3), keepdims=True), x.max(axis=(2, 3), keepdims=True)
    return np.where(hi > lo, (x - lo) / np.maximum(hi - lo, 1e-8), x).astype(np.float32)


def _posterize(rng, x, m):
    levels = 2.0 ** (8 - round(4 * m))                          # keep 8 down to 4 bits
    return (np.floor(x * (levels - 1) + 0.5) / (levels - 1)).astype(np.float32)


def _solarize(rng, x, m):
    return np.where(x >= 1.0 - m, 1.0 - x, x).astype(np.float32)


def _ra_cutout(rng, x, m):
    return cutout(rng, x, max(1, round(m * min(x.shape[2:]) / 2)), 1.0)


RAND_AUGMENT_OPS = {
    "identity": lambda rng, x, m: x,
    "rotate": _ra_affine("rotate"), "shear_x": _ra_affine("shear_x"), "shear_y": _ra_affine("shear_y"),
    "translate_x": _ra_affine("translate_x"), "translate_y": _ra_affine("translate_y"),
    "brightness": _brightness, "contrast": _contrast, "sharpness": _sharpness,
    "autocontrast": _autocontrast, "posterize": _posterize, "solarize": _solarize, "cutout": _ra_cutout,
}


def rand_augment(rng: np.random.Generator, x: np.ndarray, layers: int, magnitude: float) -> np.ndarray:
    """RandAugment: each image gets ``layers`` ops drawn uniformly from RAND_AUGMENT_OPS, all at
    one magnitude in [0, 1]. The loop runs over layers and op kinds, each op on its sub-batch."""
    ops = list(RAND_AUGMENT_OPS.values())
    choice = rng.integers(0, len(ops), size=(layers, len(x)))
    out = x.copy()
    for layer in range(layers):
        for k, op in enumerate(ops):
            idx = np.flatnonzero(choice[layer] == k)
            if idx.size:
                out[idx] = op(rng, out[idx], magnitude)
    return out


# --------------------------------------------------------------------------- the pipeline
class Augmenter:
    """Applies an AugmentConfig to training batches: shift, rotate, flip, RandAugment, noise,
    cutout, then CutMix and MixUp. Deterministic for a seed; state is checkpointable."""

    def __init__(self, config: AugmentConfig, seed: int | None = None,
                 rng: np.random.Generator | None = None):
        if seed is not None and rng is not None:
            raise UserError("give the Augmenter a seed or a generator, not both")
        config.validate()
        self.config = config
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    def __call__(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """x: float32 (N, C, H, W) in [0, 1]; y: int (N,).

        Returns (x_aug, targets): targets is ``y`` itself when no label was mixed in this batch,
        otherwise float32 soft targets (N, num_classes) whose rows sum to 1.
        """
        if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
            raise UserError(f"augmentation needs a float batch (N, C, H, W) scaled to [0, 1], got "
                            f"{x.dtype} {x.shape}; convert with x.astype(np.float32) / 255")
        if y.shape != (len(x),):
            raise UserError(f"augmentation labels must have shape ({len(x)},), got {y.shape}")
        c, rng = self.config, self.rng
        x = x.astype(np.float32, copy=False)
        x = random_shift(rng, x, c.max_shift)
        if c.rotate_prob > 0 and c.rotate_deg > 0:
            x = random_rotate(rng, x, c.rotate_deg, c.rotate_prob)
        if c.hflip_prob > 0 or c.vflip_prob > 0:
            x = random_flip(rng, x, c.hflip_prob, c.vflip_prob)
        if c.randaug_layers > 0:
            x = rand_augment(rng, x, c.randaug_layers, c.randaug_magnitude)
        if c.noise_prob > 0 and c.noise_std > 0:
            x = gaussian_noise(rng, x, c.noise_std, c.noise_prob)
        if c.cutout_prob > 0:
            x = cutout(rng, x, c.cutout_size, c.cutout_prob)
        if c.cutmix_prob == 0 and c.mixup_prob == 0:
            return x, y
        targets = one_hot(y, num_classes)
        if c.cutmix_prob > 0:
            x, targets = cutmix(rng, x, targets, c.cutmix_prob, c.cutmix_alpha)
        if c.mixup_prob > 0:
            x, targets = mixup(rng, x, targets, c.mixup_prob, c.mixup_alpha)
        mixed = np.any(targets.max(axis=1) < 1.0)
        return x, (targets.astype(np.float32) if mixed else y)

    def state_dict(self) -> dict:
        """The generator's bit_generator state (plain dict of str/int; JSON-serialisable)."""
        return {"bit_generator": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = copy.deepcopy(state["bit_generator"])


def demo_batches(x: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Each op applied with certainty to the same batch, for figures: name -> (N, C, H, W)."""
    rng = np.random.default_rng(seed)
    side = max(1, min(x.shape[2:]) // 3)
    targets = one_hot(np.arange(len(x)) % 10, 10)
    return {
        "original": x,
        "shift ±3": random_shift(rng, x, 3),
        "rotate ±25°": random_rotate(rng, x, 25.0, 1.0),
        "h-flip": random_flip(rng, x, 1.0, 0.0),
        "noise σ=0.15": gaussian_noise(rng, x, 0.15, 1.0),
        f"cutout {side}": cutout(rng, x, side, 1.0),
        "CutMix": cutmix(rng, x, targets, 1.0, 1.0)[0],
        "MixUp": mixup(rng, x, targets, 1.0, 1.0)[0],
        "RandAugment 2×0.7": rand_augment(rng, x, 2, 0.7),
    }
