"""NAdam with Dozat's (2016) momentum schedule, as torch's ``NAdam`` and Keras's ``Nadam``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam._family import adam_direction, step_moments
from jadam._primitives import map_leaves, one_minus_power, upcast
from jadam._storage import Moments
from jadam._validation import check_adam_hyperparameters, check_non_negative


class ScaleByNadamState(NamedTuple):
    """State of :func:`scale_by_nadam`: count t, m_t, v_t and the product ∏_{τ≤t} μ_τ."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    mu_product: jax.Array


def momentum_cache(b1: Any, momentum_decay: Any, count: Any) -> jax.Array:
    """Dozat's momentum schedule μ_t = β1·(1 − ½·0.96^(t·ψ)), ``count`` the paper's t ≥ 1."""
    t = jnp.asarray(count, jnp.result_type(float))
    return b1 * (1.0 - 0.5 * jnp.asarray(0.96, t.dtype) ** (t * momentum_decay))


def scale_by_nadam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    momentum_decay: Any = 0.004,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
    """NAdam with a momentum schedule (Dozat, 2016, Algorithm 2), as torch and Keras run it.

    μ_t = β1·(1 − ½·0.96^(t·ψ)),   Π_t = ∏_{τ≤t} μ_τ,   m_t, v_t as Algorithm 1 (constant β1),
    u_t = [(1−μ_t)/(1−Π_t)·g_t + μ_{t+1}/(1−Π_t·μ_{t+1})·m_t] / (√(v_t/(1−β2^t)) + ε).

    Args:
      b1: β1 ∈ [0, 1), the asymptotic momentum and the decay of m_t.
      b2: β2 ∈ [0, 1).
      eps: ε ≥ 0, outside the root (Algorithm 1's form).
      momentum_decay: ψ ≥ 0. 0.004 = 1/250 is Dozat's and torch's ``NAdam`` default; 1 is
        Keras's ``Nadam`` (μ_t = β1·(1 − ½·0.96^t)).
      mu_dtype: storage dtype of m_t.

    Note: the Adam paper has no NAdam; optax's constant-β1 form is :func:`jadam.nadam`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_nadam()
      >>> updates, state = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
      >>> round(float(state.mu_product), 6), round(0.9 * (1 - 0.5 * 0.96**0.004), 6)
      (0.450073, 0.450073)
    """
    check_adam_hyperparameters(b1, b2, eps)
    check_non_negative("momentum_decay", momentum_decay)
    moments = Moments(None, mu_dtype, None, count=2)

    def init_fn(params):
        mu, nu = moments.init(params)
        product = jnp.ones([], jnp.result_type(float))
        return ScaleByNadamState(jnp.zeros([], jnp.int32), mu, nu, mu_product=product)

    def update_fn(updates, state, params=None):
        del params
        step = step_moments(moments, updates, state, b1, b2)
        mu_t = momentum_cache(b1, momentum_decay, step.count)
        mu_next = momentum_cache(b1, momentum_decay, step.count + 1)
        mu_product = state.mu_product * mu_t.astype(state.mu_product.dtype)
        grad_weight = (1 - mu_t) / (1 - mu_product)
        momentum_weight = mu_next / (1 - mu_product * mu_next)

        def blend(g, m):
            g, m = upcast(g), upcast(m)
            return grad_weight.astype(m.dtype) * g + momentum_weight.astype(m.dtype) * m

        numerator = map_leaves(blend, updates, step.mu)
        correction = one_minus_power(b2, step.count)
        direction = adam_direction(numerator, step.nu, correction, updates, eps=eps)
        new_state = ScaleByNadamState(step.count, step.mu, step.nu, mu_product=mu_product)
        return direction, new_state

    return optax.GradientTransformation(init_fn, update_fn)
