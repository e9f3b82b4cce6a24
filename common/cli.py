"""Command-line helpers shared by every entry point: one definition of each flag.

A launcher builds its parser from argument groups and runs through :func:`run_main`::

    parser = make_parser("Train an MLP.", ["python vectorized/main.py --epochs 3"])
    add_data_args(parser)
    add_training_args(parser, epochs=10, batch_size=128)
    ...
    if __name__ == "__main__":
        sys.exit(run_main(main))

Entry points run as a file path (``python convolutional/main.py``) from any folder. Python
then puts the tier folder, not the repository root, on ``sys.path``, so ``import common``
fails until the root is added. ``common`` cannot do that for you before it is importable,
so each entry point starts with two lines::

    import sys, pathlib
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root

(:func:`bootstrap_repo_path` does the same for files deeper in the tree.)
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import traceback
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from common.errors import UserError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "multistep", "cosine", "plateau", "restarts")
_SCHEDULE_ALIASES = {"reduce_on_plateau": "plateau", "reduce-on-plateau": "plateau"}
DEFAULT_DATASET = "mnist"
MAX_SEED = 2**32 - 1


# --------------------------------------------------------------------------- typed values
def _number(text: str, cast, what: str):
    try:
        return cast(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def _ranged(cast, what, lo=None, hi=None, lo_open=False, hi_open=False, name=None):
    """A type function: ``cast`` the text and check lo <= value <= hi (strict where open)."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"

    def check(text):
        value = _number(text, cast, what)
        if value != value:  # NaN
            raise argparse.ArgumentTypeError(f"{text!r} is not a number")
        bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
        bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
        if bad_lo or bad_hi:
            if hi is None:
                rule = f"> {lo}" if lo_open else f">= {lo}"
            else:
                rule = f"in {left}{lo}, {hi}{right}"
            raise argparse.ArgumentTypeError(f"{text} must be {rule}")
        return value

    check.__name__ = name or what
    return check


positive_int = _ranged(int, "an integer", lo=1, name="positive_int")
nonneg_int = _ranged(int, "an integer", lo=0, name="nonneg_int")
positive_float = _ranged(float, "a number", lo=0.0, lo_open=True, name="positive_float")
nonneg_float = _ranged(float, "a number", lo=0.0, name="nonneg_float")
probability = _ranged(float, "a number", lo=0.0, hi=1.0, name="probability")
seed_value = _ranged(int, "an integer", lo=0, hi=MAX_SEED, name="seed")


def float_range(lo: float, hi: float, *, hi_open: bool = False, lo_open: bool = False):
    """Type function for a float in [lo, hi] (open ends where asked)."""
    return _ranged(float, "a number", lo, hi, lo_open, hi_open, name="float_range")


def _items(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item; use a comma list like 512,256,128")
    return items


def int_list(text: str) -> list[int]:
    """'512,256,128' -> [512, 256, 128]."""
    out = []
    for item in _items(text):
        try:
            out.append(int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text}: {item!r} is not an integer") from None
    return out


def positive_int_list(text: str) -> list[int]:
    """Like :func:`int_list`, every value >= 1 (layer widths, milestones)."""
    values = int_list(text)
    for v in values:
        if v < 1:
            raise argparse.ArgumentTypeError(f"{text}: {v} must be >= 1")
    return values


def increasing_int_list(text: str) -> list[int]:
    """Positive, strictly increasing integers ('5,10,15'), e.g. LR milestones."""
    values = positive_int_list(text)
    if any(b <= a for a, b in zip(values, values[1:])):
        raise argparse.ArgumentTypeError(f"{text}: values must be strictly increasing")
    return values


def float_list_or_none(text: str) -> list[float]:
    """Dropout rates: '0.2' or '0.3,0.2,0.1'; 'none' or 'off' mean 0. Each in [0, 1)."""
    out = []
    for item in _items(text):
        if item.lower() in ("none", "off"):
            out.append(0.0)
            continue
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text}: {item!r} is not a number (or 'none')") from None
        if not 0.0 <= value < 1.0:
            raise argparse.ArgumentTypeError(f"{text}: {item} must be in [0, 1)")
        out.append(value)
    return out


