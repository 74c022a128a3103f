"""Step-size schedules of the paper's Section 4 convergence analysis."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax

from jadam import _validation as V


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
    V.check_non_negative("init_value", init_value)

    def schedule(count):
        return init_value / jnp.sqrt(jnp.asarray(count, jnp.result_type(float)) + 1)

    return schedule
