"""Pure pytree primitives the Adam family is built from (Kingma & Ba, 2015, Algorithms 1-2, §3).

Every function maps over a pytree; ``None`` leaves pass through unchanged. The arithmetic runs
in at least float32 whatever the storage dtype, and results are cast back to the dtype of the
moment they update.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jadam._validation import check_floating_tree

_is_none = lambda x: x is None  # noqa: E731


def map_leaves(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """``fn`` over the leaves of ``tree`` (and the matching leaves of ``rest``); ``None`` stays.

    >>> import jax.numpy as jnp
    >>> map_leaves(lambda x: x + 1, {"w": jnp.ones(1), "frozen": None})
    {'frozen': None, 'w': Array([2.], dtype=float32)}
    """
    return jax.tree.map(
        lambda x, *r: None if x is None else fn(x, *r), tree, *rest, is_leaf=_is_none
    )


def compute_dtype(dtype: Any) -> Any:
    """The dtype arithmetic runs in: the storage dtype promoted to at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def upcast(tree: Any) -> Any:
    """Each leaf in its compute dtype (at least float32), so that ε never underflows."""
    return map_leaves(lambda x: cast(x, compute_dtype(x.dtype)), tree)


# The per-leaf arithmetic below uses ``jax.lax`` directly: a jnp operator on a tracer costs
# several times more Python per call, and an optimizer runs these once per leaf when traced
# (1,000 leaves ⇒ tens of thousands of calls in the compile time of every training step).


def cast(x: jax.Array, dtype: Any) -> jax.Array:
    """``x`` in ``dtype``, without a conversion when it already is."""
    if x.dtype == dtype:
        return x
    return x.astype(dtype) if jnp.iscomplexobj(x) else lax.convert_element_type(x, dtype)


def _scalar(value: Any, dtype: Any) -> Any:
    """A Python number or a scalar array as a scalar operand of ``dtype`` for ``lax`` ops."""
    if isinstance(value, (int, float)):
        return np.asarray(value, dtype)
    return cast(jnp.asarray(value), dtype)


def scaled(x: jax.Array, value: Any) -> jax.Array:
    """x·value for a scalar ``value`` (a Python number or a traced scalar)."""
    return lax.mul(x, _scalar(value, x.dtype))


def plus_scalar(x: jax.Array, value: Any) -> jax.Array:
    """x + value for a scalar ``value``; no operation at all for a Python 0."""
    return lax.add(x, _scalar(value, x.dtype)) if _nonzero(value) else x


def ema(previous: jax.Array, value: jax.Array, decay: Any) -> jax.Array:
    """One leaf's exponential moving average β·previous + (1 − β)·value, in their dtype."""
    return lax.add(scaled(previous, decay), scaled(value, 1 - decay))


def squared_magnitude(g: jax.Array, dtype: Any) -> jax.Array:
    """|g|² (g·conj(g) for complex g) computed in g's compute dtype, returned in ``dtype``."""
    return cast(abs_sq(cast(g, compute_dtype(g.dtype))), dtype)


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
    return cast(saturate(x, dtype, nonnegative=nonnegative), dtype)


def _narrower(storage: Any, compute: Any) -> bool:
    """Whether a value computed in ``compute`` can overflow when stored in ``storage``."""
    return jnp.finfo(storage).max < jnp.finfo(compute).max


def abs_sq(x: jax.Array) -> jax.Array:
    """|x|² = x·conj(x), real for complex ``x``."""
    if jnp.iscomplexobj(x):
        return jnp.real(x) ** 2 + jnp.imag(x) ** 2
    return lax.mul(x, x)


def map_moment(
    fn: Callable[..., jax.Array], updates: Any, moment: Any, *rest: Any, nonnegative: bool = False
) -> Any:
    """A moment's update leaf by leaf: ``fn(g, previous, *rest)`` in the compute dtype, stored back.

    ``fn`` gets the gradient leaf as it is and the previous moment in its compute dtype (at least
    float32); its result is cast back to the moment's storage dtype, saturating (see
    :func:`saturating_cast`; ``nonnegative`` for second moments and norms) only where that dtype
    is narrower than the arithmetic. Every moment EMA of the family is written with it.

    >>> import jax.numpy as jnp
    >>> map_moment(lambda g, v: v + g, jnp.array([1e6]), jnp.array([0.0], jnp.float16))
    Array([6.55e+04], dtype=float16)
    """

    def leaf(g, previous, *more):
        dtype = compute_dtype(previous.dtype)
        new = fn(g, cast(previous, dtype), *more)
        if not _narrower(previous.dtype, dtype):
            # In its own dtype a moment overflows only when the arithmetic does (an infinite
            # gradient makes it infinite here as in optax and torch; skip_nonfinite skips it).
            return cast(new, previous.dtype)
        return saturating_cast(new, previous.dtype, nonnegative=nonnegative)

    return map_leaves(leaf, updates, moment, *rest)


def update_first_moment(updates: Any, mu: Any, decay: Any) -> Any:
    """First-moment EMA, Algorithm 1 line 7: m_t = β1·m_{t−1} + (1 − β1)·g_t.

    >>> import jax.numpy as jnp
    >>> update_first_moment(jnp.array([1.0]), jnp.array([0.0]), 0.9)
    Array([0.1], dtype=float32)
    """
    return map_moment(lambda g, m: ema(m, cast(g, m.dtype), decay), updates, mu)


def update_second_moment(updates: Any, nu: Any, decay: Any) -> Any:
    """Second raw-moment EMA, Algorithm 1 line 8: v_t = β2·v_{t−1} + (1 − β2)·|g_t|².

    For complex gradients |g|² = g·conj(g), so ``nu`` is real.

    >>> import jax.numpy as jnp
    >>> update_second_moment(jnp.array([2.0]), jnp.array([0.0]), 0.75)
    Array([1.], dtype=float32)
    """

    def leaf(g, v):
        return ema(v, squared_magnitude(g, v.dtype), decay)

    return map_moment(leaf, updates, nu, nonnegative=True)


def update_infinity_norm(updates: Any, nu: Any, decay: Any) -> Any:
    """Exponentially weighted infinity norm, Algorithm 2 line 8: u_t = max(β2·u_{t−1}, |g_t|).

    Unlike optax and torch, no ε enters the max (the paper has none).

    >>> import jax.numpy as jnp
    >>> update_infinity_norm(jnp.array([-3.0, 0.5]), jnp.array([1.0, 1.0]), 0.9)
    Array([3. , 0.9], dtype=float32)
    """

    def leaf(g, u):
        return jnp.maximum(decay * u, jnp.abs(cast(g, compute_dtype(g.dtype))))

    return map_moment(leaf, updates, nu, nonnegative=True)


def bias_correction(moment: Any, decay: Any, count: Any) -> Any:
    """Bias correction of Section 3: m̂_t = m_t / (1 − β^t), with ``count`` the paper's t ≥ 1.

    1 − β^t is computed as −expm1(t·ln β) with ln β in double precision when β is a Python
    number, so it is exact to the working precision; optax's float32 1 − β^t is off by up to
    1.3e-5 (relative) at t = 1 for β = 0.999. The result is in the compute dtype (≥ float32).

    >>> import jax.numpy as jnp
    >>> bias_correction(jnp.array([0.1]), 0.9, jnp.array(1))
    Array([1.], dtype=float32)
    """
    return debias(moment, one_minus_power(decay, count))


def debias(moment: Any, correction: Any) -> Any:
    """moment / correction in the compute dtype: Section 3's division by a given 1 − β^t.

    The one way the family bias-corrects (:func:`bias_correction` computes 1 − β^t first;
    a decaying β1 or per-row counts pass their own ``correction``, a scalar or an array that
    broadcasts against each leaf).

    >>> import jax.numpy as jnp
    >>> debias(jnp.array([[0.1, 0.2], [0.3, 0.4]]), jnp.array([[0.1], [0.5]]))
    Array([[1. , 2. ],
           [0.6, 0.8]], dtype=float32)
    """

    def leaf(m):
        dtype = compute_dtype(m.dtype)
        real_correction = _scalar(correction, jnp.finfo(dtype).dtype)
        if jnp.iscomplexobj(m) or jnp.ndim(real_correction) > 0:
            return cast(m, dtype) / real_correction
        return lax.div(cast(m, dtype), real_correction)

    return map_leaves(leaf, moment)


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

    check_floating_tree(params, "parameter")

    def leaf(p):
        leaf_dtype = dtype if dtype is not None else p.dtype
        if real:
            leaf_dtype = jnp.finfo(leaf_dtype).dtype
        return _zeros_with_sharding_of(p, leaf_dtype)

    return map_leaves(leaf, params)


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

    Adam (Algorithm 1 line 11) uses s_t = √v̂_t; AdaMax (Algorithm 2 line 9) uses s_t = u_t.
    With ε = 0 and a coordinate whose gradients were all 0 the literal algorithms compute 0/0;
    here that coordinate's update is 0.

    >>> import jax.numpy as jnp
    >>> normalize(jnp.array([2.0, 0.0]), jnp.array([2.0, 0.0]), 0.0, jnp.zeros(2))
    Array([1., 0.], dtype=float32)
    """
    safe = needs_safe_divide(eps)

    def leaf(m, s, out):
        return cast(step_direction(m, cast(s, compute_dtype(s.dtype)), eps, safe=safe), out.dtype)

    return map_leaves(leaf, mu_hat, scale, like)


def step_direction(m_hat: jax.Array, scale: jax.Array, eps: Any, *, safe: bool) -> jax.Array:
    """One leaf's m̂ / (s + ε), ε outside the root as in Algorithm 1 line 11.

    ``safe`` (see :func:`needs_safe_divide`) gives 0 where s + ε is 0 instead of 0/0. The pure
    path (through :func:`normalize`) and the fused kernel's jnp transcription both divide here.

    >>> import jax.numpy as jnp
    >>> step_direction(jnp.array([1.0, 0.0]), jnp.array([1.0, 0.0]), 0.0, safe=True)
    Array([1., 0.], dtype=float32)
    """
    denominator = plus_scalar(scale, eps)
    if safe:
        return safe_divide(m_hat, denominator)
    if jnp.iscomplexobj(m_hat):
        return m_hat / denominator
    return lax.div(cast(m_hat, jnp.result_type(m_hat, denominator)), denominator)


def needs_safe_divide(eps: Any) -> bool:
    """Whether m̂/(s + ε) must guard against 0/0: unless ε is a number ≥ float32's tiny.

    ε below float32's smallest normal number rounds (or flushes) to 0, and a traced ε may be
    0. The pure path and the fused kernel both decide with this function.

    >>> needs_safe_divide(1e-8), needs_safe_divide(0.0)
    (False, True)
    """
    return not (isinstance(eps, (int, float)) and eps >= jnp.finfo(jnp.float32).tiny)


def sqrt(tree: Any, eps_root: Any = 0.0) -> Any:
    """√(x + ε_root) for each leaf (Algorithm 1 line 11's √v̂_t, with optax's ε_root)."""
    return map_leaves(
        lambda x: lax.sqrt(plus_scalar(cast(x, compute_dtype(x.dtype)), eps_root)), tree
    )


def _nonzero(value: Any) -> bool:
    """False only for a Python 0 (adding it would be a no-op pass per leaf)."""
    return not (isinstance(value, (int, float)) and value == 0)
