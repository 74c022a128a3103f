"""How moments are stored between steps: the ``state_precision`` switch of the Adam family.

Every storage computes in float32: it *decodes* the stored moments to float32, the transform
updates them with the primitives of :mod:`jadam._primitives`, and it *encodes* the float32
results for the next step. The step direction uses the float32 results, not their stored form.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from jadam._precision import StochasticRounding
from jadam._primitives import zeros_like
from jadam._quantization import SCALE_BYTES, Blockwise8bit, block_absmax, code_values, is_quantized
from jadam._validation import check_dtype, check_tree_matches

STATE_PRECISIONS = ("float32", "bfloat16", "float16", "8bit")


@runtime_checkable
class MomentStorage(Protocol):
    """What a ``state_precision`` object provides (:class:`StochasticRounding`,
    :class:`Blockwise8bit`): how it stores a float32 moment, and how to read and write it.

    ``count`` in :meth:`encode` is the step count t (the dither is a function of it).
    """

    def stored_form(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) the moment of a float32 leaf of ``shape`` is stored in."""

    def kernel_kind(self, stored_dtype: Any) -> str:
        """How the fused kernel reads a stored leaf: "float32", "bfloat16", "float16",
        "blockwise8" or "blockwise8_nearest"."""

    def check_leaf(self, grad: Any, stored: Any) -> None:
        """Raises ``ValueError`` if ``stored`` cannot be the stored moment of ``grad``."""

    def init(self, params: Any, *, signed: bool) -> Any:
        """Zero moments for ``params`` in their stored form."""

    def decode(self, stored: Any, updates: Any, *, signed: bool) -> Any:
        """The stored moments as float32 values shaped like ``updates``."""

    def encode(self, values: Any, *, signed: bool, count: jax.Array, stream: int) -> Any:
        """The float32 ``values`` in their stored form, rounded for step ``count``."""


def resolve(state_precision: Any, mu_dtype: Any, nu_dtype: Any) -> tuple[Any, Any, Any]:
    """Returns (storage or None, mu_dtype, nu_dtype) from the user's switches.

    ``"float32"`` is plain float32 storage (mu_dtype = nu_dtype = float32); ``"bfloat16"`` and
    ``"float16"`` are :class:`StochasticRounding`; ``"8bit"`` is :class:`Blockwise8bit`.
    """
    check_dtype("mu_dtype", mu_dtype)
    check_dtype("nu_dtype", nu_dtype)
    if state_precision is None:
        return None, mu_dtype, nu_dtype
    if mu_dtype is not None or nu_dtype is not None:
        raise ValueError(
            "give either state_precision or mu_dtype/nu_dtype, not both: got "
            f"state_precision={state_precision!r}, mu_dtype={mu_dtype!r}, nu_dtype={nu_dtype!r}."
        )
    if isinstance(state_precision, MomentStorage):
        return state_precision, None, None
    if isinstance(state_precision, str) and state_precision in STATE_PRECISIONS:
        if state_precision == "float32":
            return None, jnp.float32, jnp.float32
        if state_precision == "8bit":
            return Blockwise8bit(), None, None
        return StochasticRounding(jnp.dtype(state_precision)), None, None
    raise ValueError(
        f"state_precision must be None, one of {STATE_PRECISIONS}, a StochasticRounding or a "
        f"Blockwise8bit, got {state_precision!r}."
    )


def check_real(params: Any, state_precision: Any) -> None:
    """Raises ``TypeError`` if a parameter is complex (the storages hold real moments only)."""
    for leaf in jax.tree.leaves(params):
        if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
            raise TypeError(
                f"state_precision={state_precision!r} supports real parameters only, got a "
                f"{leaf.dtype} leaf of shape {tuple(leaf.shape)}."
            )


def check_stored_tree(updates: Any, stored: Any, storage: MomentStorage) -> None:
    """Raises ``ValueError`` unless ``stored`` has the tree of ``updates`` and each leaf fits.

    As :func:`jadam._validation.check_tree_matches` for the structure; each leaf is then checked
    by ``storage`` (a packed 8-bit leaf by its number of blocks).
    """
    is_none = lambda x: x is None  # noqa: E731
    if jax.tree.structure(updates, is_leaf=is_none) != jax.tree.structure(stored, is_leaf=is_none):
        check_tree_matches(updates, stored)  # raises, naming the differing leaves
    for grad, leaf in zip(
        jax.tree.leaves(updates, is_leaf=is_none),
        jax.tree.leaves(stored, is_leaf=is_none),
        strict=True,
    ):
        if grad is None and leaf is None:
            continue
        if grad is None or leaf is None:
            raise ValueError(
                "gradient tree does not match the optimizer state: gradient leaf has shape "
                f"{np.shape(grad)}, state leaf has shape {np.shape(leaf)}."
            )
        storage.check_leaf(grad, leaf)