def name_list(choices):
    """Type function for a comma list of names from ``choices`` ('relu,gelu'); '-' reads as '_'."""
    choices = tuple(choices)

    def parse(text: str) -> list[str]:
        out = []
        for item in _items(text):
            name = item.lower()
            if name not in choices and name.replace("-", "_") in choices:
                name = name.replace("-", "_")
            if name not in choices:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(choices)}")
            out.append(name)
        return out

    parse.__name__ = "name_list"
    return parse


def shape3(text: str) -> tuple[int, int, int]:
    """'3,32,32' -> (3, 32, 32): channels, height, width."""
    values = positive_int_list(text)
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text}: expected 3 values C,H,W like 3,32,32")
    return tuple(values)


def _schedule_name(text: str) -> str:
    name = text.strip().lower()
    return _SCHEDULE_ALIASES.get(name, name)


def broadcast_list(values, n: int, flag: str, what: str = "hidden layers") -> list:
    """One value -> repeated n times; n values -> kept; anything else is a UserError."""
    values = list(values)
    if len(values) == 1:
        return values * n
    if len(values) == n:
        return values
    raise UserError(f"{flag} has {len(values)} values but there are {n} {what}; give 1 value or {n}")


# --------------------------------------------------------------------------- parser and groups
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends '(default: X)' where a default exists."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" not in text and "(default:" not in text and action.option_strings
                and action.default is not None and action.default is not False
                and action.default is not argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``prog: error: <what is wrong> (see --help)``, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def make_parser(description: str, epilog_examples=(), prog: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser whose --help ends with example commands."""
    epilog = None
    if epilog_examples:
        epilog = "examples:\n" + "\n".join(f"  {cmd}" for cmd in epilog_examples)
    return ArgumentParser(prog=prog, description=description, epilog=epilog,
                          formatter_class=HelpFormatter, allow_abbrev=False)


def add_data_args(parser, default_limit: int | None = None, *, image_size: bool = False,
                  default_val_split: float = 0.1):
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default=None, metavar="NAME",
                   help="mnist, fashion-mnist, cifar10, synth-digits, synth-digits-rgb, or a folder of "
                        f"IDX / .npy files / class sub-folders (default: {DEFAULT_DATASET}; when not given "
                        "and MNIST cannot be downloaded, falls back to synth-digits with a warning)")
    g.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="dataset cache folder (default: $NNOTT_DATA, else ~/.cache/nnott)")
    g.add_argument("--limit", type=nonneg_int, default=default_limit or 0, metavar="N",
                   help="keep a class-balanced subset of N training images; 0 = all")
    g.add_argument("--val-split", type=float_range(0.0, 0.9), default=default_val_split, metavar="F",
                   help="fraction of the training set held out for validation, in [0, 0.9]")
    if image_size:
        g.add_argument("--image-size", type=positive_int, default=None, metavar="S",
                       help="resize images to S x S (default: the dataset's own size)")
    return g


def dataset_is_explicit(args) -> bool:
    """True when the user typed --dataset (an explicit dataset never falls back)."""
    return getattr(args, "dataset", None) is not None


def dataset_name(args) -> str:
    """The dataset to load: --dataset, or the default."""
    return args.dataset if dataset_is_explicit(args) else DEFAULT_DATASET


def add_mlp_args(parser, activations, *, dropout_flags=("--dropout",), default_hidden=(256, 128, 64),
                 default_activation: str = "relu", default_dropout: float = 0.2):
    """MLP shape flags of the scalar and vectorized tiers; read them back with :func:`mlp_layers`.

    ``activations`` are the names the tier knows. ``dropout_flags`` names the dropout flag(s):
    the scalar tier's old name is ``--hidden-dropout``.
    """
    g = parser.add_argument_group("model")
    g.add_argument("--hidden-sizes", type=positive_int_list, default=list(default_hidden), metavar="W1,W2,...",
                   help="widths of the hidden layers (default: %s)" % ",".join(map(str, default_hidden)))
    g.add_argument("--activation", type=str.lower, choices=tuple(activations), default=default_activation,
                   help="activation of every hidden layer")
    g.add_argument("--hidden-activations", type=name_list(activations), default=None, metavar="A1,A2,...",
                   help="one activation per hidden layer (overrides --activation)")
    g.add_argument(*dropout_flags, dest="dropout", type=float_list_or_none, default=[default_dropout],
                   metavar="P", help="drop probability: one value or one per hidden layer; "
                                     f"'none' = 0 (default: {default_dropout})")
    return g


def mlp_layers(args) -> tuple[list[int], list[str], list[float]]:
    """(hidden sizes, one activation per layer, one dropout per layer), lengths checked."""
    sizes = list(args.hidden_sizes)
    n = len(sizes)
    acts = broadcast_list(args.hidden_activations or [args.activation], n, "--hidden-activations")
    drops = broadcast_list(args.dropout, n, "dropout")
    return sizes, acts, drops


def add_training_args(parser, epochs: int, batch_size: int):
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=epochs, metavar="N", help="training epochs")
    g.add_argument("--batch-size", type=positive_int, default=batch_size, metavar="N", help="mini-batch size")
    g.add_argument("--seed", type=seed_value, default=42, help="seed for every random stream")
    g.add_argument("--early-stopping", action="store_true",
                   help="stop when --early-metric stops improving and restore the best weights "
                        "(needs --val-split > 0)")
    g.add_argument("--early-patience", type=positive_int, default=5, metavar="N",
                   help="epochs without improvement before stopping")
    g.add_argument("--early-delta", type=nonneg_float, default=1e-4, metavar="D",
                   help="smallest change that counts as an improvement")
    g.add_argument("--early-metric", choices=("val_loss", "val_acc"), default="val_loss",
                   help="metric watched by early stopping")
    return g


def add_optimizer_args(parser, default_optimizer: str = "adam", default_lr: float = 1e-3,
                       choices=OPTIMIZERS, *, default_weight_decay: float = 0.0,
                       stabilizers: bool = True, label_smoothing: bool = True):
    """Optimizer flags; ``stabilizers`` adds --grad-clip and --lookahead*."""
    g = parser.add_argument_group("optimizer")
    g.add_argument("--optimizer", choices=tuple(choices), default=default_optimizer,
                   help="update rule (momentum = SGD with heavy-ball momentum)")
    g.add_argument("--lr", type=positive_float, default=default_lr, help="learning rate")
    g.add_argument("--momentum", type=float_range(0.0, 1.0, hi_open=True), default=0.9,
                   help="momentum for momentum/nesterov, rho for rmsprop")
    g.add_argument("--weight-decay", type=nonneg_float, default=default_weight_decay,
                   help="L2 penalty (decoupled for adamw)")
    if label_smoothing:
        g.add_argument("--label-smoothing", type=float_range(0.0, 1.0, hi_open=True), default=0.0,
                       metavar="EPS", help="mix EPS of a uniform distribution into the targets")
    if stabilizers:
        g.add_argument("--grad-clip", type=positive_float, default=None, metavar="NORM",
                       help="clip the global gradient norm (of the mean gradient) to NORM")
        g.add_argument("--lookahead", action="store_true", help="wrap the optimizer in Lookahead")
        g.add_argument("--lookahead-k", type=positive_int, default=5, metavar="K",
                       help="fast steps between Lookahead synchronisations")
        g.add_argument("--lookahead-alpha", type=float_range(0.0, 1.0, lo_open=True), default=0.5,
                       metavar="A", help="Lookahead step size toward the fast weights, in (0, 1]")
    return g


def add_schedule_args(parser, default: str = "none"):
    g = parser.add_argument_group("learning-rate schedule")
    g.add_argument("--lr-schedule", type=_schedule_name, choices=SCHEDULES, default=default,
                   help="how the learning rate changes per epoch (reduce_on_plateau = plateau)")
    g.add_argument("--min-lr", type=nonneg_float, default=1e-5, help="lowest LR for cosine, restarts, plateau")
    g.add_argument("--warmup-epochs", type=nonneg_int, default=0, metavar="N",
                   help="linear warm-up epochs before the schedule starts")
    g.add_argument("--step-size", type=positive_int, default=None, metavar="N",
                   help="step: multiply the LR by --gamma every N epochs (default: a third of --epochs)")
    g.add_argument("--milestones", type=increasing_int_list, default=None, metavar="E1,E2",
                   help="multistep: epochs where the LR is multiplied by --gamma "
                        "(default: 50%% and 75%% of --epochs)")
    g.add_argument("--gamma", type=positive_float, default=0.1, help="step/multistep LR factor")
    g.add_argument("--reduce-factor", type=float_range(0.0, 1.0, lo_open=True, hi_open=True), default=0.5,
                   help="plateau: LR factor when the validation loss stalls")
    g.add_argument("--reduce-patience", type=nonneg_int, default=3, metavar="N",
                   help="plateau: epochs without improvement before reducing")
    g.add_argument("--reduce-delta", type=nonneg_float, default=1e-4, metavar="D",
                   help="plateau: smallest change that counts as an improvement")
    g.add_argument("--restart-period", type=positive_int, default=None, metavar="N",
                   help="restarts: epochs in each cosine cycle (default: a third of --epochs)")
    return g


_AUGMENT_FLAGS = {  # AugmentConfig field: (flag, type, help)
    "max_shift": ("--augment-max-shift", nonneg_int, "random shift radius in pixels (zero fill)"),
    "rotate_deg": ("--augment-rotate-deg", nonneg_float, "largest rotation in degrees; 0 = off"),
    "rotate_prob": ("--augment-rotate-prob", probability, "probability of rotating an image"),
    "hflip_prob": ("--augment-hflip-prob", probability, "horizontal flip probability (0 for digits)"),
    "vflip_prob": ("--augment-vflip-prob", probability, "vertical flip probability"),
    "noise_std": ("--augment-noise-std", nonneg_float, "std of the Gaussian noise, in [0, 1] pixel units"),
    "noise_prob": ("--augment-noise-prob", probability, "probability of adding noise"),
    "cutout_prob": ("--augment-cutout-prob", probability, "probability of cutout"),
    "cutout_size": ("--augment-cutout-size", positive_int, "side of the cutout square in pixels"),
    "randaug_layers": ("--augment-randaug-layers", nonneg_int, "RandAugment ops per image; 0 = off"),
    "randaug_magnitude": ("--augment-randaug-magnitude", probability, "RandAugment magnitude in [0, 1]"),
}
_MIX_FLAGS = {
    "cutmix_prob": ("--augment-cutmix-prob", probability, "probability of CutMix per batch"),
    "cutmix_alpha": ("--augment-cutmix-alpha", positive_float, "CutMix Beta(alpha, alpha) parameter"),
    "mixup_prob": ("--augment-mixup-prob", probability, "probability of MixUp per batch"),
    "mixup_alpha": ("--augment-mixup-alpha", positive_float, "MixUp Beta(alpha, alpha) parameter"),
}
_warned = set()


class _DeprecatedNoOp(argparse.Action):
    """Accepts an old flag so old commands still run, and warns once that it does nothing."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string not in _warned:
            _warned.add(option_string)
            print(f"[warn] {option_string} is ignored: {self.help}", file=sys.stderr)


def add_augment_args(parser, allow_mix: bool = True):
    """Augmentation flags. Unset values (None) mean "the dataset's default"."""
    g = parser.add_argument_group("augmentation", "unset values use the dataset's defaults")
    g.add_argument("--no-augment", action="store_true", help="train without augmentation")
    flags = dict(_AUGMENT_FLAGS, **(_MIX_FLAGS if allow_mix else {}))
    for field_name, (flag, kind, text) in flags.items():
        g.add_argument(flag, dest=f"augment_{field_name}", type=kind, default=None, metavar="X", help=text)
    g.add_argument("--augment-noise-clip", action=_DeprecatedNoOp, type=float, default=None,
                   metavar="X", help="noisy pixels are always clipped to [0, 1] now (accepted so old commands run)")
    return g


def augment_overrides(args) -> dict:
    """The augmentation flags the user set, as AugmentConfig field names (None values left out)."""
    out = {}
    for field_name in (*_AUGMENT_FLAGS, *_MIX_FLAGS):
        value = getattr(args, f"augment_{field_name}", None)
        if value is not None:
            out[field_name] = value
    return out


def add_checkpoint_args(parser, default_run_dir: str = "runs"):
    g = parser.add_argument_group("checkpoints and run directory")
    g.add_argument("--save", type=Path, default=None, metavar="PATH",
                   help="also write the final checkpoint to PATH (.h5)")
    load = g.add_mutually_exclusive_group()
    load.add_argument("--load", type=Path, default=None, metavar="PATH",
                      help="start from the weights in PATH (a fresh optimizer and schedule)")
    load.add_argument("--resume", type=Path, default=None, metavar="PATH",
                      help="continue the run saved in PATH exactly where it stopped, e.g. runs/<name>/last.h5")
    g.add_argument("--run-dir", type=Path, default=Path(default_run_dir), metavar="DIR",
                   help="parent folder of the per-run folders (config, metrics, plots, checkpoints)")
    g.add_argument("--run-name", default=None, metavar="NAME",
                   help="run folder name prefix (default: tier and model)")
    return g


def add_device_args(parser):
    g = parser.add_argument_group("device")
    g.add_argument("--gpu", action="store_true",
                   help="run on the GPU with CuPy (falls back to the CPU with a warning)")
    g.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return g


def add_output_args(parser, *, confusion_matrix: bool = True, misclassified: bool = True):
    g = parser.add_argument_group("output")
    g.add_argument("--plot", action="store_true",
                   help="save figures as PNG in the run folder (and show them where a display exists)")
    if confusion_matrix:
        g.add_argument("--confusion-matrix", action="store_true", help="print the test confusion matrix")
    if misclassified:
        g.add_argument("--show-misclassified", action="store_true",
                       help="print counts and examples of misclassified test images")
    return g


def add_experiment_args(parser, *, epochs: int, batch_size: int, default_lr: float = 1e-3,
                        default_weight_decay: float = 0.0, image_size: bool = False):
    """Every group a tier-2/3 launcher shares: data, training, optimizer, schedule, augmentation,
    checkpoints, device and output (the quickstarts inherit them through their launcher)."""
    add_data_args(parser, image_size=image_size)
    add_training_args(parser, epochs=epochs, batch_size=batch_size)
    add_optimizer_args(parser, default_optimizer="adam", default_lr=default_lr,
                       default_weight_decay=default_weight_decay)
    add_schedule_args(parser)
    add_augment_args(parser, allow_mix=True)
    add_checkpoint_args(parser)
    add_device_args(parser)
    add_output_args(parser)


# --------------------------------------------------------------------------- run folder and header
class RunDir:
    """A folder per run, ``<base>/<name>-<YYYYmmdd-HHMMSS>/``: config, metrics, plots, checkpoints."""

    def __init__(self, base="runs", name: str = "run", *, path=None):
        if path is not None:  # reopen an existing run folder, e.g. to resume
            self.path = Path(path)
            self.path.mkdir(parents=True, exist_ok=True)
            return
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(base).expanduser()
        base.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            candidate = base / (f"{name}-{stamp}" + (f"-{n}" if n > 1 else ""))
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            self.path = candidate
            return
        raise UserError(f"cannot create a run folder under {base}")

    @classmethod
    def for_checkpoint(cls, checkpoint_path) -> "RunDir":
        """The run folder a checkpoint lives in (``--resume runs/x/last.h5`` logs to runs/x)."""
        return cls(path=Path(checkpoint_path).expanduser().parent)

    def save_config(self, config: dict) -> Path:
        out = self.path / "config.json"
        out.write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")
        return out

    def log_metrics(self, row: dict) -> Path:
        """Append one row to metrics.csv; the header comes from the first row ever written."""
        out = self.path / "metrics.csv"
        if out.exists() and out.stat().st_size > 0:
            with out.open(newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh))
        else:
            header = list(row)
            with out.open("w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(header)
        with out.open("a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=header, extrasaction="ignore").writerow(row)
        return out

    def checkpoint_path(self, kind: str = "last") -> Path:
        if kind not in ("last", "best"):
            raise ValueError(f"checkpoint kind must be 'last' or 'best', got {kind!r}")
        return self.path / f"{kind}.h5"

    def plot_path(self, name: str) -> Path:
        return self.path / (name if Path(name).suffix else f"{name}.png")

    def __fspath__(self):
        return str(self.path)

    def __str__(self):
        return str(self.path)


def run_header(*, tier, model, dataset, fell_back=False, device, seed, params, extra=None) -> str:
    """The one line every run prints first.

    ``fell_back``: False, True (MNIST was unavailable) or a reason string.
    """
    data = str(dataset)
    if fell_back:
        data += f" (fallback: {'mnist unavailable' if fell_back is True else fell_back})"
    parts = [f"tier={tier}", f"model={model}", f"dataset={data}", f"device={device}", f"seed={seed}",
             f"params={params:,}" if isinstance(params, int) else f"params={params}"]
    parts += [f"{k}={v}" for k, v in (extra or {}).items()]
    return "[nnott] " + " ".join(parts)


# --------------------------------------------------------------------------- running and exit codes
class TrainingInterrupted(Exception):
    """Ctrl-C during training after a checkpoint was saved; run_main prints how to resume."""

    def __init__(self, checkpoint_path=None):
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        super().__init__(f"interrupted; checkpoint at {self.checkpoint_path}")


@contextmanager
def save_on_interrupt(save_fn):
    """Turn Ctrl-C inside the block into TrainingInterrupted(save_fn()).

    ``save_fn`` writes a checkpoint and returns its path (or None when there is nothing to save).
    """
    try:
        yield
    except KeyboardInterrupt:
        raise TrainingInterrupted(save_fn()) from None


def resume_command(checkpoint_path, argv=None, prog=None) -> str:
    """The command line that continues this run: the same arguments with --resume PATH."""
    args = list(sys.argv[1:] if argv is None else argv)
    kept, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--resume", "--load"):
            skip = True
        elif not a.startswith(("--resume=", "--load=")):
            kept.append(a)
    prog = prog or sys.argv[0]
    head = ["python", prog] if prog.endswith(".py") else [Path(prog).name]
    return shlex.join(head + kept + ["--resume", str(checkpoint_path)])


def run_main(main_fn, argv=None) -> int:
    """Call ``main_fn(argv)`` and turn its outcome into an exit code (0, 1 or 130).

    UserError -> 'error: <msg>', 1. Any other exception -> one line with its type, 1 (``--debug``
    shows the traceback). Ctrl-C -> 130, with a resume command when a checkpoint was saved.
    argparse's own usage errors (SystemExit 2) pass through.
    """
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        code = main_fn(argv)
        return 0 if code is None else int(code)
    except TrainingInterrupted as exc:
        if exc.checkpoint_path is None:
            print("\ninterrupted: no checkpoint was saved", file=sys.stderr)
        else:
            print(f"\ninterrupted: checkpoint saved to {exc.checkpoint_path}; resume with: "
                  f"{resume_command(exc.checkpoint_path, argv)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug:
            traceback.print_exc()
            return 1
        message = " ".join(str(exc).split())
        print(f"error: {type(exc).__name__}: {message} (run with --debug for the traceback)", file=sys.stderr)
        return 1


def bootstrap_repo_path(entry_file=None) -> Path:
    """Put the repository root (the parent of ``entry_file``'s folder) first on sys.path.

    ``entry_file`` defaults to the running script (``__main__.__file__``).
    """
    if entry_file is None:
        entry_file = getattr(sys.modules["__main__"], "__file__", None) or sys.argv[0]
    root = Path(entry_file).resolve().parents[1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root
