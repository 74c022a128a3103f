"""Shardings for optimizer state: follow the parameters, or partition over a data axis (ZeRO-1).

Every jadam transform already builds its moments with the sharding of the parameter they track
(eagerly, under ``jax.jit`` and from ``jax.ShapeDtypeStruct``s). The helpers here name those
shardings explicitly, for ``jax.jit(..., out_shardings=...)``, for restoring checkpoints, and to
partition the moments over a data-parallel mesh axis while the parameters stay replicated
(stage 1 of ZeRO, Rajbhandari et al., 2020).
"""

from __future__ import annotations

from typing import Any

import jax
import optax
from jax.sharding import NamedSharding, PartitionSpec, Sharding, SingleDeviceSharding


def _param_sharding(path: str, leaf: Any) -> Sharding:
    sharding = getattr(leaf, "sharding", None)
    if not isinstance(sharding, Sharding):
        raise TypeError(
            f"params{path} must be a jax.Array or a jax.ShapeDtypeStruct with a sharding, got "
            f"{type(leaf).__name__} with sharding {sharding!r}."
        )
    return sharding


def _partition_over(sharding: Sharding, shape: tuple[int, ...], axis: str) -> Sharding:
    """``sharding`` with its largest free dimension divisible by the size split over ``axis``."""
    if not isinstance(sharding, NamedSharding):
        raise TypeError(
            f"zero1_axis={axis!r} needs parameters with a NamedSharding, got {sharding!r}."
        )
    mesh = sharding.mesh
    if axis not in mesh.shape:
        raise ValueError(
            f"zero1_axis={axis!r} is not an axis of the mesh; its axes are {tuple(mesh.shape)}."
        )
    spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
    used = {
        a
        for entry in spec
        if entry is not None
        for a in (entry if isinstance(entry, tuple) else (entry,))
    }
    size = mesh.shape[axis]
    if axis in used:
        return sharding  # already partitioned over the axis (e.g. fully sharded parameters)
    candidates = [d for d in range(len(shape)) if spec[d] is None and shape[d] % size == 0]
    if not candidates:
        return sharding  # too small or indivisible: stays as the parameter is
    dim = max(candidates, key=lambda d: (shape[d], -d))
    spec[dim] = axis
    return NamedSharding(mesh, PartitionSpec(*spec), memory_kind=sharding.memory_kind)


def state_shardings(
    tx: optax.GradientTransformation, params: Any, *, zero1_axis: str | None = None
) -> Any:
    """The sharding of each leaf of ``tx.init(params)``, as a tree shaped like the state.

    Each moment (a state leaf mirroring a parameter) gets that parameter's sharding; with
    ``zero1_axis`` its largest unsharded dimension divisible by the axis size is also split
    over that mesh axis, so each device stores 1/size of the optimizer state (ZeRO stage 1).
    Counters and other leaves are replicated over the parameters' mesh.

    Args:
      tx: any optax transformation (jadam's or not).
      params: the parameters, as ``jax.Array``s or ``jax.ShapeDtypeStruct``s with shardings.
      zero1_axis: name of a data-parallel mesh axis to partition the moments over, or None.

    Example:
      >>> import jax, jax.numpy as jnp, jadam
      >>> params = {"w": jnp.ones((4, 2))}
      >>> shardings = state_shardings(jadam.adam(1e-3), params)
      >>> shardings[0].mu["w"] == params["w"].sharding
      True
    """
    if zero1_axis is not None and not isinstance(zero1_axis, str):
        raise TypeError(f"zero1_axis must be a mesh axis name (str) or None, got {zero1_axis!r}.")
    with_path = jax.tree_util.tree_flatten_with_path(params)[0]
    shardings = {
        path: _param_sharding(jax.tree_util.keystr(path), leaf) for path, leaf in with_path
    }
    named = [s for s in shardings.values() if isinstance(s, NamedSharding)]
    if named:
        replicated: Sharding = NamedSharding(named[0].mesh, PartitionSpec())
    elif shardings:
        replicated = next(iter(shardings.values()))
        if not isinstance(replicated, SingleDeviceSharding):
            replicated = SingleDeviceSharding(jax.devices()[0])
    else:
        replicated = SingleDeviceSharding(jax.devices()[0])

    def moment_sharding(param: Any) -> Sharding:
        sharding = _param_sharding("", param)
        if zero1_axis is None:
            return sharding
        return _partition_over(sharding, tuple(param.shape), zero1_axis)

    abstract_state = jax.eval_shape(tx.init, params)
    return optax.tree_map_params(
        tx,
        lambda _, param: moment_sharding(param),
        abstract_state,
        params,
        transform_non_params=lambda _: replicated,
    )


def init_sharded(
    tx: optax.GradientTransformation, params: Any, *, zero1_axis: str | None = None
) -> optax.OptState:
    """``tx.init(params)`` placed with :func:`state_shardings` (compiled; no host round trip).

    Example:
      >>> import jax.numpy as jnp, jadam
      >>> state = init_sharded(jadam.adam(1e-3), {"w": jnp.ones(3)})
    """
    shardings = state_shardings(tx, params, zero1_axis=zero1_axis)
    return jax.jit(tx.init, out_shardings=shardings)(params)


def per_device_bytes(tree: Any) -> dict[Any, int]:
    """Bytes each device holds for the arrays of ``tree`` (counts every addressable shard).

    Example:
      >>> import jax.numpy as jnp
      >>> list(per_device_bytes({"w": jnp.ones(4)}).values())
      [16]
    """
    totals: dict[Any, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
    return totals
