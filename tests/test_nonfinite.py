"""Non-finite gradients never reach parameters or moments; low precision runs stay finite."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import raw_bits

import jadam

INNER = {
    "adam": lambda: jadam.adam(0.1),
    "adamax": lambda: jadam.adamax(0.1),
    "amsgrad": lambda: jadam.amsgrad(0.1),
    "adamw_chain": lambda: optax.chain(optax.clip_by_global_norm(1.0), jadam.adamw(0.1)),
    "radam": lambda: jadam.radam(0.1, threshold=4.0),
    "adabelief": lambda: jadam.adabelief(0.1),
    "yogi": lambda: jadam.yogi(0.1),
    "lamb": lambda: jadam.lamb(0.1, weight_decay=0.1),
    "adopt": lambda: jadam.adopt(0.1),
    "ademamix": lambda: jadam.ademamix(0.1),
    "schedule_free_adamw": lambda: jadam.schedule_free_adamw(0.1),
    "adafactor": lambda: jadam.adafactor(0.1, min_dim_size_to_factor=2),
}


def _params():
    return {"w": jnp.array([[0.5, -1.0], [2.0, 0.0]]), "b": jnp.array([-0.0, 3.0])}


def _grads(step):
    return jax.tree.map(lambda p: jnp.cos(p + step), _params())


@pytest.mark.parametrize(
    ("name", "bad"), [(name, jnp.nan) for name in INNER] + [("adam", jnp.inf), ("adam", -jnp.inf)]
)
def test_bad_step_leaves_params_and_moments_untouched(name, bad):
    tx = jadam.skip_nonfinite(INNER[name]())
    params, state = _params(), tx.init(_params())
    update = jax.jit(tx.update)
    for step in range(3):
        updates, state = update(_grads(step), state, params)
        params = optax.apply_updates(params, updates)
    before = raw_bits((params, state.inner_state))
    bad_grads = _grads(3)
    bad_grads["w"] = bad_grads["w"].at[1, 0].set(bad)
    updates, state = update(bad_grads, state, params)
    params = optax.apply_updates(params, updates)
    assert raw_bits((params, state.inner_state)) == before  # bit for bit, -0.0 included
    assert jadam.skip_counts(state) == (1, 1)
    updates, state = update(bad_grads, state, params)
    assert jadam.skip_counts(state) == (2, 2)


@pytest.mark.parametrize("name", list(INNER))
def test_skipping_equals_training_without_the_bad_steps(name):
    """Good steps interleaved with bad ones give exactly the run made of the good steps only."""
    wrapped, plain = jadam.skip_nonfinite(INNER[name]()), INNER[name]()
    params_a, state_a = _params(), wrapped.init(_params())
    params_b, state_b = _params(), plain.init(_params())
    bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), _grads(0))
    for step in range(6):
        if step in (1, 2, 4):
            updates, state_a = wrapped.update(bad, state_a, params_a)
            params_a = optax.apply_updates(params_a, updates)
        updates, state_a = wrapped.update(_grads(step), state_a, params_a)
        params_a = optax.apply_updates(params_a, updates)
        updates, state_b = plain.update(_grads(step), state_b, params_b)
        params_b = optax.apply_updates(params_b, updates)
    assert raw_bits((params_a, state_a.inner_state)) == raw_bits((params_b, state_b))
    assert jadam.skip_counts(state_a) == (0, 3)


def test_nonfinite_update_from_finite_gradient_is_skipped():
    """A finite gradient whose update overflows (huge learning rate) is skipped too."""
    tx = jadam.skip_nonfinite(optax.sgd(1e38))
    params = jnp.array([1e38], jnp.float32)
    updates, state = tx.update(jnp.array([10.0]), tx.init(params), params)
    assert jadam.skip_counts(state) == (1, 1)
    assert optax.apply_updates(params, updates)[0] == np.float32(1e38)


def test_counters_reset_and_saturate_and_are_found_in_nested_states():
    tx = optax.chain(optax.clip_by_global_norm(1.0), jadam.skip_nonfinite(jadam.adam(0.1)))
    state = tx.init(jnp.zeros(2))
    for g in ([jnp.nan, 0.0], [1.0, 2.0], [jnp.inf, 0.0], [jnp.inf, 0.0]):
        _, state = tx.update(jnp.array(g), state, jnp.zeros(2))
    assert jadam.skip_counts(state) == (2, 3)
    skip = jadam.skip_nonfinite(jadam.adam(0.1))
    full = skip.init(jnp.zeros(1))._replace(
        consecutive_skips=jnp.array(np.iinfo(np.int32).max, jnp.int32),
        total_skips=jnp.array(np.iinfo(np.int32).max, jnp.int32),
    )
    _, full = skip.update(jnp.array([jnp.nan]), full)
    assert jadam.skip_counts(full) == (np.iinfo(np.int32).max,) * 2


def test_outermost_wrapper_also_protects_multisteps_accumulators():
    """MultiSteps' gradient accumulator would keep a NaN forever; wrapped, it is rolled back."""
    tx = jadam.skip_nonfinite(optax.MultiSteps(jadam.adam(0.1), every_k_schedule=2))
    params, state = jnp.zeros(2), tx.init(jnp.zeros(2))
    for g in ([1.0, 2.0], [jnp.nan, 0.0], [1.0, 2.0], [3.0, 1.0], [3.0, 1.0]):
        updates, state = tx.update(jnp.array(g), state, params)
        params = optax.apply_updates(params, updates)
    chex.assert_tree_all_finite((params, state))
    assert jadam.skip_counts(state) == (0, 1)
    assert bool(jnp.all(params != 0))


