"""Lazy (sparse-row) Adam for embedding tables: rows without gradient keep their moments."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam._alias import with_learning_rate
from jadam._family import adam_direction, check_eps_form
from jadam._primitives import (
    debias,
    increment,
    map_leaves,
    one_minus_power,
    upcast,
    update_first_moment,
    update_second_moment,
    zeros_like,
)
from jadam._validation import (
    as_schedule,
    check_adam_hyperparameters,
    check_dtype,
    check_learning_rate,
    check_tree_matches,
)


class ScaleByLazyAdamState(NamedTuple):
    """State of lazy Adam: global count t, m_t, v_t, and per-row counts t_r (or None)."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    row_count: Any


def _row_direction(g, m, v, t, b1, b2, eps, eps_root, eps_form):
    """Algorithm 1 lines 7-11 on a block of rows; ``t`` is a scalar or one count per row."""
    m_new = update_first_moment(g, m, b1)
    v_new = update_second_moment(g, v, b2)
    t = jnp.reshape(t, jnp.shape(t) + (1,) * (g.ndim - jnp.ndim(t)))
    m_hat = debias(m_new, one_minus_power(b1, t))
    direction = adam_direction(
        m_hat, v_new, one_minus_power(b2, t), g, eps=eps, eps_root=eps_root, eps_form=eps_form
    )
    return m_new, v_new, direction


def _init_state(params, mu_dtype, per_row_count):
    def rows(p):
        return None if p is None else jnp.zeros(p.shape[:1], jnp.int32)

    return ScaleByLazyAdamState(
        count=jnp.zeros([], jnp.int32),
        mu=zeros_like(params, mu_dtype),
        nu=zeros_like(params, real=True),
        row_count=map_leaves(rows, params) if per_row_count else None,
    )


def _validate(b1, b2, eps, eps_root, eps_form, mu_dtype):
    check_adam_hyperparameters(b1, b2, eps, eps_root)
    check_eps_form(eps_form)
    check_dtype("mu_dtype", mu_dtype)


def scale_by_lazy_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    *,
    per_row_count: bool = False,
    eps_form: str = "algorithm1",
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    """Adam (Algorithm 1) applied only to rows whose gradient is non-zero, for dense gradients.

    A row is a slice along each leaf's first axis. For rows r with g_{t,r} ≠ 0: m, v and the
    update follow Algorithm 1 lines 7-11 with t (or the row's own count t_r); all other rows keep
    m_{t−1,r}, v_{t−1,r} and get update 0 (TF-Addons ``LazyAdam``, torch ``SparseAdam``).

    Args:
      b1, b2, eps, eps_root: as :func:`jadam.scale_by_adam`.
      per_row_count: bias-correct each row with t_r, the number of steps that touched it,
        instead of the global t (no anchor has this): a row first seen at step 1000 then gets
        the same first step as a row seen at step 1.
      eps_form: as :func:`jadam.scale_by_adam`; torch's SparseAdam and TF-Addons use "eps_hat".
      mu_dtype: storage dtype of m_t.

    Note: this entry point costs O(table) per step; for (indices, rows) gradients whose cost
    grows with the rows touched, use :func:`sparse_lazy_adam`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_lazy_adam()
      >>> g = jnp.array([[1.0, 1.0], [0.0, 0.0]])
      >>> updates, state = tx.update(g, tx.init(jnp.zeros((2, 2))))
      >>> updates
      Array([[1., 1.],
             [0., 0.]], dtype=float32)
    """
    _validate(b1, b2, eps, eps_root, eps_form, mu_dtype)

    def init_fn(params):
        return _init_state(params, mu_dtype, per_row_count)

    def update_fn(updates, state, params=None):
        del params
        check_tree_matches(updates, state.mu)
        count = increment(state.count)

        def leaf(g, m, v, r):
            touched = g != 0 if g.ndim == 0 else jnp.any(g != 0, axis=tuple(range(1, g.ndim)))
            t = r + touched if per_row_count else count
            m_new, v_new, direction = _row_direction(g, m, v, t, b1, b2, eps, eps_root, eps_form)
            mask = jnp.reshape(touched, touched.shape + (1,) * (g.ndim - touched.ndim))
            return (
                jnp.where(mask, m_new, m),
                jnp.where(mask, v_new, v),
                jnp.where(mask, direction, 0).astype(g.dtype),
                (r + touched).astype(jnp.int32) if per_row_count else None,
            )

        rows = state.row_count if per_row_count else jax.tree.map(lambda _: 0, state.mu)
        is_none = lambda x: x is None  # noqa: E731
        flat_g, treedef = jax.tree.flatten(updates, is_leaf=is_none)
        flat = [
            (None,) * 4 if g is None else leaf(g, m, v, r)
            for g, m, v, r in zip(
                flat_g,
                treedef.flatten_up_to(state.mu),
                treedef.flatten_up_to(state.nu),
                treedef.flatten_up_to(rows),
                strict=True,
            )
        ]
        mu, nu, out, row_count = (treedef.unflatten([f[i] for f in flat]) for i in range(4))
        return out, ScaleByLazyAdamState(
            count=count, mu=mu, nu=nu, row_count=row_count if per_row_count else None
        )

    return optax.GradientTransformation(init_fn, update_fn)


