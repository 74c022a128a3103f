"""Helpers shared by the aliases: a scaling transform followed by the learning rate."""

from __future__ import annotations

from typing import Any

import optax

from jadam import _validation


def with_learning_rate(
    learning_rate: Any, *transforms: optax.GradientTransformation
) -> optax.GradientTransformationExtraArgs:
    """chain(*transforms, −learning_rate), the learning rate a number or a schedule."""
    _validation.check_learning_rate(learning_rate)
    return optax.chain(*transforms, optax.scale_by_learning_rate(learning_rate))
