"""Shared CLI helpers: typed values, argument groups, run folders, exit codes."""
import argparse
import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common import cli
from common.errors import CheckpointError, UserError


def full_parser():
    p = cli.make_parser("Train something.", ["python vectorized/main.py --epochs 3"])
    cli.add_data_args(p, image_size=True)
    cli.add_training_args(p, epochs=3, batch_size=32)
    cli.add_optimizer_args(p)
    cli.add_schedule_args(p)
    cli.add_augment_args(p)
    cli.add_checkpoint_args(p)
    cli.add_device_args(p)
    cli.add_output_args(p)
    p.add_argument("--hidden-sizes", type=cli.positive_int_list, default=[256, 128, 64])
    p.add_argument("--hidden-activations", type=cli.name_list(("relu", "gelu", "leaky_relu")))
    p.add_argument("--dropout", type=cli.float_list_or_none, default=[0.2])
    p.add_argument("--image-shape", type=cli.shape3)
    return p


def usage_error(argv, capsys) -> str:
    """Parse argv, expect exit code 2 and exactly one error line; return it."""
    with pytest.raises(SystemExit) as info:
        full_parser().parse_args(argv)
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0] and lines[0].endswith("(see --help)")
    return lines[0]


def test_defaults():
    a = full_parser().parse_args([])
    assert (a.dataset, a.limit, a.val_split, a.epochs, a.batch_size, a.seed) == (None, 0, 0.1, 3, 32, 42)
    assert cli.dataset_name(a) == "mnist" and not cli.dataset_is_explicit(a)
    assert (a.optimizer, a.lr, a.momentum, a.weight_decay, a.grad_clip) == ("adam", 1e-3, 0.9, 0.0, None)
    assert (a.lr_schedule, a.min_lr, a.gamma, a.reduce_factor, a.reduce_patience) == ("none", 1e-5, 0.1, 0.5, 3)
    assert (a.early_patience, a.early_delta, a.early_metric) == (5, 1e-4, "val_loss")
    assert (a.lookahead, a.lookahead_k, a.lookahead_alpha) == (False, 5, 0.5)
    assert str(a.run_dir) == "runs" and a.resume is None and not a.gpu
    assert cli.augment_overrides(a) == {}


def test_the_original_readme_command_parses():
    argv = ("--epochs 3 --batch-size 128 --gpu --hidden-sizes 512,256,128 --batchnorm --dropout 0.2 "
            "--lr-schedule cosine --val-split 0.1 --early-stopping").split()
    p = full_parser()
    p.add_argument("--batchnorm", action="store_true")
    a = p.parse_args(argv)
    assert a.hidden_sizes == [512, 256, 128] and a.dropout == [0.2] and a.lr_schedule == "cosine"


def test_typed_values():
    a = full_parser().parse_args(
        ["--dataset", "synth-digits", "--hidden-activations", "ReLU,leaky-relu", "--dropout", "0.3,none,off",
         "--image-shape", "3,32,32", "--lr-schedule", "reduce_on_plateau", "--milestones", "5,10"])
    assert cli.dataset_is_explicit(a) and cli.dataset_name(a) == "synth-digits"
    assert a.hidden_activations == ["relu", "leaky_relu"]
    assert a.dropout == [0.3, 0.0, 0.0]
    assert a.image_shape == (3, 32, 32)
    assert a.lr_schedule == "plateau" and a.milestones == [5, 10]


@pytest.mark.parametrize("argv, message", [
    (["--hidden-sizes", "256,abc"], "'abc' is not an integer"),
    (["--hidden-sizes", "256,,128"], "empty item"),
    (["--hidden-sizes", "256,0"], "0 must be >= 1"),
    (["--hidden-activations", "relu,swishy"], "'swishy' is not one of relu, gelu, leaky_relu"),
    (["--dropout", "0.2,1.0"], "must be in [0, 1)"),
    (["--dropout", "lots"], "'lots' is not a number"),
    (["--val-split", "0.95"], "0.95 must be in [0.0, 0.9]"),
    (["--val-split", "-0.1"], "must be in [0.0, 0.9]"),
    (["--epochs", "0"], "0 must be >= 1"),
    (["--batch-size", "ten"], "'ten' is not an integer"),
    (["--lr", "0"], "0 must be > 0.0"),
    (["--lr", "nan"], "is not a number"),
    (["--seed", "-1"], "-1 must be in [0, 4294967295]"),
    (["--augment-hflip-prob", "1.5"], "1.5 must be in [0.0, 1.0]"),
    (["--optimizer", "adagrad"], "invalid choice: 'adagrad'"),
    (["--lr-schedule", "linear"], "invalid choice: 'linear'"),
    (["--milestones", "10,5"], "strictly increasing"),
    (["--image-shape", "3,32"], "expected 3 values"),
    (["--early-metric", "acc"], "invalid choice: 'acc'"),
    (["--load", "a.h5", "--resume", "b.h5"], "not allowed with argument"),
])
def test_bad_values_exit_2_with_a_message(argv, message, capsys):
    line = usage_error(argv, capsys)
    assert message in line, line


