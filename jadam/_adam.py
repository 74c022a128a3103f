"""Adam (Kingma & Ba, 2015, Algorithm 1) with the Section 3 bias-correction switch."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jadam._alias import build_alias, with_learning_rate
from jadam._family import (
    MomentStep,
    ScaleByAdamState,
    adam_direction,
    check_eps_form,
    corrected_first_moment,
    init_state,
    step_moments,
)
from jadam._nadam import scale_by_nadam
from jadam._primitives import debias, one_minus_power
from jadam._schedules import decayed_b1_correction
from jadam._spec import StepSpec
from jadam._storage import Moments
from jadam._validation import (
    check_adam_hyperparameters,
    check_flag,
    check_non_negative_or_schedule,
    check_range,
)


def scale_by_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    bias_correction: bool = True,
    nu_dtype: Any = None,
    state_precision: Any = None,
    nesterov: bool = False,
    eps_form: str = "algorithm1",
    b1_decay: Any = None,
) -> optax.GradientTransformation:
    """Scales gradients by Adam's m̂_t / (√v̂_t + ε) (Algorithm 1, lines 7-11).

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
      eps_form: where ε enters. "algorithm1": m̂_t/(√v̂_t + ε) (line 11). "eps_hat": Section 2's
        efficient ordering α_t = α·√(1−β2^t)/(1−β1^t), θ_t = θ_{t−1} − α_t·m_t/(√v_t + ε̂),
        i.e. m̂_t/(√v̂_t + ε̂/√(1−β2^t)) (Keras's and TF's only form). "inside_root":
        m̂_t/√(v̂_t + ε) (the RMSProp form; same as eps_root=ε, eps=0).
      b1_decay: λ ∈ (0, 1] for Section 4's β1,t = β1·λ^(t−1) (Theorem 4.1); m̂_t is then
        m_t/(1 − ∏_{τ≤t} β1,τ), see :func:`jadam.decayed_b1_correction`. None: constant β1.

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
    spec = adam_spec(
        b1, b2, eps, eps_root, bias_correction=bias_correction, nesterov=nesterov,
        eps_form=eps_form, b1_decay=b1_decay,
    )  # fmt: skip
    return scale_by_adam_spec(spec, Moments(state_precision, mu_dtype, nu_dtype, count=2))


def adam_spec(
    b1: Any, b2: Any, eps: Any, eps_root: Any, *, bias_correction: bool = True,
    nesterov: bool = False, eps_form: str = "algorithm1", b1_decay: Any = None, **rest: Any,
) -> StepSpec:  # fmt: skip
    """The validated :class:`StepSpec` of Algorithm 1 (``rest``: learning rate, decay, mask)."""
    check_adam_hyperparameters(b1, b2, eps, eps_root)
    check_eps_form(eps_form)
    if b1_decay is not None:
        check_range("b1_decay", b1_decay, 0.0, 1.0, low_inclusive=False, high_inclusive=True)
        if nesterov:
            raise ValueError("b1_decay is not supported together with nesterov=True.")
    check_flag("bias_correction", bias_correction)
    check_flag("nesterov", nesterov)
    return StepSpec(
        "adam", b1, b2, eps, eps_root, bias_correction=bias_correction, nesterov=nesterov,
        eps_form=eps_form, b1_decay=b1_decay, **rest,
    )  # fmt: skip


