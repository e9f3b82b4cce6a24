"""Run folders read back: config.yaml repeats a run, scripts/runs.py lists, compares and reports,
and --tensorboard writes an event file whose scalars equal metrics.csv."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "synth-digits", "--limit", "60", "--val-split", "0.2", "--epochs", "2"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    e = dict(os.environ, NNOTT_DATA=str(data), NNOTT_SYNTH_SIZES="300,100", MPLBACKEND="Agg")
    e.pop("DISPLAY", None)
    return e


def run(env, *args):
    return subprocess.run([sys.executable, *map(str, args)], cwd="/", env=env, capture_output=True, text=True,
                          timeout=300)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def only_folder(parent):
    (folder,) = [p for p in Path(parent).iterdir() if p.is_dir()]
    return folder


def runs_py(capsys, *args):
    """scripts/runs.py in this process: (exit code, stdout, stderr)."""
    from scripts.runs import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def columns(path, names=("epoch", "loss", "acc", "val_loss", "val_acc")):
    with open(path, newline="") as fh:
        return [[row[n] for n in names if n in row] for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def runs(env, tmp_path_factory):
    """Two vectorized runs that differ in --lr (the first through a config file) and a scalar run."""
    root = tmp_path_factory.mktemp("runs")
    config = root / "mlp.yaml"
    config.write_text("hidden-sizes: [16]\nlr: 0.003\noptimizer: adam\n")
    ok(run(env, ROOT / "vectorized/main.py", "--config", config, *TINY, "--run-dir", root / "a"))
    ok(run(env, ROOT / "vectorized/main.py", "--config", config, *TINY, "--lr", "0.01", "--run-dir", root / "b"))
    ok(run(env, ROOT / "scalar/main.py", *TINY, "--hidden-sizes", "8", "--run-dir", root / "s"))
    return root, only_folder(root / "a"), only_folder(root / "b"), only_folder(root / "s")


def test_the_run_folder_keeps_the_merged_config(runs):
    _, a, b, s = runs
    assert "lr: 0.003" in (a / "config.yaml").read_text() and "lr: 0.01" in (b / "config.yaml").read_text()
    assert "hidden-sizes: [16]" in (b / "config.yaml").read_text()
    assert "python scalar/main.py --config" in (s / "config.yaml").read_text()
    for folder in (a, s):
        assert (folder / "predictions.npz").exists()


def test_config_yaml_repeats_the_run(env, runs, tmp_path):
    _, a, _, _ = runs
    ok(run(env, ROOT / "vectorized/main.py", "--config", a / "config.yaml", "--run-dir", tmp_path))
    again = only_folder(tmp_path)
    assert columns(again / "metrics.csv") == columns(a / "metrics.csv")
    assert (again / "results.json").read_text() == (a / "results.json").read_text()


def test_list_shows_every_run_with_its_settings(capsys, runs):
    root, a, b, s = runs
    code, out, _ = runs_py(capsys, "list", root)
    assert code == 0
    assert "3 runs under" in out
    for folder, tier in ((a, "vectorized"), (b, "vectorized"), (s, "scalar")):
        line = next(x for x in out.splitlines() if folder.name in x)
        assert tier in line and "done" in line and "2/2" in line


def test_compare_prints_what_differs_and_overlays_the_curves(capsys, runs, tmp_path):
    _, a, b, _ = runs
    code, out, _ = runs_py(capsys, "compare", a, b, "--out", tmp_path)
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:2] == ["run", "lr"] and "test" in header  # only the setting that differs, then metrics
    assert "0.003" in out and "0.01" in out
    assert (tmp_path / "compare-loss.png").stat().st_size > 1000
    assert (tmp_path / "compare-val_acc.png").exists()


def test_compare_needs_two_runs(capsys, runs):
    _, a, _, _ = runs
    code, _, err = runs_py(capsys, "compare", a)
    assert code == 1 and err.strip() == "error: compare needs two or more runs, or one sweep folder"


@pytest.mark.parametrize("which", [1, 3])
def test_report_is_one_self_contained_html_page(capsys, runs, which):
    folder = runs[which]
    code, out, _ = runs_py(capsys, "report", folder)
    assert code == 0
    page = (folder / "report.html").read_text()
    assert str(folder / "report.html") in out
    for section in ("Settings", "Training curves", "Confusion matrix", "Per-class precision, recall and F1",
                    "Worst-classified test images"):
        assert f"<h2>{section}</h2>" in page
    assert page.count("data:image/png;base64,") >= 3
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from elsewhere
    assert "macro average" in page and "<td>lr</td>" in page


def test_report_of_an_unfinished_run_says_what_is_missing(capsys, runs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(runs[1], copy)
    (copy / "predictions.npz").unlink()
    (copy / "results.json").unlink()
    assert runs_py(capsys, "report", copy, "--out", tmp_path / "r.html")[0] == 0
    assert "saved no predictions.npz" in (tmp_path / "r.html").read_text()
    code, _, err = runs_py(capsys, "report", tmp_path / "nothing")
    assert code == 1 and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ TensorBoard
@pytest.mark.parametrize("launcher", ["vectorized", "scalar"])
def test_tensorboard_event_file_holds_the_metrics(env, monkeypatch, capsys, tmp_path, launcher):
    pytest.importorskip("tensorboardX", reason="tensorboardX is not installed (pip install 'nnott[tensorboard]')")
    import importlib

    from common.tensorboard import read_scalars

    for key in ("NNOTT_DATA", "NNOTT_SYNTH_SIZES"):
        monkeypatch.setenv(key, env[key])
    main = importlib.import_module(f"{launcher}.main").main
    assert main([*TINY, "--hidden-sizes", "8", "--tensorboard", "--run-dir", str(tmp_path)]) == 0
    folder = only_folder(tmp_path)
    scalars = read_scalars(folder / "tensorboard")
    rows = list(csv.DictReader(open(folder / "metrics.csv", newline="")))
    for key, tag in (("loss", "loss/train"), ("acc", "accuracy/train"), ("val_loss", "loss/val")):
        assert [s for s, _ in scalars[tag]] == [1, 2]
        assert [v for _, v in scalars[tag]] == pytest.approx([float(r[key]) for r in rows], rel=1e-6)
    assert [s for s, _ in scalars["accuracy/test"]] == [2]


def test_tensorboard_without_tensorboardx_is_one_line(env, monkeypatch, capsys, tmp_path):
    from vectorized.main import main

    for key in ("NNOTT_DATA", "NNOTT_SYNTH_SIZES"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import tensorboardX now raises ImportError
    code = main([*TINY, "--hidden-sizes", "8", "--tensorboard", "--run-dir", str(tmp_path)])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --tensorboard needs tensorboardX")


def test_list_skips_a_damaged_run_with_a_warning(capsys, runs, tmp_path):
    shutil.copytree(runs[1], tmp_path / "good")
    shutil.copytree(runs[2], tmp_path / "bad")
    (tmp_path / "bad" / "config.yaml").write_text("lr: [0.1\n")
    code, out, err = runs_py(capsys, "list", tmp_path)
    assert code == 0 and "1 run under" in out and "good" in out
    assert "[warn] skipped" in err and "not valid YAML" in err
