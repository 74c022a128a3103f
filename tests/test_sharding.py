"""Optimizer state keeps each parameter's sharding; ZeRO-1 partitions it over a data axis.

The tests marked ``needs_8_devices`` run in a subprocess with 8 host CPU devices.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from multidevice import driver, needs_8_devices, run_module_on_8_devices

import jadam

TRANSFORMS = {
    "adam": lambda: jadam.adam(1e-2),
    "adamw_masked": lambda: jadam.adamw(
        1e-2, weight_decay=0.1, mask={"w": True, "b": False, "s": True}
    ),
    "adamax": lambda: jadam.adamax(1e-2),
    "amsgrad": lambda: jadam.amsgrad(1e-2, mu_dtype=jnp.bfloat16),
    "rmsprop_centered": lambda: jadam.rmsprop(1e-2, centered=True, momentum=0.9),
    "skip_nonfinite_adam": lambda: jadam.skip_nonfinite(jadam.adam(1e-2)),
}
MORE_TRANSFORMS = {  # checked with automatic axes only, to keep the run short
    "nadam": lambda: jadam.nadam(1e-2),
    "sgd_momentum": lambda: jadam.sgd(1e-2, momentum=0.9, nesterov=True),
    "adagrad": lambda: jadam.adagrad(1e-2),
    "adadelta": lambda: jadam.adadelta(),
    "radam": lambda: jadam.radam(1e-2, threshold=4.0),
    "adabelief": lambda: jadam.adabelief(1e-2),
    "yogi": lambda: jadam.yogi(1e-2),
    "lamb": lambda: jadam.lamb(1e-2, weight_decay=0.1),
    "adopt": lambda: jadam.adopt(1e-2),
    "ademamix": lambda: jadam.ademamix(1e-2),
}
CASES = [(name, axis) for name in TRANSFORMS for axis in ("Auto", "Explicit")]
CASES += [(name, "Auto") for name in MORE_TRANSFORMS]


@driver
def test_on_8_host_devices():
    run_module_on_8_devices(__file__)


def _mesh(axis_type: str):
    return jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType[axis_type],) * 2)


def _params(mesh):
    put = lambda x, *spec: jax.device_put(x, NamedSharding(mesh, P(*spec)))  # noqa: E731
    return {
        "w": put(jnp.linspace(-1.0, 1.0, 48).reshape(8, 6), "data", "model"),
        "b": put(jnp.linspace(0.0, 1.0, 6), "model"),
        "s": put(jnp.array(0.5)),
    }


def _assert_moment_shardings(state, expected):
    """Every floating state leaf has the sharding ``expected`` (from the parameters) says."""
    leaves, expected_leaves = jax.tree.leaves(state), jax.tree.leaves(expected)
    assert len(leaves) == len(expected_leaves)
    checked = 0
    for leaf, sharding in zip(leaves, expected_leaves, strict=True):
        if jnp.issubdtype(leaf.dtype, jnp.integer):
            continue  # step counters: scalars, placed wherever JAX puts them
        assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim), (leaf.sharding, sharding)
        checked += 1
    assert checked >= 3


@needs_8_devices
@pytest.mark.parametrize(("name", "axis_type"), CASES)
def test_state_keeps_parameter_sharding(name, axis_type):
    mesh = _mesh(axis_type)
    params, tx = _params(mesh), {**TRANSFORMS, **MORE_TRANSFORMS}[name]()
    expected = jadam.state_shardings(tx, params)
    structs = jax.tree.map(
        lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=p.sharding), params
    )
    grads = jax.tree.map(lambda p: 0.1 * p + 0.2, params)
    with jax.set_mesh(mesh):
        for state in (tx.init(params), jax.jit(tx.init)(params), tx.init(structs)):
            _assert_moment_shardings(state, expected)
            _, state = jax.jit(tx.update)(grads, state, params)
            _assert_moment_shardings(state, expected)


@needs_8_devices
def test_optax_init_under_jit_replicates_moments_but_jadam_does_not():
    """The difference jadam fixes: with automatic axes optax's jitted init loses the sharding."""
    mesh = _mesh("Auto")
    params = _params(mesh)
    optax_state = jax.jit(optax.scale_by_adam().init)(params)
    jadam_state = jax.jit(jadam.scale_by_adam().init)(params)
    assert not optax_state.mu["b"].sharding.is_equivalent_to(params["b"].sharding, 1)
    assert jadam_state.mu["b"].sharding.is_equivalent_to(params["b"].sharding, 1)


@needs_8_devices
def test_adam_moments_have_the_parameter_partition_spec():
    """A direct check that does not go through jadam.state_shardings."""
    mesh = _mesh("Auto")
    params = _params(mesh)
    state = jax.jit(jadam.scale_by_adam().init)(params)
    for moment in (state.mu, state.nu):
        assert moment["w"].sharding.spec == P("data", "model")
        assert moment["b"].sharding.spec == P("model")
        assert moment["w"].addressable_shards[0].data.shape == (2, 3)


def _mlp_params(mesh):
    rng = np.random.default_rng(0)
    replicated = NamedSharding(mesh, P())
    shapes = {"w1": (32, 64), "b1": (64,), "w2": (64, 8), "b2": (8,)}
    return {
        k: jax.device_put(jnp.asarray(rng.standard_normal(s) / 4, jnp.float32), replicated)
        for k, s in shapes.items()
    }


