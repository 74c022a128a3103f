"""Checks an experiment config against its schema before anything is loaded or trained.

A figure config (``configs/fig*.py``, built on :func:`config_lib.base_config`) and a paper config
(``configs/paper.py``: ``only`` and ``figures``) are checked key by key. Unknown keys (typos such
as ``learnig_rate``), missing keys, wrong types and out-of-range values raise :class:`ConfigError`
(a ``ValueError``; wrong types raise :class:`ConfigTypeError`, also a ``TypeError``) whose one-line
message names the key, the value found and what is allowed.

Example:
  >>> check_config(ml_collections.ConfigDict({"only": "", "figures": {"f": {"figur": "x"}}}))
  Traceback (most recent call last):
  ...
  jadam.experiments.config_check.ConfigError: config.figures.f.figur: unknown key; expected
  one of [...] (did you mean 'figure'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import flags

from jadam.experiments import optimizers
from jadam.experiments.config_lib import load_config_file


class ConfigError(ValueError):
    """A config key is unknown or missing, or its value is not allowed."""


class ConfigTypeError(ConfigError, TypeError):
    """A config value has the wrong type."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one config value may be: its Python types and a check of the value itself."""

    expected: str
    types: tuple[type, ...]
    valid: Callable[[Any], bool] = lambda value: True


_INT32_MAX = 2**31 - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT = (numbers.Integral,)
_REAL = (numbers.Real,)
_SEQUENCE = (tuple, list)


def _ints(low: int, high: int = _INT32_MAX) -> Callable[[Any], bool]:
    return lambda value: low <= value <= high


def _choice(*options: str, expected: str = "") -> Rule:
    return Rule(expected or f"one of {list(options)}", (str,), lambda value: value in options)


def _sizes(max_len: int, expected: str) -> Rule:
    def valid(value) -> bool:
        return 1 <= len(value) <= max_len and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 < v <= _INT32_MAX
            for v in value
        )

    return Rule(expected, _SEQUENCE, valid)


POSITIVE_INT = Rule("a positive integer below 2**31", _INT, _ints(1))
RATE = Rule("a rate in [0, 1)", _REAL, lambda value: 0.0 <= value < 1.0)
POSITIVE_NUMBER = Rule(
    f"a finite number in (0, {_FLOAT32_MAX:.4g}]", _REAL, lambda v: 0 < v <= _FLOAT32_MAX
)
STRING = Rule("a string", (str,))
BOOL = Rule("True or False", (bool,))
WIDTH = Rule("a positive integer below 2**31 (a layer width)", _INT, _ints(1))

