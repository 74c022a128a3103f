"""Adafactor (Shazeer & Stern, 2018): a second moment in O(rows + columns) memory per matrix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jadam._quantization import Blockwise8bit
from jadam._storage import resolve
from jadam._validation import check_flag, check_learning_rate, check_range, check_tree_matches


class FactoredState(NamedTuple):
    """State of :func:`scale_by_factored_rms` (optax's layout).

    count: steps taken; v_row: the means of G² + ε1 over the largest axis (the paper's R_t/m,
    for a (rows, columns) matrix with more rows than columns indexed by column, as optax names
    it); v_col: the means over the second-largest axis (C_t/n); both a (1,) placeholder for
    unfactored leaves; v: the full second moment of unfactored leaves (a (1,) placeholder for
    factored ones).
    """

    count: jax.Array
    v_row: optax.Updates
    v_col: optax.Updates
    v: optax.Updates


def decay_rate_pow(step: jax.Array, exponent: Any = 0.8) -> jax.Array:
    """β̂2_t = 1 − t^(−c) with t = step + 1 (Shazeer & Stern, Section 7.2; c = ``exponent``).

    >>> float(decay_rate_pow(0)), round(float(decay_rate_pow(1, 1.0)), 3)
    (0.0, 0.5)
    """
    t = jnp.asarray(step + 1, jnp.float32)
    return 1.0 - t ** (-jnp.asarray(exponent, jnp.float32))


def factored_dims(shape: tuple[int, ...], factored: bool, min_dim_size: int) -> tuple | None:
    """The (row, column) axes to factor over: the two largest, if the second is ≥ min_dim_size.

    >>> factored_dims((3, 256, 512), True, 128), factored_dims((3, 100), True, 128)
    ((1, 2), None)
    """
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape, kind="stable")
    if shape[order[-2]] < min_dim_size:
        return None
    return int(order[-2]), int(order[-1])


def _storage(state_precision: Any) -> Any:
    """The 16-bit storage of the statistics, or None; 8-bit is refused (see the docstring)."""
    if state_precision == "8bit" or isinstance(state_precision, Blockwise8bit):
        raise ValueError(
            f"scale_by_factored_rms does not take state_precision={state_precision!r}: Adafactor's "
            "factored statistics are already O(rows + columns) per matrix, and block-wise 8-bit "
            "codes of row/column means lose the small entries that set the step. Use 'bfloat16' "
            "or 'float16' (stochastic rounding) or leave it None."
        )
    storage, _, _ = resolve(state_precision, None, None)
    return storage


def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: Any = 0.8,
    step_offset: Any = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: Any = 1e-30,
    decay_rate_fn: Callable[[Any, Any], Any] = decay_rate_pow,
    *,
    state_precision: Any = None,
) -> optax.GradientTransformation:
    """Scales gradients by 1/√V̂_t, V̂ factored for matrices (Shazeer & Stern, Algorithms 4 and 5).

    With β̂2_t = ``decay_rate_fn(t − 1 − step_offset, decay_rate)`` and G² + ε1 elementwise:
    R_t = β̂2_t·R_{t−1} + (1−β̂2_t)·mean_cols(G² + ε1),   C_t likewise over the rows,
    V̂_t = R_t·C_tᵀ / mean(R_t),   U_t = G_t / √V̂_t    (matrices with both axes factored);
    V_t = β̂2_t·V_{t−1} + (1−β̂2_t)·(G² + ε1),   U_t = G_t / √V_t    (other leaves).

    Args:
      factored: factor the two largest axes of leaves with ≥ 2 dimensions.
      decay_rate: c in β̂2_t = 1 − t^(−c) (paper: 0.8).
      step_offset: subtracted from the step before the decay schedule.
      min_dim_size_to_factor: factor only if the second-largest axis is at least this long.
      epsilon: ε1 > 0 added to G² (paper: 1e-30).
      decay_rate_fn: β̂2 as a function of (step, decay_rate).
      state_precision: None, "bfloat16" or "float16" (the statistics stochastically rounded,
        as :class:`jadam.StochasticRounding`); "8bit" raises (see the error for why).

    Note: the paper's row/column *sums* are stored as means (optax's layout); V̂ is the same.
    optax's state layout and numbers.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_factored_rms(min_dim_size_to_factor=2)
      >>> params = jnp.zeros((2, 3))
      >>> updates, state = tx.update(jnp.ones((2, 3)), tx.init(params), params)
      >>> updates  # the first step is G/|G| (β̂2_1 = 0)
      Array([[1., 1., 1.],
             [1., 1., 1.]], dtype=float32)
      >>> state.v_row.shape, state.v_col.shape
      ((2,), (3,))
    """
    check_flag("factored", factored)
    if not isinstance(min_dim_size_to_factor, int) or min_dim_size_to_factor < 1:
        raise ValueError(
            f"min_dim_size_to_factor must be an int ≥ 1, got {min_dim_size_to_factor!r}."
        )
    check_range("epsilon", epsilon, 0.0, float("inf"), low_inclusive=False)
    if not callable(decay_rate_fn):
        raise ValueError(f"decay_rate_fn must be callable, got {decay_rate_fn!r}.")
    storage = _storage(state_precision)

    def dims(leaf):
        return factored_dims(leaf.shape, factored, min_dim_size_to_factor)

    def init_leaf(p):
        axes = dims(p)
        placeholder = jnp.zeros((1,), p.dtype)  # a new one each time: buffers are donated
        if axes is None:
            return placeholder, jnp.zeros((1,), p.dtype), jnp.zeros(p.shape, p.dtype)
        row, col = axes
        row_shape = tuple(n for i, n in enumerate(p.shape) if i != col)
        col_shape = tuple(n for i, n in enumerate(p.shape) if i != row)
        return jnp.zeros(row_shape, p.dtype), jnp.zeros(col_shape, p.dtype), placeholder

    def init_fn(params):
        rows, cols, full = _unzip3(init_leaf, params)
        state = FactoredState(jnp.zeros([], jnp.int32), rows, cols, full)
        return _encode(storage, state, jnp.zeros([], jnp.int32)) if storage else state

    def update_leaf(g, v_row, v_col, v, p, decay):
        axes = dims(p)
        square = jnp.real(g * jnp.conj(g)).astype(jnp.float32) + epsilon
        if axes is None:
            new_v = decay * v.astype(jnp.float32) + (1.0 - decay) * square
            return (g * new_v**-0.5).astype(g.dtype), v_row, v_col, new_v
        row, col = axes
        new_row = decay * v_row.astype(jnp.float32) + (1.0 - decay) * square.mean(axis=col)
        new_col = decay * v_col.astype(jnp.float32) + (1.0 - decay) * square.mean(axis=row)
        reduced = row if row < col else row - 1  # the row axis of new_row
        row_factor = (new_row / new_row.mean(axis=reduced, keepdims=True)) ** -0.5
        col_factor = new_col**-0.5
        update = g * jnp.expand_dims(row_factor, col) * jnp.expand_dims(col_factor, row)
        return update.astype(g.dtype), new_row, new_col, v

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_factored_rms needs params: update(grads, state, params).")
        check_tree_matches(updates, params, what="parameters")
        if storage:
            state = _decode(state)
        decay = decay_rate_fn(state.count - step_offset, decay_rate)
        results = jax.tree.map(
            lambda *args: update_leaf(*args, decay), updates, state.v_row, state.v_col, state.v,
            params,
        )  # fmt: skip
        treedef = jax.tree.structure(updates)
        direction, rows, cols, full = (
            treedef.unflatten(part) for part in zip(*treedef.flatten_up_to(results), strict=True)
        )
        count = optax.safe_increment(state.count)
        new_state = FactoredState(count, *_cast_like((rows, cols, full), params))
        return direction, (_encode(storage, new_state, count) if storage else new_state)

    return optax.GradientTransformation(init_fn, update_fn)


def _unzip3(fn, tree):
    treedef = jax.tree.structure(tree)
    results = [fn(leaf) for leaf in treedef.flatten_up_to(tree)]
    return tuple(treedef.unflatten(part) for part in zip(*results, strict=True))


def _cast_like(parts, params):
    return tuple(jax.tree.map(lambda x, p: x.astype(p.dtype), part, params) for part in parts)


def _encode(storage, state, count):
    stored = (
        storage.encode(jax.tree.map(lambda x: x.astype(jnp.float32), part), signed=False,
                       count=count, stream=stream)
        for stream, part in enumerate((state.v_row, state.v_col, state.v))
    )  # fmt: skip
    return FactoredState(state.count, *stored)


def _decode(state):
    return state._replace(
        **{name: jax.tree.map(lambda x: x.astype(jnp.float32), getattr(state, name))
           for name in ("v_row", "v_col", "v")}
    )  # fmt: skip


def adafactor(
    learning_rate: Any = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: Any = 0.8,
    decay_offset: Any = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: Any = 1.0,
    momentum: Any = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: Any = None,
    eps: Any = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any = None,
    *,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Adafactor (Shazeer & Stern, 2018, Algorithm 4 with update clipping, Section 6).

    X_t = X_{t−1} − α_t·Û_t with Û_t = U_t / max(1, RMS(U_t)/d) (d = ``clipping_threshold``)
    and α_t = ρ_t·max(ε2, RMS(X_{t−1})) (``multiply_by_parameter_scale``; ρ_t =
    ``learning_rate``, a number or schedule such as the paper's min(10⁻², 1/√t)); optional
    momentum (β1, the paper's Section 8 variant, not debiased) and weight decay. Signature, state
    layout and numbers of ``optax.adafactor``; the other stages are optax's own transforms.

    Args:
      state_precision: storage of the second-moment statistics, see
        :func:`scale_by_factored_rms` (8-bit is refused); ``dtype_momentum`` sets the momentum's.

    Note: ``learning_rate=None`` applies no step size (ρ_t = 1), as optax; the paper's default
    is the relative step size min(10⁻², 1/√t), which you pass as a schedule.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = adafactor(lambda t: jnp.minimum(1e-2, 1 / jnp.sqrt(t + 1.0)))
      >>> params = {"w": jnp.ones((256, 128))}
      >>> state = tx.init(params)
      >>> state[0].v_row["w"].shape, state[0].v_col["w"].shape  # optax's names: see FactoredState
      ((128,), (256,))
    """
    if learning_rate is not None:
        check_learning_rate(learning_rate)
    if clipping_threshold is not None:
        check_range(
            "clipping_threshold", clipping_threshold, 0.0, float("inf"), low_inclusive=False
        )
    if momentum is not None and not callable(momentum):
        check_range("momentum", momentum, 0.0, 1.0)
    stages = [
        scale_by_factored_rms(
            factored,
            decay_rate,
            decay_offset,
            min_dim_size_to_factor,
            eps,
            state_precision=state_precision,
        )
    ]
    if clipping_threshold is not None:
        stages.append(optax.clip_by_block_rms(clipping_threshold))
    if learning_rate is not None:
        stages.append(optax.scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        stages.append(optax.scale_by_param_block_rms())
    if momentum is not None:
        stages.append(optax.ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
    if weight_decay_rate is not None:
        stages.append(optax.add_decayed_weights(weight_decay_rate, mask=weight_decay_mask))
    stages.append(optax.scale(-1))
    return optax.chain(*stages)
