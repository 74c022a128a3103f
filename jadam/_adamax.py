"""AdaMax (Kingma & Ba, 2015, Algorithm 2, Section 7.1): Adam with the infinity norm."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from jadam._alias import build_alias, with_learning_rate
from jadam._family import MomentStep, init_state, step_moments
from jadam._primitives import bias_correction, normalize, update_infinity_norm
from jadam._spec import StepSpec
from jadam._storage import Moments, floor_denominator
from jadam._validation import check_adam_hyperparameters, check_non_negative_or_schedule


class ScaleByAdamaxState(NamedTuple):
    """State of :func:`scale_by_adamax`: step count t, m_t and the infinity norm u_t."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_adamax(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformation:
    """Scales gradients by AdaMax's m̂_t / u_t (Algorithm 2, lines 7-9).

    m_t = β1·m_{t−1} + (1−β1)·g_t,   u_t = max(β2·u_{t−1}, |g_t|),   out = m_t/((1−β1^t)·(u_t + ε)).

    Args:
      b1: β1 ∈ [0, 1).
      b2: β2 ∈ [0, 1).
      eps: ε ≥ 0, added to u_t outside the max; 0 gives Algorithm 2 exactly.
      mu_dtype: storage dtype of m_t (None: the parameter's dtype), rounded to nearest.
      nu_dtype: storage dtype of u_t (None: the parameter's dtype), rounded to nearest.
      state_precision: None, ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"8bit"`` or a
        :class:`jadam.StochasticRounding` / :class:`jadam.Blockwise8bit`; see
        :func:`jadam.scale_by_adam`. The arithmetic is float32 in every case.

    Note: the paper has no ε; optax and torch put it inside the max, u_t = max(β2·u_{t−1},
    |g_t| + ε). jadam keeps the paper's u_t in the state and adds ε only to the divisor, so with
    ε = 0 it is Algorithm 2. Where u_t + ε = 0 (all past gradients 0) the update is 0, not 0/0.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_adamax(eps=0.0)
      >>> updates, state = tx.update(jnp.array([0.5, -2.0, 0.0]), tx.init(jnp.zeros(3)))
      >>> updates.round(5)
      Array([ 1., -1.,  0.], dtype=float32)
    """
    spec = adamax_spec(b1, b2, eps)
    return scale_by_adamax_spec(spec, Moments(state_precision, mu_dtype, nu_dtype, count=2))


def adamax_spec(b1: Any, b2: Any, eps: Any, **rest: Any) -> StepSpec:
    """The validated :class:`StepSpec` of Algorithm 2 (``rest``: the learning rate)."""
    check_adam_hyperparameters(b1, b2, eps)
    return StepSpec("adamax", b1, b2, eps, **rest)


def scale_by_adamax_spec(spec: StepSpec, moments: Moments) -> optax.GradientTransformation:
    """:func:`scale_by_adamax` of a spec and a moment storage (the pure path of Algorithm 2)."""
    b1, b2 = spec.b1, spec.b2

    def init_fn(params):
        return init_state(moments, params, ScaleByAdamaxState)

    def infinity_norm(updates, mu, nu):
        del mu
        return update_infinity_norm(updates, nu, b2)

    def update_fn(updates, state, params=None):
        del params
        step = step_moments(moments, updates, state, b1, update_nu=infinity_norm)
        direction = adamax_step_direction(spec, updates, step)
        return direction, ScaleByAdamaxState(step.count, step.stored_mu, step.stored_nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adamax_step_direction(spec: StepSpec, updates: Any, step: MomentStep) -> Any:
    """Algorithm 2 line 9's m̂_t/(u_t + ε) from the new moments, in the updates' dtypes.

    The pure path's step after :func:`jadam._family.step_moments` (and the fused kernel's
    moments-only mode, see :func:`jadam._adam.adam_step_direction`).
    """
    mu_hat = bias_correction(step.mu, spec.b1, step.count)
    scale = floor_denominator(step.nu, step.stored_nu, step.nu, root=False)
    return normalize(mu_hat, scale, spec.eps, like=updates)


def adamax(
    learning_rate: Any = 0.002,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    fused: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """AdaMax, Algorithm 2: θ_t = θ_{t−1} − (α/(1−β1^t))·m_t/(u_t + ε); paper default α = 0.002.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = adamax()
      >>> updates, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
      >>> updates
      Array([-0.002], dtype=float32)
    """
    spec = adamax_spec(b1, b2, eps, learning_rate=learning_rate)
    moments = Moments(state_precision, mu_dtype, nu_dtype, count=2)
    scaling = scale_by_adamax_spec(spec, moments)
    return build_alias(spec, moments, scaling, fused=fused, direction=adamax_step_direction)


def adamaxw(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 1e-4,
    mask: Any = None,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """AdamaxW: AdaMax with decoupled weight decay λ (optax's ``adamaxw``).

    θ_t = θ_{t−1} − α·(m_t/((1−β1^t)·(u_t + ε)) + λ·θ_{t−1}), u_t as in :func:`scale_by_adamax`
    (ε outside the max, the paper's; optax puts it inside). Needs ``params`` in ``update``.

    Args:
      weight_decay: λ ≥ 0 (or a schedule), optax's default 1e-4.
      mask: a tree of booleans (or a callable params → tree) selecting the decayed leaves.

    Note: Keras's ``Adamax(learning_rate, epsilon=1e-7, weight_decay=λ)`` also adds ε outside
    the max and decays θ by α·λ·θ, so it is ``adamaxw(learning_rate, eps=1e-7, weight_decay=λ)``.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = adamaxw(0.002, weight_decay=0.5)
      >>> params = jnp.array([1.0])
      >>> tx.update(jnp.array([3.0]), tx.init(params), params)[0]  # −α·(1 + λ·θ)
      Array([-0.003], dtype=float32)
    """
    check_non_negative_or_schedule("weight_decay", weight_decay)
    scaling = scale_by_adamax(
        b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype, state_precision=state_precision
    )
    return with_learning_rate(learning_rate, scaling, optax.add_decayed_weights(weight_decay, mask))