# Groups ("model", "runs", "plot") are checked by their own functions below.
FIGURE_KEYS: dict[str, Any] = {
    "figure": Rule("a non-empty figure name", (str,), bool),
    "dataset": _choice("mnist", "imdb", "cifar10", expected="'mnist', 'imdb' or 'cifar10'"),
    "data_dir": Rule("a directory path, or '' for the embedded data", (str,)),
    "num_train": Rule("an integer in [0, 2**31) (0: all)", _INT, _ints(0)),
    "num_test": Rule("an integer in [0, 2**31) (0: all)", _INT, _ints(0)),
    "model": "model",
    "batch_size": POSITIVE_INT,
    "num_epochs": POSITIVE_INT,
    "log_every": POSITIVE_INT,
    "eval_every": POSITIVE_INT,
    "checkpoint_every": POSITIVE_INT,
    "eval_batch_size": POSITIVE_INT,
    "seed": Rule("an integer in [0, 2**32)", _INT, _ints(0, 2**32 - 1)),
    "progress": BOOL,
    "mesh": _choice("", "data", expected='"" (one device) or "data" (all local devices)'),
    "max_consecutive_bad_steps": Rule("an integer in [0, 2**31) (0: off)", _INT, _ints(0)),
    "eval_train_set": BOOL,
    "runs": "runs",
    "plot": "plot",
}
FIGURE_OPTIONAL = {
    "steps_per_call": Rule("an integer in [0, 2**31) (0: log_every)", _INT, _ints(0)),
    "search": "search",  # Read by python -m jadam.experiments.lr_search only.
}
MODEL_KEYS: dict[str, dict[str, Rule]] = {
    "logreg": {"input_dropout": RATE},
    "mlp": {
        "hidden": _sizes(16, "a tuple of 1 to 16 positive layer widths"),
        "input_dropout": RATE,
        "hidden_dropout": RATE,
    },
    "cnn": {
        # Three 3×3/2 poolings take a 28- or 32-pixel image down to 2 or 3 pixels.
        "channels": _sizes(3, "a tuple of 1 to 3 positive channel counts"),
        "hidden": WIDTH,
        "input_dropout": RATE,
        "hidden_dropout": RATE,
    },
    "vae": {"hidden": WIDTH, "latent": WIDTH},
}
PLOT_KEYS = {
    "kind": _choice("curves", "curves_zoom", "curves_time", "vae_grid"),
    "title": STRING,
    "ylabel": STRING,
    "yscale": _choice("linear", "log"),
    "dpi": Rule("an integer in [10, 1000]", _INT, _ints(10, 1000)),
}
PLOT_OPTIONAL = {
    "zoom_epochs": POSITIVE_NUMBER,
    "budgets_epochs": Rule(
        "a non-empty tuple of positive numbers of epochs",
        _SEQUENCE,
        lambda v: len(v) > 0 and all(_is(x, _REAL) and 0 < x <= _FLOAT32_MAX for x in v),
    ),
    "ymax": POSITIVE_NUMBER,
    "legend_state_bytes": BOOL,
    # curves_time: the loss plotted ("train_loss": mean over the logged steps; "train_set_loss":
    # the whole training set, needs eval_train_set) and the run whose seconds per epoch are the
    # time unit.
    "metric": _choice("train_loss", "train_set_loss"),
    "time_unit_run": Rule("a run id of this figure", (str,), bool),
}
SEARCH_KEYS = {
    "alphas": Rule(
        "a non-empty tuple of learning rates α > 0 (finite, float32-sized)",
        _SEQUENCE,
        lambda v: len(v) > 0 and all(_is(x, _REAL) and 0 < x <= _FLOAT32_MAX for x in v),
    ),
    "momenta": Rule(
        "a tuple of momenta in [0, 1) (empty: keep each run's momentum)",
        _SEQUENCE,
        lambda v: all(_is(x, _REAL) and 0 <= x < 1 for x in v),
    ),
    "runs": STRING,  # Comma-separated run or optimizer names; checked against runs below.
    "max_extensions": Rule("an integer in [0, 20]", _INT, _ints(0, 20)),
    "span": Rule("an integer in [0, 20] (0: the whole grid)", _INT, _ints(0, 20)),
}
RUN_ID = re.compile(r"[A-Za-z0-9_\-]+")


# ----------------------------------------------------------------------------- helpers
def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, (bool, np.bool_)) and bool not in types:
        return False  # True is not a number here.
    return isinstance(value, types)


def _show(value: Any) -> str:
    """A one-line, bounded repr (a ConfigDict's own repr is multi-line YAML)."""
    if isinstance(value, ml_collections.ConfigDict):
        value = value.to_dict()
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _is_group(value: Any) -> bool:
    return isinstance(value, (ml_collections.ConfigDict, Mapping))


def _check_value(path: str, value: Any, rule: Rule, context: str = "") -> None:
    """``context`` (e.g. "with config.model.kind='mlp'") is added to the message."""
    context = f" {context}" if context else ""
    if not _is(value, rule.types):
        raise ConfigTypeError(f"{path}: expected {rule.expected}{context}, found {_show(value)}")
    try:
        ok = rule.valid(value)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ConfigError(f"{path}: expected {rule.expected}{context}, found {_show(value)}")


def _check_keys(
    path: str, group: Any, required: Mapping, optional: Mapping | None = None, context: str = ""
) -> None:
    """The group's keys: each in ``required`` or ``optional``, all of ``required`` present."""
    context = f" {context}" if context else ""
    if not _is_group(group):
        raise ConfigTypeError(
            f"{path}: expected a config group with keys {sorted(required)}{context}, "
            f"found {_show(group)}"
        )
    allowed = sorted({*required, *(optional or {})})
    for key in group.keys():
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{path}.{key}: unknown key; expected one of {allowed}{context}{hint}"
            )
    for key in required:
        if key not in group:
            raise ConfigError(
                f"{path}.{key}: missing; {path} needs the keys {sorted(required)}{context}"
            )


def _check_fields(path: str, group: Any, rules: Mapping[str, Any], context: str = "") -> None:
    for key, rule in rules.items():
        if isinstance(rule, Rule) and key in group:
            _check_value(f"{path}.{key}", group[key], rule, context)


# ----------------------------------------------------------------------------- figure configs
def _check_model(path: str, model: Any) -> str:
    if not _is_group(model):
        raise ConfigTypeError(
            f"{path}: expected a config group with a 'kind', found {_show(model)}"
        )
    _check_value(f"{path}.kind", model.get("kind"), _choice(*MODEL_KEYS))
    kind = model["kind"]
    context = f"with {path}.kind={kind!r}"
    _check_keys(path, model, {"kind": None, **MODEL_KEYS[kind]}, context=context)
    _check_fields(path, model, MODEL_KEYS[kind], context)
    return kind


