"""The fused kernel's step in jnp: what replaces it under ``jax.vmap`` and differentiation.

Same operands and results as the kernel step of :mod:`jadam._kernel` (scalars, then lists of
params, gradients and stored moments), the same operations in the same order, built from the pure
path's own storage functions (decode, stochastic rounding, block-wise quantization, the
denominator floor), so its results are the pure path's.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jadam import _kernel, _precision, _primitives, _quantization, _storage


def _value(scalars: jax.Array, name: str) -> jax.Array:
    return scalars[_kernel.SCALARS.index(name)]


def _decode(stored: jax.Array, leaf: Any, shape: tuple[int, ...], *, signed: bool) -> jax.Array:
    if leaf.kind in (_kernel.BLOCKWISE8, _kernel.BLOCKWISE8_NEAREST):
        return _quantization.dequantize(stored, signed=signed, shape=shape)
    return stored.astype(jnp.float32)


def _encode(plan, leaf, values, stored_like, count, moment):
    stream = 3 * leaf.index + moment
    if leaf.kind == _kernel.FLOAT32:
        return values
    if leaf.kind in (_kernel.BFLOAT16, _kernel.FLOAT16):
        bits = _precision.dither_bits(values.shape, plan.seed(), stream, count)
        return _precision.round_stochastic(values, stored_like.dtype, bits)
    bits = None
    if leaf.kind == _kernel.BLOCKWISE8:
        shape = (math.ceil(max(values.size, 1) / leaf.block), leaf.block)
        bits = _precision.dither_bits(shape, plan.seed(), stream, count)
    return _quantization.quantize(values, signed=moment == 0, block_size=leaf.block, bits=bits)


def _leaf(plan, leaf, scalars, p, g, m_stored, v_stored):
    value = lambda name: _value(scalars, name)  # noqa: E731
    count = jax.lax.bitcast_convert_type(value("count_bits"), jnp.uint32)
    m = _decode(m_stored, leaf, g.shape, signed=True)
    v = _decode(v_stored, leaf, g.shape, signed=False)
    m = value("b1") * m + value("one_minus_b1") * g
    if plan.algorithm != _kernel.ADAMAX:
        v = value("b2") * v + value("one_minus_b2") * (g * g)
        s = jnp.sqrt(v * value("inverse_bias_correction2") + value("eps_root"))
    else:
        v = jnp.maximum(value("b2") * v, jnp.abs(g))
        s = v
    new_m = _encode(plan, leaf, m, m_stored, count, 0)
    new_v = _encode(plan, leaf, v, v_stored, count, 1)
    if leaf.kind == _kernel.FLOAT16:
        s = jnp.maximum(s, value("half_floor"))
    elif leaf.kind != _kernel.FLOAT32 and leaf.kind != _kernel.BFLOAT16:
        s = _storage.floor_denominator(
            s, new_v, v, value("divisor"), root=plan.algorithm != _kernel.ADAMAX
        )
    if plan.algorithm == _kernel.NADAM:  # Dozat's β1·m/(1 − β1^(t+1)) + (1 − β1)·g/(1 − β1^t)
        g_hat = g * value("inverse_bias_correction1")
        m_hat = value("b1") * (m * value("inverse_bias_correction1_next"))
        m_hat = m_hat + value("one_minus_b1") * g_hat
    else:
        m_hat = m * value("inverse_bias_correction1")
    direction = _primitives.step_direction(m_hat, s, value("eps"), safe=plan.safe)
    if leaf.decay:
        direction = direction + value("weight_decay") * p
    update = direction * value("neg_learning_rate")
    return (p + update if plan.apply else update), new_m, new_v


def _unpack(flat: jax.Array, like: list[jax.Array]) -> list[jax.Array]:
    out, offset = [], 0
    for x in like:
        size = math.prod(x.shape)
        out.append(jax.lax.slice(flat, (offset,), (offset + size,)).reshape(x.shape))
        offset += size
    return out


def _pack(leaves: list[jax.Array], like: jax.Array) -> jax.Array:
    if not leaves:
        return jnp.zeros([0], like.dtype)
    return jnp.concatenate([x.reshape(-1) for x in leaves])


def step(plan, scalars, params, grads, mu, nu):
    """The kernel step (:func:`jadam._kernel.step_function`) in jnp."""
    m_leaves = _unpack(mu[0], grads) if plan.packed else mu
    v_leaves = _unpack(nu[0], grads) if plan.packed else nu
    outputs, new_mu, new_nu = [], [], []
    for i, leaf in enumerate(plan.leaves):
        p = params[i] if params else None
        out, m, v = _leaf(plan, leaf, scalars, p, grads[i], m_leaves[i], v_leaves[i])
        outputs.append(out)
        new_mu.append(m)
        new_nu.append(v)
    outputs = [] if plan.moments_only else outputs
    if plan.packed:
        return outputs, [_pack(new_mu, mu[0])], [_pack(new_nu, nu[0])]
    return outputs, new_mu, new_nu
