"""Experiment config → jadam optimizer (an ``optax.GradientTransformation``).

An optimizer entry of a config is a ``ConfigDict`` with ``name``, ``learning_rate`` (α),
``schedule`` ("constant" or "inverse_sqrt" for Section 4's α_t = α/√t) and optional
hyperparameters in ``hparams``; ``state_precision`` ("float32" by default, "bfloat16" or "8bit")
picks how Adam and AdaMax store their moments (jadam's ``state_precision=``) and ``fused``
(False by default) whether Adam, AdaMax, NAdam and NAdamW run jadam's C++ kernel (jadam's
``fused=``). Numeric
hyperparameters are injected into the optimizer state with ``optax.inject_hyperparams``, so runs
that differ only in them share one compiled step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import optax

import jadam
from jadam.experiments.sfo import SFO


@dataclasses.dataclass(frozen=True)
class Spec:
    """How to build one optimizer: the jadam alias, its tunable and its static (bool) arguments."""

    factory: Callable[..., optax.GradientTransformation]
    numeric: tuple[str, ...]
    static: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    label: str = ""
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    low_precision_state: bool = False  # Accepts state_precision other than "float32".
    fused: bool = False  # Accepts fused=True (jadam's C++ kernel).
    fixed: tuple[str, ...] = ()  # Numeric arguments that must stay Python numbers (shapes).


OPTIMIZERS: dict[str, Spec] = {
    "adam": Spec(
        jadam.adam,
        ("b1", "b2", "eps"),
        {"bias_correction": True},
        "Adam",
        low_precision_state=True,
        fused=True,
    ),
    "adamax": Spec(
        jadam.adamax, ("b1", "b2", "eps"), {}, "AdaMax", low_precision_state=True, fused=True
    ),
    "adagrad": Spec(jadam.adagrad, ("initial_accumulator_value", "eps"), {}, "AdaGrad"),
    "rmsprop": Spec(jadam.rmsprop, ("decay", "eps"), {}, "RMSProp"),
    "sgd_nesterov": Spec(
        jadam.sgd, ("momentum",), {"nesterov": True}, "SGDNesterov", {"momentum": 0.9}
    ),
    "adadelta": Spec(jadam.adadelta, ("rho", "eps"), {}, "AdaDelta"),
    # The rest of the Adam family (the family comparison in benchmarks/family.py).
    "amsgrad": Spec(jadam.amsgrad, ("b1", "b2", "eps"), {}, "AMSGrad", low_precision_state=True),
    "nadam": Spec(
        jadam.nadam, ("b1", "b2", "eps"), {}, "NAdam", low_precision_state=True, fused=True
    ),
    "radam": Spec(jadam.radam, ("b1", "b2", "eps"), {}, "RAdam", low_precision_state=True),
    "adabelief": Spec(
        jadam.adabelief, ("b1", "b2", "eps"), {}, "AdaBelief", low_precision_state=True
    ),
    "yogi": Spec(jadam.yogi, ("b1", "b2", "eps"), {}, "Yogi", low_precision_state=True),
    "lamb": Spec(jadam.lamb, ("b1", "b2", "eps"), {}, "LAMB", low_precision_state=True),
    "nadamw": Spec(
        jadam.nadamw, ("b1", "b2", "eps"), {}, "NAdamW", low_precision_state=True, fused=True
    ),
    "adamaxw": Spec(jadam.adamaxw, ("b1", "b2", "eps"), {}, "AdamaxW", low_precision_state=True),
    "adopt": Spec(
        jadam.adopt,
        ("b1", "b2", "eps"),
        {},
        "ADOPT",
        low_precision_state=True,
        fixed=("clip_value_fn",),  # a function of the step, not a schedule to inject
    ),
    "ademamix": Spec(
        jadam.ademamix, ("b1", "b2", "b3", "alpha", "eps"), {}, "AdEMAMix", low_precision_state=True
    ),
    "schedule_free_adamw": Spec(
        jadam.schedule_free_adamw,
        ("b1", "b2", "eps", "weight_decay"),
        {},
        "Schedule-free AdamW",
        low_precision_state=True,
    ),
    "adafactor": Spec(
        jadam.adafactor,
        (),
        {"multiply_by_parameter_scale": True},
        "Adafactor",
        fixed=("min_dim_size_to_factor",),
    ),
}
# SFO (jadam.experiments.sfo) is no optax transformation: the runner drives it separately.
SFO_HPARAMS = ("hessian_init", "init_active", "max_history")
NAMES = tuple(sorted([*OPTIMIZERS, "sfo"]))
SCHEDULES = ("constant", "inverse_sqrt")
# Config value → jadam's state_precision= argument ("float32": the default float32 moments).
STATE_PRECISIONS = {"float32": None, "bfloat16": "bfloat16", "8bit": "8bit"}
_STATE_LABELS = {"bfloat16": "bfloat16 state", "8bit": "8-bit state"}


def label(opt: Mapping[str, Any]) -> str:
    """Display name of an optimizer entry, e.g. "Adam", "Adam (no bias correction)" or
    "Adam (8-bit state)"."""
    if is_sfo(opt):
        return "SFO"
    text = OPTIMIZERS[opt["name"]].label
    if dict(opt.get("hparams") or {}).get("bias_correction") is False:
        text += " (no bias correction)"
    details = [_STATE_LABELS.get(opt.get("state_precision", "float32"), "")]
    details.append("fused" if opt.get("fused", False) else "")
    details = [detail for detail in details if detail]
    return f"{text} ({', '.join(details)})" if details else text


def _hparams(opt: Mapping[str, Any], where: str) -> tuple[Spec, dict[str, Any], dict[str, Any]]:
    name = opt.get("name")
    if name not in OPTIMIZERS:
        raise ValueError(
            f"{where}.name: unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}"
        )
    spec = OPTIMIZERS[name]
    schedule = opt.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise ValueError(
            f"{where}.schedule: unknown schedule {schedule!r}; expected one of {SCHEDULES}"
        )
    lr = opt.get("learning_rate")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"{where}.learning_rate: expected a positive number, found {lr!r}")
    given = dict(opt.get("hparams") or {})
    allowed = set(spec.numeric) | set(spec.static)
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(
            f"{where}.hparams: {unknown} not accepted by {name!r}; "
            f"expected a subset of {sorted(allowed)}"
        )
    numeric = {**spec.defaults, **{k: v for k, v in given.items() if k in spec.numeric}}
    static = {**spec.static, **{k: v for k, v in given.items() if k in spec.static}}
    for key, value in static.items():
        if not isinstance(value, bool):
            raise ValueError(f"{where}.hparams.{key}: expected True or False, found {value!r}")
    precision = opt.get("state_precision", "float32")
    if not isinstance(precision, str) or precision not in STATE_PRECISIONS:
        raise ValueError(
            f"{where}.state_precision: unknown state precision {precision!r}; expected one of "
            f"{list(STATE_PRECISIONS)}"
        )
    if STATE_PRECISIONS[precision] is not None:
        if not spec.low_precision_state:
            supported = sorted(n for n, s in OPTIMIZERS.items() if s.low_precision_state)
            raise ValueError(
                f"{where}.state_precision: {name!r} stores its state in float32 only, found "
                f"{precision!r}; 'bfloat16' and '8bit' need one of {supported}"
            )
        static["state_precision"] = STATE_PRECISIONS[precision]
    fused = opt.get("fused", False)
    if not isinstance(fused, bool):
        raise ValueError(f"{where}.fused: expected True or False, found {fused!r}")
    if fused:
        if not spec.fused:
            supported = sorted(n for n, s in OPTIMIZERS.items() if s.fused)
            raise ValueError(
                f"{where}.fused: {name!r} has no fused kernel, found True; fused=True needs one "
                f"of {supported}"
            )
        static["fused"] = True
    return spec, numeric, static


def is_sfo(opt: Mapping[str, Any]) -> bool:
    """Whether an optimizer entry names SFO (the sum-of-functions optimizer)."""
    return opt.get("name") == "sfo"


def build_sfo(opt: Mapping[str, Any], num_subfunctions: int, where: str = "optimizer") -> SFO:
    """SFO over ``num_subfunctions`` mini-batches from a config entry: ``learning_rate``
    multiplies its steps (1 is the paper's method); ``hparams`` from :data:`SFO_HPARAMS`.

    Example:
      >>> build_sfo({"name": "sfo", "learning_rate": 1.0}, 31).num_subfunctions
      31
    """
    lr = opt.get("learning_rate")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"{where}.learning_rate: expected a positive number, found {lr!r}")
    for key, allowed in (
        ("schedule", "constant"),
        ("state_precision", "float32"),
        ("fused", False),
    ):
        if opt.get(key, allowed) != allowed:
            raise ValueError(f"{where}.{key}: 'sfo' takes only {allowed!r}, found {opt[key]!r}")
    given = dict(opt.get("hparams") or {})
    unknown = sorted(set(given) - set(SFO_HPARAMS))
    if unknown:
        raise ValueError(
            f"{where}.hparams: {unknown} not accepted by 'sfo'; expected a subset of "
            f"{sorted(SFO_HPARAMS)}"
        )
    try:
        return SFO(num_subfunctions, learning_rate=float(lr), **given)
    except ValueError as error:
        raise ValueError(f"{where}.hparams: {error}") from None


def signature(opt: Mapping[str, Any]) -> tuple:
    """What must match for two optimizer entries to share a compiled train step."""
    spec, _, static = _hparams(opt, "optimizer")
    schedule = opt.get("schedule", "constant")
    alpha = opt["learning_rate"] if schedule != "constant" else None
    return (opt["name"], schedule, alpha, tuple(sorted(static.items())), spec.numeric)


def build(opt: Mapping[str, Any], where: str = "optimizer") -> optax.GradientTransformation:
    """Builds the optimizer described by a config entry.

    Args:
      opt: mapping with ``name`` (one of :data:`OPTIMIZERS`), ``learning_rate`` (α > 0),
        optional ``schedule`` ("constant" | "inverse_sqrt"), ``state_precision`` (one of
        :data:`STATE_PRECISIONS`) and ``hparams``.
      where: the entry's position in the config, used in error messages.

    Raises:
      ValueError: unknown name/schedule/state precision/hyperparameter, or a value jadam
        rejects; the message names the config field.

    Example:
      >>> tx = build({"name": "adam", "learning_rate": 1e-3, "schedule": "inverse_sqrt"})
      >>> build({"name": "adamm", "learning_rate": 1e-3})
      Traceback (most recent call last):
      ...
      ValueError: optimizer.name: unknown optimizer 'adamm'; expected one of [...]
    """
    spec, numeric, static = _hparams(opt, where)
    alpha = float(opt["learning_rate"])
    try:  # Eager validation by jadam itself (Python numbers), with the config field in the message.
        spec.factory(alpha, **numeric, **static)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where}.hparams: {error}") from None
    learning_rate = (
        jadam.inverse_sqrt_schedule(alpha) if opt.get("schedule") == "inverse_sqrt" else alpha
    )
    injected = optax.inject_hyperparams(spec.factory, static_args=(*static, *spec.fixed))
    return injected(learning_rate=learning_rate, **numeric, **static)
