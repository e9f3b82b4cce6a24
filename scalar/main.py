"""Train the scalar-tier MLP: every neuron a list of Python floats, every sum an explicit loop.

    python scalar/main.py --epochs 1 --batch-size 64 --hidden-sizes 256,128,64 \
        --hidden-activations relu,gelu,tanh --hidden-dropout 0.3,0.2,0.1 --plot

The scalar tier runs at tens of samples per second, so by default it trains on a class-balanced
subset (``--limit``, about two minutes in all); ``--limit 0`` uses the full dataset.
"""
from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root, for `import common`

import numpy as np  # noqa: E402

from common import cli  # noqa: E402
from common.cli.progname import launcher_prog  # noqa: E402
from common.data import RunData  # noqa: E402
from common.errors import UserError  # noqa: E402

ACTIVATION_NAMES = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "linear")
OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adam")
DEFAULT_LIMIT = 2000   # training images (before the validation split): about 2 minutes with the defaults
DEFAULT_EPOCHS = 2
EXAMPLES = [
    "python scalar/main.py",
    "python scalar/main.py --epochs 1 --batch-size 64 --hidden-sizes 256,128,64 "
    "--hidden-activations relu,gelu,tanh --hidden-dropout 0.3,0.2,0.1 --plot",
    "python scalar/main.py --hidden-sizes 32 --trace --trace-neurons 3 --epochs 1 --limit 500",
    "python scalar/main.py --limit 0 --epochs 1 --save runs/scalar-full.h5",
]


# ---------------------------------------------------------------------- flags
def add_network_args(parser):
    g = parser.add_argument_group("network")
    g.add_argument("--hidden-sizes", type=cli.hidden_size_list, default="256,128,64", metavar="H1,H2",
                   help="widths of the hidden layers, e.g. 256,128,64; \"\" or none = no hidden layer, a linear "
                        "(softmax-regression) classifier")
    g.add_argument("--activation", choices=ACTIVATION_NAMES, default="relu",
                   help="activation of every hidden layer (unless --hidden-activations is given)")
    g.add_argument("--hidden-activations", type=cli.name_list(ACTIVATION_NAMES), default=None,
                   metavar="A1,A2", help="one activation per hidden layer, e.g. relu,gelu,tanh")
    g.add_argument("--hidden-dropout", type=cli.float_list_or_none, default="0.2", metavar="P",
                   help="dropout probability after each hidden layer: one value or one per layer; none = off")
    g.add_argument("--trace", action="store_true",
                   help="before training, print one sample's forward and backward pass layer by layer")
    g.add_argument("--trace-neurons", type=cli.positive_int, default=4, metavar="N",
                   help="neurons shown per layer by --trace")
    return g


def build_parser(description: str = __doc__.split("\n")[0], examples=EXAMPLES, default_limit=DEFAULT_LIMIT,
                 epochs=DEFAULT_EPOCHS, prog=None):
    parser = cli.make_parser(description, examples, prog=prog or launcher_prog("scalar"))
    cli.add_data_args(parser, default_limit=default_limit)
    cli.add_training_args(parser, epochs=epochs, batch_size=64)
    cli.add_optimizer_args(parser, "adam", 1e-3, OPTIMIZER_NAMES, stabilizers=False, label_smoothing=False)
    add_network_args(parser)
    cli.add_augment_args(parser, allow_mix=False)
    cli.add_checkpoint_args(parser)
    cli.add_output_args(parser, misclassified=False)
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def layer_settings(parser, args) -> tuple[list[str], list[float]]:
    """Per-layer activations and dropouts; a length mismatch is a usage error (exit 2)."""
    n = len(args.hidden_sizes)
    try:
        acts = cli.broadcast_list(args.hidden_activations or [args.activation], n, "--hidden-activations")
        drops = cli.broadcast_list(args.hidden_dropout, n, "--hidden-dropout")
    except UserError as exc:
        parser.error(str(exc))
    return acts, drops


