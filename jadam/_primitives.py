"""Pure pytree primitives the Adam family is built from (Kingma & Ba, 2015, Algorithms 1-2, §3).

Every function maps over a pytree; ``None`` leaves pass through unchanged. The arithmetic runs
in at least float32 whatever the storage dtype, and results are cast back to the dtype of the
moment they update.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jadam import _validation

_is_none = lambda x: x is None  # noqa: E731


def _compute_dtype(dtype: Any) -> Any:
    """The dtype arithmetic runs in: the storage dtype promoted to at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def upcast(tree: Any) -> Any:
    """Each leaf in its compute dtype (at least float32), so that ε never underflows."""
    return _tree_map(lambda x: _cast(x, _compute_dtype(x.dtype)), tree)


# The per-leaf arithmetic below uses ``jax.lax`` directly: a jnp operator on a tracer costs
# several times more Python per call, and an optimizer runs these once per leaf when traced
# (1,000 leaves ⇒ tens of thousands of calls in the compile time of every training step).


def _cast(x: jax.Array, dtype: Any) -> jax.Array:
    """``x`` in ``dtype``, without a conversion when it already is."""
    if x.dtype == dtype:
        return x
    return x.astype(dtype) if jnp.iscomplexobj(x) else lax.convert_element_type(x, dtype)


def _scalar(value: Any, dtype: Any) -> Any:
    """A Python number or a scalar array as a scalar operand of ``dtype`` for ``lax`` ops."""
    if isinstance(value, (int, float)):
        return np.asarray(value, dtype)
    return _cast(jnp.asarray(value), dtype)


def _scale(x: jax.Array, value: Any) -> jax.Array:
    """x·value for a scalar ``value`` (a Python number or a traced scalar)."""
    return lax.mul(x, _scalar(value, x.dtype))


def _tree_map(fn, tree, *rest):
    return jax.tree.map(
        lambda x, *r: None if x is None else fn(x, *r), tree, *rest, is_leaf=_is_none
    )


def saturate(x: jax.Array, dtype: Any, *, nonnegative: bool = False) -> jax.Array:
    """``x`` clipped to the finite range of the float ``dtype``, in ``x``'s own dtype.

    ±inf and values beyond ``dtype``'s largest become that largest value; NaN stays NaN.
    ``nonnegative=True`` (second moments, infinity norms) checks the upper limit only.

    >>> import jax.numpy as jnp
    >>> saturate(jnp.array([1e6, -2.0, -jnp.inf]), jnp.float16)
    Array([ 65504.,     -2., -65504.], dtype=float32)
    """
    bound = np.asarray(jnp.finfo(dtype).max, x.dtype)
    # Not jnp.clip: XLA's CPU fusion duplicates a clamped producer into its consumers and then
    # copies every donated moment buffer before overwriting it (two extra passes per leaf).
    if not nonnegative:
        x = lax.select(lax.lt(x, lax.neg(bound)), lax.full_like(x, -bound), x)
    return lax.select(lax.gt(x, bound), lax.full_like(x, bound), x)


def saturating_cast(x: jax.Array, dtype: Any, *, nonnegative: bool = False) -> jax.Array:
    """``x`` cast to a moment's storage ``dtype``, ±inf and overflow clipped to its largest value.

    Without this a float16 second moment turns into inf for |g| ≳ 256 (g² > 65504) and stays
    there, freezing the coordinate. The moment updates use it wherever the storage dtype is
    narrower than the float32 (or wider) arithmetic; a moment stored in its compute dtype
    overflows only when the arithmetic does. NaN stays NaN. ``nonnegative=True`` (second
    moments, infinity norms) checks the upper limit only. See :func:`saturate`.

    >>> import jax.numpy as jnp
    >>> saturating_cast(jnp.array([1e6, 2.0, jnp.inf]), jnp.float16)
    Array([6.55e+04, 2.00e+00, 6.55e+04], dtype=float16)
    """
    if not jnp.issubdtype(dtype, jnp.floating) or jnp.iscomplexobj(x):
        return x.astype(dtype)  # complex first moments: cast as is
    return _cast(saturate(x, dtype, nonnegative=nonnegative), dtype)


def _narrower(storage: Any, compute: Any) -> bool:
    """Whether a value computed in ``compute`` can overflow when stored in ``storage``."""
    return jnp.finfo(storage).max < jnp.finfo(compute).max


def abs_sq(x: jax.Array) -> jax.Array:
    """|x|² = x·conj(x), real for complex ``x``."""
    if jnp.iscomplexobj(x):
        return jnp.real(x) ** 2 + jnp.imag(x) ** 2
    return lax.mul(x, x)


