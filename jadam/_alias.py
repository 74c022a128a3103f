"""Helpers shared by the aliases: a scaling transform followed by the learning rate."""

from __future__ import annotations

from typing import Any

import optax

from jadam import _validation


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
