"""RAdam, AdaBelief, Yogi, LAMB, NAdamW, AdamaxW against optax and torch.optim, in float64.

Same trajectory as test_parity_optax.py / test_parity_torch.py (problems.py); each documented
difference has a test that fails if the difference disappears.
"""

from __future__ import annotations

import chex
import jax
import numpy as np
import optax
import pytest
from problems import train, train_torch

import jadam

TOL = {"rtol": 1e-10, "atol": 1e-12}
STEPS = 40
optim = pytest.importorskip("torch").optim
DECAY_MASK = lambda p: {k: k[0] == "w" for k in p}  # noqa: E731

SAME_AS_OPTAX = {
    "radam": (jadam.radam(1e-2), optax.radam(1e-2)),
    "radam_nesterov_threshold": (
        jadam.radam(1e-2, threshold=6.0, nesterov=True),
        optax.radam(1e-2, threshold=6.0, nesterov=True),
    ),
    "adabelief": (jadam.adabelief(1e-2), optax.adabelief(1e-2)),
    "adabelief_nesterov": (
        jadam.adabelief(1e-2, eps=1e-8, eps_root=1e-10, nesterov=True),
        optax.adabelief(1e-2, eps=1e-8, eps_root=1e-10, nesterov=True),
    ),
    "yogi": (jadam.yogi(1e-2), optax.yogi(1e-2)),
    "lamb": (jadam.lamb(1e-2), optax.lamb(1e-2)),
    "lamb_decay_masked": (
        jadam.lamb(1e-2, weight_decay=0.1, mask=DECAY_MASK),
        optax.lamb(1e-2, weight_decay=0.1, mask=DECAY_MASK),
    ),
    "nadamw": (jadam.nadamw(1e-2, weight_decay=0.1), optax.nadamw(1e-2, weight_decay=0.1)),
    "adamaxw_eps0": (
        jadam.adamaxw(1e-2, eps=0.0, weight_decay=0.1),
        optax.adamaxw(1e-2, eps=0.0, weight_decay=0.1),
    ),
}

SAME_AS_TORCH = {
    "radam": (
        jadam.radam(1e-2, eps_form="eps_hat"),
        lambda p: optim.RAdam(p, lr=1e-2),
    ),
    "radam_l2": (
        jadam.radam(1e-2, eps_form="eps_hat", weight_decay=0.1),
        lambda p: optim.RAdam(p, lr=1e-2, weight_decay=0.1),
    ),
    "radam_decoupled": (
        jadam.radam(1e-2, eps_form="eps_hat", weight_decay=0.1, decoupled_weight_decay=True),
        lambda p: optim.RAdam(p, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
    ),
    "nadamw": (
        jadam.nadamw(1e-2, weight_decay=0.1, momentum_decay=0.004),
        lambda p: optim.NAdam(p, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
    ),
}


def _max_difference(ours, theirs):
    return max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in ours)


@pytest.mark.parametrize("name", list(SAME_AS_OPTAX))
def test_matches_optax(x64, name):
    ours, theirs = SAME_AS_OPTAX[name]
    chex.assert_trees_all_close(train(ours, steps=STEPS), train(theirs, steps=STEPS), **TOL)


@pytest.mark.parametrize("name", list(SAME_AS_TORCH))
def test_matches_torch(x64, name):
    ours, theirs = SAME_AS_TORCH[name]
    chex.assert_trees_all_close(train(ours, steps=STEPS), train_torch(theirs, steps=STEPS), **TOL)


def test_state_layouts_are_optax_ones():
    """Same NamedTuple fields and nesting: an optax state (checkpoint) loads into jadam's."""
    params = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}

    def layout(state):
        leaves = jax.tree_util.tree_flatten_with_path(state)[0]
        return [(jax.tree_util.keystr(path), np.shape(x), np.dtype(x.dtype)) for path, x in leaves]

    for ours, theirs in SAME_AS_OPTAX.values():
        assert layout(ours.init(params)) == layout(theirs.init(params))


def test_radam_eps_placement_differs_between_optax_and_torch(x64):
    """optax divides by √v̂_t + ε (jadam's default), torch by (√v_t + ε)/√(1−β2^t)."""
    ours = train(jadam.radam(1e-2, eps=1e-3), steps=STEPS)
    torch_run = train_torch(lambda p: optim.RAdam(p, lr=1e-2, eps=1e-3), steps=STEPS)
    chex.assert_trees_all_close(ours, train(optax.radam(1e-2, eps=1e-3), steps=STEPS), **TOL)
    assert _max_difference(ours, torch_run) > 1e-6


def test_adamaxw_eps_inside_the_max_in_optax(x64):
    """optax's adamaxw: u_t = max(β2·u, |g| + ε); jadam's: ε added to u_t, outside the max."""
    ours = train(jadam.adamaxw(1e-2, eps=1e-2), steps=STEPS)
    theirs = train(optax.adamaxw(1e-2, eps=1e-2), steps=STEPS)
    assert _max_difference(ours, theirs) > 1e-6


def test_torch_nadam_decoupled_is_not_optax_nadamw(x64):
    """torch's NAdam schedules β1 (ψ = 0.004); optax's nadamw keeps it constant."""
    ours = train(jadam.nadamw(1e-2, weight_decay=0.1), steps=STEPS)
    torch_nadamw = lambda p: optim.NAdam(  # noqa: E731
        p, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True
    )
    theirs = train_torch(torch_nadamw, steps=STEPS)
    assert _max_difference(ours, theirs) > 1e-4


def test_yogi_paper_form_differs_from_optax(x64):
    """Algorithm 2 as printed (m_0 = v_0 = 0, no bias correction) is not optax's yogi."""
    paper = train(jadam.yogi(1e-2, initial_accumulator_value=0.0, bias_correction=False), STEPS)
    assert _max_difference(paper, train(optax.yogi(1e-2), steps=STEPS)) > 1e-4


def test_yogi_zero_gradient_with_zero_start_is_zero_not_nan():
    """optax's yogi with v_0 = 0 and ε = 0 divides 0 by 0; jadam's update is 0."""
    g = np.zeros(2, np.float32)
    ours = jadam.scale_by_yogi(eps=0.0, initial_accumulator_value=0.0)
    theirs = optax.scale_by_yogi(eps=0.0, initial_accumulator_value=0.0)
    assert np.isnan(theirs.update(g, theirs.init(g))[0]).all()
    np.testing.assert_array_equal(ours.update(g, ours.init(g))[0], 0.0)
