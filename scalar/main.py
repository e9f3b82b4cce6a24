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
    "python scalar/main.py --config configs/scalar/mlp-synth.yaml",
    "python scalar/main.py --dataset rings --plot --animate",
    "python scalar/main.py --dataset xor --hidden-sizes 4 --trace --epochs 20",
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
    cli.add_toy_args(parser, regression=False)
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
        x = x_batch.astype(np.float32) / 255.0 if x_batch.dtype == np.uint8 else x_batch  # toy points: as they are
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
    if not args.no_augment and not data.is_points:   # toy points have nothing to augment
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
    """Fit with a checkpoint (last.h5), then a metrics row, after every epoch that the divergence
    guard passed. Ctrl-C saves where the epoch stood (the resume command continues it exactly)."""
    from common.config import config_values, save_run_config
    from common.guard import DivergenceGuard
    from common.tensorboard import logger_for
    from scalar import io
    config = run_config(args, data, trainer)
    last = run.checkpoint_path("last")
    save_run_config(run.path, args)
    tensorboard = trainer.tensorboard = logger_for(args, run.path, config_values(args))
    resumed_from = [args.resume] if args.resume else []
    trainer.guard = DivergenceGuard(candidates=lambda: [*resumed_from, last])

    def save(path):
        extra = {"augmenter": trainer.augmenter.state_dict()} if trainer.augmenter else {}
        if trainer.position is not None:
            extra["mid_epoch"] = trainer.position
        return io.save(path, trainer, config, extra)

    def on_epoch_end(t):
        h = t.history
        row = {"epoch": t.epoch, "loss": h["loss"][-1], "acc": h["acc"][-1], "time": h["time"][-1]}
        if h["val_loss"]:
            row.update(val_loss=h["val_loss"][-1], val_acc=h["val_acc"][-1])
        save(last)
        run.log_metrics(row)  # after the checkpoint landed, so the two never disagree
        if tensorboard:
            tensorboard.log_epoch(row)
        for hook in getattr(t, "epoch_hooks", ()):   # e.g. the --animate frame recorder of a toy task
            hook(t)

    def save_interrupted():
        if trainer.interrupt.forced:  # a second Ctrl-C may have stopped mid-batch: keep the old file
            return last if last.exists() else None
        trainer.guard.check_tensors(trainer.network.state_dict().values(), trainer.epoch)
        return save(last)

    val = (data.x_val, data.y_val) if len(data.y_val) else None
    with cli.save_on_interrupt(save_interrupted):
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
    result = trainer.evaluate(data.x_test, data.y_test, desc="test", keep_logits=True)
    subset = f" ({len(data.y_test)} of {data.test_total} test images)" if len(data.y_test) < data.test_total else ""
    log(f"test loss {result['loss']:.4f}  test acc {result['acc']:.2%}{subset}")
    _track_test(args, data, trainer, run, result)
    cm = metrics.confusion_matrix(data.y_test, np.array(result["predictions"]), data.num_classes)
    if getattr(args, "confusion_matrix", False):
        log(metrics.format_confusion_matrix(cm, data.class_names))
    if data.is_points and (args.plot or args.animate):   # a toy task: its decision boundary, not image grids
        from common import plots
        from scalar import playground
        recorder = next(iter(getattr(trainer, "epoch_hooks", ())), None)
        curves = {k: v for k, v in trainer.history.items() if k != "time"}
        paths = [plots.plot_history(curves, run.plot_path("history")),
                 *playground.save_figures(args, data, trainer, run, recorder)]
        for p in paths:
            log(f"figure: {p}")
    elif args.plot:
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


def _track_test(args, data: RunData, trainer, run, result) -> None:
    """predictions.npz for scripts/runs.py report, and the test point for --tensorboard."""
    from common.tensorboard import logger_for
    from common.tracking import save_predictions
    save_predictions(run.path, data.y_test, result["logits"], data.x_test, data.class_names, test_loss=result["loss"])
    tensorboard = getattr(trainer, "tensorboard", None) or logger_for(args, run.path)
    if tensorboard:
        tensorboard.log_test(result["loss"], result["acc"], trainer.epoch)
        tensorboard.close()


def show_trace(args, data: RunData, trainer, log=print) -> None:
    from scalar.trace import trace
    rows, targets = trainer.prepare(data.x_train[:1], data.y_train[:1], False)
    log(f"--trace: training sample 0 (label {data.class_names[targets[0]]}), normalized")
    trace(trainer.network, rows[0], targets[0], max_neurons=args.trace_neurons, print_fn=log)
    trainer.network.zero_grad()


# ---------------------------------------------------------------------- entry point
def _main(argv=None) -> int:
    from common.cli import RunDir, run_header
    from common.seed import seed_everything
    from scalar import io
    from common.checkpoint import check_tier
    from common.cli.preflight import check_run_flags
    from common.guard import refuse_non_finite
    from scalar import playground
    parser = build_parser()
    args = parser.parse_args(argv)
    toy = playground.prepare_args(parser, args)   # a toy task (--dataset rings...): a 2-16-2 net, many epochs
    activations, dropouts = layer_settings(parser, args)
    check_run_flags(args)  # flag combinations and output paths, before anything is loaded or written
    ckpt = io.load(args.resume or args.load) if (args.resume or args.load) else None
    if ckpt is not None:  # the scalar tier reads the vectorized MLP's weights too, but resumes only its own
        check_tier(ckpt, "scalar", "--resume" if args.resume else "--load",
                   accept=() if args.resume else ("vectorized",))
        refuse_non_finite(ckpt)
    seed_everything(args.seed)
    data = load_data(args)
    trainer = build_trainer(args, data, activations, dropouts)
    net = trainer.network
    if args.resume:
        io.restore(trainer, ckpt)
        if trainer.augmenter and "augmenter" in ckpt.extra:
            trainer.augmenter.load_state_dict(ckpt.extra["augmenter"])
        trainer.position = ckpt.extra.get("mid_epoch")
        run = RunDir.for_checkpoint(args.resume)
        run.rewrite_metrics(trainer.history)  # rows of epochs the checkpoint does not hold go
    else:
        if args.load:
            io.load_weights(net, ckpt)
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
    if toy:
        print(f"[nnott] toy task {data.description}: {n_train} train / {n_val} val / {n_test} test points")
        if args.animate:
            trainer.epoch_hooks = [playground.FrameRecorder(data, args.epochs)]
    elif args.limit:
        print(f"[nnott] --limit {args.limit}: a class-balanced subset keeps this run to about two minutes "
              f"at the default size ({n_train} train / {n_val} val / {n_test} test images); "
              "--limit 0 trains on the full dataset")
    else:
        print(f"[nnott] full dataset: {n_train} train / {n_val} val / {n_test} test images; "
              "the bar shows samples/s and the time left")
    if args.resume:
        where = f", batch {trainer.position['batch']} of epoch {trainer.epoch + 1}" if trainer.position else ""
        print(f"[nnott] resumed from {args.resume} after epoch {trainer.epoch} (step {trainer.step}{where})")
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
