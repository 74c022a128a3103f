"""Schedule-free AdamW (jadam._schedule_free) against its transcription and optax."""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
import reference_successors as ref
from problems import train_regression
from registry import SMALL_8BIT

import jadam

TARGET = np.linspace(-2.0, 3.0, 12)
SCALES = np.logspace(-1, 1, 12)


def _grad(y):
    return SCALES * (y - TARGET) + np.cos(3 * y)


def _run(tx, steps):
    """The y_t after each step, and the final state; f64 when x64 is on."""
    y = jnp.zeros(12, jnp.result_type(float))
    state, ys = tx.init(y), []
    for _ in range(steps):
        updates, state = jax.jit(tx.update)(jnp.asarray(_grad(np.asarray(y))), state, y)
        y = optax.apply_updates(y, updates)
        ys.append(np.asarray(y))
    return np.stack(ys), state


@pytest.mark.parametrize(
    "options", [{}, {"weight_decay": 0.05}, {"warmup_steps": 10}, {"b1": 0.5, "b2": 0.99}]
)
def test_matches_the_paper_transcription_in_float64(x64, options):
    ys, state = _run(jadam.schedule_free_adamw(0.05, **options), 60)
    kwargs = {"lr": 0.05, "warmup": options.get("warmup_steps", 0)}
    kwargs |= {k: v for k, v in options.items() if k != "warmup_steps"}
    ref_ys, ref_x = ref.schedule_free_adamw(_grad, np.zeros(12), 60, **kwargs)
    # optax's warm-up schedule and max_lr bookkeeping run in float32 even under x64.
    chex.assert_trees_all_close(ys, ref_ys, rtol=1e-6, atol=1e-9)
    x = jadam.schedule_free_eval_params(state, jnp.asarray(ys[-1]))
    chex.assert_trees_all_close(np.asarray(x), ref_x, rtol=1e-6, atol=1e-9)


def test_optax_warmup_lags_the_papers_by_one_step(x64):
    """optax (and so jadam) steps z with γ_{t−1} of the warm-up, the paper with γ_t."""
    ys, _ = _run(jadam.schedule_free_adamw(0.05, warmup_steps=10), 20)
    paper, _ = ref.schedule_free_adamw(_grad, np.zeros(12), 20, lr=0.05, warmup=10,
                                       optax_warmup=False)  # fmt: skip
    np.testing.assert_array_equal(ys[0], 0.0)
    assert np.abs(paper[0]).min() > 1e-3


@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.05, "warmup_steps": 5}])
def test_matches_optax_contrib_and_restores_its_state(options):
    ys, state = _run(jadam.schedule_free_adamw(0.05, **options), 30)
    theirs, their_state = _run(optax.contrib.schedule_free_adamw(0.05, **options), 30)
    np.testing.assert_allclose(ys, theirs, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal_shapes_and_dtypes(
        jax.tree.leaves(state), jax.tree.leaves(their_state)
    )
    assert state._fields == their_state._fields


def test_schedule_free_wraps_any_base_optimizer():
    ys, _ = _run(jadam.schedule_free(jadam.sgd(0.05), 0.05), 200)
    ours = np.abs(_grad(ys[-1])).max()
    assert ours < 0.05 * np.abs(_grad(np.zeros(12))).max()


def test_eval_params_needs_the_schedule_free_state():
    with pytest.raises(ValueError, match="needs a ScheduleFreeState, got ScaleByAdamState"):
        jadam.schedule_free_eval_params(jadam.scale_by_adam().init(jnp.zeros(2)), jnp.zeros(2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"b1": 0.0}, "b1 must be in (0.0, 1.0], got 0.0"),
        ({"warmup_steps": -3}, "warmup_steps must be an int ≥ 0 or None, got -3"),
        ({"weight_decay": -1.0}, "weight_decay must be in [0.0, inf], got -1.0"),
        ({"state_precision": "2bit"}, "state_precision must be"),
    ],
)
def test_bad_hyperparameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        jadam.schedule_free_adamw(1e-3, **kwargs)


def test_update_without_params_is_a_clear_error():
    tx = jadam.schedule_free_adamw(1e-3)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))


@pytest.mark.parametrize("precision", [SMALL_8BIT, "bfloat16"], ids=["8bit", "bfloat16"])
def test_low_precision_second_moment_follows_float32(precision):
    _, _, losses32 = train_regression(jadam.schedule_free_adamw(3e-3))
    _, state, losses = train_regression(jadam.schedule_free_adamw(3e-3, state_precision=precision))
    rms_state = state.base_optimizer_state[0]
    if precision is SMALL_8BIT:
        assert rms_state.nu["w"].dtype == jnp.uint8 and state.z["w"].dtype == jnp.float32
    assert losses32[-1] < 0.3 * losses32[0]
    assert float(losses[-1]) == pytest.approx(float(losses32[-1]), rel=0.03)
