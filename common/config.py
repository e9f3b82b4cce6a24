"""Config files: a launcher's flags written down as YAML.

A config file is a mapping from flag names to values::

    # configs/convolutional/lenet-mnist.yaml
    arch: lenet
    dataset: mnist
    epochs: 5
    lr: 0.001
    lr-schedule: cosine
    augment-rotate-deg: 10

A key is a flag's name with or without its dashes (``lr-schedule``, ``--lr-schedule``) or its
Python name (``lr_schedule``); a positional argument is named as in ``--help`` (``arch``). A list
becomes the comma list the flag takes (``hidden-sizes: [512, 256]`` is ``--hidden-sizes 512,256``),
a switch such as ``--plot`` takes ``true`` or ``false``, and ``null`` leaves a flag unset.

Every value goes through the flag's own type and choices, so the file is checked exactly as the
command line is. Flags typed on the command line override the file: the file's values become the
parser's defaults before the command line is parsed. An unknown key or a value that does not fit
is one line naming the file, the line and the key, exit 2.

The run folder keeps the merged flags as ``config.yaml`` (:func:`save_run_config`), so
``--config runs/<run>/config.yaml`` trains the same run again.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from common.errors import UserError

CONFIG_FLAG = "--config"
SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction)
# Never saved in a run's config.yaml: reading the file, continuing a checkpoint, tracebacks, and
# --save (a rerun must not overwrite the model file of the run it reproduces).
NOT_SAVED = {"help", "config", "resume", "debug", "save"}
_LIST_TYPES = {"int_list", "positive_int_list", "increasing_int_list", "float_list_or_none", "name_list", "shape3",
               "hidden_size_list"}
_parsed = {"parser": None}  # the parser that read this process's command line (for save_run_config)


class ConfigError(UserError):
    """A config file that does not fit the launcher: the message names the file, line and key."""


def add_config_arg(parser) -> None:
    """The --config flag every launcher shares (read back by :func:`apply_config`)."""
    parser.add_argument(CONFIG_FLAG, type=Path, default=None, metavar="FILE.yaml",
                        help="read flag values from a YAML file (keys are flag names, e.g. 'lr: 0.001'; "
                             "flags typed on the command line override it); runs/<run>/config.yaml "
                             "repeats a run")


# ---------------------------------------------------------------------------- reading
def read_yaml(path) -> list[tuple[object, object, int]]:
    """(key, value, line) for each top-level entry of a YAML mapping; ConfigError if it is not one."""
    try:
        import yaml
    except ImportError:
        raise ConfigError("config files need PyYAML: pip install pyyaml") from None
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return []
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{path} line {node.start_mark.line + 1}: a config file is a mapping of "
                              "flag names to values, like 'lr: 0.001'")
        return [(loader.construct_object(k, deep=True), loader.construct_object(v, deep=True),
                 k.start_mark.line + 1) for k, v in node.value]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    finally:
        loader.dispose()


def flag_actions(parser) -> dict:
    """Every name a config key may use -> the parser's action (help and --config left out)."""
    names = {}
    for action in parser._actions:
        if action.dest in ("help", "config") or isinstance(action, argparse._HelpAction):
            continue
        keys = {action.dest, action.dest.replace("_", "-")}
        for opt in action.option_strings:
            keys |= {opt, opt.lstrip("-"), opt.lstrip("-").replace("-", "_")}
        for key in keys:
            names.setdefault(key, action)
    return names


def key_name(action) -> str:
    """The name a saved config uses for a flag: its long option without dashes, or the positional's name."""
    longs = [o for o in action.option_strings if o.startswith("--")]
    return longs[0][2:] if longs else action.dest


def _takes_list(action) -> bool:
    return (getattr(action.type, "__name__", "") in _LIST_TYPES
            or isinstance(action.default, (list, tuple)) or action.nargs in ("+", "*"))


def convert(action, value):
    """A YAML value -> the value the flag would give; ValueError with the reason when it does not fit."""
    if isinstance(action, SWITCHES):
        if not isinstance(value, bool):
            raise ValueError(f"is a switch: use true or false, not {value!r}")
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    if not isinstance(action, argparse._StoreAction):
        raise ValueError("cannot be set from a config file")
    if value is None:
        if action.default is not None:
            raise ValueError("needs a value (null leaves only optional flags unset)")
        return None
    if isinstance(value, dict):
        raise ValueError("takes one value or a list, not a mapping")
    if isinstance(value, bool):
        raise ValueError(f"takes {action.metavar or 'a value'}, not {str(value).lower()}")
    if isinstance(value, (list, tuple)):
        if not _takes_list(action):
            raise ValueError(f"takes one value, not a list ({value!r})")
        if not value or any(isinstance(v, (list, dict, bool)) or v is None for v in value):
            raise ValueError(f"needs a non-empty list of plain values, got {value!r}")
        text = ",".join(_text(v) for v in value)
    else:
        text = _text(value)
    try:
        out = action.type(text) if action.type is not None else text
    except (argparse.ArgumentTypeError, TypeError, ValueError, UserError) as exc:
        raise ValueError(str(exc) or f"{text!r} does not fit") from None
    if action.choices is not None and out not in action.choices:
        raise ValueError(f"{out!r} is not one of {', '.join(map(str, action.choices))}")
    return out


