"""Flax's optimizer holders with the one-pass step: change one name, keep everything else.

``nnx.Optimizer.update`` and Linen's ``TrainState.apply_gradients`` call
``u, s = tx.update(g, s, θ)`` and then ``θ = optax.apply_updates(θ, u)``: two passes over
memory, and the updates ``u`` are a tree of their own. A transformation that has a one-pass
``tx.apply_gradients(θ, g, s) -> (θ, s)`` (``jadam.adam(..., fused=True)`` and the other fused
aliases) computes the same new θ and state in one pass, in place when the buffers are donated.
:class:`Optimizer` and :class:`TrainState` are Flax's classes with that call in place of the
two; every other transformation (optax's, jadam's unfused ones, any ``optax.chain``) runs
exactly Flax's code. Import this module explicitly: ``import jadam`` never imports Flax.

>>> import jax.numpy as jnp, jadam, jadam.flax
>>> from flax import nnx
>>> model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
>>> optimizer = jadam.flax.Optimizer(model, jadam.adam(0.1, fused=True), wrt=nnx.Param)
>>> grads = nnx.grad(lambda m: jnp.sum(m(jnp.ones((1, 2)))))(model)
>>> optimizer.update(model, grads)
>>> int(optimizer.step[...])
1
"""

from __future__ import annotations

from typing import Any

from flax import nnx
from flax.linen.fp8_ops import OVERWRITE_WITH_GRADIENT
from flax.training import train_state

__all__ = ["Optimizer", "TrainState"]


def _one_pass(tx: Any) -> Any:
    """``tx.apply_gradients`` when ``tx`` has a one-pass step, else None.

    >>> import optax, jadam
    >>> _one_pass(optax.adam(0.1)) is None, _one_pass(jadam.adam(0.1, fused=True)) is None
    (True, False)
    """
    apply_gradients = getattr(tx, "apply_gradients", None)
    return apply_gradients if callable(apply_gradients) else None


class Optimizer(nnx.Optimizer):
    """``flax.nnx.Optimizer`` whose ``update`` takes the one-pass step when ``tx`` has one.

    Same constructor (``Optimizer(model, tx, wrt=nnx.Param)``), same state (``step``,
    ``opt_state``), same results as ``nnx.Optimizer`` with the same ``tx``.

    Note:
      On the one-pass path ``update`` returns None: the step never forms the updates tree
      (that is the pass it saves). Keyword arguments for ``tx.update`` (extra args) select
      the standard path, which is the one that accepts them.
    """

    def update(self, model: Any, grads: Any, /, **kwargs: Any) -> Any:
        """θ, state ← tx.apply_gradients(θ, g, state) for the ``wrt`` variables; step += 1.

        Without a one-pass step (or with ``kwargs``) this is ``nnx.Optimizer.update``.
        """
        apply_gradients = _one_pass(self.tx)
        if apply_gradients is None or kwargs:
            return super().update(model, grads, **kwargs)
        params = nnx.as_pure(nnx.state(model, self.wrt, graph=self.graph))
        grad_arrays = nnx.as_pure(nnx.state(grads, self.wrt, graph=self.graph))
        opt_state = nnx.as_pure(self.opt_state)
        new_params, new_opt_state = apply_gradients(params, grad_arrays, opt_state)
        nnx.update(model, new_params)
        nnx.update(self.opt_state, nnx.state(new_opt_state, graph=self.graph))
        self.step[...] += 1
        return None


class TrainState(train_state.TrainState):
    """``flax.training.train_state.TrainState`` whose ``apply_gradients`` takes the one pass.

    Same fields, same ``create``, same results as Flax's class with the same ``tx``; a ``tx``
    without a one-pass step runs Flax's own ``apply_gradients``.
    """

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> TrainState:
        """step + 1, and params and opt_state from ``tx.apply_gradients`` (one pass).

        ``kwargs`` replace other fields, as in Flax. Overwrite-with-gradient parameters
        (fp8 scales under ``OVERWRITE_WITH_GRADIENT``) are set to their gradients, as in Flax.
        """
        apply_gradients = _one_pass(self.tx)
        if apply_gradients is None:
            return super().apply_gradients(grads=grads, **kwargs)
        overwrite = OVERWRITE_WITH_GRADIENT in grads
        params = self.params["params"] if overwrite else self.params
        new_params, new_opt_state = apply_gradients(
            params, grads["params"] if overwrite else grads, self.opt_state
        )
        if overwrite:
            new_params = {
                "params": new_params,
                OVERWRITE_WITH_GRADIENT: grads[OVERWRITE_WITH_GRADIENT],
            }
        return self.replace(
            step=self.step + 1, params=new_params, opt_state=new_opt_state, **kwargs
        )