def _check_run(path: str, run: Any, figure: str, kind: str, plot_kind: str) -> None:
    """One entry of ``runs``; ``figure`` is the figure config's path, e.g. "config"."""
    _check_keys(path, run, {"optimizer": None}, {"setting": None, "model": None})
    if "setting" in run:
        _check_value(f"{path}.setting", run["setting"], STRING)
    if "model" in run:  # Per-run model settings (e.g. dropout) of the figure's model kind.
        context = f"with {figure}.model.kind={kind!r}"
        _check_keys(f"{path}.model", run["model"], {}, MODEL_KEYS[kind], context)
        _check_fields(f"{path}.model", run["model"], MODEL_KEYS[kind], context)
    opt, where = run["optimizer"], f"{path}.optimizer"
    _check_keys(
        where,
        opt,
        {"name": None, "learning_rate": None},
        {"schedule": None, "hparams": None, "state_precision": None, "fused": None},
    )
    _check_value(f"{where}.name", opt["name"], _choice(*optimizers.NAMES))
    _check_value(f"{where}.learning_rate", opt["learning_rate"], POSITIVE_NUMBER)
    if optimizers.is_sfo(opt):
        _check_sfo(where, opt)
        return
    if "schedule" in opt:
        _check_value(f"{where}.schedule", opt["schedule"], _choice(*optimizers.SCHEDULES))
    if "state_precision" in opt:  # Which optimizers take it: optimizers.build below.
        precisions = _choice(*optimizers.STATE_PRECISIONS)
        _check_value(f"{where}.state_precision", opt["state_precision"], precisions)
    if "fused" in opt:  # Which optimizers take it: optimizers.build below.
        _check_value(f"{where}.fused", opt["fused"], BOOL)
    spec = optimizers.OPTIMIZERS[opt["name"]]
    hparams = opt.get("hparams", {})
    rules = {
        **{name: Rule("a real number", _REAL) for name in spec.numeric},
        **{name: BOOL for name in spec.static},
    }
    context = f"with {where}.name={opt['name']!r}"
    _check_keys(f"{where}.hparams", hparams, {}, rules, context)
    _check_fields(f"{where}.hparams", hparams, rules)
    for name in ("b1", "b2") if plot_kind == "vae_grid" else ():
        if name not in hparams:
            raise ConfigError(
                f"{where}.hparams.{name}: missing; {figure}.plot.kind='vae_grid' plots runs "
                "by b1 and b2"
            )
    try:  # Ranges of hyperparameters: jadam's own eager checks ("b2 must be in [0, 1), ...").
        optimizers.build(opt, where=where)
    except (ValueError, TypeError) as error:
        message = str(error).removeprefix(f"{where}.hparams: ")
        name = message.split(" ", 1)[0]
        message = f"{where}.hparams.{name}: {message}" if name in rules else str(error)
        raise ConfigError(message) from None


