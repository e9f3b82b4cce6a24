"""Bad inputs and faults, as a new user meets them: every one ends in one short line and the
right exit code (2 for a command-line mistake, 1 for a problem to fix), never a traceback,
and no fault leaves a diverged, half-written or mismatched file behind.

The launchers run in-process through their ``main(argv)`` (the same ``run_main`` wrapper as on
the command line) on a tiny ``.npz`` dataset; a few cases run as real subprocesses, and the
``kill -9`` test needs one by nature. Mount-based cases (read-only, disk full) need root and
tmpfs, and are skipped with the reason where those are missing.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import convolutional.main as conv_main
import scalar.main as scalar_main
import scripts.benchmark as benchmark
import scripts.quickstart_convolutional as qs_conv
import scripts.quickstart_scalar as qs_scalar
import scripts.quickstart_vectorized as qs_vec
import vectorized.main as vec_main
from common.checkpoint import load_checkpoint, save_checkpoint
from common.guard import checkpoint_is_finite

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = {"scalar": scalar_main.main, "vectorized": vec_main.main, "conv": conv_main.main,
             "benchmark": benchmark.main, "qs-scalar": qs_scalar.main, "qs-vec": qs_vec.main,
             "qs-conv": qs_conv.main}
TINY = {"scalar": ["--hidden-sizes", "8"], "vectorized": ["--hidden-sizes", "16"], "conv": ["lenet"]}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny dataset, broken datasets, and one checkpoint per tier (plus a NaN one)."""
    from common.data.synth_digits import generate

    root = tmp_path_factory.mktemp("bad")
    x, y = generate(120, 0, "train")
    xt, yt = generate(40, 0, "test")
    np.savez(root / "tiny.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    for name, (images, labels) in {"nan": (np.full((40, 28, 28), np.nan, np.float32), y[:40]),
                                   "biglabel": (x[:40, 0], np.r_[y[:39], 2**40])}.items():
        folder = root / name
        folder.mkdir()
        for split in ("train", "test"):
            np.save(folder / f"{split}_images.npy", images)
            np.save(folder / f"{split}_labels.npy", labels)
    out = {"root": root, "data": root / "tiny.npz", "nan": root / "nan", "biglabel": root / "biglabel"}
    for tier, main in (("scalar", scalar_main.main), ("vectorized", vec_main.main), ("conv", conv_main.main)):
        save = root / f"{tier}.h5"
        code = main([*TINY[tier], "--dataset", str(out["data"]), "--limit", "40", "--epochs", "1",
                     "--batch-size", "20", "--run-dir", str(root / "runs"), "--save", str(save)])
        assert code == 0
        out[tier] = save
    ckpt = load_checkpoint(out["vectorized"])
    ckpt.model_state = {k: np.full_like(v, np.nan) for k, v in ckpt.model_state.items()}
    out["nanckpt"] = save_checkpoint(root / "nan.h5", ckpt)
    (root / "empty.h5").touch()
    (root / "text.h5").write_text("not a checkpoint\n")
    (root / "afile").write_text("x\n")
    (root / "afolder").mkdir()
    return out


