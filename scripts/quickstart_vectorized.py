"""Guided experiments with the vectorized MLP: each scenario narrates what it does and why.

    python scripts/quickstart_vectorized.py --scenario optimizer-compare --plot
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from any folder

from common import cli, distributed  # noqa: E402
from common.cli.legacy import add_legacy_args  # noqa: E402
from scripts.scenarios import compare, narrate, scenario_dir, variant  # noqa: E402

SCENARIOS = ("basic", "optimizer-compare", "hidden-sweep", "lr-sweep", "schedule-compare", "rnn", "toys")
EXAMPLES = [
    "python scripts/quickstart_vectorized.py --scenario basic --plot",
    "python scripts/quickstart_vectorized.py --scenario optimizer-compare --plot",
    'python scripts/quickstart_vectorized.py --scenario hidden-sweep --hidden-options "512,256;256,128;128,64"',
    "python scripts/quickstart_vectorized.py --scenario lr-sweep --lr-options 0.0003,0.001,0.003",
    "python scripts/quickstart_vectorized.py --scenario schedule-compare --epochs 6",
    "python scripts/quickstart_vectorized.py --scenario rnn --plot",
    "python scripts/quickstart_vectorized.py --scenario toys --plot",
]


def hidden_options(text):
    """'512,256;256,128' -> [[512, 256], [256, 128]]."""
    options = [cli.positive_int_list(part) for part in text.split(";") if part.strip()]
    if not options:
        raise argparse.ArgumentTypeError("give at least one layer list, e.g. '512,256;128'")
    return options


def build_parser():
    from vectorized.main import build_parser as main_parser

    parser = main_parser()
    parser.prog = "quickstart_vectorized.py"
    parser.description = (
        "Guided experiments with the vectorized MLP (same flags as vectorized/main.py). Scenarios (--scenario):\n"
        "  basic              train one MLP (--hidden-sizes; \"\" or none for softmax regression)\n"
        "  optimizer-compare  the same network with each of --optimizers, each at a learning rate that suits it\n"
        "  hidden-sweep       one run per layer list in --hidden-options: what width buys\n"
        "  lr-sweep           one run per rate in --lr-options: too small, about right, too large\n"
        "  schedule-compare   one run per schedule in --schedules (step, cosine, plateau, ...)")
    parser.epilog = "examples:\n" + "\n".join(f"  {c}" for c in EXAMPLES)
    g = parser.add_argument_group("quickstart")
    g.add_argument("--scenario", choices=SCENARIOS, default="basic", help="which guided experiment to run")
    g.add_argument("--optimizers", type=cli.name_list(cli.OPTIMIZERS), default=["sgd", "momentum", "adam", "adamw"],
                   metavar="O1,O2", help="optimizer-compare: the optimizers to race")
    g.add_argument("--hidden-options", type=hidden_options, default=[[512, 256], [256, 128], [128, 64]],
                   metavar="A,B;C,D", help="hidden-sweep: layer lists separated by ';'")
    g.add_argument("--lr-options", type=lambda t: [cli.positive_float(v) for v in t.split(",")],
                   default=[1e-4, 1e-3, 1e-2], metavar="LR1,LR2", help="lr-sweep: learning rates to try")
    g.add_argument("--schedules", type=cli.name_list(cli.SCHEDULES), default=["none", "step", "cosine", "plateau"],
                   metavar="S1,S2", help="schedule-compare: schedules to compare")
    parser.set_defaults(limit=10000, epochs=3)
    add_legacy_args(parser, files=True)
    return parser


# Learning rates that suit each optimizer on this MLP (SGD needs a larger step than Adam).
SUITED_LR = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}


def mlp_runner(args, quiet=False):
    """The function a scenario calls once per variant of ``args``: train, evaluate and save one MLP.

    ``quiet`` turns the progress bars off (the tutorial's optimization lab runs it at build time).
    """
    from vectorized.experiment import run_experiment
    from vectorized.main import model_builder

    cli.mlp_layers(args)

    def run(a):
        return run_experiment(a, tier="vectorized", model_name="mlp", build_model=model_builder(a),
                              flatten_input=True, quiet=quiet)
    return run


def optimizer_runs(args):
    """optimizer-compare: one (label, flags) pair per name in --optimizers, each at the rate that suits it
    (SUITED_LR); AdamW gets a weight decay of 0.05 unless --weight-decay is given."""
    return [(name, variant(args, optimizer=name, lr=SUITED_LR[name],
                           weight_decay=args.weight_decay or (0.05 if name == "adamw" else 0.0)))
            for name in args.optimizers]


# optimizer-compare's extra table columns: the rate and the weight decay each run used
OPTIMIZER_COLUMNS = {"lr": lambda r: r["trainer"].history["lr"][0],
                     "weight decay": lambda r: r["trainer"].optimizer.state_dict().get("weight_decay")}


def lr_sweep_runs(args):
    """lr-sweep: one (label, flags) pair per rate in --lr-options, everything else unchanged."""
    return [(f"lr={lr:g}", variant(args, lr=lr)) for lr in args.lr_options]


def _main(argv=None):
    args = build_parser().parse_args(argv)
    import engine

    engine.use(args.engine)  # the layers' reference code, or the engine's replacements

    if args.scenario == "rnn":  # recurrent networks: their own flags and data (scripts/quickstart_rnn.py)
        from scripts.quickstart_rnn import run_rnn_scenario
        return run_rnn_scenario(args)
    run = mlp_runner(args)
    out = scenario_dir(args, args.scenario)
    print(f"[quickstart] scenario {args.scenario}: results in {out}")
    if args.scenario == "basic":
        narrate(1, 1, "train one MLP", f"An MLP with hidden layers {args.hidden_sizes} learns to classify "
                "digits. Every layer is one matrix product on the whole batch; watch the loss fall and the "
                "validation accuracy rise. The test set is only used once, at the end.")
        run(variant(args, run_dir=Path(out.path)))
    elif args.scenario == "optimizer-compare":
        print("Same network, same data, same seed: only the update rule changes. Plain SGD takes small "
              "steps along the gradient; momentum accumulates a velocity; Adam scales each weight's step by "
              "its gradient history; AdamW decouples weight decay from that scaling.")
        compare(optimizer_runs(args), run, out, title="optimizer", plot=args.plot, extra_columns=OPTIMIZER_COLUMNS)
    elif args.scenario == "hidden-sweep":
        print("Wider layers add capacity (and parameters); the table shows what each size buys.")
        runs = [(",".join(map(str, sizes)), variant(args, hidden_sizes=sizes, hidden_activations=None))
                for sizes in args.hidden_options]
        compare(runs, run, out, title="hidden sizes", plot=args.plot,
                extra_columns={"params": lambda r: f"{r['model'].num_parameters():,}"})
    elif args.scenario == "toys":
        from scripts.toys_scenario import run_toys
        run_toys(args, out)   # every toy task with its own recipe (scripts/toys_scenario.py)
    elif args.scenario == "lr-sweep":
        print("Too small a learning rate crawls, too large a one diverges or bounces; somewhere between "
              "is the sweet spot for this optimizer.")
        compare(lr_sweep_runs(args), run, out, title="learning rate", plot=args.plot)
    else:
        print("Schedules change the learning rate as training goes: step decay, cosine annealing, or "
              "reduce-on-plateau driven by the validation loss.")
        runs = [(name, variant(args, lr_schedule=name)) for name in args.schedules]
        compare(runs, run, out, title="schedule", plot=args.plot,
                extra_columns={"final lr": lambda r: f"{r['history']['lr'][-1]:.2e}"})
    return 0


def main(argv=None):
    return distributed.entry(_main, argv)  # cli.run_main, or one rank of mpiexec with --distributed


if __name__ == "__main__":
    sys.exit(main())
