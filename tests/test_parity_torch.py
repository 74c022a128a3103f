"""jadam against torch.optim on a real training trajectory, in float64.

Gradients come from the same JAX loss for both; torch only applies its optimizer step.
"""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest
from problems import train, train_torch

import jadam

torch = pytest.importorskip("torch")


optim = torch.optim
SAME = {
    "adam": (jadam.adam(1e-2), lambda p: optim.Adam(p, lr=1e-2)),
    "adamw": (
        jadam.adamw(1e-2, weight_decay=0.1),
        lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    ),
    "adamax_eps0": (jadam.adamax(1e-2, eps=0.0), lambda p: optim.Adamax(p, lr=1e-2, eps=0.0)),
    "sgd_nesterov": (
        jadam.sgd(0.1, 0.9, nesterov=True),
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    ),
    "rmsprop": (
        jadam.rmsprop(1e-2, decay=0.99, eps_in_sqrt=False),
        lambda p: optim.RMSprop(p, lr=1e-2, alpha=0.99, eps=1e-8),
    ),
    "rmsprop_centered": (
        jadam.rmsprop(1e-2, decay=0.99, eps_in_sqrt=False, centered=True),
        lambda p: optim.RMSprop(p, lr=1e-2, alpha=0.99, eps=1e-8, centered=True),
    ),
    "adagrad": (  # ε = 0 removes torch's ε-outside vs optax's ε-inside difference
        jadam.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0),
        lambda p: optim.Adagrad(p, lr=0.1, eps=0.0),
    ),
    "adadelta": (jadam.adadelta(1.0), lambda p: optim.Adadelta(p, lr=1.0, rho=0.9, eps=1e-6)),
}


@pytest.mark.parametrize("name", list(SAME))
def test_matches_torch(x64, name):
    ours, theirs = SAME[name]
    chex.assert_trees_all_close(train(ours), train_torch(theirs), rtol=1e-10, atol=1e-12)


def test_torch_nadam_uses_a_momentum_schedule(x64):
    """torch's NAdam is Dozat's scheduled-momentum algorithm; jadam.nadam (like optax's) keeps
    β1 constant. The two agree at step 1 only in sign, and differ visibly after 100 steps."""
    ours = train(jadam.nadam(1e-2))
    theirs = train_torch(lambda p: optim.NAdam(p, lr=1e-2))
    difference = max(np.max(np.abs(ours[k] - theirs[k])) for k in ours)
    assert difference > 1e-4


def test_torch_amsgrad_takes_max_of_raw_second_moment(x64):
    """torch's amsgrad maxes the raw v_t then bias-corrects; jadam (like optax) maxes v̂_t."""
    ours = train(jadam.amsgrad(1e-2))
    theirs = train_torch(lambda p: optim.Adam(p, lr=1e-2, amsgrad=True))
    difference = max(np.max(np.abs(ours[k] - theirs[k])) for k in ours)
    assert difference > 1e-6


def test_adamax_eps_inside_the_max_in_torch(x64):
    """torch's Adamax uses max(β2·u, |g| + ε) like optax; jadam adds ε outside the max."""
    ours = train(jadam.adamax(1e-2, eps=1e-2))
    theirs = train_torch(lambda p: optim.Adamax(p, lr=1e-2, eps=1e-2))
    difference = max(np.max(np.abs(ours[k] - theirs[k])) for k in ours)
    assert difference > 1e-6


def test_adagrad_eps_placement_differs(x64):
    """torch divides by √s + ε, optax and jadam by √(s + ε)."""
    ours = train(jadam.adagrad(0.1, initial_accumulator_value=0.0, eps=1e-2))
    theirs = train_torch(lambda p: optim.Adagrad(p, lr=0.1, eps=1e-2))
    difference = max(np.max(np.abs(ours[k] - theirs[k])) for k in ours)
    assert difference > 1e-6


def test_numbers_agree_on_first_step_float32():
    """A float32 single-step check of the default Adam against torch (no x64)."""
    g = np.array([0.3, -2.0, 1e-4], np.float32)
    tx = jadam.adam(1e-3)
    updates, _ = tx.update(g, tx.init(np.zeros(3, np.float32)))
    p = torch.zeros(3, requires_grad=True)
    opt = optim.Adam([p], lr=1e-3)
    p.grad = torch.tensor(g)
    opt.step()
    np.testing.assert_allclose(np.asarray(jax.device_get(updates)), p.detach().numpy(), rtol=1e-6)
