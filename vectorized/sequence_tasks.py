"""Three sequence tasks for the recurrent layers: data, model and loss for each, plus sampling.

| task | model | loss |
|---|---|---|
| ``sine``   | RNN/LSTM/GRU -> last step -> Linear(H, 1): the next sample | MSE |
| ``adding`` | RNN/LSTM/GRU -> last step -> Linear(H, 1): the sum of the marked values | MSE |
| ``chars``  | Embedding -> RNN/LSTM/GRU -> Linear(H, vocab) at every step: the next character | cross-entropy |

Used by the launcher ``vectorized/recurrent.py``, the quickstart and the tutorial.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.backend import to_device, to_numpy
from common.data import sequences
from common.errors import UserError
from vectorized.layers import Linear
from vectorized.losses import MSELoss
from vectorized.module import Module, Sequential
from vectorized.rnn import CELLS, Embedding, LastStep, RecurrentBase, SequenceCrossEntropyLoss, TimeDistributed

TASKS = ("sine", "adding", "chars")


@dataclass
class SequenceData:
    """Train/validation arrays of one task; ``task`` is 'regression' or 'classification'."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    task: str
    input_size: int                      # features per step (vocabulary size for chars)
    output_size: int
    vocab: sequences.CharVocab | None = field(default=None, repr=False)


def load_task(name: str, seq_len: int, n_train: int = 2000, n_val: int = 500, seed: int = 0,
              text: str = "sonnets") -> SequenceData:
    """The arrays of task ``name`` (see the module table). For ``chars`` the text is cut into
    windows of ``seq_len`` (overlapping by half); the last tenth of the text is the validation part."""
    if name == "sine":
        x, y = sequences.sine_waves(n_train, seq_len, seed)
        xv, yv = sequences.sine_waves(n_val, seq_len, seed + 1)
        return SequenceData(name, x, y, xv, yv, "regression", 1, 1)
    if name == "adding":
        x, y = sequences.adding_problem(n_train, seq_len, seed)
        xv, yv = sequences.adding_problem(n_val, seq_len, seed + 1)
        return SequenceData(name, x, y, xv, yv, "regression", 2, 1)
    if name == "chars":
        raw = sequences.load_text(text)
        vocab = sequences.CharVocab(raw)
        ids = vocab.encode(raw)
        cut = int(len(ids) * 0.9)
        stride = max(1, seq_len // 2)
        x, y = sequences.char_windows(ids[:cut], seq_len, stride)
        xv, yv = sequences.char_windows(ids[cut:], seq_len, stride)
        return SequenceData(name, x, y, xv, yv, "classification", len(vocab), len(vocab), vocab)
    raise UserError(f"unknown sequence task {name!r}; choose one of: {', '.join(TASKS)}")


def build_model(data: SequenceData, cell: str = "lstm", hidden_size: int = 32, num_layers: int = 1,
                bptt: int | None = None, embed_dim: int = 16) -> Module:
    """The model for ``data``'s task with a recurrent layer of type ``cell`` (rnn, lstm, gru)."""
    if cell not in CELLS:
        raise UserError(f"unknown cell {cell!r}; choose one of: {', '.join(CELLS)}")
    rnn_cls = CELLS[cell]
    if data.name == "chars":
        model = Sequential(Embedding(data.input_size, embed_dim),
                           rnn_cls(embed_dim, hidden_size, num_layers, batch_first=True, bptt=bptt),
                           TimeDistributed(Linear(hidden_size, data.output_size, init="xavier")))
    else:
        model = Sequential(rnn_cls(data.input_size, hidden_size, num_layers, batch_first=True, bptt=bptt),
                           LastStep(), Linear(hidden_size, data.output_size, init="xavier"))
    model.arch_name = f"{cell}-{data.name}"
    return model


def loss_for(data: SequenceData):
    return SequenceCrossEntropyLoss() if data.task == "classification" else MSELoss()


def recurrent_layers(model: Module) -> list[RecurrentBase]:
    return [m for m in model.modules() if isinstance(m, RecurrentBase)]


def sample_text(model: Module, vocab: sequences.CharVocab, prime: str = "Shall I", length: int = 200,
                temperature: float = 0.8, seed: int = 0) -> str:
    """Generate ``length`` characters after ``prime``, one at a time.

    The recurrent layers become stateful: the prime runs through once, then each sampled
    character is fed back in as a sequence of one step, carrying the hidden state. The next
    character is drawn from softmax(logits / temperature): lower is safer, higher is wilder.
    """
    if temperature <= 0:
        raise UserError(f"the sampling temperature must be positive, got {temperature}")
    if not prime:
        raise UserError("give a non-empty prime text to start sampling from")
    rng = np.random.default_rng(seed)
    layers = recurrent_layers(model)
    was_training = model.training
    saved = [(layer.stateful, layer.final_state) for layer in layers]
    model.eval()
    try:
        for layer in layers:
            layer.stateful, layer.final_state = True, None
        ids = vocab.encode(prime)
        out = list(prime)
        logits = to_numpy(model(to_device(ids[None, :])))[0, -1]
        for _ in range(int(length)):
            z = logits.astype(np.float64) / temperature
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(p), p=p / p.sum()))
            out.append(vocab.chars[nxt])
            logits = to_numpy(model(to_device(np.array([[nxt]], dtype=np.int64))))[0, -1]
        return "".join(out)
    finally:
        for layer, (stateful, state) in zip(layers, saved):
            layer.stateful, layer.final_state = stateful, state
        model.train(was_training)


