"""jadam against the NumPy transcription of Algorithms 1 and 2 over 1000+ steps."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
import reference
from problems import gradient_sequence, run_updates

import jadam

STEPS = 1000
ADAM_SETTINGS = [  # (alpha, beta1, beta2, eps)
    (1e-3, 0.9, 0.999, 1e-8),  # the paper's defaults
    (1e-2, 0.0, 0.99, 1e-8),  # Figure 4's β1 = 0 (RMSProp-like)
    (3e-3, 0.5, 0.9, 0.0),  # no ε at all
    (1e-3, 0.9, 0.9999, 1e-3),  # large ε, slow β2
]
KINDS = ["dense", "sparse", "zeros"]
# dtype, rtol, atol as a fraction of α (float32 cancellation in m_t when g changes sign)
PRECISIONS = [(jnp.float64, 1e-10, 0.0), (jnp.float32, 1e-5, 1e-5)]


@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("setting,kind", list(itertools.product(ADAM_SETTINGS, KINDS)), ids=str)
def test_adam_matches_algorithm_1(x64, setting, kind, bias_correction, dtype, rtol, atol):
    alpha, beta1, beta2, eps = setting
    grads = gradient_sequence(kind, STEPS, seed=hash((kind, setting)) % 2**31)
    expected = reference.adam(grads, alpha, beta1, beta2, eps, bias_correction=bias_correction)
    tx = jadam.adam(alpha, beta1, beta2, eps, bias_correction=bias_correction)
    got = run_updates(tx, grads, dtype)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol * alpha)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
@pytest.mark.parametrize("eps", [0.0, 1e-8, 1e-3])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("beta1,beta2", [(0.9, 0.999), (0.0, 0.99), (0.5, 0.9)])
def test_adamax_matches_algorithm_2(x64, kind, eps, beta1, beta2, dtype, rtol, atol):
    grads = gradient_sequence(kind, STEPS, seed=7)
    expected = reference.adamax(grads, 0.002, beta1, beta2, eps)
    got = run_updates(jadam.adamax(0.002, beta1, beta2, eps), grads, dtype)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol * 0.002)


def test_literal_algorithm_divides_zero_by_zero_but_jadam_does_not(x64):
    """With ε = 0 and an always-zero coordinate, Algorithm 1 computes 0/0; jadam returns 0."""
    grads = gradient_sequence("zeros", 20)
    literal = reference.adam(grads, eps=0.0, literal=True)
    assert np.isnan(literal[:, :2]).all() and np.isfinite(literal[:, 2:]).all()
    got = run_updates(jadam.adam(1e-3, eps=0.0), grads, jnp.float64)
    np.testing.assert_array_equal(got[:, :2], 0.0)
    np.testing.assert_allclose(got[:, 2:], literal[:, 2:], rtol=1e-12)
    literal_max = reference.adamax(grads, literal=True)
    assert np.isnan(literal_max[:, :2]).all()
    np.testing.assert_array_equal(run_updates(jadam.adamax(eps=0.0), grads, jnp.float64)[:, :2], 0)


def test_bias_correction_switch_changes_early_steps_only_as_derived(x64):
    """Without Section 3's correction the first step is scaled by (1−β1)/√(1−β2) = 3.16."""
    grads = np.ones((1, 3))
    corrected = run_updates(jadam.scale_by_adam(eps=0.0), grads, jnp.float64)
    raw = run_updates(jadam.scale_by_adam(eps=0.0, bias_correction=False), grads, jnp.float64)
    np.testing.assert_allclose(corrected, 1.0, rtol=1e-12)
    np.testing.assert_allclose(raw, 0.1 / np.sqrt(0.001), rtol=1e-12)


def test_bias_correction_primitive_matches_formula():
    moment = {"a": jnp.array([0.5, 1.0]), "b": None}
    out = jadam.bias_correction(moment, 0.9, jnp.array(3))
    np.testing.assert_allclose(out["a"], np.array([0.5, 1.0]) / (1 - 0.9**3), rtol=1e-6)
    assert out["b"] is None
