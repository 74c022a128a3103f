"""The small Flax models (NNX and Linen, same architecture) and data of the Flax tests.

``MLP`` / ``LinenMLP``: 4 → 16 (ReLU) → 1, trained on ``X`` → ``Y`` (8 examples, a smooth
regression target) by test_flax.py (jadam inside Flax's classes against optax) and
test_flax_one_pass.py (jadam.flax's classes against Flax's).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen, nnx

X = jnp.linspace(-1.0, 1.0, 32).reshape(8, 4)
Y = jnp.sin(X.sum(axis=1, keepdims=True))


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(4, 16, rngs=rngs)
        self.out = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(1)(jax.nn.relu(linen.Dense(16)(x)))
