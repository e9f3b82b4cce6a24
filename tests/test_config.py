"""--config FILE.yaml: keys are flag names, values are checked like flags, the command line wins."""
from pathlib import Path

import pytest

from common.config import ConfigError, config_values, load_config, save_run_config
from common.sweep import load_sweep, trial_name

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = ("scalar", "vectorized", "convolutional")


def parser_of(tier):
    import importlib

    return importlib.import_module(f"{tier}.main").build_parser()


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def usage_error(capsys, parser, argv):
    """Parse argv, expect exit 2, return the one stderr line."""
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_keys_take_every_spelling_and_values_go_through_the_flag_types(tmp_path):
    path = write(tmp_path, "arch: lenet\nbatch-size: 16\n--epochs: 4\nweight_decay: 0.0\nlr: 1e-3\n"
                           "lr-schedule: reduce_on_plateau\nmilestones: [2, 3]\nplot: true\nimage-size: null\n")
    args = parser_of("convolutional").parse_args(["--config", str(path)])
    assert (args.arch, args.batch_size, args.epochs, args.weight_decay, args.lr) == ("lenet", 16, 4, 0.0, 0.001)
    assert args.lr_schedule == "plateau" and args.milestones == [2, 3] and args.plot is True
    assert args.image_size is None and args.config == path


def test_the_command_line_overrides_the_file(tmp_path):
    path = write(tmp_path, "epochs: 4\nlr: 0.01\nhidden-sizes: [32, 16]\n")
    args = parser_of("vectorized").parse_args(["--epochs", "2", "--config", str(path), "--hidden-sizes", "8"])
    assert args.epochs == 2 and args.lr == 0.01 and args.hidden_sizes == [8]


def test_the_scalar_tier_reads_its_own_dropout_flag(tmp_path):
    path = write(tmp_path, "hidden-sizes: [8, 4]\nhidden-dropout: [0.1, none]\nhidden-activations: [relu, tanh]\n")
    args = parser_of("scalar").parse_args(["--config", str(path)])
    assert args.hidden_sizes == [8, 4] and args.hidden_dropout == [0.1, 0.0] and args.hidden_activations == ["relu", "tanh"]


@pytest.mark.parametrize("text, words", [
    ("epochs: 2\nlrr: 0.1\n", ["line 2", "'lrr'", "did you mean 'lr'"]),
    ("epochs: 2.5\n", ["line 1", "epochs", "not an integer"]),
    ("lr: fast\n", ["line 1", "lr", "not a number"]),
    ("optimizer: adamax\n", ["line 1", "optimizer", "not one of"]),
    ("plot: 1\n", ["line 1", "plot", "true or false"]),
    ("lr: [0.1, 0.2]\n", ["line 1", "lr", "not a list"]),
    ("epochs: true\n", ["line 1", "epochs", "not true"]),
    ("epochs: null\n", ["line 1", "epochs", "needs a value"]),
    ("lr: 0.1\nlr: 0.2\n", ["line 2", "again", "line 1"]),
    ("- lr\n", ["line 1", "mapping"]),
    ("lr: [0.1\n", ["not valid YAML"]),
])
def test_a_bad_file_is_one_line_naming_file_line_and_key(tmp_path, capsys, text, words):
    path = write(tmp_path, text)
    err = usage_error(capsys, parser_of("vectorized"), ["--config", str(path)])
    assert str(path) in err
    for word in words:
        assert word in err


def test_a_missing_config_file_is_a_usage_error(tmp_path, capsys):
    err = usage_error(capsys, parser_of("scalar"), ["--config", str(tmp_path / "none.yaml")])
    assert "does not exist" in err


@pytest.mark.parametrize("tier", LAUNCHERS)
def test_every_launcher_documents_config_and_tensorboard(tier):
    text = parser_of(tier).format_help()
    assert "--config FILE.yaml" in text and "--tensorboard" in text


def test_the_saved_config_reproduces_the_parsed_flags(tmp_path):
    parser = parser_of("convolutional")
    args = parser.parse_args(["resnet18", "--epochs", "3", "--milestones", "1,2", "--lookahead", "--dataset",
                              "synth-digits", "--data-dir", str(tmp_path), "--save", "x.h5", "--debug"])
    path = save_run_config(tmp_path, args, parser)
    text = path.read_text()
    assert text.startswith("# The flags of this run") and "milestones: [1, 2]" in text
    assert "save:" not in text and "debug:" not in text  # a rerun must not overwrite the saved model
    again = parser_of("convolutional").parse_args(["--config", str(path)])
    skip = {"config", "save", "debug", "resume"}
    assert {k: v for k, v in vars(again).items() if k not in skip} == \
        {k: v for k, v in vars(args).items() if k not in skip}
    assert config_values(args, parser)["batch-size"] == 64


