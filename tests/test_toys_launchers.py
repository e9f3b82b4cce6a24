"""The toy tasks through the launchers: scalar and vectorized as subprocesses (as a user runs them),
the one-line refusals in-process, and the quickstart scenario."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ, NNOTT_DATA=str(tmp_path_factory.mktemp("data")), MPLBACKEND="Agg")
    e.pop("DISPLAY", None)
    return e


def run(env, *args, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], cwd="/", env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def only_run_folder(parent: Path) -> Path:
    (folder,) = [p for p in parent.iterdir() if p.is_dir()]
    return folder


def two_class_hues(path):
    """Shares of bluish and orangish pixels in a boundary figure (tab10 colours 0 and 1)."""
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
    blue = (img[:, 2] > img[:, 0] + 0.1).mean()
    orange = (img[:, 0] > img[:, 2] + 0.1).mean()
    return blue, orange


def test_scalar_rings_trace_and_plot(env, tmp_path):
    out = ok(run(env, ROOT / "scalar/main.py", "--dataset", "rings", "--toy-size", "300", "--epochs", "12",
                 "--trace", "--trace-neurons", "2", "--plot", "--animate", "--run-dir", tmp_path))
    assert "[toy] rings: --hidden-sizes 16" in out            # the 2-16-2 recipe
    assert "model=mlp 2-16-2" in out
    assert "layer 0  2 -> 16  (relu)" in out and "BACKWARD" in out
    acc = float(out.split("test acc ")[1].split("%")[0])
    assert acc > 90.0
    folder = only_run_folder(tmp_path)
    blue, orange = two_class_hues(folder / "boundary.png")
    assert blue > 0.03 and orange > 0.3                      # the inner disc, and the ring around it
    assert Image.open(folder / "boundary.gif").n_frames == 12


def test_vectorized_moons_plot_and_animate(env, tmp_path):
    out = ok(run(env, ROOT / "vectorized/main.py", "--dataset", "moons", "--epochs", "15", "--plot", "--animate",
                 "--run-dir", tmp_path))
    assert "dataset=moons" in out and "input=2x1x1" in out
    assert "test accuracy" in out and float(out.split("test accuracy ")[1].split("%")[0]) > 90.0
    folder = only_run_folder(tmp_path)
    assert {"boundary.png", "boundary.gif", "curves.png", "last.h5"} <= {p.name for p in folder.iterdir()}
    blue, orange = two_class_hues(folder / "boundary.png")
    assert blue > 0.1 and orange > 0.1
    assert Image.open(folder / "boundary.gif").n_frames == 15


def test_vectorized_regression_reports_r2_and_draws_the_fit(env, tmp_path):
    out = ok(run(env, ROOT / "vectorized/main.py", "--dataset", "piecewise", "--loss", "huber", "--epochs", "25",
                 "--plot", "--run-dir", tmp_path))
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch 25/25 |")]
    assert epoch_lines and "| r2 " in epoch_lines[0] and "| val_r2 " in epoch_lines[0]
    r2 = float(out.split("test R^2 ")[1].split()[0])
    assert r2 > 0.9
    folder = only_run_folder(tmp_path)
    assert (folder / "fit.png").exists() and (folder / "curves.png").exists()
    assert '"test_r2"' in (folder / "results.json").read_text()


@pytest.mark.parametrize("launcher, argv, message", [
    ("convolutional", ["lenet", "--dataset", "moons"], "not images"),
    ("scalar", ["--dataset", "sine"], "regression task and the scalar tier classifies"),
    ("vectorized", ["--dataset", "moons", "--loss", "mae"], "for the regression tasks"),
    ("vectorized", ["--dataset", "moons", "--toy-classes", "3"], "always has 2 classes"),
    ("vectorized", ["--dataset", "spirals", "--toy-size", "5"], "at least 20"),
    ("scalar", ["--dataset", "synth-digits", "--animate"], "add --dataset rings"),
])
def test_misuse_ends_with_one_line(launcher, argv, message, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"{launcher}.main").main
    code = main([*argv, "--run-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err


@pytest.mark.slow
def test_quickstart_toys_scenario(env, tmp_path):
    out = ok(run(env, ROOT / "scripts/quickstart_vectorized.py", "--scenario", "toys", "--plot",
                 "--run-dir", tmp_path, timeout=900))
    assert "step 1/2: classification in the plane" in out and "step 2/2: regression on a line" in out
    for name in ("moons", "rings", "blobs", "xor", "spirals", "piecewise", "sine"):
        assert f"| {name} |" in out
    folder = only_run_folder(tmp_path)
    assert len(list(folder.glob("toys-*.png"))) == 7
