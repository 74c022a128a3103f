"""Hostile input, fuzzed: every case is a clear error from jadam or a finite, documented result.

Hypothesis runs derandomized (the same cases every run). A clear error is a ``ValueError`` or
``TypeError`` raised by jadam's own code (not from deep inside JAX) whose message names the
offending argument or tree path.
"""

from __future__ import annotations

import math
import os
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jadam

FUZZ = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# constructor -> {argument: kind}; kinds: "lr" learning rate, "num" number, "dtype", "flag",
# "opt" (number or None).
CONSTRUCTORS = {
    "scale_by_adam": (
        jadam.scale_by_adam,
        {"b1": "num", "b2": "num", "eps": "num", "eps_root": "num", "mu_dtype": "dtype"},
        {"bias_correction": "flag", "nesterov": "flag"},
    ),
    "adam": (
        jadam.adam,
        {"learning_rate": "lr", "b1": "num", "b2": "num", "eps": "num", "mu_dtype": "dtype"},
        {},
    ),
    "adamw": (jadam.adamw, {"learning_rate": "lr", "weight_decay": "num"}, {}),
    "nadam": (jadam.nadam, {"learning_rate": "lr", "b1": "num", "eps_root": "num"}, {}),
    "adamax": (jadam.adamax, {"learning_rate": "lr", "b1": "num", "b2": "num", "eps": "num"}, {}),
    "amsgrad": (
        jadam.amsgrad,
        {"learning_rate": "lr", "b2": "num", "eps": "num", "mu_dtype": "dtype"},
        {"bias_correction_mu": "flag", "bias_correction_nu": "flag"},
    ),
    "sgd": (
        jadam.sgd,
        {"learning_rate": "lr", "momentum": "opt", "accumulator_dtype": "dtype"},
        {"nesterov": "flag"},
    ),
    "adagrad": (
        jadam.adagrad,
        {"learning_rate": "lr", "initial_accumulator_value": "num", "eps": "num"},
        {},
    ),
    "rmsprop": (
        jadam.rmsprop,
        {"learning_rate": "lr", "decay": "num", "eps": "num", "initial_scale": "num"},
        {"centered": "flag", "momentum": "opt", "bias_correction": "flag"},
    ),
    "adadelta": (
        jadam.adadelta,
        {"learning_rate": "opt", "rho": "num", "eps": "num", "weight_decay": "num"},
        {},
    ),
    "inverse_sqrt_schedule": (jadam.inverse_sqrt_schedule, {"init_value": "num"}, {}),
}
# Every positional-or-keyword argument needs a value for the aliases that require one.
REQUIRED = {"learning_rate": 1e-3}
ALIASES_NEEDING_LR = {"adam", "adamw", "nadam", "amsgrad", "sgd", "adagrad", "rmsprop"}

