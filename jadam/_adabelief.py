"""AdaBelief (Zhuang et al., 2020, Algorithm 2): Adam with the variance of g_t around m_t."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from jadam._alias import with_learning_rate
from jadam._family import adam_direction, corrected_first_moment, init_state, step_moments
from jadam._primitives import (
    abs_sq,
    cast,
    compute_dtype,
    ema,
    map_moment,
    one_minus_power,
    plus_scalar,
)
from jadam._storage import Moments
from jadam._validation import check_adam_hyperparameters, check_flag


class ScaleByBeliefState(NamedTuple):
    """State of :func:`scale_by_belief`: count t, m_t and s_t (optax's field names)."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def update_belief(updates: Any, mu: Any, nu: Any, decay: Any, eps_root: Any) -> Any:
    """s_t = β2·s_{t−1} + (1−β2)·|g_t − m_t|² + ε_root (Algorithm 2, line 7)."""

    def leaf(g, s, m):
        error = cast(g, compute_dtype(g.dtype)) - cast(m, compute_dtype(m.dtype))
        return plus_scalar(ema(s, cast(abs_sq(error), s.dtype), decay), eps_root)

    return map_moment(leaf, updates, nu, mu, nonnegative=True)


def scale_by_belief(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-16,
    eps_root: Any = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformation:
    """Scales gradients by AdaBelief's m̂_t / (√ŝ_t + ε) (Zhuang et al., 2020, Algorithm 2).

    m_t = β1·m_{t−1} + (1−β1)·g_t,   s_t = β2·s_{t−1} + (1−β2)·(g_t − m_t)² + ε_root,
    m̂_t = m_t/(1−β1^t),   ŝ_t = s_t/(1−β2^t),   u_t = m̂_t / (√ŝ_t + ε).

    Args:
      b1: β1 ∈ [0, 1).
      b2: β2 ∈ [0, 1).
      eps: ε ≥ 0, outside the root (Algorithm 2's second ε).
      eps_root: ε_root ≥ 0, added to s_t at every step and stored with it (Algorithm 2's first
        ε, line 7). The paper uses one ε for both; optax and the authors' code split it.
      nesterov: Dozat's Nesterov momentum for m̂_t, as optax's ``nesterov=True``.
      mu_dtype, nu_dtype, state_precision: storage of m_t and s_t, see :func:`jadam.scale_by_adam`.

    Note: ε_root accumulates in s_t: ŝ_t holds ε_root·(1−β2^t)/((1−β2)(1−β2^t)) = ε_root/(1−β2),
    1000·ε_root for β2 = 0.999, so it weighs more than an ε added once under the root. This is
    the paper's line 7, optax's and the authors' code; jadam keeps it. The authors' PyTorch
    package also rectifies (RAdam's r_t) and decouples weight decay by default; the paper's
    Algorithm 2, optax and jadam do neither (use ``optax.add_decayed_weights`` for the decay).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_belief()
      >>> updates, state = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
      >>> updates.round(4)  # s_1 = (1−β2)(g − 0.1g)², so the first step is sign(g)/0.9
      Array([ 1.1111, -1.1111], dtype=float32)

    Reference: Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
    Gradients", NeurIPS 2020.
    """
    check_adam_hyperparameters(b1, b2, eps, eps_root)
    check_flag("nesterov", nesterov)
    moments = Moments(state_precision, mu_dtype, nu_dtype, count=2)

    def init_fn(params):
        return init_state(moments, params, ScaleByBeliefState)

    def belief(updates, mu, nu):
        return update_belief(updates, mu, nu, b2, eps_root)

    def update_fn(updates, state, params=None):
        del params
        step = step_moments(moments, updates, state, b1, update_nu=belief)
        mu_hat = corrected_first_moment(updates, step.mu, b1, step.count, nesterov)
        correction = one_minus_power(b2, step.count)  # ε_root is already in s_t (line 7)
        direction = adam_direction(
            mu_hat, step.nu, correction, updates, eps=eps, stored_nu=step.stored_nu
        )
        return direction, ScaleByBeliefState(step.count, step.stored_mu, step.stored_nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adabelief(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-16,
    eps_root: Any = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """AdaBelief: θ_t = θ_{t−1} − α·m̂_t/(√ŝ_t + ε); optax's ``adabelief``. See
    :func:`scale_by_belief`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = adabelief(1e-3, state_precision="bfloat16")
      >>> state = tx.init({"w": jnp.zeros(4)})
    """
    scaling = scale_by_belief(
        b1,
        b2,
        eps,
        eps_root,
        nesterov=nesterov,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
        state_precision=state_precision,
    )
    return with_learning_rate(learning_rate, scaling)
