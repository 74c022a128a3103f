"""One contract suite over the registry of every jadam transform and its variants (registry.py)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import run_steps, tiny_grads, tiny_params
from registry import PRESETS, SUCCESSORS, TRANSFORMS, VARIANTS

import jadam
from jadam import _quantization

NAMES = list(TRANSFORMS)
VARIANT_NAMES = list(VARIANTS)
# MultiSteps compiles the inner update in both branches of a cond: it runs over the presets and
# one variant of each kind (fused, fused 8-bit, each precision, skip_nonfinite, chain) only.
MULTISTEPS_NAMES = [
    *PRESETS,
    "fused-adam",
    "fused-adam-8bit",
    "adam-8bit",
    "adamw-bfloat16",
    "adamax-float16",
    "skip_nonfinite-adam",
    "chain-clip-fused-adamw-8bit",
]
# Schedule-free keeps a copy z of the parameters' values: init needs values (or eval_shape).
INIT_NEEDS_VALUES = {"schedule_free_adamw"}


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_eager(name):
    tx = TRANSFORMS[name]()
    eager = run_steps(tx, tx.update)
    jitted = run_steps(tx, jax.jit(tx.update))
    chex.assert_trees_all_close(eager, jitted, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_no_retrace_and_stable_state(name):
    tx = TRANSFORMS[name]()
    traces = []

    @jax.jit
    def update(grads, state, params):
        traces.append(1)
        return tx.update(grads, state, params)

    params = tiny_params()
    state0 = tx.init(params)
    _, state1 = update(tiny_grads(0), state0, params)
    _, state2 = update(tiny_grads(1), state1, params)
    assert len(traces) == 1
    chex.assert_trees_all_equal_shapes_and_dtypes(state0, state1, state2)


@pytest.mark.parametrize(
    "name",
    NAMES + VARIANT_NAMES,
)
def test_init_gives_every_state_leaf_its_own_buffer(name):
    """Donating a state whose leaves share a buffer fails ("donate the same buffer twice")."""
    tx = (TRANSFORMS | VARIANTS)[name]()
    leaves = [x for x in jax.tree.leaves(tx.init(tiny_params())) if isinstance(x, jax.Array)]
    pointers = [x.unsafe_buffer_pointer() for x in leaves]
    assert len(set(pointers)) == len(pointers)


@pytest.mark.parametrize("name", NAMES)
def test_init_on_shape_dtype_structs(name):
    tx = TRANSFORMS[name]()
    structs = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), tiny_params())
    abstract = jax.eval_shape(tx.init, structs)
    concrete = tx.init(tiny_params())
    chex.assert_trees_all_equal_shapes_and_dtypes(abstract, concrete)
    if name in INIT_NEEDS_VALUES:
        return
    direct = tx.init(structs)  # the zeros are built from .shape and .dtype only
    chex.assert_trees_all_equal_shapes_and_dtypes(direct, concrete)


@pytest.mark.parametrize("name", NAMES)
def test_composes_with_optax_chain_and_multisteps(name):
    tx = optax.chain(optax.clip_by_global_norm(1.0), TRANSFORMS[name]())
    run_steps(tx, jax.jit(tx.update))
    multi = optax.MultiSteps(TRANSFORMS[name](), every_k_schedule=2)
    params, _, updates = run_steps(multi, jax.jit(multi.update), steps=4)
    chex.assert_trees_all_equal(updates[0], jax.tree.map(jnp.zeros_like, updates[0]))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name", NAMES)
def test_none_leaves_pass_through(name):
    tx = TRANSFORMS[name]()
    params = {"w": jnp.ones(3), "frozen": None}
    state = tx.init(params)
    updates, _ = jax.jit(tx.update)({"w": jnp.ones(3), "frozen": None}, state, params)
    assert updates["frozen"] is None and updates["w"].shape == (3,)


@pytest.mark.parametrize(
    "factory",
    [jadam.adam, jadam.adamw, jadam.nadam, jadam.amsgrad, jadam.adamax, jadam.rmsprop, *SUCCESSORS],
    ids=lambda f: f.__name__,
)
def test_inject_hyperparams_and_vmap_over_learning_rate(factory):
    tx = optax.inject_hyperparams(factory)(learning_rate=1e-2)
    run_steps(tx, jax.jit(tx.update))

    def one_step(lr):
        tx = factory(lr)  # lr is a tracer: not validated
        params = tiny_params()
        updates, _ = tx.update(tiny_grads(0), tx.init(params), params)
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
    tx = TRANSFORMS[name]()
    state = tx.init(tiny_params())
    with pytest.raises(
        ValueError, match=r"does not match .*\['w'\]|missing leaves \[\"\['w'\]\"\]"
    ):
        tx.update({"b": jnp.ones(2), "v": jnp.ones((2, 3))}, state, tiny_params())
    with pytest.raises(
        ValueError, match=r"at \['w'\]: gradient has shape \(3, 2\), expected shape \(2, 3\)"
    ):
        tx.update({"b": jnp.ones(2), "w": jnp.ones((3, 2))}, state, tiny_params())


def test_step_counter_saturates():
    tx = jadam.scale_by_adam()
    state = tx.init(jnp.zeros(2))._replace(count=jnp.array(np.iinfo(np.int32).max, jnp.int32))
    updates, state = tx.update(jnp.ones(2), state)
    assert int(state.count) == np.iinfo(np.int32).max
    assert np.isfinite(updates).all()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize(
    "name",
    ["adam", "adamax", "amsgrad", "nadam", "rmsprop", "adagrad", *(f.__name__ for f in SUCCESSORS)],
)
def test_low_precision_params(name, dtype):
    tx = TRANSFORMS[name]()
    params = jax.tree.map(lambda p: p.astype(dtype), tiny_params())
    state = tx.init(params)
    for step in range(5):
        grads = jax.tree.map(lambda p: p.astype(dtype), tiny_grads(step))
        grads["b"] = jnp.zeros_like(grads["b"])  # exactly-zero gradients too
        updates, state = jax.jit(tx.update)(grads, state, params)
        chex.assert_trees_all_equal_dtypes(updates, params)
        params = optax.apply_updates(params, updates)
    assert all(np.isfinite(np.asarray(x, np.float32)).all() for x in jax.tree.leaves(params))


def test_mu_dtype_honoured():
    tx = jadam.adam(1e-3, mu_dtype=jnp.bfloat16)
    params = tiny_params()
    state = tx.init(params)
    _, state = tx.update(tiny_grads(0), state, params)
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
    ours = TRANSFORMS[name]()
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


# --------------------------------------------------------------------------------------------
# The variants (registry.VARIANTS): a representative subset of the checks above.


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_variant_jit_equals_eager_without_retrace(name):
    tx = VARIANTS[name]()
    traces = []

    def update(grads, state, params):
        traces.append(1)
        return tx.update(grads, state, params)

    eager = run_steps(tx, tx.update)
    jitted = run_steps(tx, jax.jit(update))
    assert len(traces) == 1
    assert_close_within_one_code(eager, jitted)
    chex.assert_trees_all_equal_shapes_and_dtypes(tx.init(tiny_params()), jitted[1])


def assert_close_within_one_code(eager, jitted):
    """Float leaves to rtol 1e-6, atol 1e-7; 8-bit leaves: scales to 1e-6, codes within one step.

    The pure 8-bit path rounds a moment that lies on a code boundary either way depending on how
    XLA fuses the arithmetic (eager op by op or one jitted graph), so a code may differ by one.
    """
    chex.assert_trees_all_equal_shapes_and_dtypes(eager, jitted)
    for x, y in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        if x.dtype == jnp.uint8:
            (x_codes, x), (y_codes, y) = _quantization.unpack(x), _quantization.unpack(y)
            steps = np.abs(np.asarray(x_codes, np.int32) - np.asarray(y_codes, np.int32))
            assert steps.max() <= 1, steps
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_variant_init_on_shape_dtype_structs(name):
    tx = VARIANTS[name]()
    structs = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), tiny_params())
    chex.assert_trees_all_equal_shapes_and_dtypes(
        jax.eval_shape(tx.init, structs), tx.init(tiny_params())
    )


@pytest.mark.parametrize("name", MULTISTEPS_NAMES)
def test_variant_composes_with_multisteps_and_none_leaves(name):
    multi = optax.MultiSteps(VARIANTS[name](), every_k_schedule=2)
    params, _, updates = run_steps(multi, jax.jit(multi.update), steps=4)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
    tx = VARIANTS[name]()
    params = {"w": jnp.ones((3, 2)), "frozen": None}
    updates, _ = jax.jit(tx.update)(
        {"w": jnp.ones((3, 2)), "frozen": None}, tx.init(params), params
    )
    assert updates["frozen"] is None and updates["w"].shape == (3, 2)


def test_sparse_step_jits_once_and_keeps_state_types():
    opt = jadam.sparse_lazy_adam(jadam.inverse_sqrt_schedule(0.1), per_row_count=True)
    traces = []

    def step(table, state, indices, rows):
        traces.append(1)
        return opt.step(table, state, indices, rows)

    step = jax.jit(step, donate_argnums=(0, 1))
    table = jnp.zeros((100, 4))
    state = opt.init(table)
    shapes = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    rows = jnp.ones((5, 4))
    for k in range(3):  # indices: 0,0,0,0,0 (duplicates: one touch), then 0..4, then 0,2,..,8
        table, state = step(table, state, jnp.arange(5) * k, rows)
    assert len(traces) == 1
    assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == shapes
    assert int(state.count) == 3
    np.testing.assert_array_equal(state.row_count[:10], [3, 1, 2, 1, 2, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(table[5], 0.0)  # untouched rows never move


@pytest.mark.parametrize(
    ("factory", "switches"),
    [
        (jadam.adam, {"eps_form": "eps_hat", "b1_decay": 0.9}),
        (jadam.amsgrad, {"variant": "max_of_raw"}),
        (jadam.nadam, {"momentum_decay": 0.004}),
        (jadam.lazy_adam, {"per_row_count": True}),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_inject_hyperparams_keeps_switches_static(factory, switches):
    """The string/bool switches stay Python values; numeric ones become injectable."""
    injected = optax.inject_hyperparams(factory)(learning_rate=1e-2, **switches)
    plain = factory(1e-2, **switches)
    chex.assert_trees_all_close(
        run_steps(injected, jax.jit(injected.update))[0],
        run_steps(plain, jax.jit(plain.update))[0],
        rtol=1e-5,
    )


def test_fused_flag_refuses_variants():
    """The fused kernel runs Algorithm 1 with constant β1; variants are refused by name."""
    for switches in [{"eps_form": "eps_hat"}, {"b1_decay": 0.9}]:
        with pytest.raises(ValueError, match=f"fused=True does not support {next(iter(switches))}"):
            jadam.adam(1e-2, fused=True, **switches)