def scale_by_adam_spec(spec: StepSpec, moments: Moments) -> optax.GradientTransformation:
    """:func:`scale_by_adam` of a spec and a moment storage (the pure path of Algorithm 1)."""
    b1, b2, b1_decay = spec.b1, spec.b2, spec.b1_decay

    def init_fn(params):
        return init_state(moments, params)

    def b1_t(count):  # Section 4: β1,t = β1·λ^(t−1)
        return b1 * jnp.asarray(b1_decay, jnp.result_type(float)) ** (count - 1)

    def update_fn(updates, state, params=None):
        del params
        step = step_moments(moments, updates, state, b1 if b1_decay is None else b1_t, b2)
        direction = adam_step_direction(spec, updates, step)
        return direction, ScaleByAdamState(step.count, step.stored_mu, step.stored_nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adam_step_direction(spec: StepSpec, updates: Any, step: MomentStep) -> Any:
    """Algorithm 1 lines 9-11 from the new moments: m̂_t/(√v̂_t + ε), in the updates' dtypes.

    The pure path's step after :func:`jadam._family.step_moments`; the fused kernel's
    moments-only mode (float32 moments) computes m_t and v_t and hands them here.
    """
    b1, b2, b1_decay, count = spec.b1, spec.b2, spec.b1_decay, step.count
    if b1_decay is not None and spec.bias_correction:
        mu_hat = debias(step.mu, decayed_b1_correction(b1, b1_decay, count))
    else:
        mu_hat = corrected_first_moment(
            updates, step.mu, b1, count, spec.nesterov, corrected=spec.bias_correction
        )
    correction = one_minus_power(b2, count) if spec.bias_correction else None
    return adam_direction(
        mu_hat, step.nu, correction, updates, eps=spec.eps, eps_root=spec.eps_root,
        eps_form=spec.eps_form, stored_nu=step.stored_nu,
    )  # fmt: skip


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
    eps_form: str = "algorithm1",
    b1_decay: Any = None,
    fused: bool = False,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Adam, Algorithm 1: θ_t = θ_{t−1} − α·m̂_t/(√v̂_t + ε). See :func:`scale_by_adam`.

    Args:
      learning_rate: α ≥ 0, a number or a schedule of the step count (e.g.
        :func:`jadam.inverse_sqrt_schedule` for Section 4's α/√t).
      eps_form, b1_decay: see :func:`scale_by_adam` (ε placement; Section 4's β1 decay λ).
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
    spec = adam_spec(
        b1, b2, eps, eps_root, bias_correction=bias_correction, nesterov=nesterov,
        eps_form=eps_form, b1_decay=b1_decay, learning_rate=learning_rate,
    )  # fmt: skip
    moments = Moments(state_precision, mu_dtype, nu_dtype, count=2)
    scaling = scale_by_adam_spec(spec, moments)
    return build_alias(spec, moments, scaling, fused=fused, direction=adam_step_direction)


def nadam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    fused: bool = False,
    nu_dtype: Any = None,
    state_precision: Any = None,
    momentum_decay: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """NAdam (Dozat, 2016): Adam with Nesterov momentum; constant β1 by default, as optax's.

    m̄_t = β1·m_t/(1−β1^{t+1}) + (1−β1)·g_t/(1−β1^t),   θ_t = θ_{t−1} − α·m̄_t/(√v̂_t + ε).

    Args:
      nesterov: False gives plain :func:`adam`, as optax's ``nadam(nesterov=False)``.
      momentum_decay: None (default): constant β1, optax's ``nadam``. A number ψ > 0: Dozat's
        momentum schedule μ_t = β1·(1 − ½·0.96^(tψ)) of :func:`jadam.scale_by_nadam`;
        ψ = 0.004 is torch's ``NAdam``, ψ = 1 is Keras's ``Nadam``.
      fused: one pass per step with jadam's C++ kernel, as in :func:`adam` (constant β1 only).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = nadam(1e-3)
      >>> state = tx.init(jnp.zeros(3))
      >>> torch_like = nadam(1e-3, momentum_decay=0.004)
    """
    check_flag("nesterov", nesterov)
    if momentum_decay is not None:
        _check_momentum_decay_options(
            momentum_decay, nesterov, eps_root, nu_dtype, state_precision, fused
        )
        scaling = scale_by_nadam(b1, b2, eps, momentum_decay=momentum_decay, mu_dtype=mu_dtype)
        return with_learning_rate(learning_rate, scaling)
    return adam(
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        mu_dtype,
        nesterov=nesterov,
        fused=fused,
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
    check_non_negative_or_schedule("weight_decay", weight_decay)
    spec = adam_spec(
        b1, b2, eps, eps_root, nesterov=nesterov, learning_rate=learning_rate,
        weight_decay=weight_decay, mask=mask,
    )  # fmt: skip
    moments = Moments(state_precision, mu_dtype, nu_dtype, count=2)
    scaling = scale_by_adam_spec(spec, moments)
    return build_alias(spec, moments, scaling, fused=fused, direction=adam_step_direction)


def nadamw(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    weight_decay: Any = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = True,
    momentum_decay: Any = None,
    fused: bool = False,
    nu_dtype: Any = None,
    state_precision: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """NAdamW: :func:`nadam` with AdamW's decoupled weight decay λ (optax's ``nadamw``).

    θ_t = θ_{t−1} − α·(m̄_t/(√v̂_t + ε) + λ·θ_{t−1}), m̄_t as in :func:`nadam`. Needs ``params``.

    Args:
      weight_decay, mask: as in :func:`adamw`.
      nesterov: optax's ``nadamw`` is ``adamw`` with ``nesterov=True``; False gives AdamW.
      momentum_decay: None: optax's constant β1. ψ > 0: Dozat's momentum schedule, so
        ``nadamw(lr, momentum_decay=0.004, weight_decay=λ)`` is torch's
        ``NAdam(lr, weight_decay=λ, decoupled_weight_decay=True)``.
      fused: one pass per step with jadam's C++ kernel, as in :func:`adam` (constant β1 only).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = nadamw(1e-3, weight_decay=0.01)
      >>> params = jnp.ones(2)
      >>> updates, _ = tx.update(jnp.ones(2), tx.init(params), params)
    """
    check_flag("nesterov", nesterov)
    if momentum_decay is None:
        return adamw(
            learning_rate,
            b1,
            b2,
            eps,
            eps_root,
            mu_dtype,
            weight_decay,
            mask,
            nesterov=nesterov,
            fused=fused,
            nu_dtype=nu_dtype,
            state_precision=state_precision,
        )
    _check_momentum_decay_options(
        momentum_decay, nesterov, eps_root, nu_dtype, state_precision, fused
    )
    check_non_negative_or_schedule("weight_decay", weight_decay)
    scaling = scale_by_nadam(b1, b2, eps, momentum_decay=momentum_decay, mu_dtype=mu_dtype)
    return with_learning_rate(learning_rate, scaling, optax.add_decayed_weights(weight_decay, mask))


def _check_momentum_decay_options(
    momentum_decay: Any,
    nesterov: bool,
    eps_root: Any,
    nu_dtype: Any,
    state_precision: Any,
    fused: bool,
) -> None:
    """The options Dozat's momentum schedule (:func:`jadam.scale_by_nadam`) cannot honour."""
    if not nesterov:
        raise ValueError(
            "momentum_decay is Dozat's Nesterov schedule: it needs nesterov=True, got "
            f"{nesterov!r}."
        )
    if not isinstance(eps_root, jax.Array) and eps_root != 0:
        raise ValueError(f"eps_root must be 0 with a momentum_decay, got {eps_root!r}.")
    if (nu_dtype, state_precision) != (None, None):
        raise ValueError("momentum_decay does not support nu_dtype or state_precision yet.")
    check_flag("fused", fused)
    if fused:
        raise ValueError(
            f"fused=True does not support momentum_decay={momentum_decay!r} (the kernel runs "
            "NAdam with a constant β1, momentum_decay=None); use fused=False for this option."
        )
