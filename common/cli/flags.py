"""Flag groups: one definition of each flag, shared by every launcher.

A launcher builds its parser from these groups (``add_data_args``, ``add_training_args``, ...)
so that the same flag means the same thing everywhere.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli.types import (_schedule_name, broadcast_list, float_list_or_none, float_range, hidden_size_list,
                              increasing_int_list, name_list, nonneg_float, nonneg_int, positive_float,
                              positive_int, probability, seed_value)
from common.dispatch import ENGINES

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "multistep", "cosine", "plateau", "restarts")
DEFAULT_DATASET = "mnist"

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

    def parse_known_args(self, args=None, namespace=None):
        from common.config import apply_config  # --config FILE.yaml: the file's values become defaults

        args = sys.argv[1:] if args is None else list(args)
        apply_config(self, args)
        return super().parse_known_args(args, namespace)


def make_parser(description: str, epilog_examples=(), prog: str | None = None, *,
                config: bool = True) -> argparse.ArgumentParser:
    """An ArgumentParser whose --help ends with example commands; ``config`` adds --config FILE.yaml."""
    epilog = None
    if epilog_examples:
        epilog = "examples:\n" + "\n".join(f"  {cmd}" for cmd in epilog_examples)
    parser = ArgumentParser(prog=prog, description=description, epilog=epilog,
                            formatter_class=HelpFormatter, allow_abbrev=False)
    if config:
        from common.config import add_config_arg

        add_config_arg(parser)
    return parser


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
                   help="keep a class-balanced subset of N training images, and shrink the test set to "
                        "N/5 images (at least one per class) so a quick run stays quick; 0 = all")
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
    g.add_argument("--hidden-sizes", type=hidden_size_list, default=list(default_hidden), metavar="W1,W2,...",
                   help="widths of the hidden layers; \"\" or none = no hidden layer, a linear (softmax-regression) "
                        "classifier (default: %s)" % ",".join(map(str, default_hidden)))
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
    drops = broadcast_list(args.dropout, n, "--dropout")
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
                   help="momentum for momentum/nesterov" + ("; rmsprop uses none and decays its squares "
                                                           "by PyTorch's alpha=0.99" if "rmsprop" in choices else ""))
    g.add_argument("--weight-decay", type=nonneg_float, default=default_weight_decay,
                   help="L2 penalty" + (" (decoupled for adamw)" if "adamw" in choices else ""))
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
    "hflip_prob": ("--augment-hflip-prob", probability, "horizontal flip probability (default 0; "
                   "0.5 suits clothes and photos, never digits)"),
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
    g = parser.add_argument_group(
        "augmentation", "on by default for training batches (off with --no-augment); unset values use the "
        "defaults: shift 2px, rotate 10deg p0.5, noise 0.02 p0.3 (cifar10: shift 4px); no flips, cutout, "
        "mixing or RandAugment unless asked for. The run header prints the augmentation in force.")
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
    g.add_argument("--engine", choices=ENGINES, default="fast",
                   help="'reference': every layer runs the readable code of its own file (slow); "
                        "'fast': the engine's blocked, multi-core replacements (same numbers)")
    g.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return g


def add_output_args(parser, *, confusion_matrix: bool = True, misclassified: bool = True):
    g = parser.add_argument_group("output")
    g.add_argument("--plot", action="store_true",
                   help="save figures as PNG in the run folder (and show them where a display exists)")
    g.add_argument("--tensorboard", action="store_true",
                   help="also log the curves to <run folder>/tensorboard for TensorBoard (needs tensorboardX: "
                        "pip install 'nnott[tensorboard]')")
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
    add_distributed_args(parser)


def add_distributed_args(parser):
    """Data-parallel training over MPI: ``mpiexec -n N python <launcher> --distributed``."""
    g = parser.add_argument_group("distributed (data parallel over MPI)")
    g.add_argument("--distributed", action="store_true",
                   help="one rank of a data-parallel run started by mpiexec -n N: each rank trains on "
                        "its shard of every --batch-size batch (the global batch); needs nnott[mpi]")
    g.add_argument("--sync-bn", action="store_true",
                   help="with --distributed: BatchNorm statistics over the global batch instead of each "
                        "rank's shard")
    return g


# --------------------------------------------------------------------------- toy tasks
def add_toy_args(parser, *, regression: bool = True):
    """Flags of the generated toy tasks (``--dataset rings``, ``moons``, ...; see common.data.toys).

    ``regression`` adds the loss flags of the regression tasks (the vectorized tier only).
    """
    g = parser.add_argument_group("toy tasks (--dataset rings, moons, spirals, blobs, xor"
                                  + (", piecewise, sine)" if regression else ")"))
    g.add_argument("--toy-size", type=positive_int, default=None, metavar="N",
                   help="training points of a toy task; the test set has N/2 (default: 1000)")
    g.add_argument("--toy-noise", type=nonneg_float, default=None, metavar="S",
                   help="std of the Gaussian noise added to the points (regression: to the targets); "
                        "default: the task's own")
    g.add_argument("--toy-classes", type=positive_int, default=None, metavar="K",
                   help="classes of rings and blobs, arms of spirals (2-10)")
    g.add_argument("--animate", action="store_true",
                   help="with a toy task: also save an animated GIF of the boundary (or fit) as it learns")
    if regression:
        g.add_argument("--loss", choices=("mse", "mae", "huber"), default=None,
                       help="loss of a regression task (default: mse)")
        g.add_argument("--huber-delta", type=positive_float, default=1.0, metavar="D",
                       help="threshold between the squared and the absolute part of the Huber loss")
    return g


def apply_toy_recipe(parser, args, recipe: dict) -> dict:
    """Give each flag in ``recipe`` ({dest: value}) that the user left at its default the recipe's
    value (a toy task wants a small net and many short epochs). Returns what was changed."""
    changed = {}
    types = {a.dest: a.type for a in parser._actions}
    for dest, value in recipe.items():
        default = parser.get_default(dest)
        if isinstance(default, str) and types.get(dest) is not None:  # argparse converts string defaults
            default = types[dest](default)
        if getattr(args, dest, None) == default:
            setattr(args, dest, value)
            changed[dest] = value
    return changed
