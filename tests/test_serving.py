"""The serving library behind scripts/serve.py: preprocessing, checkpoints of every tier, answers.

No browser and no Gradio here (tests/test_serve_browser.py drives the real page).
"""
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from common.checkpoint import load_checkpoint, save_checkpoint
from common.errors import CheckpointError
from scripts.serving.models import load_served_model, unique_labels
from scripts.serving.predict import TestImages, answer, feature_grid, predict_dataset_images
from scripts.serving.preprocess import (ImageInputError, decode_image, frame_digit, model_pixels,
                                        read_image_file, to_ink)

ROOT = Path(__file__).resolve().parents[1]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _stroke_one(size=(300, 200), ink=0, paper=255, mode="L"):
    """A slanted bar, off-centre, dark on light: a hand-drawn '1'."""
    img = Image.new(mode, size, paper)
    ImageDraw.Draw(img).line([(200, 30), (190, 170)], fill=ink, width=12)
    return np.asarray(img)


def _centre_of_mass(x):
    ys, xs = np.indices(x.shape)
    return (ys * x).sum() / x.sum(), (xs * x).sum() / x.sum()


# ---------------------------------------------------------------------- preprocessing
def test_frame_digit_crops_fits_the_20_pixel_box_and_centres_the_mass():
    framed = frame_digit(to_ink(_stroke_one()))
    assert framed.shape == (28, 28) and framed.dtype == np.float32
    rows = np.flatnonzero((framed > 0.3).any(axis=1))
    assert rows[-1] - rows[0] + 1 == 20                       # the longer side fills the box
    cy, cx = _centre_of_mass(framed)
    assert abs(cy - 14) <= 0.5 + 1e-6 and abs(cx - 14) <= 0.5 + 1e-6   # an integer shift, as MNIST


def test_a_digit_already_in_dataset_form_passes_unchanged():
    framed = frame_digit(to_ink(_stroke_one()))
    assert np.array_equal(frame_digit(framed), framed)


def test_ink_has_the_same_polarity_for_dark_on_light_light_on_dark_and_transparent():
    dark_on_light = to_ink(_stroke_one())
    light_on_dark = to_ink(_stroke_one(ink=255, paper=0))
    np.testing.assert_allclose(dark_on_light, light_on_dark, atol=1e-6)
    rgba = np.zeros((200, 300, 4), np.uint8)                  # transparent paper, black ink
    rgba[..., 3] = 255 - _stroke_one()
    np.testing.assert_allclose(to_ink(rgba), dark_on_light, atol=1e-6)
    assert dark_on_light.max() == 1.0 and dark_on_light[0, 0] == 0.0


def test_a_blank_picture_is_a_message():
    with pytest.raises(ImageInputError, match="blank"):
        to_ink(np.full((50, 50), 255, np.uint8))


def test_model_pixels_follow_the_run_resize_and_channels():
    drawing = _stroke_one()
    gray = model_pixels(drawing, (1, 28, 28), "mnist")
    assert gray.shape == (1, 28, 28) and gray.dtype == np.uint8 and gray.max() > 200
    big = model_pixels(drawing, (3, 32, 32), "mnist")         # a run with --image-size 32 on 3 channels
    assert big.shape == (3, 32, 32) and np.array_equal(big[0], big[2])
    photo = np.zeros((40, 60, 3), np.uint8)
    photo[..., 0] = 200                                       # a CIFAR-like picture: resized whole
    out = model_pixels(photo, (3, 32, 32), "cifar10")
    assert out.shape == (3, 32, 32) and (out[0] == 200).all() and (out[1] == 0).all()


def test_decode_image_reads_png_and_names_every_bad_input():
    rgba = decode_image(_png(Image.fromarray(_stroke_one())), "one.png")
    assert rgba.shape == (200, 300, 4)
    with pytest.raises(ImageInputError, match=r"cannot read broken\.png as an image"):
        decode_image(b"\x89PNG\r\n\x1a\nnot really", "broken.png")
    with pytest.raises(ImageInputError, match=r"cannot read cut\.png"):
        decode_image(_png(Image.fromarray(_stroke_one()))[:200], "cut.png")
    with pytest.raises(ImageInputError, match=r"big\.png is 4\.9 KB, over the 1\.0 KB upload limit"):
        decode_image(b"x" * 5000, "big.png", max_bytes=1024)
    with pytest.raises(ImageInputError, match="empty"):
        decode_image(b"", "none.png")


