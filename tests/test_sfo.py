"""SFO (jadam.experiments.sfo): known minimisers, the NumPy reference, bad input, NaN steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from reference_sfo import ReferenceSFO

from jadam.experiments.sfo import SFO


def quadratics(m=30, n=4, seed=0):
    """fᵢ(θ) = ½(θ − cᵢ)ᵀAᵢ(θ − cᵢ) with random SPD Aᵢ; the sum's minimiser in closed form."""
    rng = np.random.default_rng(seed)
    roots = rng.standard_normal((n, m, m)) / np.sqrt(m)
    mats = roots @ roots.transpose(0, 2, 1) + 0.1 * np.eye(m)
    centres = rng.standard_normal((n, m))
    minimiser = np.linalg.solve(mats.sum(0), np.einsum("nkl,nl->k", mats, centres))
    a, c = jnp.asarray(mats), jnp.asarray(centres)

    def value_and_grad(theta, i):
        d = theta - c[i]
        return 0.5 * d @ a[i] @ d, a[i] @ d

    return value_and_grad, minimiser


def logistic(m=20, n=6, per=30, seed=1):
    """A regularised logistic regression split into n mini-batches, and its scipy optimum."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, per, m))
    y = (x @ rng.standard_normal(m) + rng.standard_normal((n, per)) > 0).astype(float)
    xs, ys = jnp.asarray(x), jnp.asarray(y)

    def loss(theta, i):
        z = xs[i] @ theta
        return jnp.mean(jnp.logaddexp(0, z) - ys[i] * z) + 0.01 * theta @ theta / n

    value_and_grad = jax.value_and_grad(loss)
    total = jax.jit(jax.value_and_grad(lambda t: sum(loss(t, i) for i in range(n))))
    optimum = scipy.optimize.minimize(
        lambda t: tuple(np.asarray(v) for v in total(jnp.asarray(t))),
        np.zeros(m),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 2000},
    )
    return value_and_grad, optimum.x


def run(sfo, theta, value_and_grad, steps):
    step = jax.jit(lambda state: sfo.step(state, value_and_grad))
    state = sfo.init(theta)
    for _ in range(steps):
        state, _ = step(state)
    return state


def test_sum_of_quadratics_reaches_the_exact_minimiser(x64):
    value_and_grad, minimiser = quadratics()
    # A short history (L = 3 pairs) fits the small subspace (K = 10..15 of 30 dimensions).
    sfo = SFO(num_subfunctions=4, hessian_init=10.0, max_history=3)
    assert sfo.subspace_sizes(30) == (10, 15)  # the subspace collapses along the way
    state = run(sfo, jnp.full(30, 0.1), value_and_grad, 150)
    # Steps shorter than min_step_length=1e-8 are lengthened to it: θ settles within ~1e-8.
    np.testing.assert_allclose(state.theta, minimiser, atol=1e-7)
    assert bool(state.active.all())


def test_logistic_regression_matches_scipy_optimum(x64):
    value_and_grad, optimum = logistic()
    state = run(SFO(num_subfunctions=6, hessian_init=10.0), jnp.zeros(20), value_and_grad, 300)
    np.testing.assert_allclose(state.theta, optimum, atol=1e-6)


@pytest.mark.parametrize("m, steps", [(8, 40), (40, 11)])  # full space; subspace before collapse
def test_matches_numpy_reference_step_for_step(x64, m, steps):
    value_and_grad, _ = logistic(m=m)
    sfo = SFO(num_subfunctions=6, hessian_init=10.0, max_history=4)
    state = sfo.init(jnp.full(m, 0.05))
    reference = ReferenceSFO(np.full(m, 0.05), 6, history=4, hessian_init=10.0)
    choose, update = jax.jit(sfo.choose), jax.jit(sfo.update)  # the runner jits them (in step)
    chosen = []
    for _ in range(steps):
        index, state = choose(state)
        assert int(index) == reference.choose()
        chosen.append(int(index))
        value, grad = value_and_grad(state.theta, index)
        state = update(state, index, value, grad)
        reference.update(int(index), float(value), np.asarray(grad))
        np.testing.assert_allclose(state.theta, reference.theta, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(float(state.step_scale), reference.scale, rtol=1e-9)
        np.testing.assert_array_equal(state.active, reference.active)
    if m == 8:
        assert len(set(chosen)) == 6  # the active set grew to every subfunction
    else:
        assert int(state.dim) < sfo.subspace_sizes(m)[1]  # no collapse yet: exact subspace


def test_non_finite_evaluation_is_skipped_and_halves_the_step(x64):
    value_and_grad, _ = quadratics(m=5, n=3)
    sfo = SFO(num_subfunctions=3, hessian_init=1.0)
    state = run(sfo, jnp.zeros(5), value_and_grad, 4)
    index, chosen = sfo.choose(state)
    after = sfo.update(chosen, index, jnp.nan, jnp.ones(5))
    assert float(after.step_scale) == pytest.approx(float(chosen.step_scale) / 2)
    for name in ("theta", "hessian", "last_grad", "eval_count"):
        np.testing.assert_array_equal(getattr(after, name), getattr(chosen, name))


def test_pytree_params_round_trip():
    sfo = SFO(num_subfunctions=2)
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    state = sfo.init(params)
    restored = sfo.params(state, like=params)
    assert jax.tree.structure(restored) == jax.tree.structure(params)
    np.testing.assert_array_equal(restored["w"], params["w"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_subfunctions": 1}, r"num_subfunctions: expected an integer ≥ 2, found 1"),
        ({"num_subfunctions": 3, "init_active": 4}, r"init_active: expected .*\[1, .*3\], found 4"),
        ({"num_subfunctions": 3, "hessian_init": 0.0}, r"hessian_init: expected .* > 0, found 0.0"),
        ({"num_subfunctions": 3, "max_history": 2.5}, r"max_history: .* found 2.5"),
        ({"num_subfunctions": 3, "learning_rate": float("nan")}, r"learning_rate: .*found nan"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SFO(**kwargs)
