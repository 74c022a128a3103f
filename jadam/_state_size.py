"""How many bytes an optimizer state occupies."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np


def state_nbytes(state: Any) -> int:
    """Total bytes of the arrays in ``state`` (any pytree; ``jax.ShapeDtypeStruct`` leaves count).

    Counts logical bytes (size × itemsize), the same on every device layout; a sharded array
    counts once, not once per shard. Non-array leaves (e.g. Python numbers) count 0.

    Example:
      >>> import jax.numpy as jnp, jadam
      >>> params = jnp.zeros(1000)
      >>> state_nbytes(jadam.scale_by_adam().init(params))  # count + two float32 moments
      8004
      >>> state_nbytes(jadam.scale_by_adam(state_precision="bfloat16").init(params))
      4004
    """

    def leaf_bytes(x: Any) -> int:
        shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
        if shape is None or dtype is None:
            return 0
        return math.prod(shape) * np.dtype(dtype).itemsize

    return sum(leaf_bytes(x) for x in jax.tree.leaves(state))
