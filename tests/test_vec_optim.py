"""Optimizers: 5-step parameter trajectories against torch.optim, exact resume, Lookahead, clipping."""
import numpy as np
import pytest

from common.errors import UserError
from vectorized.losses import CrossEntropyLoss
from vectorized.mlp import build_mlp
from vectorized.optim import SGD, Adam, AdamW, Lookahead, RMSprop, clip_grad_norm, make_optimizer
from vectorized.schedules import StepLR

X = np.random.default_rng(0).standard_normal((5, 16, 6))  # 5 batches of 16 samples
Y = np.random.default_rng(1).integers(0, 3, (5, 16))

CONFIGS = {
    "sgd": (lambda p: SGD(p, lr=0.1), lambda torch, p: torch.optim.SGD(p, lr=0.1)),
    "momentum-wd": (lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
                    lambda torch, p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2)),
    "nesterov": (lambda p: SGD(p, lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-3),
                 lambda torch, p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-3)),
    "adam": (lambda p: Adam(p, lr=1e-2), lambda torch, p: torch.optim.Adam(p, lr=1e-2)),
    "adam-wd": (lambda p: Adam(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.05),
                lambda torch, p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.05)),
    "adamw": (lambda p: AdamW(p, lr=1e-2, weight_decay=0.1),
              lambda torch, p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1)),
    "rmsprop": (lambda p: RMSprop(p, lr=1e-2), lambda torch, p: torch.optim.RMSprop(p, lr=1e-2)),
    "rmsprop-momentum-wd": (lambda p: RMSprop(p, lr=1e-3, alpha=0.9, momentum=0.9, weight_decay=1e-2),
                            lambda torch, p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.9, momentum=0.9,
                                                                 weight_decay=1e-2)),
}


def small_mlp(dtype=np.float64):
    # no BatchNorm: a bias just before BN has a gradient of pure rounding noise, which Adam
    # and RMSprop normalise into full-size steps that no two libraries agree on.
    return build_mlp(6, 3, [8, 5], ["tanh", "relu"], [0.0]).astype(dtype)


def torch_twin(torch, model):
    nn = torch.nn
    ref = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    ref.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    return ref


def train_ours(model, opt, steps, start=0, clip=None):
    loss = CrossEntropyLoss()
    trajectory = []
    for s in range(start, start + steps):
        opt.zero_grad()
        loss(model(X[s].astype(model[0].weight.data.dtype)), Y[s])
        model.backward(loss.backward())
        if clip is not None:
            clip_grad_norm(model.parameters(), clip)
        opt.step()
        trajectory.append(model.state_dict())
    return trajectory


def train_torch(torch, ref, opt, steps, clip=None):
    trajectory = []
    for s in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(torch.tensor(X[s])), torch.tensor(Y[s])).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        opt.step()
        trajectory.append({k: v.detach().numpy().copy() for k, v in ref.state_dict().items()})
    return trajectory


def assert_same_trajectory(ours, theirs, atol=1e-10):
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for key in b:
            assert np.allclose(a[key], b[key], rtol=1e-8, atol=atol), f"step {step + 1}, {key}"


@pytest.mark.parametrize("name", CONFIGS)
def test_trajectory_matches_torch(name):
    torch = pytest.importorskip("torch")
    make_ours, make_theirs = CONFIGS[name]
    model = small_mlp()
    ref = torch_twin(torch, model)
    ours = train_ours(model, make_ours(model.parameters()), 5)
    theirs = train_torch(torch, ref, make_theirs(torch, ref.parameters()), 5)
    assert_same_trajectory(ours, theirs)