def update_first_moment(updates: Any, mu: Any, decay: Any) -> Any:
    """First-moment EMA, Algorithm 1 line 7: m_t = β1·m_{t−1} + (1 − β1)·g_t.

    >>> import jax.numpy as jnp
    >>> update_first_moment(jnp.array([1.0]), jnp.array([0.0]), 0.9)
    Array([0.1], dtype=float32)
    """

    def leaf(g, m):
        dtype = _compute_dtype(m.dtype)
        new = lax.add(_scale(_cast(m, dtype), decay), _scale(_cast(g, dtype), 1 - decay))
        if not _narrower(m.dtype, dtype):
            # A convex combination of finite values cannot overflow in its own dtype; an
            # infinite gradient makes m infinite here as in optax and torch (skip_nonfinite).
            return _cast(new, m.dtype)
        return saturating_cast(new, m.dtype)

    return _tree_map(lambda g, m: leaf(g, m), updates, mu)


def update_second_moment(updates: Any, nu: Any, decay: Any) -> Any:
    """Second raw-moment EMA, Algorithm 1 line 8: v_t = β2·v_{t−1} + (1 − β2)·|g_t|².

    For complex gradients |g|² = g·conj(g), so ``nu`` is real.

    >>> import jax.numpy as jnp
    >>> update_second_moment(jnp.array([2.0]), jnp.array([0.0]), 0.75)
    Array([1.], dtype=float32)
    """

    def leaf(g, v):
        dtype = _compute_dtype(v.dtype)
        square = _cast(abs_sq(_cast(g, _compute_dtype(g.dtype))), dtype)
        new = lax.add(_scale(_cast(v, dtype), decay), _scale(square, 1 - decay))
        if not _narrower(v.dtype, dtype):
            # In its own dtype v_t overflows only when |g|² does (|g| > 1.8e19 in float32), as
            # in optax and torch; skip_nonfinite then skips that step (its new state is inf).
            return _cast(new, v.dtype)
        return saturating_cast(new, v.dtype, nonnegative=True)

    return _tree_map(leaf, updates, nu)


def update_infinity_norm(updates: Any, nu: Any, decay: Any) -> Any:
    """Exponentially weighted infinity norm, Algorithm 2 line 8: u_t = max(β2·u_{t−1}, |g_t|).

    Unlike optax and torch, no ε enters the max (the paper has none).

    >>> import jax.numpy as jnp
    >>> update_infinity_norm(jnp.array([-3.0, 0.5]), jnp.array([1.0, 1.0]), 0.9)
    Array([3. , 0.9], dtype=float32)
    """

    def leaf(g, u):
        dtype = _compute_dtype(u.dtype)
        new = jnp.maximum(decay * u.astype(dtype), jnp.abs(g.astype(_compute_dtype(g.dtype))))
        if not _narrower(u.dtype, dtype):  # the max of finite values is finite
            return _cast(new, u.dtype)
        return saturating_cast(new, u.dtype, nonnegative=True)

    return _tree_map(leaf, updates, nu)


def bias_correction(moment: Any, decay: Any, count: Any) -> Any:
    """Bias correction of Section 3: m̂_t = m_t / (1 − β^t), with ``count`` the paper's t ≥ 1.

    1 − β^t is computed as −expm1(t·ln β) with ln β in double precision when β is a Python
    number, so it is exact to the working precision; optax's float32 1 − β^t is off by up to
    1.3e-5 (relative) at t = 1 for β = 0.999. The result is in the compute dtype (≥ float32).

    >>> import jax.numpy as jnp
    >>> bias_correction(jnp.array([0.1]), 0.9, jnp.array(1))
    Array([1.], dtype=float32)
    """
    correction = one_minus_power(decay, count)

    def leaf(m):
        dtype = _compute_dtype(m.dtype)
        real_correction = _scalar(correction, jnp.finfo(dtype).dtype)
        if jnp.iscomplexobj(m):
            return m.astype(dtype) / real_correction
        return lax.div(_cast(m, dtype), real_correction)

    return _tree_map(leaf, moment)


def one_minus_power(decay: Any, count: Any) -> jax.Array:
    """1 − β^t for t ≥ 1, accurate also when β^t is close to 1."""
    count = jnp.asarray(count, jnp.result_type(float))
    if isinstance(decay, (int, float)):
        if decay == 0:
            return jnp.ones_like(count)
        return -jnp.expm1(count * math.log(decay))
    decay = jnp.asarray(decay, count.dtype)
    return jnp.where(decay == 0, 1.0, -jnp.expm1(count * jnp.log(decay)))


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """numerator / denominator, and 0 where the denominator is 0 (never 0/0 = NaN).

    >>> import jax.numpy as jnp
    >>> safe_divide(jnp.array([1.0, 0.0]), jnp.array([2.0, 0.0]))
    Array([0.5, 0. ], dtype=float32)
    """
    nonzero = denominator != 0
    return jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1), 0)


