"""The previous NNOTT's quickstart flags: each is an alias, or one line naming the flag that replaced it.

A command from the old README must not end in "ARCH: invalid choice: 'x.npz'":

| old flag | now |
|---|---|
| ``--save-path P`` | alias of ``--save`` (the checkpoint is HDF5, so ``.npz``/``.pkl`` become ``.h5``) |
| ``--arch NAME`` (conv quickstart) | alias of the positional ``ARCH`` |
| ``--train-images`` ``--train-labels`` ``--test-images`` ``--test-labels`` | usage error: put the four ``.npy`` files in a folder, ``--dataset FOLDER`` |
| ``--alt-train-images`` ... (dataset-swap) | usage error: ``--scenario dataset-swap --dataset FOLDER`` |
| ``--sample-count N`` | accepted with a warning: ``--plot`` saves 20 training samples |

Add them with :func:`add_legacy_args`; call :func:`apply_legacy_args` after ``parse_args``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

FILE_FLAGS = ("--train-images", "--train-labels", "--test-images", "--test-labels")
ALT_FLAGS = tuple(f"--alt-{f[2:]}" for f in FILE_FLAGS)
NPY_NAMES = "train_images.npy, train_labels.npy, test_images.npy, test_labels.npy"


class _Replaced(argparse.Action):
    """An old flag whose meaning moved to another flag: a one-line usage error (exit 2) naming it."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is a flag of the previous NNOTT; {self.help}")


class _Ignored(argparse.Action):
    """An old flag with nothing left to set: accepted (old commands still run) with one warning."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"[warn] {option_string} is ignored: {self.help}", file=sys.stderr)


class _SavePath(argparse.Action):
    """--save-path P -> --save P, with the suffix HDF5 checkpoints use."""

    def __call__(self, parser, namespace, values, option_string=None):
        path = Path(values)
        if path.suffix.lower() in (".npz", ".pkl", ".pickle", ".npy"):
            path = path.with_suffix(".h5")
        print(f"[nnott] {option_string} is the previous NNOTT's name for --save: the checkpoint goes to "
              f"{path} (HDF5)", file=sys.stderr)
        namespace.save = path


def add_legacy_args(parser, *, save_path: bool = False, arch_choices=None, files: bool = True,
                    alt: bool = False, sample_count: bool = False):
    """The previous NNOTT's flags this entry point had, listed in --help under their own group."""
    g = parser.add_argument_group("previous NNOTT flags",
                                  "still accepted where they map onto a new flag, else named in the error")
    if save_path:
        g.add_argument("--save-path", action=_SavePath, metavar="PATH", help="old name of --save")
    if arch_choices is not None:
        g.add_argument("--arch", dest="legacy_arch", choices=tuple(arch_choices), metavar="ARCH",
                       help="old name of the positional ARCH")
    if files:
        for flag in FILE_FLAGS:
            g.add_argument(flag, action=_Replaced, metavar="FILE",
                           help=f"put the four files ({NPY_NAMES}) in one folder and pass --dataset FOLDER")
    if alt:
        for flag in ALT_FLAGS:
            g.add_argument(flag, action=_Replaced, metavar="FILE",
                           help=f"use --scenario dataset-swap --dataset FOLDER (a folder with {NPY_NAMES}) "
                                "or --dataset fashion-mnist")
    if sample_count:
        g.add_argument("--sample-count", action=_Ignored, metavar="N",
                       help="--plot saves a grid of 20 training samples (samples.png in the run folder)")
    return g


def apply_legacy_args(args):
    """Move alias values (--arch) to the flags they stand for; returns ``args``."""
    legacy_arch = getattr(args, "legacy_arch", None)
    if legacy_arch is not None:
        args.arch = legacy_arch
    return args
