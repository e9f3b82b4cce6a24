"""Recurrent layers: float64 gradient checks, PyTorch parity, truncated BPTT, clear errors."""
import numpy as np
import pytest

from common.errors import UserError
from vectorized.gradcheck import check_loss_gradients, check_module_gradients, numerical_gradient, relative_error
from vectorized.module import Sequential
from vectorized.rnn import GRU, LSTM, RNN, Embedding, LastStep, SequenceCrossEntropyLoss, TimeDistributed
from vectorized.layers import Linear

CELLS = [RNN, LSTM, GRU]


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("batch_first,layers", [(False, 1), (True, 2)])
def test_gradient_check(cls, batch_first, layers):
    layer = cls(3, 4, num_layers=layers, batch_first=batch_first)
    x = np.random.default_rng(0).standard_normal((2, 5, 3) if batch_first else (5, 2, 3))
    report = check_module_gradients(layer, x)
    assert report.ok, f"{cls.__name__}\n{report}"


@pytest.mark.parametrize("cls", CELLS)
def test_gradient_of_initial_state(cls):
    layer = cls(2, 3, num_layers=2, batch_first=True).astype(np.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 2))
    hx = tuple(rng.standard_normal((2, 2, 3)) for _ in range(layer.state_parts))
    g = rng.standard_normal((2, 4, 3))
    layer.zero_grad()
    layer(x, hx)
    layer.backward(g)
    for part in range(layer.state_parts):
        def loss(_):
            return float((layer(x, hx) * g).sum())
        numeric = numerical_gradient(loss, hx[part])
        assert relative_error(layer.grad_hx[part], numeric) < 1e-7


