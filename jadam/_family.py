"""What the Adam-family algorithms share: the state layout, the moment step, where ε enters.

Adam (Algorithm 1), AdaMax, AMSGrad, RAdam, Yogi, AdaBelief, AdEMAMix, NAdam and the others
differ in one or two lines of the same loop: t ← t + 1, m_t (line 7), a second moment (line 8),
bias correction (lines 9-10) and m̂_t/(√v̂_t + ε) (line 11). Each of those lines is written
once, here or in :mod:`jadam._primitives`, and the algorithm modules only combine them (line
numbers as in docs/conventions.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam._primitives import (
    bias_correction,
    debias,
    increment,
    map_leaves,
    normalize,
    sqrt,
    upcast,
    update_first_moment,
    update_second_moment,
)
from jadam._storage import Moments, floor_denominator
from jadam._validation import check_choice

EPS_FORMS = ("algorithm1", "eps_hat", "inside_root")


class ScaleByAdamState(NamedTuple):
    """State of :func:`jadam.scale_by_adam`: step count t (int32), m_t and v_t."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def check_eps_form(eps_form: Any, allowed: tuple[str, ...] = EPS_FORMS) -> None:
    """Raises ``ValueError`` unless ``eps_form`` is one of ``allowed`` (see :func:`place_eps`)."""
    check_choice("eps_form", eps_form, allowed)


def init_state(moments: Moments, params: Any, state_class: Any = ScaleByAdamState) -> Any:
    """``state_class(count=0, *moments)``: the zero state of an Adam-shaped transform.

    >>> import jax.numpy as jnp
    >>> init_state(Moments(None, None, None, count=2), jnp.zeros(2)).mu
    Array([0., 0.], dtype=float32)
    """
    return state_class(jnp.zeros([], jnp.int32), *moments.init(params))


class MomentStep(NamedTuple):
    """What :func:`step_moments` returns: t, m_t and v_t (float32 or wider), their stored form."""

    count: jax.Array
    mu: Any
    nu: Any
    stored_mu: Any
    stored_nu: Any


def step_moments(
    moments: Moments,
    updates: Any,
    state: Any,
    b1: Any,
    b2: Any = None,
    *,
    update_nu: Callable[[Any, Any, Any], Any] | None = None,
) -> MomentStep:
    """Algorithm 1 lines 5, 7 and 8 on stored moments: t ← t + 1, m_t, v_t, then their storage.

    ``state`` has ``count``, ``mu`` and ``nu``; ``b1`` is β1 or a callable of the new t (Section
    4's decaying β1,t); ``update_nu(g, m_t, v_{t−1})`` replaces line 8 (AdaMax's infinity norm,
    Yogi's additive update, AdaBelief's |g − m|²), else v_t is the EMA of |g|² with ``b2``.
    """
    count = increment(state.count)
    mu, nu = moments.read(updates, (state.mu, state.nu))
    mu = update_first_moment(updates, mu, b1(count) if callable(b1) else b1)
    nu = update_second_moment(updates, nu, b2) if update_nu is None else update_nu(updates, mu, nu)
    stored_mu, stored_nu = moments.write((mu, nu), count)
    return MomentStep(count, mu, nu, stored_mu, stored_nu)


def corrected_first_moment(
    updates: Any, mu: Any, b1: Any, count: jax.Array, nesterov: bool, *, corrected: bool = True
) -> Any:
    """m̂_t = m_t/(1−β1^t) (line 9), or Dozat's β1·m_t/(1−β1^{t+1}) + (1−β1)·g_t/(1−β1^t).

    ``corrected=False`` drops the two divisions (Section 3's ablation).
    """
    if not nesterov:
        return bias_correction(mu, b1, count) if corrected else mu
    next_mu = bias_correction(mu, b1, increment(count)) if corrected else mu
    grad = bias_correction(updates, b1, count) if corrected else updates
    return map_leaves(lambda m, g: b1 * m + (1 - b1) * g, next_mu, grad)


class PlacedEps(NamedTuple):
    """m̂_t/(s_t + ε) in parts: the numerator, s_t, the ε added outside, and the d with
    s_t = √(stored/d + ε_root) that the storage floor needs."""

    numerator: Any
    scale: Any
    eps: Any
    divisor: Any


def place_eps(
    eps_form: str,
    mu_hat: Any,
    nu: Any,
    correction: Any,
    *,
    eps: Any,
    eps_root: Any = 0.0,
    divide_nu: bool = True,
) -> PlacedEps:
    """Where ε enters Adam's step (the one place the family decides it).

    "algorithm1": m̂_t/(√(v̂_t + ε_root) + ε) (Algorithm 1 line 11). "inside_root":
    m̂_t/√(v̂_t + ε_root + ε) (the RMSProp form). "eps_hat": Section 2's efficient ordering,
    m̂_t·√(1−β2^t)/(√(v_t + ε_root) + ε), i.e. ε̂ = ε on √v_t rather than on √v̂_t.

    Args:
      eps_form: one of :data:`EPS_FORMS`.
      mu_hat: the numerator m̂_t (any first-moment estimate).
      nu: the second moment: v_t, divided by ``correction`` to give v̂_t; with
        ``divide_nu=False`` already what goes under the root (AMSGrad's max of v̂).
      correction: 1 − β2^t, or None without bias correction (v̂_t = v_t; "eps_hat" is then
        "algorithm1").
    """
    if correction is not None and eps_form == "eps_hat":
        root = jnp.sqrt(correction)
        numerator = map_leaves(lambda m: m * root.astype(m.dtype), mu_hat)
        if divide_nu:
            return PlacedEps(numerator, sqrt(nu, eps_root), eps, 1.0)
        raw = map_leaves(lambda v: v * correction.astype(v.dtype), upcast(nu))
        return PlacedEps(numerator, sqrt(raw, eps_root), eps, 1.0 / correction)
    if correction is None or not divide_nu:
        nu_hat, divisor = nu, 1.0
    else:
        nu_hat, divisor = debias(nu, correction), correction
    if eps_form == "inside_root":
        return PlacedEps(mu_hat, sqrt(nu_hat, eps_root + eps), 0.0, divisor)
    return PlacedEps(mu_hat, sqrt(nu_hat, eps_root), eps, divisor)


def adam_direction(
    mu_hat: Any,
    nu: Any,
    correction: Any,
    like: Any,
    *,
    eps: Any,
    eps_root: Any = 0.0,
    eps_form: str = "algorithm1",
    divide_nu: bool = True,
    stored_nu: Any = None,
) -> Any:
    """m̂_t/(√v̂_t + ε) with ε placed by :func:`place_eps`, in the dtypes of ``like``.

    ``stored_nu`` (the stored form of ``nu``) keeps √v̂_t at or above what that storage can
    resolve (:func:`jadam._storage.floor_denominator`); None: no floor.

    >>> import jax.numpy as jnp
    >>> adam_direction(jnp.array([0.1]), jnp.array([0.01]), 1.0, jnp.zeros(1), eps=0.0)
    Array([1.], dtype=float32)
    """
    placed = place_eps(
        eps_form, mu_hat, nu, correction, eps=eps, eps_root=eps_root, divide_nu=divide_nu
    )
    scale = placed.scale
    if stored_nu is not None:
        scale = floor_denominator(scale, stored_nu, nu, placed.divisor)
    return normalize(placed.numerator, scale, placed.eps, like=like)
