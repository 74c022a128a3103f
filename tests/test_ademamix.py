"""AdEMAMix (jadam._ademamix) against its NumPy transcription, optax, and in low precision."""

from __future__ import annotations

import re

import chex
import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest
import reference_successors as ref
from problems import gradient_sequence, run_updates, train_regression
from registry import SMALL_8BIT

import jadam

TOL = {"rtol": 1e-10, "atol": 1e-14}


@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize(("b3", "alpha"), [(0.9999, 5.0), (0.99, 2.0), (0.9, 0.0)])
def test_matches_the_paper_transcription_in_float64(x64, kind, b3, alpha):
    grads = gradient_sequence(kind, 50)
    ours = run_updates(jadam.ademamix(0.01, b3=b3, alpha=alpha), grads, jnp.float64)
    chex.assert_trees_all_close(ours, ref.ademamix(grads, 0.01, b3=b3, alpha=alpha), **TOL)


def test_alpha_zero_is_adam(x64):
    grads = gradient_sequence("dense", 30)
    ours = run_updates(jadam.ademamix(0.01, alpha=0.0), grads, jnp.float64)
    chex.assert_trees_all_close(ours, run_updates(jadam.adam(0.01), grads, jnp.float64), **TOL)


@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.1}])
def test_matches_optax_contrib_ademamix(options):
    grads = gradient_sequence("dense", 30)
    ours = run_updates(jadam.ademamix(0.01, **options), grads, jnp.float32)
    theirs = run_updates(optax.contrib.ademamix(0.01, **options), grads, jnp.float32)
    # jadam's 1 − β^t is exact where optax's float32 one is off by up to ~1e-5 (relative).
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-9)


def test_schedules_of_alpha_and_b3_are_read_at_the_slow_count():
    seen = []
    tx = jadam.scale_by_ademamix(b3=lambda t: (seen.append(t), 0.99)[1], alpha=lambda t: 2.0)
    state = tx.init(jnp.zeros(2))
    for _ in range(3):
        _, state = tx.update(jnp.ones(2), state)
    assert [int(t) for t in seen] == [0, 1, 2]
    assert int(state.count_m2) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"b3": 1.0}, "b3 must be in [0.0, 1.0), got 1.0"),
        ({"alpha": -1.0}, "alpha must be in [0.0, inf], got -1.0"),
        ({"b1": 2.0}, "b1 must be in [0.0, 1.0), got 2.0"),
    ],
)
def test_bad_hyperparameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        jadam.scale_by_ademamix(**kwargs)


@pytest.mark.parametrize("precision", [SMALL_8BIT, "bfloat16"], ids=["8bit", "bfloat16"])
def test_low_precision_state_follows_float32(precision):
    _, _, losses32 = train_regression(jadam.ademamix(1e-3, b3=0.99, alpha=2.0))
    _, state, losses = train_regression(
        jadam.ademamix(1e-3, b3=0.99, alpha=2.0, state_precision=precision)
    )
    if precision is SMALL_8BIT:
        assert {state[0].m1["w"].dtype, state[0].m2["w"].dtype, state[0].nu["w"].dtype} == {
            jnp.dtype(jnp.uint8)
        }
    assert losses32[-1] < 0.3 * losses32[0]
    # Three stored moments (two signed 8-bit codes): 3.3 % above float32 measured.
    assert float(losses[-1]) == pytest.approx(float(losses32[-1]), rel=0.05)
