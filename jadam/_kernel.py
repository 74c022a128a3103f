"""The fused CPU kernel: loading it, describing its leaves, and calling it (``fused=True``).

``jadam/csrc/fused_adam.cc`` is a C++ XLA FFI handler built at install time. One custom call
updates a group of leaves in one pass: it decodes each leaf's stored moments (float32,
stochastically rounded bfloat16/float16, or block-wise 8-bit), updates them, encodes them with
the pure path's dither and writes the step, in place on aliased buffers: the new parameters
(apply mode), the update over the gradient's buffer (transform mode), or nothing but the float32
moments (moments-only mode, where XLA computes the update). This module turns flat
lists of leaves into such calls (per-leaf moments, or moments packed in one vector each) and
gives the call pure-JAX rules for ``jax.vmap`` and differentiation
(:mod:`jadam._kernel_reference`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import importlib.machinery
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jadam import _kernel_reference as reference
from jadam import _primitives

TARGET = "jadam_fused_adam"
_LIBRARY_STEM = "_fused_adam_kernel"
# Leaves per custom call. XLA's alias analysis grows faster than linearly with the operands
# of one instruction (300 leaves in one call: 2 s to compile, 1000: ~60 s); groups keep
# compile time linear in the number of leaves at no measurable run-time cost.
LEAVES_PER_CALL = 32
PACKED_LEAVES_PER_CALL = 64  # packed moments: two operands per leaf instead of four

# Layout of the scalar operand; keep in sync with `enum Scalar` in csrc/fused_adam.cc.
SCALARS = (
    "b1",
    "one_minus_b1",
    "b2",
    "one_minus_b2",
    "inverse_bias_correction1",
    "inverse_bias_correction2",
    "eps",
    "eps_root",
    "neg_learning_rate",
    "weight_decay",
    "count_bits",
    "divisor",
    "half_floor",
    "inverse_bias_correction1_next",
)
# Algorithm codes; keep in sync with `enum Algorithm` in csrc/fused_adam.cc. NADAM is Adam's
# moments with Dozat's Nesterov direction (jadam.nadam: scale_by_adam(nesterov=True)).
ADAM, ADAMAX, NADAM = 0, 1, 2
# Storage kinds of a leaf's moments; keep in sync with `enum Kind` in csrc/fused_adam.cc.
FLOAT32, BFLOAT16, FLOAT16, BLOCKWISE8, BLOCKWISE8_NEAREST = range(5)
_TINY_FLOAT16 = float(jnp.finfo(jnp.float16).smallest_subnormal)


def _library_path() -> pathlib.Path | None:
    package = pathlib.Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = package / f"{_LIBRARY_STEM}{suffix}"
        if path.exists():
            return path
    return None


@functools.cache
def available() -> bool:
    """Whether the fused CPU kernel was built and registered with XLA (loaded on first call).

    >>> isinstance(available(), bool)
    True
    """
    path = _library_path()
    if path is None:
        return False
    try:
        library = ctypes.cdll.LoadLibrary(str(path))
        handler = jax.ffi.pycapsule(library.JadamFusedAdam)
        jax.ffi.register_ffi_target(TARGET, handler, platform="cpu")
    except (OSError, AttributeError, ValueError, RuntimeError):
        return False
    return True


@dataclasses.dataclass(frozen=True)
class LeafPlan:
    """How the kernel treats one leaf: storage kind, 8-bit block size, decay, tree position.

    ``index`` is the leaf's position in the tree flattened with ``None`` leaves counted: the
    dither stream of its moment k is 3·index + k, as in the pure path.
    """

    kind: int
    block: int
    decay: bool
    index: int


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """Everything static about one fused step (hashable: it keys the compiled step).

    ``apply``: write the new parameters; else, unless ``moments_only``, the updates (over the
    gradients). ``moments_only`` (no weight decay in the kernel): write m and v alone; the
    caller computes the update (from the new float32 moments, or the old 16-bit ones).
    """

    algorithm: int
    apply: bool
    safe: bool
    packed: bool
    leaves: tuple[LeafPlan, ...]
    storage: Any  # the StochasticRounding / Blockwise8bit object, or None (float32)
    moments_only: bool = False

    def seed(self) -> int:
        return getattr(self.storage, "seed", 0)


def _mix32(h: int) -> int:
    """MurmurHash3's finaliser on a Python int (jadam._precision._mix32's arithmetic)."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


@functools.cache
def dither_key(seed: int, stream: int) -> int:
    """The dither's per-(leaf, moment) key k: ``dither_bits`` at index 0 and step 0."""
    return _mix32((seed * 0x27D4EB2F + stream * 0x165667B1 + 0x6A09E667) % 2**32)


