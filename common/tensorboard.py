"""``--tensorboard``: the run's curves as a TensorBoard event file, through tensorboardX.

Each epoch adds one point to ``loss/train``, ``loss/val``, ``accuracy/train``, ``accuracy/val``
and ``lr`` (step = epoch number); the end of the run adds ``loss/test`` and ``accuracy/test``, and
the run's flags appear under TEXT. The file lives in ``<run folder>/tensorboard/``, so
``tensorboard --logdir runs`` shows every run side by side.

:func:`read_scalars` reads an event file back without TensorBoard itself: an event file is a
sequence of records, each ``length (uint64) | CRC of length (uint32) | data | CRC of data (uint32)``,
and ``data`` is one serialized ``Event`` message.
"""
from __future__ import annotations

import struct
from pathlib import Path

from common.errors import UserError

TAGS = {"loss": "loss/train", "acc": "accuracy/train", "val_loss": "loss/val", "val_acc": "accuracy/val",
        "lr": "lr"}


def _tensorboardx():
    try:
        import tensorboardX
    except ImportError:
        raise UserError("--tensorboard needs tensorboardX: pip install 'nnott[tensorboard]' "
                        "(or pip install tensorboardX)") from None
    return tensorboardX


class TensorBoardLogger:
    """Writes one run's scalars to ``log_dir``; also a Trainer callback (``on_epoch_end``)."""

    def __init__(self, log_dir, config: dict | None = None):
        self.log_dir = Path(log_dir)
        self.writer = _tensorboardx().SummaryWriter(logdir=str(self.log_dir))
        if config:
            lines = "\n".join(f"    {k}: {v}" for k, v in config.items())  # indented: a code block
            self.writer.add_text("config", lines, 0)

    def log_epoch(self, row: dict) -> None:
        """``row``: one metrics.csv row, {'epoch', 'loss', 'acc', 'val_loss', ...}."""
        for key, tag in TAGS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, float(row[key]), int(row["epoch"]))
        self.writer.flush()

    def on_epoch_end(self, trainer, row) -> None:
        self.log_epoch(row)

    def log_test(self, loss: float, acc: float, epoch: int) -> None:
        self.writer.add_scalar("loss/test", float(loss), int(epoch))
        self.writer.add_scalar("accuracy/test", float(acc), int(epoch))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def logger_for(args, run_path, config: dict | None = None) -> TensorBoardLogger | None:
    """A logger in ``<run_path>/tensorboard`` when ``--tensorboard`` was given, else None."""
    if not getattr(args, "tensorboard", False):
        return None
    return TensorBoardLogger(Path(run_path) / "tensorboard", config)


def event_files(log_dir) -> list[Path]:
    return sorted(Path(log_dir).glob("events.out.tfevents.*"))


def read_records(path):
    """Yield the data of each record of a TFRecord file (lengths only; the CRCs are skipped)."""
    with open(path, "rb") as fh:
        while True:
            head = fh.read(12)
            if len(head) < 12:
                return
            (length,) = struct.unpack("<Q", head[:8])
            data = fh.read(length)
            fh.read(4)
            if len(data) < length:
                return
            yield data


def read_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from every event file in ``log_dir``."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, list[tuple[int, float]]] = {}
    for path in event_files(log_dir):
        for data in read_records(path):
            event = Event()
            event.ParseFromString(data)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
    return out
