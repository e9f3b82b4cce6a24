"""The ``rnn`` scenario of ``scripts/quickstart_vectorized.py``: recurrent networks in three steps.

    python scripts/quickstart_vectorized.py --scenario rnn --plot

1. an LSTM forecasts a sine wave;
2. RNN, LSTM and GRU race on the adding problem at growing sequence lengths (who remembers?);
3. a character-level LSTM reads seven sonnets and writes some of its own.

It shares the quickstart's --seed, --run-dir, --plot and --gpu flags; the rest is fixed so the
whole scenario takes a few minutes on a CPU. ``vectorized/recurrent.py`` runs any of them with
every flag.
"""
from __future__ import annotations

from pathlib import Path

from common import backend
from scripts.scenarios import narrate, scenario_dir
from vectorized.recurrent import build_parser as recurrent_parser
from vectorized.recurrent_run import run_recurrent
from vectorized.sequence_tasks import compare_cells, format_comparison, plot_comparison

SEQ_LENS = (10, 20, 40)      # the adding problem's sequence lengths
SINE_EPOCHS, RACE_EPOCHS, CHAR_EPOCHS = 4, 20, 30
RACE_SAMPLES = 2000


def run_rnn_scenario(args) -> int:
    if args.gpu:
        backend.use_gpu()
    out = scenario_dir(args, "rnn")
    print(f"[quickstart] scenario rnn: results in {out}")

    def flags(*extra):
        common = ["--seed", str(args.seed), "--run-dir", str(out.path)] + (["--plot"] if args.plot else [])
        return recurrent_parser().parse_args([*extra, *common])

    narrate(1, 3, "forecast a sine wave", "An LSTM reads 20 samples of a sine of random frequency and phase "
            "and predicts the next one. The hidden state summarises what it has seen so far; the loss is the "
            "mean squared error of the forecast.")
    run_recurrent(flags("--task", "sine", "--cell", "lstm", "--epochs", str(SINE_EPOCHS)))

    narrate(2, 3, "long memory: the adding problem", "Each sequence holds random numbers and two markers; the "
            "answer is the sum of the two marked numbers, one of them up to T steps back. Always answering 1 "
            "scores MSE 0.167. A vanilla RNN's gradient shrinks at every step back, so as T grows it stops "
            "learning; the gated cells (LSTM, GRU) keep a path along which the gradient survives. Watch the "
            "LSTM at long T: it sits on the plateau for several epochs before it finds that path.")
    results = compare_cells(SEQ_LENS, epochs=RACE_EPOCHS, n_train=RACE_SAMPLES, n_val=RACE_SAMPLES // 4,
                            seed=args.seed)
    print("\nvalidation MSE (lower is better):\n" + format_comparison(results))
    if args.plot:
        print(f"[plot] {plot_comparison(results, Path(out.path) / 'adding-vs-length.png')}")

    narrate(3, 3, "a character-level language model", "An Embedding turns each character into a vector, an "
            "LSTM reads the text, and a Linear layer at every step predicts the next character. Truncated "
            "BPTT (--bptt 16) limits how far back each gradient travels. After training the model writes, one "
            "character at a time, feeding each choice back in.")
    run_recurrent(flags("--task", "chars", "--cell", "lstm", "--hidden-size", "128", "--batch-size", "16",
                        "--epochs", str(CHAR_EPOCHS), "--lr", "0.005", "--grad-clip", "5", "--bptt", "16",
                        "--sample-length", "300"))
    return 0
