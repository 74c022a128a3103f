"""16-bit moments: bfloat16 state that still decays, separate dtypes, and float16 safety."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from registry import FLOAT16

import jadam
from jadam import _precision

# Issue 7's sequence: 10 unit gradients, then 2,990 zero gradients.
DECAY_SEQUENCE = np.concatenate([np.ones(10), np.zeros(2990)]).astype(np.float32)


def final_state(tx, grads: np.ndarray, size: int = 1, dtype=jnp.float32):
    """Feeds grads[t] (broadcast to ``size`` coordinates) to tx under jit; returns the state."""
    params = jnp.zeros(size, dtype)

    @jax.jit
    def run(grads):
        def step(state, g):
            _, state = tx.update(jnp.broadcast_to(g, (size,)).astype(dtype), state, params)
            return state, None

        return jax.lax.scan(step, tx.init(params), grads)[0]

    return run(jnp.asarray(grads))


def float64_nu(grads: np.ndarray, b2: float = 0.999) -> float:
    nu = 0.0
    for g in grads.astype(np.float64):
        nu = b2 * nu + (1 - b2) * g * g
    return nu


def test_round_to_nearest_bfloat16_never_decays():
    """The failure issue 7 reports for optax: bf16(β2·v) == v, so v stays at its peak."""
    state = final_state(jadam.scale_by_adam(nu_dtype=jnp.bfloat16), DECAY_SEQUENCE)
    assert float(state.nu[0]) == pytest.approx(0.00995, rel=0.01)
    assert float64_nu(DECAY_SEQUENCE) == pytest.approx(0.000500, rel=0.01)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_stochastically_rounded_state_decays_like_float32(dtype):
    reference = float64_nu(DECAY_SEQUENCE)
    tx = jadam.scale_by_adam(state_precision=jadam.StochasticRounding(dtype, seed=0))
    single = final_state(tx, DECAY_SEQUENCE)
    assert single.nu.dtype == dtype
    assert float(single.nu[0]) == pytest.approx(reference, rel=0.03)
    many = np.asarray(final_state(tx, DECAY_SEQUENCE, size=4096).nu, np.float64)
    assert many.mean() == pytest.approx(reference, rel=0.01)
    assert np.quantile(np.abs(many / reference - 1), 0.99) < 0.07


def test_bfloat16_adamax_norm_decays():
    tx = jadam.scale_by_adamax(state_precision="bfloat16")
    state = final_state(tx, DECAY_SEQUENCE, size=1024)
    reference = 0.999**2990
    u = np.asarray(state.nu, np.float64)
    assert u.mean() == pytest.approx(reference, rel=0.01)
    assert np.max(np.abs(u / reference - 1)) < 0.07


def test_stochastic_rounding_is_unbiased_in_steady_state():
    grads = np.random.default_rng(0).standard_normal((2000, 1024)).astype(np.float32)
    params = jnp.zeros(1024)

    def nus(tx):
        @jax.jit
        def run(grads):
            def step(state, g):
                return tx.update(g, state, params)[1], None

            return jax.lax.scan(step, tx.init(params), grads)[0]

        state = run(jnp.asarray(grads))
        return np.asarray(state.mu, np.float64), np.asarray(state.nu, np.float64)

    mu32, nu32 = nus(jadam.scale_by_adam())
    mu16, nu16 = nus(jadam.scale_by_adam(state_precision="bfloat16"))
    assert nu16.mean() == pytest.approx(nu32.mean(), rel=0.01)
    assert np.median(np.abs(nu16 / nu32 - 1)) < 0.03
    assert np.median(np.abs(mu16 - mu32)) < 0.01 * np.sqrt(nu32.mean())


def test_round_stochastic_matches_its_definition():
    x = np.float32(1 + 2**-9)  # a quarter of the way from 1 to the next bfloat16, 1 + 2**-7
    bits = _precision.dither_bits((4096,), seed=5, stream=0, count=jnp.int32(7))
    out = np.asarray(_precision.round_stochastic(jnp.full(4096, x), jnp.bfloat16, bits), np.float64)
    assert set(np.unique(out)) == {1.0, 1 + 2**-7}
    assert np.mean(out == 1 + 2**-7) == pytest.approx(0.25, abs=0.01)
    nan = _precision.round_stochastic(jnp.array([jnp.nan]), jnp.bfloat16, bits[:1])
    assert bool(jnp.isnan(nan[0]))


def test_dither_is_reproducible_and_seeded():
    a = _precision.dither_bits((8,), seed=1, stream=0, count=jnp.int32(3))
    b = _precision.dither_bits((8,), seed=1, stream=0, count=jnp.int32(3))
    c = _precision.dither_bits((8,), seed=2, stream=0, count=jnp.int32(3))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_separate_dtypes_store_and_compute_in_float32():
    params = jnp.zeros(4)
    tx = jadam.scale_by_adam(mu_dtype=jnp.bfloat16, nu_dtype=jnp.float32)
    state = tx.init(params)
    assert state.mu.dtype == jnp.bfloat16 and state.nu.dtype == jnp.float32
    updates, state = tx.update(jnp.full(4, 3.0), state)
    assert updates.dtype == jnp.float32
    assert state.mu.dtype == jnp.bfloat16 and state.nu.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(state.nu), 0.009, rtol=1e-6)
    bf16_params = jnp.zeros(4, jnp.bfloat16)
    tx = jadam.adam(1e-3, nu_dtype=jnp.float32, state_precision=None)
    updates, state = tx.update(jnp.ones(4, jnp.bfloat16), tx.init(bf16_params), bf16_params)
    assert updates.dtype == jnp.bfloat16 and state[0].nu.dtype == jnp.float32
    for make in (jadam.scale_by_adamax, jadam.scale_by_amsgrad):
        state = make(nu_dtype=jnp.bfloat16).init(params)
        assert state.nu.dtype == jnp.bfloat16


def test_float32_precision_is_the_plain_float32_path():
    grads = np.random.default_rng(1).standard_normal((20, 8)).astype(np.float32)
    a = final_state(jadam.scale_by_adam(state_precision="float32"), grads[:, 0])
    b = final_state(jadam.scale_by_adam(), grads[:, 0])
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


FP16_SEQUENCES = {
    "tiny": [1e-3, 1e-3, 0.0, 1e-4, 0.0, 0.0],
    "subnormal": [6e-8, 0.0, 1e-6, 0.0],
    "large": [300.0, 6e4, 0.0, -6e4, 1.0, 0.0],
    "zeros": [0.0, 0.0, 0.0],
}


@pytest.mark.parametrize("sequence", sorted(FP16_SEQUENCES))
@pytest.mark.parametrize("name", sorted(FLOAT16))
@pytest.mark.parametrize("eps", [1e-8, 0.0])
def test_float16_never_produces_nan_or_inf(name, sequence, eps):
    """ε = 1e-8 is 0 in float16; float16 v_t underflows below 6e-8 and overflows above 65504."""
    tx = FLOAT16[name](eps)
    params = jnp.zeros(3, jnp.float16)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for g in FP16_SEQUENCES[sequence]:
        grads = jnp.array([g, -g, 0.0], jnp.float16)
        updates, state = update(grads, state, params)
        assert updates.dtype == jnp.float16
        assert bool(jnp.all(jnp.isfinite(updates))), (g, updates)
        for leaf in jax.tree.leaves(state):
            assert bool(jnp.all(jnp.isfinite(leaf))), (g, leaf)
        params = optax.apply_updates(params, updates)
    assert bool(jnp.all(jnp.isfinite(params)))


def test_float16_small_gradient_step_is_bounded():
    """v_1 = 1e-3·g² underflows in float16; the step must stay near lr, not lr·g/ε."""
    tx = jadam.adam(1e-3)
    params = jnp.zeros(1, jnp.float16)
    updates, _ = tx.update(jnp.full(1, 1e-3, jnp.float16), tx.init(params), params)
    assert 0 < -float(updates[0]) <= 1e-3 * 1.01