@pytest.mark.parametrize("name", ["adam", "adam-wd", "adamw"])
@pytest.mark.parametrize("shared", [True, False], ids=["every-core", "calling-thread"])
def test_adam_in_slices_matches_torch(name, shared, monkeypatch):
    """A parameter is updated in slices of ADAM_BLOCK_BYTES: above SMALL_PASS_BYTES shared out
    with run_blocks, below it one after another on the calling thread. Forced here with tiny
    thresholds (slices of 4 values, uneven ones at the end), the trajectory still follows
    torch's, and equals the update of all (small) parameters as one flat array to the bit."""
    from engine import optim, parallel, tuning

    torch = pytest.importorskip("torch")
    make_ours, make_theirs = CONFIGS[name]
    model, twin = small_mlp(), small_mlp()
    twin.load_state_dict(model.state_dict())
    ref = torch_twin(torch, model)
    whole = train_ours(twin, make_ours(twin.parameters()), 5)
    if shared:
        monkeypatch.setattr(tuning, "SMALL_PASS_BYTES", 0)
    monkeypatch.setattr(tuning, "ADAM_FLAT_BYTES", 0)
    monkeypatch.setattr(tuning, "ADAM_BLOCK_BYTES", 4 * 8)
    counts, slices = [], []

    def counting(ranges, work, scratch=dict):
        counts.append(len(ranges))
        return parallel.run_blocks(ranges, work, scratch)

    step = optim._moments_and_step

    def counting_slices(self, m, v, g, tmp, step_size, bias2):
        slices.append(m.size)
        return step(self, m, v, g, tmp, step_size, bias2)

    monkeypatch.setattr(optim, "run_blocks", counting)
    monkeypatch.setattr(optim, "_moments_and_step", counting_slices)
    sliced = train_ours(model, make_ours(model.parameters()), 5)
    assert len(counts) == (5 * 6 if shared else 0) and min(counts, default=2) >= 2
    assert max(slices) == 4 and len(slices) > 5 * 6  # every parameter of every step, in slices
    assert_same_trajectory(sliced, train_torch(torch, ref, make_theirs(torch, ref.parameters()), 5))
    for a, b in zip(sliced, whole):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("name", ["adam", "adam-wd", "adamw"])
@pytest.mark.parametrize("flat_bytes", [8 * 8, 2**18])
def test_adam_flat_step_of_small_parameters_equals_one_by_one(name, flat_bytes, monkeypatch):
    """Small parameters take Adam's step as one flat array: all of them (2**18), or only the
    small ones next to larger ones updated one by one (8 * 8 bytes: the three biases). The same
    numbers to the bit as every parameter on its own, state_dict gives the per-parameter
    moments, and a state loaded halfway (which replaces the flat arrays) resumes exactly."""
    from engine import tuning as optim  # the knob lives in the engine's tuning table

    make_ours = CONFIGS[name][0]
    model, twin, resumed = small_mlp(), small_mlp(), small_mlp()
    twin.load_state_dict(model.state_dict())
    resumed.load_state_dict(model.state_dict())
    monkeypatch.setattr(optim, "ADAM_FLAT_BYTES", 0)
    alone_opt = make_ours(twin.parameters())
    alone = train_ours(twin, alone_opt, 5)
    monkeypatch.setattr(optim, "ADAM_FLAT_BYTES", flat_bytes)
    flat_opt = make_ours(model.parameters())
    flat = train_ours(model, flat_opt, 5)
    assert flat_opt._flat is not None and len(flat_opt._flat["m"]) >= 2  # the flat path ran
    for a, b in zip(flat, alone):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    got, want = flat_opt.state_dict()["state"], alone_opt.state_dict()["state"]
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    first = make_ours(resumed.parameters())
    train_ours(resumed, first, 2)
    second = make_ours(resumed.parameters())
    second.load_state_dict(first.state_dict())
    rest = train_ours(resumed, second, 3, start=2)
    for key in rest[-1]:
        np.testing.assert_array_equal(rest[-1][key], flat[-1][key], err_msg=key)


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    model = small_mlp()
    ref = torch_twin(torch, model)
    ours = train_ours(model, SGD(model.parameters(), 0.5, momentum=0.9), 5, clip=0.05)
    theirs = train_torch(torch, ref, torch.optim.SGD(ref.parameters(), 0.5, momentum=0.9), 5, clip=0.05)
    assert_same_trajectory(ours, theirs)


