"""Optimizer state round-trips bit for bit through orbax-checkpoint and flax.serialization.

The tests marked ``needs_8_devices`` run in a subprocess with 8 host CPU devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import serialization
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from multidevice import driver, needs_8_devices, run_module_on_8_devices
from problems import assert_bitwise_equal, save_and_restore_orbax

import jadam

TRANSFORMS = {
    "adam": lambda: jadam.adam(1e-2),
    "adam_bf16_mu": lambda: jadam.adam(1e-2, mu_dtype=jnp.bfloat16),
    "adamax": lambda: jadam.adamax(1e-2),
    "amsgrad": lambda: jadam.amsgrad(1e-2),
    "rmsprop": lambda: jadam.rmsprop(1e-2),
    "skip_nonfinite_chain": lambda: jadam.skip_nonfinite(
        optax.chain(optax.clip_by_global_norm(1.0), jadam.adamw(1e-2, weight_decay=0.1))
    ),
    "inject_hyperparams": lambda: optax.inject_hyperparams(jadam.adam)(learning_rate=1e-2),
    "radam": lambda: jadam.radam(1e-2, threshold=4.0),
    "adabelief_bfloat16_state": lambda: jadam.adabelief(1e-2, state_precision="bfloat16"),
    "yogi_8bit_state": lambda: jadam.yogi(
        1e-2, state_precision=jadam.Blockwise8bit(block_size=4, min_size=8)
    ),
    "lamb": lambda: jadam.lamb(1e-2, weight_decay=0.1),
    "adopt_bf16_state": lambda: jadam.adopt(1e-2, state_precision="bfloat16"),
    "ademamix": lambda: jadam.ademamix(1e-2),
    "schedule_free_adamw": lambda: jadam.schedule_free_adamw(1e-2),
    "adafactor": lambda: jadam.adafactor(1e-2, min_dim_size_to_factor=2),
}
PARAM_DTYPES = {"float32": jnp.float32, "float16": jnp.float16, "bfloat16": jnp.bfloat16}
CASES = [(name, "float32") for name in TRANSFORMS]
CASES += [("adam", "float16"), ("adam", "bfloat16"), ("adam_bf16_mu", "float16")]


@driver
def test_on_8_host_devices():
    run_module_on_8_devices(__file__)


def _params(dtype=jnp.float32):
    return {
        "w": jnp.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4),
        "b": jnp.array([0.25, -0.0], dtype),
    }


def _grads(params, step):
    return jax.tree.map(lambda p: jnp.sin(3.0 * p + step).astype(p.dtype), params)


def _train(tx, params, state, steps, start=0):
    update = jax.jit(tx.update)
    for step in range(start, start + steps):
        updates, state = update(_grads(params, step), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_orbax_round_trip_is_exact_and_training_continues_identically(tmp_path, name, dtype):
    tx = TRANSFORMS[name]()
    params = _params(PARAM_DTYPES[dtype])
    params, state = _train(tx, params, tx.init(params), steps=3)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = save_and_restore_orbax(tmp_path / "state", state, target)
    assert_bitwise_equal(restored, state)
    assert_bitwise_equal(
        _train(tx, params, restored, 2, start=3), _train(tx, params, state, 2, start=3)
    )


@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_flax_serialization_round_trip_is_exact(name, dtype):
    tx = TRANSFORMS[name]()
    params = _params(PARAM_DTYPES[dtype])
    params, state = _train(tx, params, tx.init(params), steps=3)
    restored = serialization.from_bytes(tx.init(params), serialization.to_bytes(state))
    assert_bitwise_equal(restored, state)
    state_dict = serialization.to_state_dict(state)
    assert_bitwise_equal(serialization.from_state_dict(tx.init(params), state_dict), state)


def test_flax_serialization_rejects_a_state_of_another_optimizer():
    params = _params()
    data = serialization.to_bytes(jadam.adam(1e-2).init(params))
    with pytest.raises(ValueError, match="nu_max"):
        serialization.from_bytes(jadam.amsgrad(1e-2).init(params), data)


def _mesh_params(mesh, spec_w, spec_b):
    return {
        "w": jax.device_put(jnp.linspace(-1.0, 1.0, 64).reshape(8, 8), NamedSharding(mesh, spec_w)),
        "b": jax.device_put(jnp.linspace(0.0, 1.0, 8), NamedSharding(mesh, spec_b)),
    }


def _target_on(tx, params, zero1_axis=None):
    """Abstract state (shape, dtype, sharding) for restoring onto ``params``' mesh."""
    shardings = jadam.state_shardings(tx, params, zero1_axis=zero1_axis)
    abstract = jax.eval_shape(tx.init, params)
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )


@needs_8_devices
@pytest.mark.parametrize(
    ("name", "zero1"), [("adam", False), ("adam", True), ("skip_nonfinite_chain", True)]
)
def test_sharded_state_restores_exactly_onto_a_different_mesh(tmp_path, name, zero1):
    tx = TRANSFORMS[name]()
    mesh_a = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    params_a = _mesh_params(mesh_a, P(None, "model"), P("model"))
    axis = "data" if zero1 else None
    state = jadam.init_sharded(tx, params_a, zero1_axis=axis)
    _, state = _train(tx, params_a, state, steps=3)
    assert any(len(leaf.sharding.device_set) == 8 for leaf in jax.tree.leaves(state))

    # A different mesh: 8 devices in one axis, in reverse order, parameters split on dim 0.
    mesh_b = jax.sharding.Mesh(np.array(jax.devices()[::-1]), ("x",))
    params_b = _mesh_params(mesh_b, P("x"), P())
    target = _target_on(tx, params_b)
    restored = save_and_restore_orbax(tmp_path / "state", state, target)
    assert_bitwise_equal(jax.device_get(restored), jax.device_get(state))
    for leaf, want in zip(jax.tree.leaves(restored), jax.tree.leaves(target), strict=True):
        assert leaf.sharding.is_equivalent_to(want.sharding, leaf.ndim)
    moments = [leaf for leaf in jax.tree.leaves(restored) if leaf.shape == (8, 8)]
    assert moments and all(m.addressable_shards[0].data.shape == (1, 8) for m in moments)

    # flax.serialization gathers to the host; device_put places the result on any mesh.
    host = serialization.from_bytes(tx.init(_params_like(params_b)), serialization.to_bytes(state))
    placed = jax.device_put(host, jax.tree.map(lambda t: t.sharding, target))
    assert_bitwise_equal(jax.device_get(placed), jax.device_get(state))


def _params_like(params):
    return jax.tree.map(lambda p: jnp.zeros(p.shape, p.dtype), params)
