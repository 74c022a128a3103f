"""Step-size schedules of the paper's Section 4 convergence analysis."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jadam._validation import check_non_negative, check_range


def inverse_sqrt_schedule(init_value: Any) -> optax.Schedule:
    """Section 4's α_t = α/√t, as an optax schedule of the step count.

    optax counts steps from 0 while the paper's t starts at 1, so ``schedule(count)`` returns
    α/√(count + 1): the first update uses α, the t-th uses α/√t.

    Args:
      init_value: α ≥ 0.

    Example:
      >>> schedule = inverse_sqrt_schedule(0.1)
      >>> float(schedule(0)), float(schedule(3))
      (0.1, 0.05)
    """
    check_non_negative("init_value", init_value)

    def schedule(count):
        return init_value / jnp.sqrt(jnp.asarray(count, jnp.result_type(float)) + 1)

    return schedule


def decayed_b1_schedule(b1: Any, decay: Any) -> optax.Schedule:
    """Section 4's decaying first-moment rate β1,t = β1·λ^(t−1), as a schedule of the count.

    Theorem 4.1 assumes β1,t = β1·λ^(t−1) with λ ∈ (0, 1). As with
    :func:`inverse_sqrt_schedule`, ``schedule(count)`` is the value at the paper's t = count + 1.
    Pass the same β1 and λ to ``scale_by_adam(b1, b1_decay=λ)``, which also bias-corrects
    consistently (see :func:`decayed_b1_correction`).

    Args:
      b1: β1 ∈ [0, 1).
      decay: λ ∈ (0, 1]; λ = 1 keeps β1 constant.

    Example:
      >>> schedule = decayed_b1_schedule(0.9, 0.5)
      >>> [round(float(schedule(c)), 6) for c in range(3)]
      [0.9, 0.45, 0.225]
    """
    check_range("b1", b1, 0.0, 1.0)
    check_range("b1_decay", decay, 0.0, 1.0, low_inclusive=False, high_inclusive=True)

    def schedule(count):
        count = jnp.asarray(count, jnp.result_type(float))
        return b1 * jnp.asarray(decay, count.dtype) ** count

    return schedule


def decayed_b1_correction(b1: Any, decay: Any, count: Any) -> jax.Array:
    """1 − ∏_{τ=1..t} β1,τ = 1 − β1^t·λ^(t(t−1)/2), the bias correction under β1,t = β1·λ^(t−1).

    With a time-varying β1,t, m_t = Σ_τ (1−β1,τ)·∏_{k>τ} β1,k·g_τ, whose weights sum to
    1 − ∏_{τ≤t} β1,τ (Section 3's argument, redone). Using 1 − β1,t^t instead, as
    ``optax.inject_hyperparams`` with a β1 schedule does, over-corrects. ``count`` is the
    paper's t ≥ 1; computed as −expm1(t·ln β1 + t(t−1)/2·ln λ) in the default float dtype.

    Example:
      >>> round(float(decayed_b1_correction(0.9, 0.5, 2)), 6)  # 1 − 0.9·0.45
      0.595
    """
    t = jnp.asarray(count, jnp.result_type(float))
    b1 = jnp.asarray(b1, t.dtype)
    log_product = t * jnp.log(jnp.where(b1 == 0, 1.0, b1)) + t * (t - 1) / 2 * jnp.log(
        jnp.asarray(decay, t.dtype)
    )
    return jnp.where(b1 == 0, 1.0, -jnp.expm1(log_product))
