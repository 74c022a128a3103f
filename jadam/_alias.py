"""Helpers shared by the aliases: a scaling transform followed by the learning rate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from jadam import _validation
from jadam._fused import UpdateFromMoments, fused_transformation
from jadam._spec import StepSpec


def with_learning_rate(
    learning_rate: Any,
    *transforms: optax.GradientTransformation,
    then: optax.GradientTransformation | None = None,
    optional: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """chain(*transforms, −learning_rate[, then]), the learning rate a number or a schedule.

    With ``optional``, ``learning_rate=None`` is optax's "no learning rate": the identity, so the
    updates are not negated (optax's ``adadelta()``).
    """
    if not (optional and learning_rate is None):
        _validation.check_learning_rate(learning_rate)
    tail = () if then is None else (then,)
    return optax.chain(*transforms, optax.scale_by_learning_rate(learning_rate), *tail)


def build_alias(
    spec: StepSpec,
    moments: Any,
    scaling: optax.GradientTransformation,
    *,
    fused: bool,
    direction: Callable[[StepSpec, Any, Any], Any],
) -> optax.GradientTransformationExtraArgs:
    """chain(scaling, [decayed weights,] −learning rate) from ``spec``; fused if asked.

    ``fused=True`` gives a :class:`jadam.FusedTransformation` whose executor reads the same
    ``spec`` and ``moments`` (and raises ``ValueError`` for options the kernel lacks), and
    reuses ``direction(spec, updates, moment_step)`` (what ``scaling`` computes from the new
    moments) and chain([decayed weights,] −learning rate) for the updates of its moments-only
    kernel mode.
    """
    _validation.check_flag("fused", fused)
    decay = []
    if spec.weight_decay is not None:
        decay.append(optax.add_decayed_weights(spec.weight_decay, spec.mask))
    pure = with_learning_rate(spec.learning_rate, scaling, *decay)
    if not fused:
        return pure
    tail = with_learning_rate(spec.learning_rate, *decay)
    return fused_transformation(spec, moments, pure, UpdateFromMoments(direction, tail))