def shipped(kind):
    return sorted((ROOT / "configs").glob(f"{kind}/*.yaml"))


@pytest.mark.parametrize("path", [p for t in LAUNCHERS for p in shipped(t)], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads(path):
    values = load_config(parser_of(path.parent.name), path)
    assert values  # each file sets something
    parser_of(path.parent.name).parse_args(["--config", str(path)])


@pytest.mark.parametrize("path", shipped("sweeps"), ids=lambda p: p.name)
def test_every_shipped_sweep_loads(path):
    from scripts.sweep import launcher_parser
    from common.sweep import read_spec

    spec, _ = read_spec(path)
    sweep = load_sweep(path, launcher_parser(spec["launcher"]))
    assert len(sweep.trials) >= 2 and len({t.id for t in sweep.trials}) == len(sweep.trials)


def test_shipped_configs_cover_each_tier_and_the_classic_experiments():
    names = {f"{p.parent.name}/{p.name}" for p in (ROOT / "configs").glob("*/*.yaml")}
    assert {"convolutional/lenet-mnist.yaml", "convolutional/resnet18-cifar10.yaml", "sweeps/optimizers.yaml"} <= names
    assert all(shipped(t) for t in LAUNCHERS)


# ------------------------------------------------------------------ sweep files
def sweep_file(tmp_path, body, launcher="vectorized"):
    return write(tmp_path, f"launcher: {launcher}\n{body}", "sweep.yaml")


def test_a_grid_is_every_combination_in_order(tmp_path):
    path = sweep_file(tmp_path, "fixed:\n  epochs: 1\nparams:\n  optimizer: [sgd, adam]\n  lr: [0.001, 0.01]\n"
                                "  hidden-sizes: [[8], [16, 8]]\n")
    sweep = load_sweep(path, parser_of("vectorized"))
    assert len(sweep.trials) == 8
    assert sweep.trials[0].params == {"optimizer": "sgd", "lr": 0.001, "hidden-sizes": [8]}
    assert sweep.trials[0].settings["epochs"] == 1
    assert sweep.trials[-1].id == "t08-optimizer=adam-lr=0.01-hidden-sizes=16,8"


def test_a_random_search_is_seeded_and_stays_in_its_ranges(tmp_path):
    body = ("search: random\ntrials: 5\nseed: 4\nparams:\n  lr: {log_uniform: [1.0e-4, 1.0e-2]}\n"
            "  epochs: {int_uniform: [1, 3]}\n  optimizer: [sgd, adam]\n")
    first = load_sweep(sweep_file(tmp_path, body), parser_of("vectorized"))
    again = load_sweep(sweep_file(tmp_path, body), parser_of("vectorized"))
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    assert len(first.trials) == 5
    for t in first.trials:
        assert 1e-4 <= t.params["lr"] <= 1e-2 and t.params["epochs"] in (1, 2, 3)
        assert t.params["optimizer"] in ("sgd", "adam")


@pytest.mark.parametrize("body, words", [
    ("params:\n  lr: {uniform: [0.1, 0.2]}\n", ["line 3", "lr", "search: random"]),
    ("search: random\ntrials: 2\nparams:\n  lr: {log_uniform: [0, 1]}\n", ["line 5", "low > 0"]),
    ("fixed:\n  epochz: 2\nparams:\n  lr: [0.1]\n", ["line 3", "'epochz'"]),
    ("params:\n  run-dir: [a, b]\n", ["line 3", "chosen by the sweep"]),
    ("params:\n  lr: [0.1, slow]\n", ["line 3", "not a number"]),
    ("param:\n  lr: [0.1]\n", ["line 2", "'param' is not a sweep key"]),
    ("search: random\nparams:\n  lr: [0.1]\n", ["trials: N"]),
])
def test_a_bad_sweep_file_names_the_line(tmp_path, body, words):
    with pytest.raises(ConfigError) as info:
        load_sweep(sweep_file(tmp_path, body), parser_of("vectorized"))
    for word in words:
        assert word in str(info.value)


def test_trial_names_are_safe_folder_names():
    assert trial_name(3, {"dataset": "/data/x y", "lr": 0.0003}) == "t03-dataset=_data_x_y-lr=0.0003"
