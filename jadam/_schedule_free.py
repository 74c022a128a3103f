"""Schedule-free optimisation (Defazio et al., 2024): no learning-rate schedule, averaged iterates.

The user's parameters are y_t = (1−β1)·z_t + β1·x_t, where gradients are evaluated; z_t follows
the base optimizer's steps and x_t, the running average of z weighted by γ_t^p, is what to
evaluate. :func:`schedule_free_eval_params` turns the training parameters into x_t.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jadam._alias import with_learning_rate
from jadam._baselines import ScaleByRmsWithCountState
from jadam._family import adam_direction
from jadam._primitives import increment, one_minus_power, upcast, update_second_moment
from jadam._storage import Moments
from jadam._validation import (
    check_dtype,
    check_learning_rate,
    check_non_negative,
    check_range,
)


class ScheduleFreeState(NamedTuple):
    """State of :func:`schedule_free` (optax's field names and order).

    b1: β1; weight_sum: Σ_{i≤t} max_lr_i^p; step_count: t + 1 (starts at 1, as optax);
    max_lr: the largest learning rate so far; base_optimizer_state; z: the base iterate z_t.
    """

    b1: jax.Array
    weight_sum: jax.Array
    step_count: jax.Array
    max_lr: jax.Array
    base_optimizer_state: optax.OptState
    z: optax.Params


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    """x_t = (y_t − (1−β1)·z_t)/β1: the averaged parameters to evaluate (Defazio et al., eq. 1).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = schedule_free_adamw(1.0, b1=0.5)
      >>> params = jnp.ones(2)
      >>> schedule_free_eval_params(tx.init(params), params)
      Array([1., 1.], dtype=float32)
    """
    b1, z = getattr(state, "b1", None), getattr(state, "z", None)
    if b1 is None or z is None:
        raise ValueError(
            f"schedule_free_eval_params needs a ScheduleFreeState, got {type(state).__name__}."
        )
    return jax.tree.map(lambda y, zi: (y - (1.0 - b1) * zi) / b1, params, z)


def _replicated_scalar(value: Any, dtype: Any, params: Any) -> jax.Array:
    """A new scalar buffer, replicated over the parameters' mesh when they have one (eagerly;
    under jit the partitioner replicates constants itself)."""
    scalar = jnp.array(value, dtype)  # a copy: an injected hyperparameter keeps its own buffer
    for leaf in jax.tree.leaves(params):
        sharding = getattr(leaf, "sharding", None)
        if isinstance(leaf, jax.Array) and isinstance(sharding, NamedSharding):
            return jax.device_put(scalar, NamedSharding(sharding.mesh, PartitionSpec()))
    return scalar


def _learning_rate(learning_rate: Any, step: jax.Array, dtype: Any) -> jax.Array:
    value = learning_rate(step) if callable(learning_rate) else learning_rate
    return jnp.asarray(value, dtype)


def schedule_free(
    base_optimizer: optax.GradientTransformation,
    learning_rate: Any,
    b1: Any = 0.9,
    weight_lr_power: Any = 2.0,
    state_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Makes ``base_optimizer`` schedule-free (Defazio et al., 2024, Algorithm 1).

    z_{t+1} = z_t + Δ_t (Δ_t the base optimizer's update at y_t),
    c_{t+1} = γ_t^p / Σ_{i≤t} γ_i^p (γ_t the largest learning rate so far, p = weight_lr_power),
    x_{t+1} = (1−c_{t+1})·x_t + c_{t+1}·z_{t+1},   y_{t+1} = (1−β1)·z_{t+1} + β1·x_{t+1}.
    The parameters are y; the update returned is y_{t+1} − y_t.

    Args:
      base_optimizer: the step on z (it must include −learning_rate, e.g. a jadam alias).
      learning_rate: γ, a number or a schedule (the same one the base optimizer uses).
      b1: β1 ∈ (0, 1], the interpolation between z and x (β1 = 1: plain averaging of z).
      weight_lr_power: p ≥ 0.
      state_dtype: dtype of z (None: the parameters').

    Note: same state and numbers as ``optax.contrib.schedule_free``, including its weights
    from the largest learning rate so far (the paper uses γ_t itself, equal for warm-up
    followed by a constant rate).

    Example:
      >>> import jax.numpy as jnp, jadam
      >>> tx = schedule_free(jadam.sgd(0.5), 0.5)
      >>> updates, state = tx.update(jnp.ones(1), tx.init(jnp.zeros(1)), jnp.zeros(1))
      >>> updates  # z = −0.5, c_1 = 1 so x = z, y = z
      Array([-0.5], dtype=float32)
    """
    check_learning_rate(learning_rate)
    check_range("b1", b1, 0.0, 1.0, low_inclusive=False, high_inclusive=True)
    check_non_negative("weight_lr_power", weight_lr_power)
    check_dtype("state_dtype", state_dtype)
    base_optimizer = optax.with_extra_args_support(base_optimizer)

    def init_fn(params):
        dtype = optax.tree.dtype(params, "lowest")
        z = params if state_dtype is None else optax.tree.cast(params, state_dtype)
        return ScheduleFreeState(
            b1=_replicated_scalar(b1, dtype, params),
            weight_sum=_replicated_scalar(0.0, dtype, params),
            step_count=jnp.ones([], jnp.int32),
            max_lr=_replicated_scalar(0.0, dtype, params),
            base_optimizer_state=base_optimizer.init(params),
            z=jax.tree.map(jnp.copy, z),
        )

    def update_fn(grads, state, params=None, **extra_args):
        if params is None:
            raise ValueError("schedule_free needs params: call update(grads, state, params).")
        max_lr = jnp.maximum(state.max_lr, _learning_rate(learning_rate, state.step_count,
                                                          state.max_lr.dtype))  # fmt: skip
        weight = max_lr**weight_lr_power
        weight_sum = state.weight_sum + weight
        # c = 0 before any positive rate (0/0), as optax.
        c = jnp.where(weight_sum > 0, weight / jnp.where(weight_sum > 0, weight_sum, 1), 0.0)
        c = jnp.where(jnp.isnan(weight) | jnp.isnan(weight_sum), jnp.nan, c)
        base_updates, base_state = base_optimizer.update(
            grads, state.base_optimizer_state, params, **extra_args
        )
        z = jax.tree.map(lambda zi, u: (zi + u).astype(zi.dtype), state.z, base_updates)

        def leaf(y, z_old, z_new):
            x = (y - (1.0 - b1) * z_old) / b1
            x = (1.0 - c) * x + c * z_new
            return (b1 * x + (1.0 - b1) * z_new - y).astype(y.dtype)

        updates = jax.tree.map(leaf, params, state.z, z)
        new_state = ScheduleFreeState(
            b1=state.b1,
            weight_sum=weight_sum,
            step_count=optax.safe_increment(state.step_count),
            max_lr=max_lr,
            base_optimizer_state=base_state,
            z=z,
        )
        return updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_corrected_rms(
    b2: Any = 0.999, eps: Any = 1e-8, *, state_precision: Any = None
) -> optax.GradientTransformation:
    """g_t / (√v̂_t + ε) with v̂_t = v_t/(1−β2^t): schedule-free AdamW's step on z (no momentum).

    State: ``ScaleByRmsWithCountState(count, nu)``, as ``optax.scale_by_rms(decay=b2,
    eps_in_sqrt=False, bias_correction=True)`` keeps it; v_t stored per ``state_precision``.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_corrected_rms()
      >>> tx.update(jnp.array([3.0, -0.5]), tx.init(jnp.zeros(2)))[0].round(4)  # g/|g|
      Array([ 1., -1.], dtype=float32)
    """
    check_range("b2", b2, 0.0, 1.0)
    check_non_negative("eps", eps)
    moments = Moments(state_precision, None, None, count=1, signed=0)

    def init_fn(params):
        (nu,) = moments.init(params)
        return ScaleByRmsWithCountState(count=jnp.zeros([], jnp.int32), nu=nu)

    def update_fn(updates, state, params=None):
        del params
        (nu,) = moments.read(updates, (state.nu,))
        nu = update_second_moment(updates, nu, b2)
        count = increment(state.count)
        (stored,) = moments.write((nu,), count)
        correction = one_minus_power(b2, count)
        direction = adam_direction(
            upcast(updates), nu, correction, updates, eps=eps, stored_nu=stored
        )
        return direction, ScaleByRmsWithCountState(count=count, nu=stored)

    return optax.GradientTransformation(init_fn, update_fn)