def test_clip_grad_norm_value_and_no_op_below_threshold():
    model = small_mlp()
    train_ours(model, SGD(model.parameters(), 1e-9), 1)
    grads = [p.grad.copy() for p in model.parameters()]
    norm = float(np.sqrt(sum((g * g).sum() for g in grads)))
    total = clip_grad_norm(model.parameters(), 10 * norm)
    assert total.ndim == 0 and np.isclose(total, norm)
    assert all(np.array_equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    clip_grad_norm(model.parameters(), norm / 4)
    after = np.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
    assert np.isclose(after, norm / 4, rtol=1e-5)


def lookahead_reference(initial_state, make_inner, k, alpha, steps):
    """Lookahead written out by hand around a plain inner optimizer."""
    model = small_mlp()
    model.load_state_dict(initial_state)
    opt = make_inner(model.parameters())
    slow = [p.data.copy() for p in model.parameters()]
    for s in range(steps):
        train_ours(model, opt, 1, start=s)
        if (s + 1) % k == 0:
            for w, p in zip(slow, model.parameters()):
                w += alpha * (p.data - w)
                p.data[...] = w
    return model.state_dict()


@pytest.mark.parametrize("k, alpha", [(2, 0.5), (3, 0.8), (1, 1.0)])
def test_lookahead_slow_weights_start_at_step_zero(k, alpha):
    model = small_mlp()
    w0 = model.state_dict()
    inner = lambda p: SGD(p, 0.1, momentum=0.9)  # noqa: E731
    train_ours(model, Lookahead(inner(model.parameters()), k, alpha), 5)
    expected = lookahead_reference(dict(w0), inner, k, alpha, 5)
    for key in expected:
        assert np.allclose(model.state_dict()[key], expected[key], atol=1e-12), key
    # after the first sync the weights are w0 + alpha (w_k - w0), not w_k
    m1, m2 = small_mlp(), small_mlp()
    w0 = m1.state_dict()
    m2.load_state_dict(m1.state_dict())
    fast = train_ours(m1, inner(m1.parameters()), k)[-1]
    train_ours(m2, Lookahead(inner(m2.parameters()), k, alpha), k)
    assert np.allclose(m2[0].weight.data, w0["0.weight"] + alpha * (fast["0.weight"] - w0["0.weight"]))


def test_lookahead_lr_follows_schedule():
    model = small_mlp()
    inner = SGD(model.parameters(), 0.4)
    opt = Lookahead(inner, k=2)
    schedule = StepLR(opt, step_size=1, gamma=0.5)
    assert opt.lr == inner.lr == 0.4
    schedule.step()
    assert opt.lr == inner.lr == 0.2
    opt.lr = 0.05
    assert inner.lr == 0.05


def make_all(params):
    return [SGD(params, 0.1), SGD(params, 0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
            Adam(params, 1e-2, weight_decay=1e-3), AdamW(params, 1e-2), RMSprop(params, 1e-3, momentum=0.5),
            Lookahead(Adam(params, 1e-2), k=3, alpha=0.5)]


@pytest.mark.parametrize("index", range(6))
def test_state_dict_round_trip_continues_bitwise(index):
    model = small_mlp(np.float32)
    opt = make_all(model.parameters())[index]
    train_ours(model, opt, 2)
    model_state, opt_state = model.state_dict(), opt.state_dict()
    uninterrupted = train_ours(model, opt, 3, start=2)[-1]

    resumed_model = small_mlp(np.float32)
    resumed_model.load_state_dict(model_state)
    resumed_opt = make_all(resumed_model.parameters())[index]
    resumed_opt.load_state_dict(opt_state)
    resumed = train_ours(resumed_model, resumed_opt, 3, start=2)[-1]
    for key in uninterrupted:
        assert np.array_equal(uninterrupted[key], resumed[key]), key
    assert opt_state["step"] == 2 and opt_state["lr"] == opt.lr


def test_state_dict_type_mismatch_and_bad_values():
    model = small_mlp()
    with pytest.raises(UserError):
        Adam(model.parameters()).load_state_dict(SGD(model.parameters(), 0.1).state_dict())
    with pytest.raises(UserError):
        SGD(model.parameters(), lr=0.0)
    with pytest.raises(UserError):
        SGD(model.parameters(), lr=0.1, nesterov=True)
    with pytest.raises(UserError):
        Lookahead(SGD(model.parameters(), 0.1), k=0)


def test_make_optimizer_names():
    params = small_mlp().parameters()
    assert make_optimizer("sgd", params, 0.1).momentum == 0.0
    assert make_optimizer("momentum", params, 0.1).momentum == 0.9
    nesterov = make_optimizer("nesterov", params, 0.1, momentum=0.8)
    assert nesterov.nesterov and nesterov.momentum == 0.8
    assert type(make_optimizer("adam", params, 1e-3, weight_decay=1e-4)) is Adam
    adamw = make_optimizer("AdamW", params, 1e-3, weight_decay=0.05)
    assert type(adamw) is AdamW and adamw.weight_decay == 0.05
    assert make_optimizer("rmsprop", params, 1e-3).momentum == 0.0
    with pytest.raises(UserError, match="adamw"):
        make_optimizer("lion", params, 1e-3)
