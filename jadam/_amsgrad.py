"""AMSGrad (Reddi, Kale & Kumar, 2018): Adam with a non-decreasing second moment."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam._alias import with_learning_rate
from jadam._family import adam_direction, check_eps_form, init_state
from jadam._primitives import (
    bias_correction,
    debias,
    increment,
    one_minus_power,
    saturating_cast,
    update_first_moment,
    update_second_moment,
)
from jadam._storage import Moments
from jadam._validation import check_adam_hyperparameters, check_choice, check_flag

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
    check_adam_hyperparameters(b1, b2, eps, eps_root)
    moments = Moments(state_precision, mu_dtype, nu_dtype, count=3)
    check_choice("variant", variant, AMSGRAD_VARIANTS)
    check_eps_form(eps_form)
    correct_mu, correct_nu = _corrections(variant, bias_correction_mu, bias_correction_nu)
    if eps_form == "eps_hat" and variant == "max_of_corrected" and correct_mu != correct_nu:
        raise ValueError(
            "eps_form='eps_hat' needs bias_correction_mu == bias_correction_nu, got "
            f"{bias_correction_mu!r} and {bias_correction_nu!r}."
        )

    def init_fn(params):
        return init_state(moments, params, ScaleByAmsgradState)

    def update_fn(updates, state, params=None):
        del params
        count = increment(state.count)
        mu, nu, nu_max = moments.read(updates, (state.mu, state.nu, state.nu_max))
        mu = update_first_moment(updates, mu, b1)
        nu = update_second_moment(updates, nu, b2)
        correction = one_minus_power(b2, count)
        running = debias(nu, correction) if correct_nu else nu
        nu_max = jax.tree.map(
            lambda m, v: saturating_cast(jnp.maximum(m, v), m.dtype), nu_max, running
        )
        stored = moments.write((mu, nu, nu_max), count)
        mu_hat = bias_correction(mu, b1, count) if correct_mu else mu
        # "max_of_raw" divides the max by 1 − β2^t; the others already hold what goes under
        # the root (with ε̂, v̂max_t·(1−β2^t)).
        direction = adam_direction(
            mu_hat, nu_max, correction if correct_mu else None, updates, eps=eps,
            eps_root=eps_root, eps_form=eps_form, divide_nu=variant == "max_of_raw",
            stored_nu=stored[2],
        )  # fmt: skip
        return direction, ScaleByAmsgradState(count, *stored)

    return optax.GradientTransformation(init_fn, update_fn)


def _corrections(variant: str, correct_mu: bool, correct_nu: bool) -> tuple[bool, bool]:
    """(correct m_t, max of the corrected v̂_t) for a variant and optax's two switches."""
    check_flag("bias_correction_mu", correct_mu)
    check_flag("bias_correction_nu", correct_nu)
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