def lazy_adam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    per_row_count: bool = False,
    eps_form: str = "algorithm1",
) -> optax.GradientTransformationExtraArgs:
    """Lazy Adam for dense gradients: θ_{t,r} −= α·u_{t,r} on touched rows only.

    See :func:`scale_by_lazy_adam`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = lazy_adam(1e-3, per_row_count=True)
      >>> state = tx.init({"embedding": jnp.zeros((10, 4))})
    """
    scaling = scale_by_lazy_adam(
        b1, b2, eps, eps_root, per_row_count=per_row_count, eps_form=eps_form, mu_dtype=mu_dtype
    )
    return with_learning_rate(learning_rate, scaling)


class SparseRowOptimizer(NamedTuple):
    """``init(table) → state`` and ``step(table, state, indices, rows) → (table, state)``."""

    init: Any
    step: Any


def sparse_lazy_adam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    per_row_count: bool = False,
    eps_form: str = "algorithm1",
    unique_indices: bool = False,
) -> SparseRowOptimizer:
    """Lazy Adam on one table from sparse gradients (row indices, row values).

    The same algorithm and state as :func:`lazy_adam`, but the gradient is given as ``indices``
    (k,) and ``rows`` (k, ...) and ``step`` gathers and scatters only those k rows: its cost grows
    with k, not with the table size (jit ``step`` with ``donate_argnums=(0, 1)`` so the table
    and moments are updated in place). Every listed row counts as touched (torch
    ``SparseAdam``), even if its values are zero; duplicate indices are summed (torch coalesces).
    Out-of-range indices are ignored. A step whose rows contain NaN or ±Inf is skipped (table
    and state unchanged, count not advanced), as ``optax.apply_if_finite`` does; wrap the dense
    :func:`lazy_adam` in ``optax.apply_if_finite`` for the same behaviour.

    Args:
      learning_rate: α, a number or a schedule of the global count.
      unique_indices: promise that ``indices`` has no duplicates (skips a sort).
      others: as :func:`scale_by_lazy_adam`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> opt = sparse_lazy_adam(0.1)
      >>> table = jnp.zeros((1000, 2))
      >>> step = jax.jit(opt.step, donate_argnums=(0, 1))
      >>> table, state = step(table, opt.init(table), jnp.array([3]), jnp.array([[1.0, -1.0]]))
      >>> table[3], int(jnp.count_nonzero(table))
      (Array([-0.1,  0.1], dtype=float32), 2)
    """
    _validate(b1, b2, eps, eps_root, eps_form, mu_dtype)
    check_learning_rate(learning_rate)
    schedule = as_schedule(learning_rate)

    def init_fn(table):
        return _init_state(table, mu_dtype, per_row_count)

    def step_fn(table, state, indices, rows):
        indices = jnp.asarray(indices)
        rows = jnp.asarray(rows)
        if indices.ndim != 1 or rows.shape != indices.shape + table.shape[1:]:
            raise ValueError(
                f"expected indices of shape (k,) and rows of shape (k, {table.shape[1:]}), "
                f"got {indices.shape} and {rows.shape}."
            )
        if not unique_indices:
            k = indices.shape[0]
            indices, inverse = jnp.unique(
                indices, return_inverse=True, size=k, fill_value=table.shape[0]
            )
            rows = jax.ops.segment_sum(rows, inverse.reshape(-1), num_segments=k)
        finite = jnp.all(jnp.isfinite(rows))  # else skip the step, as optax.apply_if_finite
        count = jnp.where(finite, increment(state.count), state.count)
        m = state.mu.at[indices].get(mode="fill", fill_value=0)
        v = state.nu.at[indices].get(mode="fill", fill_value=0)
        if per_row_count:
            t = state.row_count.at[indices].get(mode="fill", fill_value=0) + 1
        else:
            t = count
        m_new, v_new, direction = _row_direction(rows, m, v, t, b1, b2, eps, eps_root, eps_form)
        alpha = jnp.asarray(schedule(state.count))
        delta = jnp.where(finite, -alpha * upcast(direction), 0).astype(table.dtype)
        new_state = ScaleByLazyAdamState(
            count=count,
            mu=state.mu.at[indices].set(jnp.where(finite, m_new, m), mode="drop"),
            nu=state.nu.at[indices].set(jnp.where(finite, v_new, v), mode="drop"),
            row_count=(
                state.row_count.at[indices].add(finite.astype(jnp.int32), mode="drop")
                if per_row_count
                else None
            ),
        )
        return table.at[indices].add(delta, mode="drop"), new_state

    return SparseRowOptimizer(init_fn, step_fn)
