"""Trace mode prints the forward pass and the order in which gradients accumulate."""
import re

from scalar.network import Network
from scalar.trace import trace


def test_trace_structure_and_numbers_match_the_network():
    net = Network(6, 3, (5, 4), ["relu", "tanh"], [0.5, 0.0], seed=1)
    x = [0.1, 0.0, 0.5, -0.3, 0.9, 0.2]
    text = trace(net, x, 2, max_neurons=2, print_fn=None)
    lines = text.splitlines()
    forward, backward = text.split("BACKWARD")
    # forward: one header per dense layer, named as in state_dict, at most 2 neurons each
    assert re.findall(r"^layer (\d+) ", forward, re.M) == ["0", "3", "5"]
    assert "dropout p=0.5: off in eval mode" in forward
    assert len(re.findall(r"^  neuron", forward, re.M)) == 2 + 2 + 2
    assert "... 3 more neurons" in forward and "... 2 more neurons" in forward
    net.eval()
    logits = net.forward(x)
    assert f"logits [{logits[0]:+.4f}, {logits[1]:+.4f}, {logits[2]:+.4f}]" in text
    # backward runs from the output layer to the first, numbering the accumulations in order
    assert re.findall(r"^layer (\d+) ", backward, re.M) == ["5", "3", "0"]
    steps = [int(s) for s in re.findall(r"\[(\d+)\] \d+\.bias", backward)]
    assert steps == sorted(steps) and steps[:2] == [1, 2]
    assert lines[-1].endswith("backward stops here")
    # the trace leaves this sample's gradients in the network
    g = net.grad_dict()["5.bias"]
    assert f"[1] 5.bias[0] += {g[0]:+.4f}" in backward


def test_training_mode_trace_shows_the_dropout_mask():
    net = Network(4, 2, (6,), "relu", 0.5, seed=0)
    text = trace(net, [1.0, 2.0, 3.0, 4.0], 0, training=True, print_fn=None)
    assert re.search(r"dropout p=0.5: \d of 6 inputs zeroed, survivors scaled by 1/\(1-p\) = 2.0000", text)
    assert "forward pass's mask" in text
