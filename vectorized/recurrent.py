"""Train a recurrent network (RNN, LSTM or GRU) on a sequence task, with NumPy or CuPy.

    python vectorized/recurrent.py --task adding --cell lstm --seq-len 40 --epochs 30 --grad-clip 1 --plot
    python vectorized/recurrent.py --task chars --cell gru --seq-len 64 --bptt 16 --epochs 20
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from any folder

from common import cli  # noqa: E402

EXAMPLES = [
    "python vectorized/recurrent.py --task sine --cell rnn --epochs 5 --plot",
    "python vectorized/recurrent.py --task adding --cell lstm --seq-len 40 --epochs 30 --grad-clip 1 --plot",
    "python vectorized/recurrent.py --task chars --cell lstm --hidden-size 128 --seq-len 64 --bptt 16 --epochs 30",
    "python vectorized/recurrent.py --resume runs/<run>/last.h5 --epochs 40",
]


def build_parser():
    parser = cli.make_parser("Train an RNN, LSTM or GRU on a sequence task (vectorized tier).", EXAMPLES)
    g = parser.add_argument_group("sequence task and model")
    g.add_argument("--task", choices=("sine", "adding", "chars"), default="sine",
                   help="sine: forecast the next sample; adding: sum the two marked values (long memory); "
                        "chars: next-character language model on a shipped text")
    g.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="lstm", help="the recurrent layer")
    g.add_argument("--hidden-size", type=cli.positive_int, default=32, metavar="H", help="hidden units per layer")
    g.add_argument("--num-layers", type=cli.positive_int, default=1, metavar="L", help="stacked recurrent layers")
    g.add_argument("--seq-len", type=cli.positive_int, default=None, metavar="T",
                   help="steps per sequence (default: 20 for sine and adding, 64 for chars)")
    g.add_argument("--bptt", type=cli.positive_int, default=None, metavar="K",
                   help="truncated backpropagation through time: gradients travel back at most K steps "
                        "(default: the whole sequence)")
    g.add_argument("--samples", type=cli.positive_int, default=2000, metavar="N",
                   help="generated training sequences for sine/adding (a quarter as many for validation)")
    g.add_argument("--text", default="sonnets", metavar="NAME|PATH",
                   help="chars: 'sonnets' (shipped, public domain) or the path of a UTF-8 text file")
    g.add_argument("--embed-dim", type=cli.positive_int, default=16, metavar="D", help="chars: embedding size")
    g.add_argument("--sample-length", type=cli.nonneg_int, default=300, metavar="N",
                   help="chars: characters to generate after training (0: none)")
    g.add_argument("--temperature", type=cli.positive_float, default=0.8, help="chars: sampling temperature")
    g.add_argument("--prime", default="Shall I", help="chars: text the sample starts from")
    cli.add_training_args(parser, epochs=10, batch_size=50)
    cli.add_optimizer_args(parser, default_optimizer="adam", default_lr=1e-2, label_smoothing=False)
    cli.add_schedule_args(parser)
    cli.add_checkpoint_args(parser)
    cli.add_device_args(parser)
    cli.add_output_args(parser, confusion_matrix=False, misclassified=False)
    return parser


def _main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    import engine

    engine.use(args.engine)  # the layers' reference code, or the engine's replacements
    from vectorized.recurrent_run import DEFAULT_SEQ_LEN, run_recurrent

    seq_len = args.seq_len or DEFAULT_SEQ_LEN[args.task]
    if args.bptt is not None and args.bptt > seq_len and not args.resume:
        parser.error(f"--bptt {args.bptt} is longer than the sequences (--seq-len {seq_len}); "
                     "give a window of at most the sequence length")

    run_recurrent(args)
    return 0


def main(argv=None):
    return cli.run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
