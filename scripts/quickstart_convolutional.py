"""Guided CNN experiments: each scenario narrates what it does and why.

    python scripts/quickstart_convolutional.py --scenario gpu-fast --lookahead --plot
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from any folder

import numpy as np  # noqa: E402

from common import cli, distributed  # noqa: E402
from common.cli.legacy import add_legacy_args, apply_legacy_args  # noqa: E402
from common.errors import UserError  # noqa: E402
from scripts.scenarios import compare, narrate, scenario_dir, variant  # noqa: E402

SCENARIOS = ("baseline-cpu", "gpu-fast", "resume-demo", "dataset-swap", "arch-compare")
EXAMPLES = [
    "python scripts/quickstart_convolutional.py --scenario baseline-cpu --plot",
    "python scripts/quickstart_convolutional.py --scenario gpu-fast --lookahead --plot",
    "python scripts/quickstart_convolutional.py --scenario resume-demo --plot",
    "python scripts/quickstart_convolutional.py --scenario dataset-swap --dataset cifar10 --image-shape 3,32,32",
    "python scripts/quickstart_convolutional.py --scenario arch-compare --archs lenet,baseline,resnet18 --limit 2000",
]


def build_parser():
    from convolutional.main import ARCH_NAMES, build_parser as main_parser

    parser = main_parser()
    parser.prog = "quickstart_convolutional.py"
    parser.description = (
        "Guided CNN experiments (same flags as convolutional/main.py). Scenarios (--scenario):\n"
        "  baseline-cpu  BaselineCNN on the CPU: the default 3 epochs on 5000 images\n"
        "  gpu-fast      ResNet18 with gradient clipping (and --lookahead); add --gpu on a CUDA machine\n"
        "  resume-demo   stop after half the epochs, resume from the checkpoint, compare with a straight run\n"
        "  dataset-swap  the same network on other data: --dataset NAME, or fashion-mnist (synth-digits-rgb\n"
        "                offline); --image-shape C,H,W converts the images\n"
        "  arch-compare  several --archs on the same data: parameters, seconds per epoch, accuracy")
    parser.epilog = "examples:\n" + "\n".join(f"  {c}" for c in EXAMPLES)
    g = parser.add_argument_group("quickstart")
    g.add_argument("--scenario", choices=SCENARIOS, default="baseline-cpu", help="which guided experiment to run")
    g.add_argument("--archs", type=cli.name_list(ARCH_NAMES), default=["lenet", "baseline", "resnet18"],
                   metavar="A1,A2", help="arch-compare: the architectures to compare")
    g.add_argument("--image-shape", type=cli.shape3, default=None, metavar="C,H,W",
                   help="dataset-swap: convert the images to C channels and H x W pixels")
    g.add_argument("--stop-after", type=cli.positive_int, default=None, metavar="E",
                   help="resume-demo: epoch after which the first run stops (default: half of --epochs)")
    parser.set_defaults(limit=5000, epochs=3)
    add_legacy_args(parser, save_path=True, arch_choices=ARCH_NAMES, files=True, alt=True)
    return parser


def _run():
    from convolutional.main import model_builder
    from vectorized.experiment import run_experiment

    def run(a):
        return run_experiment(a, tier="convolutional", model_name=a.arch, build_model=model_builder(a))

    return run


#: What the default baseline-cpu run gave when measured (python scripts/quickstart_convolutional.py
#: --scenario baseline-cpu, offline, so on the synth-digits fallback), not a promise for other settings.
BASELINE_CPU_TEXT = (
    "BaselineCNN (1,701,578 parameters) has three 3x3 convolutions with batch normalisation, two "
    "max-pools with dropout, and a 6272 -> 256 -> 10 head that holds 94 % of its weights. Convolutions "
    "share weights across positions, so the three of them (with their batch norms) need only 93,120 parameters. Measured with "
    "the defaults (3 epochs on 5,000 images, offline on synth-digits): 96.1 % test accuracy on 1,000 "
    "test images, in 8.7 minutes on a shared, heavily loaded 2-core machine. More data (--limit 0) and "
    "epochs (--epochs) raise the accuracy; the run header estimates what they cost.")


def baseline_cpu(args, run, out):
    narrate(1, 1, "BaselineCNN on the CPU", BASELINE_CPU_TEXT)
    run(variant(args, run_dir=Path(out.path)))


def gpu_fast(args, run, out):
    narrate(1, 1, "ResNet18 with gradient clipping" + (" and Lookahead" if args.lookahead else ""),
            "With --gpu the same code runs on CuPy. Gradient clipping at norm 5 keeps early steps of a deep "
            "network from blowing up; Lookahead (--lookahead) keeps a slow copy of the weights and pulls "
            "the fast weights back toward it every k steps.")
    run(variant(args, arch="resnet18", grad_clip=args.grad_clip or 5.0, run_dir=Path(out.path)))


def resume_demo(args, run, out):
    stop = args.stop_after or max(1, args.epochs // 2)
    if stop >= args.epochs:
        raise UserError(f"--stop-after ({stop}) must be below --epochs ({args.epochs})")
    narrate(1, 3, f"train {stop} of {args.epochs} epochs, then stop",
            "This plays the part of a run that was interrupted (Ctrl-C saves the same checkpoint).")
    first = run(variant(args, epochs=stop, run_dir=Path(out.path), run_name="interrupted"))
    ckpt = first["run_dir"].checkpoint_path("last")
    narrate(2, 3, f"resume from {ckpt} up to epoch {args.epochs}",
            "The checkpoint holds the weights, optimizer moments, schedule, RNG states and history, so "
            "training continues as if it had never stopped.")
    resumed = run(variant(args, resume=ckpt))
    narrate(3, 3, "an uninterrupted run of the same length, for comparison")
    straight = run(variant(args, run_dir=Path(out.path), run_name="uninterrupted"))
    a, b = resumed["history"]["loss"], straight["history"]["loss"]
    print("\nepoch  resumed loss   uninterrupted loss")
    for i, (x, y) in enumerate(zip(a, b), 1):
        print(f"{i:>5}  {x:>12.6f}   {y:>18.6f}" + ("   <- resumed here" if i == stop + 1 else ""))
    same = all(np.array_equal(resumed["model"].state_dict()[k], v) for k, v in straight["model"].state_dict().items())
    print(f"final weights identical: {same}")
    if args.plot:
        from common import plots

        path = plots.plot_histories({"stopped + resumed": resumed["history"], "uninterrupted": straight["history"]},
                                    out.plot_path("resume-loss"), metric="loss")
        print(f"[plot] {path}")


def dataset_swap(args, run, out):
    from common.data import REGISTRY
    from scripts.scenarios import swap_dataset

    name = swap_dataset(args)
    shape = args.image_shape or (REGISTRY[name].image_shape if name in REGISTRY else None)
    narrate(1, 1, f"{args.arch} on {name}" + (f" as {'x'.join(map(str, shape))}" if shape else ""),
            "Every architecture builds for any channel count and image size at or above its minimum, so "
            "swapping datasets is a flag: --dataset fashion-mnist, cifar10, synth-digits-rgb, a folder, or "
            "--image-shape C,H,W to convert the images.")
    run(variant(args, dataset=name, run_dir=Path(out.path)))


def arch_compare(args, run, out):
    print("Same data, same optimizer, same epochs: what does each architecture cost and buy?")
    runs = [(name, variant(args, arch=name)) for name in args.archs]
    compare(runs, run, out, title="architecture", plot=args.plot,
            extra_columns={"variant": lambda r: r["model"].variant,
                           "params": lambda r: f"{r['model'].num_parameters():,}"})


def _main(argv=None):
    args = apply_legacy_args(build_parser().parse_args(argv))
    import engine

    engine.use(args.engine)  # the layers' reference code, or the engine's replacements
    out = scenario_dir(args, args.scenario)
    print(f"[quickstart] scenario {args.scenario}: results in {out}")
    run = _run()
    {"baseline-cpu": baseline_cpu, "gpu-fast": gpu_fast, "resume-demo": resume_demo,
     "dataset-swap": dataset_swap, "arch-compare": arch_compare}[args.scenario](args, run, out)
    return 0


def main(argv=None):
    return distributed.entry(_main, argv)  # cli.run_main, or one rank of mpiexec with --distributed


if __name__ == "__main__":
    sys.exit(main())