def test_read_image_file_checks_the_size_before_reading(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(b"\0" * 4096)
    with pytest.raises(ImageInputError, match=r"huge\.png is 4\.0 KB, over the 1\.0 KB"):
        read_image_file(path, max_bytes=1024)
    with pytest.raises(ImageInputError, match="cannot open missing.png"):
        read_image_file(tmp_path / "missing.png")


# ---------------------------------------------------------------------- checkpoints of every tier
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny checkpoint per tier, trained by the launchers on synth-digits."""
    base = tmp_path_factory.mktemp("serve-runs")
    env = dict(os.environ, NNOTT_DATA=str(base / "data"), NNOTT_SYNTH_SIZES="300,100", MPLBACKEND="Agg")
    common = ["--dataset", "synth-digits", "--epochs", "1", "--limit", "200", "--run-dir", str(base)]
    commands = {
        "scalar": ["scalar/main.py", *common, "--hidden-sizes", "8", "--run-name", "scalar"],
        "vectorized": ["vectorized/main.py", *common, "--hidden-sizes", "16", "--batchnorm", "--run-name", "vec"],
        "convolutional": ["convolutional/main.py", "lenet", *common, "--run-name", "cnn"],
    }
    paths = {}
    for tier, cmd in commands.items():
        proc = subprocess.run([sys.executable, str(ROOT / cmd[0]), *cmd[1:]], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        paths[tier] = next(base.glob(f"{cmd[-1]}-*/last.h5"))
    return {"paths": paths, "env": env, "data": base / "data"}


@pytest.mark.parametrize("tier", ["scalar", "vectorized", "convolutional"])
def test_every_tier_loads_and_gives_probabilities(runs, tier):
    model = load_served_model(runs["paths"][tier])
    assert model.tier == tier and model.input_shape == (1, 28, 28) and model.dataset == "synth-digits"
    assert model.class_names == [str(d) for d in range(10)]
    pixels = model_pixels(_stroke_one(), model.input_shape, model.dataset)
    probs = model.probabilities(np.stack([pixels, pixels]))
    assert probs.shape == (2, 10) and np.allclose(probs.sum(axis=1), 1.0) and np.allclose(probs[0], probs[1])
    result = answer(model, _stroke_one(), k=3)
    assert [name for name, _ in result.top] == [str(i) for i in np.argsort(-probs[0], kind="stable")[:3]]
    assert result.predicted == str(probs[0].argmax())
    assert (result.maps is not None) == (tier == "convolutional")


def test_the_scalar_model_answers_like_its_vectorized_export(runs):
    from parity.convert import to_vectorized

    served = load_served_model(runs["paths"]["scalar"])
    pixels = model_pixels(_stroke_one(), served.input_shape, served.dataset)[None]
    exported = to_vectorized(served.network).eval()
    logits = exported(served.normalizer(pixels).reshape(1, -1).astype(np.float64))
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(served.probabilities(pixels), expected, rtol=1e-9, atol=1e-12)


def test_feature_maps_are_the_first_convolution_of_the_normalised_input(runs):
    from convolutional.conv import Conv2D

    model = load_served_model(runs["paths"]["convolutional"])
    pixels = model_pixels(_stroke_one(), model.input_shape, model.dataset)
    maps = model.feature_maps(pixels)
    conv = next(m for m in model.network.modules() if isinstance(m, Conv2D))
    direct = conv(model.normalizer(pixels[None]).transpose(0, 2, 3, 1).copy())[0].transpose(2, 0, 1)
    assert maps.shape == (6, 28, 28)
    np.testing.assert_allclose(maps, direct, rtol=1e-5, atol=1e-6)
    assert "forward" not in vars(conv)                        # the recording hook is gone again
    grid = feature_grid(maps)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3


def test_test_images_come_from_the_runs_dataset(runs, monkeypatch):
    monkeypatch.setenv("NNOTT_SYNTH_SIZES", "300,100")
    model = load_served_model(runs["paths"]["convolutional"])
    x, y = TestImages(runs["data"]).sample(model, 5, np.random.default_rng(0))
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.uint8 and y.shape == (5,)
    names = predict_dataset_images(model, x)
    assert names == [answer(model, img, from_dataset=True).predicted for img in x]


def test_labels_are_made_unique(runs):
    a, b = (load_served_model(runs["paths"]["convolutional"]) for _ in range(2))
    unique_labels([a, b])
    assert a.label != b.label and b.label.endswith("#2")


def test_unusable_checkpoints_are_one_line_errors(runs, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_served_model(tmp_path / "nothing.h5")
    ckpt = load_checkpoint(runs["paths"]["convolutional"])
    ckpt.model_state.pop("features.0.weight")
    save_checkpoint(tmp_path / "missing-tensor.h5", ckpt)
    with pytest.raises(CheckpointError, match="missing tensor"):
        load_served_model(tmp_path / "missing-tensor.h5")
    ckpt = load_checkpoint(runs["paths"]["vectorized"])
    ckpt.config.pop("tier")
    save_checkpoint(tmp_path / "no-tier.h5", ckpt)
    with pytest.raises(CheckpointError, match="no known tier"):
        load_served_model(tmp_path / "no-tier.h5")
    ckpt = load_checkpoint(runs["paths"]["vectorized"])
    ckpt.config.pop("normalization")
    save_checkpoint(tmp_path / "no-stats.h5", ckpt)
    with pytest.raises(CheckpointError, match="normalization statistics"):
        load_served_model(tmp_path / "no-stats.h5")


def _serve(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "scripts/serve.py"), *args], cwd="/", env=env,
                          capture_output=True, text=True, timeout=120)


def test_serve_refuses_a_bad_checkpoint_before_starting(tmp_path):
    broken = tmp_path / "best.h5"
    broken.write_bytes(b"not hdf5")
    for path, words in ((tmp_path / "none.h5", "checkpoint not found"), (broken, "is not an HDF5 file")):
        proc = _serve("--checkpoint", str(path))
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and words in proc.stderr and "Traceback" not in proc.stderr


def test_serve_usage_errors_exit_2():
    proc = _serve("--checkpoint", "x.h5", "--port", "70000")
    assert proc.returncode == 2 and "port number from 1 to 65535" in proc.stderr
    proc = _serve()
    assert proc.returncode == 2 and "--checkpoint" in proc.stderr


def test_serve_says_what_is_missing_before_starting(runs, tmp_path):
    """A taken port, and Gradio absent (a stand-in package that fails to import): exit 1, one line."""
    import socket

    ckpt = str(runs["paths"]["convolutional"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = _serve("--checkpoint", ckpt, "--port", str(busy.getsockname()[1]), env=runs["env"])
    assert proc.returncode == 1 and "is in use; choose another with --port" in proc.stderr
    fake = tmp_path / "fake" / "gradio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = dict(runs["env"], PYTHONPATH=str(fake.parent))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _serve("--checkpoint", ckpt, "--port", str(port), env=env)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "needs Gradio" in proc.stderr and 'pip install -e ".[ui]"' in proc.stderr


def test_a_photo_is_turned_upright_by_its_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6                                          # "rotate 90 degrees clockwise to view"
    buf = io.BytesIO()
    Image.new("L", (40, 20), 255).save(buf, format="PNG", exif=exif)
    assert decode_image(buf.getvalue()).shape == (40, 20, 4)   # (H, W): upright, taller than wide


def test_a_picture_with_too_many_pixels_is_refused_before_decoding(monkeypatch):
    import scripts.serving.preprocess as preprocess

    monkeypatch.setattr(preprocess, "MAX_PIXELS", 100)
    with pytest.raises(ImageInputError, match=r"wide\.png is 20x10 pixels, more than"):
        decode_image(_png(Image.new("L", (20, 10))), "wide.png")
