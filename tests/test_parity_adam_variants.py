"""Variant presets against the libraries they claim to match (optax, torch), in float64."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import torch_float64, train, train_torch

import jadam

torch = pytest.importorskip("torch")

TIGHT = {"rtol": 1e-12, "atol": 1e-12}
STEPS = 50  # training steps per comparison


def run_torch(make_optimizer):
    return train_torch(make_optimizer, steps=STEPS)


def train_jax(tx):
    return train(tx, steps=STEPS)


def test_amsgrad_max_of_corrected_matches_optax(x64):
    ours = train_jax(jadam.amsgrad(1e-2, variant="max_of_corrected"))
    chex.assert_trees_all_close(ours, train_jax(optax.amsgrad(1e-2)), **TIGHT)


def test_amsgrad_max_of_raw_matches_torch(x64):
    ours = train_jax(jadam.amsgrad(1e-2, variant="max_of_raw"))
    theirs = run_torch(lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True))
    chex.assert_trees_all_close(ours, theirs, **TIGHT)


def test_amsgrad_anchors_disagree_with_each_other(x64):
    """Why the switch exists: optax's and torch's AMSGrad are different algorithms."""
    optax_like = train_jax(jadam.amsgrad(1e-2))
    torch_like = train_jax(jadam.amsgrad(1e-2, variant="max_of_raw"))
    assert max(np.max(np.abs(optax_like[k] - torch_like[k])) for k in optax_like) > 1e-3


def test_nadam_constant_b1_matches_optax(x64):
    chex.assert_trees_all_close(train_jax(jadam.nadam(1e-2)), train_jax(optax.nadam(1e-2)), **TIGHT)


@pytest.mark.parametrize("momentum_decay", [0.004, 0.1])
def test_nadam_momentum_schedule_matches_torch(x64, momentum_decay):
    ours = train_jax(jadam.nadam(1e-2, momentum_decay=momentum_decay))
    theirs = run_torch(lambda p: torch.optim.NAdam(p, lr=1e-2, momentum_decay=momentum_decay))
    chex.assert_trees_all_close(ours, theirs, **TIGHT)


def test_nadam_keras_schedule_is_torch_formula_with_unit_decay(x64):
    """Keras's Nadam uses μ_t = β1(1 − ½·0.96^t): torch's formula with momentum_decay = 1."""
    ours = train_jax(jadam.nadam(1e-2, eps=1e-7, momentum_decay=1.0))
    theirs = run_torch(lambda p: torch.optim.NAdam(p, lr=1e-2, eps=1e-7, momentum_decay=1.0))
    chex.assert_trees_all_close(ours, theirs, **TIGHT)


def test_lazy_adam_eps_hat_matches_torch_sparse_adam(x64):
    """(indices, rows) gradients on an embedding table, against torch.optim.SparseAdam."""
    rng = np.random.default_rng(0)
    rows, cols, steps = 50, 4, 30
    table0 = rng.standard_normal((rows, cols))
    opt = jadam.sparse_lazy_adam(1e-2, eps_form="eps_hat")
    step = jax.jit(opt.step)
    table = jnp.asarray(table0)
    state = opt.init(table)
    weight = torch.tensor(table0, requires_grad=True)
    with torch_float64():
        torch_opt = torch.optim.SparseAdam([weight], lr=1e-2)
        for _ in range(steps):
            indices = rng.integers(0, rows, size=8)  # with duplicates
            values = rng.standard_normal((8, cols))
            table, state = step(table, state, jnp.asarray(indices), jnp.asarray(values))
            weight.grad = torch.sparse_coo_tensor(
                torch.tensor(indices)[None],
                torch.tensor(values),
                (rows, cols),
                check_invariants=True,
            )
            torch_opt.step()
    chex.assert_trees_all_close(np.asarray(table), weight.detach().numpy(), **TIGHT)


def test_optax_inject_hyperparams_corrects_decaying_b1_with_its_current_value(x64):
    """optax with a β1 schedule divides by 1 − β1,t^t; jadam by 1 − ∏ β1,τ (Section 4)."""
    b1, decay = 0.9, 0.9
    schedule = jadam.decayed_b1_schedule(b1, decay)
    theirs = optax.inject_hyperparams(optax.scale_by_adam)(b1=schedule, eps=0.0)
    ours = jadam.scale_by_adam(b1=b1, b1_decay=decay, eps=0.0)
    g = jnp.full(3, 2.0)  # constant gradient: the consistent correction gives m̂_t = g exactly
    s_theirs, s_ours = theirs.init(g), ours.init(g)
    for _ in range(4):
        u_theirs, s_theirs = theirs.update(g, s_theirs)
        u_ours, s_ours = ours.update(g, s_ours)
    chex.assert_trees_all_close(u_ours, jnp.ones(3), rtol=1e-14)
    product = np.prod([b1 * decay**k for k in range(4)])
    b1_4 = b1 * decay**3
    np.testing.assert_allclose(u_theirs, (1 - product) / (1 - b1_4**4), rtol=1e-12)
