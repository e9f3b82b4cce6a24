"""Recurrent networks for the vectorized tier: RNN, LSTM, GRU, Embedding and sequence glue.

    from vectorized.rnn import LSTM, Embedding, LastStep
    lstm = LSTM(input_size=8, hidden_size=32, num_layers=2, batch_first=True)
    h = lstm(x)                  # x: (N, T, 8) -> h: (N, T, 32); lstm.final_state = (h_n, c_n)
    dx = lstm.backward(dh)       # backpropagation through time (truncated with bptt=k)

Parameter names and gate orders are PyTorch's, so ``nn.LSTM`` weights load as they are.
"""
from vectorized.rnn.base import RecurrentBase
from vectorized.rnn.cells import GRU, LSTM, RNN
from vectorized.rnn.embedding import Embedding
from vectorized.rnn.loss import SequenceCrossEntropyLoss
from vectorized.rnn.sequence import LastStep, TimeDistributed

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}

__all__ = ["RecurrentBase", "RNN", "LSTM", "GRU", "Embedding", "LastStep", "TimeDistributed",
           "SequenceCrossEntropyLoss", "CELLS"]
