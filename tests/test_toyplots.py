"""Toy-task figures, checked by pixel statistics (colours where they belong), not by exact bytes."""
import numpy as np
import pytest
from PIL import Image

from common import toyplots
from common.errors import UserError

BLUE, ORANGE = toyplots.CLASS_COLOURS[0], toyplots.CLASS_COLOURS[1]


def half_plane_probs(points, sharp=8.0):
    """Class 1 where x1 > 0: p1 = sigmoid(sharp * x1)."""
    p1 = 1 / (1 + np.exp(-sharp * points[:, 0]))
    return np.stack([1 - p1, p1], axis=1)


def hue_share(pixels, colour):
    """Fraction of pixels whose colour points the same way as ``colour`` from white (tinted by it)."""
    tint = 1.0 - pixels.reshape(-1, 3)                      # how far from white, per channel
    ref = 1.0 - colour
    norm = np.linalg.norm(tint, axis=1) * np.linalg.norm(ref)
    cos = (tint @ ref) / np.maximum(norm, 1e-9)
    return float(((cos > 0.97) & (np.linalg.norm(tint, axis=1) > 0.05)).mean())


def read_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def test_plane_grid_covers_the_points():
    x = np.array([[0.0, 0.0], [2.0, 1.0]])
    extent, points = toyplots.plane_grid(x, steps=11, margin=0.1)
    assert points.shape == (121, 2) and points.dtype == np.float32
    assert extent == pytest.approx((-0.2, 2.2, -0.1, 1.1))
    assert points[:, 0].min() == pytest.approx(-0.2) and points[:, 1].max() == pytest.approx(1.1)
    with pytest.raises(UserError, match="plane"):
        toyplots.plane_grid(np.zeros((5, 3)))


def test_region_image_fades_to_white_where_unsure():
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.9, 0.1]])
    img = toyplots.region_image(probs, 2).reshape(-1, 3)
    sure, unsure = img[0], img[1]
    assert unsure.min() > sure.min()                        # the boundary band is paler
    assert hue_share(img[[0]], BLUE) == 1.0 and hue_share(img[[2]], ORANGE) == 1.0
    with pytest.raises(UserError):
        toyplots.region_image(probs, 3)


def test_decision_boundary_png_has_each_class_on_its_side(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (200, 2))
    y = (x[:, 0] > 0).astype(int)
    extent, grid = toyplots.plane_grid(x, steps=60)
    path = toyplots.plot_decision_boundary(extent, half_plane_probs(grid), x, y, tmp_path / "b.png", title="t")
    img = read_rgb(path)
    h, w, _ = img.shape
    inner = img[int(0.2 * h):int(0.8 * h)]                   # skip title and axis labels
    left, right = inner[:, int(0.15 * w):int(0.4 * w)], inner[:, int(0.65 * w):int(0.9 * w)]
    assert hue_share(left, BLUE) > 0.6 and hue_share(left, ORANGE) < 0.05
    assert hue_share(right, ORANGE) > 0.6 and hue_share(right, BLUE) < 0.05


def test_boundaries_side_by_side(tmp_path):
    x = np.random.default_rng(1).uniform(-1, 1, (50, 2))
    extent, grid = toyplots.plane_grid(x, steps=30)
    panels = [("left", extent, half_plane_probs(grid)), ("right", extent, half_plane_probs(-grid))]
    img = read_rgb(toyplots.plot_boundaries(panels, x, (x[:, 0] > 0).astype(int), tmp_path / "two.png"))
    assert img.shape[1] > 1.6 * img.shape[0]                 # two square panels


def test_regression_fit_draws_the_curve(tmp_path):
    x = np.linspace(-3, 3, 100)
    path = toyplots.plot_regression_fit(x[:, None], np.sin(x), x[:, None], np.sin(x), tmp_path / "fit.png",
                                        target=np.sin, title="sine")
    img = read_rgb(path)
    red = toyplots.CLASS_COLOURS[3]
    assert hue_share(img, red) > 0.003                       # the network's curve is there
    assert (img.reshape(-1, 3).max(axis=1) < 0.2).mean() > 0.002   # and the dashed true curve (black)


def test_animations_have_one_frame_per_record_and_frames_change(tmp_path):
    x = np.random.default_rng(2).uniform(-1, 1, (60, 2))
    y = (x[:, 0] > 0).astype(int)
    extent, grid = toyplots.plane_grid(x, steps=20)
    frames = [(f"epoch {i}", half_plane_probs(grid + [0.5 - 0.5 * i, 0])) for i in range(3)]
    gif = Image.open(toyplots.animate_boundary(frames, extent, x, y, tmp_path / "b.gif", fps=4))
    assert gif.n_frames == 3
    pictures = []
    for i in range(3):
        gif.seek(i)
        pictures.append(np.asarray(gif.convert("RGB"), dtype=np.float64))
    assert np.abs(pictures[0] - pictures[2]).mean() > 1.0    # the boundary moved

    line = np.linspace(-1, 1, 50)[:, None]
    fit = Image.open(toyplots.animate_fit([("a", 0 * line), ("b", line)], line, line[:, 0], line,
                                          tmp_path / "fit.gif"))
    assert fit.n_frames == 2
    with pytest.raises(UserError, match="frame"):
        toyplots.animate_fit([], line, line[:, 0], line, tmp_path / "none.gif")
