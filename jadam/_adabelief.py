"""AdaBelief (Zhuang et al., 2020, Algorithm 2): Adam with the variance of g_t around m_t."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jadam import _primitives as P
from jadam import _storage as S
from jadam import _validation as V
from jadam._adam import validate_adam_hyperparameters
from jadam._alias import with_learning_rate
from jadam._radam import corrected_first_moment


class ScaleByBeliefState(NamedTuple):
    """State of :func:`scale_by_belief`: count t, m_t and s_t (optax's field names)."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def update_belief(updates: Any, mu: Any, nu: Any, decay: Any, eps_root: Any) -> Any:
    """s_t = β2·s_{t−1} + (1−β2)·|g_t − m_t|² + ε_root (Algorithm 2, line 7)."""

    def leaf(g, m, s):
        dtype = P._compute_dtype(s.dtype)
        error = P._cast(g, P._compute_dtype(g.dtype)) - P._cast(m, P._compute_dtype(m.dtype))
        square = P._cast(P.abs_sq(error), dtype)
        new = lax.add(P._scale(P._cast(s, dtype), decay), P._scale(square, 1 - decay))
        new = new + P._scalar(eps_root, dtype) if P._nonzero(eps_root) else new
        if not P._narrower(s.dtype, dtype):
            return P._cast(new, s.dtype)
        return P.saturating_cast(new, s.dtype, nonnegative=True)

    return P._tree_map(leaf, updates, mu, nu)


def scale_by_belief(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-16,
    eps_root: Any = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformation:
    """Scales gradients by AdaBelief's m̂_t / (√ŝ_t + ε) (Zhuang et al., 2020, Algorithm 2).

    m_t = β1·m_{t−1} + (1−β1)·g_t,   s_t = β2·s_{t−1} + (1−β2)·(g_t − m_t)² + ε_root,
    m̂_t = m_t/(1−β1^t),   ŝ_t = s_t/(1−β2^t),   u_t = m̂_t / (√ŝ_t + ε).

    Args:
      b1: β1 ∈ [0, 1).
      b2: β2 ∈ [0, 1).
      eps: ε ≥ 0, outside the root (Algorithm 2's second ε).
      eps_root: ε_root ≥ 0, added to s_t at every step and stored with it (Algorithm 2's first
        ε, line 7). The paper uses one ε for both; optax and the authors' code split it.
      nesterov: Dozat's Nesterov momentum for m̂_t, as optax's ``nesterov=True``.
      mu_dtype, nu_dtype, state_precision: storage of m_t and s_t, see :func:`jadam.scale_by_adam`.

    Note: ε_root accumulates in s_t: ŝ_t holds ε_root·(1−β2^t)/((1−β2)(1−β2^t)) = ε_root/(1−β2),
    1000·ε_root for β2 = 0.999, so it weighs more than an ε added once under the root. This is
    the paper's line 7, optax's and the authors' code; jadam keeps it. The authors' PyTorch
    package also rectifies (RAdam's r_t) and decouples weight decay by default; the paper's
    Algorithm 2, optax and jadam do neither (use ``optax.add_decayed_weights`` for the decay).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_belief()
      >>> updates, state = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
      >>> updates.round(4)  # s_1 = (1−β2)(g − 0.1g)², so the first step is sign(g)/0.9
      Array([ 1.1111, -1.1111], dtype=float32)

    Reference: Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
    Gradients", NeurIPS 2020.
    """
    validate_adam_hyperparameters(b1, b2, eps, eps_root)
    V.check_flag("nesterov", nesterov)
    moments = S.Moments(state_precision, mu_dtype, nu_dtype, count=2)

    def init_fn(params):
        mu, nu = moments.init(params)
        return ScaleByBeliefState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)

    def update_fn(updates, state, params=None):
        del params
        count = P.increment(state.count)
        mu, nu = moments.read(updates, (state.mu, state.nu))
        mu = P.update_first_moment(updates, mu, b1)
        nu = update_belief(updates, mu, nu, b2, eps_root)
        stored_mu, stored_nu = moments.write((mu, nu), count)
        mu_hat = corrected_first_moment(updates, mu, b1, count, nesterov)
        scale = P.sqrt(P.bias_correction(nu, b2, count))
        scale = S.floor_denominator(scale, stored_nu, nu, P.one_minus_power(b2, count))
        direction = P.normalize(mu_hat, scale, eps, like=updates)
        return direction, ScaleByBeliefState(count=count, mu=stored_mu, nu=stored_nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adabelief(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-16,
    eps_root: Any = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """AdaBelief: θ_t = θ_{t−1} − α·m̂_t/(√ŝ_t + ε); optax's ``adabelief``. See
    :func:`scale_by_belief`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = adabelief(1e-3, state_precision="bfloat16")
      >>> state = tx.init({"w": jnp.zeros(4)})
    """
    scaling = scale_by_belief(
        b1,
        b2,
        eps,
        eps_root,
        nesterov=nesterov,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
        state_precision=state_precision,
    )
    return with_learning_rate(learning_rate, scaling)
