"""Train one of the seven convolutional architectures.

    python convolutional/main.py resnet18 --gpu
    python convolutional/main.py lenet --dataset synth-digits --epochs 3
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from any folder

from common import cli, distributed  # noqa: E402
from common.cli.progname import launcher_prog  # noqa: E402
from common.errors import UsageError  # noqa: E402

ARCH_NAMES = ("lenet", "baseline", "alexnet", "vgg16", "resnet18", "efficientnet_lite0", "convnext_tiny")

EXAMPLES = [
    "python convolutional/main.py resnet18 --gpu",
    "python convolutional/main.py resnet18 --epochs 2 --batch-size 64 --gpu --grad-clip 5 --lookahead "
    "--lookahead-k 5 --lookahead-alpha 0.5 --limit 2000",
    "python convolutional/main.py lenet --dataset synth-digits --epochs 3",
    "python convolutional/main.py resnet18 --dataset cifar10 --augment-cutmix-prob 0.5 --lr-schedule cosine",
    "python convolutional/main.py efficientnet_lite0 --se --summary",
    "python convolutional/main.py baseline --load runs/<run>/best.h5 --skip-train --confusion-matrix",
    "python convolutional/main.py --config configs/convolutional/lenet-mnist.yaml --epochs 2 --tensorboard",
]


def build_parser():
    parser = cli.make_parser("Train a convolutional network (LeNet-5 ... ConvNeXt-Tiny) with the "
                             "convolutional tier.", EXAMPLES, prog=launcher_prog("convolutional"))
    g = parser.add_argument_group("model")
    g.add_argument("arch", nargs="?", default="baseline", choices=ARCH_NAMES, metavar="ARCH",
                   help=f"architecture: {', '.join(ARCH_NAMES)}")
    g.add_argument("--variant", choices=("auto", "canonical", "small", "gap"), default="auto",
                   help="canonical (published) network or the small-input variant; auto picks by image size; "
                        "gap: baseline's global-average-pool variant")
    g.add_argument("--se", action="store_true",
                   help="efficientnet_lite0 only: add squeeze-excite to every block (B0-style, not canonical Lite0)")
    g.add_argument("--summary", action="store_true", help="print the layer table and exit")
    g.add_argument("--skip-train", action="store_true", help="only evaluate (use with --load)")
    cli.add_experiment_args(parser, epochs=3, batch_size=64, default_lr=5e-4, default_weight_decay=1e-4,
                            image_size=True)
    return parser


def model_builder(args):
    """A function (input_shape, num_classes) -> network for the flags in ``args``."""
    from convolutional.architectures import build_model

    options = {"se": True} if args.se else {}
    if args.se and args.arch != "efficientnet_lite0":
        raise UsageError("--se applies to efficientnet_lite0 only")

    def build(input_shape, num_classes):
        return build_model(args.arch, input_shape, num_classes, variant=args.variant, **options)

    return build


def summary_shape(args):
    """(C, H, W) for --summary without loading the data when the dataset is a registered one."""
    from common.data import REGISTRY, load_dataset

    spec = REGISTRY.get(cli.dataset_name(args))
    if spec is not None:
        c, h, w = spec.image_shape
    else:
        c, h, w = load_dataset(args.dataset, args.data_dir).image_shape
    if args.image_size:
        h = w = args.image_size
    return c, h, w


def _main(argv=None):
    args = build_parser().parse_args(argv)
    import engine

    engine.use(args.engine)  # the layers' reference code, or the engine's replacements
    from common.data.toys import refuse_for_images

    refuse_for_images(args.dataset)  # toy tasks are points in the plane: vectorized/scalar tiers only
    if args.skip_train and not (args.load or args.resume):
        raise UsageError("--skip-train evaluates a trained model: add --load PATH")
    build = model_builder(args)
    if args.summary:
        from common.data import REGISTRY

        shape = summary_shape(args)
        classes = len(REGISTRY[cli.dataset_name(args)].class_names) if cli.dataset_name(args) in REGISTRY else 10
        model = build(shape, classes)
        print(f"{args.arch} ({model.variant}: {model.variant_label}), input {'x'.join(map(str, shape))}")
        model.summary(shape)
        return 0
    from vectorized.experiment import run_experiment

    run_experiment(args, tier="convolutional", model_name=args.arch, build_model=build)
    return 0


def main(argv=None):
    return distributed.entry(_main, argv)  # cli.run_main, or one rank of mpiexec with --distributed


if __name__ == "__main__":
    sys.exit(main())