def call(main, argv, capsys):
    """Run a launcher's main in-process; returns (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


_BAR = re.compile(r"\|.*\| *\d+/\d+ \[")  # a tqdm progress bar: "epoch 1:  50%|#####     | 18/36 [..."


def message_lines(err: str) -> list[str]:
    """stderr without the progress bars (which redraw themselves with carriage returns)."""
    lines = []
    for line in err.splitlines():
        last = line.split("\r")[-1].strip()
        if last and not _BAR.search(last):
            lines.append(last)
    return lines


def assert_one_line_error(code, err, expected_code, words):
    assert code == expected_code, err
    assert "Traceback" not in err, err
    lines = message_lines(err)
    assert 1 <= len(lines) <= 3, err
    low = err.lower()
    for word in words:
        assert word.lower() in low, f"{word!r} not in {err!r}"


# ----------------------------------------------------------------------------- the cases
# (launcher, argv with {placeholders}, exit code, key words of the message)
CASES = [
    # numeric flags: finite and in range
    ("scalar", ["--lr", "inf"], 2, ["--lr", "finite"]),
    ("scalar", ["--lr", "nan"], 2, ["--lr", "not a number"]),
    ("scalar", ["--lr", "-1"], 2, ["--lr", "> 0"]),
    ("scalar", ["--epochs", "0"], 2, ["--epochs", ">= 1"]),
    ("scalar", ["--batch-size", "abc"], 2, ["--batch-size", "not an integer"]),
    ("scalar", ["--hidden-dropout", "1.5"], 2, ["--hidden-dropout", "[0, 1)"]),
    ("scalar", ["--val-split", "0.95"], 2, ["--val-split"]),
    ("scalar", ["--seed", "-1"], 2, ["--seed"]),
    ("vectorized", ["--lr", "inf"], 2, ["--lr", "finite"]),
    ("vectorized", ["--lr=-inf"], 2, ["--lr", "finite"]),
    ("vectorized", ["--grad-clip", "inf"], 2, ["--grad-clip", "finite"]),
    ("vectorized", ["--weight-decay", "-1"], 2, ["--weight-decay"]),
    ("vectorized", ["--lr-schedule", "bogus"], 2, ["--lr-schedule", "bogus"]),
    ("conv", ["lenet", "--image-size", "0"], 2, ["--image-size", ">= 1"]),
    ("conv", ["lenet", "--batch-size", "0"], 2, ["--batch-size"]),
    ("conv", ["nosuchnet"], 2, ["arch", "nosuchnet"]),
    # flag combinations
    ("scalar", ["--hidden-sizes", "8,8", "--hidden-dropout", "0.1,0.2,0.3"], 2, ["--hidden-dropout", "3 values"]),
    ("vectorized", ["--hidden-sizes", "8,8", "--dropout", "0.1,0.2,0.3"], 2, ["--dropout", "3 values"]),
    ("vectorized", ["--hidden-sizes", "8,8", "--hidden-activations", "relu,relu,relu"], 2,
     ["--hidden-activations", "3 values"]),
    ("scalar", ["--early-stopping", "--val-split", "0"], 2, ["--early-stopping", "--val-split"]),
    ("vectorized", ["--early-stopping", "--val-split", "0"], 2, ["--early-stopping", "--val-split"]),
    ("scalar", ["--resume", "{scalar}", "--load", "{scalar}"], 2, ["--load", "not allowed"]),
    ("conv", ["lenet", "--skip-train"], 2, ["--skip-train", "--load"]),
    ("conv", ["lenet", "--se"], 2, ["--se", "efficientnet_lite0"]),
    # output paths
    ("scalar", ["--save", "{root}/afolder"], 1, ["--save", "is a folder"]),
    ("vectorized", ["--save", "{root}/afolder"], 1, ["--save", "is a folder"]),
    ("scalar", ["--run-dir", "{root}/afile"], 1, ["--run-dir", "is a file"]),
    ("conv", ["lenet", "--run-dir", "{root}/afile"], 1, ["--run-dir", "is a file"]),
    ("vectorized", ["--save", "{root}/afile/model.h5"], 1, ["--save", "is a file"]),
    # checkpoints: missing, not a checkpoint, another tier, another model, diverged
    ("scalar", ["--resume", "{root}/missing.h5"], 1, ["--resume", "does not exist"]),
    ("vectorized", ["--load", "{root}/afolder"], 1, ["--load", "is a folder"]),
    ("scalar", ["--load", "{root}/empty.h5"], 1, ["empty.h5", "is empty"]),
    ("conv", ["lenet", "--load", "{root}/text.h5"], 1, ["text.h5", "not an hdf5 file"]),
    ("scalar", ["--resume", "{vectorized}"], 1, ["vectorized tier", "vectorized/main.py"]),
    ("scalar", ["--resume", "{conv}"], 1, ["convolutional tier", "convolutional/main.py"]),
    ("vectorized", ["--resume", "{scalar}"], 1, ["scalar tier", "scalar/main.py"]),
    ("vectorized", ["--load", "{conv}"], 1, ["convolutional tier"]),
    ("conv", ["baseline", "--resume", "{scalar}"], 1, ["scalar tier", "scalar/main.py"]),
    ("conv", ["baseline", "--resume", "{conv}"], 1, ["architecture", "lenet", "baseline"]),
    ("scalar", ["--hidden-sizes", "16", "--resume", "{scalar}"], 1, ["does not fit", "shape"]),
    ("vectorized", ["--load", "{nanckpt}"], 1, ["nan.h5", "nan or infinite weights"]),
    # data values
    ("scalar", ["--dataset", "{nan}"], 1, ["train_images.npy", "nan or infinite"]),
    ("vectorized", ["--dataset", "{nan}"], 1, ["train_images.npy", "nan or infinite"]),
    ("conv", ["lenet", "--dataset", "{biglabel}"], 1, ["train_labels.npy", "label", "too large"]),
    ("scalar", ["--dataset", "{biglabel}"], 1, ["train_labels.npy", "too large"]),
    ("vectorized", ["--dataset", "{root}/no-such-folder"], 1, ["no-such-folder"]),
    ("conv", ["lenet", "--image-size", "200000", "--limit", "20"], 1, ["memory", "--image-size"]),
    # the scripts
    ("benchmark", ["--models", ""], 2, ["--models", "names no model"]),
    ("benchmark", ["--models", "nosuch"], 2, ["unknown model", "nosuch"]),
    ("benchmark", ["--budget", "inf", "--models", "mlp"], 2, ["--budget"]),
    ("benchmark", ["--batch-size", "0", "--models", "mlp"], 2, ["--batch-size"]),
    ("qs-scalar", ["--lr", "inf"], 2, ["--lr", "finite"]),
    ("qs-vec", ["--scenario", "bogus"], 2, ["--scenario", "bogus"]),
    ("qs-conv", ["--scenario", "bogus"], 2, ["--scenario", "bogus"]),
]
# every launcher case runs on the tiny dataset unless it names its own
_NEEDS_DATA = ("scalar", "vectorized", "conv")


def _expand(argv, files):
    return [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]


@pytest.mark.parametrize("launcher, argv, code, words", CASES,
                         ids=[f"{c[0]}:{' '.join(c[1])[:40]}" for c in CASES])
def test_bad_input_is_one_line_with_the_right_exit_code(files, capsys, tmp_path, launcher, argv, code, words):
    argv = _expand(argv, files)
    if launcher in _NEEDS_DATA:
        if "--dataset" not in argv:
            argv += ["--dataset", str(files["data"])]
        if "--limit" not in argv:
            argv += ["--limit", "40"]
        if "--run-dir" not in argv:
            argv += ["--run-dir", str(tmp_path / "runs")]
        argv += ["--epochs", "1"]
    got, _, err = call(LAUNCHERS[launcher], argv, capsys)
    assert_one_line_error(got, err, code, words)


def test_at_least_forty_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("script, argv, code, words", [
    ("vectorized/main.py", ["--lr", "inf"], 2, ["finite"]),
    ("scalar/main.py", ["--resume", "{root}/missing.h5"], 1, ["does not exist"]),
])
def test_bad_input_as_a_real_process(files, script, argv, code, words):
    out = subprocess.run([sys.executable, str(ROOT / script), *_expand(argv, files)], capture_output=True,
                         text=True, timeout=120, cwd=files["root"])
    assert_one_line_error(out.returncode, out.stderr, code, words)


def _snapshot(folder: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_refused_resume_leaves_every_file_as_it_was(files, capsys, tmp_path):
    runs = tmp_path / "runs"
    assert call(conv_main.main, ["baseline", "--dataset", files["data"], "--limit", "40", "--epochs", "1",
                                 "--run-dir", runs], capsys)[0] == 0
    run = next(runs.iterdir())
    before = _snapshot(run)
    assert (run / "config.json") in before
    code, _, err = call(conv_main.main, ["lenet", "--dataset", files["data"], "--limit", "40", "--epochs", "2",
                                         "--resume", run / "last.h5"], capsys)
    assert_one_line_error(code, err, 1, ["architecture"])
    assert _snapshot(run) == before
    assert list(runs.iterdir()) == [run]


# ----------------------------------------------------------------------------- faults
_SAVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    import numpy as np
    from common.checkpoint import Checkpoint, save_checkpoint
    weights = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)
    print("ready", flush=True)
    epoch = 0
    while True:
        epoch += 1
        save_checkpoint(sys.argv[1], Checkpoint({"w": weights + epoch}, {}, {}, epoch, epoch, {}, {}, {}))
""")


