"""Schedules: learning-rate sequences against torch.optim.lr_scheduler, state round trip, factory."""
import math
import warnings

import numpy as np
import pytest

from common.errors import UserError
from vectorized.layers import Linear
from vectorized.optim import SGD, Lookahead
from vectorized.schedules import (CosineAnnealing, CosineWarmRestarts, MultiStepLR, ReduceLROnPlateau, StepLR,
                                  make_schedule)

METRICS = [1.0, 0.9, 0.95, 0.92, 0.91, 0.90, 0.89, 0.95, 0.96, 0.97, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6]


def ours_sgd(lr=0.4):
    return SGD(Linear(2, 2).parameters(), lr)


def our_sequence(schedule, n, metrics=None):
    lrs = [schedule.optimizer.lr]
    for i in range(n):
        lrs.append(schedule.step(None if metrics is None else metrics[i]))
    return lrs


def torch_sequence(torch, opt, scheduler, n, metrics=None):
    lrs = [opt.param_groups[0]["lr"]]
    for i in range(n):
        opt.step()
        scheduler.step() if metrics is None else scheduler.step(metrics[i])
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def torch_case(torch, name):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
    S = torch.optim.lr_scheduler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = {
            "step": lambda: S.StepLR(opt, step_size=3, gamma=0.5),
            "multistep": lambda: S.MultiStepLR(opt, milestones=[2, 5, 7], gamma=0.3),
            "cosine": lambda: S.CosineAnnealingLR(opt, T_max=10, eta_min=1e-3),
            "warmup-cosine": lambda: S.SequentialLR(opt, [S.LinearLR(opt, start_factor=1 / 4, total_iters=3),
                                                          S.CosineAnnealingLR(opt, T_max=8, eta_min=1e-3)],
                                                    milestones=[4]),
            "restarts": lambda: S.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2, eta_min=0.01),
            "restarts1": lambda: S.CosineAnnealingWarmRestarts(opt, T_0=4, eta_min=0.0),
            "plateau-min": lambda: S.ReduceLROnPlateau(opt, "min", factor=0.5, patience=2, threshold=1e-2,
                                                      min_lr=0.06),
            "plateau-max": lambda: S.ReduceLROnPlateau(opt, "max", factor=0.3, patience=1, cooldown=1),
        }[name]()
    return opt, sched


OURS = {
    "step": lambda o: StepLR(o, 3, 0.5),
    "multistep": lambda o: MultiStepLR(o, [5, 2, 7], 0.3),
    "cosine": lambda o: CosineAnnealing(o, total=10, min_lr=1e-3),
    "warmup-cosine": lambda o: CosineAnnealing(o, total=12, min_lr=1e-3, warmup=4),
    "restarts": lambda o: CosineWarmRestarts(o, T_0=3, T_mult=2, min_lr=0.01),
    "restarts1": lambda o: CosineWarmRestarts(o, T_0=4),
    "plateau-min": lambda o: ReduceLROnPlateau(o, "min", factor=0.5, patience=2, threshold=1e-2, min_lr=0.06),
    "plateau-max": lambda o: ReduceLROnPlateau(o, "max", factor=0.3, patience=1, cooldown=1),
}
LENGTH = {"cosine": 10, "warmup-cosine": 12}


@pytest.mark.parametrize("name", OURS)
def test_sequence_matches_torch(name):
    torch = pytest.importorskip("torch")
    n = LENGTH.get(name, len(METRICS))
    metrics = METRICS if name.startswith("plateau") else None
    if name == "plateau-max":
        metrics = [-m for m in METRICS]
    ours = our_sequence(OURS[name](ours_sgd()), n, metrics)
    theirs = torch_sequence(torch, *torch_case(torch, name), n, metrics)
    assert np.allclose(ours, theirs, rtol=1e-12, atol=1e-15), f"\nours   {ours}\ntorch  {theirs}"
    if name.startswith("plateau"):
        assert len(set(ours)) > 2  # the metric sequence really triggers cuts


def test_warmup_then_cosine_shape():
    lrs = our_sequence(CosineAnnealing(ours_sgd(1.0), total=10, min_lr=0.1, warmup=4), 12)
    assert np.allclose(lrs[:4], [0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == 1.0 and np.isclose(lrs[7], 0.1 + 0.9 * (1 + math.cos(math.pi / 2)) / 2)
    assert lrs[10] == lrs[11] == pytest.approx(0.1)  # stays at min_lr after total


def test_schedule_drives_lookahead():
    inner = ours_sgd(0.4)
    schedule = StepLR(Lookahead(inner, k=2), step_size=1, gamma=0.5)
    schedule.step()
    schedule.step()
    assert inner.lr == pytest.approx(0.1)


@pytest.mark.parametrize("name", OURS)
def test_state_dict_round_trip(name):
    metrics = METRICS if name.startswith("plateau") else [None] * len(METRICS)
    a = OURS[name](ours_sgd())
    for m in metrics[:5]:
        a.step(m)
    state = a.state_dict()
    rest_a = [a.step(m) for m in metrics[5:11]]
    b = OURS[name](ours_sgd())
    b.load_state_dict(state)
    assert b.optimizer.lr == state.get("lr", b.get_lr())
    rest_b = [b.step(m) for m in metrics[5:11]]
    assert rest_a == rest_b


def test_make_schedule():
    assert make_schedule("none", ours_sgd(), 10) is None
    s = make_schedule("cosine", ours_sgd(), epochs=5, steps_per_epoch=20, per="step", warmup_epochs=1, min_lr=1e-5)
    assert (s.total, s.warmup, s.per) == (100, 20, "step")
    s = make_schedule("multistep", ours_sgd(), epochs=8)
    assert s.milestones == [4, 6] and s.per == "epoch"
    s = make_schedule("multistep", ours_sgd(), epochs=8, steps_per_epoch=10, per="step", milestones=[3])
    assert s.milestones == [30]
    assert make_schedule("step", ours_sgd(), epochs=9, gamma=0.5).step_size == 3
    assert isinstance(make_schedule("plateau", ours_sgd(), 9, factor=0.5, patience=3), ReduceLROnPlateau)
    assert make_schedule("restarts", ours_sgd(), 9, restart_epochs=2, restart_mult=2).T_mult == 2
    with pytest.raises(UserError, match="cosine"):
        make_schedule("linear", ours_sgd(), 9)


def test_schedule_errors():
    with pytest.raises(UserError):
        ReduceLROnPlateau(ours_sgd()).step()
    with pytest.raises(UserError):
        CosineAnnealing(ours_sgd(), total=5, warmup=5)
    with pytest.raises(UserError):
        StepLR(ours_sgd(), 2, per="batch")