def leaf_info(plan: StepPlan, leaves: Sequence[LeafPlan]) -> np.ndarray:
    """The kernel's ``leaf_info`` attribute: kind, block, decay, key of m, key of v per leaf."""
    seed = plan.seed()
    rows = [
        (
            x.kind,
            x.block,
            int(x.decay),
            dither_key(seed, 3 * x.index),
            dither_key(seed, 3 * x.index + 1),
        )
        for x in leaves
    ]
    return np.asarray(rows, np.int64).reshape(-1)


def scalars(
    algorithm: int, b1: Any, b2: Any, eps: Any, eps_root: Any, *, bias_correction: bool,
    count: jax.Array, learning_rate: Any, weight_decay: Any,
) -> jax.Array:  # fmt: skip
    """The scalar operand, computed with the pure path's expressions (same float32 values)."""
    f32 = jnp.float32
    if bias_correction:
        # XLA turns m / (1 − β^t) into m · (1 / (1 − β^t)); so does the kernel.
        divisor = _primitives.one_minus_power(b2, count).astype(f32)
        bc1 = 1 / _primitives.one_minus_power(b1, count).astype(f32)
        bc2 = 1 / divisor
        next_count = _primitives.increment(count)
        bc1_next = 1 / _primitives.one_minus_power(b1, next_count).astype(f32)
    else:
        divisor = bc1 = bc2 = bc1_next = jnp.ones([], f32)
    tiny = jnp.asarray(_TINY_FLOAT16, f32)
    half_floor = tiny if algorithm == ADAMAX else jnp.sqrt(tiny / divisor)
    count_bits = jax.lax.bitcast_convert_type(jnp.asarray(count).astype(jnp.uint32), f32)
    values = (
        b1, 1 - b1, b2, 1 - b2, bc1, bc2, eps, eps_root, -1 * learning_rate, weight_decay,
        count_bits, divisor, half_floor, bc1_next,
    )  # fmt: skip
    return jnp.stack([jnp.asarray(x, f32) for x in values])


def _emit_call(ctx, plan, scalars, params, grads, mu, nu, offset, leaves):
    """Emits one custom call over ``leaves``; every operand an (ir.Value, aval) pair.

    mu/nu are one operand per leaf, or one packed vector. Results alias params (apply mode)
    or the gradients (transform mode: the updates are written over them), then mu and nu;
    moments-only mode has mu and nu alone.
    """
    n, k = len(grads), len(mu)
    if plan.moments_only:  # operands: scalars, g, m, v; results: m, v
        operands = [scalars, *grads, *mu, *nu]
        aliases = {1 + n + i: i for i in range(2 * k)}
        written = []
    elif plan.apply:  # operands: scalars, p, g, m, v; results: p, m, v
        operands = [scalars, *params, *grads, *mu, *nu]
        aliases = {1 + i: i for i in range(n)}
        aliases |= {1 + 2 * n + i: n + i for i in range(2 * k)}
        written = params
    else:  # operands: scalars, g, m, v[, p]; results: u, m, v
        decay = any(x.decay for x in leaves)
        operands = [scalars, *grads, *mu, *nu, *(params if decay else ())]
        aliases = {1 + i: i for i in range(n + 2 * k)}
        written = grads
    result_avals = [aval for _, aval in (*written, *mu, *nu)]
    call_ctx = ctx.replace(avals_in=[aval for _, aval in operands], avals_out=result_avals)
    results = jax.ffi.ffi_lowering(TARGET, operand_output_aliases=aliases)(
        call_ctx,
        *(value for value, _ in operands),
        algorithm=np.int32(plan.algorithm),
        apply=np.int32(plan.apply),
        moments_only=np.int32(plan.moments_only),
        safe_divide=np.int32(plan.safe),
        packed=np.int32(plan.packed),
        offset=np.int64(offset),
        leaf_info=leaf_info(plan, leaves),
    )
    pairs = list(zip(results, result_avals, strict=True))
    n_written = len(written)
    return pairs[:n_written], pairs[n_written : n_written + k], pairs[n_written + k :]


def _groups(n: int, per_call: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + per_call)) for start in range(0, n, per_call)]


