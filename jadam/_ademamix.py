"""AdEMAMix (Pagliardini, Ablin & Grangier, 2024): Adam with a second, slow momentum."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam._alias import with_learning_rate
from jadam._family import adam_direction
from jadam._primitives import (
    bias_correction,
    increment,
    one_minus_power,
    upcast,
    update_first_moment,
    update_second_moment,
)
from jadam._storage import Moments
from jadam._validation import (
    check_adam_hyperparameters,
    check_non_negative,
    check_non_negative_or_schedule,
    check_range,
)


class ScaleByAdemamixState(NamedTuple):
    """State of :func:`scale_by_ademamix` (optax's field names).

    count: t for the fast EMA and v_t; count_m2: t for the slow EMA and the schedules of α
    and β3; m1: fast EMA; m2: slow EMA; nu: second moment.
    """

    count: jax.Array
    count_m2: jax.Array
    m1: optax.Updates
    m2: optax.Updates
    nu: optax.Updates


def _value(hyperparameter: Any, count: jax.Array) -> Any:
    return hyperparameter(count) if callable(hyperparameter) else hyperparameter


def scale_by_ademamix(
    b1: Any = 0.9,
    b2: Any = 0.999,
    b3: Any = 0.9999,
    alpha: Any = 6.0,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformation:
    """Scales gradients by (m̂1_t + α·m2_t) / (√v̂_t + ε) (AdEMAMix, Algorithm 1 of the paper).

    m1_t = β1·m1_{t−1} + (1−β1)·g_t,   m2_t = β3·m2_{t−1} + (1−β3)·g_t,
    v_t = β2·v_{t−1} + (1−β2)·g_t²,   m̂1_t = m1_t/(1−β1^t),   v̂_t = v_t/(1−β2^t).
    The slow EMA m2 is not bias-corrected (the paper lets it fill slowly).

    Args:
      b1: β1 ∈ [0, 1), the fast EMA.
      b2: β2 ∈ [0, 1), the second moment.
      b3: β3 ∈ [0, 1) or a schedule of the step (the paper warms β3 up), the slow EMA.
      alpha: α ≥ 0 or a schedule of the step (the paper warms α up linearly), the mix.
      eps: ε ≥ 0 outside the square root; eps_root: ε ≥ 0 inside it.
      mu_dtype: storage dtype of m1 and m2 (None: the parameter's dtype).
      nu_dtype, state_precision: storage, see :func:`jadam.scale_by_adam` (8-bit stores m1 and
        m2 with the signed code, v with the unsigned one).

    Note: same state layout and numbers as ``optax.contrib.scale_by_ademamix``; schedules are
    evaluated at ``count_m2`` before the increment, as optax does. Zero gradients with ε = 0
    give update 0 (never 0/0).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_ademamix(alpha=0.0)  # α = 0 is Adam
      >>> updates, _ = tx.update(jnp.array([2.0, -0.5]), tx.init(jnp.zeros(2)))
      >>> updates
      Array([ 1., -1.], dtype=float32)

    Reference: Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older",
    2024, arXiv:2409.03137.
    """
    check_adam_hyperparameters(b1, b2, eps, eps_root)
    if not callable(b3):
        check_range("b3", b3, 0.0, 1.0)
    if not callable(alpha):
        check_non_negative("alpha", alpha)
    moments = Moments(state_precision, mu_dtype, nu_dtype, count=3, signed=2)

    def init_fn(params):
        m1, m2, nu = moments.init(params)
        count, count_m2 = jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32)  # two buffers
        return ScaleByAdemamixState(count=count, count_m2=count_m2, m1=m1, m2=m2, nu=nu)

    def update_fn(updates, state, params=None):
        del params
        b3_t, alpha_t = _value(b3, state.count_m2), _value(alpha, state.count_m2)
        m1, m2, nu = moments.read(updates, (state.m1, state.m2, state.nu))
        m1 = update_first_moment(updates, m1, b1)
        m2 = update_first_moment(updates, m2, b3_t)
        nu = update_second_moment(updates, nu, b2)
        count = increment(state.count)
        stored = moments.write((m1, m2, nu), count)
        m1_hat = bias_correction(m1, b1, count)
        mixed = jax.tree.map(lambda fast, slow: fast + alpha_t * upcast(slow), m1_hat, m2)
        direction = adam_direction(
            mixed, nu, one_minus_power(b2, count), updates, eps=eps, eps_root=eps_root,
            stored_nu=stored[2],
        )  # fmt: skip
        new_state = ScaleByAdemamixState(count, increment(state.count_m2), *stored)
        return direction, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def ademamix(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    b3: Any = 0.9999,
    alpha: Any = 5.0,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    weight_decay: Any = 0.0,
    mask: Any = None,
    *,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """AdEMAMix with decoupled weight decay: θ_t = θ_{t−1} − η·(u_t + λ·θ_{t−1}).

    u_t from :func:`scale_by_ademamix`; signature and defaults of ``optax.contrib.ademamix``
    (α = 5 here, 6 in ``scale_by_ademamix``, as in optax).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = ademamix(1e-3, weight_decay=0.01)
      >>> params = {"w": jnp.ones(2)}
      >>> updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
    """
    check_non_negative_or_schedule("weight_decay", weight_decay)
    scaling = scale_by_ademamix(
        b1,
        b2,
        b3,
        alpha,
        eps,
        eps_root,
        mu_dtype,
        nu_dtype=nu_dtype,
        state_precision=state_precision,
    )
    return with_learning_rate(learning_rate, scaling, optax.add_decayed_weights(weight_decay, mask))
