"""What a new user meets in the first hour (issue 25): defaults, the previous NNOTT's commands, help
texts, the run header, SIGTERM, and the test-suite set-up. One test (or more) per item."""
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from common import cli

ROOT = Path(__file__).resolve().parents[1]
TINY_SYNTH = "400,100"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """A private, offline data dir with small generated datasets; returns an env for subprocesses."""
    data = tmp_path / "cache"
    values = {"NNOTT_DATA": str(data), "NNOTT_SYNTH_SIZES": TINY_SYNTH, "NNOTT_MIRROR": "http://127.0.0.1:9/",
              "NNOTT_DOWNLOAD_TIMEOUT": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    from common.data import registry

    monkeypatch.setattr(registry, "_FALLBACK_WARNED", set())
    return dict(os.environ, **values)


def run(env, *args, timeout=240):
    return subprocess.run([sys.executable, *map(str, args)], cwd="/", env=env, capture_output=True, text=True,
                          timeout=timeout)


# ----------------------------------------------------------------------------- defaults
def test_help_lists_the_augmentation_and_the_limit_rule():
    from vectorized.main import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "shift 2px, rotate 10deg p0.5, noise 0.02 p0.3" in text and "no flips" in text
    assert "shrink the test set to N/5" in text


def test_augmentation_description_names_each_op():
    from common.augment import AugmentConfig

    assert AugmentConfig.for_dataset("mnist").describe() == "shift 2px, rotate 10deg p0.5, noise 0.02 p0.3"
    assert "hflip p0.5" in AugmentConfig.for_dataset("cifar10", hflip_prob=0.5).describe()
    assert AugmentConfig(max_shift=0, rotate_prob=0, noise_prob=0).describe() == "none"


def test_run_header_states_augmentation_cost_and_estimate(offline, tmp_path, capsys):
    from vectorized.main import main

    code = main(["--dataset", "synth-digits", "--hidden-sizes", "16", "--epochs", "2", "--batch-size", "32",
                 "--run-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0
    assert 'augment="shift 2px, rotate 10deg p0.5, noise 0.02 p0.3"' in out
    assert "[nnott] cost: 2 epochs x 12 batches of 32 (360 training images) = 24 training steps" in out
    assert "--limit N" in out and "--epochs N" in out
    assert "[nnott] estimate:" in out and "s per batch (batches 2-6)" in out


def test_cost_estimate_projects_the_run_and_suggests_shorter_ones():
    from common.run_cost import CostEstimate, format_duration

    said = []
    est = CostEstimate(total_steps=10 * 844, steps_per_epoch=844, epochs_left=10, n_images=60000,
                       print_fn=said.append)
    text = est.message(0.34)           # a ResNet18 step on a CPU: the whole run is about 48 minutes
    assert "about 47.8 min of training for the 8,440 steps" in text
    assert "--epochs 1: about 4.8 min" in text and "--limit 6272: about 5.0 min" in text
    assert "shorter" not in CostEstimate(100, 10, 10, 600).message(0.01)     # a 1 s run needs no advice
    fake = types.SimpleNamespace()
    for step in range(1, 8):
        est.on_step_end(fake, step)
    assert len(said) == 1 and "batches 2-6" in said[0]
    assert (format_duration(12), format_duration(150), format_duration(7200)) == ("12 s", "2.5 min", "2.0 h")


def test_sigterm_saves_a_checkpoint_like_ctrl_c(offline, tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "vectorized/main.py"), "--dataset", "synth-digits",
                             "--hidden-sizes", "16", "--epochs", "1000", "--run-dir", str(tmp_path)],
                            cwd="/", env=offline, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        for line in proc.stdout:                       # training has started once the estimate is out
            if line.startswith("[nnott] estimate") or time.time() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: checkpoint saved to" in err and "--resume" in err
    assert list(tmp_path.glob("*/last.h5")) and list(tmp_path.glob("*/config.json"))


def test_mnist_fallback_warning_is_said_once(offline, capsys):
    from common.data import load_dataset

    for _ in range(3):
        assert load_dataset("mnist", explicit=False, progress=False).fell_back
    assert capsys.readouterr().out.count("[warn] mnist is not cached") == 1


def test_dataset_swap_offline_picks_a_different_dataset_and_says_so(offline, tmp_path, capsys):
    from scripts.scenarios import swap_dataset

    args = types.SimpleNamespace(dataset=None, data_dir=None, seed=42)
    assert swap_dataset(args) == "synth-digits-rgb"
    out = capsys.readouterr().out
    assert out.count("swapped for synth-digits-rgb instead") == 1 and "fashion-mnist is not available" in out
    assert swap_dataset(types.SimpleNamespace(dataset="cifar10", data_dir=None, seed=0)) == "cifar10"


def test_cnn_dataset_swap_scenario_trains_on_rgb_offline(offline, tmp_path):
    proc = run(offline, ROOT / "scripts/quickstart_convolutional.py", "--scenario", "dataset-swap", "--arch",
               "lenet", "--limit", "40", "--epochs", "1", "--batch-size", "20", "--run-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dataset=synth-digits-rgb" in proc.stdout and "input=3x32x32" in proc.stdout
    assert "[warn] mnist" not in proc.stdout       # the default dataset is never loaded


def test_narrations_state_measured_figures():
    from scripts import quickstart_convolutional as q

    text = q.BASELINE_CPU_TEXT
    assert "minutes" not in text.split("Measured")[0]       # no promise before the figures
    assert "Measured" in text and "%" in text and "1,701,578" in text


@pytest.mark.parametrize("flag", ["", "none"])
def test_hidden_sizes_none_is_softmax_regression_in_both_tiers(offline, tmp_path, capsys, flag):
    from scalar.main import main as scalar_main
    from vectorized.main import main as vectorized_main

    common = ["--dataset", "synth-digits", "--hidden-sizes", flag, "--epochs", "1", "--limit", "100",
              "--run-dir", str(tmp_path)]
    assert vectorized_main(common) == 0
    assert scalar_main(common) == 0
    out = capsys.readouterr().out
    assert out.count("params=7,850") == 2                                # both: 784*10 + 10
    assert "model=softmax-regression dataset" in out and "model=softmax-regression 784-10" in out
    assert cli.hidden_size_list("256,128") == [256, 128]


# ----------------------------------------------------------------------------- the previous NNOTT's commands
def _old_npy_folder(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir()
    np.save(folder / "train_images.npy", rng.integers(0, 256, (50, 28, 28), dtype=np.uint8))
    np.save(folder / "train_labels.npy", np.arange(50) % 10)
    np.save(folder / "test_images.npy", rng.integers(0, 256, (20, 28, 28), dtype=np.uint8))
    np.save(folder / "test_labels.npy", np.arange(20) % 10)
    return folder


def test_old_npy_data_dir_is_the_dataset_and_gets_no_cache(offline, tmp_path, capsys):
    from common.data import load_run_data

    folder = _old_npy_folder(tmp_path / "data")
    before = sorted(p.name for p in folder.iterdir())
    args = types.SimpleNamespace(dataset=None, data_dir=folder, limit=0, val_split=0.1, seed=0)
    data = load_run_data(args)
    assert data.name == str(folder) and len(data.y_test) == 20 and not data.fell_back
    out = capsys.readouterr().out
    assert out.count("holds the previous NNOTT's .npy files: using them as the dataset") == 1
    # a named dataset with that --data-dir: the cache goes to the default place, not the user's folder
    args = types.SimpleNamespace(dataset="synth-digits", data_dir=folder, limit=0, val_split=0.1, seed=0)
    assert load_run_data(args).name == "synth-digits"
    assert "no cache is written there" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == before
    assert (Path(offline["NNOTT_DATA"]) / "synth-digits").is_dir()


@pytest.mark.parametrize("script,args,message", [
    ("scripts/quickstart_convolutional.py", ["--train-images", "a.npy"], "pass --dataset FOLDER"),
    ("scripts/quickstart_convolutional.py", ["--alt-test-labels", "b.npy"], "--scenario dataset-swap --dataset"),
    ("scripts/quickstart_scalar.py", ["--test-labels", "b.npy"], "pass --dataset FOLDER"),
    ("scripts/quickstart_vectorized.py", ["--train-labels", "b.npy"], "pass --dataset FOLDER"),
])
def test_old_file_flags_name_the_new_flag(offline, script, args, message):
    proc = run(offline, ROOT / script, *args)
    assert proc.returncode == 2 and message in proc.stderr and "is a flag of the previous NNOTT" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_old_aliases_save_path_arch_and_sample_count(capsys):
    from common.cli.legacy import apply_legacy_args
    from scripts.quickstart_convolutional import build_parser as cnn_parser
    from scripts.quickstart_scalar import build_parser as scalar_parser

    args = apply_legacy_args(cnn_parser().parse_args(["--save-path", "checkpoints/demo.npz", "--arch", "lenet"]))
    assert args.save == Path("checkpoints/demo.h5") and args.arch == "lenet"
    assert "--save-path is the previous NNOTT's name for --save" in capsys.readouterr().err
    scalar_parser().parse_args(["--sample-count", "8"])
    assert "--sample-count is ignored: --plot saves a grid of 20 training samples" in capsys.readouterr().err


# ----------------------------------------------------------------------------- help texts
@pytest.mark.parametrize("script,prog", [("scalar/main.py", "scalar/main.py"),
                                         ("vectorized/main.py", "vectorized/main.py"),
                                         ("convolutional/main.py", "convolutional/main.py"),
                                         ("scripts/quickstart_convolutional.py", "quickstart_convolutional.py")])
def test_usage_line_names_the_tier(offline, script, prog):
    proc = run(offline, ROOT / script, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {prog} ")


def test_scalar_help_lists_only_its_optimizers():
    from scalar.main import build_parser

    text = build_parser().format_help()
    assert "{sgd,momentum,nesterov,adam}" in text and "rmsprop" not in text and "adamw" not in text


def test_test_cupy_help_gives_examples(offline):
    proc = run(offline, ROOT / "scripts/test_cupy.py", "--help")
    assert "examples:" in proc.stdout and "python scripts/test_cupy.py --stress-seconds" in proc.stdout


@pytest.mark.parametrize("module,scenarios", [
    ("scripts.quickstart_scalar", ("basic", "optimizer-compare", "dataset-swap", "trace", "gradcheck")),
    ("scripts.quickstart_vectorized", ("basic", "optimizer-compare", "hidden-sweep", "lr-sweep", "schedule-compare")),
    ("scripts.quickstart_convolutional", ("baseline-cpu", "gpu-fast", "resume-demo", "dataset-swap", "arch-compare")),
])
def test_quickstart_help_describes_each_scenario(module, scenarios):
    import importlib

    description = importlib.import_module(module).build_parser().description
    for name in scenarios:
        assert f"\n  {name} " in description, name


# ----------------------------------------------------------------------------- tests and install
def test_slow_tests_are_left_out_by_default_and_ci_runs_them():
    text = (ROOT / "pyproject.toml").read_text()
    assert "addopts = \"-ra -m 'not slow'\"" in text
    assert 'python -m pytest -q -m "slow or not slow"' in (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert 'python -m pytest -m "slow or not slow"' in readme and "python -m pytest\n" in readme


def test_readme_gives_the_cpu_torch_route():
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in readme


def test_skip_summary_names_the_install_line():
    import conftest

    def skipped(reason):
        return types.SimpleNamespace(longrepr=("test_x.py", 1, f"Skipped: {reason}"))

    reporter = types.SimpleNamespace(stats={"skipped": [skipped("could not import 'torch': No module named 'torch'"),
                                                        skipped("could not import 'torch': No module named 'torch'"),
                                                        skipped("no fork on this platform")]})
    assert conftest.missing_modules(reporter) == {"torch": 2}
    lines = []
    reporter.write_line = lambda text, **kw: lines.append(text)
    config = types.SimpleNamespace(getoption=lambda name: "not slow")
    conftest.pytest_terminal_summary(reporter, 0, config)
    assert lines == ["2 tests skipped: torch is not installed; to run them: "
                     "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"]

