"""Temporal averaging of the parameters (Kingma & Ba, 2015, Section 7.2)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam._primitives import bias_correction, increment, update_first_moment, zeros_like
from jadam._validation import check_range, check_tree_matches


class TemporalAveragingState(NamedTuple):
    """State of :func:`temporal_averaging`: updates seen t, β2 and the uncorrected EMA θ̄_{t−1}."""

    count: jax.Array
    decay: jax.Array
    average: optax.Params


def temporal_averaging(decay: Any = 0.999) -> optax.GradientTransformation:
    """Keeps Section 7.2's exponential moving average of the parameters in the optimizer state.

    θ̄_t = β2·θ̄_{t−1} + (1−β2)·θ_t,  θ̄_0 = 0;  the averaged parameters are θ̄_t/(1 − β2^t).

    Updates pass through unchanged; ``update`` needs ``params``. One-step lag: optax calls
    ``update(g_t, state, θ_{t−1})`` before θ_t exists, so after t updates the state holds the
    paper's θ̄_{t−1} (over θ_1 … θ_{t−1}; the initial θ_0 is not averaged, as in the paper).
    :func:`averaged_params` with the current θ_t folds θ_t into a copy: exactly the paper's θ̄_t.

    Args:
      decay: β2 ∈ [0, 1) (the paper reuses Adam's β2; the default is its 0.999).

    Example:
      >>> import jax.numpy as jnp, optax, jadam
      >>> tx = optax.chain(jadam.sgd(1.0), temporal_averaging(0.5))
      >>> params = jnp.array([0.0])
      >>> state = tx.init(params)
      >>> for _ in range(2):  # θ_1 = −1, θ_2 = −2
      ...     updates, state = tx.update(jnp.array([1.0]), state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> averaged_params(state), averaged_params(state, params)  # θ̄_1; (½θ_1 + θ_2)/1.5
      (Array([-1.], dtype=float32), Array([-1.6666666], dtype=float32))
    """
    check_range("decay", decay, 0.0, 1.0)

    def init_fn(params):
        return TemporalAveragingState(
            count=jnp.zeros([], jnp.int32),
            decay=jnp.asarray(decay, jnp.result_type(float)),
            average=zeros_like(params),
        )

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("temporal_averaging needs params: call update(updates, state, params)")
        check_tree_matches(params, state.average, "averaged parameters")
        folded = update_first_moment(params, state.average, state.decay)
        first = state.count == 0  # params is θ_0 on the first call: not averaged
        average = jax.tree.map(lambda new, old: jnp.where(first, old, new), folded, state.average)
        count = increment(state.count)
        return updates, TemporalAveragingState(count=count, decay=state.decay, average=average)

    return optax.GradientTransformation(init_fn, update_fn)


def _find_state(opt_state: Any) -> TemporalAveragingState:
    is_state = lambda x: isinstance(x, TemporalAveragingState)  # noqa: E731
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=is_state) if is_state(s)]
    if len(found) != 1:
        raise ValueError(
            f"expected exactly one temporal_averaging state in the optimizer state, "
            f"found {len(found)}."
        )
    return found[0]


def averaged_params(opt_state: Any, params: Any = None) -> Any:
    """The bias-corrected temporal average θ̄_n/(1 − β2^n) of Section 7.2, for evaluation.

    Args:
      opt_state: an optimizer state containing one :func:`temporal_averaging` state anywhere
        (e.g. inside ``optax.chain``'s tuple, a Linen ``TrainState.opt_state``, or
        ``nnx.Optimizer.opt_state``).
      params: the current parameters θ_t. If given, θ_t is folded into a copy of the average:
        the paper's θ̄_t (no lag). If None: θ̄_{t−1}, over θ_1 … θ_{t−1} (undefined, NaN,
        before two updates).

    Returns:
      A tree shaped like ``params`` (or like the state's average if ``params`` is None), in
      the parameters' dtypes. With Flax nnx: ``nnx.update(eval_model,
      averaged_params(optimizer.opt_state, nnx.state(model, nnx.Param)))``.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = temporal_averaging(0.9)
      >>> averaged_params(tx.init(jnp.zeros(2)), jnp.array([1.0, 2.0]))
      Array([1., 2.], dtype=float32)
    """
    state = _find_state(opt_state)
    # Compare leaf by leaf, so that wrappers around the leaves (Flax nnx's OptVariable in the
    # optimizer state vs Param in ``params``) do not matter; the result takes ``params``' form.
    average, structure = jax.tree.flatten(state.average)
    decay = state.decay
    count = jnp.maximum(state.count - 1, 0)  # θs averaged so far: θ_1 … θ_{t−1}
    if params is not None:
        leaves, structure = jax.tree.flatten(params)
        if [jnp.shape(x) for x in leaves] != [jnp.shape(x) for x in average]:
            raise ValueError(
                "params do not match the averaged parameters: leaf shapes "
                f"{[jnp.shape(x) for x in leaves]}, expected {[jnp.shape(x) for x in average]}."
            )
        average = update_first_moment(leaves, average, decay)
        count = increment(count)
    corrected = bias_correction(average, decay, count)
    return structure.unflatten([c.astype(a.dtype) for c, a in zip(corrected, average, strict=True)])
