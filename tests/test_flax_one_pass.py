"""jadam.flax.Optimizer / TrainState against Flax's own classes (the one-name switch).

Each test trains the same model with Flax's class and with jadam's, the same ``tx``, inside
``nnx.jit`` / ``jax.jit`` with the model, optimizer or train state donated, and compares
parameters, optimizer state and step counters leaf by leaf.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from flax.linen.fp8_ops import OVERWRITE_WITH_GRADIENT
from flax.training import train_state
from flax_models import MLP, LinenMLP, X, Y
from problems import assert_bitwise_equal

import jadam
import jadam.flax

STEPS = 4


# name -> factory of (fused) tx or its unfused twin. With a fused tx jadam's classes take the
# one pass, which must equal calling tx.apply_gradients directly bit for bit, and Flax's
# classes with the unfused twin to rounding: the kernel rounds θ + (−α)·d in its own way (on
# this CPU up to a few ulp of θ per step, then carried on by the gradients). Transformations
# without a one-pass step (optax's, jadam's unfused ones, a chain) must behave exactly as
# Flax's classes: bit for bit.
def _mask(params):
    return jax.tree.map(lambda x: x.ndim > 1, params)


TRANSFORMS = {
    "fused adam": lambda fused: jadam.adam(1e-2, fused=fused),
    "fused adamw masked": lambda fused: jadam.adamw(
        1e-2, weight_decay=0.1, mask=_mask, fused=fused
    ),
    "fused adamax": lambda fused: jadam.adamax(2e-3, fused=fused),
    "fused adam schedule": lambda fused: jadam.adam(
        optax.linear_schedule(1e-2, 1e-3, 3), fused=fused
    ),
    "fused adam bfloat16": lambda fused: jadam.adam(1e-2, state_precision="bfloat16", fused=fused),
    # The 4×16 hidden kernel in 8-bit blocks of 16 values; the smaller leaves stay float32.
    "fused adam 8bit": lambda fused: jadam.adam(
        1e-2, state_precision=jadam.Blockwise8bit(block_size=16, min_size=64), fused=fused
    ),
    "jadam adam": lambda fused: jadam.adam(1e-2),
    "optax adam": lambda fused: optax.adam(1e-2),
    "chain with fused adam": lambda fused: optax.chain(  # no one pass: Flax's path, same tx
        optax.clip_by_global_norm(1.0), jadam.adam(1e-2, fused=True)
    ),
}
# Kernels for low-precision state may round a few elements differently from XLA's pure path.
LOW_PRECISION = ("fused adam bfloat16", "fused adam 8bit")


# ---------------------------------------------------------------------------------------------
# NNX


def _loss(model):
    return jnp.mean((model(X) - Y) ** 2)


def _nnx_step(model, optimizer):
    """The whole training step, as a user jits it."""
    optimizer.update(model, nnx.grad(_loss)(model))


_nnx_grads = nnx.jit(nnx.grad(_loss))


def _nnx_run(model, optimizer, steps, whole_step=False):
    """``steps`` steps with model and optimizer donated.

    Unless ``whole_step``, the gradients come from a jit of their own, so that every
    optimizer sees the same gradients: XLA may fuse a gradient's last reduction into the
    optimizer's element-wise code, and round it differently, when they share one program.
    """
    if whole_step:
        step = nnx.jit(_nnx_step, donate_argnums=(0, 1))
    else:
        update = nnx.jit(lambda m, o, g: o.update(m, g), donate_argnums=(0, 1))
        step = lambda m, o: update(m, o, _nnx_grads(m))  # noqa: E731
    for _ in range(steps):
        step(model, optimizer)
    return model, optimizer


def _nnx_train(optimizer_class, tx, steps=STEPS, whole_step=False):
    model = MLP(nnx.Rngs(0))
    return _nnx_run(model, optimizer_class(model, tx, wrt=nnx.Param), steps, whole_step)


def _nnx_result(model, optimizer):
    return nnx.state(model, nnx.Param), nnx.state(optimizer)


def _assert_same_training(name, ours, theirs):
    """(params, opt_state, step) of jadam's class against Flax's with the unfused twin."""
    (params, opt_state, step, tx), (ref_params, ref_opt_state, ref_step) = ours, theirs
    if hasattr(tx, "unpack_state"):
        opt_state = tx.unpack_state(opt_state, params)
    assert int(step) == int(ref_step) == STEPS
    assert jax.tree.structure(opt_state) == jax.tree.structure(ref_opt_state)
    if not name.startswith("fused"):
        assert_bitwise_equal((params, opt_state), (ref_params, ref_opt_state))
    elif name in LOW_PRECISION:  # stored moments: compare what they mean through the params
        chex.assert_trees_all_close(params, ref_params, rtol=1e-5, atol=1e-6)
    else:
        chex.assert_trees_all_close(
            (params, opt_state), (ref_params, ref_opt_state), rtol=1e-5, atol=1e-6
        )


def _nnx_outcome(optimizer_class, tx):
    model, optimizer = _nnx_train(optimizer_class, tx)
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    outcome = (params, nnx.as_pure(optimizer.opt_state), optimizer.step[...])
    return (*outcome, tx) if optimizer_class is jadam.flax.Optimizer else outcome


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_nnx_optimizer_equals_flax_optimizer_unfused(name):
    ours = _nnx_outcome(jadam.flax.Optimizer, TRANSFORMS[name](True))
    _assert_same_training(name, ours, _nnx_outcome(nnx.Optimizer, TRANSFORMS[name](False)))


@pytest.mark.parametrize("name", [n for n in TRANSFORMS if n.startswith("fused")])
def test_nnx_optimizer_is_exactly_the_one_pass(name):
    tx = TRANSFORMS[name](True)
    ours = _nnx_outcome(jadam.flax.Optimizer, tx)
    model = MLP(nnx.Rngs(0))
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    state = tx.init(params)
    step = jax.jit(tx.apply_gradients, donate_argnums=(0, 2))
    for _ in range(STEPS):
        grads = nnx.as_pure(_nnx_grads(model))
        params, state = step(params, grads, state)
        nnx.update(model, params)
    assert_bitwise_equal(ours[:2], (params, state))


def test_nnx_whole_jitted_steps_agree_to_rounding():
    ours = _nnx_train(jadam.flax.Optimizer, jadam.adam(1e-2, fused=True), whole_step=True)
    theirs = _nnx_train(nnx.Optimizer, jadam.adam(1e-2), whole_step=True)
    chex.assert_trees_all_close(
        nnx.state(ours[0], nnx.Param), nnx.state(theirs[0], nnx.Param), rtol=1e-6, atol=1e-8
    )


class _Spy(optax.GradientTransformationExtraArgs):
    """adam whose ``apply_gradients`` counts its calls."""

    def apply_gradients(self, params, grads, state):
        self.calls.append("apply_gradients")
        updates, state = self.update(grads, state, params)
        return optax.apply_updates(params, updates), state


def _spy():
    inner = optax.adam(1e-2)
    calls = []

    def update(grads, state, params=None, **extra_args):
        calls.append("update" + ("+kwargs" if extra_args else ""))
        return inner.update(grads, state, params)

    spy = _Spy(inner.init, update)
    spy.calls = calls
    return spy


def test_nnx_update_takes_the_one_pass_and_returns_none():
    model = MLP(nnx.Rngs(0))
    tx = _spy()
    optimizer = jadam.flax.Optimizer(model, tx, wrt=nnx.Param)
    assert optimizer.update(model, nnx.grad(_loss)(model)) is None
    assert tx.calls == ["apply_gradients", "update"]  # the spy's own one pass calls update
    updates = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param).update(
        model, nnx.grad(_loss)(model)
    )
    assert jax.tree.structure(updates) == jax.tree.structure(
        nnx.as_pure(nnx.state(model, nnx.Param))
    )


def test_nnx_extra_args_take_the_standard_path():
    model = MLP(nnx.Rngs(0))
    tx = _spy()
    optimizer = jadam.flax.Optimizer(model, tx, wrt=nnx.Param)
    updates = optimizer.update(model, nnx.grad(_loss)(model), value=jnp.ones([]))
    assert tx.calls == ["update+kwargs"] and updates is not None


def test_nnx_wrt_filter_updates_only_the_selected_variables():
    model = MLP(nnx.Rngs(0))
    wrt = nnx.All(nnx.Param, nnx.PathContains("out"))
    optimizer = jadam.flax.Optimizer(model, jadam.adam(1e-2, fused=True), wrt=wrt)
    hidden_before = jax.tree.map(np.array, nnx.as_pure(nnx.state(model.hidden)))
    out_before = np.array(model.out.kernel[...])
    grads = nnx.grad(_loss, argnums=nnx.DiffState(0, wrt))(model)
    nnx.jit(lambda m, o, g: o.update(m, g))(model, optimizer, grads)
    assert_bitwise_equal(nnx.as_pure(nnx.state(model.hidden)), hidden_before)
    assert not np.array_equal(model.out.kernel[...], out_before)


def _hlo(optimizer_class, tx):
    model = MLP(nnx.Rngs(0))
    optimizer = optimizer_class(model, tx, wrt=nnx.Param)
    return nnx.jit(_nnx_step, donate_argnums=(0, 1)).lower(model, optimizer).as_text()


@pytest.mark.skipif(not jadam.fused_kernel_available(), reason="fused kernel not built")
def test_nnx_jitted_step_runs_the_one_pass_kernel():
    # The kernel's `apply` attribute: 1 = it writes θ (one pass), 0 = it writes the updates,
    # which a separate optax.apply_updates adds to θ (what Flax's own class does).
    ours = _hlo(jadam.flax.Optimizer, jadam.adam(1e-2, fused=True))
    theirs = _hlo(nnx.Optimizer, jadam.adam(1e-2, fused=True))
    assert "@jadam_fused_adam" in ours and "apply = 1" in ours and "apply = 0" not in ours
    assert "@jadam_fused_adam" in theirs and "apply = 0" in theirs and "apply = 1" not in theirs


def test_nnx_checkpoint_round_trip_resumes_identically(tmp_path):
    def fresh():
        model = MLP(nnx.Rngs(0))
        return model, jadam.flax.Optimizer(model, jadam.adam(1e-2, fused=True), wrt=nnx.Param)

    model, optimizer = _nnx_run(*fresh(), steps=2)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "ckpt", nnx.state((model, optimizer)))
    checkpointer.wait_until_finished()
    restored_model, restored_optimizer = fresh()
    target = nnx.state((restored_model, restored_optimizer))
    restored = checkpointer.restore(
        tmp_path / "ckpt", jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    )
    checkpointer.close()
    nnx.update((restored_model, restored_optimizer), restored)
    resumed = _nnx_run(restored_model, restored_optimizer, 2)
    uninterrupted = _nnx_run(model, optimizer, 2)
    assert_bitwise_equal(_nnx_result(*resumed), _nnx_result(*uninterrupted))
    assert int(resumed[1].step[...]) == 4


# ---------------------------------------------------------------------------------------------
# Linen


def _linen_state(state_class, tx):
    model = LinenMLP()
    params = model.init(jax.random.key(0), X)["params"]
    return state_class.create(apply_fn=model.apply, params=params, tx=tx)


@jax.jit
def _linen_loss_grads(state):
    return jax.grad(lambda p: jnp.mean((state.apply_fn({"params": p}, X) - Y) ** 2))(state.params)


def _linen_train(state, steps=STEPS):
    """``steps`` steps, the train state donated; gradients from their own jit (see _nnx_run)."""
    step = jax.jit(lambda s, g: s.apply_gradients(grads=g), donate_argnums=0)
    for _ in range(steps):
        state = step(state, _linen_loss_grads(state))
    return state


def _linen_outcome(state_class, tx):
    state = _linen_train(_linen_state(state_class, tx))
    assert type(state) is state_class
    outcome = (state.params, state.opt_state, state.step)
    return (*outcome, tx) if state_class is jadam.flax.TrainState else outcome


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_train_state_equals_flax_train_state_unfused(name):
    ours = _linen_outcome(jadam.flax.TrainState, TRANSFORMS[name](True))
    theirs = _linen_outcome(train_state.TrainState, TRANSFORMS[name](False))
    _assert_same_training(name, ours, theirs)


@pytest.mark.parametrize("name", [n for n in TRANSFORMS if n.startswith("fused")])
def test_train_state_is_exactly_the_one_pass(name):
    tx = TRANSFORMS[name](True)
    ours = _linen_outcome(jadam.flax.TrainState, tx)
    reference = _linen_state(train_state.TrainState, tx)
    params, state = reference.params, reference.opt_state
    step = jax.jit(tx.apply_gradients, donate_argnums=(0, 2))
    for _ in range(STEPS):
        grads = _linen_loss_grads(reference.replace(params=params))
        params, state = step(params, grads, state)
    assert_bitwise_equal(ours[:2], (params, state))


def test_train_state_takes_the_one_pass_and_replaces_extra_fields():
    tx = _spy()
    state = _linen_state(jadam.flax.TrainState, tx)
    new = state.apply_gradients(grads=_linen_loss_grads(state), apply_fn=None)
    assert tx.calls == ["apply_gradients", "update"] and new.apply_fn is None


def test_train_state_overwrite_with_gradient_as_flax():
    params = {"params": {"w": jnp.ones(3)}, OVERWRITE_WITH_GRADIENT: {"scale": jnp.ones([])}}
    grads = {
        "params": {"w": jnp.arange(3.0)},
        OVERWRITE_WITH_GRADIENT: {"scale": jnp.full([], 7.0)},
    }
    results = [
        cls.create(apply_fn=None, params=params, tx=jadam.adam(0.1, fused=True)).apply_gradients(
            grads=grads
        )
        for cls in (jadam.flax.TrainState, train_state.TrainState)
    ]
    assert_bitwise_equal(*[(r.params, r.opt_state) for r in results])


def test_train_state_checkpoint_round_trip_resumes_identically(tmp_path):
    tx = jadam.adam(1e-2, fused=True)
    state = _linen_train(_linen_state(jadam.flax.TrainState, tx), steps=2)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "ckpt", state)
    checkpointer.wait_until_finished()
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _linen_state(jadam.flax.TrainState, tx))
    restored = checkpointer.restore(tmp_path / "ckpt", target)
    checkpointer.close()
    resumed, uninterrupted = _linen_train(restored, 2), _linen_train(state, 2)
    assert_bitwise_equal(
        (resumed.step, resumed.params, resumed.opt_state),
        (uninterrupted.step, uninterrupted.params, uninterrupted.opt_state),
    )


def test_import_jadam_does_not_import_flax():
    code = "import sys, jadam; assert not any(m.split('.')[0] == 'flax' for m in sys.modules)"
    root = str(pathlib.Path(__file__).parents[1])  # this checkout's jadam
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": root})
