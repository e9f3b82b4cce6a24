"""Train the vectorized MLP: one matrix product per layer, NumPy on the CPU or CuPy with --gpu.

    python vectorized/main.py --epochs 3 --hidden-sizes 512,256,128 --batchnorm --dropout 0.2
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from any folder

from common import cli, distributed  # noqa: E402
from common.cli.progname import launcher_prog  # noqa: E402
from vectorized.activations import ACTIVATION_NAMES  # noqa: E402

EXAMPLES = [
    "python vectorized/main.py --epochs 3 --batch-size 128 --gpu --hidden-sizes 512,256,128 --batchnorm "
    "--dropout 0.2 --lr-schedule cosine --val-split 0.1 --early-stopping",
    "python vectorized/main.py --dataset synth-digits --limit 5000 --epochs 2 --plot",
    "python vectorized/main.py --optimizer nesterov --lr 0.05 --lr-schedule multistep --milestones 2,4 --epochs 5",
    "python vectorized/main.py --resume runs/<run>/last.h5 --epochs 6",
    "python vectorized/main.py --config runs/<run>/config.yaml   # the same run again",
    "python vectorized/main.py --dataset moons --plot --animate",
    "python vectorized/main.py --dataset piecewise --loss huber --plot",
]


def build_parser():
    parser = cli.make_parser("Train a multilayer perceptron with the vectorized (NumPy/CuPy) tier.", EXAMPLES,
                             prog=launcher_prog("vectorized"))
    g = cli.add_mlp_args(parser, ACTIVATION_NAMES)
    g.add_argument("--batchnorm", action="store_true", help="BatchNorm1d between each Linear and its activation")
    g.add_argument("--bn-momentum", type=cli.float_range(0.0, 1.0, lo_open=True), default=0.1,
                   help="BatchNorm running-statistics momentum (PyTorch convention)")
    g.add_argument("--leaky-negative-slope", type=cli.nonneg_float, default=0.01,
                   help="slope of leaky_relu for negative inputs")
    g.add_argument("--init", choices=("auto", "kaiming", "kaiming_uniform", "xavier", "xavier_uniform", "lecun",
                                      "normal", "uniform", "zeros"), default="auto",
                   help="weight initialisation (auto: He for ReLU-like, Xavier for tanh/sigmoid)")
    cli.add_experiment_args(parser, epochs=3, batch_size=64, default_lr=1e-3)
    cli.add_toy_args(parser)
    return parser


def model_builder(args):
    """A function (input_shape, num_classes) -> MLP for the flags in ``args``."""
    from vectorized.mlp import build_mlp

    sizes, acts, drops = cli.mlp_layers(args)

    def build(input_shape, num_classes):
        dim = 1
        for s in input_shape:
            dim *= int(s)
        model = build_mlp(dim, num_classes, sizes, acts, drops, batchnorm=args.batchnorm,
                          bn_momentum=args.bn_momentum, init=args.init, leaky_slope=args.leaky_negative_slope)
        model.arch_name = ("mlp-" + "-".join(str(s) for s in sizes)) if sizes else "softmax-regression"
        return model

    return build


def _main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    import engine

    engine.use(args.engine)  # the layers' reference code, or the engine's replacements
    from vectorized.experiment import run_experiment
    from vectorized.playground import apply_recipe

    apply_recipe(parser, args)  # a toy task (--dataset moons...): a small net, many short epochs

    cli.mlp_layers(args)  # length checks before any data is loaded
    run_experiment(args, tier="vectorized", model_name="mlp", build_model=model_builder(args),
                   flatten_input=True)


def main(argv=None):
    return distributed.entry(_main, argv)  # cli.run_main, or one rank of mpiexec with --distributed


if __name__ == "__main__":
    sys.exit(main())
