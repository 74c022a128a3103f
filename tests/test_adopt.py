"""ADOPT (jadam._adopt) against its NumPy transcription, optax, and in low-precision storage."""

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


@pytest.mark.parametrize("kind", ["dense", "sparse", "zeros"])
@pytest.mark.parametrize("clip", [True, False])
def test_matches_the_paper_transcription_in_float64(x64, kind, clip):
    grads = gradient_sequence(kind, 40)
    ours = run_updates(jadam.adopt(0.01, use_clipping=clip), grads, jnp.float64)
    chex.assert_trees_all_close(ours, ref.adopt(grads, 0.01, clip=clip), **TOL)


@pytest.mark.parametrize("options", [{}, {"nesterov": True}, {"use_clipping": False}])
def test_matches_optax_contrib_adopt(options):
    """To float32 rounding: XLA orders a few roundings differently in the two programs."""
    grads = gradient_sequence("dense", 30)
    ours = run_updates(jadam.adopt(0.01, **options), grads, jnp.float32)
    theirs = run_updates(optax.contrib.adopt(0.01, **options), grads, jnp.float32)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-9)


def test_first_step_only_initialises_the_second_moment():
    tx = jadam.scale_by_adopt()
    updates, state = tx.update(jnp.array([3.0, -2.0]), tx.init(jnp.zeros(2)))
    np.testing.assert_array_equal(updates, [0.0, 0.0])
    np.testing.assert_array_equal(state.nu, [9.0, 4.0])
    np.testing.assert_array_equal(state.mu, [0.0, 0.0])


def test_eps_zero_and_zero_gradients_never_give_nan():
    grads = np.zeros((5, 3))
    grads[1:, 0] = 1.0
    updates = run_updates(jadam.adopt(0.1, eps=0.0), grads, jnp.float32)
    assert np.isfinite(updates).all()
    np.testing.assert_array_equal(updates[:, 1:], 0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"b1": 1.0}, "b1 must be in [0.0, 1.0), got 1.0"),
        ({"b2": -0.5}, "b2 must be in [0.0, 1.0), got -0.5"),
        ({"eps": -1.0}, "eps must be in [0.0, inf], got -1.0"),
        ({"clip_value_fn": 3.0}, "clip_value_fn must be a callable"),
        ({"state_precision": "4bit"}, "state_precision must be"),
    ],
)
def test_bad_hyperparameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        jadam.scale_by_adopt(**kwargs)


@pytest.mark.parametrize("precision", [SMALL_8BIT, "bfloat16"], ids=["8bit", "bfloat16"])
def test_low_precision_state_follows_float32(precision):
    _, _, losses32 = train_regression(jadam.adopt(3e-3))
    _, state, losses = train_regression(jadam.adopt(3e-3, state_precision=precision))
    if precision is SMALL_8BIT:
        assert state[0].mu["w"].dtype == jnp.uint8 and state[0].nu["w"].dtype == jnp.uint8
    assert losses32[-1] < 0.3 * losses32[0]
    assert float(losses[-1]) == pytest.approx(float(losses32[-1]), rel=0.03)