def _text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def load_config(parser, path) -> dict:
    """Read ``path`` and check every key and value against ``parser``: {dest: value}."""
    actions = flag_actions(parser)
    values, seen = {}, {}
    for key, value, line in read_yaml(path):
        where = f"{path} line {line}:"
        action = actions.get(str(key))
        if action is None:
            close = difflib.get_close_matches(str(key), [k for k in actions if not k.startswith("-")], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where} '{key}' is not a flag of {parser.prog}{hint}")
        if action.dest in seen:
            raise ConfigError(f"{where} '{key}' sets {key_name(action)} again (first set on line {seen[action.dest]})")
        seen[action.dest] = line
        try:
            values[action.dest] = convert(action, value)
        except ValueError as exc:
            raise ConfigError(f"{where} {key}: {exc}") from None
    return values


def config_path_in(argv) -> str | None:
    """The FILE of ``--config FILE`` (or ``--config=FILE``) in ``argv``, else None."""
    path = None
    for i, arg in enumerate(argv):
        if arg == CONFIG_FLAG and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith(CONFIG_FLAG + "="):
            path = arg.split("=", 1)[1]
        elif arg == "--":
            break
    return path


def apply_config(parser, argv) -> None:
    """Called as ``parser`` parses ``argv``: the file named by --config becomes its defaults.

    A problem with the file is a usage error (one line, exit 2).
    """
    if not any(CONFIG_FLAG in a.option_strings for a in parser._actions):
        return
    _parsed["parser"] = parser
    path = config_path_in(argv)
    if path is None:
        return
    try:
        parser.set_defaults(**load_config(parser, path))
    except ConfigError as exc:
        parser.error(str(exc))


# ---------------------------------------------------------------------------- writing
def config_values(args, parser=None) -> dict:
    """The flags of a parsed run as a config mapping {key: plain value} (unset flags left out)."""
    parser = parser or _parsed["parser"]
    if parser is None:  # run without a command line (a script calling the library): Python names
        items = [(k, k, v) for k, v in vars(args).items()]
    else:
        items = [(a.dest, key_name(a), getattr(args, a.dest)) for a in parser._actions
                 if hasattr(args, a.dest) and isinstance(a, (argparse._StoreAction, *SWITCHES))]
    out = {}
    for dest, key, value in items:
        if dest in NOT_SAVED or value is None or callable(value):
            continue
        out[key] = _plain(value)
    return out


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    return value


def dump_yaml(values: dict, header: str = "") -> str:
    """YAML text for a flat mapping, one key per line, lists inline ('hidden-sizes: [256, 128]')."""
    import yaml

    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for key, value in values.items():
        style = None if isinstance(value, list) else False  # lists inline, scalars as 'key: value'
        text = yaml.safe_dump({key: value}, default_flow_style=style, sort_keys=False, width=1000)
        lines.append(text.rstrip("\n"))
    return "\n".join(lines) + "\n"


def save_run_config(run_path, args, parser=None) -> Path | None:
    """Write ``config.yaml`` (the run's merged flags) into the run folder; returns its path.

    Without PyYAML nothing is written (config.json still records the run).
    """
    import importlib.util

    if importlib.util.find_spec("yaml") is None:
        return None
    out = Path(run_path) / "config.yaml"
    prog = _program()
    header = (f"The flags of this run. Train it again with:\n  python {prog} --config {out}"
              if prog else "The flags of this run.")
    out.write_text(dump_yaml(config_values(args, parser), header), encoding="utf-8")
    return out


def _program() -> str | None:
    """The script that is running, relative to the repository root when it lives there."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if not main or not main.endswith(".py"):
        return None
    path = Path(main).resolve()
    root = Path(__file__).resolve().parents[1]
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def key_lines(path) -> dict[tuple, int]:
    """{(key, subkey, ...): line} for every mapping key of a YAML file, at any depth."""
    import yaml

    read_yaml(path)  # the same one-line errors for a missing or broken file
    loader = yaml.SafeLoader(Path(path).read_text(encoding="utf-8"))
    lines: dict[tuple, int] = {}

    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                lines[prefix + (str(k.value),)] = k.start_mark.line + 1
                walk(v, prefix + (str(k.value),))

    try:
        walk(loader.get_single_node(), ())
    finally:
        loader.dispose()
    return lines
