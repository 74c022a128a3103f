"""Eager checks of hyperparameters and gradient trees, with messages that name the culprit.

Concrete Python (or NumPy) numbers are checked when a transform is built. JAX arrays and
tracers are left alone so that ``jax.vmap`` over hyperparameters and
``optax.inject_hyperparams`` keep working.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

_FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
_INT32 = np.iinfo(np.int32)


def _concrete_number(name: str, value: Any) -> float | None:
    """Returns ``value`` as a float if it is a concrete number, None if it is a JAX value."""
    if isinstance(value, jax.Array):  # Arrays and tracers: validated by the user, not here.
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(
            f"{name} must be a real number, got {value!r} of type {type(value).__name__}."
        )
    if isinstance(value, (complex, np.complexfloating)):
        raise TypeError(f"{name} must be a real number, got the complex number {value!r}.")
    if isinstance(value, (int, np.integer)) and not _INT32.min <= value <= _INT32.max:
        raise ValueError(
            f"{name} must be a float32 number; the integer {value!r} does not fit JAX's int32 "
            "(pass it as a float)."
        )
    try:
        number = float(value)
    except OverflowError:
        number = math.inf if value > 0 else -math.inf  # an int beyond any float
    if math.isfinite(number) and abs(number) > _FLOAT32_MAX:
        raise ValueError(
            f"{name} must be a float32 number (|{name}| ≤ {_FLOAT32_MAX:.4g}), got {value!r}."
        )
    return number


def check_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = False,
) -> None:
    """Raises ``ValueError`` unless ``value`` lies in the interval from ``low`` to ``high``.

    >>> check_range("b1", 1.5, 0.0, 1.0)
    Traceback (most recent call last):
    ...
    ValueError: b1 must be in [0.0, 1.0), got 1.5.
    """
    number = _concrete_number(name, value)
    if number is None:
        return
    above = number >= low if low_inclusive else number > low
    below = number <= high if high_inclusive else number < high
    if not (above and below and math.isfinite(number)):
        interval = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}.")


def check_non_negative(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite number ≥ 0."""
    check_range(name, value, 0.0, math.inf, high_inclusive=True)


def check_learning_rate(value: Any, name: str = "learning_rate") -> None:
    """Accepts a finite number ≥ 0, a JAX array, or a schedule (a callable of the step count)."""
    check_non_negative_or_schedule(name, value)


