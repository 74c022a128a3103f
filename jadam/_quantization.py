"""8-bit block-wise dynamic quantization of optimizer moments (after Dettmers et al., 2022).

A tensor is flattened, zero-padded and cut into blocks of ``block_size`` values; each block keeps
its absmax as one float32 scale and each value as a uint8 code. The code is non-linear: an 8-bit
float of the values divided by the absmax, with E exponent and M mantissa bits (subnormals
included, no Inf/NaN):
signed (for m_t): 1 sign, E = 4, M = 3 bits: 8 levels per octave over 15 octaves;
unsigned (for v_t and AdaMax's u_t): E = 4, M = 4 bits: 16 levels per octave over 15 octaves.
Like bitsandbytes' dynamic tree code it spends its levels on a wide dynamic range; unlike a
table code it is encoded and decoded with a few integer operations (no table search).

Rounding: to nearest, or (the default for optimizer state) stochastically between the two
neighbouring codes with the dither of :mod:`jadam._precision`. Nearest rounding cannot follow a
slow decay: β2 = 0.999 shrinks v_t by 0.1 % per step, far less than the code's spacing, so the
stored v_t sticks (measured on the regression of tests/test_state_precision_training.py: with
nearest rounding 8-bit Adam, AdamW, AdaMax and AMSGrad end 9-21 % above float32's final loss,
with stochastic rounding within 1.4 %).

Error bound (what the tests check), with a = the block's absmax and t = 1 − 2^−(M+1) the largest
code: |x − x̂| ≤ 2^−(M+1)·|x| + 2^−(M+2^E)·a/t for nearest rounding, and twice that for
stochastic rounding (relative 3.1 % / 6.25 % for nearest, unsigned / signed).

Layout: a quantized leaf is ONE uint8 array of shape (num_blocks, block_size + 4); each row holds
a block's codes followed by the four bytes of its float32 absmax (bit-cast, little-endian). The
moment trees therefore keep exactly the structure of the parameters, with plain array leaves, so
the state jits, checkpoints (orbax, flax.serialization), shards along the blocks, and passes
through Flax's ``nnx.Optimizer`` (which rewrites NamedTuple nodes nested in its state trees)
like any other optax state. :func:`unpack` splits a leaf into codes and scales.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jadam._precision import check_same_shape, dither_bits, map_with_stream, unit_uniform

EXPONENT_BITS = 4


def mantissa_bits(signed: bool) -> int:
    """M: 3 for the signed code, 4 for the unsigned one (E = 4 in both)."""
    return 3 if signed else 4


def largest_code(signed: bool) -> float:
    """The largest magnitude of the code, 1 − 2^−(M+1); the block's absmax maps onto it."""
    return 1.0 - 2.0 ** -(mantissa_bits(signed) + 1)


SCALE_BYTES = 4


def _is_leaf(x: Any) -> bool:
    return x is None


def is_quantized(leaf: Any) -> bool:
    """Whether a stored moment leaf is a packed 8-bit leaf (uint8) rather than float32."""
    return getattr(leaf, "dtype", None) == jnp.uint8


