"""Guided tours of the scalar tier, narrated step by step. Takes every flag of scalar/main.py.

    python scripts/quickstart_scalar.py --scenario basic --plot
    python scripts/quickstart_scalar.py --scenario optimizer-compare --epochs 2
    python scripts/quickstart_scalar.py --scenario dataset-swap --dataset fashion-mnist
    python scripts/quickstart_scalar.py --scenario trace --trace-neurons 3
    python scripts/quickstart_scalar.py --scenario gradcheck
"""
from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root

import random  # noqa: E402

from common import cli  # noqa: E402
from common.cli.legacy import add_legacy_args  # noqa: E402
from scalar import main as scalar_main  # noqa: E402

SCENARIOS = ("basic", "optimizer-compare", "dataset-swap", "trace", "gradcheck")
QUICK_LIMIT = 1000
DESCRIPTION = (
    "Guided tours of the scalar tier, narrated step by step (every flag of scalar/main.py). Scenarios:\n"
    "  basic              load a subset, build the network neuron by neuron, train, evaluate\n"
    "  optimizer-compare  the same initial weights trained with sgd, momentum and adam\n"
    "  dataset-swap       the same network on --dataset, or fashion-mnist (synth-digits-rgb offline)\n"
    "  trace              one image through a tiny network, forward and backward, every number shown\n"
    "  gradcheck          hand-written gradients against autograd and finite differences")


def say(step: str) -> None:
    print(f"\n== {step}", flush=True)


def build_parser():
    parser = scalar_main.build_parser(DESCRIPTION, [line.strip() for line in __doc__.splitlines()[2:7]],
                                      default_limit=QUICK_LIMIT, prog="quickstart_scalar.py")
    parser.add_argument("--scenario", choices=SCENARIOS, default="basic", help="which tour to take")
    add_legacy_args(parser, files=True, alt=True, sample_count=True)
    return parser


def prepare_run(args, parser, dataset=None):
    from common.seed import seed_everything
    acts, drops = scalar_main.layer_settings(parser, args)
    seed_everything(args.seed)
    say(f"Step 1: load the data (class-balanced subset of {args.limit or 'all'} images)")
    data = scalar_main.load_data(args, dataset)
    print(f"{data.description}; training on {len(data.y_train)}, validating on {len(data.y_val)}, "
          f"testing on {len(data.y_test)} images")
    print(f"pixels are scaled to [0, 1] and standardized with the training split's {data.normalizer}")
    return data, acts, drops


def basic(args, parser, dataset=None, title="basic"):
    data, acts, drops = prepare_run(args, parser, dataset)
    run = cli.RunDir(args.run_dir, args.run_name or f"quickstart-scalar-{title}")
    if args.plot:
        from common import plots
        print(f"figure: {plots.plot_samples(data.x_train[:20], [data.class_names[y] for y in data.y_train[:20]], run.plot_path('samples'))}")
    say("Step 2: build the network, one Neuron (a list of floats and a bias) at a time")
    trainer = scalar_main.build_trainer(args, data, acts, drops)
    print(trainer.network)
    print(f"{scalar_main.architecture(data, args.hidden_sizes)}: {trainer.network.num_parameters():,} parameters")
    say(f"Step 3: train with {args.optimizer} (lr {args.lr}); every sample adds its gradient, "
        "each batch takes one step on the mean")
    scalar_main.train(args, data, trainer, run)
    say("Step 4: evaluate on the test images (dropout off)")
    result = scalar_main.evaluate(args, data, trainer, run)
    print(f"run folder: {run}")
    return result


def optimizer_compare(args, parser):
    """Train the same initial network with each optimizer; returns {name: (test accuracy, history)}."""
    from common import plots
    data, acts, drops = prepare_run(args, parser)
    run = cli.RunDir(args.run_dir, args.run_name or "quickstart-scalar-optimizers")
    settings = [("sgd", 0.05), ("momentum", 0.05), ("adam", 1e-3)]
    histories, results = {}, {}
    for name, lr in settings:
        say(f"Train a fresh network (seed {args.seed}, same initial weights) with {name}, lr {lr}")
        args.lr = lr
        trainer = scalar_main.build_trainer(args, data, acts, drops, optimizer=name)
        scalar_main.train(args, data, trainer, cli.RunDir(run.path / name, name))
        results[name] = trainer.evaluate(data.x_test, data.y_test, desc="test")["acc"]
        histories[name] = trainer.history
    say("Summary: test accuracy after the same number of steps")
    for (name, lr), acc in zip(settings, results.values()):
        print(f"  {name:<9} lr {lr:<6}  {acc:.2%}")
    if args.plot:
        metric = "val_acc" if len(data.y_val) else "acc"
        print(f"figure: {plots.plot_histories(histories, run.plot_path('optimizers'), metric=metric)}")
    return {name: (results[name], histories[name]) for name in results}