def _loss(params, x, y):
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((hidden @ params["w2"] + params["b2"] - y) ** 2)


def _batches(steps):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((steps, 64, 32)).astype(np.float32)
    return x, np.sin(x[..., :8]).astype(np.float32)


def _train(tx, params, state, param_shardings, state_shardings, batch_sharding, steps=5):
    def step(params, state, x, y):
        grads = jax.grad(_loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step, out_shardings=(param_shardings, state_shardings))
    xs, ys = _batches(steps)
    for x, y in zip(xs, ys, strict=True):
        x, y = jax.device_put(x, batch_sharding), jax.device_put(y, batch_sharding)
        params, state = step(params, state, x, y)
    return params, state


def _moment_bytes(state):
    """Per-device bytes of the floating state leaves (the moments), as a sorted list."""
    moments = [leaf for leaf in jax.tree.leaves(state) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    return sorted(jadam.per_device_bytes(moments).values())


@needs_8_devices
@pytest.mark.parametrize("name", ["adam", "amsgrad", "rmsprop_centered", "yogi", "lamb"])
def test_zero1_divides_state_bytes_by_axis_size_and_gives_the_same_result(name):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    tx = {**TRANSFORMS, **MORE_TRANSFORMS}[name]()
    params = _mlp_params(mesh)
    param_shardings = jax.tree.map(lambda p: p.sharding, params)
    batch = NamedSharding(mesh, P("data"))
    full = jadam.state_shardings(tx, params)
    zero1 = jadam.state_shardings(tx, params, zero1_axis="data")
    state_full = jadam.init_sharded(tx, params)
    state_zero1 = jadam.init_sharded(tx, params, zero1_axis="data")

    full_bytes, zero1_bytes = _moment_bytes(state_full), _moment_bytes(state_zero1)
    assert len(set(full_bytes)) == 1 and len(set(zero1_bytes)) == 1 and len(zero1_bytes) == 8
    assert full_bytes[0] == 8 * zero1_bytes[0]  # every moment leaf here divides by 8

    params_full, state_full = _train(tx, params, state_full, param_shardings, full, batch)
    params_zero1, state_zero1 = _train(tx, params, state_zero1, param_shardings, zero1, batch)
    chex.assert_trees_all_close(params_zero1, params_full, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(state_zero1, state_full, rtol=1e-6, atol=1e-7)
    assert _moment_bytes(state_zero1) == zero1_bytes  # still partitioned after training
    assert all(p.sharding.is_fully_replicated for p in jax.tree.leaves(params_zero1))


@needs_8_devices
def test_zero1_leaves_indivisible_and_already_partitioned_leaves_alone():
    mesh = _mesh("Auto")
    params = _params(mesh)  # w is already split over "data"; b has 6 entries, not divisible by 4
    params["v"] = jax.device_put(jnp.ones((3, 8)), NamedSharding(mesh, P()))
    shardings = jadam.state_shardings(jadam.scale_by_adam(), params, zero1_axis="data")
    assert shardings.mu["w"].spec == P("data", "model")
    assert shardings.mu["b"].spec == P("model")
    assert shardings.mu["v"].spec == P(None, "data")
    assert shardings.count.spec == P()


@needs_8_devices
def test_zero1_bad_axis_is_a_clear_error():
    params = _params(_mesh("Auto"))
    with pytest.raises(ValueError, match="zero1_axis='batch' is not an axis of the mesh"):
        jadam.state_shardings(jadam.adam(1e-3), params, zero1_axis="batch")


@needs_8_devices
def test_data_parallel_over_8_devices_equals_one_device():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
    tx = jadam.adam(1e-2)
    params = _mlp_params(mesh)
    shardings = jadam.state_shardings(tx, params)
    sharded, _ = _train(
        tx,
        params,
        jadam.init_sharded(tx, params),
        jax.tree.map(lambda p: p.sharding, params),
        shardings,
        NamedSharding(mesh, P("data")),
    )
    local = jax.tree.map(lambda p: jnp.asarray(np.asarray(p)), params)  # one device, no mesh
    single, _ = _train(tx, local, tx.init(local), None, None, jax.devices()[0])
    chex.assert_trees_all_close(sharded, jax.device_get(single), rtol=1e-5, atol=1e-6)


def test_state_shardings_rejects_parameters_without_sharding():
    with pytest.raises(
        TypeError, match=r"params\['w'\] must be a jax.Array or a jax.ShapeDtypeStruct"
    ):
        jadam.state_shardings(jadam.adam(1e-3), {"w": np.ones(3)})
    with pytest.raises(TypeError, match="zero1_axis must be a mesh axis name"):
        jadam.state_shardings(jadam.adam(1e-3), {"w": jnp.ones(3)}, zero1_axis=0)


def test_zero1_needs_named_sharding():
    with pytest.raises(TypeError, match="zero1_axis='data' needs parameters with a NamedSharding"):
        jadam.state_shardings(jadam.adam(1e-3), {"w": jnp.ones(8)}, zero1_axis="data")


def test_single_device_state_shardings_match_init():
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    tx = jadam.adam(1e-3)
    shardings = jadam.state_shardings(tx, params)
    state = jadam.init_sharded(tx, params)
    chex.assert_trees_all_equal(state, tx.init(params))
    assert jax.tree.leaves(shardings)[1] == params["b"].sharding