def _emit_step(ctx, plan, scalars, params, grads, mu, nu):
    """All leaves in calls of consecutive leaves; packed mu/nu chain through the calls."""
    per_call = PACKED_LEAVES_PER_CALL if plan.packed else LEAVES_PER_CALL
    outputs, new_mu, new_nu, offset = [], [], [], 0
    for start, stop in _groups(len(grads), per_call):
        group = grads[start:stop]
        out, m, v = _emit_call(
            ctx,
            plan,
            scalars,
            params[start:stop] if params else [],
            group,
            mu if plan.packed else mu[start:stop],
            nu if plan.packed else nu[start:stop],
            offset,
            plan.leaves[start:stop],
        )
        outputs += out
        if plan.packed:
            mu, nu = m, v
            offset += sum(math.prod(aval.shape) for _, aval in group)
        else:
            new_mu += m
            new_nu += v
    return outputs, (mu if plan.packed else new_mu), (nu if plan.packed else new_nu)


def _split(flat: Sequence[Any], sizes: tuple[int, ...]) -> list[list[Any]]:
    """``flat`` cut into consecutive lists of ``sizes``."""
    out, at = [], 0
    for size in sizes:
        out.append(list(flat[at : at + size]))
        at += size
    return out


def _flat_step(step, plan, sizes, flat):
    """``step(plan, scalars, params, grads, mu, nu)`` on and to flat lists of arrays."""
    scalars, params, grads, mu, nu = (flat[0], *_split(flat[1:], sizes))
    out, new_mu, new_nu = step(plan, scalars, params, grads, mu, nu)
    return [*out, *new_mu, *new_nu]


# One primitive for the whole kernel step. Tracing binds it once (no sub-jaxpr, no per-argument
# debug information, unlike jax.custom_jvp/custom_vmap, which at 1000 leaves took longer than
# XLA's compile); its lowering emits the custom calls directly (no jaxpr of them is traced),
# and jax.vmap and differentiation replace it by its jnp transcription (with `on_fallback`'s
# warning). Outside jax.jit it runs as a jitted call of itself.
_step_p = Primitive("jadam_fused_adam_step")
_step_p.multiple_results = True


@functools.cache
def _jitted_step(plan, sizes, on_fallback):
    return jax.jit(
        lambda *flat: _step_p.bind(*flat, plan=plan, sizes=sizes, on_fallback=on_fallback)
    )


@_step_p.def_impl
def _impl(*flat, plan, sizes, on_fallback):
    return _jitted_step(plan, sizes, on_fallback)(*flat)


@_step_p.def_abstract_eval
def _abstract_eval(*flat, plan, sizes, on_fallback):
    del on_fallback
    _, params, grads, mu, nu = (flat[0], *_split(flat[1:], sizes))
    written = params if plan.apply else [] if plan.moments_only else grads
    return [jax.core.ShapedArray(x.shape, x.dtype) for x in (*written, *mu, *nu)]


def _lowering(ctx, *flat, plan, sizes, on_fallback):
    del on_fallback
    pairs = list(zip(flat, ctx.avals_in, strict=True))
    out, mu, nu = _emit_step(ctx, plan, pairs[0], *_split(pairs[1:], sizes))
    return [value for value, _ in (*out, *mu, *nu)]


mlir.register_lowering(_step_p, _lowering, platform="cpu")


def _transcription(plan, sizes):
    return lambda *flat: _flat_step(reference.step, plan, sizes, flat)


def _vmap_rule(args, dims, *, plan, sizes, on_fallback):
    on_fallback("under jax.vmap")
    in_axes = list(dims)  # None: not batched
    out = jax.vmap(_transcription(plan, sizes), in_axes=in_axes)(*args)
    return out, [0] * len(out)


def _jvp_rule(primals, tangents, *, plan, sizes, on_fallback):
    on_fallback("under differentiation (jax.jvp / jax.grad)")
    tangents = [ad.instantiate_zeros(t) for t in tangents]
    return jax.jvp(_transcription(plan, sizes), tuple(primals), tuple(tangents))


batching.primitive_batchers[_step_p] = _vmap_rule
ad.primitive_jvps[_step_p] = _jvp_rule


def step_function(plan: StepPlan, on_fallback):
    """The kernel step, with pure-JAX rules for ``jax.vmap`` and differentiation.

    ``on_fallback(reason)`` is called (at trace time) when a rule replaces the kernel.
    Arguments: (scalars, params, grads, mu, nu), each of the last four a list of arrays
    (packed mu/nu: a list of one vector); results: (written, mu, nu), three lists (written:
    new params, updates, or empty with ``plan.moments_only``).
    """

    def step(scalars, params, grads, mu, nu):
        sizes = (len(params), len(grads), len(mu), len(nu))
        flat = _step_p.bind(
            scalars, *params, *grads, *mu, *nu, plan=plan, sizes=sizes, on_fallback=on_fallback
        )
        n = len(flat) - len(mu) - len(nu)
        return flat[:n], flat[n : n + len(mu)], flat[n + len(mu) :]

    return step
