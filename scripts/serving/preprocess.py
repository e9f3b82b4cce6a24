"""From a drawing or an uploaded picture to the pixels a model was trained on.

A model only answers well for inputs that look like its training images, so a drawn digit
goes through the steps that made the dataset (MNIST's recipe, which ``synth-digits`` follows):

1. **ink**: grey levels in [0, 1] with the digit bright on a dark background (a dark stroke on
   white paper is inverted; transparent pixels count as paper);
2. **crop** to the bounding box of the ink;
3. **resize** so that the longer side fills a ``20/28`` box of the image, keeping the aspect
   ratio, with the same bilinear filter the data pipeline uses (:mod:`common.data.resize`);
4. **centre** by the centre of mass: the digit is pasted so that its mass lands on the
   middle pixel of the ``S x S`` image (``S`` is the dataset's own side, 28 for MNIST);
5. **match the run**: convert to the model's channels and size exactly as
   :func:`common.data.load_run_data` did for the training images;
6. **normalise** with the run's stored ``Normalizer`` (done by the model, not here).

Test images are already in the dataset's form: they skip steps 1-4.

Every array here is uint8 unless said otherwise; images are ``(C, H, W)`` like the datasets.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.data.registry import REGISTRY
from common.data.resize import bilinear_weights, resize_images
from common.errors import UserError

#: Datasets of centred handwritten-style digits: drawings are framed like their images.
DIGIT_DATASETS = ("mnist", "synth-digits", "synth-digits-rgb")
#: Side of the box the digit's longer side is scaled to, as a fraction of the image side.
BOX_FRACTION = 20 / 28
#: Ink above this level (of the strongest stroke) sets the bounding box; fainter marks (sensor
#: noise, a stray touch) do not stretch it.
INK_THRESHOLD = 0.3
#: Default upload limit (bytes) and the largest picture decoded (pixels; a guard against
#: "decompression bombs": tiny files that expand to gigabytes).
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 25_000_000
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # as common.data.resize and Pillow's "L"


class ImageInputError(UserError):
    """An upload or a drawing that cannot become model input; the message is shown on the page."""


# ---------------------------------------------------------------------- reading
def decode_image(data: bytes, name: str = "the upload", max_bytes: int = MAX_UPLOAD_BYTES) -> np.ndarray:
    """PNG/JPEG/... bytes -> ``(H, W, 4)`` uint8 RGBA. Too large, empty or unreadable: ImageInputError."""
    if len(data) > max_bytes:
        raise ImageInputError(_too_large(name, len(data), max_bytes))
    if not data:
        raise ImageInputError(f"{name} is empty; upload a PNG or JPEG image of a digit")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageInputError(f"{name} is {img.width}x{img.height} pixels, more than "
                                      f"{MAX_PIXELS:,} pixels; upload a smaller image")
            img.load()  # decodes the whole file: a truncated or corrupt one fails here
            upright = ImageOps.exif_transpose(img)  # a phone photo's EXIF rotation, applied
            return np.asarray(upright.convert("RGBA"))
    except ImageInputError:
        raise
    except Exception as exc:  # Pillow's decoders fail in many ways (OSError, SyntaxError, struct.error...)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, UnidentifiedImageError):
            reason = "not an image format Pillow knows"
        raise ImageInputError(f"cannot read {name} as an image ({reason}); "
                              "upload a PNG or JPEG image of a digit") from None


def read_image_file(path, max_bytes: int = MAX_UPLOAD_BYTES) -> np.ndarray:
    """:func:`decode_image` of a file; its size is checked before it is read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageInputError(_too_large(path.name, size, max_bytes))
        data = path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"cannot open {path.name}: {exc.strerror or exc}") from None
    return decode_image(data, path.name, max_bytes)


def _too_large(name: str, size: int, max_bytes: int) -> str:
    return f"{name} is {_size(size)}, over the {_size(max_bytes)} upload limit; upload a smaller image"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB"