def test_kill_9_during_saves_never_loses_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.h5"
    rng = np.random.default_rng(1)
    weights = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)  # as the saver's
    epochs = []
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path), str(ROOT)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.1, 0.4))
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.wait()
        proc.stdout.close()
        if path.exists():
            ckpt = load_checkpoint(path)  # never half-written
            np.testing.assert_array_equal(ckpt.model_state["w"], weights + ckpt.epoch)
            epochs.append(ckpt.epoch)
    assert epochs, "no save finished in the time given"
    save_checkpoint(path, load_checkpoint(path))  # the next save removes what killed saves left
    assert not list(tmp_path.glob(".last.h5.*.tmp"))


def test_stale_temp_files_go_but_a_running_save_keeps_its_own(tmp_path):
    path = tmp_path / "last.h5"
    dead = tmp_path / ".last.h5.999999999-abc.tmp"
    old = tmp_path / ".last.h5.xyz.tmp"
    alive = tmp_path / f".last.h5.{os.getppid()}-abc.tmp"
    for p in (dead, old, alive):
        p.write_bytes(b"partial")
    from common.checkpoint import Checkpoint
    save_checkpoint(path, Checkpoint({"w": np.ones(3)}, {}, {}, 1, 1, {}, {}, {}))
    assert not dead.exists() and not old.exists() and alive.exists()