# ---------------------------------------------------------------------- data
def load_data(args, dataset: str | None = None):
    """Load, subset (--limit), split (--val-split) and fit the normalizer on the training split."""
    from common.data import load_run_data
    return load_run_data(args, dataset=dataset)


def make_prepare(data, augmenter=None):
    """uint8 images -> [augment] -> normalize -> flat lists of Python floats, the scalar tier's input."""
    def prepare(x_batch, y_batch, training: bool):
        x = x_batch.astype(np.float32) / 255.0
        if training and augmenter is not None:
            x, _ = augmenter(x, y_batch, data.num_classes)     # no label mixing in the scalar tier
        rows = data.normalizer(x).reshape(len(x), -1).tolist()
        return rows, y_batch.tolist()
    return prepare


# ---------------------------------------------------------------------- one run
def build_trainer(args, data: RunData, activations, dropouts, optimizer: str | None = None):
    from common.augment import AugmentConfig, Augmenter
    from scalar.network import Network
    from scalar.optimizers import make_optimizer
    from scalar.trainer import Trainer
    network = Network(data.input_size, data.num_classes, args.hidden_sizes, activations, dropouts, seed=args.seed)
    opt = make_optimizer(optimizer or args.optimizer, network, args.lr, args.weight_decay, args.momentum)
    augmenter = None
    if not args.no_augment:
        augmenter = Augmenter(AugmentConfig.for_dataset(data.name, **cli.augment_overrides(args)), seed=args.seed)
    trainer = Trainer(network, opt, prepare=make_prepare(data, augmenter), seed=args.seed)
    trainer.augmenter = augmenter
    return trainer


def run_config(args, data: RunData, trainer) -> dict:
    return {"dataset": data.name, "image_shape": list(data.image_shape), "class_names": data.class_names,
            "normalizer": {k: v.tolist() for k, v in data.normalizer.state_dict().items()},
            "optimizer": type(trainer.optimizer).__name__, "lr": args.lr, "weight_decay": args.weight_decay,
            "batch_size": args.batch_size, "limit": args.limit, "val_split": args.val_split}


def architecture(data: RunData, hidden_sizes) -> str:
    kind = "mlp " if hidden_sizes else "softmax-regression "     # no hidden layer: a linear classifier
    return kind + "-".join(str(v) for v in [data.input_size, *hidden_sizes, data.num_classes])


def train(args, data: RunData, trainer, run, log=print) -> dict:
    """Fit with a checkpoint (last.h5) and a metrics row after every epoch; Ctrl-C keeps the last one."""
    from scalar import io
    config = run_config(args, data, trainer)
    last = run.checkpoint_path("last")

    def save(path):
        extra = {"augmenter": trainer.augmenter.state_dict()} if trainer.augmenter else {}
        return io.save(path, trainer, config, extra)

    def on_epoch_end(t):
        h = t.history
        row = {"epoch": t.epoch, "loss": h["loss"][-1], "acc": h["acc"][-1], "time": h["time"][-1]}
        if h["val_loss"]:
            row.update(val_loss=h["val_loss"][-1], val_acc=h["val_acc"][-1])
        run.log_metrics(row)
        save(last)

    val = (data.x_val, data.y_val) if len(data.y_val) else None
    with cli.save_on_interrupt(lambda: last if last.exists() else None):
        trainer.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size, val=val,
                    early_stopping=args.early_patience if args.early_stopping else 0,
                    min_delta=args.early_delta, early_metric=args.early_metric,
                    on_epoch_end=on_epoch_end, log=log)
    if args.save:
        log(f"saved checkpoint {save(args.save)}")
    return config


