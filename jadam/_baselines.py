"""The baselines the paper compares Adam against (Section 6): SGD with momentum, AdaGrad,
RMSProp and AdaDelta, built from the same primitives as Adam.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam._alias import with_learning_rate
from jadam._primitives import (
    abs_sq,
    debias,
    increment,
    one_minus_power,
    saturating_cast,
    upcast,
    update_first_moment,
    update_second_moment,
    zeros_like,
)
from jadam._validation import (
    FLOAT32_TINY,
    check_dtype,
    check_flag,
    check_non_negative,
    check_non_negative_or_schedule,
    check_range,
    check_tree_matches,
)


def _full_like(params: Any, value: Any, *, real: bool = False) -> Any:
    return jax.tree.map(lambda z: z + jnp.asarray(value, z.dtype), zeros_like(params, real=real))


class ScaleByMomentumState(NamedTuple):
    """State of :func:`scale_by_momentum`: the velocity b_t."""

    trace: optax.Updates


def scale_by_momentum(
    momentum: Any = 0.9, nesterov: bool = False, accumulator_dtype: Any = None
) -> optax.GradientTransformation:
    """Heavy-ball momentum b_t = μ·b_{t−1} + g_t; output b_t, or g_t + μ·b_t with ``nesterov``.

    The same convention and state (``trace``) as optax's ``trace`` and torch's ``SGD``
    (dampening 0). ``accumulator_dtype`` (None: the parameter's dtype) stores b_t, as optax's.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_momentum(0.5)
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.ones(1), state)
      >>> u, state = tx.update(jnp.ones(1), state)
      >>> u
      Array([1.5], dtype=float32)
    """
    check_range("momentum", momentum, 0.0, 1.0, high_inclusive=True)
    check_flag("nesterov", nesterov)
    check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params):
        return ScaleByMomentumState(trace=zeros_like(params, accumulator_dtype))

    def update_fn(updates, state, params=None):
        del params
        check_tree_matches(updates, state.trace)
        trace = jax.tree.map(lambda g, b: g + momentum * b, updates, state.trace)
        out = jax.tree.map(lambda g, b: g + momentum * b, updates, trace) if nesterov else trace
        stored = jax.tree.map(lambda b, old: b.astype(old.dtype), trace, state.trace)
        return out, ScaleByMomentumState(trace=stored)

    return optax.GradientTransformation(init_fn, update_fn)


def sgd(
    learning_rate: Any,
    momentum: Any = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """SGD, optionally with heavy-ball or Nesterov momentum μ: θ_t = θ_{t−1} − α·b_t.

    The state is optax's: (momentum's ``trace`` or an empty state, the learning rate's).

    Note: ``nesterov=True`` or an ``accumulator_dtype`` without a momentum raise a ``ValueError``
    (optax ignores them).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = sgd(0.1, momentum=0.9, nesterov=True)
      >>> updates, _ = tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))
      >>> updates
      Array([-0.19], dtype=float32)
    """
    check_flag("nesterov", nesterov)
    if momentum is None:
        if nesterov:
            raise ValueError("nesterov=True needs a momentum in [0, 1], got momentum=None.")
        if accumulator_dtype is not None:
            raise ValueError(
                f"accumulator_dtype={accumulator_dtype!r} needs a momentum in [0, 1], got "
                "momentum=None."
            )
        return with_learning_rate(learning_rate, optax.identity())
    tx = scale_by_momentum(momentum, nesterov, accumulator_dtype)
    return with_learning_rate(learning_rate, tx)


class ScaleByAdagradState(NamedTuple):
    """State of :func:`scale_by_adagrad`: the running sum of squared gradients."""

    sum_of_squares: optax.Updates


def scale_by_adagrad(
    initial_accumulator_value: Any = 0.1, eps: Any = 1e-7
) -> optax.GradientTransformation:
    """AdaGrad (Duchi et al., 2011): g_t / √(Σ_{τ≤t} |g_τ|² + ε), 0 where the sum is 0.

    The same convention as optax's ``scale_by_rss``. torch's ``Adagrad`` puts ε outside the
    root and starts the sum at 0.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_adagrad(0.0, 0.0)
      >>> updates, _ = tx.update(jnp.array([-2.0, 0.0]), tx.init(jnp.zeros(2)))
      >>> updates
      Array([-1.,  0.], dtype=float32)
    """
    check_non_negative("initial_accumulator_value", initial_accumulator_value)
    check_non_negative("eps", eps)

    def init_fn(params):
        return ScaleByAdagradState(_full_like(params, initial_accumulator_value, real=True))

    def update_fn(updates, state, params=None):
        del params
        check_tree_matches(updates, state.sum_of_squares)
        sums = jax.tree.map(
            lambda g, s: saturating_cast(upcast(s) + abs_sq(upcast(g)), s.dtype),
            updates,
            state.sum_of_squares,
        )
        out = jax.tree.map(
            lambda g, s: (g * jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0)).astype(g.dtype),
            updates,
            upcast(sums),
        )
        return out, ScaleByAdagradState(sums)

    return optax.GradientTransformation(init_fn, update_fn)


def adagrad(
    learning_rate: Any, initial_accumulator_value: Any = 0.1, eps: Any = 1e-7
) -> optax.GradientTransformationExtraArgs:
    """AdaGrad: θ_t = θ_{t−1} − α·g_t/√(Σ|g|² + ε). See :func:`scale_by_adagrad`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = adagrad(0.1)
      >>> state = tx.init(jnp.zeros(2))
    """
    return with_learning_rate(learning_rate, scale_by_adagrad(initial_accumulator_value, eps))


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms` (optax's layout): v_t."""

    nu: optax.Updates


