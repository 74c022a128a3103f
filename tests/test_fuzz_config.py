"""Hostile experiment configs, fuzzed: each is refused with a one-line error naming the key.

Hypothesis (derandomized: the same cases on every run) mutates the real configs in configs/:
a value replaced (wrong type, NaN, ±inf, negative, huge, None, lists, groups), an unknown key
added (typos such as ``learnig_rate``, at every level), a key deleted, and ``--config.key=value``
command-line overrides. The test's own oracle, written from the documented schema and not from
``config_check``, says which mutations must be refused; the others may pass or be refused.
Refused means :class:`ConfigError` (a ``ValueError``; ``TypeError`` too for wrong types) with a
one-line message containing the mutated key's full path; anything else (a ``KeyError``, an
error from JAX or Flax) fails the test. Each target prints how many cases it tried.
"""

from __future__ import annotations

import collections
import copy
import math
import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest
from absl import flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ml_collections import config_flags

pytest.importorskip("flax")
from jadam.experiments import config_check, config_lib, train

ROOT = Path(__file__).resolve().parents[1]
SPECS = [
    f"configs/{path.name}{arg}"
    for path in sorted((ROOT / "configs").glob("*.py"))
    for arg in (":smoke", "")
]
BASE = {spec: config_lib.load_config_file(str(ROOT / spec)).to_dict() for spec in SPECS}
PYTHON_EXAMPLES, CLI_EXAMPLES = 400, 150
FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Values no key of any config accepts (every number in these configs is ≥ 0 and float32-sized).
REFUSED_EVERYWHERE = [None, math.nan, math.inf, -math.inf, -1, -2.5, 1e300, {}, {"x": 1}]
OTHER_VALUES = ["abc", "", "adam", "data", "log", 0, 1, 0.5, 3, 2**40, True, False, [], [1], (64,)]
# Keys a config may leave out (per-run settings, optional plot and model fields).
OPTIONAL = {"steps_per_call", "setting", "schedule", "hparams", "ymax", "zoom_epochs"}
OPTIONAL |= {"state_precision", "fused", "legend_state_bytes", "search"}
HPARAMS = {"b1", "b2", "eps", "initial_accumulator_value", "decay", "momentum", "rho"}
HPARAMS |= {"bias_correction", "nesterov"}


