"""8-bit block-wise dynamic quantization of optimizer moments (after Dettmers et al., 2022).

A tensor is flattened, zero-padded and cut into blocks of ``block_size`` values; each block keeps
one float32 scale (its absmax) and one uint8 code per value. A code indexes a fixed table of 256
numbers in [−1, 1] (signed, for m_t) or [0, 1] (unsigned, for v_t and u_t). The tables are
*dynamic*: decade 10⁻ᵉ..10⁻ᵉ⁺¹ gets half as many entries as the decade above it, so the
relative precision is highest for the largest values and the range reaches 10⁻⁷ of the absmax.

Error bound (what the tests check): a value x with |x| ≤ absmax is stored as the nearest table
entry, so |x − x̂| ≤ ½·absmax·(gap between the two table entries around x/absmax), at most
0.0035·absmax for the unsigned table and 0.0070·absmax for the signed one.

The state is an ordinary pytree: :class:`QuantizedArray` is a NamedTuple of two arrays, so it
jits, checkpoints (orbax, flax.serialization) and shards like any other state.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class QuantizedArray(NamedTuple):
    """A tensor stored as uint8 codes (num_blocks, block_size) and float32 absmax per block."""

    codes: jax.Array
    scales: jax.Array


def _is_leaf(x: Any) -> bool:
    return x is None or isinstance(x, QuantizedArray)


def _decades(top_count: int, num_decades: int) -> list[float]:
    """Midpoints of top_count, top_count/2, ... equal steps across the decades below 1."""
    values = []
    for exponent in range(num_decades):
        count = top_count >> exponent
        steps = 0.1 + 0.9 * (np.arange(count) + 0.5) / count
        values.extend(steps * 10.0**-exponent)
    return values


@functools.cache
def dynamic_code(signed: bool) -> np.ndarray:
    """The 256-entry table (ascending float32) of the signed or unsigned dynamic code.

    Unsigned: 0, 1 and 128, 64, …, 2 midpoints in the decades [0.1, 1], …, [1e-7, 1e-6].
    Signed: 0, ±1 and ±(64, 32, …, 2 midpoints in [0.1, 1], …, [1e-6, 1e-5]); the 256th entry
    repeats 0, so 255 values are distinct.

    >>> code = dynamic_code(signed=False)
    >>> code.shape, float(code[0]), float(code[-1])
    ((256,), 0.0, 1.0)
    """
    if signed:
        magnitudes = [1.0, *_decades(64, 6)]
        values = [0.0, 0.0, *magnitudes, *(-m for m in magnitudes)]
    else:
        values = [0.0, 1.0, *_decades(128, 7)]
    table = np.sort(np.asarray(values, np.float64)).astype(np.float32)
    assert table.shape == (256,), table.shape
    return table


def error_bound(signed: bool) -> float:
    """Largest |x − x̂| / absmax of the code: half its widest gap."""
    return float(np.max(np.diff(dynamic_code(signed).astype(np.float64)))) / 2


def quantize(x: jax.Array, *, signed: bool, block_size: int) -> QuantizedArray:
    """Block-wise quantization of ``x`` (any shape) to the nearest code entry.

    >>> import jax.numpy as jnp
    >>> q = quantize(jnp.array([0.5, -1.0, 0.25]), signed=True, block_size=2)
    >>> q.codes.shape, q.scales
    ((2, 2), Array([1.  , 0.25], dtype=float32))
    """
    x = jnp.asarray(x, jnp.float32).reshape(-1)
    num_blocks = max(1, math.ceil(x.size / block_size))
    blocks = jnp.pad(x, (0, num_blocks * block_size - x.size)).reshape(num_blocks, block_size)
    scales = jnp.max(jnp.abs(blocks), axis=1)
    normalized = blocks / jnp.where(scales > 0, scales, 1)[:, None]
    table = dynamic_code(signed).astype(np.float64)
    boundaries = jnp.asarray(((table[1:] + table[:-1]) / 2).astype(np.float32))
    codes = jnp.searchsorted(boundaries, normalized, method="scan_unrolled")
    return QuantizedArray(codes=codes.astype(jnp.uint8), scales=scales)


def dequantize(q: QuantizedArray, *, signed: bool, shape: tuple[int, ...]) -> jax.Array:
    """float32 values of ``q`` reshaped to ``shape`` (the padding dropped).

    >>> import jax.numpy as jnp
    >>> x = jnp.array([0.5, -1.0, 0.25])
    >>> dequantize(quantize(x, signed=True, block_size=2), signed=True, shape=(3,)).round(3)
    Array([ 0.501, -1.   ,  0.25 ], dtype=float32)
    """
    table = jnp.asarray(dynamic_code(signed))
    values = jnp.take(table, q.codes.astype(jnp.int32)) * q.scales[:, None]
    return values.reshape(-1)[: math.prod(shape)].reshape(shape)


@dataclasses.dataclass(frozen=True)
class Blockwise8bit:
    """Moments stored as 8-bit block-wise dynamic codes; arithmetic in float32.

    m_t uses the signed code, v_t (and AdaMax's u_t) the unsigned one. Leaves with fewer than
    ``min_size`` elements stay float32 (their scales would cost more than they save). Pass as
    ``state_precision=`` to :func:`jadam.scale_by_adam` and friends; ``state_precision="8bit"``
    is ``Blockwise8bit()``.

    Attributes:
      block_size: values per float32 scale, ≥ 1 (default 256: 1.016 bytes per value).
      min_size: leaves smaller than this stay float32, ≥ 0 (default 4096).

    Example:
      >>> import jax.numpy as jnp, jadam
      >>> tx = jadam.scale_by_adam(state_precision=Blockwise8bit(block_size=64, min_size=0))
      >>> tx.init(jnp.zeros(100)).mu.codes.shape
      (2, 64)
    """

    block_size: int = 256
    min_size: int = 4096

    def __post_init__(self):
        for name, low in (("block_size", 1), ("min_size", 0)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"Blockwise8bit {name} must be an int ≥ {low}, got {value!r}.")

    def _quantized(self, leaf: Any) -> bool:
        return math.prod(leaf.shape) >= self.min_size

    def init(self, params: Any, *, signed: bool) -> Any:
        def leaf(p):
            if not self._quantized(p):
                return jnp.zeros(p.shape, jnp.float32)
            blocks = max(1, math.ceil(math.prod(p.shape) / self.block_size))
            return QuantizedArray(
                codes=jnp.full((blocks, self.block_size), _zero_code(signed), jnp.uint8),
                scales=jnp.zeros((blocks,), jnp.float32),
            )

        return jax.tree.map(lambda p: None if p is None else leaf(p), params, is_leaf=_is_leaf)

    def decode(self, stored: Any, updates: Any, *, signed: bool) -> Any:
        def leaf(s, g):
            if s is None:
                return None
            if isinstance(s, QuantizedArray):
                return dequantize(s, signed=signed, shape=g.shape)
            return s

        return jax.tree.map(leaf, stored, updates, is_leaf=_is_leaf)

    def encode(self, values: Any, *, signed: bool, count: jax.Array, stream: int) -> Any:
        del count, stream

        def leaf(v):
            if v is None or not self._quantized(v):
                return v
            return quantize(v, signed=signed, block_size=self.block_size)

        return jax.tree.map(leaf, values, is_leaf=_is_leaf)


def _zero_code(signed: bool) -> int:
    return int(np.searchsorted(dynamic_code(signed), 0.0))
