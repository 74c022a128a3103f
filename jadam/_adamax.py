"""AdaMax (Kingma & Ba, 2015, Algorithm 2, Section 7.1): Adam with the infinity norm."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam import _primitives as P
from jadam import _validation as V
from jadam._alias import with_learning_rate
from jadam._fused import fused_adamax


class ScaleByAdamaxState(NamedTuple):
    """State of :func:`scale_by_adamax`: step count t, m_t and the infinity norm u_t."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_adamax(
    b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8
) -> optax.GradientTransformation:
    """Scales gradients by AdaMax's m̂_t / u_t (Algorithm 2, lines 6-11).

    m_t = β1·m_{t−1} + (1−β1)·g_t,   u_t = max(β2·u_{t−1}, |g_t|),   out = m_t/((1−β1^t)·(u_t + ε)).

    Args:
      b1: β1 ∈ [0, 1).
      b2: β2 ∈ [0, 1).
      eps: ε ≥ 0, added to u_t outside the max; 0 gives Algorithm 2 exactly.

    Note: the paper has no ε; optax and torch put it inside the max, u_t = max(β2·u_{t−1},
    |g_t| + ε). jadam keeps the paper's u_t in the state and adds ε only to the divisor, so with
    ε = 0 it is Algorithm 2. Where u_t + ε = 0 (all past gradients 0) the update is 0, not 0/0.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_adamax(eps=0.0)
      >>> updates, state = tx.update(jnp.array([0.5, -2.0, 0.0]), tx.init(jnp.zeros(3)))
      >>> updates.round(5)
      Array([ 1., -1.,  0.], dtype=float32)
    """
    V.check_range("b1", b1, 0.0, 1.0)
    V.check_range("b2", b2, 0.0, 1.0)
    V.check_non_negative("eps", eps)

    def init_fn(params):
        return ScaleByAdamaxState(
            count=jnp.zeros([], jnp.int32),
            mu=P.zeros_like(params),
            nu=P.zeros_like(params, real=True),
        )

    def update_fn(updates, state, params=None):
        del params
        V.check_tree_matches(updates, state.mu)
        count = P.increment(state.count)
        mu = P.update_first_moment(updates, state.mu, b1)
        nu = P.update_infinity_norm(updates, state.nu, b2)
        mu_hat = P.bias_correction(mu, b1, count)
        direction = P.normalize(mu_hat, nu, eps, like=updates)
        return direction, ScaleByAdamaxState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adamax(
    learning_rate: Any = 0.002,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    fused: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """AdaMax, Algorithm 2: θ_t = θ_{t−1} − (α/(1−β1^t))·m_t/(u_t + ε); paper default α = 0.002.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = adamax()
      >>> updates, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
      >>> updates
      Array([-0.002], dtype=float32)
    """
    tx = with_learning_rate(learning_rate, scale_by_adamax(b1, b2, eps))
    return fused_adamax(tx, learning_rate, b1, b2, eps) if fused else tx