def test_augment_overrides_use_config_field_names():
    a = full_parser().parse_args(["--augment-max-shift", "3", "--augment-hflip-prob", "0", "--augment-mixup-alpha",
                                  "0.4", "--augment-randaug-layers", "2", "--augment-randaug-magnitude", "0.7"])
    assert cli.augment_overrides(a) == {"max_shift": 3, "hflip_prob": 0.0, "mixup_alpha": 0.4,
                                        "randaug_layers": 2, "randaug_magnitude": 0.7}


def test_augment_overrides_fit_augment_config():
    augment = pytest.importorskip("common.augment")
    a = full_parser().parse_args(["--augment-rotate-deg", "0", "--augment-cutmix-prob", "0.5"])
    config = augment.AugmentConfig.for_dataset("mnist", **cli.augment_overrides(a))
    assert config.rotate_deg == 0 and config.cutmix_prob == 0.5


def test_no_mix_flags_without_allow_mix(capsys):
    p = argparse.ArgumentParser()
    cli.add_augment_args(p, allow_mix=False)
    with pytest.raises(SystemExit):
        p.parse_args(["--augment-cutmix-prob", "0.5"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_old_noise_clip_flag_is_accepted_with_one_warning(capsys, monkeypatch):
    monkeypatch.setattr(cli.flags, "_warned", set())
    p = full_parser()
    p.parse_args(["--augment-noise-clip", "3"])
    p.parse_args(["--augment-noise-clip", "2"])
    assert capsys.readouterr().err.count("--augment-noise-clip is ignored") == 1


def test_help_shows_examples_and_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        full_parser().parse_args(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:\n  python vectorized/main.py --epochs 3" in out
    assert "(default: 42)" in out and "falls back to synth-digits" in out


def test_broadcast_list():
    assert cli.broadcast_list(["relu"], 3, "--hidden-activations") == ["relu"] * 3
    assert cli.broadcast_list([0.3, 0.2], 2, "--dropout") == [0.3, 0.2]
    with pytest.raises(UserError, match="--dropout has 2 values but there are 3 hidden layers; give 1 value or 3"):
        cli.broadcast_list([0.3, 0.2], 3, "--dropout")


# --------------------------------------------------------------------------- run folder and header
def test_run_dir_writes_config_and_metrics(tmp_path):
    run = cli.RunDir(tmp_path / "runs", "vectorized-mlp")
    other = cli.RunDir(tmp_path / "runs", "vectorized-mlp")
    assert run.path != other.path and run.path.name.startswith("vectorized-mlp-")
    run.save_config({"lr": 1e-3, "data_dir": tmp_path})
    assert json.loads((run.path / "config.json").read_text())["data_dir"] == str(tmp_path)
    run.log_metrics({"epoch": 1, "loss": 0.5, "val_acc": 0.9})
    again = cli.RunDir.for_checkpoint(run.checkpoint_path("last"))  # a resumed run appends
    again.log_metrics({"epoch": 2, "loss": 0.25, "val_acc": 0.95})
    rows = list(csv.DictReader((run.path / "metrics.csv").open()))
    assert rows == [{"epoch": "1", "loss": "0.5", "val_acc": "0.9"}, {"epoch": "2", "loss": "0.25", "val_acc": "0.95"}]
    assert run.checkpoint_path("best") == run.path / "best.h5"
    assert run.plot_path("curves") == run.path / "curves.png"
    with pytest.raises(ValueError):
        run.checkpoint_path("middle")


def test_run_header():
    line = cli.run_header(tier="conv", model="resnet18", dataset="synth-digits", fell_back=True,
                          device="CPU (NumPy)", seed=42, params=11172810)
    assert line == ("[nnott] tier=conv model=resnet18 dataset=synth-digits (fallback: mnist unavailable) "
                    "device=CPU (NumPy) seed=42 params=11,172,810")
    line = cli.run_header(tier="scalar", model="mlp", dataset="mnist", device="CPU", seed=1, params=5,
                          extra={"limit": 6000})
    assert line.endswith("params=5 limit=6000") and "fallback" not in line


# --------------------------------------------------------------------------- exit codes
def raiser(exc):
    def main(argv):
        raise exc
    return main


def test_run_main_success_and_return_code():
    assert cli.run_main(lambda argv: None, []) == 0
    assert cli.run_main(lambda argv: 3, []) == 3


def test_run_main_user_error(capsys):
    assert cli.run_main(raiser(CheckpointError("checkpoint not found: x.h5")), []) == 1
    assert capsys.readouterr().err == "error: checkpoint not found: x.h5\n"


def test_run_main_unexpected_error_hides_traceback_unless_debug(capsys):
    assert cli.run_main(raiser(ZeroDivisionError("division\nby zero")), []) == 1
    err = capsys.readouterr().err
    assert err == "error: ZeroDivisionError: division by zero (run with --debug for the traceback)\n"
    assert cli.run_main(raiser(ZeroDivisionError("boom")), ["--debug"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_run_main_interrupts(capsys, tmp_path):
    assert cli.run_main(raiser(KeyboardInterrupt()), []) == 130
    assert "interrupted" in capsys.readouterr().err
    ckpt = tmp_path / "run 1" / "last.h5"
    argv = ["--epochs", "5", "--resume", "old.h5", "--lr=0.1"]
    assert cli.run_main(raiser(cli.TrainingInterrupted(ckpt)), argv) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"interrupted: checkpoint saved to {ckpt}; resume with: python ")
    assert err.endswith(f"--epochs 5 --lr=0.1 --resume '{ckpt}'")


def test_save_on_interrupt_turns_ctrl_c_into_training_interrupted(tmp_path):
    with pytest.raises(cli.TrainingInterrupted) as info:
        with cli.save_on_interrupt(lambda: tmp_path / "last.h5"):
            raise KeyboardInterrupt
    assert info.value.checkpoint_path == tmp_path / "last.h5"


def test_usage_errors_pass_through_run_main():
    def main(argv):
        full_parser().parse_args(argv)

    with pytest.raises(SystemExit) as info:
        cli.run_main(main, ["--epochs", "x"])
    assert info.value.code == 2


def test_resume_command_for_a_console_script():
    cmd = cli.resume_command("runs/a/last.h5", ["--load", "w.h5", "--gpu"], prog="/venv/bin/nnott-cnn")
    assert cmd == "nnott-cnn --gpu --resume runs/a/last.h5"


def test_entry_point_runs_from_any_folder(tmp_path):
    """The two-line bootstrap makes `python <tier>/main.py` work outside the repo root."""
    root = Path(cli.__file__).resolve().parents[2]  # common/cli/__init__.py -> repository root
    tier = tmp_path / "tier"
    tier.mkdir()
    (tier / "main.py").write_text(textwrap.dedent(f"""
        import sys, pathlib
        sys.path.insert(0, {str(root)!r})
        from common.cli import bootstrap_repo_path, run_main
        from common.errors import UserError
        assert bootstrap_repo_path() == bootstrap_repo_path(__file__)
        print(bootstrap_repo_path())
        def main(argv):
            raise UserError("no such dataset 'x'")
        sys.exit(run_main(main))
    """))
    out = subprocess.run([sys.executable, str(tier / "main.py")], cwd=tmp_path / "tier",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stdout.strip() == str(tmp_path)
    assert out.stderr == "error: no such dataset 'x'\n"


def test_mlp_args_and_layers(capsys):
    p = argparse.ArgumentParser()
    cli.add_mlp_args(p, ("relu", "gelu", "tanh"), dropout_flags=("--hidden-dropout", "--dropout"))
    a = p.parse_args([])
    assert cli.mlp_layers(a) == ([256, 128, 64], ["relu"] * 3, [0.2] * 3)
    a = p.parse_args("--hidden-sizes 256,128,64 --hidden-activations relu,gelu,tanh "
                     "--hidden-dropout 0.3,0.2,0.1".split())
    assert cli.mlp_layers(a) == ([256, 128, 64], ["relu", "gelu", "tanh"], [0.3, 0.2, 0.1])
    assert p.parse_args(["--dropout", "off"]).dropout == [0.0]
    with pytest.raises(UserError, match="--hidden-activations has 2 values but there are 3 hidden layers"):
        cli.mlp_layers(p.parse_args(["--hidden-activations", "relu,gelu"]))
    with pytest.raises(SystemExit):
        p.parse_args(["--activation", "swish"])
    assert "invalid choice: 'swish'" in capsys.readouterr().err