class _SigintAt:
    """Patches a trainer's step so that a real SIGINT arrives after optimizer step ``step``."""

    def __init__(self, monkeypatch, cls, method, step):
        original = getattr(cls, method)

        def wrapped(trainer, *a, **k):
            out = original(trainer, *a, **k)
            if trainer.step == step:
                os.kill(os.getpid(), signal.SIGINT)
            return out

        monkeypatch.setattr(cls, method, wrapped)


def _last(runs: Path) -> Path:
    (run,) = list(runs.iterdir())
    return run / "last.h5"


@pytest.mark.parametrize("tier", ["scalar", "vectorized", "conv"])
def test_sigint_mid_epoch_then_resume_is_bitwise(files, capsys, monkeypatch, tmp_path, tier):
    import scalar.trainer
    import vectorized.trainer

    main = LAUNCHERS[tier]
    base = [*TINY[tier], "--dataset", files["data"], "--limit", "60", "--batch-size", "16", "--epochs", "2"]
    assert call(main, [*base, "--run-dir", tmp_path / "straight"], capsys)[0] == 0
    with monkeypatch.context() as m:  # 4 steps an epoch: step 6 is the middle of epoch 2
        cls, method = ((scalar.trainer.Trainer, "train_batch") if tier == "scalar"
                       else (vectorized.trainer.Trainer, "train_step"))
        _SigintAt(m, cls, method, 6)
        code, _, err = call(main, [*base, "--run-dir", tmp_path / "cut"], capsys)
    assert code == 130 and "Traceback" not in err
    last = _last(tmp_path / "cut")
    assert f"checkpoint saved to {last}; resume with: " in err and "--resume" in err
    saved = load_checkpoint(last)
    assert saved.epoch == 1 and saved.step == 6
    assert call(main, [*base, "--resume", last], capsys)[0] == 0
    straight, resumed = load_checkpoint(_last(tmp_path / "straight")), load_checkpoint(last)
    assert resumed.step == straight.step == 8
    for name, value in straight.model_state.items():
        assert np.array_equal(value, resumed.model_state[name]), name
    assert resumed.history["loss"] == straight.history["loss"]
    metrics = (last.parent / "metrics.csv").read_text().strip().splitlines()
    assert len(metrics) == 1 + 2  # header and one row per epoch, none twice


@pytest.mark.parametrize("tier", ["scalar", "vectorized"])
def test_a_huge_learning_rate_keeps_no_diverged_checkpoint(files, capsys, tmp_path, tier):
    runs = tmp_path / "runs"
    code, _, err = call(LAUNCHERS[tier], [*TINY[tier], "--dataset", files["data"], "--limit", "40",
                                          "--optimizer", "sgd", "--lr", "1e300", "--run-dir", runs], capsys)
    assert_one_line_error(code, err, 1, ["became", "lower --lr"])
    for path in runs.rglob("*.h5"):
        assert checkpoint_is_finite(load_checkpoint(path)), path