def _check_sfo(where: str, opt: Any) -> None:
    """SFO's entry: integer/real hyperparameters; the subfunction count is known at run time."""
    rules = {
        "hessian_init": POSITIVE_NUMBER,
        "init_active": POSITIVE_INT,
        "max_history": POSITIVE_INT,
    }
    context = f"with {where}.name='sfo'"
    _check_keys(f"{where}.hparams", opt.get("hparams", {}), {}, rules, context)
    _check_fields(f"{where}.hparams", opt.get("hparams", {}), rules)
    try:
        optimizers.build_sfo(opt, 2**31 - 1, where=where)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _check_search(path: str, search: Any, runs: Any) -> None:
    """The grid of ``python -m jadam.experiments.lr_search`` and the runs it names."""
    _check_keys(path, search, SEARCH_KEYS)
    _check_fields(path, search, SEARCH_KEYS)
    names = [name.strip() for name in search["runs"].split(",") if name.strip()]
    known = sorted(runs.keys())
    names_of_optimizers = sorted({runs[r]["optimizer"]["name"] for r in known})
    for name in names:
        if name not in known and name not in names_of_optimizers:
            close = difflib.get_close_matches(name, [*known, *optimizers.OPTIMIZERS], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            runs_path = path.rsplit(".", 1)[0] + ".runs"  # Named: the run may have been deleted.
            raise ConfigError(
                f"{path}.runs: unknown run or optimizer {name!r} in {search['runs']!r}; "
                f"expected comma-separated names from the runs {known} or the optimizers "
                f"{names_of_optimizers} ('' = all but AdaDelta and SFO); there is no "
                f"{runs_path}.{name}{hint}"
            )
        if name == "sfo" or (name in known and runs[name]["optimizer"]["name"] == "sfo"):
            raise ConfigError(
                f"{path}.runs: {name!r} runs SFO, which has no learning rate α to search "
                "(its step is the minimum of its quadratic models); leave it out"
            )


def check_figure_config(config: Any, path: str = "config") -> None:
    """Checks one figure config; raises :class:`ConfigError` naming the first bad key."""
    _check_keys(path, config, FIGURE_KEYS, FIGURE_OPTIONAL)
    _check_fields(path, config, {**FIGURE_KEYS, **FIGURE_OPTIONAL})
    kind = _check_model(f"{path}.model", config["model"])
    if kind == "cnn" and config["dataset"] == "imdb":
        raise ConfigError(
            f"{path}.model.kind: expected 'logreg', 'mlp' or 'vae' with "
            f"{path}.dataset='imdb' (bags of words, not images), found 'cnn'"
        )
    _check_keys(f"{path}.plot", config["plot"], PLOT_KEYS, PLOT_OPTIONAL)
    _check_fields(f"{path}.plot", config["plot"], {**PLOT_KEYS, **PLOT_OPTIONAL})
    plot_kind = config["plot"]["kind"]
    needed = {
        "curves_zoom": "zoom_epochs",
        "vae_grid": "budgets_epochs",
        "curves_time": "time_unit_run",
    }.get(plot_kind)
    if needed and needed not in config["plot"]:
        raise ConfigError(f"{path}.plot.{needed}: missing; {path}.plot.kind={plot_kind!r} needs it")
    runs = config["runs"]
    if not _is_group(runs) or not runs:
        raise ConfigError(f"{path}.runs: expected at least one run, found {_show(runs)}")
    unit = config["plot"].get("time_unit_run")
    if plot_kind == "curves_time" and unit not in runs:
        raise ConfigError(
            f"{path}.plot.time_unit_run: expected one of {sorted(runs)}, found {_show(unit)}"
        )
    if config["plot"].get("metric") == "train_set_loss" and not config["eval_train_set"]:
        raise ConfigError(f"{path}.plot.metric: 'train_set_loss' needs {path}.eval_train_set=True")
    for run_id in runs.keys():
        if not RUN_ID.fullmatch(str(run_id)):
            raise ConfigError(
                f"{path}.runs.{run_id}: expected a run name of letters, digits, '_' and '-' "
                f"(it names files), found {_show(run_id)}"
            )
        _check_run(f"{path}.runs.{run_id}", runs[run_id], path, kind, plot_kind)
    if "search" in config:
        _check_search(f"{path}.search", config["search"], runs)
    log_every = config["log_every"]
    for key in ("eval_every", "checkpoint_every"):
        if config[key] % log_every:
            raise ConfigError(
                f"{path}.{key}: expected a multiple of {path}.log_every={log_every}, "
                f"found {config[key]}"
            )
    per_call = config.get("steps_per_call", 0)
    if per_call and log_every % per_call:
        raise ConfigError(
            f"{path}.steps_per_call: expected 0 (= log_every) or a divisor of "
            f"{path}.log_every={log_every}, found {per_call}"
        )
    devices = jax.local_device_count()
    if config["mesh"] and config["batch_size"] % devices:
        raise ConfigError(
            f"{path}.batch_size: expected a multiple of the {devices} local devices with "
            f"{path}.mesh={config['mesh']!r}, found {config['batch_size']}"
        )


def check_config(config: Any) -> None:
    """Checks a figure or paper config before any training; raises :class:`ConfigError`.

    Raises:
      ConfigError: (a ``ValueError``) an unknown or missing key, or a value out of range;
        :class:`ConfigTypeError` (also a ``TypeError``) for a value of the wrong type. The
        message is one line: ``config.<key path>: expected <what is allowed>, found <value>``.
    """
    if not _is_group(config):
        raise ConfigTypeError(f"config: expected a ConfigDict, found {_show(config)}")
    if "figures" not in config and "only" not in config:
        check_figure_config(config)
        return
    _check_keys("config", config, {"only": None, "figures": None})
    figures = config["figures"]
    if not _is_group(figures) or not figures:
        raise ConfigError(
            f"config.figures: expected at least one figure config, found {_show(figures)}"
        )
    _check_value("config.only", config["only"], STRING)
    names = [n.strip() for n in config["only"].split(",") if n.strip()]
    unknown = [n for n in names if n not in figures]
    if unknown:
        raise ConfigError(
            f"config.only: expected comma-separated names from {sorted(figures)}, "
            f"found {config['only']!r}"
        )
    for name in figures.keys():  # All of them, also those ``only`` leaves out.
        check_figure_config(figures[name], f"config.figures.{name}")


# ----------------------------------------------------------------------------- against the data
# These need the data set (its size) or the run being built, so the runner calls them at run time.
def check_fits_training_set(key: str, value: int, train_size: int) -> None:
    """``config.<key>`` (``num_train`` or ``batch_size``) is at most the training set size."""
    if value > train_size:
        raise ConfigError(
            f"config.{key}: expected at most {train_size} (the training set size), found {value}"
        )


def check_step_count(config: Any, num_steps: int, steps_per_epoch: int) -> None:
    """The last step number (plus one logged chunk) fits in int32, the device's step type."""
    if num_steps + config.log_every >= 2**31:
        most = (2**31 - 2 * config.log_every) // steps_per_epoch
        raise ConfigError(
            f"config.num_epochs: expected at most {most} epochs of {steps_per_epoch} steps "
            f"(step numbers are int32), found {config.num_epochs}"
        )


def check_sfo_run(config: Any, where: str, model_config: Mapping[str, Any]) -> None:
    """An SFO run (``where``: its optimizer's path): one device, no skipping of bad steps, and a
    deterministic cost (one fixed fᵢ per mini-batch: no dropout, no sampled latent)."""
    if config.get("max_consecutive_bad_steps", 0) or config.get("mesh", ""):
        raise ConfigError(
            f"{where}.name: 'sfo' runs on one device and skips non-finite evaluations "
            "itself; set config.mesh='' and config.max_consecutive_bad_steps=0"
        )
    noisy = [k for k in ("input_dropout", "hidden_dropout") if model_config.get(k, 0)]
    if noisy or config.model.kind == "vae":
        raise ConfigError(
            f"{where}.name: 'sfo' needs a deterministic cost (the same fᵢ at every "
            f"evaluation), found {config.model.kind!r} with {noisy or 'a sampled latent'}; "
            "set the dropout rates to 0 for this run"
        )


# ----------------------------------------------------------------------------- command line
def unknown_override(config: Any, argv: list[str], name: str = "config") -> str | None:
    """The first ``--config.a.b=v`` in ``argv`` naming a key ``config`` lacks, explained."""
    for arg in argv:
        match = re.match(rf"-{{1,2}}(?:no)?{name}\.([^=]+)", arg)
        if not match:
            continue
        group, where = config, name
        for key in match.group(1).split("."):
            if not _is_group(group) or key not in group:
                if not _is_group(group):
                    return f"--{where}.{key}: unknown key; {where} is {_show(group)}, not a group"
                keys = sorted(group.keys())
                if not keys:
                    return (
                        f"--{where}.{key}: unknown key; {where} is empty in the config file "
                        "(a locked config takes no new keys: add it to the file)"
                    )
                close = difflib.get_close_matches(key, keys, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                return f"--{where}.{key}: unknown key; expected one of {keys}{hint}"
            group, where = group[key], f"{where}.{key}"
    return None


def parse_flags(argv: list[str], flag_values: flags.FlagValues) -> list[str]:
    """Parses ``argv`` like absl; a bad ``--config`` or override raises a one-line ConfigError.

    ``flag_values`` holds a ``config`` flag from ``config_flags.DEFINE_config_file``.
    """
    try:
        return flag_values(argv)
    except flags.Error as error:  # e.g. --config.batch_size=abc: says what the config holds.
        message = str(error)
        if "Traceback (most recent call last)" in message:  # get_config raised: its last line.
            message = message.split(": Error whilst", 1)[0] + ": " + message.splitlines()[-1]
        match = re.match(r"flag --config\.([\w.]+)=", message)
        current = flag_values["config"].value if match else None
        if isinstance(current, ml_collections.ConfigDict):
            for key in match.group(1).split("."):
                current = current[key]
            message += f"; config.{match.group(1)} is {type(current).__name__} {_show(current)}"
        raise ConfigError(" ".join(message.split())) from None
    except (AttributeError, KeyError) as error:  # An override of a key the config lacks.
        spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
        explained = None
        if spec is not None:
            try:
                explained = unknown_override(load_config_file(spec), argv)
            except Exception:
                explained = None
        message = explained or f"--config override: {error}"
        raise ConfigError(" ".join(message.split())) from None
