"""Temporal averaging of the parameters (Kingma & Ba, 2015, Section 7.2)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jadam import _primitives as P
from jadam import _validation as V


class TemporalAveragingState(NamedTuple):
    """State of :func:`temporal_averaging`: n (θs averaged), β2 and the uncorrected EMA θ̄_n."""

    count: jax.Array
    decay: jax.Array
    average: optax.Params


def temporal_averaging(decay: Any = 0.999) -> optax.GradientTransformation:
    """Keeps Section 7.2's exponential moving average of the parameters in the optimizer state.

    θ̄_n = β2·θ̄_{n−1} + (1−β2)·θ_n,  θ̄_0 = 0;  the averaged parameters are θ̄_n/(1 − β2^n).

    Updates pass through unchanged; ``update`` needs ``params``. Lag: optax calls
    ``update(g_t, state, θ_{t−1})`` before θ_t exists, so after t updates the state has
    averaged θ_0 … θ_{t−1} (n = t), one step behind the parameters. Read the average with
    :func:`averaged_params`; passing it the current θ_t folds θ_t in without changing the state,
    which removes the lag (θ̄ over θ_0 … θ_t, as the paper's θ̄_t).

    Args:
      decay: β2 ∈ [0, 1) (the paper reuses Adam's β2; the default is its 0.999).

    Example:
      >>> import jax.numpy as jnp, optax, jadam
      >>> tx = optax.chain(jadam.adam(0.1), temporal_averaging(0.5))
      >>> params = jnp.array([1.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([1.0]), state, params)
      >>> params = optax.apply_updates(params, updates)  # θ_1 = 0.9
      >>> averaged_params(state), averaged_params(state, params)  # θ_0; (½θ_0 + θ_1)/1.5
      (Array([1.], dtype=float32), Array([0.93333334], dtype=float32))
    """
    V.check_range("decay", decay, 0.0, 1.0)

    def init_fn(params):
        return TemporalAveragingState(
            count=jnp.zeros([], jnp.int32),
            decay=jnp.asarray(decay, jnp.result_type(float)),
            average=P.zeros_like(params),
        )

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("temporal_averaging needs params: call update(updates, state, params)")
        V.check_tree_matches(params, state.average, "averaged parameters")
        average = P.update_first_moment(params, state.average, state.decay)
        count = P.increment(state.count)
        return updates, TemporalAveragingState(count=count, average=average, decay=state.decay)

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
      params: the current parameters θ_t. If given, θ_t is folded into a copy of the average
        (no lag); if None, the average covers the parameters seen by ``update`` (θ_0 … θ_{t−1}).
        Before the first update and without ``params`` the average is undefined (0/0 = NaN).

    Returns:
      A tree like the parameters, in their dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = temporal_averaging(0.9)
      >>> averaged_params(tx.init(jnp.zeros(2)), jnp.array([1.0, 2.0]))
      Array([1., 2.], dtype=float32)
    """
    state = _find_state(opt_state)
    average = jax.tree.map(lambda x: getattr(x, "value", x), state.average)
    count, decay = state.count, state.decay
    if params is not None:
        V.check_tree_matches(params, average, "averaged parameters")
        average = P.update_first_moment(params, average, decay)
        count = P.increment(count)
    corrected = P.bias_correction(average, decay, count)
    return jax.tree.map(lambda c, a: c.astype(a.dtype), corrected, average)