# ---------------------------------------------------------------------- drawing -> digit
def to_ink(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` grey, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA uint8 -> ink ``(H, W)`` float32 in [0, 1].

    Transparent pixels are white paper. The background level is the median of the border
    pixels; a light background is inverted, so the digit is bright on dark, as in MNIST. Ink is
    then stretched so the background is 0 and the strongest stroke 1.
    """
    img = np.asarray(image, dtype=np.float32) / 255.0
    if img.ndim == 3 and img.shape[2] == 4:
        alpha = img[..., 3:]
        img = img[..., :3] * alpha + (1.0 - alpha)      # composite over white paper
    if img.ndim == 3:
        img = img[..., :3] @ _LUMA
    if img.ndim != 2 or min(img.shape) < 1:
        raise ImageInputError(f"expected a 2-D picture, got an array of shape {np.shape(image)}")
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    background = float(np.median(border))
    ink = img if background < 0.5 else 1.0 - img
    floor = min(background, 1.0 - background)
    peak = float(ink.max())
    if peak - floor < 0.1:
        raise ImageInputError("the picture is blank: draw a digit, or upload an image with a visible digit")
    return np.clip((ink - floor) / (peak - floor), 0.0, 1.0).astype(np.float32)


def frame_digit(ink: np.ndarray, size: int = 28) -> np.ndarray:
    """Ink ``(H, W)`` in [0, 1] -> ``(size, size)`` float32: cropped, scaled into the box, mass-centred."""
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    if len(rows) == 0:
        raise ImageInputError("the picture is blank: draw a digit, or upload an image with a visible digit")
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    box = max(1, round(BOX_FRACTION * size))
    h, w = crop.shape
    scale = box / max(h, w)
    out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
    digit = bilinear_weights(h, out_h) @ crop @ bilinear_weights(w, out_w).T   # the data pipeline's filter
    ys, xs = np.indices(digit.shape)
    mass = float(digit.sum())
    cy, cx = (ys * digit).sum() / mass, (xs * digit).sum() / mass
    top, left = int(round(size / 2 - cy)), int(round(size / 2 - cx))
    out = np.zeros((size, size), dtype=np.float32)
    # paste, clipping whatever a large shift pushes past an edge
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + out_h, size), min(left + out_w, size)
    out[y0:y1, x0:x1] = digit[y0 - top:y1 - top, x0 - left:x1 - left]
    return out


# ---------------------------------------------------------------------- -> the model's pixels
def native_shape(dataset: str, input_shape) -> tuple[int, int, int]:
    """``(C, H, W)`` of the dataset's own images (before a run's --image-size), else the model's."""
    spec = REGISTRY.get(str(dataset))
    return tuple(spec.image_shape) if spec is not None else tuple(int(s) for s in input_shape)


def match_run(x: np.ndarray, input_shape) -> np.ndarray:
    """``(C, H, W)`` uint8 in the dataset's form -> the model's ``input_shape``, as load_run_data does."""
    c, h, w = (int(s) for s in input_shape)
    return resize_images(x[None], (h, w), channels=c)[0]


def model_pixels(image: np.ndarray, input_shape, dataset: str) -> np.ndarray:
    """A drawing or a picture ``(H, W[, 3|4])`` uint8 -> the model's input ``(C, H, W)`` uint8.

    Digit datasets (:data:`DIGIT_DATASETS`): ink, crop, box, centre at the dataset's side, then
    the run's resize. Other datasets (CIFAR-10, image folders): the whole picture is resized.
    """
    c, h, w = native_shape(dataset, input_shape)
    if dataset in DIGIT_DATASETS:
        side = min(h, w)
        digit = np.round(frame_digit(to_ink(image), side) * 255.0).astype(np.uint8)[None]   # (1, S, S)
        return match_run(digit, input_shape)
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 4:  # composite over white
        alpha = img[..., 3:].astype(np.float32) / 255.0
        img = np.round(img[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    chw = img[None] if img.ndim == 2 else np.ascontiguousarray(img.transpose(2, 0, 1))
    return match_run(chw.astype(np.uint8), input_shape)
