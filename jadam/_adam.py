"""Adam (Kingma & Ba, 2015, Algorithm 1) with the Section 3 bias-correction switch."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam import _primitives as P
from jadam import _storage as S
from jadam import _validation as V
from jadam._alias import with_learning_rate
from jadam._fused import fused_adam


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`: step count t (int32), m_t and v_t."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def validate_adam_hyperparameters(b1: Any, b2: Any, eps: Any, eps_root: Any = 0.0) -> None:
    """Checks b1, b2 ∈ [0, 1), eps ≥ 0 and eps_root ≥ 0 (concrete numbers only)."""
    V.check_range("b1", b1, 0.0, 1.0)
    V.check_range("b2", b2, 0.0, 1.0)
    V.check_non_negative("eps", eps)
    V.check_non_negative("eps_root", eps_root)


def scale_by_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    *,
    bias_correction: bool = True,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    state_precision: Any = None,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """Scales gradients by Adam's m̂_t / (√v̂_t + ε) (Algorithm 1, lines 6-12).

    m_t = β1·m_{t−1} + (1−β1)·g_t,   v_t = β2·v_{t−1} + (1−β2)·|g_t|²,
    m̂_t = m_t/(1−β1^t),   v̂_t = v_t/(1−β2^t),   u_t = m̂_t / (√(v̂_t + ε_root) + ε).

    Args:
      b1: β1 ∈ [0, 1), decay of the first moment.
      b2: β2 ∈ [0, 1), decay of the second raw moment.
      eps: ε ≥ 0, added outside the square root (Algorithm 1).
      eps_root: ε_root ≥ 0, added inside the square root (optax's option).
      bias_correction: divide by 1−β^t (Section 3); False gives Figure 4's uncorrected ablation.
      mu_dtype: storage dtype of m_t (None: the parameter's dtype), rounded to nearest.
      nu_dtype: storage dtype of v_t (None: the parameter's dtype), rounded to nearest.
      state_precision: how both moments are stored: None (``mu_dtype``/``nu_dtype``),
        ``"float32"``, ``"bfloat16"``/``"float16"`` (stochastic rounding, so the moments still
        decay), ``"8bit"`` (block-wise quantized), or a :class:`jadam.StochasticRounding` /
        :class:`jadam.Blockwise8bit`. The arithmetic is float32 in every case.
      nesterov: Dozat's (2016) Nesterov momentum, as optax's ``nadam``.

    Note: coordinates whose gradient was always 0 get update 0, also with ε = 0 (the literal
    algorithm computes 0/0 there). Complex gradients use |g|² = g·conj(g), so v_t is real.
    A float16 v_t saturates at 65504 and √v̂_t is floored at float16's resolution, so tiny ε
    never gives 0/0 or Inf. Updates come out in the gradient's dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_adam()
      >>> updates, state = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
      >>> updates  # the first step is sign(g) up to ε
      Array([ 1., -1.], dtype=float32)
    """
    validate_adam_hyperparameters(b1, b2, eps, eps_root)
    storage, mu_dtype, nu_dtype = S.resolve(state_precision, mu_dtype, nu_dtype)

    def init_fn(params):
        if storage is not None:
            S.check_real(params, state_precision)
            return ScaleByAdamState(
                count=jnp.zeros([], jnp.int32),
                mu=storage.init(params, signed=True),
                nu=storage.init(params, signed=False),
            )
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=P.zeros_like(params, mu_dtype),
            nu=P.zeros_like(params, nu_dtype, real=True),
        )

    def update_fn(updates, state, params=None):
        del params
        count = P.increment(state.count)
        if storage is None:
            V.check_tree_matches(updates, state.mu)
            mu = P.update_first_moment(updates, state.mu, b1)
            nu = P.update_second_moment(updates, state.nu, b2)
            stored_mu, stored_nu = mu, nu
        else:
            S.check_tree_matches(updates, state.mu)
            mu = P.update_first_moment(updates, storage.decode(state.mu, updates, signed=True), b1)
            nu = P.update_second_moment(
                updates, storage.decode(state.nu, updates, signed=False), b2
            )
            stored_mu = storage.encode(mu, signed=True, count=count, stream=0)
            stored_nu = storage.encode(nu, signed=False, count=count, stream=1)
        if bias_correction:
            mu_hat = P.bias_correction(mu, b1, count)
            nu_hat = P.bias_correction(nu, b2, count)
        else:
            mu_hat, nu_hat = mu, nu
        if nesterov:
            next_mu = P.bias_correction(mu, b1, P.increment(count)) if bias_correction else mu
            grad = P.bias_correction(updates, b1, count) if bias_correction else updates
            mu_hat = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, next_mu, grad)
        scale = P.sqrt(nu_hat, eps_root)
        divisor = P.one_minus_power(b2, count) if bias_correction else 1.0
        scale = S.floor_denominator(scale, stored_nu, divisor)
        direction = P.normalize(mu_hat, scale, eps, like=updates)
        return direction, ScaleByAdamState(count=count, mu=stored_mu, nu=stored_nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    bias_correction: bool = True,
    nesterov: bool = False,
    fused: bool = False,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Adam, Algorithm 1: θ_t = θ_{t−1} − α·m̂_t/(√v̂_t + ε). See :func:`scale_by_adam`.

    Args:
      learning_rate: α ≥ 0, a number or a schedule of the step count (e.g.
        :func:`jadam.inverse_sqrt_schedule` for Section 4's α/√t).
      fused: one pass over the whole tree per step with jadam's C++ kernel, same results
        and state (see :class:`jadam.FusedTransformation`; falls back where it cannot run).
      nu_dtype, state_precision: storage of the moments, see :func:`scale_by_adam`.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> tx = adam(0.1)
      >>> params = jnp.array([1.0])
      >>> updates, _ = tx.update(jnp.array([3.0]), tx.init(params))
      >>> optax.apply_updates(params, updates)
      Array([0.9], dtype=float32)

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    scaling = scale_by_adam(
        b1,
        b2,
        eps,
        eps_root,
        bias_correction=bias_correction,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
        state_precision=state_precision,
        nesterov=nesterov,
    )
    tx = with_learning_rate(learning_rate, scaling)
    if fused:
        return fused_adam(
            tx,
            learning_rate,
            b1,
            b2,
            eps,
            eps_root,
            custom_storage=(mu_dtype, nu_dtype, state_precision) != (None, None, None),
            bias_correction=bias_correction,
            nesterov=nesterov,
        )
    return tx


def nadam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """NAdam (Dozat, 2016) with constant β1, as optax's ``nadam``: Adam with Nesterov momentum.

    m̄_t = β1·m_t/(1−β1^{t+1}) + (1−β1)·g_t/(1−β1^t),   θ_t = θ_{t−1} − α·m̄_t/(√v̂_t + ε).

    Note: torch's ``NAdam`` uses Dozat's momentum schedule (momentum_decay) and differs.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = nadam(1e-3)
      >>> state = tx.init(jnp.zeros(3))
    """
    return adam(
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        mu_dtype,
        nesterov=True,
        nu_dtype=nu_dtype,
        state_precision=state_precision,
    )


def adamw(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    weight_decay: Any = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = False,
    fused: bool = False,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay λ.

    θ_t = θ_{t−1} − α·(m̂_t/(√v̂_t + ε) + λ·θ_{t−1}). Needs ``params`` in ``update``.

    Args:
      weight_decay: λ ≥ 0.
      mask: a tree of booleans (or a callable params → tree) selecting the decayed leaves.
      fused: one pass per step with jadam's C++ kernel, as in :func:`adam`.
      nu_dtype, state_precision: storage of the moments, see :func:`scale_by_adam`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = adamw(1e-3, weight_decay=0.01)
      >>> params = jnp.ones(2)
      >>> updates, _ = tx.update(jnp.ones(2), tx.init(params), params)
    """
    if not callable(weight_decay):
        V.check_non_negative("weight_decay", weight_decay)
    tx = with_learning_rate(
        learning_rate,
        scale_by_adam(
            b1,
            b2,
            eps,
            eps_root,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
            state_precision=state_precision,
            nesterov=nesterov,
        ),
        optax.add_decayed_weights(weight_decay, mask),
    )
    if fused:
        return fused_adam(
            tx,
            learning_rate,
            b1,
            b2,
            eps,
            eps_root,
            custom_storage=(mu_dtype, nu_dtype, state_precision) != (None, None, None),
            nesterov=nesterov,
            weight_decay=weight_decay,
            mask=mask,
        )
    return tx
