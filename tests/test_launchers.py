"""The vectorized and CNN launchers and their quickstarts, run as a user runs them (subprocesses)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("lenet", "baseline", "alexnet", "vgg16", "resnet18", "efficientnet_lite0", "convnext_tiny")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A private data dir with a small synth-digits set, shared by this module's runs."""
    data = tmp_path_factory.mktemp("data")
    e = dict(os.environ, NNOTT_DATA=str(data), NNOTT_SYNTH_SIZES="400,100", MPLBACKEND="Agg",
             NNOTT_MIRROR="http://127.0.0.1:9/", NNOTT_DOWNLOAD_TIMEOUT="1")
    e.pop("DISPLAY", None)
    return e


def run(env, *args, cwd=None, timeout=300):
    """Run a repo script from another folder (entry points must work from any CWD)."""
    proc = subprocess.run([sys.executable, *args], cwd=cwd or "/", env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_vectorized_main_runs_the_readme_command(env, tmp_path):
    out = ok(run(env, str(ROOT / "vectorized/main.py"), "--epochs", "2", "--batch-size", "128", "--gpu",
                 "--hidden-sizes", "512,256,128", "--batchnorm", "--dropout", "0.2", "--lr-schedule", "cosine",
                 "--val-split", "0.1", "--early-stopping", "--run-dir", str(tmp_path)))
    assert "[nnott] tier=vectorized" in out and "device=CPU" in out
    assert "fallback" in out  # MNIST is unreachable here: the default dataset fell back to synth-digits
    assert "test accuracy" in out
    run_dir = next(tmp_path.iterdir())
    assert {"config.json", "metrics.csv", "last.h5", "results.json"} <= {p.name for p in run_dir.iterdir()}


def test_vectorized_resume_continues_the_run(env, tmp_path):
    common = [str(ROOT / "vectorized/main.py"), "--dataset", "synth-digits", "--hidden-sizes", "32",
              "--run-dir", str(tmp_path)]
    ok(run(env, *common, "--epochs", "1"))
    last = next(tmp_path.iterdir()) / "last.h5"
    out = ok(run(env, *common, "--epochs", "2", "--resume", str(last), "--plot", "--confusion-matrix",
                 "--show-misclassified"))
    assert "[resume] continuing from epoch 1" in out and "epoch 2/2" in out
    assert "misclassified:" in out and "precision" in out
    assert (last.parent / "curves.png").exists()
    assert len((last.parent / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs


@pytest.mark.parametrize("arch", ARCHS)
def test_cnn_main_trains_every_architecture_one_step(env, tmp_path, arch):
    dataset = "synth-digits-rgb" if arch in ("alexnet", "vgg16", "efficientnet_lite0", "convnext_tiny") else "synth-digits"
    out = ok(run(env, str(ROOT / "convolutional/main.py"), arch, "--dataset", dataset, "--limit", "20",
                 "--val-split", "0", "--epochs", "1", "--batch-size", "20", "--run-dir", str(tmp_path),
                 "--save", str(tmp_path / "model.h5")))
    assert f"model={arch}" in out and "test accuracy" in out
    assert (tmp_path / "model.h5").exists()


def test_cnn_load_skip_train_reproduces_the_test_accuracy(env, tmp_path):
    base = [str(ROOT / "convolutional/main.py"), "lenet", "--dataset", "synth-digits", "--limit", "200",
            "--epochs", "1", "--run-dir", str(tmp_path)]
    first = ok(run(env, *base, "--save", str(tmp_path / "lenet.h5")))
    again = ok(run(env, *base, "--load", str(tmp_path / "lenet.h5"), "--skip-train"))
    line = [x for x in first.splitlines() if x.startswith("test loss")][0]
    assert line in again.splitlines()


def test_cnn_gpu_flag_falls_back_with_one_warning(env, tmp_path):
    proc = run(env, str(ROOT / "convolutional/main.py"), "resnet18", "--epochs", "1", "--batch-size", "8",
               "--gpu", "--grad-clip", "5", "--lookahead", "--lookahead-k", "5", "--lookahead-alpha", "0.5",
               "--limit", "16", "--val-split", "0", "--dataset", "synth-digits", "--run-dir", str(tmp_path))
    out = ok(proc)
    assert out.count("--gpu requested") == 1 and "device=CPU" in out


def test_cnn_summary_prints_the_layer_table(env):
    out = ok(run(env, str(ROOT / "convolutional/main.py"), "resnet18", "--summary", "--dataset", "cifar10"))
    assert "Total params: 11,173,962" in out


@pytest.mark.parametrize("argv,message", [
    (["convolutional/main.py", "resnet19"], "invalid choice"),
    (["convolutional/main.py", "--lr", "abc"], "--lr"),
    (["vectorized/main.py", "--hidden-sizes", "256,abc"], "'abc' is not an integer"),
    (["vectorized/main.py", "--val-split", "1.5"], "--val-split"),
    (["vectorized/main.py", "--hidden-sizes", "8,8", "--dropout", "0.1,0.2,0.3"],
     "--dropout has 3 values but there are 2 hidden layers"),
])
def test_bad_flags_exit_2_with_one_line(env, argv, message):
    proc = run(env, str(ROOT / argv[0]), *argv[1:])
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv,message", [
    (["vectorized/main.py", "--dataset", "no-such-dataset"], "unknown dataset"),
    (["vectorized/main.py", "--dataset", "fashion-mnist"], "fashion-mnist"),
    (["convolutional/main.py", "resnet18", "--variant", "canonical", "--dataset", "synth-digits"], "--image-size"),
    (["convolutional/main.py", "lenet", "--resume", "/nonexistent/last.h5"], "/nonexistent/last.h5"),
])
def test_user_errors_exit_1_with_one_line(env, tmp_path, argv, message):
    proc = run(env, str(ROOT / argv[0]), *argv[1:], "--run-dir", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("scenario", ["basic", "optimizer-compare", "hidden-sweep", "lr-sweep", "schedule-compare"])
def test_vectorized_quickstart_scenarios(env, tmp_path, scenario):
    out = ok(run(env, str(ROOT / "scripts/quickstart_vectorized.py"), "--scenario", scenario, "--dataset",
                 "synth-digits", "--limit", "100", "--epochs", "1", "--hidden-sizes", "16",
                 "--hidden-options", "16;8", "--lr-options", "0.001,0.01", "--optimizers", "sgd,adam",
                 "--schedules", "none,cosine", "--plot", "--run-dir", str(tmp_path)))
    assert "=== step 1/" in out and "test accuracy" in out
    if scenario != "basic":
        assert "best val acc" in out and list(tmp_path.glob("*/compare-*.png"))


@pytest.mark.parametrize("scenario,extra", [
    ("baseline-cpu", []), pytest.param("gpu-fast", ["--lookahead"], marks=pytest.mark.slow),
    pytest.param("resume-demo", ["lenet", "--epochs", "2"], marks=pytest.mark.slow),
    ("dataset-swap", ["lenet", "--image-shape", "3,32,32"]), ("arch-compare", ["--archs", "lenet,baseline"]),
])
def test_cnn_quickstart_scenarios(env, tmp_path, scenario, extra):
    out = ok(run(env, str(ROOT / "scripts/quickstart_convolutional.py"), *extra, "--scenario", scenario,
                 "--dataset", "synth-digits", "--limit", "40", "--batch-size", "20", "--plot",
                 "--run-dir", str(tmp_path), *([] if "--epochs" in extra else ["--epochs", "1"])))
    assert "=== step 1/" in out and "test accuracy" in out
    if scenario == "resume-demo":
        assert "final weights identical: True" in out
    if scenario == "dataset-swap":
        assert "input=3x32x32" in out


def test_compare_torch_trains_both_from_the_same_weights(env):
    pytest.importorskip("torch")
    out = ok(run(env, str(ROOT / "scripts/compare_torch.py"), "mlp", "--dataset", "synth-digits", "--epochs", "1",
                 "--limit", "200", "--no-augment"))
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith(("NNOTT", "PyTorch"))}
    assert set(lines) == {"NNOTT", "PyTorch"} and "difference:" in out