def unpack(packed: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(codes uint8 (num_blocks, block_size), scales float32 (num_blocks,)) of a packed leaf."""
    codes = packed[:, :-SCALE_BYTES]
    scales = jax.lax.bitcast_convert_type(packed[:, -SCALE_BYTES:], jnp.float32)
    return codes, scales


def pack(codes: jax.Array, scales: jax.Array) -> jax.Array:
    """The inverse of :func:`unpack`."""
    scale_bytes = jax.lax.bitcast_convert_type(scales.astype(jnp.float32), jnp.uint8)
    return jnp.concatenate([codes.astype(jnp.uint8), scale_bytes], axis=1)


def packed_shape(size: int, block_size: int) -> tuple[int, int]:
    """Shape of the packed leaf holding ``size`` values."""
    return max(1, math.ceil(size / block_size)), block_size + SCALE_BYTES


def _encode_magnitude(y: jax.Array, signed: bool, bits: jax.Array | None) -> jax.Array:
    """Code of y ∈ [0, largest_code] (float32): f·2^M + m, rounded with ``bits`` or to nearest."""
    m_bits = mantissa_bits(signed)
    dropped = 23 - m_bits
    subnormal_limit = 2.0 ** (1 - 2**EXPONENT_BITS)  # smallest normal value of the code
    if bits is None:
        noise = jnp.uint32(1 << (dropped - 1))
        uniform = jnp.float32(0.5)
    else:
        noise = bits & np.uint32((1 << dropped) - 1)
        uniform = unit_uniform(bits)
    # Normal range: round the float32 mantissa to M bits by adding noise below them.
    # The float32 exponent and top M mantissa bits, shifted down, are the code's fields plus
    # a constant exponent offset (y ≥ 0: the sign bit is clear).
    raw = jax.lax.bitcast_convert_type(y, jnp.uint32) + noise
    offset = (127 - 2**EXPONENT_BITS) << m_bits
    normal = (raw >> np.uint32(dropped)).astype(jnp.int32) - np.int32(offset)
    # Subnormal range: evenly spaced steps of 2^(1 − M − 2^E).
    steps = y * jnp.float32(2.0 ** (m_bits - 1 + 2**EXPONENT_BITS))
    subnormal = jnp.floor(steps + uniform).astype(jnp.int32)
    code = jnp.where(y < subnormal_limit, subnormal, normal)
    # Both branches are ≥ 0 (normal ≥ 2^M); rounding up from the largest code, Inf and NaN
    # go past the top and are clamped to it.
    return jnp.minimum(code, (1 << (EXPONENT_BITS + m_bits)) - 1)


def _decode_magnitude(code: jax.Array, signed: bool) -> jax.Array:
    """The magnitude of ``code`` (an unsigned integer array, sign bit clear) as float32.

    The code's exponent and mantissa fields, shifted to float32's, are a float32 bit pattern
    whose exponent is off by a constant: one integer add decodes a normal code. A subnormal
    one (exponent field 0) is its mantissa times 2^(1 − M − 2^E), computed as float32
    (x·2^−(23+15) of the shifted pattern: exact, and without float32 denormals, which XLA's
    CPU backend flushes to zero).
    """
    m_bits = mantissa_bits(signed)
    raw = jnp.asarray(code).astype(jnp.uint32) << np.uint32(23 - m_bits)
    offset = np.uint32((127 - 2**EXPONENT_BITS) << 23)
    normal = lax.bitcast_convert_type(raw + offset, jnp.float32)
    subnormal = raw.astype(jnp.int32).astype(jnp.float32) * np.float32(
        2.0 ** (1 - 2**EXPONENT_BITS - 23)
    )
    return jnp.where(raw < np.uint32(1 << 23), subnormal, normal)


@functools.cache
def code_values(signed: bool) -> np.ndarray:
    """All 256 values of the code (relative to the absmax), in code order, as float64.

    >>> values = code_values(signed=False)
    >>> values.shape, float(values[0]), float(values[-1])
    ((256,), 0.0, 1.0)
    """
    top = largest_code(signed)
    with jax.ensure_compile_time_eval():
        codes = jnp.arange(256, dtype=jnp.int32)
        magnitude = np.asarray(_decode_magnitude(codes & 127 if signed else codes, signed))
    magnitude = magnitude.astype(np.float64) / top
    return np.where(np.arange(256) >= 128, -magnitude, magnitude) if signed else magnitude


def _blocks(x: jax.Array, block_size: int, dtype: Any = jnp.float32) -> jax.Array:
    """``x`` flattened, zero-padded and reshaped to (num_blocks, block_size), as ``dtype``."""
    x = jnp.asarray(x, dtype).reshape(-1)
    num_blocks = max(1, math.ceil(x.size / block_size))
    return jnp.pad(x, (0, num_blocks * block_size - x.size)).reshape(num_blocks, block_size)


def block_absmax(x: jax.Array, block_size: int, *, signed: bool = True) -> jax.Array:
    """The float32 absmax of each block of ``x``: the scales :func:`quantize` stores.

    Computed as max(max x, −min x). For x ≥ 0 (the unsigned code, ``signed=False``) that is
    max x: −min x ≤ −0 and XLA's max gives +0 on a tie of +0 with −0 and the quiet NaN on a
    NaN, so one formula serves both codes (``signed`` is accepted and ignored).

    Both extremes come from one ``lax.reduce`` with a two-operand body over the full blocks
    (a reshape of x) and, apart, over the zero-padded last block, rather than from
    ``jnp.max``/``jnp.min`` over a padded copy: XLA's CPU backend hands a plain max or min
    reduction to a library kernel that needs its input in memory, and does not vectorise a
    loop with a bounds check per value, so x (decoded and updated moments) would be written
    to a float32 temporary (a page fault per 4 KiB every step, see
    benchmarks/pure_path_profile.py). This reduce fuses with, and recomputes, the arithmetic
    that produces x, in a vectorised loop.
    """
    del signed
    x = jnp.asarray(x, jnp.float32).reshape(-1)
    parts = [part for _, part in _split(x, block_size)]
    largest, smallest = zip(*(_extremes(part) for part in parts), strict=True)
    return lax.max(jnp.concatenate(largest), lax.neg(jnp.concatenate(smallest)))


def _extremes(blocks: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(max, min) of each row of ``blocks``, in one two-operand reduce."""
    both = lambda a, b: (lax.max(a[0], b[0]), lax.min(a[1], b[1]))  # noqa: E731
    inits = (np.float32(-np.inf), np.float32(np.inf))
    return lax.reduce((blocks, blocks), inits, both, (1,))


def quantize(
    x: jax.Array, *, signed: bool, block_size: int, bits: jax.Array | None = None
) -> jax.Array:
    """Block-wise quantization of ``x`` (any shape) to a packed uint8 leaf (see module doc).

    Args:
      x: values to store.
      signed: use the signed code (else the unsigned one; ``x`` must then be ≥ 0).
      block_size: values per absmax.
      bits: None for round-to-nearest, else uint32 dither shaped (num_blocks, block_size):
        each value rounds away from zero with probability equal to its position between codes.

    Returns:
      uint8 array of shape (num_blocks, block_size + 4): codes, then the absmax's bytes.

    >>> import jax.numpy as jnp
    >>> packed = quantize(jnp.array([0.5, -1.0, 0.25]), signed=True, block_size=2)
    >>> packed.shape, unpack(packed)[1]
    ((2, 6), Array([1.  , 0.25], dtype=float32))

    The packed leaf is written in place by dynamic-update-slices (codes of the full blocks,
    of the last block, then the scales' bytes) into a buffer filled with a value that depends
    on the scales: XLA fuses each update with the loop computing it and writes the leaf
    without a codes temporary or a concatenate pass; a constant fill would let XLA turn the
    updates into a padded loop (not vectorised), and the data dependency lets the buffer be
    the donated state's own (no copy into it).
    """
    x = jnp.asarray(x, jnp.float32).reshape(-1)
    scales = block_absmax(x, block_size)
    num_blocks = scales.shape[0]
    factor = jnp.float32(largest_code(signed)) / jnp.where(scales > 0, scales, 1)
    fill = lax.convert_element_type(scales[0] > 0, jnp.uint8)  # every byte is overwritten
    packed = lax.optimization_barrier(
        jnp.broadcast_to(fill, (num_blocks, block_size + SCALE_BYTES))
    )
    for row, part in _split(x, block_size):
        rows = slice(row, row + part.shape[0])
        codes = _codes(part, factor[rows], signed, None if bits is None else bits[rows])
        packed = lax.dynamic_update_slice(packed, codes, (row, 0))
    scale_bytes = lax.bitcast_convert_type(scales, jnp.uint8)
    return lax.dynamic_update_slice(packed, scale_bytes, (0, block_size))


def _split(x: jax.Array, block_size: int) -> list[tuple[int, jax.Array]]:
    """(first row, blocks) of the full blocks of 1-D ``x`` and of its zero-padded last block.

    The full blocks are a reshape of x, without a bounds check per value (XLA vectorises the
    loops over them); only the last, partial block is padded.
    """
    full = x.size // block_size
    parts = [(0, x[: full * block_size].reshape(full, block_size))] if full else []
    if full * block_size < x.size or not x.size:
        parts.append((full, _blocks(x[full * block_size :], block_size)))
    return parts


def _codes(blocks: jax.Array, factor: jax.Array, signed: bool, bits: Any) -> jax.Array:
    """uint8 codes of ``blocks`` (rows of values) given each row's largest_code/absmax."""
    code = _encode_magnitude(jnp.abs(blocks) * factor[:, None], signed, bits)
    if signed:
        code = code | jnp.where(blocks < 0, 128, 0)
    return code.astype(jnp.uint8)


def dequantize(packed: jax.Array, *, signed: bool, shape: tuple[int, ...]) -> jax.Array:
    """float32 values of a packed leaf reshaped to ``shape`` (the padding dropped).

    >>> import jax.numpy as jnp
    >>> x = jnp.array([0.5, -1.0, 0.25])
    >>> dequantize(quantize(x, signed=True, block_size=2), signed=True, shape=(3,))
    Array([ 0.5 , -1.  ,  0.25], dtype=float32)
    """
    codes, scales = unpack(packed)
    code = codes.astype(jnp.uint32)
    factor = scales / jnp.float32(largest_code(signed))
    values = _decode_magnitude(code & np.uint32(127) if signed else code, signed)
    if signed:
        sign = (code & np.uint32(128)) << np.uint32(24)
        values = lax.bitcast_convert_type(
            lax.bitcast_convert_type(values, jnp.uint32) | sign, jnp.float32
        )
    values = values * factor[:, None]
    return values.reshape(-1)[: math.prod(shape)].reshape(shape)


@dataclasses.dataclass(frozen=True)
class Blockwise8bit:
    """Moments stored as 8-bit block-wise dynamic codes; arithmetic in float32.

    m_t uses the signed 8-bit float code, v_t (and AdaMax's u_t) the unsigned one. Leaves with
    fewer than ``min_size`` elements stay float32 (their scales would cost more than they save).
    Pass as ``state_precision=`` to :func:`jadam.scale_by_adam` and friends;
    ``state_precision="8bit"`` is ``Blockwise8bit()``.

    Attributes:
      block_size: values per float32 scale, ≥ 1 (default 256: 1.016 bytes per value).
      min_size: leaves smaller than this stay float32, ≥ 0 (default 4096).
      stochastic: dithered stochastic rounding (default) or round-to-nearest (bitsandbytes');
        see the module docstring for why nearest rounding loses the decay of v_t.
      seed: seed of the dither.

    Example:
      >>> import jax.numpy as jnp, jadam
      >>> tx = jadam.scale_by_adam(state_precision=Blockwise8bit(block_size=64, min_size=0))
      >>> tx.init(jnp.zeros(100)).mu.shape  # 2 blocks of 64 codes + 4 bytes of absmax
      (2, 68)
    """

    block_size: int = 256
    min_size: int = 4096
    stochastic: bool = True
    seed: int = 0

    def __post_init__(self):
        for name, low in (("block_size", 1), ("min_size", 0), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"Blockwise8bit {name} must be an int ≥ {low}, got {value!r}.")

    def _quantized(self, leaf: Any) -> bool:
        return math.prod(leaf.shape) >= self.min_size

    def init(self, params: Any, *, signed: bool) -> Any:
        def leaf(p):
            if not self._quantized(p):
                return jnp.zeros(p.shape, jnp.float32)
            return jnp.zeros(packed_shape(math.prod(p.shape), self.block_size), jnp.uint8)

        return jax.tree.map(lambda p: None if p is None else leaf(p), params, is_leaf=_is_leaf)

    def stored_form(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) a moment of a float32 leaf of ``shape`` is stored in."""
        size = math.prod(shape)
        if size < self.min_size:
            return tuple(shape), jnp.dtype(jnp.float32)
        return packed_shape(size, self.block_size), jnp.dtype(jnp.uint8)

    def kernel_kind(self, stored_dtype: Any) -> str:
        """How the fused kernel reads a stored leaf of ``stored_dtype``."""
        if jnp.dtype(stored_dtype) != jnp.uint8:
            return "float32"
        return "blockwise8" if self.stochastic else "blockwise8_nearest"

    def check_leaf(self, grad: Any, stored: Any) -> None:
        """Raises ``ValueError`` if ``stored`` cannot be the stored moment of ``grad``.

        A packed leaf fits a gradient whose size needs exactly its number of blocks.
        """
        if not is_quantized(stored):
            check_same_shape(grad, stored)
            return
        blocks, row = stored.shape
        block_size = row - SCALE_BYTES
        if not (blocks - 1) * block_size < max(grad.size, 1) <= blocks * block_size:
            raise ValueError(
                f"gradient of shape {tuple(grad.shape)} does not fit the 8-bit state of "
                f"{blocks} blocks of {block_size} values."
            )

    def decode(self, stored: Any, updates: Any, *, signed: bool) -> Any:
        def leaf(s, g):
            if s is None:
                return None
            if is_quantized(s):
                return dequantize(s, signed=signed, shape=g.shape)
            return s

        return jax.tree.map(leaf, stored, updates, is_leaf=_is_leaf)

    def encode(self, values: Any, *, signed: bool, count: jax.Array, stream: int) -> Any:
        def leaf(v, leaf_stream):
            if not self._quantized(v):
                return v
            bits = None
            if self.stochastic:
                blocks = max(1, math.ceil(v.size / self.block_size))
                shape = (blocks, self.block_size)
                bits = dither_bits(shape, self.seed, leaf_stream, count)
            return quantize(v, signed=signed, block_size=self.block_size, bits=bits)

        return map_with_stream(leaf, values, stream)
