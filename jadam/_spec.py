"""What an Adam-family step computes: the algorithm and its hyperparameters, written once.

The aliases (:func:`jadam.adam`, :func:`jadam.adamw`, :func:`jadam.adamax`) build one
:class:`StepSpec` from their arguments; the pure transformation and the fused kernel's executor
both read it, so no hyperparameter is passed twice and no alias re-derives what the kernel does.
How the moments are stored is a separate choice (:class:`jadam._storage.Moments`), and so is how
the step executes (:mod:`jadam._fused`).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True, eq=False)
class StepSpec:
    """Algorithm 1 (``"adam"``) or Algorithm 2 (``"adamax"``) with its hyperparameters.

    Attributes:
      algorithm: "adam" or "adamax".
      b1, b2, eps, eps_root: β1, β2, ε, ε_root (numbers, or arrays under inject_hyperparams).
      bias_correction, nesterov, eps_form, b1_decay: Adam's switches (see jadam.scale_by_adam).
      learning_rate: α, a number or a schedule of the step count.
      weight_decay: λ of decoupled weight decay (AdamW), None for none.
      mask: AdamW's mask (a tree of bools or a callable of the params), or None.

    >>> StepSpec("adam", 0.9, 0.999, 1e-8).eps_form
    'algorithm1'
    """

    algorithm: str
    b1: Any
    b2: Any
    eps: Any
    eps_root: Any = 0.0
    bias_correction: bool = True
    nesterov: bool = False
    eps_form: str = "algorithm1"
    b1_decay: Any = None
    learning_rate: Any = None
    weight_decay: Any = None
    mask: Any = None
