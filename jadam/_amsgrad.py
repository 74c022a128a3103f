"""AMSGrad (Reddi, Kale & Kumar, 2018): Adam with a non-decreasing second moment."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam import _primitives as P
from jadam import _storage as S
from jadam import _validation as V
from jadam._adam import EPS_FORMS, validate_adam_hyperparameters
from jadam._alias import with_learning_rate

AMSGRAD_VARIANTS = ("max_of_corrected", "max_of_raw", "uncorrected")


class ScaleByAmsgradState(NamedTuple):
    """State of :func:`scale_by_amsgrad`: count t, m_t, v_t and max_{τ≤t} v̂_τ (or v_τ)."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates


def scale_by_amsgrad(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    nu_dtype: Any = None,
    state_precision: Any = None,
    variant: str = "max_of_corrected",
    eps_form: str = "algorithm1",
) -> optax.GradientTransformation:
    """Scales gradients by m̂_t / (√v̂max_t + ε), v̂max_t = max(v̂max_{t−1}, v̂_t).

    m̂_t, v̂_t as in Algorithm 1 (lines 7-10). ``variant`` picks where the max is taken:

    - "max_of_corrected" (default, optax's ``amsgrad``): v̂max_t = max(v̂max_{t−1}, v_t/(1−β2^t)).
    - "max_of_raw" (torch's ``Adam(amsgrad=True)``, Keras's ``amsgrad=True``):
      vmax_t = max(vmax_{t−1}, v_t), u_t = m̂_t/(√(vmax_t/(1−β2^t)) + ε).
    - "uncorrected" (Reddi, Kale & Kumar 2018, Algorithm 2): vmax_t = max(vmax_{t−1}, v_t),
      u_t = m_t/(√vmax_t + ε), no bias correction at all (their ε is 0).

    The first two differ once 1−β2^t shrinks v̂ below an earlier maximum (early steps).
    ``eps_form`` places ε as in :func:`jadam.scale_by_adam`; "eps_hat" divides by
    √(v̂max_t·(1−β2^t)) + ε̂, so ``variant="max_of_raw", eps_form="eps_hat"`` is Keras's AMSGrad.

    Args:
      mu_dtype: storage dtype of m_t (None: the parameter's dtype), rounded to nearest.
      bias_correction_mu: False uses m_t for m̂_t (optax's switch).
      bias_correction_nu: False takes the max of the raw v_t, uncorrected (optax's switch);
        both False is ``variant="uncorrected"``. The switches apply to "max_of_corrected" only.
      nu_dtype: storage dtype of v_t and v̂max_t (None: the parameter's dtype).
      state_precision: storage of all three moments, see :func:`jadam.scale_by_adam`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_amsgrad()
      >>> updates, state = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> state.nu_max
      Array([4.], dtype=float32)
    """
    validate_adam_hyperparameters(b1, b2, eps, eps_root)
    moments = S.Moments(state_precision, mu_dtype, nu_dtype, count=3)
    V.check_choice("variant", variant, AMSGRAD_VARIANTS)
    V.check_choice("eps_form", eps_form, EPS_FORMS)
    correct_mu, correct_nu = _corrections(variant, bias_correction_mu, bias_correction_nu)
    if eps_form == "eps_hat" and variant == "max_of_corrected" and correct_mu != correct_nu:
        raise ValueError(
            "eps_form='eps_hat' needs bias_correction_mu == bias_correction_nu, got "
            f"{bias_correction_mu!r} and {bias_correction_nu!r}."
        )

    def init_fn(params):
        mu, nu, nu_max = moments.init(params)
        return ScaleByAmsgradState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu, nu_max=nu_max)

    def update_fn(updates, state, params=None):
        del params
        count = P.increment(state.count)
        mu, nu, nu_max = moments.read(updates, (state.mu, state.nu, state.nu_max))
        mu = P.update_first_moment(updates, mu, b1)
        nu = P.update_second_moment(updates, nu, b2)
        running = P.bias_correction(nu, b2, count) if correct_nu else nu
        nu_max = jax.tree.map(
            lambda m, v: P.saturating_cast(jnp.maximum(m, v), m.dtype), nu_max, running
        )
        stored = moments.write((mu, nu, nu_max), count)
        correction = P.one_minus_power(b2, count)
        # divisor: what turns the stored nu_max into the quantity under the root (for the floor).
        divisor = correction if variant == "max_of_raw" else 1.0
        mu_hat = P.bias_correction(mu, b1, count) if correct_mu else mu
        nu_max_hat = P.bias_correction(nu_max, b2, count) if variant == "max_of_raw" else nu_max
        outer_eps = eps
        if eps_form == "inside_root":
            scale, outer_eps = P.sqrt(nu_max_hat, eps_root + eps), 0.0
        elif eps_form == "eps_hat" and correct_mu:
            root = jnp.sqrt(correction)
            mu_hat = jax.tree.map(lambda m: m * root.astype(m.dtype), mu_hat)
            if variant == "max_of_raw":
                raw_max, divisor = nu_max, 1.0
            else:  # v̂max_t·(1−β2^t)
                raw_max = jax.tree.map(lambda v: v * correction.astype(v.dtype), P.upcast(nu_max))
                divisor = 1.0 / correction
            scale = P.sqrt(raw_max, eps_root)
        else:
            scale = P.sqrt(nu_max_hat, eps_root)
        scale = S.floor_denominator(scale, stored[2], nu_max, divisor)
        direction = P.normalize(mu_hat, scale, outer_eps, like=updates)
        return direction, ScaleByAmsgradState(count, *stored)

    return optax.GradientTransformation(init_fn, update_fn)


def _corrections(variant: str, correct_mu: bool, correct_nu: bool) -> tuple[bool, bool]:
    """(correct m_t, max of the corrected v̂_t) for a variant and optax's two switches."""
    V.check_flag("bias_correction_mu", correct_mu)
    V.check_flag("bias_correction_nu", correct_nu)
    if variant == "max_of_corrected":
        return correct_mu, correct_nu
    if not (correct_mu and correct_nu):
        raise ValueError(
            f"bias_correction_mu/bias_correction_nu apply to variant='max_of_corrected' only, "
            f"got variant={variant!r}; variant='uncorrected' is both False."
        )
    return variant == "max_of_raw", False


def amsgrad(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    nu_dtype: Any = None,
    state_precision: Any = None,
    variant: str = "max_of_corrected",
    eps_form: str = "algorithm1",
) -> optax.GradientTransformationExtraArgs:
    """AMSGrad: θ_t = θ_{t−1} − α·m̂_t/(√v̂max_t + ε). See :func:`scale_by_amsgrad`.

    Args:
      bias_correction_mu, bias_correction_nu: optax's switches, see :func:`scale_by_amsgrad`.
      variant: "max_of_corrected" (optax), "max_of_raw" (torch, Keras) or "uncorrected" (Reddi).
      eps_form: "algorithm1" (optax, torch), "eps_hat" (Keras) or "inside_root".

    Example:
      >>> import jax.numpy as jnp
      >>> tx = amsgrad(1e-3)
      >>> state = tx.init({"w": jnp.zeros(2)})
    """
    scaling = scale_by_amsgrad(
        b1,
        b2,
        eps,
        eps_root,
        mu_dtype,
        bias_correction_mu,
        bias_correction_nu,
        nu_dtype=nu_dtype,
        state_precision=state_precision,
        variant=variant,
        eps_form=eps_form,
    )
    return with_learning_rate(learning_rate, scaling)
