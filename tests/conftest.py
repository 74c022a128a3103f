"""Shared test helpers: gradient sequences and a runner that feeds them to a transform."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest


def gradient_sequence(kind: str, steps: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Deterministic gradient sequences of shape (steps, size).

    kinds: "dense" (Gaussian, scales spanning 1e-3..1e3 across coordinates), "sparse" (each
    coordinate non-zero with probability 5%), "zeros" (as dense, with coordinates 0 and 1 always
    exactly zero).
    """
    rng = np.random.default_rng(seed)
    scales = np.logspace(-3, 3, size)
    grads = rng.standard_normal((steps, size)) * scales
    if kind == "sparse":
        grads *= rng.random((steps, size)) < 0.05
    elif kind == "zeros":
        grads[:, :2] = 0.0
    elif kind != "dense":
        raise ValueError(f"unknown gradient sequence kind {kind!r}")
    return grads


def run_updates(tx: optax.GradientTransformation, grads: np.ndarray, dtype) -> np.ndarray:
    """Feeds each row of ``grads`` to ``tx.update`` under jit (lax.scan); returns the updates."""
    grads = jax.numpy.asarray(grads, dtype)
    params = jax.numpy.zeros(grads.shape[1:], dtype)

    @jax.jit
    def scan(grads):
        def step(state, g):
            updates, state = tx.update(g, state, params)
            return state, updates

        return jax.lax.scan(step, tx.init(params), grads)[1]

    return np.asarray(scan(grads))


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield
