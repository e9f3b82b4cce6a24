"""scripts/sweep.py as a user runs it: a tiny grid, a failed run, skipping and resuming."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    e = dict(os.environ, NNOTT_DATA=str(data), NNOTT_SYNTH_SIZES="300,100", MPLBACKEND="Agg")
    e.pop("DISPLAY", None)
    return e


def run(env, *args, cwd="/"):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def trial_folder(out, prefix):
    return next(p for p in out.iterdir() if p.is_dir() and p.name.startswith(prefix + "-2"))


@pytest.fixture(scope="module")
def finished_sweep(env, tmp_path_factory):
    """A two-run grid, run two at a time: the first run trains, the second names a missing dataset."""
    tmp = tmp_path_factory.mktemp("sweep")
    spec = tmp / "grid.yaml"
    spec.write_text("launcher: vectorized\nfixed:\n  limit: 60\n  epochs: 2\n  val-split: 0.2\n"
                    f"  hidden-sizes: [8]\nparams:\n  dataset: [synth-digits, {tmp / 'missing'}]\n")
    out = tmp / "out"
    proc = run(env, ROOT / "scripts/sweep.py", spec, "--out", out, "--jobs", "2")
    return spec, out, proc


def test_a_failed_run_does_not_stop_the_sweep(finished_sweep):
    spec, out, proc = finished_sweep
    assert proc.returncode == 1, proc.stdout + proc.stderr
    book = json.loads((out / "sweep.json").read_text())
    first, second = (book["trials"][item["id"]] for item in book["plan"])
    assert first["status"] == "done" and second["status"] == "failed"
    assert "error:" in second["error"] and "missing" in second["error"]
    assert "failed runs:" in proc.stdout and second["error"] in proc.stdout
    folder = trial_folder(out, book["plan"][0]["id"])
    assert {"config.yaml", "metrics.csv", "last.h5", "predictions.npz"} <= {p.name for p in folder.iterdir()}
    assert "run-name: t01-dataset=synth-digits" in (out / "configs" / f"{book['plan'][0]['id']}.yaml").read_text()


def test_a_sweep_run_again_skips_finished_and_failed_runs(env, finished_sweep):
    spec, out, _ = finished_sweep
    proc = run(env, ROOT / "scripts/sweep.py", spec, "--out", out)
    assert proc.returncode == 1
    assert "t01-dataset=synth-digits: done, skipped" in proc.stdout
    assert "failed, skipped" in proc.stdout and "--retry-failed" in proc.stdout


def test_an_interrupted_run_resumes_from_its_checkpoint(env, finished_sweep, tmp_path):
    spec, out, _ = finished_sweep
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    book = json.loads((copy / "sweep.json").read_text())
    trial = book["plan"][0]["id"]
    # Play the part of a sweep killed after the run's first epoch: its folder holds epoch 1 only.
    shutil.rmtree(trial_folder(copy, trial))
    config = copy / "configs" / f"{trial}.yaml"
    config.write_text(config.read_text().replace(f"run-dir: {out}", f"run-dir: {copy}"))
    proc = run(env, ROOT / "vectorized/main.py", "--config", config, "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    book["trials"][trial]["status"] = "running"
    (copy / "sweep.json").write_text(json.dumps(book))
    proc = run(env, ROOT / "scripts/sweep.py", spec, "--out", copy)
    assert f"{trial}: resumed from" in proc.stdout, proc.stdout + proc.stderr
    assert "[resume] continuing from epoch 1" in (copy / "logs" / f"{trial}.log").read_text()
    metrics = (trial_folder(copy, trial) / "metrics.csv").read_text().strip().splitlines()
    assert len(metrics) == 3  # header + epoch 1 (before the stop) + epoch 2 (after the resume)
    assert json.loads((copy / "sweep.json").read_text())["trials"][trial]["status"] == "done"


def test_a_changed_sweep_does_not_reuse_the_folder(env, finished_sweep, tmp_path):
    spec, out, _ = finished_sweep
    changed = tmp_path / "grid.yaml"
    changed.write_text(spec.read_text().replace("epochs: 2", "epochs: 3"))
    proc = run(env, ROOT / "scripts/sweep.py", changed, "--out", out)
    assert proc.returncode == 2 and "holds a different sweep" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_bad_sweep_file_stops_before_any_run(env, tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("launcher: convolutional\nparams:\n  arch: [lenet, resnet99]\n")
    proc = run(env, ROOT / "scripts/sweep.py", spec, "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert f"{spec} line 3: arch" in proc.stderr and "resnet99" in proc.stderr
    assert not (tmp_path / "out").exists()