def train_on(data: SequenceData, model: Module, *, epochs: int, batch_size: int = 50, lr: float = 1e-2,
             grad_clip: float | None = 1.0, seed: int = 0, verbose: bool = False):
    """Train with Adam through the shared Trainer (no run folder); returns the trainer."""
    from vectorized.array_trainer import ArrayTrainer
    from vectorized.optim import Adam

    trainer = ArrayTrainer(model, loss_for(data), Adam(model.parameters(), lr=lr), task=data.task,
                           grad_clip=grad_clip, progress=False, verbose=verbose, seed=seed)
    trainer.fit((data.x_train, data.y_train), (data.x_val, data.y_val), epochs=epochs, batch_size=batch_size)
    return trainer


def compare_cells(seq_lens, cells=("rnn", "lstm", "gru"), *, task: str = "adding", epochs: int = 12,
                  hidden_size: int = 16, n_train: int = 2000, n_val: int = 500, lr: float = 1e-2,
                  seed: int = 0) -> dict:
    """Validation loss of each cell at each sequence length: {(cell, T): loss}.

    Same data, same seed, same recipe for every cell; only the recurrence differs.
    """
    from common.seed import seed_everything

    results = {}
    for T in seq_lens:
        data = load_task(task, T, n_train, n_val, seed=seed)
        for cell in cells:
            seed_everything(seed)
            model = build_model(data, cell, hidden_size)
            trainer = train_on(data, model, epochs=epochs, lr=lr, seed=seed)
            results[(cell, T)] = trainer.history["val_loss"][-1]
    return results


def format_comparison(results: dict, baseline: float | None = sequences.ADDING_BASELINE_MSE) -> str:
    """A Markdown table: one row per sequence length, one column per cell."""
    cells = list(dict.fromkeys(c for c, _ in results))
    lens = sorted({t for _, t in results})
    head = "| T | " + " | ".join(cells) + (" | always 1 |" if baseline is not None else " |")
    rule = "|---:|" + "---:|" * (len(cells) + (baseline is not None))
    rows = ["| " + str(t) + " | " + " | ".join(f"{results[(c, t)]:.4f}" for c in cells)
            + (f" | {baseline:.4f} |" if baseline is not None else " |") for t in lens]
    return "\n".join([head, rule, *rows])


def plot_comparison(results: dict, path, baseline: float | None = sequences.ADDING_BASELINE_MSE):
    """Validation MSE against sequence length, one line per cell (PNG)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for cell in dict.fromkeys(c for c, _ in results):
        lens = sorted(t for c, t in results if c == cell)
        ax.plot(lens, [results[(cell, t)] for t in lens], marker="o", label=cell.upper())
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle="--", label="always answer 1")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("validation MSE")
    ax.set_yscale("log")
    ax.set_title("adding problem: who remembers across T steps?")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_forecast(model: Module, data: SequenceData, path, count: int = 3):
    """Sine task: each validation window, the model's one-step forecast and the true next value."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    model.eval()
    pred = to_numpy(model(to_device(data.x_val[:count])))
    model.train()
    T = data.x_val.shape[1]
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 2.6), sharey=True)
    for i, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(range(T), data.x_val[i, :, 0], color="C0", label="input")
        ax.plot(T, data.y_val[i, 0], "o", color="C2", label="true next")
        ax.plot(T, pred[i, 0], "x", color="C3", markersize=9, label="forecast")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle("sine forecasting: the next sample")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_predictions(model: Module, data: SequenceData, path, count: int = 300):
    """Adding task: predicted against true sums on validation sequences (the diagonal is perfect)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    model.eval()
    pred = to_numpy(model(to_device(data.x_val[:count])))[:, 0]
    model.train()
    true = data.y_val[:count, 0]
    fig, ax = plt.subplots(figsize=(3.8, 3.6))
    ax.plot([0, 2], [0, 2], color="gray", linestyle="--", linewidth=1)
    ax.scatter(true, pred, s=8, alpha=0.6)
    ax.set_xlabel("true sum")
    ax.set_ylabel("predicted")
    ax.set_title(f"adding problem, T={data.x_val.shape[1]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