class ScaleByRmsWithCountState(NamedTuple):
    """State of :func:`scale_by_rms` with ``bias_correction``: count t and v_t."""

    count: jax.Array
    nu: optax.Updates


class ScaleByRStdDevState(NamedTuple):
    """State of :func:`scale_by_rms` with ``centered`` (optax's ``scale_by_stddev``): m_t, v_t."""

    mu: optax.Updates
    nu: optax.Updates


class ScaleByRStdDevWithCountState(NamedTuple):
    """State of :func:`scale_by_rms` with ``centered`` and ``bias_correction``: t, m_t, v_t."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def _rms_state(count: Any, mu: Any, nu: Any, *, centered: bool, bias_correction: bool) -> Any:
    """The state class optax uses for these options (count and mu only where they are used)."""
    if centered:
        if bias_correction:
            return ScaleByRStdDevWithCountState(count=count, mu=mu, nu=nu)
        return ScaleByRStdDevState(mu=mu, nu=nu)
    if bias_correction:
        return ScaleByRmsWithCountState(count=count, nu=nu)
    return ScaleByRmsState(nu=nu)


def scale_by_rms(
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    centered: bool = False,
) -> optax.GradientTransformation:
    """RMSProp (Tieleman & Hinton, 2012): g_t / √(v_t + ε), v_t = ρ·v_{t−1} + (1−ρ)·|g_t|².

    Args:
      decay: ρ ∈ [0, 1).
      eps: ε ≥ 0, inside the root, or outside (g/(√v + ε), torch's form) if not ``eps_in_sqrt``.
      initial_scale: v_0.
      eps_in_sqrt: where ε goes (see ``eps``).
      bias_correction: divide v_t (and m_t) by 1 − ρ^t as Adam does (Section 3; the paper's
        "RMSProp with bias correction").
      centered: divide by the root of the variance max(v_t − |m_t|², 0) (Graves, 2013),
        optax's ``scale_by_stddev`` (which takes the root of a rounding error's −1e-9 as NaN).

    The state is optax's for the same options: (v_t), (t, v_t), (m_t, v_t) or (t, m_t, v_t).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_rms(0.75, eps=0.0)
      >>> updates, _ = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
      >>> updates
      Array([2.], dtype=float32)
    """
    check_range("decay", decay, 0.0, 1.0)
    check_non_negative("eps", eps)
    check_non_negative("initial_scale", initial_scale)
    for flag, value in [("eps_in_sqrt", eps_in_sqrt), ("centered", centered)]:
        check_flag(flag, value)
    check_flag("bias_correction", bias_correction)
    options = {"centered": centered, "bias_correction": bias_correction}

    def init_fn(params):
        mu = zeros_like(params) if centered else None
        nu = _full_like(params, initial_scale, real=True)
        return _rms_state(jnp.zeros([], jnp.int32), mu, nu, **options)

    def update_fn(updates, state, params=None):
        del params
        check_tree_matches(updates, state.nu)
        count = increment(state.count) if bias_correction else None
        correction = one_minus_power(decay, count) if bias_correction else None
        nu = update_second_moment(updates, state.nu, decay)
        nu_hat = debias(nu, correction) if bias_correction else upcast(nu)
        mu = None
        if centered:
            mu = update_first_moment(updates, state.mu, decay)
            mu_hat = debias(mu, correction) if bias_correction else upcast(mu)
            # v − |m|² ≥ 0 in exact arithmetic; rounding can make it −1e-9 (a NaN root).
            nu_hat = jax.tree.map(lambda v, m: jnp.maximum(v - abs_sq(m), 0), nu_hat, mu_hat)
        if eps_in_sqrt:
            scale = jax.tree.map(lambda v: jax.lax.rsqrt(v + eps), nu_hat)
        else:
            scale = jax.tree.map(lambda v: 1 / (jnp.sqrt(v) + eps), nu_hat)
        out = jax.tree.map(lambda g, s: (g * s).astype(g.dtype), updates, scale)
        return out, _rms_state(count, mu, nu, **options)

    return optax.GradientTransformation(init_fn, update_fn)


def rmsprop(
    learning_rate: Any,
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Any = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """RMSProp: θ_t = θ_{t−1} − α·g_t/√(v_t + ε), optionally centered, with momentum (applied
    after the learning rate, as optax does) or bias-corrected. See :func:`scale_by_rms`.

    The state is optax's: (the :func:`scale_by_rms` state, the learning rate's, momentum's
    ``trace`` or an empty state).

    Note: torch's ``RMSprop`` defaults to ρ = 0.99 and ε outside the root; pass
    ``decay=0.99, eps_in_sqrt=False`` to match it. ``nesterov=True`` without a momentum raises a
    ``ValueError`` (optax ignores it).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = rmsprop(1e-3, bias_correction=True)
      >>> state = tx.init(jnp.zeros(2))
    """
    scaling = scale_by_rms(
        decay, eps, initial_scale, eps_in_sqrt, bias_correction, centered=centered
    )
    check_flag("nesterov", nesterov)
    if momentum is None and nesterov:
        raise ValueError("nesterov=True needs a momentum in [0, 1], got momentum=None.")
    tail = optax.identity() if momentum is None else scale_by_momentum(momentum, nesterov)
    return with_learning_rate(learning_rate, scaling, then=tail)


class ScaleByAdadeltaState(NamedTuple):
    """State of :func:`scale_by_adadelta`: E[g²]_t and E[Δθ²]_t."""

    e_g: optax.Updates
    e_x: optax.Updates


def scale_by_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> optax.GradientTransformation:
    """AdaDelta (Zeiler, 2012): Δ_t = √(E[Δθ²]_{t−1} + ε)/√(E[g²]_t + ε)·g_t.

    E[g²]_t = ρ·E[g²]_{t−1} + (1−ρ)·|g_t|²,   E[Δθ²]_t = ρ·E[Δθ²]_{t−1} + (1−ρ)·|Δ_t|².

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_adadelta()
      >>> state = tx.init(jnp.zeros(2))
    """
    check_range("rho", rho, 0.0, 1.0)
    # ε > 0 is needed: with ε = 0 (or one that rounds to 0 in float32) Δx starts at 0/0.
    check_range("eps", eps, FLOAT32_TINY, math.inf, high_inclusive=True)

    def init_fn(params):
        return ScaleByAdadeltaState(
            e_g=zeros_like(params, real=True), e_x=zeros_like(params, real=True)
        )

    def update_fn(updates, state, params=None):
        del params
        check_tree_matches(updates, state.e_g)
        e_g = update_second_moment(updates, state.e_g, rho)
        out = jax.tree.map(
            lambda g, eg, ex: (jnp.sqrt(ex + eps) / jnp.sqrt(eg + eps) * g).astype(g.dtype),
            updates,
            upcast(e_g),
            upcast(state.e_x),
        )
        e_x = update_second_moment(out, state.e_x, rho)
        return out, ScaleByAdadeltaState(e_g=e_g, e_x=e_x)

    return optax.GradientTransformation(init_fn, update_fn)


def adadelta(
    learning_rate: Any = None,
    rho: Any = 0.9,
    eps: Any = 1e-6,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """AdaDelta: θ_t = θ_{t−1} − α·Δ_t (Zeiler, 2012), optax's signature and state.

    Args:
      learning_rate: α ≥ 0 or a schedule. None (the default, as optax's) applies no learning
        rate at all: the updates are +Δ_t, not −Δ_t, so ``optax.apply_updates`` ascends. Pass
        ``1.0`` for Zeiler's descent step.
      rho, eps: see :func:`scale_by_adadelta`.
      weight_decay: λ ≥ 0 (or a schedule), added to the gradient before AdaDelta: g_t + λ·θ.
      weight_decay_mask: a tree of booleans (or a callable params → tree) selecting the decayed
        leaves.

    Note: unlike optax, ``update`` needs ``params`` only when there is a weight decay.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = adadelta(1.0)
      >>> updates, _ = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
      >>> bool((updates < 0).all())
      True
    """
    check_non_negative_or_schedule("weight_decay", weight_decay)
    no_decay = weight_decay_mask is None and isinstance(weight_decay, (int, float))
    if no_decay and weight_decay == 0:
        decay = optax.identity()  # the same (empty) state, and params are not needed
    else:
        decay = optax.add_decayed_weights(weight_decay, weight_decay_mask)
    return with_learning_rate(learning_rate, decay, scale_by_adadelta(rho, eps), optional=True)
