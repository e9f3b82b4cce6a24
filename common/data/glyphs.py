"""A bank of digit glyph templates rendered from the fonts that ship with matplotlib.

Each template is a ``(T, T)`` float32 image in [0, 1] (``T = TEMPLATE_SIZE``): the digit is
rendered large with Pillow, cropped to its ink, scaled so its longer side fills
``GLYPH_BOX`` pixels (as MNIST fits digits into a 20x20 box of a 28x28 image), centred by its
centre of mass, and smoothed with a Gaussian blur.  The blur turns the glyph into a smooth
"ink field": thresholding it lower or higher later makes strokes thicker or thinner.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

#: Side of a template in pixels (twice the 28-pixel output, so warping keeps detail).
TEMPLATE_SIZE = 56
#: Side of the box the glyph's longer side is scaled to (20/28 of the image, like MNIST).
GLYPH_BOX = 40
#: Font files from matplotlib's ``mpl-data/fonts/ttf``: three DejaVu families, STIX and
#: Computer Modern, in several weights and slants.
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf",
)
#: Extra outline width (pixels at render size) that gives each font a heavier variant.
STROKE_WIDTHS = (0, 4)
_RENDER_SIZE = 160  # font size in pixels for the high-resolution render
_BLUR_SIGMA = 1.6   # template blur, in template pixels


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _render(font: ImageFont.FreeTypeFont, digit: int, stroke: int) -> np.ndarray:
    """One digit, cropped to its ink, scaled into GLYPH_BOX and centred by mass: (T, T) float."""
    canvas = Image.new("L", (2 * _RENDER_SIZE, 2 * _RENDER_SIZE), 0)
    ImageDraw.Draw(canvas).text((_RENDER_SIZE // 2, _RENDER_SIZE // 4), str(digit), fill=255,
                                font=font, stroke_width=stroke, stroke_fill=255)
    glyph = canvas.crop(canvas.getbbox())
    w, h = glyph.size
    k = GLYPH_BOX / max(w, h)
    glyph = glyph.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.LANCZOS)
    ink = np.asarray(glyph, dtype=np.float32) / 255.0
    # paste so that the centre of mass lands on the template centre
    ys, xs = np.indices(ink.shape)
    mass = ink.sum()
    cy, cx = (ys * ink).sum() / mass, (xs * ink).sum() / mass
    top = int(round(TEMPLATE_SIZE / 2 - cy))
    left = int(round(TEMPLATE_SIZE / 2 - cx))
    out = Image.new("L", (TEMPLATE_SIZE, TEMPLATE_SIZE), 0)
    out.paste(Image.fromarray(np.uint8(np.round(ink * 255))), (left, top))
    out = out.filter(ImageFilter.GaussianBlur(_BLUR_SIGMA))
    field = np.asarray(out, dtype=np.float32) / 255.0
    return field / max(float(field.max()), 1e-6)


@functools.lru_cache(maxsize=1)
def glyph_bank() -> tuple[np.ndarray, np.ndarray]:
    """All templates and their digits: ``(K, T, T)`` float32 and ``(K,)`` int64, sorted by digit.

    K = len(FONT_FILES) * len(STROKE_WIDTHS) * 10 (fonts missing on this system are skipped).
    """
    templates, digits = [], []
    for name in FONT_FILES:
        path = font_dir() / name
        if not path.exists():
            continue
        font = ImageFont.truetype(str(path), _RENDER_SIZE)
        for stroke in STROKE_WIDTHS:
            for digit in range(10):
                templates.append(_render(font, digit, stroke))
                digits.append(digit)
    if not templates:
        raise RuntimeError(f"no matplotlib fonts found in {font_dir()}")
    digits = np.asarray(digits, dtype=np.int64)
    order = np.argsort(digits, kind="stable")  # grouped by digit: 0s first, then 1s...
    return np.stack(templates)[order], digits[order]
