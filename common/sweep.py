"""Sweeps: one YAML file that names a launcher, the flags every run shares, and the flags to vary.

::

    launcher: convolutional          # scalar, vectorized or convolutional
    base: ../convolutional/lenet-synth.yaml   # optional: a launcher config to start from
    fixed:                           # flags every run shares (override base)
      arch: lenet
      epochs: 2
    search: grid                     # grid (every combination) or random
    params:
      optimizer: [sgd, adam]
      lr: [0.001, 0.003]

A grid of 2 optimizers x 2 learning rates is 4 runs. ``search: random`` draws ``trials`` runs
with a seeded generator (``seed``), each parameter from its list or from a range:
``{uniform: [a, b]}``, ``{log_uniform: [a, b]}`` (uniform in log a .. log b, for learning rates)
or ``{int_uniform: [a, b]}`` (both ends included).

:func:`load_sweep` checks every key and value against the launcher's flags (file, line, key in
one line) before anything runs; :class:`SweepBook` records each run's status in ``sweep.json``
so that running the same sweep again skips finished runs and resumes interrupted ones.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from common.config import ConfigError, convert, flag_actions, key_lines, key_name, read_yaml

LAUNCHERS = {"scalar": "scalar/main.py", "vectorized": "vectorized/main.py",
             "convolutional": "convolutional/main.py"}
SPEC_KEYS = ("launcher", "base", "fixed", "search", "params", "trials", "seed", "out")
CHOSEN_BY_SWEEP = {"run_dir", "run_name", "resume", "save", "config"}  # the sweep decides these per run
RANGES = ("uniform", "log_uniform", "int_uniform")


@dataclass
class Trial:
    """One run of a sweep: its id (also its folder prefix) and the values it varies."""

    id: str
    params: dict                         # {flag key: YAML value}
    settings: dict = field(default_factory=dict)  # base + fixed + params, written to its config file


@dataclass
class Sweep:
    path: Path
    launcher: str                        # 'scalar', 'vectorized' or 'convolutional'
    search: str
    trials: list
    out: Path | None

    @property
    def script(self) -> str:
        return LAUNCHERS[self.launcher]


def _fail(path, line, message):
    raise ConfigError(f"{path}{f' line {line}' if line else ''}: {message}")


def launcher_name(path, value, line) -> str:
    name = str(value).strip().lower()
    for key, script in LAUNCHERS.items():
        if name in (key, script, script.replace("/main.py", "")):
            return key
    _fail(path, line, f"launcher: {value!r} is not one of {', '.join(LAUNCHERS)}")


def read_spec(path) -> tuple[dict, dict]:
    """The sweep file's top-level mapping and the line of each key (at any depth)."""
    entries = read_yaml(path)
    lines = key_lines(path)
    spec = {}
    for key, value, line in entries:
        if key not in SPEC_KEYS:
            _fail(path, line, f"'{key}' is not a sweep key; use {', '.join(SPEC_KEYS)} "
                              "(the launcher's flags go under 'fixed' or 'params')")
        spec[key] = value
    if "launcher" not in spec:
        _fail(path, 1, f"a sweep names its launcher: add 'launcher: {' | '.join(LAUNCHERS)}'")
    if not isinstance(spec.get("params"), dict) or not spec["params"]:
        _fail(path, lines.get(("params",)), "a sweep needs 'params': a mapping of flags to the values to try, "
                                           "like 'lr: [0.001, 0.003]'")
    return spec, lines


def _check_flag(parser, actions, path, line, key, value):
    """The flag ``key`` of the launcher accepts ``value``; returns its canonical key."""
    action = actions.get(str(key))
    if action is None:
        _fail(path, line, f"'{key}' is not a flag of {parser.prog}")
    if action.dest in CHOSEN_BY_SWEEP:
        _fail(path, line, f"'{key}' is chosen by the sweep for each run; leave it out")
    try:
        convert(action, value)
    except ValueError as exc:
        _fail(path, line, f"{key}: {exc}")
    return key_name(action)


def _range(path, line, key, dist):
    if len(dist) != 1 or next(iter(dist)) not in RANGES:
        _fail(path, line, f"{key}: a range is one of {', '.join('{%s: [a, b]}' % r for r in RANGES)}")
    kind, bounds = next(iter(dist.items()))
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
        _fail(path, line, f"{key}: {kind} takes two numbers [low, high], got {bounds!r}")
    low, high = bounds
    if not low < high or (kind == "log_uniform" and low <= 0):
        _fail(path, line, f"{key}: {kind} needs low < high" + (" and low > 0" if kind == "log_uniform" else ""))
    return kind, low, high


