"""The quickstart functions the tutorial's optimization lab (tutorial/practice/optimization-lab.md)
calls at build time: the lr-sweep and optimizer-compare variants, the quiet MLP runner, and the
scalar optimizer-compare's results."""
import contextlib
import io

import pytest

from scripts import quickstart_scalar
from scripts.quickstart_vectorized import (OPTIMIZER_COLUMNS, SUITED_LR, build_parser, lr_sweep_runs, mlp_runner,
                                           optimizer_runs)
from scripts.scenarios import compare, scenario_dir


@pytest.fixture
def small_data(tmp_path, monkeypatch):
    """A private data dir holding a small synth-digits set."""
    monkeypatch.setenv("NNOTT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("NNOTT_SYNTH_SIZES", "200,50")
    return tmp_path


def flags(tmp_path, *extra):
    return build_parser().parse_args(["--dataset", "synth-digits", "--limit", "100", "--epochs", "1",
                                      "--hidden-sizes", "16", "--no-augment", "--run-dir", str(tmp_path), *extra])


def test_lr_sweep_runs_change_only_the_rate(tmp_path):
    args = flags(tmp_path, "--lr-options", "0.0003,0.01", "--lr", "0.002")
    runs = lr_sweep_runs(args)
    assert [label for label, _ in runs] == ["lr=0.0003", "lr=0.01"]
    assert [a.lr for _, a in runs] == [0.0003, 0.01]
    assert args.lr == 0.002                                   # the parsed flags are left as they were
    for _, a in runs:
        assert {k: v for k, v in vars(a).items() if k != "lr"} == {k: v for k, v in vars(args).items() if k != "lr"}


def test_optimizer_runs_use_the_suited_rates_and_adamw_decay(tmp_path):
    runs = dict(optimizer_runs(flags(tmp_path, "--optimizers", "sgd,nesterov,rmsprop,adamw")))
    assert list(runs) == ["sgd", "nesterov", "rmsprop", "adamw"]
    assert {name: a.lr for name, a in runs.items()} == {name: SUITED_LR[name] for name in runs}
    assert {name: a.optimizer for name, a in runs.items()} == {name: name for name in runs}
    assert [a.weight_decay for a in runs.values()] == [0.0, 0.0, 0.0, 0.05]
    given = dict(optimizer_runs(flags(tmp_path, "--optimizers", "sgd,adamw", "--weight-decay", "0.01")))
    assert [a.weight_decay for a in given.values()] == [0.01, 0.01]   # --weight-decay wins everywhere


def test_quiet_runner_trains_each_optimizer_from_the_same_weights(small_data):
    args = flags(small_data, "--optimizers", "sgd,adam")
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        results = compare(optimizer_runs(args), mlp_runner(args, quiet=True), scenario_dir(args, "optimizer-compare"),
                          title="optimizer", plot=False, extra_columns=OPTIMIZER_COLUMNS)
    text = log.getvalue()
    assert list(results) == ["sgd", "adam"] and "test accuracy" in text and "weight decay" in text
    assert "batch/s" not in text                              # quiet: no progress bars
    for name, r in results.items():
        assert r["trainer"].history["lr"][0] == pytest.approx(SUITED_LR[name])
        assert len(r["history"]["val_acc"]) == 1 and 0.0 <= r["test_acc"] <= 1.0
    first, second = (r["model"] for r in results.values())   # different updates, so different weights now
    assert any((a.data != b.data).any() for a, b in zip(first.parameters(), second.parameters()))


def test_scalar_optimizer_compare_returns_accuracy_and_history(small_data):
    parser = quickstart_scalar.build_parser()
    args = parser.parse_args(["--scenario", "optimizer-compare", "--dataset", "synth-digits", "--limit", "40",
                              "--hidden-sizes", "4", "--epochs", "1", "--no-augment", "--run-dir", str(small_data)])
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        results = quickstart_scalar.optimizer_compare(args, parser)
    assert list(results) == ["sgd", "momentum", "adam"]
    for test_acc, history in results.values():
        assert 0.0 <= test_acc <= 1.0 and len(history["val_acc"]) == 1
    assert "Summary: test accuracy" in log.getvalue()
