"""jadam is a drop-in for optax: the same arguments, the same state layouts, optax checkpoints.

Every name jadam shares with optax takes optax's arguments (positionally where optax's are
positional, with optax's defaults); jadam's own options are keyword-only after them. States have
optax's layout, so an orbax checkpoint of either restores into the other and training goes on
with the same numbers. The deliberate differences are listed (``ALLOWED_SIGNATURE_DIFFERENCES``)
and each has a test here; docs/compatibility.md describes them.
"""

from __future__ import annotations

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import save_and_restore_orbax

import jadam

# Float32 runs agree to rounding; a bfloat16 moment (mu_dtype, accumulator_dtype) may round a
# near-tie the other way, one bfloat16 ulp (0.4 %) that a few steps carry into the parameters.
BFLOAT16_RTOL = 5e-2
SHARED = sorted(name for name in jadam.__all__ if hasattr(optax, name))
SHARED_FUNCTIONS = [name for name in SHARED if not isinstance(getattr(jadam, name), type)]
SHARED_CLASSES = [name for name in SHARED if isinstance(getattr(jadam, name), type)]

# (name, argument) → why jadam's argument deliberately differs from optax's. Each entry must still
# differ (test_allowed_differences_are_real), so the list cannot outlive the difference.
ALLOWED_SIGNATURE_DIFFERENCES = {
    # optax requires a learning rate; jadam defaults to the paper's α = 0.002 (Algorithm 2), so
    # every call that optax accepts means the same in jadam.
    ("adamax", "learning_rate"): "default 0.002 where optax has none",
    # jadam's own β̂2_t = 1 − (t+1)^(−c) (optax's is private): the same function of the step.
    ("scale_by_factored_rms", "decay_rate_fn"): "jadam.decay_rate_pow, the same schedule",
}

# jadam state class → optax's class with the same fields (the names differ for these).
_transform = optax._src.transform  # the two *WithCount classes are not exported by optax
STATE_COUNTERPARTS = {
    jadam.ScaleByAdamState: optax.ScaleByAdamState,
    jadam.ScaleByAdamaxState: optax.ScaleByAdamState,  # optax's adamax keeps Adam's state
    jadam.ScaleByAmsgradState: optax.ScaleByAmsgradState,
    jadam.ScaleByRmsState: optax.ScaleByRmsState,
    jadam.ScaleByRmsWithCountState: _transform.ScaleByRmsWithCountState,
    jadam.ScaleByRStdDevState: optax.ScaleByRStdDevState,
    jadam.ScaleByRStdDevWithCountState: _transform.ScaleByRStdDevWithCountState,
    jadam.ScaleByAdadeltaState: optax.ScaleByAdaDeltaState,
    jadam.ScaleByAdagradState: optax.ScaleByRssState,
    jadam.ScaleByMomentumState: optax.TraceState,
}


def _positional(parameters):
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters.values() if p.kind in kinds]


def test_shared_names_are_covered():
    assert {"adam", "adadelta", "rmsprop", "scale_by_rms", "sgd"} <= set(SHARED_FUNCTIONS)
    assert {"ScaleByAdamState", "ScaleByRmsState"} <= set(SHARED_CLASSES)


@pytest.mark.parametrize("name", SHARED_FUNCTIONS)
def test_signature_matches_optax(name):
    """optax's arguments, in optax's positions, kinds and defaults; jadam's extras keyword-only."""
    ours = inspect.signature(getattr(jadam, name)).parameters
    theirs = inspect.signature(getattr(optax, name)).parameters
    assert _positional(ours) == _positional(theirs)
    for argument, their in theirs.items():
        assert argument in ours, f"jadam.{name} lacks optax's {argument!r}"
        our = ours[argument]
        assert our.kind == their.kind, (name, argument, our.kind, their.kind)
        if (name, argument) not in ALLOWED_SIGNATURE_DIFFERENCES:
            assert our.default == their.default or (
                our.default is their.default  # inspect.Parameter.empty
            ), (name, argument, our.default, their.default)
    for argument in set(ours) - set(theirs):
        assert ours[argument].kind is inspect.Parameter.KEYWORD_ONLY, (name, argument)


