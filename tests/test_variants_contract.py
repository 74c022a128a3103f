"""The core's contract (jit = eager, no retrace, abstract init, chains, None leaves), variants."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_contract import _params, _run

import jadam

REGISTRY = {
    "adam_eps_hat": lambda: jadam.adam(1e-3, eps_form="eps_hat"),
    "adam_inside_root": lambda: jadam.adam(1e-3, eps_form="inside_root"),
    "adam_section4": lambda: jadam.adam(jadam.inverse_sqrt_schedule(1e-2), b1_decay=0.9),
    "amsgrad_max_of_raw": lambda: jadam.amsgrad(1e-3, variant="max_of_raw"),
    "amsgrad_uncorrected": lambda: jadam.amsgrad(1e-3, variant="uncorrected"),
    "nadam_torch": lambda: jadam.nadam(1e-3, momentum_decay=0.004),
    "nadam_keras": lambda: jadam.nadam(1e-3, eps=1e-7, momentum_decay=1.0),
    "temporal_averaging": lambda: optax.chain(jadam.adam(1e-3), jadam.temporal_averaging()),
    "lazy_adam": lambda: jadam.lazy_adam(1e-3),
    "lazy_adam_per_row": lambda: jadam.lazy_adam(1e-3, per_row_count=True, eps_form="eps_hat"),
    "radam_torch": lambda: jadam.radam(
        1e-3, eps_form="eps_hat", weight_decay=0.1, decoupled_weight_decay=True
    ),
    "radam_paper_8bit": lambda: jadam.radam(1e-3, threshold=4.0, state_precision="8bit"),
    "adabelief_nesterov_bfloat16": lambda: jadam.adabelief(
        1e-3, nesterov=True, state_precision="bfloat16"
    ),
    "yogi_paper": lambda: jadam.yogi(1e-2, initial_accumulator_value=0.0, bias_correction=False),
    "yogi_8bit": lambda: jadam.yogi(1e-2, state_precision="8bit"),
    "lamb_bfloat16": lambda: jadam.lamb(1e-3, weight_decay=0.1, state_precision="bfloat16"),
    "nadamw_torch": lambda: jadam.nadamw(1e-3, weight_decay=0.1, momentum_decay=0.004),
    "adamaxw_8bit": lambda: jadam.adamaxw(2e-3, state_precision="8bit"),
}
NAMES = list(REGISTRY)


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_eager_without_retrace(name):
    tx = REGISTRY[name]()
    traces = []

    def update(grads, state, params):
        traces.append(1)
        return tx.update(grads, state, params)

    eager = _run(tx, tx.update)
    jitted = _run(tx, jax.jit(update))
    assert len(traces) == 1
    chex.assert_trees_all_close(eager, jitted, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_equal_shapes_and_dtypes(tx.init(_params()), jitted[1])


@pytest.mark.parametrize("name", NAMES)
def test_init_on_shape_dtype_structs(name):
    tx = REGISTRY[name]()
    structs = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), _params())
    chex.assert_trees_all_equal_shapes_and_dtypes(
        jax.eval_shape(tx.init, structs), tx.init(_params())
    )


@pytest.mark.parametrize("name", NAMES)
def test_composes_with_multisteps_and_none_leaves(name):
    multi = optax.MultiSteps(REGISTRY[name](), every_k_schedule=2)
    params, _, updates = _run(multi, jax.jit(multi.update), steps=4)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
    tx = REGISTRY[name]()
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
        _run(injected, jax.jit(injected.update))[0],
        _run(plain, jax.jit(plain.update))[0],
        rtol=1e-5,
    )


def test_fused_flag_refuses_variants():
    """The fused kernel runs Algorithm 1 with constant β1; variants are refused by name."""
    for switches in [{"eps_form": "eps_hat"}, {"b1_decay": 0.9}]:
        with pytest.raises(ValueError, match=f"fused=True does not support {next(iter(switches))}"):
            jadam.adam(1e-2, fused=True, **switches)