def schedule_free_adamw(
    learning_rate: Any = 0.0025,
    warmup_steps: int | None = None,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    weight_lr_power: Any = 2.0,
    state_dtype: Any = None,
    *,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Schedule-free AdamW (Defazio et al., 2024, Algorithm 1); optax's signature.

    z_{t+1} = z_t − γ_t·(g_t/(√v̂_t + ε) + λ·y_t), with γ_t warmed up linearly over
    ``warmup_steps``; x and y as in :func:`schedule_free`. Evaluate at
    :func:`schedule_free_eval_params`.

    Args:
      state_precision: storage of v_t (see :func:`jadam.scale_by_adam`); z stays in
        ``state_dtype`` (quantising the iterate itself would move the parameters).

    Note: as optax, the bias correction divides v_t (ε outside the root); the paper instead
    multiplies γ_t by √(1−β2^t), which moves ε by that factor in early steps.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = schedule_free_adamw(1e-3, warmup_steps=100, weight_decay=1e-4)
      >>> state = tx.init({"w": jnp.zeros(3)})
    """
    if warmup_steps is not None:
        if not isinstance(warmup_steps, int) or isinstance(warmup_steps, bool) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int ≥ 0 or None, got {warmup_steps!r}.")
        learning_rate = optax.warmup_constant_schedule(0.0, learning_rate, warmup_steps)
    check_non_negative("weight_decay", weight_decay)
    base = with_learning_rate(
        learning_rate,
        scale_by_corrected_rms(b2, eps, state_precision=state_precision),
        optax.add_decayed_weights(weight_decay),
    )
    return schedule_free(base, learning_rate, b1, weight_lr_power, state_dtype)
