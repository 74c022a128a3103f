"""The baselines the paper compares Adam against (Section 6): SGD with momentum, AdaGrad,
RMSProp and AdaDelta, built from the same primitives as Adam.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam import _primitives as P
from jadam import _validation as V
from jadam._alias import with_learning_rate


def _full_like(params: Any, value: Any, *, real: bool = False) -> Any:
    return jax.tree.map(lambda z: z + jnp.asarray(value, z.dtype), P.zeros_like(params, real=real))


class ScaleByMomentumState(NamedTuple):
    """State of :func:`scale_by_momentum`: the velocity b_t."""

    trace: optax.Updates


def scale_by_momentum(momentum: Any = 0.9, nesterov: bool = False) -> optax.GradientTransformation:
    """Heavy-ball momentum b_t = μ·b_{t−1} + g_t; output b_t, or g_t + μ·b_t with ``nesterov``.

    The same convention as optax's ``trace`` and torch's ``SGD`` (dampening 0).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_momentum(0.5)
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.ones(1), state)
      >>> u, state = tx.update(jnp.ones(1), state)
      >>> u
      Array([1.5], dtype=float32)
    """
    V.check_range("momentum", momentum, 0.0, 1.0, high_inclusive=True)
    V.check_flag("nesterov", nesterov)

    def init_fn(params):
        return ScaleByMomentumState(trace=P.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        V.check_tree_matches(updates, state.trace)
        trace = jax.tree.map(lambda g, b: g + momentum * b, updates, state.trace)
        out = jax.tree.map(lambda g, b: g + momentum * b, updates, trace) if nesterov else trace
        return out, ScaleByMomentumState(trace=trace)

    return optax.GradientTransformation(init_fn, update_fn)


def sgd(
    learning_rate: Any, momentum: Any = None, nesterov: bool = False
) -> optax.GradientTransformationExtraArgs:
    """SGD, optionally with heavy-ball or Nesterov momentum μ: θ_t = θ_{t−1} − α·b_t.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = sgd(0.1, momentum=0.9, nesterov=True)
      >>> updates, _ = tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))
      >>> updates
      Array([-0.19], dtype=float32)
    """
    V.check_flag("nesterov", nesterov)
    if momentum is None:
        if nesterov:
            raise ValueError("nesterov=True needs a momentum in [0, 1], got momentum=None.")
        return with_learning_rate(learning_rate)
    return with_learning_rate(learning_rate, scale_by_momentum(momentum, nesterov))


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
    V.check_non_negative("initial_accumulator_value", initial_accumulator_value)
    V.check_non_negative("eps", eps)

    def init_fn(params):
        return ScaleByAdagradState(_full_like(params, initial_accumulator_value, real=True))

    def update_fn(updates, state, params=None):
        del params
        V.check_tree_matches(updates, state.sum_of_squares)
        sums = jax.tree.map(
            lambda g, s: P.saturating_cast(P.upcast(s) + P.abs_sq(P.upcast(g)), s.dtype),
            updates,
            state.sum_of_squares,
        )
        out = jax.tree.map(
            lambda g, s: (g * jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0)).astype(g.dtype),
            updates,
            P.upcast(sums),
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
    """State of :func:`scale_by_rms`: count t, m_t (None unless centered) and v_t."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_rms(
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    *,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    bias_correction: bool = False,
) -> optax.GradientTransformation:
    """RMSProp (Tieleman & Hinton, 2012): g_t / √(v_t + ε), v_t = ρ·v_{t−1} + (1−ρ)·|g_t|².

    Args:
      decay: ρ ∈ [0, 1).
      eps: ε ≥ 0, inside the root, or outside (g/(√v + ε), torch's form) if not ``eps_in_sqrt``.
      initial_scale: v_0.
      centered: divide by the root of the variance v_t − |m_t|² (Graves, 2013).
      bias_correction: divide v_t (and m_t) by 1 − ρ^t as Adam does (Section 3; the paper's
        "RMSProp with bias correction").

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_rms(0.75, eps=0.0)
      >>> updates, _ = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
      >>> updates
      Array([2.], dtype=float32)
    """
    V.check_range("decay", decay, 0.0, 1.0)
    V.check_non_negative("eps", eps)
    V.check_non_negative("initial_scale", initial_scale)
    for flag, value in [("eps_in_sqrt", eps_in_sqrt), ("centered", centered)]:
        V.check_flag(flag, value)
    V.check_flag("bias_correction", bias_correction)

    def init_fn(params):
        return ScaleByRmsState(
            count=jnp.zeros([], jnp.int32),
            mu=P.zeros_like(params) if centered else None,
            nu=_full_like(params, initial_scale, real=True),
        )

    def update_fn(updates, state, params=None):
        del params
        V.check_tree_matches(updates, state.nu)
        count = P.increment(state.count)
        nu = P.update_second_moment(updates, state.nu, decay)
        nu_hat = P.bias_correction(nu, decay, count) if bias_correction else P.upcast(nu)
        mu = None
        if centered:
            mu = P.update_first_moment(updates, state.mu, decay)
            mu_hat = P.bias_correction(mu, decay, count) if bias_correction else P.upcast(mu)
            nu_hat = jax.tree.map(lambda v, m: v - P.abs_sq(m), nu_hat, mu_hat)
        if eps_in_sqrt:
            scale = jax.tree.map(lambda v: jax.lax.rsqrt(v + eps), nu_hat)
        else:
            scale = jax.tree.map(lambda v: 1 / (jnp.sqrt(v) + eps), nu_hat)
        out = jax.tree.map(lambda g, s: (g * s).astype(g.dtype), updates, scale)
        return out, ScaleByRmsState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def rmsprop(
    learning_rate: Any,
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    *,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Any = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """RMSProp: θ_t = θ_{t−1} − α·g_t/√(v_t + ε), optionally centered, with momentum (applied
    after the learning rate, as optax does) or bias-corrected. See :func:`scale_by_rms`.

    Note: torch's ``RMSprop`` defaults to ρ = 0.99 and ε outside the root; pass
    ``decay=0.99, eps_in_sqrt=False`` to match it.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = rmsprop(1e-3, bias_correction=True)
      >>> state = tx.init(jnp.zeros(2))
    """
    scaling = scale_by_rms(
        decay,
        eps,
        initial_scale,
        eps_in_sqrt=eps_in_sqrt,
        centered=centered,
        bias_correction=bias_correction,
    )
    V.check_flag("nesterov", nesterov)
    tx = with_learning_rate(learning_rate, scaling)
    if momentum is None:
        return tx
    return optax.chain(tx, scale_by_momentum(momentum, nesterov))


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
    V.check_range("rho", rho, 0.0, 1.0)
    # ε > 0 is needed: with ε = 0 (or one that rounds to 0 in float32) Δx starts at 0/0.
    V.check_range("eps", eps, V.FLOAT32_TINY, math.inf, high_inclusive=True)

    def init_fn(params):
        return ScaleByAdadeltaState(
            e_g=P.zeros_like(params, real=True), e_x=P.zeros_like(params, real=True)
        )

    def update_fn(updates, state, params=None):
        del params
        V.check_tree_matches(updates, state.e_g)
        e_g = P.update_second_moment(updates, state.e_g, rho)
        out = jax.tree.map(
            lambda g, eg, ex: (jnp.sqrt(ex + eps) / jnp.sqrt(eg + eps) * g).astype(g.dtype),
            updates,
            P.upcast(e_g),
            P.upcast(state.e_x),
        )
        e_x = P.update_second_moment(out, state.e_x, rho)
        return out, ScaleByAdadeltaState(e_g=e_g, e_x=e_x)

    return optax.GradientTransformation(init_fn, update_fn)


def adadelta(
    learning_rate: Any = 1.0, rho: Any = 0.9, eps: Any = 1e-6
) -> optax.GradientTransformationExtraArgs:
    """AdaDelta: θ_t = θ_{t−1} − α·Δ_t, α = 1 as in Zeiler (2012). See :func:`scale_by_adadelta`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = adadelta()
      >>> state = tx.init(jnp.zeros(2))
    """
    return with_learning_rate(learning_rate, scale_by_adadelta(rho, eps))
