"""ADOPT (Taniguchi et al., 2024): Adam that normalises by the *previous* second moment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jadam._alias import with_learning_rate
from jadam._family import ScaleByAdamState, init_state
from jadam._primitives import (
    increment,
    safe_divide,
    sqrt,
    upcast,
    update_first_moment,
    update_second_moment,
)
from jadam._storage import Moments, floor_denominator
from jadam._validation import check_adam_hyperparameters, check_flag


def _default_clip(count: jax.Array) -> jax.Array:
    """The paper's clipping bound c_t = t^¼ (Section 4, "ADOPT with clipping")."""
    return jnp.asarray(count, jnp.result_type(float)) ** 0.25


def scale_by_adopt(
    b1: Any = 0.9,
    b2: Any = 0.9999,
    eps: Any = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _default_clip,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformation:
    """Scales gradients by ADOPT's momentum of normalised gradients (Algorithm 1 of the paper).

    v_0 = g_0²  (the first step only initialises v, its update is 0), then for t ≥ 1:
    m_t = β1·m_{t−1} + (1−β1)·clip(g_t / max(√v_{t−1}, ε), c_t),   u_t = m_t,
    v_t = β2·v_{t−1} + (1−β2)·g_t²,   with c_t = t^¼ (``clip_value_fn``).

    Dividing by v_{t−1}, which does not depend on g_t, is what gives ADOPT its convergence
    guarantee for any β2 (Taniguchi et al., Theorem 4.1); no bias correction is needed.

    Args:
      b1: β1 ∈ [0, 1).
      b2: β2 ∈ [0, 1) (paper and optax default 0.9999).
      eps: ε ≥ 0, the floor of √v_{t−1} (inside the max, as in the paper).
      mu_dtype: storage dtype of m_t (None: the parameter's dtype).
      nesterov: u_t = β1·m_t + (1−β1)·clip(...) (optax's option).
      use_clipping: clip the normalised gradient to ±c_t (the paper's stabilised variant).
      clip_value_fn: c_t as a function of the step index t (default t^¼).
      nu_dtype, state_precision: storage of the moments, see :func:`jadam.scale_by_adam`.

    Note: same state layout and numbers as ``optax.contrib.scale_by_adopt``; the first step's
    update is 0, as in the paper and optax. With ``state_precision`` the floor max(√v, ε) is
    also kept at or above what the stored v_{t−1} can resolve.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_adopt()
      >>> state = tx.init(jnp.zeros(2))
      >>> first, state = tx.update(jnp.array([3.0, -1.0]), state)
      >>> second, state = tx.update(jnp.array([3.0, -1.0]), state)
      >>> first, second  # the first step only initialises v; then (1−β1)·g/|g|
      (Array([0., 0.], dtype=float32), Array([ 0.1, -0.1], dtype=float32))

    Reference: Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any β2 with the
    Optimal Rate", NeurIPS 2024.
    """
    check_adam_hyperparameters(b1, b2, eps)
    check_flag("nesterov", nesterov)
    check_flag("use_clipping", use_clipping)
    if not callable(clip_value_fn):
        raise ValueError(f"clip_value_fn must be a callable of the step, got {clip_value_fn!r}.")
    moments = Moments(state_precision, mu_dtype, nu_dtype, count=2)

    def init_fn(params):
        return init_state(moments, params)

    def update_fn(updates, state, params=None):
        del params
        mu_prev, nu_prev = moments.read(updates, (state.mu, state.nu))
        started = state.count > 0
        b1_t = jnp.where(started, b1, 1.0)  # step 0 leaves m at 0
        b2_t = jnp.where(started, b2, 0.0)  # step 0 sets v to g²
        scale = floor_denominator(sqrt(nu_prev), state.nu, nu_prev)
        normalized = _normalize(updates, scale, eps)
        if use_clipping:
            bound = clip_value_fn(state.count)
            normalized = jax.tree.map(lambda x: jnp.clip(x, -bound, bound), normalized)
        mu = update_first_moment(normalized, mu_prev, b1_t)
        nu = update_second_moment(updates, nu_prev, b2_t)
        direction = update_first_moment(normalized, mu, b1_t) if nesterov else mu
        count = increment(state.count)
        stored_mu, stored_nu = moments.write((mu, nu), count)
        direction = jax.tree.map(lambda d, g: d.astype(g.dtype), direction, updates)
        return direction, ScaleByAdamState(count=count, mu=stored_mu, nu=stored_nu)

    return optax.GradientTransformation(init_fn, update_fn)


def _normalize(updates: Any, scale: Any, eps: Any) -> Any:
    """g / max(s, ε) in float32 (0 where s = ε = 0 and g = 0, never NaN)."""

    def leaf(g, s):
        denominator = jnp.maximum(s, jnp.asarray(eps, s.dtype))
        return safe_divide(upcast(g), denominator)

    return jax.tree.map(leaf, updates, scale)


def adopt(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.9999,
    eps: Any = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _default_clip,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """ADOPT: θ_t = θ_{t−1} − α·m_t. See :func:`scale_by_adopt`; optax's ``contrib.adopt``.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = adopt(1e-3)
      >>> state = tx.init({"w": jnp.zeros(2)})
    """
    scaling = scale_by_adopt(
        b1,
        b2,
        eps,
        mu_dtype,
        nesterov=nesterov,
        use_clipping=use_clipping,
        clip_value_fn=clip_value_fn,
        nu_dtype=nu_dtype,
        state_precision=state_precision,
    )
    return with_learning_rate(learning_rate, scaling)
