"""Train the same model with the same recipe in NNOTT and in PyTorch, and compare test accuracy.

Both start from the same initial weights, see the same images in the same order with the same
augmentations and normalization, and use Adam (or SGD) with the same settings; only dropout
masks and floating-point summation order differ. Needs PyTorch (pip install -e ".[torch]").

    python scripts/compare_torch.py mlp --dataset synth-digits --epochs 3
    python scripts/compare_torch.py lenet --dataset synth-digits --epochs 3
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from any folder

import numpy as np  # noqa: E402

from common import cli  # noqa: E402
from common.errors import UserError  # noqa: E402

MODELS = ("mlp", "lenet", "baseline", "alexnet", "vgg16", "resnet18", "efficientnet_lite0", "convnext_tiny")


def build_parser():
    parser = cli.make_parser(__doc__.split("\n")[0], [
        "python scripts/compare_torch.py mlp --dataset synth-digits --epochs 3",
        "python scripts/compare_torch.py resnet18 --dataset synth-digits --limit 5000 --epochs 3"])
    parser.add_argument("model", choices=MODELS, help="mlp (784-256-128-64-10, dropout 0.2) or an architecture")
    cli.add_data_args(parser)
    cli.add_training_args(parser, epochs=3, batch_size=64)
    cli.add_optimizer_args(parser, choices=("sgd", "momentum", "adam"), stabilizers=False, label_smoothing=False)
    cli.add_augment_args(parser, allow_mix=False)
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def build_ours(args, shape, classes):
    if args.model == "mlp":
        from vectorized.mlp import build_mlp

        return build_mlp(int(np.prod(shape)), classes, [256, 128, 64], ["relu"], [0.2])
    from convolutional.architectures import build_model

    return build_model(args.model, shape, classes)


def build_torch_twin(args, ours, shape, classes, state):
    import torch

    from scripts.bench.workloads import _torch_reference_module, describe_layers, torch_mlp

    if args.model == "mlp":
        model = torch_mlp(describe_layers(ours))
    else:
        model = _torch_reference_module().build_torch_model(args.model, input_shape=shape, num_classes=classes,
                                                              variant=ours.variant)
    own = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(own[k].dtype) for k, v in state.items()})
    return model


def train_torch(args, model, data, normalizer, augmenter, flatten):
    """The NNOTT Trainer's loop, written with torch: same order, same batches, same optimizer."""
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    params = model.parameters()
    if args.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=args.lr, weight_decay=args.weight_decay,
                              momentum=args.momentum if args.optimizer == "momentum" else 0.0)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(args.seed)  # the Trainer's data order

    def prepare(x, y=None, train=False):
        x = x.astype(np.float32) / 255.0
        if train and augmenter is not None:
            x, y = augmenter(x, y, data.num_classes)
        x = normalizer(x)
        x = x.reshape(len(x), -1) if flatten else x
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y))

    n = len(data.x_train)
    for epoch in range(args.epochs):
        model.train()
        perm = rng.permutation(n)
        t0 = time.perf_counter()
        for b in range(0, n, args.batch_size):
            idx = perm[b:b + args.batch_size]
            x, y = prepare(data.x_train[idx], data.y_train[idx], train=True)
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        print(f"torch epoch {epoch + 1}/{args.epochs} {time.perf_counter() - t0:.1f}s", flush=True)
    model.eval()
    correct = 0
    with torch.no_grad():
        for b in range(0, len(data.x_test), 256):
            x, y = prepare(data.x_test[b:b + 256], data.y_test[b:b + 256])
            correct += int((model(x).argmax(1) == y).sum())
    return correct / len(data.x_test)


def _main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("PyTorch is not installed: pip install -e '.[torch]'") from None
    from common.seed import seed_everything
    from common.data import load_run_data
    from vectorized.experiment import build_augmenter, build_optimizer
    from vectorized.losses import CrossEntropyLoss
    from vectorized.trainer import Trainer

    seed_everything(args.seed)
    data = load_run_data(args)
    ours = build_ours(args, data.image_shape, data.num_classes)
    initial = ours.state_dict()
    normalizer = data.normalizer
    flatten = args.model == "mlp"
    print(f"[compare] {args.model} on {data.name}: {len(data.x_train)} train / {len(data.x_test)} test images, "
          f"{args.epochs} epochs, {args.optimizer} lr {args.lr}, {ours.num_parameters():,} parameters")

    args.lookahead = False
    trainer = Trainer(ours, CrossEntropyLoss(), build_optimizer(args, ours), normalizer=normalizer,
                      num_classes=data.num_classes, augmenter=build_augmenter(args, data.name, args.seed + 1),
                      flatten_input=flatten, seed=args.seed)
    t0 = time.perf_counter()
    trainer.fit((data.x_train, data.y_train), None, epochs=args.epochs, batch_size=args.batch_size)
    ours_time = time.perf_counter() - t0
    ours_acc = trainer.evaluate(data.x_test, data.y_test)["acc"]

    twin = build_torch_twin(args, ours, data.image_shape, data.num_classes, initial)
    t0 = time.perf_counter()
    torch_acc = train_torch(args, twin, data, normalizer, build_augmenter(args, data.name, args.seed + 1), flatten)
    torch_time = time.perf_counter() - t0

    print(f"\n{'':<8}{'test accuracy':>15}{'train time':>13}")
    print(f"{'NNOTT':<8}{100 * ours_acc:>14.2f}%{ours_time:>12.1f}s")
    print(f"{'PyTorch':<8}{100 * torch_acc:>14.2f}%{torch_time:>12.1f}s")
    print(f"difference: {100 * (ours_acc - torch_acc):+.2f} points")
    return 0


def main(argv=None):
    return cli.run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
