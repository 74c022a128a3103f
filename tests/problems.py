"""A small real training problem (a one-hidden-layer classifier) for the parity tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def make_problem(seed: int = 0):
    """Returns (params, grad_fn): float64 NumPy params and a NumPy → NumPy gradient function."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 8))
    labels = (x[:, 0] + x[:, 1] ** 2 > 0.5).astype(np.int64) + (x[:, 2] > 1.0)
    params = {
        "w1": rng.standard_normal((8, 16)) * 0.5,
        "b1": np.zeros(16),
        "w2": rng.standard_normal((16, 3)) * 0.5,
        "b2": np.zeros(3),
    }

    def loss(p):
        hidden = jnp.tanh(x @ p["w1"] + p["b1"])
        logits = hidden @ p["w2"] + p["b2"]
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))

    grad = jax.jit(jax.grad(loss))

    def grad_fn(p):
        return jax.tree.map(np.asarray, grad(jax.tree.map(jnp.asarray, p)))

    return params, grad_fn


def train(tx, steps: int = 100, seed: int = 0):
    """Runs an optax-style transform for ``steps`` steps (in float64); returns the params."""
    import optax

    params, grad_fn = make_problem(seed)
    params = jax.tree.map(jnp.asarray, params)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(steps):
        grads = jax.tree.map(jnp.asarray, grad_fn(jax.tree.map(np.asarray, params)))
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return jax.tree.map(np.asarray, params)