hostile_numbers = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -1e-30, 0.0, 1.0, 1e300, -1e300]),
    st.sampled_from([np.float32("nan"), np.float16(1.0), np.int64(-3), 2, -7, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    st.integers(min_value=-(10**30), max_value=10**30),
)
hostile_objects = st.one_of(
    st.text(max_size=5),
    st.none(),
    st.lists(st.floats(allow_nan=False), max_size=3),
    st.sampled_from([True, False, 1j, 1.0 + 0j, b"0.1", {"lr": 0.1}, (0.9,), np.array([0.1, 0.2])]),
    st.sampled_from([np.array(0.5), np.ones((2, 2))]),
)
hostile_dtypes = st.sampled_from(
    [None, jnp.float32, jnp.bfloat16, "float16", jnp.int32, bool, "banana", 3, np.complex64, object]
)


def _is_clear_error(error: BaseException, *names: str) -> bool:
    """A ValueError/TypeError raised in jadam's own code whose message names one of ``names``."""
    if not isinstance(error, (ValueError, TypeError)):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    in_jadam = f"{os.sep}jadam{os.sep}" in frames[-1].filename
    return in_jadam and any(name in str(error) for name in names)


def _assert_runs_without_nan(tx, moderate: bool):
    """Three updates of a fixed gradient (zeros included): no NaN in the first update or state;
    with a moderate hyperparameter (|x| ≤ 1e6) every update, state and parameter is finite.

    A huge but valid learning rate may overflow float32 to ±inf and diverge: that is arithmetic,
    not a silent NaN, and ``jadam.skip_nonfinite`` catches it.
    """
    params = {"w": jnp.array([[0.5, -1.0], [0.0, 2.0]]), "b": jnp.array([0.0, 0.0])}
    state = tx.init(params)
    for step in range(3):
        grads = {"w": jnp.array([[1.0, -2.0], [0.0, 1e-3]]) * (step + 1), "b": jnp.zeros(2)}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        for leaf in jax.tree.leaves((updates, state, params)):
            if moderate:
                assert bool(jnp.all(jnp.isfinite(leaf))), (updates, state)
            elif step == 0:
                assert not bool(jnp.any(jnp.isnan(leaf))), (updates, state)


def _value_for(kind, data):
    if kind == "dtype":
        return data.draw(hostile_dtypes)
    if kind == "flag":
        return data.draw(st.one_of(st.booleans(), hostile_objects, hostile_numbers))
    return data.draw(st.one_of(hostile_numbers, hostile_objects))


@pytest.mark.parametrize("constructor", list(CONSTRUCTORS))
@FUZZ
@given(data=st.data())
def test_fuzz_hyperparameters(constructor, data):
    """One hostile value per call: clear error naming the argument, or a finite optimizer."""
    fn, numeric, flags = CONSTRUCTORS[constructor]
    arguments = {**numeric, **flags}
    name = data.draw(st.sampled_from(sorted(arguments)), label="argument")
    value = _value_for(arguments[name], data)
    kwargs = {name: value}
    if constructor in ALIASES_NEEDING_LR and name != "learning_rate":
        kwargs.update(REQUIRED)
    try:
        result = fn(**kwargs)
    except (ValueError, TypeError) as error:
        assert _is_clear_error(error, name), f"{constructor}({name}={value!r}): {error!r}"
        return
    if constructor == "inverse_sqrt_schedule":
        values = [result(count) for count in (0, 1, 10**6)]
        assert all(bool(jnp.isfinite(v)) for v in values)
    else:
        moderate = not isinstance(value, (int, float, np.number)) or abs(float(value)) <= 1e6
        _assert_runs_without_nan(result, moderate)


PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
GRAD_TRANSFORMS = {
    "adam": lambda: jadam.adam(1e-2),
    "adamax": lambda: jadam.adamax(1e-2),
    "amsgrad": lambda: jadam.amsgrad(1e-2),
    "rmsprop": lambda: jadam.rmsprop(1e-2, centered=True),
    "adagrad": lambda: jadam.adagrad(1e-2),
    "sgd": lambda: jadam.sgd(1e-2, momentum=0.9),
    "adadelta": lambda: jadam.adadelta(),
}

leaf_shapes = st.sampled_from([(2, 3), (3,), (), (0,), (3, 2), (1, 3), (2, 3, 1)])
leaf_dtypes = st.sampled_from(
    [jnp.float32, jnp.float16, jnp.bfloat16, jnp.int32, jnp.bool_, jnp.uint8, jnp.complex64]
)


@st.composite
def hostile_leaf(draw):
    kind = draw(st.sampled_from(["array", "array", "array", "python", "none", "string", "list"]))
    if kind == "array":
        shape, dtype = draw(leaf_shapes), draw(leaf_dtypes)
        return jnp.ones(shape, dtype) if dtype != jnp.complex64 else jnp.ones(shape, dtype) * 1j
    if kind == "python":
        return draw(st.sampled_from([1, 0.5, True, 1e30]))
    if kind == "none":
        return None
    if kind == "string":
        return draw(st.text(max_size=3))
    return draw(st.lists(st.floats(allow_nan=False, width=32), max_size=3))


@st.composite
def hostile_gradient_tree(draw):
    shape = draw(st.sampled_from(["same_keys", "same_keys", "missing", "extra", "list", "nested"]))
    leaves = {key: draw(hostile_leaf()) for key in ("w", "b")}
    if shape == "missing":
        leaves.pop(draw(st.sampled_from(["w", "b"])))
    elif shape == "extra":
        leaves["c"] = draw(hostile_leaf())
    elif shape == "list":
        return [leaves["w"], leaves["b"]]
    elif shape == "nested":
        leaves = {"w": {"kernel": leaves["w"]}, "b": leaves["b"]}
    return leaves


def _valid(grads) -> bool:
    """The documented contract: same keys, floating arrays of the parameter's shape, any float."""
    if not isinstance(grads, dict) or set(grads) != set(PARAMS):
        return False
    for key, leaf in grads.items():
        if not isinstance(leaf, jax.Array) or leaf.shape != PARAMS[key].shape:
            return False
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            return False
    return True


@pytest.mark.parametrize("transform", list(GRAD_TRANSFORMS))
@FUZZ
@given(grads=hostile_gradient_tree())
def test_fuzz_gradient_trees(transform, grads):
    """Wrong structure, dtypes or shapes: a clear error naming the leaf; else finite updates."""
    tx = GRAD_TRANSFORMS[transform]()
    state = tx.init(PARAMS)
    for update in (tx.update, jax.jit(tx.update)):
        try:
            updates, new_state = update(grads, state, PARAMS)
        except (ValueError, TypeError) as error:
            assert not _valid(grads), f"valid gradient rejected: {error!r}"
            if update is not tx.update and "Error interpreting argument" in str(error):
                # jax.jit itself refuses a non-array leaf (a str) before jadam runs; its message
                # names the leaf ("at path updates['b']"). Eagerly jadam's own check names it.
                assert "at path updates[" in str(error)
                continue
            assert _is_clear_error(error, "gradient"), repr(error)
            assert any(k in str(error) for k in ("['w']", "['b']", "['c']", "[0]", "missing")), str(
                error
            )
            continue
        assert _valid(grads), f"accepted an invalid gradient tree {grads!r}"
        for key, leaf in updates.items():
            assert leaf.shape == PARAMS[key].shape and leaf.dtype == grads[key].dtype
            assert bool(jnp.all(jnp.isfinite(leaf)))
        assert jax.tree.structure(new_state) == jax.tree.structure(state)


@st.composite
def hostile_params(draw):
    kind = draw(st.sampled_from(["empty", "zero_size", "scalar", "mixed", "int", "bool", "none"]))
    float_dtype = draw(st.sampled_from([jnp.float32, jnp.float16, jnp.bfloat16, jnp.complex64]))
    if kind == "empty":
        return draw(st.sampled_from([{}, [], (), {"a": {}}]))
    if kind == "zero_size":
        return {"w": jnp.zeros((0, 3), float_dtype), "b": jnp.zeros((0,), float_dtype)}
    if kind == "scalar":
        return {"s": jnp.array(1.5, float_dtype)}
    if kind == "mixed":
        return {"w": jnp.ones(2, float_dtype), "v": jnp.ones(2, jnp.float32), "n": None}
    if kind == "none":
        return {"w": None}
    dtype = jnp.int32 if kind == "int" else jnp.bool_
    return {"w": jnp.ones(2, float_dtype), "i": jnp.ones(2, dtype)}


@pytest.mark.parametrize("transform", list(GRAD_TRANSFORMS))
@FUZZ
@given(params=hostile_params())
def test_fuzz_parameter_trees(transform, params):
    """Empty, zero-size, scalar, None and mixed-precision trees train; integer/bool ones don't."""
    tx = GRAD_TRANSFORMS[transform]()
    leaves = jax.tree.leaves(params)
    if any(not jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in leaves):
        with pytest.raises(TypeError) as info:
            tx.init(params)
        assert _is_clear_error(info.value, "['i']"), repr(info.value)
        return
    state = jax.jit(tx.init)(params)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    for _ in range(2):
        updates, state = jax.jit(tx.update)(grads, state, params)
        params = optax.apply_updates(params, updates)
    assert jax.tree.structure(updates) == jax.tree.structure(grads)
    pairs = zip(jax.tree.leaves((updates, params)), jax.tree.leaves((grads, grads)), strict=True)
    for leaf, grad in pairs:
        assert leaf.shape == grad.shape and leaf.dtype == grad.dtype
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves((updates, state)))
