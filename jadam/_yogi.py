"""Yogi (Zaheer et al., 2018, Algorithm 2): Adam with an additive second-moment update."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax
from jax import lax

from jadam._alias import with_learning_rate
from jadam._family import (
    ScaleByAdamState,
    adam_direction,
    corrected_first_moment,
    init_state,
    step_moments,
)
from jadam._primitives import (
    map_leaves,
    map_moment,
    one_minus_power,
    scaled,
    squared_magnitude,
    zeros_like,
)
from jadam._storage import Moments
from jadam._validation import check_adam_hyperparameters, check_flag, check_non_negative


def update_yogi_moment(updates: Any, nu: Any, decay: Any) -> Any:
    """v_t = v_{t−1} − (1−β2)·sign(v_{t−1} − |g_t|²)·|g_t|² (Algorithm 2, line 6)."""

    def leaf(g, v):
        square = squared_magnitude(g, v.dtype)
        return lax.sub(v, scaled(lax.mul(lax.sign(lax.sub(v, square)), square), 1 - decay))

    return map_moment(leaf, updates, nu, nonnegative=True)


def scale_by_yogi(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-3,
    eps_root: Any = 0.0,
    initial_accumulator_value: Any = 1e-6,
    *,
    bias_correction: bool = True,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformation:
    """Scales gradients by Yogi's m̂_t / (√v̂_t + ε) (Zaheer et al., 2018, Algorithm 2).

    m_t = β1·m_{t−1} + (1−β1)·g_t,   v_t = v_{t−1} − (1−β2)·sign(v_{t−1} − g_t²)·g_t²,
    u_t = m̂_t / (√(v̂_t + ε_root) + ε), with m̂_t, v̂_t bias-corrected as Adam's (optax).

    Args:
      b1: β1 ∈ [0, 1).
      b2: β2 ∈ [0, 1).
      eps: ε ≥ 0, outside the root; the paper's default is 1e-3.
      eps_root: ε_root ≥ 0, inside the root (optax's option).
      initial_accumulator_value: m_0 = v_0 ≥ 0 (optax's, default 1e-6, for both moments).
      bias_correction: divide by 1−β^t as optax does. False with
        ``initial_accumulator_value=0`` is Algorithm 2 as printed (m_0 = v_0 = 0, u_t =
        m_t/(√v_t + ε)).
      mu_dtype, nu_dtype, state_precision: storage of m_t and v_t, see :func:`jadam.scale_by_adam`.

    Note: v_t stays ≥ 0 (it moves towards g_t² by at most (1−β2)·g_t²). optax (like TF-Addons)
    starts both moments at 1e-6 and still divides by 1−β^t, so its early v̂_t is inflated by
    1e-6/(1−β2^t) (1e-3 at t = 1); jadam's defaults reproduce that. A coordinate whose
    gradients were all 0 with v_0 = 0 and ε = 0 gets update 0, not 0/0.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_yogi(initial_accumulator_value=0.0, eps=0.0)
      >>> updates, state = tx.update(jnp.array([0.5, -2.0, 0.0]), tx.init(jnp.zeros(3)))
      >>> updates  # v_1 = (1−β2)·g², so the first step is sign(g)
      Array([ 1., -1.,  0.], dtype=float32)

    Reference: Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018.
    """
    check_adam_hyperparameters(b1, b2, eps, eps_root)
    check_non_negative("initial_accumulator_value", initial_accumulator_value)
    check_flag("bias_correction", bias_correction)
    moments = Moments(state_precision, mu_dtype, nu_dtype, count=2)

    def init_fn(params):
        state = init_state(moments, params)
        if isinstance(initial_accumulator_value, (int, float)) and initial_accumulator_value == 0:
            return state
        if moments.storage is None:
            fill = lambda x: x + jnp.asarray(initial_accumulator_value).astype(x.dtype)  # noqa: E731
            return state._replace(mu=map_leaves(fill, state.mu), nu=map_leaves(fill, state.nu))

        # encode the initial values into the stored form; one tree per moment, so that leaves
        # a storage keeps as they are (8-bit leaves below min_size) get buffers of their own
        def filled():
            return map_leaves(
                lambda x: x + jnp.asarray(initial_accumulator_value, x.dtype),
                zeros_like(params, jnp.float32),
            )

        mu, nu = moments.write((filled(), filled()), state.count)
        return ScaleByAdamState(count=state.count, mu=mu, nu=nu)

    def yogi_moment(updates, mu, nu):
        del mu
        return update_yogi_moment(updates, nu, b2)

    def update_fn(updates, state, params=None):
        del params
        step = step_moments(moments, updates, state, b1, update_nu=yogi_moment)
        correction = one_minus_power(b2, step.count) if bias_correction else None
        mu_hat = corrected_first_moment(
            updates, step.mu, b1, step.count, nesterov=False, corrected=bias_correction
        )
        direction = adam_direction(
            mu_hat, step.nu, correction, updates, eps=eps, eps_root=eps_root,
            stored_nu=step.stored_nu,
        )  # fmt: skip
        return direction, ScaleByAdamState(step.count, step.stored_mu, step.stored_nu)

    return optax.GradientTransformation(init_fn, update_fn)


def yogi(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-3,
    *,
    eps_root: Any = 0.0,
    initial_accumulator_value: Any = 1e-6,
    bias_correction: bool = True,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Yogi: θ_t = θ_{t−1} − α·m̂_t/(√v̂_t + ε); optax's ``yogi``. See :func:`scale_by_yogi`.

    ``yogi(lr, initial_accumulator_value=0.0, bias_correction=False)`` is Algorithm 2 as printed.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = yogi(1e-2)
      >>> state = tx.init(jnp.zeros(3))
      >>> float(state[0].nu[0])
      1e-06
    """
    scaling = scale_by_yogi(
        b1,
        b2,
        eps,
        eps_root,
        initial_accumulator_value,
        bias_correction=bias_correction,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
        state_precision=state_precision,
    )
    return with_learning_rate(learning_rate, scaling)
