"""LAMB (You et al., 2020, Algorithm 2): Adam's step rescaled per layer by a trust ratio."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax

from jadam._adam import scale_by_adam
from jadam._alias import with_learning_rate
from jadam._primitives import abs_sq, map_leaves, upcast
from jadam._validation import check_non_negative, check_non_negative_or_schedule, check_tree_matches


def _norm(x: Any, min_norm: Any) -> Any:
    """‖x‖₂ of one leaf in float32 (or wider), at least ``min_norm``."""
    x = upcast(x)
    return jnp.maximum(jnp.sqrt(jnp.sum(abs_sq(x))), jnp.asarray(min_norm, x.real.dtype))


def scale_by_trust_ratio(
    min_norm: Any = 0.0,
    trust_coefficient: Any = 1.0,
    eps: Any = 0.0,
) -> optax.GradientTransformation:
    """Scales each leaf's update r by LAMB's trust ratio φ(‖θ‖)/‖r‖ (Algorithm 2, last line).

    u = r·c·max(‖θ‖, n₀)/(max(‖r‖, n₀) + ε), and u = r where ‖θ‖ or ‖r‖ is 0 (a new or zero
    layer keeps its plain step), with one ratio per leaf (the paper's "layer").

    Args:
      min_norm: n₀ ≥ 0, the floor of both norms (optax's; the paper's φ(z) = min(max(z, γ_l),
        γ_u) with γ_l = n₀, γ_u = ∞).
      trust_coefficient: c ≥ 0, a multiplier of the ratio.
      eps: ε ≥ 0, added to ‖r‖.

    Note: needs ``params`` in ``update``. The norms are computed in float32 (or wider) whatever
    the parameter dtype; the ratio is 1 where a norm is 0, as in optax and Keras.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_trust_ratio()
      >>> params, step = jnp.array([3.0, 4.0]), jnp.array([0.0, 0.5])
      >>> tx.update(step, tx.init(params), params)[0]  # ‖θ‖/‖r‖ = 10
      Array([0., 5.], dtype=float32)
    """
    check_non_negative("min_norm", min_norm)
    check_non_negative("trust_coefficient", trust_coefficient)
    check_non_negative("eps", eps)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_trust_ratio needs params: update(updates, state, params).")
        check_tree_matches(updates, params, "parameters")

        def leaf(r, p):
            param_norm, update_norm = _norm(p, min_norm), _norm(r, min_norm)
            ratio = trust_coefficient * param_norm / (update_norm + eps)
            ratio = jnp.where((param_norm == 0) | (update_norm == 0), 1.0, ratio)
            return (upcast(r) * ratio.astype(upcast(r).real.dtype)).astype(r.dtype)

        return map_leaves(leaf, updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def lamb(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-6,
    eps_root: Any = 0.0,
    weight_decay: Any = 0.0,
    mask: Any = None,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """LAMB: θ_t = θ_{t−1} − α·‖θ‖/‖r_t + λθ‖·(r_t + λθ), r_t = m̂_t/(√v̂_t + ε) (Algorithm 2).

    The chain (and state layout) of optax's ``lamb``: :func:`jadam.scale_by_adam`,
    ``optax.add_decayed_weights(weight_decay, mask)``, :func:`scale_by_trust_ratio`, −α.

    Args:
      eps: ε ≥ 0 of r_t; 1e-6 is optax's and the paper's default.
      weight_decay: λ ≥ 0 (or a schedule), added to r_t before the trust ratio (the paper's).
      mask: a tree of booleans (or a callable params → tree) selecting the decayed leaves.
      mu_dtype, nu_dtype, state_precision: storage of m_t and v_t, see :func:`jadam.scale_by_adam`.

    Note: Keras's ``Lamb(learning_rate, beta_1, beta_2, epsilon=1e-7)`` is
    ``lamb(learning_rate, b1, b2, eps=1e-7)``; Keras's own ``weight_decay`` is applied outside the
    trust ratio (θ ← θ − α·λ·θ), which is not LAMB's λ: for that, chain
    ``optax.add_decayed_weights(-α·λ)`` after ``lamb``. Needs ``params`` in ``update``.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = lamb(0.1)
      >>> params = jnp.array([3.0, 4.0])
      >>> updates, _ = tx.update(jnp.array([1.0, 0.0]), tx.init(params), params)
      >>> updates.round(3)  # the Adam step (1, 0) rescaled to α·‖θ‖ = 0.5
      Array([-0.5,  0. ], dtype=float32)

    Reference: You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
    minutes", ICLR 2020.
    """
    check_non_negative_or_schedule("weight_decay", weight_decay)
    return with_learning_rate(
        learning_rate,
        scale_by_adam(
            b1,
            b2,
            eps,
            eps_root,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
            state_precision=state_precision,
        ),
        optax.add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
    )