def zeros_like(params: Any, dtype: Any = None, *, real: bool = False) -> Any:
    """Zeros shaped like ``params`` (``None`` leaves stay ``None``).

    Args:
      params: the parameter tree (arrays or ``jax.ShapeDtypeStruct``s).
      dtype: storage dtype; None keeps each parameter's dtype.
      real: store the real counterpart of a complex dtype (for |g|² moments).
    """

    _validation.check_floating_tree(params, "parameter")

    def leaf(p):
        leaf_dtype = dtype if dtype is not None else p.dtype
        if real:
            leaf_dtype = jnp.finfo(leaf_dtype).dtype
        return _zeros_with_sharding_of(p, leaf_dtype)

    return _tree_map(leaf, params)


def _zeros_with_sharding_of(p: Any, dtype: Any) -> jax.Array:
    """Zeros shaped like ``p`` that keep ``p``'s sharding: eagerly, under jit and from structs.

    Under jit with automatic sharding ``jnp.zeros_like`` is a constant the partitioner replicates;
    selecting 0 against ``p`` (never reading its values) ties the result to ``p``'s sharding.
    """
    if isinstance(p, jax.ShapeDtypeStruct):
        return jnp.zeros(p.shape, dtype, device=p.sharding)
    if isinstance(p, jax.core.Tracer):
        source = (
            jnp.real(p)
            if jnp.iscomplexobj(p) and not jnp.issubdtype(dtype, jnp.complexfloating)
            else p
        )
        return jnp.where(jnp.zeros(p.shape, bool), source, 0).astype(dtype)
    return jnp.zeros_like(p, dtype)


def increment(count: jax.Array) -> jax.Array:
    """count + 1, saturating at the dtype's maximum instead of overflowing (optax's helper)."""
    return optax.safe_increment(count)


def normalize(mu_hat: Any, scale: Any, eps: Any, like: Any) -> Any:
    """The step direction m̂_t / (s_t + ε), 0 where that is 0/0, cast to the dtypes of ``like``.

    Adam (Algorithm 1 line 12) uses s_t = √v̂_t; AdaMax (Algorithm 2 line 11) uses s_t = u_t.
    With ε = 0 and a coordinate whose gradients were all 0 the literal algorithms compute 0/0;
    here that coordinate's update is 0.

    >>> import jax.numpy as jnp
    >>> normalize(jnp.array([2.0, 0.0]), jnp.array([2.0, 0.0]), 0.0, jnp.zeros(2))
    Array([1., 0.], dtype=float32)
    """
    eps_is_positive = not needs_safe_divide(eps)

    def leaf(m, s, out):
        s = _cast(s, _compute_dtype(s.dtype))
        denominator = lax.add(s, _scalar(eps, s.dtype)) if _nonzero(eps) else s
        if eps_is_positive and not jnp.iscomplexobj(m):
            direction = lax.div(_cast(m, jnp.result_type(m, denominator)), denominator)
        elif eps_is_positive:
            direction = m / denominator
        else:
            direction = safe_divide(m, denominator)
        return _cast(direction, out.dtype)

    return _tree_map(leaf, mu_hat, scale, like)


def needs_safe_divide(eps: Any) -> bool:
    """Whether m̂/(s + ε) must guard against 0/0: unless ε is a number ≥ float32's tiny.

    ε below float32's smallest normal number rounds (or flushes) to 0, and a traced ε may be
    0. The pure path and the fused kernel both decide with this function.

    >>> needs_safe_divide(1e-8), needs_safe_divide(0.0)
    (False, True)
    """
    return not (isinstance(eps, (int, float)) and eps >= jnp.finfo(jnp.float32).tiny)


def sqrt(tree: Any, eps_root: Any = 0.0) -> Any:
    """√(x + ε_root) for each leaf (Algorithm 1 line 12's √v̂_t, with optax's ε_root)."""

    def leaf(x):
        x = _cast(x, _compute_dtype(x.dtype))
        return lax.sqrt(lax.add(x, _scalar(eps_root, x.dtype)) if _nonzero(eps_root) else x)

    return _tree_map(leaf, tree)


def _nonzero(value: Any) -> bool:
    """False only for a Python 0 (adding it would be a no-op pass per leaf)."""
    return not (isinstance(value, (int, float)) and value == 0)
