"""Property tests of Section 2.1's bounds on the effective step |Δ_t| = α·|m̂_t/√v̂_t| (ε = 0)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import jadam

LENGTH = 64
PROPERTY_SETTINGS = settings(  # the x64 fixture only switches a flag: safe to share
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
betas = st.tuples(st.floats(0.0, 0.99), st.floats(0.5, 0.99999))


@functools.cache
def _updates_fn():
    @jax.jit
    def run(grads, b1, b2):
        tx = jadam.scale_by_adam(b1, b2, eps=0.0)  # traced β: one compilation for all examples

        def step(state, g):
            updates, state = tx.update(g, state)
            return state, updates

        return jax.lax.scan(step, tx.init(grads[0]), grads)[1]

    return run


def _updates(grads, b1, b2):
    return np.asarray(_updates_fn()(jnp.asarray(grads), jnp.asarray(b1), jnp.asarray(b2)))


@PROPERTY_SETTINGS
@given(betas, st.integers(1, LENGTH), st.floats(1e-6, 1e6), st.booleans())
def test_sparse_case_matches_and_respects_paper_bound(x64, beta, t, magnitude, negative):
    """Gradient zero at every step but t: |Δ_t|/α = (1−β1)/(1−β1^t)·√((1−β2^t)/(1−β2)), which
    is ≤ (1−β1)/√(1−β2) when (1−β1) > √(1−β2) and ≤ 1 otherwise (the paper's two cases)."""
    b1, b2 = beta
    grads = np.zeros((LENGTH, 1))
    grads[t - 1] = -magnitude if negative else magnitude
    step = abs(_updates(grads, b1, b2)[t - 1, 0])
    np.testing.assert_allclose(step, reference.adam_sparse_step(t, b1, b2), rtol=1e-9)
    paper_bound = (1 - b1) / np.sqrt(1 - b2) if (1 - b1) > np.sqrt(1 - b2) else 1.0
    assert step <= paper_bound * (1 + 1e-9)


@PROPERTY_SETTINGS
@given(betas, arrays(np.float64, (LENGTH, 3), elements=st.floats(-1e3, 1e3)))
def test_any_sequence_respects_cauchy_schwarz_bound(x64, beta, grads):
    """For any sequence, |m̂_t/√v̂_t| ≤ B_t = √(Σ_k w_k²/u_k) (derived in tests/reference.py).

    B_t → (1−β1)/√((1−β2)(1−β1²/β2)) as t → ∞ when β1² < β2: e.g. 1.15 for the defaults.
    """
    b1, b2 = beta
    steps = np.abs(_updates(grads, b1, b2))
    bounds = np.array([reference.adam_step_bound(t, b1, b2) for t in range(1, LENGTH + 1)])
    assert np.all(steps <= bounds[:, None] * (1 + 1e-9))


def test_bound_is_tight_for_a_constructed_sequence(x64):
    """Equality in Cauchy-Schwarz: g_{t−k} ∝ w_k/u_k reaches B_t, so the bound cannot shrink."""
    b1, b2, t = 0.9, 0.999, 20
    k = np.arange(t)
    w = (1 - b1) * b1**k / (1 - b1**t)
    u = (1 - b2) * b2**k / (1 - b2**t)
    grads = np.zeros((LENGTH, 1))
    grads[:t, 0] = (w / u)[::-1]
    step = abs(_updates(grads, b1, b2)[t - 1, 0])
    np.testing.assert_allclose(step, reference.adam_step_bound(t, b1, b2), rtol=1e-9)
