"""Smoke runs of scalar/main.py and every quickstart scenario, as subprocesses on tiny data.

A full synth-digits set takes ~15 s to generate, so the fixture writes a small one (600 train,
200 test) under the cache file name the loader looks for (seed 42, default sizes), in a
private NNOTT_DATA folder.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "scalar" / "main.py"
QUICK = ROOT / "scripts" / "quickstart_scalar.py"
TINY = ["--dataset", "synth-digits", "--limit", "60", "--hidden-sizes", "8", "--batch-size", "16"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from common.data.synth_digits import DEFAULT_SIZES, cache_path, generate
    data = tmp_path_factory.mktemp("data")
    x_train, y_train = generate(600, 0, "train")
    x_test, y_test = generate(200, 0, "test")
    path = cache_path(data, 42, DEFAULT_SIZES, False)          # the CLI's default --seed
    path.parent.mkdir(parents=True)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    x_train, y_train = generate(300, 0, "train", rgb=True)     # dataset-swap's offline choice
    x_test, y_test = generate(100, 0, "test", rgb=True)
    np.savez(cache_path(data, 42, DEFAULT_SIZES, True), x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=y_test)
    return {**os.environ, "NNOTT_DATA": str(data), "MPLBACKEND": "Agg", "NNOTT_DOWNLOAD_TIMEOUT": "1",
            "NNOTT_MIRROR": "http://127.0.0.1:9/"}      # downloads fail at once: the tests stay offline


def run(script, args, env, cwd):
    return subprocess.run([sys.executable, str(script), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_main_readme_command_save_and_resume(env, tmp_path):
    runs = tmp_path / "runs"
    out = run(MAIN, [*TINY, "--epochs", "1", "--hidden-sizes", "16,8,8", "--hidden-activations", "relu,gelu,tanh",
                     "--hidden-dropout", "0.3,0.2,0.1", "--plot", "--confusion-matrix", "--trace",
                     "--trace-neurons", "2", "--run-dir", str(runs), "--save", str(tmp_path / "m.h5")],
              env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "[nnott] tier=scalar model=mlp 784-16-8-8-10" in text and "--limit 60" in text
    assert "FORWARD" in text and "BACKWARD" in text and "true \\ pred" in text
    assert "test acc" in text and (tmp_path / "m.h5").exists()
    figures = [Path(line.split("figure: ")[1]) for line in text.splitlines() if line.startswith("figure: ")]
    assert len(figures) == 4 and all(f.exists() and f.suffix == ".png" for f in figures)
    last = figures[0].parent / "last.h5"
    resumed = run(MAIN, [*TINY, "--epochs", "2", "--hidden-sizes", "16,8,8", "--hidden-activations",
                         "relu,gelu,tanh", "--hidden-dropout", "0.3,0.2,0.1", "--resume", str(last)],
                  env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and "epoch 2:" in resumed.stdout and "epoch 1:" not in resumed.stdout


@pytest.mark.parametrize("args, message", [
    (["--hidden-sizes", "8,8", "--hidden-activations", "relu,tanh,gelu"], "--hidden-activations has 3 values"),
    (["--hidden-activations", "swish"], "'swish' is not one of"),
    (["--hidden-sizes", "8", "--hidden-dropout", "0.1,0.2"], "--hidden-dropout has 2 values"),
    (["--optimizer", "rmsprop"], "invalid choice"),
])
def test_bad_flags_exit_2_with_one_line(env, tmp_path, args, message):
    out = run(MAIN, args, env, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_user_errors_exit_1_without_traceback(env, tmp_path):
    out = run(MAIN, ["--dataset", str(tmp_path / "missing"), "--limit", "10"], env, cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr


@pytest.mark.parametrize("scenario, expected", [
    ("basic", "Step 4: evaluate"),
    ("optimizer-compare", "Summary: test accuracy"),
    ("dataset-swap", "swapped for synth-digits-rgb instead"),
    ("trace", "backward stops here"),
    ("gradcheck", "hand-written vs autograd"),
])
def test_quickstart_scenarios(env, tmp_path, scenario, expected):
    args = ["--scenario", scenario, "--limit", "60", "--epochs", "1", "--hidden-sizes", "8",
            "--run-dir", str(tmp_path / "runs"), "--plot"]
    if scenario != "dataset-swap":
        args += ["--dataset", "synth-digits"]
    out = run(QUICK, args, env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert expected in out.stdout + out.stderr