def check_non_negative_or_schedule(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is a schedule (callable), a JAX value or a number ≥ 0.

    What a learning rate α or a weight decay λ may be.

    >>> check_non_negative_or_schedule("weight_decay", -1.0)
    Traceback (most recent call last):
    ...
    ValueError: weight_decay must be in [0.0, inf], got -1.0.
    """
    if not callable(value):
        check_non_negative(name, value)


def check_adam_hyperparameters(b1: Any, b2: Any, eps: Any, eps_root: Any = 0.0) -> None:
    """Checks the decays and ε's every Adam-family algorithm shares (concrete numbers only).

    β1, β2 ∈ [0, 1) (Algorithm 1's "Require"), ε ≥ 0 and ε_root ≥ 0.

    >>> check_adam_hyperparameters(0.9, 1.0, 1e-8)
    Traceback (most recent call last):
    ...
    ValueError: b2 must be in [0.0, 1.0), got 1.0.
    """
    check_range("b1", b1, 0.0, 1.0)
    check_range("b2", b2, 0.0, 1.0)
    check_non_negative("eps", eps)
    check_non_negative("eps_root", eps_root)


def check_dtype(name: str, value: Any) -> None:
    """Raises ``TypeError`` unless ``value`` is None or a floating (or complex) dtype."""
    if value is None:
        return
    try:
        dtype = np.dtype(jax.dtypes.canonicalize_dtype(value))
    except TypeError as error:
        raise TypeError(f"{name} must be a floating dtype or None, got {value!r}.") from error
    if not jax.numpy.issubdtype(dtype, jax.numpy.inexact):
        raise TypeError(f"{name} must be a floating dtype or None, got {value!r}.")


def _describe(leaf: Any) -> str:
    if leaf is None:
        return "None"
    shape = getattr(leaf, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else type(leaf).__name__


def check_tree_matches(updates: Any, reference: Any, what: str = "optimizer state") -> None:
    """Raises ``ValueError`` naming the first path where ``updates`` and ``reference`` differ.

    Compares tree structure and leaf shapes; runs at trace time, so it costs nothing under jit.

    >>> import jax.numpy as jnp
    >>> check_tree_matches({"w": jnp.ones(2)}, {"b": jnp.ones(2)})
    Traceback (most recent call last):
    ...
    ValueError: gradient tree does not match the optimizer state: ...
    """
    is_none = lambda x: x is None  # noqa: E731
    got, got_def = jax.tree_util.tree_flatten_with_path(updates, is_leaf=is_none)
    want, want_def = jax.tree_util.tree_flatten_with_path(reference, is_leaf=is_none)
    if got_def != want_def:
        got_paths = [jax.tree_util.keystr(p) for p, _ in got]
        want_paths = [jax.tree_util.keystr(p) for p, _ in want]
        missing = [p for p in want_paths if p not in got_paths]
        extra = [p for p in got_paths if p not in want_paths]
        raise ValueError(
            f"gradient tree does not match the {what}: missing leaves {missing[:5]}, "
            f"unexpected leaves {extra[:5]} (gradient structure {got_def}, expected {want_def})."
        )
    for (path, g), (_, r) in zip(got, want, strict=True):
        if g is not None:
            check_floating_leaf(f"gradient at {jax.tree_util.keystr(path)}", g)
        if (g is None) != (r is None) or (
            g is not None and np.shape(g) != np.shape(r)  # shapes only: dtypes may differ
        ):
            raise ValueError(
                f"gradient tree does not match the {what} at {jax.tree_util.keystr(path)}: "
                f"gradient has {_describe(g)}, expected {_describe(r)}."
            )


def as_schedule(value: Any) -> Callable[[Any], Any]:
    """Returns ``value`` if it is a schedule, else a constant schedule."""
    return value if callable(value) else (lambda count: value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raises ``ValueError`` unless ``value`` is one of ``choices``.

    >>> check_choice("eps_form", "outside", ("algorithm1", "eps_hat"))
    Traceback (most recent call last):
    ...
    ValueError: eps_form must be one of ('algorithm1', 'eps_hat'), got 'outside'.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def check_flag(name: str, value: Any) -> None:
    """Raises ``TypeError`` unless ``value`` is a Python or NumPy bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")


def check_floating_tree(tree: Any, what: str = "parameter") -> None:
    """Raises ``TypeError`` naming the first leaf of ``tree`` that is not a float or complex array.

    >>> import jax.numpy as jnp
    >>> check_floating_tree({"w": jnp.ones(2), "i": jnp.arange(2)})
    Traceback (most recent call last):
    ...
    TypeError: parameter ['i'] has dtype int32; only floating or complex ones can be optimized ...
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        check_floating_leaf(f"{what} {jax.tree_util.keystr(path)}".rstrip(), leaf)


def check_floating_leaf(description: str, leaf: Any) -> None:
    """Raises ``TypeError`` unless ``leaf`` is a float or complex array (or number)."""
    if hasattr(leaf, "dtype") and hasattr(leaf, "shape"):
        dtype = leaf.dtype
    elif isinstance(leaf, (bool, int, float, complex, np.generic)):
        dtype = jax.numpy.result_type(leaf)
    else:
        raise TypeError(
            f"{description} is a {type(leaf).__name__} ({leaf!r:.40}); expected an array."
        )
    if not jax.numpy.issubdtype(dtype, jax.numpy.inexact):
        raise TypeError(
            f"{description} has dtype {dtype}; only floating or complex ones can be optimized "
            "(cast it, or leave it out of the optimized tree)."
        )