def test_skip_counts_without_wrapper_is_a_clear_error():
    with pytest.raises(ValueError, match="no SkipNonFiniteState; wrap the optimizer"):
        jadam.skip_counts(jadam.adam(0.1).init(jnp.zeros(1)))


def test_extra_args_pass_through():
    tx = jadam.skip_nonfinite(optax.chain(jadam.scale_by_adam(), optax.scale_by_learning_rate(1)))
    updates, _ = tx.update(jnp.ones(1), tx.init(jnp.zeros(1)), jnp.zeros(1), value=jnp.array(1.0))
    chex.assert_trees_all_close(updates, jnp.array([-1.0]), atol=1e-6)


def test_optax_apply_if_finite_applies_nan_after_max_errors_but_jadam_never_does():
    """Documented difference: optax.apply_if_finite eventually applies a non-finite update."""
    nan = jnp.array([jnp.nan])
    optax_tx = optax.apply_if_finite(jadam.adam(0.1), max_consecutive_errors=2)
    jadam_tx = jadam.skip_nonfinite(jadam.adam(0.1))
    optax_state, jadam_state = optax_tx.init(jnp.zeros(1)), jadam_tx.init(jnp.zeros(1))
    for _ in range(3):
        optax_updates, optax_state = optax_tx.update(nan, optax_state)
        jadam_updates, jadam_state = jadam_tx.update(nan, jadam_state)
    assert bool(jnp.isnan(optax_updates[0]))
    assert bool(jnp.isfinite(jadam_updates[0]))


LOW_PRECISION = {
    "adam": lambda: jadam.adam(1e-3),
    "adam_eps0": lambda: jadam.adam(1e-3, eps=0.0),
    "nadam": lambda: jadam.nadam(1e-3),
    "adamw": lambda: jadam.adamw(1e-3, weight_decay=1e-2),
    "adamax": lambda: jadam.adamax(2e-3),
    "amsgrad": lambda: jadam.amsgrad(1e-3),
    "rmsprop": lambda: jadam.rmsprop(1e-3),
    "adagrad": lambda: jadam.adagrad(1e-3),
    "radam": lambda: jadam.radam(1e-3),
    "adabelief": lambda: jadam.adabelief(1e-3),
    "yogi": lambda: jadam.yogi(1e-3, initial_accumulator_value=0.0),  # m_0 = 0: 0 stays 0
}


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", list(LOW_PRECISION))
def test_low_precision_10000_steps_stay_finite(name, dtype):
    """Zero, subnormal, tiny, ordinary and dtype-max gradients, in turn +g, −g, 0, for 10k steps."""
    info = jnp.finfo(dtype)
    values = [0.0, float(info.smallest_subnormal), float(info.tiny), 1e-4, 1.0, 300.0]
    # NAdam computes (1 − β1)·g/(1 − β1^t) as g/(1 − β1^t) first: in its float32 arithmetic
    # bfloat16 gradients above ~3e37 overflow (then skip_nonfinite skips the step).
    huge = 1e37 if (name == "nadam" and dtype == jnp.bfloat16) else float(info.max)
    values += [huge, -huge]
    g = jnp.array(values, dtype)
    tx = LOW_PRECISION[name]()
    params = jnp.ones(g.shape, dtype)

    @jax.jit
    def run(params):
        def step(carry, i):
            params, state = carry
            grads = jnp.where(i % 3 == 0, g, jnp.where(i % 3 == 1, -g, jnp.zeros_like(g)))
            updates, state = tx.update(grads, state, params)
            finite = jnp.all(jnp.isfinite(updates))
            return (optax.apply_updates(params, updates), state), finite

        return jax.lax.scan(step, (params, tx.init(params)), jnp.arange(10_000))

    (params, state), finite_updates = run(params)
    assert bool(jnp.all(finite_updates))
    chex.assert_tree_all_finite((params, state))
    chex.assert_trees_all_equal_dtypes(params, jnp.ones(g.shape, dtype))
    if name != "adamw":  # weight decay moves every coordinate
        assert float(params[0]) == 1.0  # a coordinate whose gradient is always 0 never moves


def test_float32_second_moment_overflows_like_optax_and_skip_nonfinite_skips_it():
    """A finite |g| > 1.8e19 overflows g² in float32: v_t = inf in jadam, optax and torch alike
    (a float32 moment is not saturated, see saturating_cast); skip_nonfinite skips that step."""
    grads = jnp.array([1e20, 1.0], jnp.float32)
    params = jnp.zeros(2, jnp.float32)
    _, plain = jadam.adam(0.1).update(grads, jadam.adam(0.1).init(params))
    _, reference = optax.adam(0.1).update(grads, optax.adam(0.1).init(params))
    assert np.isinf(np.asarray(plain[0].nu)[0]) and np.isinf(np.asarray(reference[0].nu)[0])
    tx = jadam.skip_nonfinite(jadam.adam(0.1))
    state = tx.init(params)
    updates, new_state = tx.update(grads, state)
    assert jadam.skip_counts(new_state) == (1, 1)
    chex.assert_trees_all_equal(new_state.inner_state, state.inner_state)
    chex.assert_trees_all_equal(updates, -jnp.zeros(2))


def test_bfloat16_second_moment_saturates_instead_of_overflowing():
    """Stored narrower than its float32 arithmetic, v_t saturates at the storage maximum."""
    grads = jnp.array([1e20, 1.0], jnp.float32)
    tx = jadam.adam(0.1, nu_dtype=jnp.bfloat16)
    _, state = tx.update(grads, tx.init(jnp.zeros(2, jnp.float32)))
    nu = np.asarray(state[0].nu.astype(jnp.float32))
    assert nu[0] == float(jnp.finfo(jnp.bfloat16).max) and np.isfinite(nu).all()