@pytest.mark.parametrize("name, argument", sorted(ALLOWED_SIGNATURE_DIFFERENCES))
def test_allowed_differences_are_real(name, argument):
    ours = inspect.signature(getattr(jadam, name)).parameters[argument]
    theirs = inspect.signature(getattr(optax, name)).parameters[argument]
    assert ours.default != theirs.default


@pytest.mark.parametrize("name", SHARED_CLASSES)
def test_shared_state_classes_have_optax_fields(name):
    assert getattr(jadam, name)._fields == getattr(optax, name)._fields


@pytest.mark.parametrize("ours", list(STATE_COUNTERPARTS), ids=lambda c: c.__name__)
def test_state_classes_have_optax_fields(ours):
    assert ours._fields == STATE_COUNTERPARTS[ours]._fields


# ---------------------------------------------------------------- the same numbers, step by step


def _params():
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25])}


def _grads(params, step, scale=1.0):
    return jax.tree.map(lambda p: scale * (jnp.sin(3.0 * p + step) + 0.1 * p), params)


def _train(tx, params, state, steps, start=0, scale=1.0):
    update = jax.jit(tx.update)
    for step in range(start, start + steps):
        updates, state = update(_grads(params, step, scale), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def _same_run(ours, theirs, steps=4, rtol=1e-5):
    params = _params()
    ours_params, _ = _train(ours, params, ours.init(params), steps)
    theirs_params, _ = _train(theirs, params, theirs.init(params), steps)
    chex.assert_trees_all_close(ours_params, theirs_params, rtol=rtol, atol=1e-7)


def test_rmsprop_takes_optax_positional_arguments():
    # centered with bias correction divides 0 (the step-1 variance) by ε; optax and jadam round
    # it differently, so the positional centered call is checked without bias correction.
    arguments = (1e-2, 0.9, 1e-8, 0.0, False, True, 0.9, True, False)
    _same_run(jadam.rmsprop(*arguments), optax.rmsprop(*arguments))


def test_scale_by_rms_takes_optax_positional_arguments():
    _same_run(
        jadam.scale_by_rms(0.9, 1e-8, 0.1, False, True),
        optax.scale_by_rms(0.9, 1e-8, 0.1, False, True),
    )


def test_scale_by_adam_takes_mu_dtype_positionally():
    ours, theirs = (
        jadam.scale_by_adam(0.9, 0.999, 1e-8, 0.0, jnp.bfloat16),
        optax.scale_by_adam(0.9, 0.999, 1e-8, 0.0, jnp.bfloat16),
    )
    assert ours.init(_params()).mu["w"].dtype == jnp.bfloat16
    _same_run(ours, theirs, rtol=BFLOAT16_RTOL)


def test_adadelta_without_learning_rate_is_optax_un_negated_update():
    """optax.adadelta() applies no learning rate: +Δ_t, so apply_updates ascends. jadam too."""
    _same_run(jadam.adadelta(), optax.adadelta())
    params = _params()
    up, _ = jadam.adadelta().update(_grads(params, 0), jadam.adadelta().init(params), params)
    down, _ = jadam.adadelta(1.0).update(_grads(params, 0), jadam.adadelta(1.0).init(params))
    chex.assert_trees_all_close(up, jax.tree.map(jnp.negative, down))


def test_adadelta_weight_decay_and_mask_match_optax():
    mask = {"w": True, "b": False}
    _same_run(jadam.adadelta(1.0, 0.9, 1e-6, 0.1, mask), optax.adadelta(1.0, 0.9, 1e-6, 0.1, mask))
    schedule = optax.linear_schedule(0.1, 0.0, 3)
    _same_run(
        jadam.adadelta(1.0, weight_decay=schedule), optax.adadelta(1.0, weight_decay=schedule)
    )


def test_adadelta_needs_params_only_with_a_weight_decay():
    """Documented difference: optax's adadelta always needs params in update; jadam's only
    when there is a weight decay to apply."""
    grads = _params()
    jadam.adadelta(1.0).update(grads, jadam.adadelta(1.0).init(grads))  # no params: fine
    with pytest.raises(ValueError, match="params"):
        optax.adadelta(1.0).update(grads, optax.adadelta(1.0).init(grads))
    with pytest.raises(ValueError, match="params"):
        tx = jadam.adadelta(1.0, weight_decay=0.1)
        tx.update(grads, tx.init(grads))


def test_sgd_accumulator_dtype_matches_optax():
    ours, theirs = jadam.sgd(0.1, 0.9, True, jnp.bfloat16), optax.sgd(0.1, 0.9, True, jnp.bfloat16)
    assert ours.init(_params())[0].trace["w"].dtype == jnp.bfloat16
    _same_run(ours, theirs, rtol=BFLOAT16_RTOL)


def test_sgd_refuses_momentum_options_without_momentum():
    """Documented difference: optax ignores nesterov/accumulator_dtype when momentum is None."""
    optax.sgd(0.1, accumulator_dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match="accumulator_dtype"):
        jadam.sgd(0.1, accumulator_dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match="nesterov"):
        jadam.rmsprop(0.1, nesterov=True)


@pytest.mark.parametrize("correct_mu", [True, False])
@pytest.mark.parametrize("correct_nu", [True, False])
def test_amsgrad_bias_correction_switches_match_optax(correct_mu, correct_nu):
    arguments = (1e-2, 0.9, 0.999, 1e-8, 0.0, None, correct_mu, correct_nu)
    _same_run(jadam.amsgrad(*arguments), optax.amsgrad(*arguments))


def test_amsgrad_switches_conflicting_with_variant_are_refused():
    with pytest.raises(ValueError, match="bias_correction_mu"):
        jadam.amsgrad(1e-2, bias_correction_nu=False, variant="max_of_raw")
    both_off = jadam.amsgrad(1e-2, bias_correction_mu=False, bias_correction_nu=False)
    _same_run(both_off, jadam.amsgrad(1e-2, variant="uncorrected"), rtol=0)


def test_nadam_nesterov_false_is_adam_as_in_optax():
    _same_run(jadam.nadam(1e-2, nesterov=False), optax.nadam(1e-2, nesterov=False))
    _same_run(jadam.nadam(1e-2, nesterov=False), optax.adam(1e-2))


def test_integer_parameters_are_refused_where_optax_accepts_them():
    """Documented difference: optax initialises integer moments for integer parameters and then
    truncates them (a gradient of 0.5 leaves ν = 0); jadam refuses them at init."""
    params = jnp.arange(3)
    state = optax.adam(1e-3).init(params)
    _, state = optax.adam(1e-3).update(jnp.full(3, 0.5), state)
    assert state[0].nu.dtype == jnp.int32 and not state[0].nu.any()
    with pytest.raises(TypeError, match="int32"):
        jadam.adam(1e-3).init(params)


# ------------------------------------------------------------ checkpoints restore across libraries

SAME_LAYOUT = {
    "adam": lambda lib: lib.adam(1e-2),
    "adam_mu_dtype": lambda lib: lib.adam(1e-2, mu_dtype=jnp.bfloat16),
    "adamw": lambda lib: lib.adamw(1e-2, weight_decay=0.1),
    "nadam": lambda lib: lib.nadam(1e-2),
    "amsgrad": lambda lib: lib.amsgrad(1e-2),
    "sgd": lambda lib: lib.sgd(0.1),
    "sgd_momentum": lambda lib: lib.sgd(0.1, 0.9),
    "sgd_nesterov": lambda lib: lib.sgd(0.1, 0.9, nesterov=True),
    "adagrad": lambda lib: lib.adagrad(0.1),
    "rmsprop": lambda lib: lib.rmsprop(1e-2),
    "rmsprop_eps_outside": lambda lib: lib.rmsprop(1e-2, eps_in_sqrt=False),
    "rmsprop_centered": lambda lib: lib.rmsprop(1e-2, centered=True),
    "rmsprop_bias_correction": lambda lib: lib.rmsprop(1e-2, bias_correction=True),
    "rmsprop_centered_bias_correction": lambda lib: lib.rmsprop(
        1e-2, centered=True, bias_correction=True
    ),
    "rmsprop_momentum": lambda lib: lib.rmsprop(1e-2, momentum=0.9, nesterov=True),
    "rmsprop_centered_momentum": lambda lib: lib.rmsprop(1e-2, centered=True, momentum=0.9),
    "adadelta": lambda lib: lib.adadelta(1.0),
    "adadelta_weight_decay": lambda lib: lib.adadelta(
        1.0, weight_decay=0.1, weight_decay_mask={"w": True, "b": False}
    ),
}


def _paths(tree):
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


@pytest.mark.parametrize("name", SAME_LAYOUT)
def test_state_layout_is_optax(name):
    params = _params()
    ours, theirs = SAME_LAYOUT[name](jadam).init(params), SAME_LAYOUT[name](optax).init(params)
    assert _paths(ours) == _paths(theirs)
    chex.assert_trees_all_equal_shapes_and_dtypes(jax.tree.leaves(ours), jax.tree.leaves(theirs))


@pytest.mark.parametrize("direction", ["optax_to_jadam", "jadam_to_optax"])
@pytest.mark.parametrize("name", SAME_LAYOUT)
def test_checkpoint_restores_across_libraries(name, direction, tmp_path):
    """Three steps with one library, an orbax checkpoint, three more steps with the other: the
    same numbers as three more steps with the first."""
    libraries = (optax, jadam) if direction == "optax_to_jadam" else (jadam, optax)
    writer, reader = (SAME_LAYOUT[name](library) for library in libraries)
    params, state = _train(writer, _params(), writer.init(_params()), 3)
    like = jax.eval_shape(reader.init, params)
    restored = save_and_restore_orbax(tmp_path / "state", state, like)
    assert jax.tree.structure(restored) == jax.tree.structure(like)  # the reader's classes
    chex.assert_trees_all_equal(jax.tree.leaves(restored), jax.tree.leaves(state))
    expected, _ = _train(writer, params, state, 3, start=3)
    continued, _ = _train(reader, params, restored, 3, start=3)
    rtol = BFLOAT16_RTOL if "mu_dtype" in name else 1e-5
    chex.assert_trees_all_close(continued, expected, rtol=rtol, atol=1e-7)


# ---------------------------------------------------------------- conversions where layouts differ


@pytest.mark.parametrize("name", ["adam", "rmsprop_centered_momentum", "sgd_nesterov"])
def test_in_memory_states_convert_both_ways(name):
    params = _params()
    ours_tx, theirs_tx = SAME_LAYOUT[name](jadam), SAME_LAYOUT[name](optax)
    _, theirs = _train(theirs_tx, params, theirs_tx.init(params), 2)
    ours = jadam.from_optax_state(theirs, ours_tx.init(params))
    assert jax.tree.structure(ours) == jax.tree.structure(ours_tx.init(params))
    back = jadam.to_optax_state(ours, theirs_tx.init(params))
    assert jax.tree.structure(back) == jax.tree.structure(theirs)
    chex.assert_trees_all_equal(back, theirs)


@pytest.mark.parametrize("direction", ["optax_to_jadam", "jadam_to_optax"])
def test_adamax_checkpoint_with_eps_conversion(direction, tmp_path):
    """AdaMax's u_t: optax keeps max(β2·u, |g| + ε), jadam the paper's max(β2·u, |g|) and adds
    ε to the divisor. The checkpoint restores as is; converting with ``adamax_eps`` makes the
    continued runs agree ~1/(1−β2) times more closely. Small gradients (1e-6) make ε visible."""
    eps, scale = 1e-8, 1e-6
    params = _params()
    libraries = (optax, jadam) if direction == "optax_to_jadam" else (jadam, optax)
    writer, reader = (library.adamax(1e-3, eps=eps) for library in libraries)
    params, state = _train(writer, params, writer.init(params), 3, scale=scale)
    restored = save_and_restore_orbax(
        tmp_path / "state", state, jax.eval_shape(reader.init, params)
    )
    if direction == "optax_to_jadam":
        converted = jadam.from_optax_state(restored, restored, adamax_eps=eps)
    else:  # restore in jadam's own layout, then convert
        as_written = save_and_restore_orbax(
            tmp_path / "own", state, jax.eval_shape(writer.init, params)
        )
        converted = jadam.to_optax_state(as_written, restored, adamax_eps=eps)
    expected, _ = _train(writer, params, state, 3, start=3, scale=scale)

    def error(start_state):
        continued, _ = _train(reader, params, start_state, 3, start=3, scale=scale)
        moved = jax.tree.map(jnp.subtract, expected, params)
        gap = jax.tree.map(
            lambda c, e, m: jnp.max(jnp.abs(c - e) / jnp.abs(m)), continued, expected, moved
        )
        return float(max(jax.tree.leaves(gap)))

    assert error(converted) < 2e-4 < error(restored) / 10


def test_from_optax_state_fills_skip_nonfinite_and_low_precision_states():
    params = _params()
    theirs_tx = optax.adam(1e-2)
    _, theirs = _train(theirs_tx, params, theirs_tx.init(params), 2)
    wrapped = jadam.skip_nonfinite(jadam.adam(1e-2, state_precision="bfloat16"))
    ours = jadam.from_optax_state(theirs, wrapped.init(params))
    assert int(ours.total_skips) == 0
    assert ours.inner_state[0].mu["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(ours.inner_state[0].nu["w"], theirs[0].nu["w"], rtol=1e-2)
    back = jadam.to_optax_state(ours, theirs_tx.init(params))
    assert jax.tree.structure(back) == jax.tree.structure(theirs)


def test_states_without_an_optax_form_are_refused_clearly():
    params = _params()
    large = {"w": jnp.zeros(5000)}  # 8-bit storage quantizes leaves of ≥ 4096 values
    with pytest.raises(ValueError, match="8bit"):
        jadam.from_optax_state(
            optax.adam(1e-2).init(large), jadam.adam(1e-2, state_precision="8bit").init(large)
        )
    theirs = optax.adam(1e-2).init(params)
    with pytest.raises(ValueError, match="different fields"):
        jadam.from_optax_state(theirs, jadam.rmsprop(1e-2).init(params))


def test_learning_rate_none_only_where_optax_defaults_to_it():
    """Documented difference: optax's aliases turn learning_rate=None into "no learning rate"
    even where their signature requires one; jadam accepts None only where optax's default is
    None (adadelta) and refuses it elsewhere, naming the argument."""
    optax.adam(None)
    with pytest.raises(TypeError, match="learning_rate"):
        jadam.adam(None)
    jadam.adadelta(None)


def test_centered_rms_variance_rounding_never_gives_nan():
    """Documented difference: jadam takes max(v̂ − |m̂|², 0); optax's root of a rounding error's
    negative variance is NaN. At step 1 with bias correction v̂ − |m̂|² is 0 up to rounding."""
    tx = jadam.scale_by_rms(0.9, 1e-8, 0.0, False, True, centered=True)
    grads = jnp.sin(jnp.arange(64.0))
    updates, _ = tx.update(grads, tx.init(grads))
    assert bool(jnp.all(jnp.isfinite(updates)))


def test_fused_adam_continues_an_optax_state():
    """A fused optimizer takes the unfused layout (what an optax checkpoint restores into)."""
    params = _params()
    theirs_tx = optax.adam(1e-2)
    params, theirs = _train(theirs_tx, params, theirs_tx.init(params), 2)
    ours = jadam.from_optax_state(theirs, jadam.adam(1e-2).init(params))
    expected, _ = _train(theirs_tx, params, theirs, 2, start=2)
    continued, _ = _train(jadam.adam(1e-2, fused=True), params, ours, 2, start=2)
    chex.assert_trees_all_close(continued, expected, rtol=1e-5, atol=1e-7)


def test_complex_second_moments_convert_to_jadam_real_ones():
    """optax keeps |g|² of a complex parameter in a complex array (imaginary part 0); jadam in
    a real one. from_optax_state takes the real part, to_optax_state gives it back."""
    params = jnp.ones(2, jnp.complex64)
    theirs_tx = optax.adam(0.1)
    _, theirs = theirs_tx.update(params * (1 + 1j), theirs_tx.init(params))
    ours = jadam.from_optax_state(theirs, jadam.adam(0.1).init(params))
    assert ours[0].nu.dtype == jnp.float32 and theirs[0].nu.dtype == jnp.complex64
    chex.assert_trees_all_close(jadam.to_optax_state(ours, theirs), theirs)
