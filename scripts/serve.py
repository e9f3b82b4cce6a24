"""Serve trained checkpoints on a web page where you draw a digit and the model answers.

    python scripts/serve.py --checkpoint runs/<run>/best.h5
    python scripts/serve.py --checkpoint runs/<cnn-run>/best.h5 --checkpoint runs/<mlp-run>/best.h5

The page listens on 127.0.0.1 only (this machine). It needs Gradio: pip install -e ".[ui]".
Every checkpoint is loaded and checked before the server starts; a missing or unusable one
ends the command with one line (exit 1).
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, when run as a file

from common import cli  # noqa: E402
from common.errors import UserError  # noqa: E402

EXAMPLES = [
    "python scripts/serve.py --checkpoint runs/<run>/best.h5",
    "python scripts/serve.py --checkpoint runs/<cnn>/best.h5 --checkpoint runs/<mlp>/best.h5 --top-k 5",
    "python scripts/serve.py --checkpoint runs/<run>/last.h5 --port 8000 --max-upload-mb 2",
]


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1..65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return port


def build_parser():
    parser = cli.make_parser("Draw a digit or upload an image in the browser and watch trained models "
                             "answer (scalar, vectorized or convolutional checkpoints).", EXAMPLES)
    parser.add_argument("--checkpoint", action="append", type=Path, required=True, metavar="PATH",
                        help="a checkpoint written by a launcher (runs/<run>/best.h5 or last.h5); "
                             "repeat to switch between models or compare two side by side")
    parser.add_argument("--port", type=port_number, default=7860, metavar="N",
                        help="port on 127.0.0.1 to listen on")
    parser.add_argument("--top-k", type=cli.positive_int, default=3, metavar="K",
                        help="how many of the most likely classes to show")
    parser.add_argument("--max-upload-mb", type=cli.positive_float, default=5.0, metavar="MB",
                        help="largest image file accepted by the upload")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="dataset cache folder for the random test images "
                             "(default: $NNOTT_DATA, else ~/.cache/nnott)")
    parser.add_argument("--seed", type=cli.seed_value, default=0,
                        help="seed of the random test images' order")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def check_port_free(port: int) -> None:
    """A UserError when something already listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: only a listener blocks
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise UserError(f"port {port} on 127.0.0.1 is in use; choose another with --port") from None


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from scripts.serving.models import load_served_model, unique_labels

    models = [load_served_model(p) for p in args.checkpoint]
    unique_labels(models)
    check_port_free(args.port)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing about the page leaves this machine
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("the drawing page needs Gradio, which is not installed: "
                        "pip install -e \".[ui]\" (or pip install gradio)") from None
    from scripts.serving.ui import build_app, launch

    max_bytes = int(args.max_upload_mb * 2**20)
    for m in models:
        print(f"[serve] {m.label}: {'x'.join(map(str, m.input_shape))} input, {len(m.class_names)} classes, "
              f"trained on {m.dataset or 'an unnamed dataset'} for {m.epoch} epoch(s)", flush=True)
    app = build_app(models, top_k=args.top_k, max_upload_bytes=max_bytes, data_dir=args.data_dir, seed=args.seed)
    print(f"[serve] open http://127.0.0.1:{args.port} in a browser (Ctrl-C stops the server)", flush=True)
    launch(app, args.port, max_bytes, quiet=True)
    return 0


def main(argv=None) -> int:
    return cli.run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
