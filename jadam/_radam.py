"""RAdam (Liu et al., 2020, Algorithm 2): Adam with the variance of its step rectified."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jadam._alias import with_learning_rate
from jadam._family import (
    ScaleByAdamState,
    check_eps_form,
    corrected_first_moment,
    init_state,
    place_eps,
    step_moments,
)
from jadam._primitives import map_leaves, normalize, one_minus_power, saturating_cast
from jadam._storage import Moments, floor_denominator
from jadam._validation import (
    check_adam_hyperparameters,
    check_flag,
    check_non_negative_or_schedule,
    check_range,
)

RADAM_EPS_FORMS = ("algorithm1", "eps_hat")


def rectification(b2: Any, count: jax.Array, threshold: Any) -> tuple[jax.Array, jax.Array]:
    """(ρ_t ≥ threshold, r_t): whether step t is rectified and its rectification term.

    ρ∞ = 2/(1−β2) − 1,   ρ_t = ρ∞ − 2t·β2^t/(1−β2^t),
    r_t = √((ρ_t−4)(ρ_t−2)ρ∞ / ((ρ∞−4)(ρ∞−2)ρ_t))   (Liu et al. 2020, Eq. 6 and Algorithm 2).

    r_t is 0 where the step is not rectified (never NaN, also when ρ∞ ≤ 4).
    """
    correction = one_minus_power(b2, count)  # 1 − β2^t, accurate for β2 near 1
    t = jnp.asarray(count, correction.dtype)
    rho_inf = 2.0 / (1.0 - jnp.asarray(b2, correction.dtype)) - 1.0
    rho_t = rho_inf - 2.0 * t * (1.0 - correction) / correction
    rectified = rho_t >= threshold
    ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
    return rectified, jnp.where(rectified, jnp.sqrt(jnp.where(rectified, ratio, 1.0)), 0.0)


def scale_by_radam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    threshold: Any = 5.0,
    *,
    nesterov: bool = False,
    eps_form: str = "algorithm1",
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformation:
    """Scales gradients by RAdam's rectified step (Liu et al., 2020, Algorithm 2).

    m_t, v_t, m̂_t as Adam (Algorithm 1),   ρ_t and r_t as :func:`rectification`,
    u_t = r_t·m̂_t / (√(v̂_t + ε_root) + ε)  if ρ_t ≥ threshold,   u_t = m̂_t  otherwise.

    Args:
      b1: β1 ∈ [0, 1).
      b2: β2 ∈ [0, 1); ρ∞ = 2/(1−β2) − 1 must exceed ``threshold`` for any step to rectify.
      eps: ε ≥ 0 (the paper has none: l_t = √((1−β2^t)/v_t)).
      eps_root: ε_root ≥ 0, inside the root (optax's option).
      threshold: ρ_t from which the adaptive step is taken, ≥ 4. 5 is optax's and torch's
        (and the authors' code); 4 is Algorithm 2's "if ρ_t > 4", which rectifies one step
        earlier (t = 5 for β2 = 0.999).
      nesterov: Dozat's Nesterov momentum for m̂_t, as optax's ``nesterov=True``.
      eps_form: "algorithm1": m̂_t/(√v̂_t + ε) (optax). "eps_hat": m̂_t·√(1−β2^t)/(√v_t + ε),
        torch's ``RAdam`` and the authors' code. The two agree at ε = 0.
      mu_dtype, nu_dtype, state_precision: storage of m_t and v_t, see :func:`jadam.scale_by_adam`.

    Note: optax compares ρ_t ≥ 5, torch ρ_t > 5; they differ only if ρ_t is exactly 5. Steps that
    are not rectified are SGD with momentum (no ε, no v_t), as in the paper and both anchors.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_radam()
      >>> updates, state = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
      >>> updates  # ρ_1 = 1 < 5: the first steps are m̂_t, here g_1
      Array([ 0.5, -2. ], dtype=float32)

    Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.
    """
    check_adam_hyperparameters(b1, b2, eps, eps_root)
    check_range("threshold", threshold, 4.0, math.inf, high_inclusive=True)
    check_flag("nesterov", nesterov)
    check_eps_form(eps_form, RADAM_EPS_FORMS)
    moments = Moments(state_precision, mu_dtype, nu_dtype, count=2)

    def init_fn(params):
        return init_state(moments, params)

    def update_fn(updates, state, params=None):
        del params
        count, mu, nu, stored_mu, stored_nu = step_moments(moments, updates, state, b1, b2)
        mu_hat = corrected_first_moment(updates, mu, b1, count, nesterov)
        placed = place_eps(
            eps_form, mu_hat, nu, one_minus_power(b2, count), eps=eps, eps_root=eps_root
        )
        scale = floor_denominator(placed.scale, stored_nu, nu, placed.divisor)
        adaptive = normalize(placed.numerator, scale, placed.eps, like=placed.numerator)
        rectified, r = rectification(b2, count, threshold)

        def select(a, m, g):
            step = jnp.where(rectified, r.astype(a.dtype) * a, m)
            return saturating_cast(step, g.dtype)  # m̂_t can exceed a float16 gradient's range

        direction = map_leaves(select, adaptive, mu_hat, updates)
        return direction, ScaleByAdamState(count=count, mu=stored_mu, nu=stored_nu)

    return optax.GradientTransformation(init_fn, update_fn)


def radam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    threshold: Any = 5.0,
    *,
    nesterov: bool = False,
    eps_form: str = "algorithm1",
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    mask: Any = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """RAdam: θ_t = θ_{t−1} − α·u_t with u_t of :func:`scale_by_radam`; optax's ``radam``.

    Args:
      weight_decay: λ ≥ 0 (0, the default, adds nothing: optax's state layout). With
        ``decoupled_weight_decay=False`` λ·θ is added to the gradient before the moments (L2,
        torch's default); with True it is added to u_t (AdamW's decay, torch's
        ``decoupled_weight_decay=True``). Both need ``params`` in ``update``.
      mask: a tree of booleans (or a callable params → tree) selecting the decayed leaves.

    torch's ``RAdam(lr, betas, eps, weight_decay, decoupled_weight_decay)`` is
    ``radam(lr, *betas, eps, eps_form="eps_hat", weight_decay=..., decoupled_weight_decay=...)``.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = radam(1e-3)
      >>> torch_like = radam(1e-3, eps_form="eps_hat", weight_decay=0.01,
      ...                    decoupled_weight_decay=True)
      >>> state = torch_like.init(jnp.zeros(3))
    """
    check_flag("decoupled_weight_decay", decoupled_weight_decay)
    check_non_negative_or_schedule("weight_decay", weight_decay)
    scaling = scale_by_radam(
        b1,
        b2,
        eps,
        eps_root,
        threshold,
        nesterov=nesterov,
        eps_form=eps_form,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
        state_precision=state_precision,
    )
    if isinstance(weight_decay, (int, float)) and weight_decay == 0 and mask is None:
        return with_learning_rate(learning_rate, scaling)
    decay = optax.add_decayed_weights(weight_decay, mask)
    if decoupled_weight_decay:
        return with_learning_rate(learning_rate, scaling, decay)
    return with_learning_rate(learning_rate, decay, scaling)
