"""Adafactor (jadam._adafactor) against its NumPy transcription, optax and torch."""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference_successors as ref
from problems import train_regression

import jadam

TARGET = np.linspace(-1.0, 1.0, 30).reshape(6, 5)


def _grad(x):
    return np.cos(np.arange(30).reshape(6, 5)) * (x - TARGET) + 0.1 * np.sin(3 * x)


def _run(tx, steps, x0=None):
    x = jnp.asarray(np.full((6, 5), 0.5) if x0 is None else x0, jnp.result_type(float))
    state, xs = tx.init(x), []
    for _ in range(steps):
        updates, state = jax.jit(tx.update)(jnp.asarray(_grad(np.asarray(x)), x.dtype), state, x)
        x = optax.apply_updates(x, updates)
        xs.append(np.asarray(x))
    return np.stack(xs), state


def test_matches_the_paper_transcription_in_float64(x64):
    ours, state = _run(jadam.adafactor(1e-2, min_dim_size_to_factor=2), 40)
    chex.assert_trees_all_close(
        ours, ref.adafactor(_grad, np.full((6, 5), 0.5), 40, rho=1e-2), rtol=1e-6, atol=1e-9
    )
    assert state[0].v_row.shape == (5,) and state[0].v_col.shape == (6,)  # factored


@pytest.mark.parametrize(
    "options",
    [
        {"min_dim_size_to_factor": 2},
        {"min_dim_size_to_factor": 100},  # not factored: a full second moment
        {"momentum": 0.9, "weight_decay_rate": 0.1},
        {"clipping_threshold": None, "multiply_by_parameter_scale": False},
    ],
)
def test_matches_optax_bit_for_bit_and_keeps_its_state_layout(options):
    ours, state = _run(jadam.adafactor(1e-2, **options), 20)
    theirs, their_state = _run(optax.adafactor(1e-2, **options), 20)
    np.testing.assert_array_equal(ours, theirs)
    chex.assert_trees_all_equal_shapes_and_dtypes(
        jax.tree.leaves(state), jax.tree.leaves(their_state)
    )


def test_matches_torch_adafactor_with_its_relative_step():
    """torch's Adafactor: ρ_t = min(lr, 1/√t), d = 1, no momentum; its ε1 clamps V̂ instead of
    adding to G² (the same here: no gradient is near 0)."""
    torch = pytest.importorskip("torch")
    x0 = np.full((6, 5), 0.5, np.float32)
    tx = jadam.adafactor(lambda count: jnp.minimum(1e-2, 1 / jnp.sqrt(count + 1.0)),
                         min_dim_size_to_factor=1)  # fmt: skip
    ours, _ = _run(tx, 20, x0)
    param = torch.nn.Parameter(torch.tensor(x0))
    opt = torch.optim.Adafactor([param], lr=1e-2)
    theirs = []
    for _ in range(20):
        param.grad = torch.tensor(_grad(param.detach().numpy()).astype(np.float32))
        opt.step()
        theirs.append(param.detach().numpy().copy())
    np.testing.assert_allclose(ours, np.stack(theirs), rtol=2e-5, atol=1e-6)


def test_eight_bit_state_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="already O\\(rows \\+ columns\\)"):
        jadam.adafactor(1e-2, state_precision="8bit")
    with pytest.raises(ValueError, match="state_precision=Blockwise8bit"):
        jadam.scale_by_factored_rms(state_precision=jadam.Blockwise8bit())


def test_bfloat16_statistics_follow_float32():
    _, _, losses32 = train_regression(jadam.adafactor(3e-2, min_dim_size_to_factor=16))
    _, state, losses = train_regression(
        jadam.adafactor(3e-2, min_dim_size_to_factor=16, state_precision="bfloat16")
    )
    assert state[0].v_row["w"].dtype == jnp.bfloat16 and state[0].v["b"].dtype == jnp.bfloat16
    assert losses32[-1] < 0.3 * losses32[0]
    assert float(losses[-1]) == pytest.approx(float(losses32[-1]), rel=0.03)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_dim_size_to_factor": 0}, "min_dim_size_to_factor must be an int ≥ 1, got 0"),
        ({"eps": 0.0}, "epsilon must be in (0.0, inf), got 0.0"),
        ({"clipping_threshold": -1.0}, "clipping_threshold must be in (0.0, inf), got -1.0"),
        ({"momentum": 1.5}, "momentum must be in [0.0, 1.0), got 1.5"),
        ({"learning_rate": -1.0}, "learning_rate must be in [0.0, inf], got -1.0"),
    ],
)
def test_bad_hyperparameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        jadam.adafactor(**kwargs)


def test_update_without_params_is_a_clear_error():
    tx = jadam.scale_by_factored_rms()
    with pytest.raises(ValueError, match="needs params"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