def dataset_swap(args, parser):
    from scripts.scenarios import swap_dataset
    name = swap_dataset(args)
    say(f"The same scalar network on another dataset: {name}")
    return basic(args, parser, dataset=name, title="dataset-swap")


def trace_tour(args, parser):
    from scalar.trace import trace
    data, _, _ = prepare_run(args, parser)
    args.hidden_sizes = [4, 3]
    say("Step 2: a tiny network, 784 -> 4 (relu) -> 3 (tanh) -> 10, so every number fits on screen")
    trainer = scalar_main.build_trainer(args, data, ["relu", "tanh"], [0.0, 0.0])
    rows, labels = trainer.prepare(data.x_train[:1], data.y_train[:1], False)
    say(f"Step 3: one image (label {data.class_names[labels[0]]}) forward, then backward")
    trace(trainer.network, rows[0], labels[0], max_neurons=args.trace_neurons)
    say("Step 4: the gradients now sit in the neurons; the optimizer takes one step")
    name, output = trainer.network.named_layers()[-1]
    before = output.neurons[0].b
    trainer.optimizer.step()
    print(f"{name}.bias[0]: {before:+.6f} -> {output.neurons[0].b:+.6f}  ({args.optimizer}, lr {args.lr})")


def gradcheck(args, parser):
    """Hand-written backward vs autograd.Value vs central finite differences, on a small network."""
    from scalar.autograd import network_gradients
    from scalar.losses import cross_entropy
    from scalar.network import Network
    acts, _ = scalar_main.layer_settings(parser, args)
    acts = (acts * 2)[:2] if len(acts) < 2 else acts[:2]
    rng = random.Random(args.seed)
    say(f"Step 1: a small network 6 -> 5 ({acts[0]}) -> 4 ({acts[1]}) -> 3 and one random sample")
    net = Network(6, 3, (5, 4), acts, 0.0, seed=args.seed)
    for n in net.neurons():
        n.b = rng.uniform(-0.2, 0.2)
    x, label = [rng.uniform(-1, 1) for _ in range(6)], 1
    say("Step 2: three ways to get dL/dw")
    net.zero_grad()
    net.backward(cross_entropy(net.forward(x), label)[1])
    hand = net.grad_dict()
    _, auto = network_gradients(net, x, label)
    h, worst = 1e-6, {"autograd": 0.0, "finite differences": 0.0}
    print(f"{'parameter':<16}{'hand-written':>16}{'autograd':>16}{'finite diff.':>16}")
    for name, layer in net.named_layers():
        for j, neuron in enumerate(layer.neurons):
            for i in range(len(neuron.w)):
                w0 = neuron.w[i]
                neuron.w[i] = w0 + h
                up = cross_entropy(net.forward(x), label)[0]
                neuron.w[i] = w0 - h
                down = cross_entropy(net.forward(x), label)[0]
                neuron.w[i] = w0
                numeric = (up - down) / (2 * h)
                g, a = hand[f"{name}.weight"][j][i], auto[f"{name}.weight"][j][i]
                worst["autograd"] = max(worst["autograd"], abs(g - a))
                worst["finite differences"] = max(worst["finite differences"], abs(g - numeric))
                if i == 0 and j < 2:
                    print(f"{name}.weight[{j},{i}]".ljust(16) + f"{g:>16.10f}{a:>16.10f}{numeric:>16.10f}")
    say("Step 3: the largest disagreement over every weight")
    for what, err in worst.items():
        print(f"  hand-written vs {what:<19} {err:.2e}")
    print("autograd agrees to rounding (same math, other order); finite differences to ~1e-9 (their own error)")


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    print(f"[nnott] quickstart_scalar --scenario {args.scenario}")
    {"basic": basic, "optimizer-compare": optimizer_compare, "dataset-swap": dataset_swap,
     "trace": trace_tour, "gradcheck": gradcheck}[args.scenario](args, parser)
    return 0


def main(argv=None) -> int:
    return cli.run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