def floor_denominator(
    scale: Any, stored: Any, values: Any, divisor: Any = 1.0, *, root: bool = True
) -> Any:
    """Keeps the denominator s_t at or above what the stored second moment can resolve.

    A float16 v_t below its smallest subnormal (6e-8), or an 8-bit v_t below the smallest code
    times its block's absmax, reads back as 0; a small m̂_t would then be divided by ε alone (an
    Inf in a float16 update, a huge step in 8 bits). So s_t ≥ √(resolution / d), with d = 1 − β2^t
    the bias correction applied to v_t (1 without it); ``root=False`` (AdaMax's u_t) gives
    s_t ≥ resolution. Leaves stored otherwise are returned unchanged.

    ``stored`` (the new stored v_t) only tells the storage format; the 8-bit absmax is taken from
    the float32 ``values`` of v_t (the same number), so the step does not wait for the stored
    bytes and XLA can write them in place of the old ones without a copy.
    """
    tiny16 = float(jnp.finfo(jnp.float16).smallest_subnormal)
    smallest_code = float(code_values(signed=False)[1])

    def leaf(s, v, x):
        if s is None:
            return s
        if is_quantized(v):
            blocks, row = v.shape
            scales = block_absmax(x, row - SCALE_BYTES, signed=False)
            per_value = jnp.broadcast_to(scales[:, None], (blocks, row - SCALE_BYTES))
            resolution = smallest_code * per_value.reshape(-1)[: s.size].reshape(s.shape)
        elif getattr(v, "dtype", None) == jnp.float16:
            resolution = jnp.asarray(tiny16, jnp.float32)
        else:
            return s
        floor = jnp.sqrt(resolution / divisor) if root else resolution
        return jnp.maximum(s, floor.astype(s.dtype))

    return jax.tree.map(leaf, scale, stored, values, is_leaf=lambda x: x is None)


class Moments:
    """The stored moments of one transform: first-moment-like ones (signed, ``mu_dtype``) first,
    then v_t-like ones (unsigned, ``nu_dtype``).

    Binds the ``state_precision``/``mu_dtype``/``nu_dtype`` switches once, so that Adam, AdaMax
    and AMSGrad share one way to create, read (with the gradient-tree check) and write them.
    ``count`` is how many moments there are, ``signed`` how many of them are signed
    (AdEMAMix's two EMAs: 2); the step count t is :meth:`write`'s ``step``.
    """

    def __init__(
        self, state_precision: Any, mu_dtype: Any, nu_dtype: Any, count: int, signed: int = 1
    ) -> None:
        self.storage, self.mu_dtype, self.nu_dtype = resolve(state_precision, mu_dtype, nu_dtype)
        self.state_precision = state_precision
        self.count = count
        self.signed = signed

    def init(self, params: Any) -> tuple[Any, ...]:
        """Zero moments for ``params``."""
        if self.storage is not None:
            check_real(params, self.state_precision)
            return tuple(
                self.storage.init(params, signed=i < self.signed) for i in range(self.count)
            )
        first = tuple(zeros_like(params, self.mu_dtype) for _ in range(self.signed))
        rest = tuple(
            zeros_like(params, self.nu_dtype, real=True) for _ in range(self.signed, self.count)
        )
        return first + rest

    def read(self, updates: Any, stored: tuple[Any, ...]) -> tuple[Any, ...]:
        """The stored moments as values to compute with, after checking the gradient tree."""
        if self.storage is None:
            check_tree_matches(updates, stored[0])
            return tuple(stored)
        check_stored_tree(updates, stored[0], self.storage)
        return tuple(
            self.storage.decode(s, updates, signed=i < self.signed) for i, s in enumerate(stored)
        )

    def write(self, values: tuple[Any, ...], step: jax.Array) -> tuple[Any, ...]:
        """The updated moments in their stored form for step count t = ``step``."""
        if self.storage is None:
            return tuple(values)
        return tuple(
            self.storage.encode(x, signed=i < self.signed, count=step, stream=i)
            for i, x in enumerate(values)
        )