def evaluate(args, data: RunData, trainer, run, log=print) -> dict:
    """Test loss and accuracy; the confusion matrix and figures when asked."""
    from common import metrics
    result = trainer.evaluate(data.x_test, data.y_test, desc="test")
    subset = f" ({len(data.y_test)} of {data.test_total} test images)" if len(data.y_test) < data.test_total else ""
    log(f"test loss {result['loss']:.4f}  test acc {result['acc']:.2%}{subset}")
    cm = metrics.confusion_matrix(data.y_test, np.array(result["predictions"]), data.num_classes)
    if getattr(args, "confusion_matrix", False):
        log(metrics.format_confusion_matrix(cm, data.class_names))
    if args.plot:
        from common import plots
        preds = np.array(result["predictions"])
        paths = [plots.plot_history({k: v for k, v in trainer.history.items() if k != "time"},
                                    run.plot_path("history")),
                 plots.plot_samples(data.x_test[:20], [f"{data.class_names[p]}" for p in preds[:20]],
                                    run.plot_path("test_predictions")),
                 plots.plot_misclassified(data.x_test, data.y_test, preds, run.plot_path("misclassified"),
                                          data.class_names)]
        if getattr(args, "confusion_matrix", False):
            paths.append(plots.plot_confusion_matrix(cm, run.plot_path("confusion_matrix"), data.class_names))
        for p in paths:
            log(f"figure: {p}")
    return result


def show_trace(args, data: RunData, trainer, log=print) -> None:
    from scalar.trace import trace
    rows, targets = trainer.prepare(data.x_train[:1], data.y_train[:1], False)
    log(f"--trace: training image 0 (label {data.class_names[targets[0]]}), normalized")
    trace(trainer.network, rows[0], targets[0], max_neurons=args.trace_neurons, print_fn=log)
    trainer.network.zero_grad()


# ---------------------------------------------------------------------- entry point
def _main(argv=None) -> int:
    from common.cli import RunDir, run_header
    from common.seed import seed_everything
    from scalar import io
    parser = build_parser()
    args = parser.parse_args(argv)
    activations, dropouts = layer_settings(parser, args)
    seed_everything(args.seed)
    data = load_data(args)
    trainer = build_trainer(args, data, activations, dropouts)
    net = trainer.network
    if args.resume:
        ckpt = io.load(args.resume)
        io.restore(trainer, ckpt)
        if trainer.augmenter and "augmenter" in ckpt.extra:
            trainer.augmenter.load_state_dict(ckpt.extra["augmenter"])
        run = RunDir.for_checkpoint(args.resume)
    else:
        if args.load:
            io.load_weights(net, io.load(args.load))
        run = RunDir(args.run_dir, args.run_name or "scalar-mlp")
    augment = trainer.augmenter.config.describe() if trainer.augmenter else "off"
    print(run_header(tier="scalar", model=architecture(data, args.hidden_sizes), dataset=data.name,
                     fell_back=data.fell_back, device="cpu (pure Python floats)", seed=args.seed,
                     params=net.num_parameters(),
                     extra={"optimizer": args.optimizer, "lr": args.lr, "augment": f'"{augment}"', "run": run}))
    from common.run_cost import cost_line
    print(cost_line(args.epochs, trainer.epoch, -(-len(data.y_train) // args.batch_size), args.batch_size,
                    len(data.y_train)))
    n_train, n_val, n_test = len(data.y_train), len(data.y_val), len(data.y_test)
    if args.limit:
        print(f"[nnott] --limit {args.limit}: a class-balanced subset keeps this run to about two minutes "
              f"at the default size ({n_train} train / {n_val} val / {n_test} test images); "
              "--limit 0 trains on the full dataset")
    else:
        print(f"[nnott] full dataset: {n_train} train / {n_val} val / {n_test} test images; "
              "the bar shows samples/s and the time left")
    if args.resume:
        print(f"[nnott] resumed from {args.resume} after epoch {trainer.epoch} (step {trainer.step})")
    if args.trace:
        show_trace(args, data, trainer)
    config = train(args, data, trainer, run)
    run.save_config({**io.network_config(net), **config, "epochs": args.epochs, "seed": args.seed})
    evaluate(args, data, trainer, run)
    print(f"[nnott] run folder: {run}  (resume with --resume {run.checkpoint_path('last')})")
    return 0


def main(argv=None) -> int:
    """Console-script entry point: errors become one line and an exit code."""
    return cli.run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
