"""AMSGrad (Reddi, Kale & Kumar, 2018): Adam with a non-decreasing second moment."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam import _primitives as P
from jadam import _validation as V
from jadam._adam import validate_adam_hyperparameters
from jadam._alias import with_learning_rate


class ScaleByAmsgradState(NamedTuple):
    """State of :func:`scale_by_amsgrad`: count t, m_t, v_t and max_{τ≤t} v̂_τ."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates


def scale_by_amsgrad(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    """Scales gradients by m̂_t / (√v̂max_t + ε), v̂max_t = max(v̂max_{t−1}, v̂_t).

    m̂_t, v̂_t as in Algorithm 1 (lines 7-10); the running max of the bias-corrected v̂_t is
    optax's convention.

    Note: torch (``amsgrad=True``) takes the max of the raw v_t and bias-corrects afterwards,
    which differs once 1−β2^t changes between steps; Reddi et al. use no bias correction.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_amsgrad()
      >>> updates, state = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> state.nu_max
      Array([4.], dtype=float32)
    """
    validate_adam_hyperparameters(b1, b2, eps, eps_root)
    V.check_dtype("mu_dtype", mu_dtype)

    def init_fn(params):
        return ScaleByAmsgradState(
            count=jnp.zeros([], jnp.int32),
            mu=P.zeros_like(params, mu_dtype),
            nu=P.zeros_like(params, real=True),
            nu_max=P.zeros_like(params, real=True),
        )

    def update_fn(updates, state, params=None):
        del params
        V.check_tree_matches(updates, state.mu)
        count = P.increment(state.count)
        mu = P.update_first_moment(updates, state.mu, b1)
        nu = P.update_second_moment(updates, state.nu, b2)
        nu_hat = P.bias_correction(nu, b2, count)
        nu_max = jax.tree.map(
            lambda m, v: P.saturating_cast(jnp.maximum(m, v), m.dtype), state.nu_max, nu_hat
        )
        mu_hat = P.bias_correction(mu, b1, count)
        direction = P.normalize(mu_hat, P.sqrt(nu_max, eps_root), eps, like=updates)
        return direction, ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return optax.GradientTransformation(init_fn, update_fn)


def amsgrad(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """AMSGrad: θ_t = θ_{t−1} − α·m̂_t/(√v̂max_t + ε). See :func:`scale_by_amsgrad`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = amsgrad(1e-3)
      >>> state = tx.init({"w": jnp.zeros(2)})
    """
    return with_learning_rate(learning_rate, scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype))
