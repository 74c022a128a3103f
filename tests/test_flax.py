"""jadam inside Flax training steps (NNX Optimizer, Linen TrainState) matches optax."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax
import optax.contrib
import pytest
from flax import nnx
from flax.training import train_state
from flax_models import MLP, LinenMLP, X, Y

import jadam

# jadam's float32 bias correction is exact where optax's 1 − β2^t is off by up to 1.3e-5
# (relative), so each step may differ by ~1.3e-5·α = 1.3e-7; over 20 steps up to ~3e-6 (seen
# on an H100, whose matmuls round differently from the CPU's).
ATOL = 1e-5
PAIRS = [
    (jadam.adam(1e-2), optax.adam(1e-2)),
    (jadam.adamax(2e-3), optax.adamax(2e-3)),  # ε conventions differ by ~1e-8 here
    (jadam.adamw(1e-2, weight_decay=0.1), optax.adamw(1e-2, weight_decay=0.1)),
    # β2 = 0.9: optax's float32 1 − β2^t (and so ρ_t) is accurate there; for β2 = 0.999 its
    # ρ_6 is 5.955 instead of 5.994, a 2 % larger r_6 than jadam's exact one.
    (jadam.radam(1e-2, b2=0.9), optax.radam(1e-2, b2=0.9)),
    (jadam.adabelief(1e-2), optax.adabelief(1e-2)),
    (jadam.yogi(1e-2), optax.yogi(1e-2)),
    (jadam.lamb(1e-2, weight_decay=0.1), optax.lamb(1e-2, weight_decay=0.1)),
    (jadam.adopt(1e-2), optax.contrib.adopt(1e-2)),
    (jadam.ademamix(1e-2), optax.contrib.ademamix(1e-2)),
    (jadam.adafactor(1e-2), optax.adafactor(1e-2)),
]
IDS = ["adam", "adamax", "adamw", "radam", "adabelief", "yogi", "lamb"]
IDS += ["adopt", "ademamix", "adafactor"]


def _nnx_train(tx, steps=20):
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        grads = nnx.grad(lambda m: jnp.mean((m(X) - Y) ** 2))(model)
        optimizer.update(model, grads)

    for _ in range(steps):
        step(model, optimizer)
    return nnx.state(model, nnx.Param)


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=IDS)
def test_nnx_optimizer_step_matches_optax(ours, theirs):
    chex.assert_trees_all_close(_nnx_train(ours), _nnx_train(theirs), rtol=2e-5, atol=ATOL)


def _linen_train(tx, steps=20):
    model = LinenMLP()
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(jax.random.key(0), X)["params"], tx=tx
    )

    @jax.jit
    def step(state):
        loss = lambda p: jnp.mean((state.apply_fn({"params": p}, X) - Y) ** 2)  # noqa: E731
        return state.apply_gradients(grads=jax.grad(loss)(state.params))

    for _ in range(steps):
        state = step(state)
    return state.params


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=IDS)
def test_linen_train_state_matches_optax(ours, theirs):
    chex.assert_trees_all_close(_linen_train(ours), _linen_train(theirs), rtol=2e-5, atol=ATOL)
