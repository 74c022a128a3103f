"""RAdam, AdaBelief, Yogi, LAMB, NAdamW, AdamaxW against reference_successors.py, in float64."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference_successors as ref
from problems import gradient_sequence, run_updates

import jadam

TOL = {"rtol": 1e-10, "atol": 1e-14}


def run_params(tx, grads, theta0):
    """θ_1..θ_T from feeding the rows of ``grads`` to ``tx`` (float64, under jit)."""
    grads = jax.tree.map(jnp.asarray, grads)

    @jax.jit
    def scan(grads, theta):
        def step(carry, g):
            theta, state = carry
            updates, state = tx.update(g, state, theta)
            theta = optax.apply_updates(theta, updates)
            return (theta, state), theta

        return jax.lax.scan(step, (theta, tx.init(theta)), grads)[1]

    return jax.tree.map(np.asarray, scan(grads, jax.tree.map(jnp.asarray, theta0)))


@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("threshold", [4.0, 5.0])
@pytest.mark.parametrize("eps_form", ["algorithm1", "eps_hat"])
def test_radam(x64, kind, threshold, eps_form):
    grads = gradient_sequence(kind, 40)
    tx = jadam.radam(0.01, eps=1e-3, threshold=threshold, eps_form=eps_form)
    expected = ref.radam(grads, 0.01, eps=1e-3, threshold=threshold, eps_hat=eps_form == "eps_hat")
    chex.assert_trees_all_close(run_updates(tx, grads, jnp.float64), expected, **TOL)


def test_radam_paper_threshold_rectifies_step_5_only_earlier(x64):
    """ρ_5 = 4.996 for β2 = 0.999: Algorithm 2 (ρ_t > 4) rectifies it, optax/torch (5) do not."""
    grads = gradient_sequence("dense", 8)
    paper = run_updates(jadam.radam(0.01, threshold=4.0), grads, jnp.float64)
    anchors = run_updates(jadam.radam(0.01), grads, jnp.float64)
    differs = np.any(np.abs(paper - anchors) > 1e-6, axis=1)
    np.testing.assert_array_equal(differs, [False] * 4 + [True] + [False] * 3)
    np.testing.assert_allclose(anchors[:5], ref.radam(grads[:5], 0.01, threshold=np.inf), **TOL)


def test_radam_eps_forms_agree_at_eps_zero_and_differ_otherwise(x64):
    grads = gradient_sequence("dense", 20)
    runs = {
        (form, eps): run_updates(jadam.radam(0.01, eps=eps, eps_form=form), grads, jnp.float64)
        for form in ("algorithm1", "eps_hat")
        for eps in (0.0, 1e-2)
    }
    chex.assert_trees_all_close(runs["algorithm1", 0.0], runs["eps_hat", 0.0], **TOL)
    assert np.max(np.abs(runs["algorithm1", 1e-2] - runs["eps_hat", 1e-2])) > 1e-6


@pytest.mark.parametrize("kind", ["dense", "sparse", "zeros"])
@pytest.mark.parametrize("eps", [1e-16, 1e-3])
def test_adabelief(x64, kind, eps):
    grads = gradient_sequence(kind, 40)
    tx = jadam.adabelief(0.01, eps=eps, eps_root=eps)
    chex.assert_trees_all_close(
        run_updates(tx, grads, jnp.float64), ref.adabelief(grads, 0.01, eps=eps), **TOL
    )


def test_adabelief_eps_root_accumulates_in_the_state(x64):
    """ε_root is added to s_t at every step: with g = 0, ŝ_t = ε_root/(1−β2) exactly."""
    tx = jadam.scale_by_belief(b2=0.5, eps_root=1e-4)
    state = tx.init(jnp.zeros(1))
    for _ in range(40):
        _, state = tx.update(jnp.zeros(1), state)
    np.testing.assert_allclose(state.nu, 1e-4 / (1 - 0.5) * (1 - 0.5**40), rtol=1e-12)


@pytest.mark.parametrize("kind", ["dense", "sparse", "zeros"])
def test_yogi_paper_algorithm(x64, kind):
    """m_0 = v_0 = 0 and no bias correction: Algorithm 2 as printed."""
    grads = gradient_sequence(kind, 40)
    tx = jadam.yogi(0.01, initial_accumulator_value=0.0, bias_correction=False)
    chex.assert_trees_all_close(run_updates(tx, grads, jnp.float64), ref.yogi(grads, 0.01), **TOL)


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_yogi_optax_defaults(x64, kind):
    """m_0 = v_0 = 1e-6, bias-corrected: what optax and TF-Addons run."""
    grads = gradient_sequence(kind, 40)
    expected = ref.yogi(grads, 0.01, initial=1e-6, bias_correction=True)
    chex.assert_trees_all_close(run_updates(jadam.yogi(0.01), grads, jnp.float64), expected, **TOL)


def test_yogi_initialization_changes_early_steps(x64):
    """optax's v_0 = 1e-6 with bias correction is not the paper's v_0 = 0; the gap is visible
    for small gradients and fades as v_t forgets v_0."""
    grads = 1e-3 * gradient_sequence("dense", 30, size=4)
    optax_form = run_updates(jadam.yogi(0.01), grads, jnp.float64)
    zero_start = run_updates(jadam.yogi(0.01, initial_accumulator_value=0.0), grads, jnp.float64)
    assert np.max(np.abs(optax_form[0] - zero_start[0])) > 1e-5


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_lamb(x64, weight_decay):
    grads = gradient_sequence("dense", 30, size=12).reshape(30, 3, 4)
    grads[:, 2] = 0.0  # a layer with no gradient: ratio 1 by convention
    theta0 = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    theta0[1] = 0.0  # a layer at zero: ratio 1 (it keeps its plain step)
    tx = jadam.lamb(0.01, weight_decay=weight_decay)
    ours = run_params(tx, tuple(grads.transpose(1, 0, 2)), tuple(theta0))
    expected = ref.lamb(grads, theta0, 0.01, weight_decay=weight_decay)
    chex.assert_trees_all_close(np.stack(ours, axis=1), expected, **TOL)


def test_nadamw(x64):
    grads = gradient_sequence("dense", 30)
    theta0 = np.linspace(-1.0, 1.0, 16)
    tx = jadam.nadamw(0.01, weight_decay=0.1)
    expected = ref.nadamw(grads, theta0, 0.01, weight_decay=0.1)
    chex.assert_trees_all_close(run_params(tx, grads, theta0), expected, **TOL)


@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_adamaxw(x64, eps):
    grads = gradient_sequence("dense", 30)
    theta0 = np.linspace(-1.0, 1.0, 16)
    tx = jadam.adamaxw(0.01, eps=eps, weight_decay=0.1)
    expected = ref.adamaxw(grads, theta0, 0.01, eps=eps, weight_decay=0.1)
    chex.assert_trees_all_close(run_params(tx, grads, theta0), expected, **TOL)


@pytest.mark.parametrize(
    "tx",
    [
        jadam.radam(1e-2, eps=0.0, threshold=4.0),
        jadam.radam(1e-2, eps=0.0, eps_form="eps_hat", threshold=4.0),
        jadam.adabelief(1e-2, eps=0.0, eps_root=0.0),
        jadam.yogi(1e-2, eps=0.0, initial_accumulator_value=0.0),
        jadam.lamb(1e-2, eps=0.0),
        jadam.adamaxw(1e-2, eps=0.0),
    ],
    ids=["radam", "radam_eps_hat", "adabelief", "yogi", "lamb", "adamaxw"],
)
def test_zero_gradients_never_nan_even_without_eps(tx):
    """The literal algorithms compute 0/0 for a coordinate that never had a gradient."""
    params = jnp.zeros(4)  # no weight decay to tell apart from the step
    state = tx.init(params)
    for _ in range(8):  # past ρ_t > 4 for RAdam
        updates, state = tx.update(jnp.array([0.0, 0.0, 1.0, -1.0]), state, params)
        assert np.isfinite(updates).all()
        np.testing.assert_array_equal(updates[:2], 0.0)
