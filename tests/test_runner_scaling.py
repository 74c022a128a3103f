"""The experiments runner: data parallel over 8 host devices, and a stop after bad steps.

The test marked ``needs_8_devices`` runs in a subprocess with 8 host CPU devices.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from multidevice import driver, needs_8_devices, run_module_on_8_devices

pytest.importorskip("flax")
import jax
from problems import figure_config

from jadam.experiments import train

ROOT = Path(__file__).resolve().parents[1]
assert importlib.util.find_spec("jadam.experiments") is not None


@driver
def test_on_8_host_devices():
    run_module_on_8_devices(__file__)


def _smoke(runs=("adam",)):
    config = figure_config("fig2_mlp")
    for name in list(config.runs):
        if name not in runs:
            del config.runs[name]
    return config


def _losses(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [(r["run"], r["step"], r["train_loss"], r.get("test_loss")) for r in rows]


@needs_8_devices
def test_data_parallel_over_8_devices_matches_one_device(tmp_path):
    assert jax.local_device_count() == 8
    config = _smoke()
    train.train_and_evaluate(config, tmp_path / "one")
    config.mesh = "data"
    rows = train.train_and_evaluate(config, tmp_path / "eight")
    assert [r["steps"] for r in rows] == [24]
    one, eight = _losses(tmp_path / "one"), _losses(tmp_path / "eight")
    assert [r[:2] for r in one] == [r[:2] for r in eight]
    for a, b in zip(one, eight, strict=True):
        for x, y in zip(a[2:], b[2:], strict=True):
            assert (x is None) == (y is None)
            if x is not None:
                assert y == pytest.approx(x, rel=2e-3)


@needs_8_devices
def test_mesh_needs_batch_divisible_by_devices(tmp_path):
    config = _smoke()
    config.mesh, config.batch_size = "data", 60
    with pytest.raises(ValueError, match=r"config\.batch_size: expected a multiple of the 8 local"):
        train.train_and_evaluate(config, tmp_path)


def test_unknown_mesh_is_refused(tmp_path):
    config = _smoke()
    config.mesh = "model"
    with pytest.raises(ValueError, match=r"config\.mesh: expected"):
        train.train_and_evaluate(config, tmp_path)


def test_stops_after_consecutive_bad_steps_with_a_clear_message(tmp_path):
    """A learning rate of 1e30 overflows: every step is skipped, never applied; the run stops."""
    config = _smoke(runs=("adam",))
    config.runs.adam.optimizer.learning_rate = 1e30
    config.max_consecutive_bad_steps = 3
    with pytest.raises(FloatingPointError, match=r"the last \d+ steps had non-finite") as info:
        train.train_and_evaluate(config, tmp_path)
    assert "config.max_consecutive_bad_steps=3" in str(info.value)
    assert "run 'adam' stopped at step" in str(info.value)


def test_isolated_bad_steps_are_skipped_and_training_goes_on(tmp_path, monkeypatch):
    """A few poisoned steps (fewer in a row than the limit) are skipped; the run finishes."""
    config = _smoke(runs=("adam",))
    config.max_consecutive_bad_steps = 5  # a poisoned chunk is 4 steps in a row
    original = train.make_train_chunk

    def poisoned(*args, **kwargs):
        chunk = original(*args, **kwargs)

        def wrapped(state, start, x, y, key):
            if int(start) in (4, 12):  # NaN inputs for the chunks starting at these steps
                x = x * float("nan")
            return chunk(state, start, x, y, key)

        return wrapped

    monkeypatch.setattr(train, "make_train_chunk", poisoned)
    rows = train.train_and_evaluate(config, tmp_path)
    assert rows[0]["steps"] == 24 and not rows[0]["diverged"]
    assert rows[0]["final_train_loss"] < rows[0]["best_train_loss"] * 1.5


def test_bad_steps_limit_is_validated(tmp_path):
    config = _smoke()
    config.max_consecutive_bad_steps = -1
    with pytest.raises(ValueError, match=r"config\.max_consecutive_bad_steps: expected an integer"):
        train.train_and_evaluate(config, tmp_path)