@pytest.mark.parametrize("cls", CELLS)
def test_truncated_bptt_is_a_gradient_check_of_the_windowed_graph(cls):
    """With bptt=k the gradient equals that of a run cut into k-step windows whose initial
    states are constants (each window's state is taken from the previous window's forward)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 2, 3))
    g = rng.standard_normal((6, 2, 4))
    full = cls(3, 4, bptt=3).astype(np.float64)
    full.zero_grad()
    y = full(x)
    dx = full.backward(g)
    windows = cls(3, 4).astype(np.float64)
    windows.load_state_dict(full.state_dict())
    windows.zero_grad()
    y1 = windows(x[:3])
    state = windows.final_state
    dx1 = windows.backward(g[:3])
    y2 = windows(x[3:], state)
    dx2 = windows.backward(g[3:])
    np.testing.assert_allclose(y, np.concatenate([y1, y2]), atol=1e-12)
    np.testing.assert_allclose(dx, np.concatenate([dx1, dx2]), atol=1e-12)
    for (name, p), (_, q) in zip(full.named_parameters(), windows.named_parameters()):
        np.testing.assert_allclose(p.grad, q.grad, atol=1e-12, err_msg=name)
    # and it differs from full BPTT: something really was cut
    untruncated = cls(3, 4).astype(np.float64)
    untruncated.load_state_dict(full.state_dict())
    untruncated(x)
    assert np.abs(untruncated.backward(g) - dx).max() > 1e-6


def test_stateful_layer_carries_its_state():
    lstm = LSTM(2, 3, batch_first=True, stateful=True)
    x = np.random.default_rng(3).standard_normal((1, 6, 2)).astype(np.float32)
    whole = LSTM(2, 3, batch_first=True)
    whole.load_state_dict(lstm.state_dict())
    y = whole(x)
    parts = np.concatenate([lstm(x[:, :2]), lstm(x[:, 2:])], axis=1)
    np.testing.assert_allclose(parts, y, atol=1e-6)
    lstm.reset_state()
    np.testing.assert_allclose(lstm(x[:, :2]), y[:, :2], atol=1e-6)


def test_embedding_gradient_check():
    emb = Embedding(5, 3).astype(np.float64)
    ids = np.array([[0, 2, 2], [4, 0, 1]])
    g = np.random.default_rng(4).standard_normal((2, 3, 3))
    emb.zero_grad()
    emb(ids)
    assert emb.backward(g) is None
    numeric = numerical_gradient(lambda _: float((emb(ids) * g).sum()), emb.weight.data)
    assert relative_error(emb.weight.grad, numeric) < 1e-8


def test_sequence_glue_and_loss_gradients():
    model = Sequential(LSTM(3, 4, batch_first=True), TimeDistributed(Linear(4, 2)))
    x = np.random.default_rng(5).standard_normal((2, 3, 3))
    assert check_module_gradients(model, x).ok
    assert check_module_gradients(Sequential(GRU(3, 4, batch_first=True), LastStep()), x).ok
    logits = np.random.default_rng(6).standard_normal((2, 3, 5))
    targets = np.array([[0, 4, 1], [2, 2, 3]])
    assert check_loss_gradients(SequenceCrossEntropyLoss(), logits, targets).ok


def test_parameter_names_and_shapes_are_pytorchs():
    shapes = LSTM(3, 5, num_layers=2).state_shapes()
    assert shapes == {"weight_ih_l0": (20, 3), "weight_hh_l0": (20, 5), "bias_ih_l0": (20,), "bias_hh_l0": (20,),
                      "weight_ih_l1": (20, 5), "weight_hh_l1": (20, 5), "bias_ih_l1": (20,), "bias_hh_l1": (20,)}
    assert list(GRU(3, 5, bias=False).state_shapes()) == ["weight_ih_l0", "weight_hh_l0"]


@pytest.mark.parametrize("bad,message", [
    (np.zeros((4, 3)), "batch of sequences"),
    (np.zeros((2, 4, 5)), "5 features per step"),
    (np.zeros((2, 0, 3)), "length 0"),
])
def test_bad_input_is_one_clear_error(bad, message):
    with pytest.raises(UserError, match=message):
        RNN(3, 4, batch_first=True)(bad)


def test_bad_initial_state_and_tokens():
    with pytest.raises(UserError, match="initial state of shape"):
        GRU(3, 4)(np.zeros((5, 2, 3)), np.zeros((1, 3, 4)))
    with pytest.raises(UserError, match="outside"):
        Embedding(4, 2)(np.array([[1, 4]]))
    with pytest.raises(UserError, match="sequence lengths do not match"):
        SequenceCrossEntropyLoss()(np.zeros((2, 5, 3)), np.zeros((2, 4), dtype=np.int64))


# ---------------------------------------------------------------------------------------- torch
torch = pytest.importorskip("torch", reason="PyTorch parity needs torch (pip install torch)")


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batch_first,layers,bias", [(False, 1, True), (True, 2, True), (True, 1, False)])
def test_torch_parity(name, batch_first, layers, bias):
    """nn.RNN/LSTM/GRU weights load as they are; outputs, final states and gradients agree."""
    torch.manual_seed(0)
    ours_cls = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}[name]
    theirs = getattr(torch.nn, name)(3, 5, num_layers=layers, bias=bias, batch_first=batch_first).double()
    ours = ours_cls(3, 5, num_layers=layers, bias=bias, batch_first=batch_first).astype(np.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 6, 3) if batch_first else (6, 4, 3))
    h0 = [rng.standard_normal((layers, 4, 5)) for _ in range(ours.state_parts)]
    xt = torch.tensor(x, requires_grad=True)
    h0t = [torch.tensor(h, requires_grad=True) for h in h0]
    yt, state_t = theirs(xt, tuple(h0t) if name == "LSTM" else h0t[0])
    state_t = state_t if name == "LSTM" else (state_t,)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    y = ours(x, h0)
    dx = ours.backward(g)
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=1e-12)
    for a, b in zip(ours.final_state, state_t):
        np.testing.assert_allclose(a, b.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-12)
    for a, b in zip(ours.grad_hx, h0t):
        np.testing.assert_allclose(a, b.grad.numpy(), atol=1e-12)
    torch_grads = dict(theirs.named_parameters())
    for pname, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, torch_grads[pname].grad.numpy(), atol=1e-12, err_msg=pname)


def test_embedding_torch_parity():
    theirs = torch.nn.Embedding(7, 4).double()
    ours = Embedding(7, 4).astype(np.float64)
    ours.load_state_dict({"weight": theirs.weight.detach().numpy()})
    ids = np.array([[1, 6, 1], [0, 3, 1]])
    g = np.random.default_rng(8).standard_normal((2, 3, 4))
    yt = theirs(torch.tensor(ids))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(ours(ids), yt.detach().numpy())
    ours.backward(g)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), atol=1e-12)


# ---------------------------------------------------------------------------------------- device rules
def test_recurrent_training_under_strict_backend(strict_backend):
    """The recurrent layers, the embedding and the sequence loss never mix host and device arrays
    (the CPU stand-in for CuPy's rules), and a char model samples on the device."""
    from common.backend import StrictArray, to_device
    from vectorized.sequence_tasks import build_model, load_task, sample_text, train_on

    for task, cell in (("chars", "lstm"), ("adding", "gru"), ("sine", "rnn")):
        data = load_task(task, 8, n_train=24, n_val=8)
        data.x_train, data.y_train = data.x_train[:24], data.y_train[:24]
        data.x_val, data.y_val = data.x_val[:8], data.y_val[:8]
        model = build_model(data, cell, 8, num_layers=2, bptt=4)
        assert isinstance(model[1 if task == "chars" else 0].weight_hh_l0.data, StrictArray)
        trainer = train_on(data, model, epochs=1, batch_size=8)
        assert np.isfinite(trainer.history["val_loss"][-1])
        if task == "chars":
            assert len(sample_text(model, data.vocab, "Sh", length=5)) == 7
    lstm = LSTM(3, 4, batch_first=True)
    h0 = (to_device(np.zeros((1, 2, 4)), np.float32), to_device(np.zeros((1, 2, 4)), np.float32))
    y = lstm(to_device(np.ones((2, 5, 3)), np.float32), h0)
    assert isinstance(lstm.backward(y), StrictArray) and isinstance(lstm.grad_hx[1], StrictArray)
