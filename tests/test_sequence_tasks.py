"""Sequence tasks, the recurrent launcher and the rnn quickstart scenario."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.data import sequences
from common.errors import UserError
from vectorized.sequence_tasks import build_model, load_task, sample_text, train_on

ROOT = Path(__file__).resolve().parents[1]


def test_generators_are_seeded_and_right():
    x, y = sequences.adding_problem(50, 12, seed=1)
    x2, _ = sequences.adding_problem(50, 12, seed=1)
    np.testing.assert_array_equal(x, x2)
    assert x.shape == (50, 12, 2) and y.shape == (50, 1)
    assert (x[:, :, 1].sum(axis=1) == 2).all()
    assert (x[:, :6, 1].sum(axis=1) == 1).all()          # one marker in each half
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(axis=1), rtol=1e-6)
    s, t = sequences.sine_waves(4, 10, seed=0)
    assert s.shape == (4, 10, 1) and t.shape == (4, 1) and np.abs(s).max() <= 1


def test_text_is_shipped_and_windows_shift_by_one():
    text = sequences.load_text("sonnets")
    assert 3000 < len(text) < 8000 and text.startswith("Shall I compare thee")
    vocab = sequences.CharVocab(text)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    x, y = sequences.char_windows(ids, 10, 5)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    with pytest.raises(UserError, match="not in the vocabulary"):
        vocab.encode("§")
    with pytest.raises(UserError, match="no text"):
        sequences.load_text("no-such-text")


def test_char_model_learns_and_samples():
    data = load_task("chars", 32)
    model = build_model(data, "gru", 32, embed_dim=8)
    trainer = train_on(data, model, epochs=2, batch_size=16, lr=0.01)
    assert trainer.history["loss"][-1] < np.log(len(data.vocab))   # better than uniform guessing
    text = sample_text(model, data.vocab, "Love", length=40, seed=1)
    assert text.startswith("Love") and len(text) == 44 and set(text) <= set(data.vocab.chars)
    assert sample_text(model, data.vocab, "Love", length=40, seed=1) == text   # seeded


def run(*args, cwd="/", env_extra=None):
    env = dict(os.environ, MPLBACKEND="Agg", **(env_extra or {}))
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_launcher_adding_task_plots_its_predictions(tmp_path):
    proc = run(ROOT / "vectorized/recurrent.py", "--task", "adding", "--cell", "gru", "--samples", "100",
               "--seq-len", "6", "--epochs", "1", "--plot", "--run-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "validation loss" in proc.stdout and list(tmp_path.glob("*/predictions.png"))


def test_launcher_trains_plots_and_resumes(tmp_path):
    launcher = ROOT / "vectorized/recurrent.py"
    common = ["--task", "sine", "--cell", "rnn", "--samples", "200", "--seq-len", "10", "--bptt", "5",
              "--run-dir", tmp_path, "--run-name", "s"]
    first = run(launcher, *common, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    last = next(tmp_path.iterdir()) / "last.h5"
    second = run(launcher, "--resume", last, "--epochs", "2", "--plot", "--save", tmp_path / "final.h5")
    assert second.returncode == 0, second.stderr
    assert "[resume] continuing from epoch 1" in second.stdout and "epoch 2/2" in second.stdout
    assert (last.parent / "forecast.png").exists() and (tmp_path / "final.h5").exists()
    assert json.loads((last.parent / "results.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("args,code,message", [
    (["--task", "adding", "--bptt", "50"], 2, "--bptt 50 is longer"),
    (["--cell", "lstmm"], 2, "invalid choice"),
    (["--resume", "/nonexistent/last.h5"], 1, "not found"),
    (["--task", "chars", "--text", "/nonexistent.txt"], 1, "no text"),
])
def test_launcher_errors_are_one_line(tmp_path, args, code, message):
    proc = run(ROOT / "vectorized/recurrent.py", *args, "--run-dir", tmp_path)
    assert proc.returncode == code and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_quickstart_rnn_scenario(tmp_path, monkeypatch, capsys):
    import scripts.quickstart_rnn as q
    from scripts import quickstart_vectorized

    monkeypatch.setattr(q, "SEQ_LENS", (4,))
    monkeypatch.setattr(q, "RACE_SAMPLES", 40)
    monkeypatch.setattr(q, "SINE_EPOCHS", 1)
    monkeypatch.setattr(q, "RACE_EPOCHS", 1)
    monkeypatch.setattr(q, "CHAR_EPOCHS", 1)
    assert quickstart_vectorized.main(["--scenario", "rnn", "--run-dir", str(tmp_path), "--plot"]) == 0
    out = capsys.readouterr().out
    assert "| T | rnn | lstm | gru | always 1 |" in out and "[sample]" in out
    assert list(tmp_path.glob("quickstart-rnn*/adding-vs-length.png"))