def _leaves(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _groups(tree, prefix=()):
    yield prefix, tree
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _groups(value, (*prefix, key))


def _all_keys(tree) -> set[str]:
    return {key for path, _ in _leaves(tree) for key in path} | {
        key for path, _ in _groups(tree) for key in path
    }


KNOWN_KEYS = set().union(*(_all_keys(t) for t in BASE.values())) | OPTIONAL | HPARAMS
KNOWN_KEYS |= {"budgets_epochs", "channels", "latent", "hidden", "model"}


def _refused_everywhere(value) -> bool:
    """None, groups, NaN, ±inf, negative numbers and numbers beyond float32: no key takes them."""
    if value is None or isinstance(value, dict):
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not 0 <= value <= 3.4e38  # NaN fails every comparison.


def _compatible(original, new) -> bool:
    """Could ``new`` be valid where ``original`` is? (Same kind; int may stand for a float.)"""
    if isinstance(original, bool) or isinstance(new, bool):
        return isinstance(original, bool) and isinstance(new, bool)
    if isinstance(original, float):
        return isinstance(new, (int, float))
    if isinstance(original, (tuple, list)):
        return isinstance(new, (tuple, list))
    return type(new) is type(original)


def _in_run_model(path) -> bool:
    return len(path) >= 3 and "runs" in path and path[path.index("runs") + 2 :][:1] == ("model",)


@st.composite
def mutations(draw):
    """(spec, mutated config as a dict, mutated path, must it be refused?)."""
    spec = draw(st.sampled_from(SPECS))
    tree = copy.deepcopy(BASE[spec])
    kind = draw(st.sampled_from(["replace", "replace", "add", "delete"]))
    if kind == "replace":
        path, original = draw(st.sampled_from(list(_leaves(tree))))
        value = draw(st.sampled_from(REFUSED_EVERYWHERE + OTHER_VALUES))
        must_fail = _refused_everywhere(value) or not _compatible(original, value)
        if value == {} and original == {}:  # An empty group for an empty group.
            must_fail = False
    elif kind == "add":
        group_path, _ = draw(st.sampled_from(list(_groups(tree))))
        group = tree
        for key in group_path:
            group = group[key]
        siblings = sorted(group) or ["zz_unknown"]
        base = draw(st.sampled_from(siblings))
        edit = draw(st.sampled_from(["drop", "double", "suffix", "swap"]))
        i = draw(st.integers(0, max(len(base) - 1, 0)))
        new_key = {
            "drop": base[:i] + base[i + 1 :],
            "double": base[: i + 1] + base[i:],
            "suffix": base + "_x",
            "swap": base[:i] + base[i + 1 : i + 2] + base[i : i + 1] + base[i + 2 :],
        }[edit]
        if not new_key.isidentifier() or new_key in KNOWN_KEYS or new_key in group:
            new_key = base + "_typo"
        path = (*group_path, new_key)
        value = draw(st.sampled_from([1, 0.5, "x", None, True]))
        must_fail = True
    else:
        path, _ = draw(st.sampled_from(list(_leaves(tree)) + list(_groups(tree))[1:]))
        value = None
        last = path[-1]
        in_runs = len(path) >= 2 and path[-2] == "runs"  # a whole run
        in_figures = path[:-1] == ("figures",)  # a whole figure of the paper config
        must_fail = not (
            last in OPTIONAL
            or _in_run_model(path)
            or (len(path) >= 2 and path[-2] == "hparams")
            or (last == "model" and "runs" in path)
            or in_runs
            or in_figures
        )
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if kind == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return spec, tree, path, kind, must_fail


def _names(message: str, path) -> bool:
    dotted = ".".join(str(key) for key in path)
    return f"config.{dotted}" in message


def test_config_mutations_are_refused_with_the_key_or_pass():
    counts = collections.Counter()

    @settings(FUZZ, max_examples=PYTHON_EXAMPLES)
    @given(mutations())
    def check(case):
        spec, tree, path, kind, must_fail = case
        config = ml_collections.ConfigDict(tree)
        try:
            config_check.check_config(config)
        except config_check.ConfigError as error:
            message = str(error)
            assert "\n" not in message, message
            assert _names(message, path) or (kind == "delete" and "config.only" in message), (
                path,
                message,
            )
            if isinstance(error, TypeError):
                assert isinstance(error, ValueError)  # ConfigTypeError is both
            counts[f"{kind}: refused"] += 1
        else:
            assert not must_fail, (spec, path, tree if kind == "add" else None)
            counts[f"{kind}: passed"] += 1

    check()
    print(f"\nconfig mutations tried: {sum(counts.values())} {dict(sorted(counts.items()))}")
    assert sum(counts.values()) >= PYTHON_EXAMPLES // 2
    for kind in ("replace", "add", "delete"):
        assert counts[f"{kind}: refused"] > 0
    assert counts["replace: passed"] > 0 and counts["delete: passed"] > 0


CLI_VALUES = ["abc", "", "nan", "inf", "-inf", "-1", "0", "2.5", "1e300", "True", "None", "(1,2)"]
CLI_VALUES += ["[1]", "{}", "adam", "7"]
NUMERIC_BAD = {"abc", "nan", "inf", "-inf", "-1", "1e300", "None", "[1]", "{}", "adam"}


def _parse(spec: str, overrides: list[str]):
    argv = ["prog", f"--config={ROOT / spec}", *overrides]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, sys_argv=argv)
    config_check.parse_flags(argv, flag_values)
    return flag_values["config"].value


@st.composite
def overrides(draw):
    spec = draw(st.sampled_from([s for s in SPECS if s.endswith(":smoke")]))
    leaves = [
        (path, value)
        for path, value in _leaves(BASE[spec])
        if not isinstance(value, dict) and len(path) < 12
    ]
    path, original = draw(st.sampled_from(leaves))
    if draw(st.integers(0, 4)) == 0:  # an unknown key: a typo of the last part
        path = (*path[:-1], path[-1][:-1] + "x" + "_typo")
        return spec, path, "1", True
    value = draw(st.sampled_from(CLI_VALUES))
    numeric = isinstance(original, (int, float)) and not isinstance(original, bool)
    return spec, path, value, numeric and value in NUMERIC_BAD


def test_command_line_overrides_are_refused_with_the_key_or_pass():
    counts = collections.Counter()

    @settings(FUZZ, max_examples=CLI_EXAMPLES)
    @given(overrides())
    def check(case):
        spec, path, value, must_fail = case
        dotted = ".".join(path)
        try:
            config_check.check_config(_parse(spec, [f"--config.{dotted}={value}"]))
        except config_check.ConfigError as error:
            message = str(error)
            assert "\n" not in message and f"config.{dotted}" in message.replace("--", ""), (
                dotted,
                value,
                message,
            )
            counts["refused"] += 1
        else:
            assert not must_fail, (spec, dotted, value)
            counts["passed"] += 1

    check()
    print(f"\ncommand-line overrides tried: {sum(counts.values())} {dict(counts)}")
    assert sum(counts.values()) >= CLI_EXAMPLES // 2
    assert counts["refused"] > 0 and counts["passed"] > 0


@pytest.mark.parametrize("spec", SPECS)
def test_real_configs_pass(spec):
    config_check.check_config(ml_collections.ConfigDict(BASE[spec]))


def test_schema_covers_every_key_of_the_base_config():
    from jadam.experiments.config_lib import base_config

    base = base_config("f", "mnist", {"kind": "logreg", "input_dropout": 0.0}, "title")
    assert set(base) == set(config_check.FIGURE_KEYS)
    assert set(base.plot) == set(config_check.PLOT_KEYS)