@pytest.mark.parametrize("tier", ["scalar", "vectorized"])
def test_an_epoch_that_blows_up_at_its_last_step_is_not_saved(files, capsys, monkeypatch, tmp_path, tier):
    """The loss of every step is finite, but the last update of epoch 2 makes the weights huge:
    the epoch check (validation loss, weights) stops the run before last.h5 or best.h5 change."""
    import scalar.trainer
    import vectorized.trainer

    cls, method = ((scalar.trainer.Trainer, "train_batch") if tier == "scalar"
                   else (vectorized.trainer.Trainer, "train_step"))
    original = getattr(cls, method)

    def blow_up(trainer, *a, **k):
        out = original(trainer, *a, **k)
        if trainer.step == 6:  # 3 steps an epoch: the last step of epoch 2
            if tier == "scalar":
                trainer.network.load_state_dict({k: np.asarray(v) * 1e300 for k, v in
                                                 trainer.network.state_dict().items()})
            else:
                for p in trainer.model.parameters():
                    p.data[...] = p.data * np.float32(1e30) * np.float32(1e30)
        return out

    monkeypatch.setattr(cls, method, blow_up)
    runs = tmp_path / "runs"
    code, _, err = call(LAUNCHERS[tier], [*TINY[tier], "--dataset", files["data"], "--limit", "60",
                                          "--batch-size", "18", "--epochs", "3", "--run-dir", runs], capsys)
    assert_one_line_error(code, err, 1, ["epoch 2", "last good checkpoint is"])
    named = Path(err.split("last good checkpoint is ")[1].split(";")[0])
    ckpt = load_checkpoint(named)
    assert ckpt.epoch == 1 and checkpoint_is_finite(ckpt)
    for path in runs.rglob("*.h5"):
        assert checkpoint_is_finite(load_checkpoint(path)), path
    monkeypatch.undo()
    metrics = (named.parent / "metrics.csv").read_text().strip().splitlines()
    assert len(metrics) == 1 + ckpt.epoch  # no row for the epoch that was not saved
    # the named file evaluates to a finite loss (--epochs 1: it has them all, so only the test runs)
    code, out, _ = call(LAUNCHERS[tier], [*TINY[tier], "--dataset", files["data"], "--limit", "60",
                                          "--batch-size", "18", "--epochs", "1", "--resume", named], capsys)
    assert code == 0
    test_loss = float(out.split("test loss ")[1].split()[0])
    assert np.isfinite(test_loss)


# ----------------------------------------------------------------------------- mounts
@contextlib.contextmanager
def _tmpfs(folder: Path, options: str):
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_disk_full_is_one_line_and_leaves_no_partial_file(files, capsys, tmp_path):
    with _tmpfs(tmp_path / "small", "size=256k") as small:
        code, _, err = call(vec_main.main, ["--hidden-sizes", "256", "--dataset", files["data"], "--limit", "40",
                                            "--epochs", "1", "--run-dir", small], capsys)
        assert_one_line_error(code, err, 1, ["no space left"])
        assert not list(small.rglob("*.tmp")) and not list(small.rglob("*.h5"))


def test_read_only_run_folder_is_refused_before_training(files, capsys, tmp_path):
    with _tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        code, _, err = call(scalar_main.main, [*TINY["scalar"], "--dataset", files["data"], "--limit", "40",
                                               "--run-dir", ro / "runs"], capsys)
        assert_one_line_error(code, err, 1, ["--run-dir", "not writable"])
        code, _, err = call(vec_main.main, ["--dataset", files["data"], "--limit", "40", "--save", ro / "m.h5"],
                            capsys)
        assert_one_line_error(code, err, 1, ["--save", "not writable"])


def test_os_errors_become_one_specific_line(capsys):
    from common.cli import run_main

    cases = [(OSError(30, "Read-only file system", "runs/a"), "read-only"),
             (OSError(28, "No space left on device", "runs/a"), "no space left"),
             (IsADirectoryError(21, "Is a directory", "runs"), "is a folder"),
             (FileExistsError(17, "File exists", "runs/x"), "already exists"),
             (PermissionError(13, "Permission denied", "/root/x"), "permission denied"),
             (OSError("Unable to synchronously write (errno = 28, error message = 'No space left on device')"),
              "no space left")]
    for exc, words in cases:
        def fail(argv, exc=exc):
            raise exc
        assert run_main(fail, []) == 1
        err = capsys.readouterr().err
        assert_one_line_error(1, err, 1, [words])
        assert "Errno" not in err and "OSError" not in err
