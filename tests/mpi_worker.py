"""A few training steps of a tiny model, one process or one rank of ``mpiexec -n N`` (tests only).

    python tests/mpi_worker.py OUT.npz --model cnn-bn --dtype float64            # one process
    mpiexec -n 2 python tests/mpi_worker.py OUT.npz --model cnn-bn --distributed --sync-bn

Trains ``--epochs`` epochs on generated 1x8x8 images (augmentation on) and writes the final
state dict (rank 0) to OUT.npz, so a test can compare N ranks with one process. With
``--distributed`` it runs through :func:`common.distributed.run_main`, as the launchers do;
``--fail-rank R`` makes rank R fail after step ``--fail-step``: raise, ``os._exit(3)`` or
SIGKILL itself (``--fail-how``).
"""
import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common.augment import AugmentConfig, Augmenter  # noqa: E402
from common.cli import RunDir  # noqa: E402
from common.data import Normalizer  # noqa: E402
from common.seed import seed_everything  # noqa: E402
from convolutional.conv import Conv2D  # noqa: E402
from convolutional.layout import Flatten, ToChannelsLast  # noqa: E402
from convolutional.norm import BatchNorm2D  # noqa: E402
from vectorized.activations import ReLU  # noqa: E402
from vectorized.layers import BatchNorm1d, Linear  # noqa: E402
from vectorized.losses import CrossEntropyLoss  # noqa: E402
from vectorized.module import Sequential  # noqa: E402
from vectorized.optim import SGD, Adam  # noqa: E402
from vectorized.trainer import Trainer  # noqa: E402


def images(n=96, seed=0):
    """Ten classes of 1x8x8 uint8 images: a bright row whose position encodes the class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 80, size=(n, 1, 8, 8))
    for i, label in enumerate(y):
        x[i, 0, label % 8, :] += 150
    return x.clip(0, 255).astype(np.uint8), y.astype(np.int64)


def build(name):
    if name == "resnet18":
        from convolutional.architectures import build_model

        return build_model("resnet18", (1, 8, 8), 10), False
    if name == "mlp":
        return Sequential(Linear(64, 16), ReLU(), Linear(16, 10)), True
    if name == "mlp-bn":
        return Sequential(Linear(64, 16), BatchNorm1d(16), ReLU(), Linear(16, 10)), True
    return Sequential(ToChannelsLast(), Conv2D(1, 4, 3, padding=1), BatchNorm2D(4), ReLU(),
                      Conv2D(4, 4, 3, stride=2, padding=1), BatchNorm2D(4), ReLU(), Flatten(),
                      Linear(64, 10)), False


class FailAt:
    """A step callback that fails on one rank: the fault the tests inject."""

    def __init__(self, rank, step, how="raise"):
        self.rank, self.step, self.how = rank, step, how

    def on_step_end(self, trainer, step):
        if trainer.parallel.rank != self.rank or step != self.step:
            return
        if self.how == "exit":
            os._exit(3)
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"injected fault at step {step}")


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--model", default="cnn-bn", choices=("mlp", "mlp-bn", "cnn-bn", "resnet18"))
    p.add_argument("--dtype", default="float64")
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=24)
    p.add_argument("--distributed", action="store_true")
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--fail-rank", type=int, default=None, help="this rank raises RuntimeError ...")
    p.add_argument("--fail-step", type=int, default=3, help="... after this optimizer step")
    p.add_argument("--fail-how", default="raise", choices=("raise", "exit", "kill"))
    p.add_argument("--run-dir", default=None, help="rank 0 writes last.h5 here after every epoch")
    args = p.parse_args(argv)

    parallel = None
    if args.distributed:
        from common import distributed
        from vectorized.data_parallel import DataParallel

        parallel = DataParallel(distributed.world())
    root = parallel is None or parallel.is_root
    seed_everything(3)
    x, y = images()
    model, flat = build(args.model)
    model.astype(np.dtype(args.dtype))
    if args.sync_bn:
        from vectorized.sync_bn import convert_sync_batchnorm

        convert_sync_batchnorm(model, parallel)
    optimizer = (SGD(model.parameters(), lr=0.1, momentum=0.9) if args.optimizer == "sgd"
                 else Adam(model.parameters(), lr=5e-4))
    trainer = Trainer(model, CrossEntropyLoss(), optimizer,
                      normalizer=Normalizer.fit(x), num_classes=10, flatten_input=flat, progress=False,
                      augmenter=Augmenter(AugmentConfig(max_shift=1, noise_prob=0.5, noise_std=0.05), seed=5),
                      seed=7, parallel=parallel,
                      run_dir=RunDir(path=args.run_dir) if args.run_dir and root else None,
                      callbacks=[FailAt(args.fail_rank, args.fail_step, args.fail_how)] if args.fail_rank is not None else [])
    if parallel is not None and args.run_dir and root:
        parallel.watch_checkpoints(args.run_dir)
    trainer.fit((x, y), (x[:30], y[:30]), epochs=args.epochs, batch_size=args.batch_size)
    if root:
        state = {k: np.asarray(v) for k, v in model.state_dict().items()}
        np.savez(args.out, loss=np.array(trainer.history["loss"]), val_loss=np.array(trainer.history["val_loss"]),
                 **{"w:" + k: v for k, v in state.items()})


if __name__ == "__main__":
    if "--distributed" in sys.argv:
        from common import distributed

        sys.exit(distributed.run_main(main))
    main()