CNN = {"channels": (4, 4, 8), "hidden": 16, "input_dropout": 0.0, "hidden_dropout": 0.0}


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (
            lambda c: c["runs"]["adam"]["optimizer"].update({"learnig_rate": 0.1}),
            ValueError,
            r"config.runs.adam.optimizer.learnig_rate: unknown key; expected one of "
            r"\['fused', 'hparams', 'learning_rate', 'name', 'schedule', 'state_precision'\] "
            r"\(did you mean 'learning_rate'\?\)",
        ),
        (
            lambda c: c.update({"batch_sise": 3}),
            ValueError,
            r"config.batch_sise: unknown key; .*did you mean 'batch_size'",
        ),
        (
            lambda c: c.update({"batch_size": "64"}),
            TypeError,
            r"config.batch_size: expected a positive integer below 2\*\*31, found '64'",
        ),
        (
            lambda c: c.update({"batch_size": 64.0}),
            TypeError,
            r"config.batch_size: expected a positive integer .* found 64.0",
        ),
        (
            lambda c: c["runs"]["adam"]["optimizer"].update({"learning_rate": [0.1]}),
            TypeError,
            r"config.runs.adam.optimizer.learning_rate: expected a finite number .* found \[0.1\]",
        ),
        (
            lambda c: c["runs"]["adam"]["optimizer"].update({"learning_rate": math.inf}),
            ValueError,
            r"config.runs.adam.optimizer.learning_rate: expected a finite number .* found inf",
        ),
        (
            lambda c: c["model"].update({"latent": 4}),
            ValueError,
            r"config.model.latent: unknown key; expected one of "
            r"\['hidden', 'hidden_dropout', 'input_dropout', 'kind'\] with config.model.kind='mlp'",
        ),
        (
            lambda c: c["runs"]["adam"]["optimizer"]["hparams"].update({"momentum": 0.9}),
            ValueError,
            r"config.runs.adam.optimizer.hparams.momentum: unknown key; .* "
            r"with config.runs.adam.optimizer.name='adam'",
        ),
        (
            lambda c: c["runs"]["adam"]["optimizer"]["hparams"].update({"eps": math.nan}),
            ValueError,
            r"config.runs.adam.optimizer.hparams.eps: eps must be",
        ),
        (
            lambda c: c["runs"]["adam"]["optimizer"]["hparams"].update({"bias_correction": 1}),
            TypeError,
            r"config.runs.adam.optimizer.hparams.bias_correction: expected True or False, found 1",
        ),
        (
            lambda c: c.update({"seed": 2**64}),
            ValueError,
            r"config.seed: expected an integer in \[0, 2\*\*32\), found 18446744073709551616",
        ),
        (
            lambda c: c["runs"].update({"a/b": copy.deepcopy(c["runs"]["adam"])}),
            ValueError,
            r"config.runs.a/b: expected a run name of letters, digits",
        ),
        (
            lambda c: c.update({"dataset": "imdb", "model": {**CNN, "kind": "cnn"}}),
            ValueError,
            r"config.model.kind: expected 'logreg', 'mlp' or 'vae' with config.dataset='imdb'",
        ),
        (
            lambda c: c.update({"runs": {}}),
            ValueError,
            r"config.runs: expected at least one run",
        ),
        (
            lambda c: c["model"].update({"hidden": (64, None)}),
            ValueError,
            r"config.model.hidden: expected a tuple of 1 to 16 positive layer widths",
        ),
    ],
)
def test_explicit_python_config_errors(mutate, error, message, tmp_path):
    tree = copy.deepcopy(BASE["configs/fig2_mlp.py:smoke"])
    mutate(tree)  # A config file's dict, so ConfigDict's own type checks do not interfere.
    config = ml_collections.ConfigDict(tree)
    with pytest.raises(error, match=message):
        train.train_and_evaluate(config, tmp_path)  # The runner checks before anything else.
    assert not any(tmp_path.iterdir())  # Nothing was written.


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jadam.experiments", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "--config.batch_size=abc",
            "error: flag --config.batch_size=abc: invalid literal for int() with base 10: 'abc'; "
            "config.batch_size is int 64",
        ),
        (
            "--config.runs.adam.optimizer.learnig_rate=0.1",
            "error: --config.runs.adam.optimizer.learnig_rate: unknown key; expected one of "
            "['hparams', 'learning_rate', 'name', 'schedule', 'state_precision'] (did you mean "
            "'learning_rate'?)",
        ),
        (
            "--config.runs.adam.optimizer.learning_rate=nan",
            "error: config.runs.adam.optimizer.learning_rate: expected a finite number in "
            "(0, 3.403e+38], found nan",
        ),
        ("--config.mesh=gpu", 'error: config.mesh: expected "" (one device) or "data"'),
        ("--config.runs.adam.optimizer.name=adamw", "error: config.runs.adam.optimizer.name:"),
    ],
)
def test_command_line_errors_are_one_line(override, message, tmp_path):
    result = _cli("--config=configs/fig2_mlp.py:smoke", override, f"--workdir={tmp_path}")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not any(tmp_path.iterdir())
