"""Shared test problems and the loops that run a transform (or torch.optim) over them.

- ``make_problem`` / ``train``: a one-hidden-layer classifier, float64, for the parity tests;
  ``train_torch`` runs torch.optim on the same trajectory.
- ``regression`` / ``train_regression``: a teacher-student regression for low-precision state.
- ``tiny_params`` / ``tiny_grads`` / ``run_steps``: a two-leaf tree for the contract suite.
- ``save_and_restore_orbax``: an orbax checkpoint round trip.
- ``raw_bits`` / ``assert_bitwise_equal``: trees compared bit for bit (NaN, −0.0 included).
- ``gradient_sequence`` / ``run_updates``: fixed gradient sequences fed to a transform under jit,
  for the comparisons with the NumPy transcriptions (reference*.py).
- ``figure_config``: a figure config of configs/ (its smoke variant by default), for the runner.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax


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
    params, grad_fn = make_problem(seed)
    params = jax.tree.map(jnp.asarray, params)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(steps):
        grads = jax.tree.map(jnp.asarray, grad_fn(jax.tree.map(np.asarray, params)))
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return jax.tree.map(np.asarray, params)


@contextlib.contextmanager
def torch_float64():
    """torch keeps scalar state (NAdam's μ-product, step) in the default dtype."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def train_torch(make_optimizer, steps: int = 100, seed: int = 0):
    """``train``'s trajectory with a torch.optim optimizer applying the step (float64)."""
    import torch

    params, grad_fn = make_problem(seed)
    tensors = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()
    }
    with torch_float64():
        optimizer = make_optimizer(list(tensors.values()))
        for _ in range(steps):
            grads = grad_fn({k: t.detach().numpy() for k, t in tensors.items()})
            for k, t in tensors.items():
                t.grad = torch.tensor(grads[k], dtype=torch.float64)
            optimizer.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


def regression():
    """A fixed teacher-student regression: tanh(X·W), 64 inputs, 32 outputs."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((256, 64)), jnp.float32)
    w_true = jnp.asarray(rng.standard_normal((64, 32)) / 8, jnp.float32)
    y = jnp.tanh(x @ w_true)

    def loss(params):
        return jnp.mean((jnp.tanh(x @ params["w"] + params["b"]) - y) ** 2)

    return loss, {"w": jnp.zeros((64, 32)), "b": jnp.zeros(32)}


def train_regression(tx, steps: int = 300):
    """``steps`` full-batch steps on ``regression`` in one jitted scan: (params, state, losses)."""
    loss, params = regression()

    @jax.jit
    def run(params):
        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        (params, state), losses = jax.lax.scan(step, (params, tx.init(params)), None, steps)
        return params, state, losses

    return run(params)


def tiny_params():
    """Two small leaves (a matrix and a vector): the contract suite's parameters."""
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25])}


def tiny_grads(step: int):
    """A gradient for ``tiny_params`` that changes with the step."""
    return jax.tree.map(lambda p: jnp.sin(p * (step + 1.0)) + 0.1 * step, tiny_params())


def run_steps(tx, update, steps: int = 3):
    """Feeds ``tiny_grads`` to ``update`` (tx.update or a jitted one): (params, state, updates)."""
    params = tiny_params()
    state = tx.init(params)
    out = []
    for step in range(steps):
        updates, state = update(tiny_grads(step), state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return params, state, out


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
    grads = jnp.asarray(grads, dtype)
    params = jnp.zeros(grads.shape[1:], dtype)

    @jax.jit
    def scan(grads):
        def step(state, g):
            updates, state = tx.update(g, state, params)
            return state, updates

        return jax.lax.scan(step, tx.init(params), grads)[1]

    return np.asarray(scan(grads))


def save_and_restore_orbax(path, tree, like):
    """Saves ``tree`` with orbax's StandardCheckpointer and restores it into the layout ``like``."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, tree)
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(path, like)
    checkpointer.close()
    return restored


def figure_config(name: str, arg: str = "smoke"):
    """configs/<name>.py loaded with ``arg`` (progress bars off), as the runner's tests use it."""
    from jadam.experiments.config_lib import load_config_file

    root = Path(__file__).resolve().parents[1]
    config = load_config_file(f"{root / 'configs' / name}.py:{arg}")
    if "progress" in config:
        config.progress = False
    return config


def raw_bits(tree):
    """Each leaf as (dtype, shape, raw bytes): equal means bit for bit (NaN, −0.0 included)."""
    return jax.tree.map(
        lambda x: (np.asarray(x).dtype.str, np.shape(x), np.asarray(x).tobytes()), tree
    )


def assert_bitwise_equal(ours, theirs):
    """Same tree structure and every leaf equal bit for bit."""
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    assert raw_bits(ours) == raw_bits(theirs)
