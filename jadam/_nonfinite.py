"""Skip steps whose gradients, updates or new state are not finite, and count the skips."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class SkipNonFiniteState(NamedTuple):
    """State of :func:`skip_nonfinite`.

    Attributes:
      inner_state: the wrapped transformation's state, as of the last finite step.
      consecutive_skips: steps skipped since the last finite one (int32, saturating).
      total_skips: steps skipped since ``init`` (int32, saturating).
    """

    inner_state: optax.OptState
    consecutive_skips: jax.Array
    total_skips: jax.Array


def _all_finite(tree: Any) -> jax.Array:
    checks = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.all(jnp.stack(checks)) if checks else jnp.array(True)


def skip_nonfinite(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Wraps ``inner`` so that a step with a NaN or ±inf anywhere is skipped, never applied.

    A step is skipped when the gradients, ``inner``'s updates or ``inner``'s new state contain a
    non-finite value. A skipped step returns updates of −0.0 (``optax.apply_updates`` then leaves
    the parameters unchanged bit for bit) and keeps ``inner``'s previous state bit for bit, so
    the moments and Adam's step count t are untouched. Skips are counted in the state;
    stopping after too many consecutive skips is the caller's decision (see :func:`skip_counts`).
    Unlike
    ``optax.apply_if_finite(inner, max_consecutive_errors)``, which applies the non-finite
    update once that many errors have happened in a row, this wrapper never applies one.

    Args:
      inner: any transformation, e.g. ``jadam.adam(1e-3)``.

    Example:
      >>> import jax.numpy as jnp, jadam
      >>> tx = skip_nonfinite(jadam.adam(0.1))
      >>> state = tx.init(jnp.zeros(2))
      >>> updates, state = tx.update(jnp.array([1.0, jnp.nan]), state)
      >>> updates, skip_counts(state)
      (Array([-0., -0.], dtype=float32), (1, 1))
    """
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        return SkipNonFiniteState(
            inner_state=inner.init(params),
            consecutive_skips=jnp.zeros([], jnp.int32),
            total_skips=jnp.zeros([], jnp.int32),
        )

    def update_fn(updates, state, params=None, **extra_args):
        new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra_args)
        finite = _all_finite(updates) & _all_finite(new_updates) & _all_finite(new_inner)
        # −0.0, not 0.0: p + (−0.0) is p bit for bit, also for p = −0.0.
        new_updates = jax.tree.map(lambda u: jnp.where(finite, u, -jnp.zeros_like(u)), new_updates)
        new_inner = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old), new_inner, state.inner_state
        )
        skipped = jnp.logical_not(finite)
        return new_updates, SkipNonFiniteState(
            inner_state=new_inner,
            consecutive_skips=jnp.where(
                finite, 0, optax.safe_increment(state.consecutive_skips)
            ).astype(jnp.int32),
            total_skips=jnp.where(
                skipped, optax.safe_increment(state.total_skips), state.total_skips
            ).astype(jnp.int32),
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def skip_counts(state: Any) -> tuple[int, int]:
    """(consecutive, total) skipped steps of the first :func:`skip_nonfinite` in ``state``.

    Looks through nested states (``optax.chain`` tuples, ``MultiSteps``, Flax optimizer
    states). Raises ``ValueError`` if ``state`` holds no :class:`SkipNonFiniteState`.

    Example:
      >>> import jax.numpy as jnp, jadam
      >>> skip_counts(skip_nonfinite(jadam.adam(0.1)).init(jnp.zeros(1)))
      (0, 0)
    """
    is_skip = lambda x: isinstance(x, SkipNonFiniteState)  # noqa: E731
    for node in jax.tree.leaves(state, is_leaf=is_skip):
        if is_skip(node):
            return int(node.consecutive_skips), int(node.total_skips)
    raise ValueError(
        "skip_counts: the state holds no SkipNonFiniteState; wrap the optimizer with "
        "jadam.skip_nonfinite(...)."
    )
