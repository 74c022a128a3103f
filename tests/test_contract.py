"""One contract suite over a registry of every jadam transform."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jadam

REGISTRY = {
    "scale_by_adam": jadam.scale_by_adam,
    "scale_by_adam_uncorrected": lambda: jadam.scale_by_adam(bias_correction=False),
    "scale_by_adam_nesterov": lambda: jadam.scale_by_adam(nesterov=True),
    "scale_by_adamax": jadam.scale_by_adamax,
    "scale_by_amsgrad": jadam.scale_by_amsgrad,
    "scale_by_momentum": jadam.scale_by_momentum,
    "scale_by_adagrad": jadam.scale_by_adagrad,
    "scale_by_rms": jadam.scale_by_rms,
    "scale_by_rms_centered": lambda: jadam.scale_by_rms(centered=True),
    "scale_by_rms_corrected": lambda: jadam.scale_by_rms(bias_correction=True),
    "scale_by_adadelta": jadam.scale_by_adadelta,
    "adam": lambda: jadam.adam(1e-3),
    "adam_schedule": lambda: jadam.adam(jadam.inverse_sqrt_schedule(1e-3)),
    "adamw": lambda: jadam.adamw(1e-3, weight_decay=0.1),
    "adamax": jadam.adamax,
    "amsgrad": lambda: jadam.amsgrad(1e-3),
    "nadam": lambda: jadam.nadam(1e-3),
    "sgd": lambda: jadam.sgd(0.1),
    "sgd_nesterov": lambda: jadam.sgd(0.1, 0.9, nesterov=True),
    "adagrad": lambda: jadam.adagrad(0.1),
    "rmsprop": lambda: jadam.rmsprop(1e-3, momentum=0.9),
    "adadelta": jadam.adadelta,
    "scale_by_radam": jadam.scale_by_radam,
    "scale_by_belief": jadam.scale_by_belief,
    "scale_by_yogi": jadam.scale_by_yogi,
    "radam": lambda: jadam.radam(1e-3),
    "adabelief": lambda: jadam.adabelief(1e-3),
    "yogi": lambda: jadam.yogi(1e-2),
    "lamb": lambda: jadam.lamb(1e-3, weight_decay=0.01),
    "nadamw": lambda: jadam.nadamw(1e-3),
    "adamaxw": lambda: jadam.adamaxw(2e-3),
    "scale_by_adopt": jadam.scale_by_adopt,
    "adopt": lambda: jadam.adopt(1e-3),
    "scale_by_ademamix": jadam.scale_by_ademamix,
    "ademamix": lambda: jadam.ademamix(1e-3, weight_decay=0.1),
    "schedule_free_adamw": lambda: jadam.schedule_free_adamw(1e-3, warmup_steps=2),
    "scale_by_factored_rms": lambda: jadam.scale_by_factored_rms(min_dim_size_to_factor=2),
    "adafactor": lambda: jadam.adafactor(1e-2, min_dim_size_to_factor=2, momentum=0.9),
}
NAMES = list(REGISTRY)
FAMILY = [jadam.radam, jadam.adabelief, jadam.yogi, jadam.lamb, jadam.nadamw, jadam.adamaxw]
# Schedule-free keeps a copy z of the parameters' values: init needs values (or eval_shape).
INIT_NEEDS_VALUES = {"schedule_free_adamw"}


def _params():
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25])}


def _grads(step: int):
    return jax.tree.map(lambda p: jnp.sin(p * (step + 1.0)) + 0.1 * step, _params())


def _run(tx, update, steps=3):
    params = _params()
    state = tx.init(params)
    out = []
    for step in range(steps):
        updates, state = update(_grads(step), state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return params, state, out


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_eager(name):
    tx = REGISTRY[name]()
    eager = _run(tx, tx.update)
    jitted = _run(tx, jax.jit(tx.update))
    chex.assert_trees_all_close(eager, jitted, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_no_retrace_and_stable_state(name):
    tx = REGISTRY[name]()
    traces = []

    @jax.jit
    def update(grads, state, params):
        traces.append(1)
        return tx.update(grads, state, params)

    params = _params()
    state0 = tx.init(params)
    _, state1 = update(_grads(0), state0, params)
    _, state2 = update(_grads(1), state1, params)
    assert len(traces) == 1
    chex.assert_trees_all_equal_shapes_and_dtypes(state0, state1, state2)


@pytest.mark.parametrize("name", NAMES)
def test_init_gives_every_state_leaf_its_own_buffer(name):
    """Donating a state whose leaves share a buffer fails ("donate the same buffer twice")."""
    tx = REGISTRY[name]()
    leaves = [x for x in jax.tree.leaves(tx.init(_params())) if isinstance(x, jax.Array)]
    pointers = [x.unsafe_buffer_pointer() for x in leaves]
    assert len(set(pointers)) == len(pointers)


@pytest.mark.parametrize("name", NAMES)
def test_init_on_shape_dtype_structs(name):
    tx = REGISTRY[name]()
    structs = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), _params())
    abstract = jax.eval_shape(tx.init, structs)
    concrete = tx.init(_params())
    chex.assert_trees_all_equal_shapes_and_dtypes(abstract, concrete)
    if name in INIT_NEEDS_VALUES:
        return
    direct = tx.init(structs)  # the zeros are built from .shape and .dtype only
    chex.assert_trees_all_equal_shapes_and_dtypes(direct, concrete)


@pytest.mark.parametrize("name", NAMES)
def test_composes_with_optax_chain_and_multisteps(name):
    tx = optax.chain(optax.clip_by_global_norm(1.0), REGISTRY[name]())
    _run(tx, jax.jit(tx.update))
    multi = optax.MultiSteps(REGISTRY[name](), every_k_schedule=2)
    params, _, updates = _run(multi, jax.jit(multi.update), steps=4)
    chex.assert_trees_all_equal(updates[0], jax.tree.map(jnp.zeros_like, updates[0]))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name", NAMES)
def test_none_leaves_pass_through(name):
    tx = REGISTRY[name]()
    params = {"w": jnp.ones(3), "frozen": None}
    state = tx.init(params)
    updates, _ = jax.jit(tx.update)({"w": jnp.ones(3), "frozen": None}, state, params)
    assert updates["frozen"] is None and updates["w"].shape == (3,)


@pytest.mark.parametrize(
    "factory",
    [jadam.adam, jadam.adamw, jadam.nadam, jadam.amsgrad, jadam.adamax, jadam.rmsprop, *FAMILY],
    ids=lambda f: f.__name__,
)
def test_inject_hyperparams_and_vmap_over_learning_rate(factory):
    tx = optax.inject_hyperparams(factory)(learning_rate=1e-2)
    _run(tx, jax.jit(tx.update))

    def one_step(lr):
        tx = factory(lr)  # lr is a tracer: not validated
        params = _params()
        updates, _ = tx.update(_grads(0), tx.init(params), params)
        return updates

    updates = jax.vmap(one_step)(jnp.array([1e-3, 1e-2]))
    np.testing.assert_allclose(updates["b"][1], 10 * updates["b"][0], rtol=1e-5)


BAD = [
    (jadam.scale_by_adam, {"b1": 1.5}, "b1 must be in [0.0, 1.0), got 1.5"),
    (jadam.scale_by_adam, {"b1": 1.0}, "b1"),
    (jadam.scale_by_adam, {"b2": -0.1}, "b2 must be in [0.0, 1.0), got -0.1"),
    (jadam.scale_by_adam, {"eps": -1e-8}, "eps must be in [0.0, inf], got -1e-08"),
    (jadam.scale_by_adam, {"eps": float("nan")}, "eps"),
    (jadam.scale_by_adam, {"eps_root": -1.0}, "eps_root"),
    (jadam.scale_by_adamax, {"b2": 2.0}, "b2"),
    (jadam.scale_by_amsgrad, {"b1": float("inf")}, "b1"),
    (jadam.scale_by_rms, {"decay": 1.0}, "decay"),
    (jadam.scale_by_adadelta, {"rho": -0.5}, "rho"),
    (jadam.scale_by_adagrad, {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
    (jadam.scale_by_momentum, {"momentum": 1.1}, "momentum"),
    (jadam.adam, {"learning_rate": float("inf")}, "learning_rate"),
    (jadam.adam, {"learning_rate": -1e-3}, "learning_rate must be in [0.0, inf], got -0.001"),
    (jadam.adamw, {"learning_rate": 1e-3, "weight_decay": -1.0}, "weight_decay"),
    (jadam.sgd, {"learning_rate": 0.1, "nesterov": True}, "nesterov=True needs a momentum"),
    (jadam.inverse_sqrt_schedule, {"init_value": -1.0}, "init_value"),
    (jadam.scale_by_radam, {"threshold": 3.0}, "threshold must be in [4.0, inf], got 3.0"),
    (jadam.scale_by_radam, {"eps_form": "inside_root"}, "eps_form must be one of"),
    (jadam.radam, {"learning_rate": 1e-3, "weight_decay": -0.1}, "weight_decay"),
    (jadam.scale_by_belief, {"eps_root": -1e-16}, "eps_root must be in [0.0, inf]"),
    (jadam.scale_by_yogi, {"initial_accumulator_value": -1e-6}, "initial_accumulator_value"),
    (jadam.scale_by_yogi, {"b2": 1.0}, "b2 must be in [0.0, 1.0), got 1.0"),
    (jadam.scale_by_trust_ratio, {"trust_coefficient": -1.0}, "trust_coefficient"),
    (jadam.lamb, {"learning_rate": 1e-3, "b1": 1.0}, "b1"),
    (jadam.nadamw, {"learning_rate": 1e-3, "momentum_decay": -1.0}, "momentum_decay"),
    (jadam.adamaxw, {"learning_rate": 1e-3, "weight_decay": -1.0}, "weight_decay"),
]


@pytest.mark.parametrize(
    "factory,kwargs,message", BAD, ids=[f"{f.__name__}-{sorted(k)}" for f, k, _ in BAD]
)
def test_bad_hyperparameters_rejected_with_named_value(factory, kwargs, message):
    with pytest.raises(ValueError) as error:
        factory(**kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize("value", ["0.9", None, [0.9], True])
def test_wrong_hyperparameter_types_rejected(value):
    with pytest.raises(TypeError, match="b1 must be a real number"):
        jadam.scale_by_adam(b1=value)


def test_non_float_moment_dtype_rejected():
    with pytest.raises(TypeError, match="mu_dtype must be a floating dtype or None, got"):
        jadam.scale_by_adam(mu_dtype=jnp.int32)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "sgd"])  # plain SGD has no state
def test_mismatched_gradient_tree_named(name):
    tx = REGISTRY[name]()
    state = tx.init(_params())
    with pytest.raises(
        ValueError, match=r"does not match .*\['w'\]|missing leaves \[\"\['w'\]\"\]"
    ):
        tx.update({"b": jnp.ones(2), "v": jnp.ones((2, 3))}, state, _params())
    with pytest.raises(
        ValueError, match=r"at \['w'\]: gradient has shape \(3, 2\), expected shape \(2, 3\)"
    ):
        tx.update({"b": jnp.ones(2), "w": jnp.ones((3, 2))}, state, _params())


def test_step_counter_saturates():
    tx = jadam.scale_by_adam()
    state = tx.init(jnp.zeros(2))._replace(count=jnp.array(np.iinfo(np.int32).max, jnp.int32))
    updates, state = tx.update(jnp.ones(2), state)
    assert int(state.count) == np.iinfo(np.int32).max
    assert np.isfinite(updates).all()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize(
    "name",
    ["adam", "adamax", "amsgrad", "nadam", "rmsprop", "adagrad", *(f.__name__ for f in FAMILY)],
)
def test_low_precision_params(name, dtype):
    tx = REGISTRY[name]()
    params = jax.tree.map(lambda p: p.astype(dtype), _params())
    state = tx.init(params)
    for step in range(5):
        grads = jax.tree.map(lambda p: p.astype(dtype), _grads(step))
        grads["b"] = jnp.zeros_like(grads["b"])  # exactly-zero gradients too
        updates, state = jax.jit(tx.update)(grads, state, params)
        chex.assert_trees_all_equal_dtypes(updates, params)
        params = optax.apply_updates(params, updates)
    assert all(np.isfinite(np.asarray(x, np.float32)).all() for x in jax.tree.leaves(params))


def test_mu_dtype_honoured():
    tx = jadam.adam(1e-3, mu_dtype=jnp.bfloat16)
    params = _params()
    state = tx.init(params)
    _, state = tx.update(_grads(0), state, params)
    adam_state = state[0]
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(adam_state.mu))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(adam_state.nu))


@pytest.mark.parametrize("name", ["adam", "amsgrad", "nadam", "rmsprop", "adagrad"])
def test_complex_params_match_optax(name):
    """|g|² = g·conj(g): jadam keeps v real and matches optax's complex updates."""
    theirs = {
        "adam": optax.adam(1e-3),
        "amsgrad": optax.amsgrad(1e-3),
        "nadam": optax.nadam(1e-3),
        "rmsprop": optax.rmsprop(1e-3, momentum=0.9),
        "adagrad": optax.adagrad(0.1),
    }[name]
    ours = REGISTRY[name]()
    params = jnp.array([1 + 2j, -0.5j, 3.0], jnp.complex64)
    grads = [params * (k + 1) - 1j for k in range(3)]
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for g in grads:
        u_ours, s_ours = ours.update(g, s_ours, params)
        u_theirs, s_theirs = theirs.update(g, s_theirs, params)
        np.testing.assert_allclose(u_ours, u_theirs, rtol=2e-5, atol=1e-7)
    nu = optax.tree.get(s_ours, "nu") if name != "adagrad" else s_ours[0].sum_of_squares
    assert not jnp.iscomplexobj(nu)


def test_zero_gradients_never_nan_even_without_eps():
    for tx in [jadam.adam(1e-3, eps=0.0), jadam.adamax(eps=0.0), jadam.amsgrad(1e-3, eps=0.0)]:
        params = jnp.zeros(4)
        state = tx.init(params)
        for _ in range(3):
            updates, state = tx.update(jnp.zeros(4), state, params)
            np.testing.assert_array_equal(updates, 0.0)