def load_sweep(path, parser) -> Sweep:
    """Read and check a sweep file against ``parser`` (the launcher's); expand its trials."""
    path = Path(path)
    spec, lines = read_spec(path)
    launcher = launcher_name(path, spec["launcher"], lines.get(("launcher",)))
    actions = flag_actions(parser)
    settings = {}
    if spec.get("base") is not None:
        base = (path.parent / str(spec["base"])).resolve()
        if not base.exists():
            _fail(path, lines.get(("base",)), f"base: {spec['base']} does not exist (paths are relative to "
                                              "the sweep file)")
        for key, value, line in read_yaml(base):
            settings[_check_flag(parser, actions, base, line, key, value)] = value
    fixed = spec.get("fixed") or {}
    if not isinstance(fixed, dict):
        _fail(path, lines.get(("fixed",)), "fixed: a mapping of flags to values, like 'epochs: 2'")
    for key, value in fixed.items():
        settings[_check_flag(parser, actions, path, lines.get(("fixed", str(key))), key, value)] = value
    search = str(spec.get("search", "grid")).lower()
    if search not in ("grid", "random"):
        _fail(path, lines.get(("search",)), f"search: {spec['search']!r} is not grid or random")
    space = {}
    for key, values in spec["params"].items():
        line = lines.get(("params", str(key)))
        if isinstance(values, dict):
            if search == "grid":
                _fail(path, line, f"{key}: a grid takes a list of values; ranges need 'search: random'")
            kind, low, high = _range(path, line, key, values)
            for bound in (low, high):
                _check_flag(parser, actions, path, line, key, bound)
            space[_check_flag(parser, actions, path, line, key, low)] = (kind, low, high)
            continue
        if not isinstance(values, list) or not values:
            _fail(path, line, f"{key}: give the values to try as a list, like [{values!r}]")
        for value in values:
            canonical = _check_flag(parser, actions, path, line, key, value)
        space[canonical] = list(values)
    if search == "grid":
        combos = [dict(zip(space, values)) for values in itertools.product(*space.values())]
    else:
        combos = _random_trials(path, spec, lines, space)
    trials = []
    for i, params in enumerate(combos, 1):
        trial_id = trial_name(i, params)
        trials.append(Trial(trial_id, params, {**settings, **params}))
    out = Path(spec["out"]) if spec.get("out") else None
    return Sweep(path, launcher, search, trials, out)


def _random_trials(path, spec, lines, space) -> list[dict]:
    trials = spec.get("trials")
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        _fail(path, lines.get(("trials",)), "a random search needs 'trials: N' (N >= 1 runs)")
    seed = spec.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        _fail(path, lines.get(("seed",)), f"seed: {seed!r} is not an integer")
    rng = random.Random(seed)
    out, seen = [], set()
    for _ in range(trials * 50):  # draw again when a draw repeats an earlier one
        params = {key: _draw(rng, choice) for key, choice in space.items()}
        signature = json.dumps(params, sort_keys=True)
        if signature not in seen:
            seen.add(signature)
            out.append(params)
        if len(out) == trials:
            break
    return out


def _draw(rng, choice):
    if isinstance(choice, list):
        return rng.choice(choice)
    kind, low, high = choice
    if kind == "int_uniform":
        return rng.randint(int(low), int(high))
    value = rng.uniform(low, high) if kind == "uniform" else math.exp(rng.uniform(math.log(low), math.log(high)))
    return float(f"{value:.3g}")  # three significant digits: readable names, nothing lost in practice


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(_short(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def trial_name(index: int, params: dict) -> str:
    """'t01-lr=0.001-optimizer=adam': the number, then what the run varies (safe in a folder name)."""
    parts = [f"t{index:02d}"] + [f"{k}={_short(v)}" for k, v in params.items()]
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", "-".join(parts))[:100]


class SweepBook:
    """``sweep.json`` in the sweep folder: each trial's status, run folder and error line.

    Status is one of pending, running, done, failed, interrupted. The file is rewritten whole
    (to a temporary file, then renamed) after every change, so it is never half written.
    """

    def __init__(self, folder, sweep: Sweep):
        self.folder = Path(folder)
        self.path = self.folder / "sweep.json"
        plan = [{"id": t.id, "params": t.params, "settings": t.settings} for t in sweep.trials]
        old = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else None
        if old is not None and old.get("plan") != json.loads(json.dumps(plan)):
            raise ConfigError(f"{self.folder} holds a different sweep (its runs or settings changed); "
                              "pick another folder with --out, or delete that one")
        self.data = old or {"spec": str(sweep.path), "launcher": sweep.launcher, "plan": plan,
                            "trials": {t.id: {"status": "pending"} for t in sweep.trials}}

    def get(self, trial_id) -> dict:
        return self.data["trials"][trial_id]

    def update(self, trial_id, **values) -> None:
        self.data["trials"][trial_id].update(values)
        self.save()

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def run_folders(self) -> list[Path]:
        """The run folder of each trial that has one, in the sweep's order."""
        out = []
        for item in self.data["plan"]:
            run = self.data["trials"][item["id"]].get("run")
            if run and (self.folder / run).is_dir():
                out.append(self.folder / run)
        return out


def read_book(folder) -> dict | None:
    """The sweep.json of ``folder`` as a dict, or None when the folder is not a sweep."""
    path = Path(folder) / "sweep.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is damaged ({exc}); delete it to start the sweep again") from None
