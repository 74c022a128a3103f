"""Moving optimizer states between optax and jadam (in memory or after a checkpoint restore).

Where the algorithm is the same, jadam's state has optax's layout (the same tuple nesting and
field names, jadam's own NamedTuple classes), so an orbax checkpoint written by one restores
into the other directly. These two functions cover the rest: a state already in memory (the
classes differ), AdaMax's ε convention, a ``jadam.skip_nonfinite`` wrapper, and a storage dtype
(``mu_dtype``, ``state_precision="bfloat16"``) other than optax's.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jadam._adamax import ScaleByAdamaxState
from jadam._nonfinite import SkipNonFiniteState


def from_optax_state(state: Any, like: Any, *, adamax_eps: Any = None) -> Any:
    """An optax optimizer state as the state of the jadam optimizer whose state is ``like``.

    Args:
      state: the state of the optax optimizer of the same name and options (e.g.
        ``optax.adam(1e-3).init(params)`` after some steps, or restored from a checkpoint).
      like: the jadam state to fill (``tx.init(params)``, or ``jax.eval_shape(tx.init,
        params)``): its tree structure, classes and dtypes are kept, its values are not read.
        A ``jadam.skip_nonfinite`` state gets the optax state inside and zero skip counts.
      adamax_eps: AdaMax's ε. optax keeps u'_t = max(β2·u'_{t−1}, |g_t| + ε); jadam keeps the
        paper's u_t = max(β2·u_{t−1}, |g_t|) and adds ε to the divisor. A number sets
        u = max(u' − ε, 0) in every ``ScaleByAdamaxState``, after which both runs agree to a
        relative (1−β2)·ε/u; None leaves u' as it is (agreement to ε/u).

    Raises:
      ValueError: the two states do not have the same fields and leaf shapes (e.g. another
        optimizer, other options, or ``state_precision="8bit"``, which has no optax form).

    Example:
      >>> import jax.numpy as jnp, optax, jadam
      >>> params = jnp.zeros(3)
      >>> theirs = optax.adam(1e-3).init(params)
      >>> ours = jadam.from_optax_state(theirs, jadam.adam(1e-3).init(params))
      >>> type(ours[0]).__module__
      'jadam._family'
    """
    if isinstance(like, SkipNonFiniteState) and not isinstance(state, SkipNonFiniteState):
        inner = from_optax_state(state, like.inner_state, adamax_eps=adamax_eps)
        zero = jnp.zeros([], jnp.int32)
        return SkipNonFiniteState(inner_state=inner, consecutive_skips=zero, total_skips=zero)
    converted = _restructure(state, like)
    return _shift_adamax(converted, adamax_eps, sign=-1)


def to_optax_state(state: Any, like: Any, *, adamax_eps: Any = None) -> Any:
    """A jadam optimizer state as the state of the optax optimizer whose state is ``like``.

    The inverse of :func:`from_optax_state`: ``like`` is the optax state to fill
    (``optax_tx.init(params)`` or its ``jax.eval_shape``); a ``jadam.skip_nonfinite`` wrapper
    is dropped; ``adamax_eps`` (AdaMax's ε) sets optax's u' = u + ε.

    Example:
      >>> import jax.numpy as jnp, optax, jadam
      >>> params = jnp.zeros(3)
      >>> ours = jadam.rmsprop(1e-3, momentum=0.9).init(params)
      >>> theirs = jadam.to_optax_state(ours, optax.rmsprop(1e-3, momentum=0.9).init(params))
      >>> type(theirs[0]).__name__, type(theirs[2]).__name__
      ('ScaleByRmsState', 'TraceState')
    """
    if isinstance(state, SkipNonFiniteState) and not isinstance(like, SkipNonFiniteState):
        state = state.inner_state
    return _restructure(_shift_adamax(state, adamax_eps, sign=1), like)


def _restructure(source: Any, like: Any) -> Any:
    """``source``'s leaves in ``like``'s tree (classes, dtypes), matched by field path."""
    source_leaves, _ = jax.tree_util.tree_flatten_with_path(source)
    like_leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    source_paths = [jax.tree_util.keystr(path) for path, _ in source_leaves]
    like_paths = [jax.tree_util.keystr(path) for path, _ in like_leaves]
    if source_paths != like_paths:
        raise ValueError(
            "the two optimizer states have different fields (another optimizer or other "
            f"options?): {sorted(set(source_paths) ^ set(like_paths))[:6]}"
        )
    leaves = []
    for path, (_, value), (_, target) in zip(like_paths, source_leaves, like_leaves, strict=True):
        if np.shape(value) != tuple(target.shape):
            raise ValueError(
                f"state leaf {path} has shape {np.shape(value)}, the target wants "
                f"{tuple(target.shape)} (a state_precision='8bit' state has no optax form)."
            )
        leaf = jnp.asarray(value)
        if jnp.iscomplexobj(leaf) and not jnp.issubdtype(target.dtype, jnp.complexfloating):
            leaf = jnp.real(leaf)  # optax's |g|² moments of complex params: imaginary part 0
        leaf = leaf.astype(target.dtype)
        sharding = getattr(target, "sharding", None)
        leaves.append(leaf if sharding is None else jax.device_put(leaf, sharding))
    return jax.tree.unflatten(treedef, leaves)


def _shift_adamax(state: Any, eps: Any, *, sign: int) -> Any:
    """Every ScaleByAdamaxState's u_t moved by sign·ε (clipped at 0); ε None: unchanged."""
    if eps is None:
        return state

    def shift(node):
        if not isinstance(node, ScaleByAdamaxState):
            return node
        nu = jax.tree.map(lambda u: jnp.maximum(u + sign * jnp.asarray(eps, u.dtype), 0), node.nu)
        return node._replace(nu=nu)

    return jax.tree.map(shift, state, is_leaf=lambda x: isinstance(x, ScaleByAdamaxState))
