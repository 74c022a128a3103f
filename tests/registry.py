"""Every public jadam transformation and its variants: the one registry the test suites run over.

Each table maps a test id to a factory. Add a new transformation here and the suites pick it up.

- ``TRANSFORMS``: every public transformation, built with no argument; ``test_contract.py`` runs
  every contract check over it.
- ``VARIANTS``: the same transformations configured differently: paper/anchor presets, the fused
  kernel, each ``state_precision``, wrapped in ``skip_nonfinite``, inside an ``optax.chain``.
  ``test_contract.py`` runs a representative subset of its checks over them (jit = eager without
  retrace and with stable state types, abstract init, own buffers, MultiSteps and None leaves),
  with tiny shapes, so the suite stays fast.
- ``FUSED`` (``make(fused)``) and ``FUSED_WITH_PRECISION`` × ``PRECISIONS``
  (``make(fused, state_precision)``): what the kernel runs, for ``test_fused.py``'s comparisons
  of ``fused=True`` against the pure path.
- ``LOW_PRECISION`` (``make(state_precision)``): the training comparisons of
  ``test_state_precision_training.py``; ``SMALL_8BIT`` quantizes its 64×32 weight but not its bias.
- ``FLOAT16`` (``make(eps)``): float16 parameters, ``test_state_precision_rounding.py``.
"""

from __future__ import annotations

import functools
import itertools

import jax.numpy as jnp
import optax

import jadam

TRANSFORMS = {
    "scale_by_adam": jadam.scale_by_adam,
    "scale_by_adam_uncorrected": lambda: jadam.scale_by_adam(bias_correction=False),
    "scale_by_adam_nesterov": lambda: jadam.scale_by_adam(nesterov=True),
    "scale_by_adamax": jadam.scale_by_adamax,
    "scale_by_amsgrad": jadam.scale_by_amsgrad,
    "scale_by_momentum": jadam.scale_by_momentum,
    "scale_by_adagrad": jadam.scale_by_adagrad,
    "scale_by_rms": jadam.scale_by_rms,
    "scale_by_rms_centered": lambda: jadam.scale_by_rms(centered=True),
    "scale_by_rms_corrected": lambda: jadam.scale_by_rms(bias_correction=True),
    "scale_by_adadelta": jadam.scale_by_adadelta,
    "adam": lambda: jadam.adam(1e-3),
    "adam_schedule": lambda: jadam.adam(jadam.inverse_sqrt_schedule(1e-3)),
    "adamw": lambda: jadam.adamw(1e-3, weight_decay=0.1),
    "adamax": jadam.adamax,
    "amsgrad": lambda: jadam.amsgrad(1e-3),
    "nadam": lambda: jadam.nadam(1e-3),
    "sgd": lambda: jadam.sgd(0.1),
    "sgd_nesterov": lambda: jadam.sgd(0.1, 0.9, nesterov=True),
    "adagrad": lambda: jadam.adagrad(0.1),
    "rmsprop": lambda: jadam.rmsprop(1e-3, momentum=0.9),
    "adadelta": jadam.adadelta,
    "scale_by_radam": jadam.scale_by_radam,
    "scale_by_belief": jadam.scale_by_belief,
    "scale_by_yogi": jadam.scale_by_yogi,
    "radam": lambda: jadam.radam(1e-3),
    "adabelief": lambda: jadam.adabelief(1e-3),
    "yogi": lambda: jadam.yogi(1e-2),
    "lamb": lambda: jadam.lamb(1e-3, weight_decay=0.01),
    "nadamw": lambda: jadam.nadamw(1e-3),
    "adamaxw": lambda: jadam.adamaxw(2e-3),
    "scale_by_adopt": jadam.scale_by_adopt,
    "adopt": lambda: jadam.adopt(1e-3),
    "scale_by_ademamix": jadam.scale_by_ademamix,
    "ademamix": lambda: jadam.ademamix(1e-3, weight_decay=0.1),
    "schedule_free_adamw": lambda: jadam.schedule_free_adamw(1e-3, warmup_steps=2),
    "scale_by_factored_rms": lambda: jadam.scale_by_factored_rms(min_dim_size_to_factor=2),
    "adafactor": lambda: jadam.adafactor(1e-2, min_dim_size_to_factor=2, momentum=0.9),
}

# The successors of Adam (RAdam, AdaBelief, Yogi, LAMB, NAdamW, AdamaxW): learning rate first.
SUCCESSORS = [jadam.radam, jadam.adabelief, jadam.yogi, jadam.lamb, jadam.nadamw, jadam.adamaxw]

FUSED = {
    "adam": lambda fused: jadam.adam(1e-2, fused=fused),
    "adam_eps0": lambda fused: jadam.adam(1e-2, eps=0.0, fused=fused),
    "adam_eps_root": lambda fused: jadam.adam(1e-2, eps_root=1e-6, fused=fused),
    "adam_no_bias_correction": lambda fused: jadam.adam(1e-2, bias_correction=False, fused=fused),
    "adam_schedule": lambda fused: jadam.adam(optax.linear_schedule(1e-2, 1e-3, 5), fused=fused),
    "adamw": lambda fused: jadam.adamw(1e-2, weight_decay=0.1, fused=fused),
    "adamax": lambda fused: jadam.adamax(1e-2, fused=fused),
    "adamax_eps0": lambda fused: jadam.adamax(1e-2, eps=0.0, fused=fused),
    "nadam": lambda fused: jadam.nadam(1e-2, fused=fused),
    "nadam_no_bias_correction": lambda fused: jadam.adam(
        1e-2, nesterov=True, bias_correction=False, fused=fused
    ),
    "nadamw": lambda fused: jadam.nadamw(1e-2, eps=0.0, weight_decay=0.1, fused=fused),
}

PRECISIONS = {
    "float32": None,
    "bfloat16": "bfloat16",
    "float16": jadam.StochasticRounding(jnp.float16, seed=3),
    "8bit": jadam.Blockwise8bit(block_size=64, min_size=100),  # (7,) and (3, 5) stay float32
    "8bit_nearest": jadam.Blockwise8bit(block_size=100, min_size=0, stochastic=False),
}


def _masked_decay(alias):
    """``alias`` (adamw, nadamw) with a learning-rate schedule and decay on matrices only."""
    return lambda fused, sp: alias(
        optax.linear_schedule(1e-2, 1e-3, 4),
        weight_decay=0.1,
        fused=fused,
        state_precision=sp,
        mask=lambda p: [x.ndim > 1 for x in p],
    )


FUSED_WITH_PRECISION = {
    "adam": lambda fused, sp: jadam.adam(1e-2, fused=fused, state_precision=sp),
    "adamw_masked": _masked_decay(jadam.adamw),
    "adamax": lambda fused, sp: jadam.adamax(1e-2, fused=fused, state_precision=sp),
    "adam_eps0": lambda fused, sp: jadam.adam(1e-2, eps=0.0, fused=fused, state_precision=sp),
    "nadamw_masked": _masked_decay(jadam.nadamw),
}

SMALL_8BIT = jadam.Blockwise8bit(block_size=64, min_size=256)
LOW_PRECISION = {
    "adam": lambda precision: jadam.adam(3e-3, state_precision=precision),
    "adamw": lambda precision: jadam.adamw(3e-3, weight_decay=1e-2, state_precision=precision),
    "adamax": lambda precision: jadam.adamax(6e-3, state_precision=precision),
    "amsgrad": lambda precision: jadam.amsgrad(3e-3, state_precision=precision),
    "radam": lambda precision: jadam.radam(3e-3, state_precision=precision),
    "adabelief": lambda precision: jadam.adabelief(3e-3, state_precision=precision),
    "yogi": lambda precision: jadam.yogi(3e-3, state_precision=precision),
}

FLOAT16 = {
    "adam": lambda eps: jadam.adam(1e-3, eps=eps),
    "adam-no-bias-correction": lambda eps: jadam.adam(1e-3, eps=eps, bias_correction=False),
    "adam-fp16-stochastic": lambda eps: jadam.adam(1e-3, eps=eps, state_precision="float16"),
    "adamax": lambda eps: jadam.adamax(1e-3, eps=eps),
    "amsgrad": lambda eps: jadam.amsgrad(1e-3, eps=eps),
}

PRESETS = {
    "adam_eps_hat": lambda: jadam.adam(1e-3, eps_form="eps_hat"),
    "adam_inside_root": lambda: jadam.adam(1e-3, eps_form="inside_root"),
    "adam_section4": lambda: jadam.adam(jadam.inverse_sqrt_schedule(1e-2), b1_decay=0.9),
    "amsgrad_max_of_raw": lambda: jadam.amsgrad(1e-3, variant="max_of_raw"),
    "amsgrad_uncorrected": lambda: jadam.amsgrad(1e-3, variant="uncorrected"),
    "nadam_torch": lambda: jadam.nadam(1e-3, momentum_decay=0.004),
    "nadam_keras": lambda: jadam.nadam(1e-3, eps=1e-7, momentum_decay=1.0),
    "temporal_averaging": lambda: optax.chain(jadam.adam(1e-3), jadam.temporal_averaging()),
    "lazy_adam": lambda: jadam.lazy_adam(1e-3),
    "lazy_adam_per_row": lambda: jadam.lazy_adam(1e-3, per_row_count=True, eps_form="eps_hat"),
    "radam_torch": lambda: jadam.radam(
        1e-3, eps_form="eps_hat", weight_decay=0.1, decoupled_weight_decay=True
    ),
    "radam_paper_8bit": lambda: jadam.radam(1e-3, threshold=4.0, state_precision="8bit"),
    "adabelief_nesterov_bfloat16": lambda: jadam.adabelief(
        1e-3, nesterov=True, state_precision="bfloat16"
    ),
    "yogi_paper": lambda: jadam.yogi(1e-2, initial_accumulator_value=0.0, bias_correction=False),
    "yogi_8bit": lambda: jadam.yogi(1e-2, state_precision="8bit"),
    "lamb_bfloat16": lambda: jadam.lamb(1e-3, weight_decay=0.1, state_precision="bfloat16"),
    "nadamw_torch": lambda: jadam.nadamw(1e-3, weight_decay=0.1, momentum_decay=0.004),
    "adamaxw_8bit": lambda: jadam.adamaxw(2e-3, state_precision="8bit"),
}

# The contract's parameters are a 2×3 matrix and a 2-vector: 8-bit storage needs min_size=0
# and a small block to quantize them (2 blocks of 4 for the matrix).
TINY_PRECISIONS = {
    "8bit": jadam.Blockwise8bit(block_size=4, min_size=0),
    "bfloat16": "bfloat16",
    "float16": jadam.StochasticRounding(jnp.float16, seed=1),
}


def _wrapped() -> dict:
    """The fused kernel, each state precision, skip_nonfinite and chains, over the tables above."""
    fused = {  # the other FUSED entries change only the arithmetic test_fused.py pins bit for bit
        f"fused-{name}": functools.partial(FUSED[name], True)
        for name in ("adam", "adam_schedule", "adamw", "adamax", "nadamw")
    }
    fused_precision = {
        f"fused-adam-{name}": functools.partial(FUSED_WITH_PRECISION["adam"], True, precision)
        for name, precision in TINY_PRECISIONS.items()
    }
    stored = {  # each algorithm with one precision, each precision over several algorithms
        f"{name}-{precision_name}": functools.partial(make, TINY_PRECISIONS[precision_name])
        for (name, make), precision_name in zip(
            LOW_PRECISION.items(), itertools.cycle(TINY_PRECISIONS), strict=False
        )
    }
    tiny_8bit = TINY_PRECISIONS["8bit"]
    skipping = {
        f"skip_nonfinite-{name}": (lambda make=make: jadam.skip_nonfinite(make()))
        for name, make in {
            "adam": TRANSFORMS["adam"],
            "adafactor": TRANSFORMS["adafactor"],
            "fused-adam-8bit": fused_precision["fused-adam-8bit"],
        }.items()
    }
    chained = {
        "chain-clip-fused-adamw-8bit": lambda: optax.chain(
            optax.clip_by_global_norm(1.0),
            jadam.adamw(1e-2, weight_decay=0.1, fused=True, state_precision=tiny_8bit),
        ),
        "chain-clip-skip_nonfinite-adabelief-8bit": lambda: optax.chain(
            optax.clip_by_global_norm(1.0),
            jadam.skip_nonfinite(jadam.adabelief(1e-3, state_precision=tiny_8bit)),
        ),
    }
    return fused | fused_precision | stored | skipping | chained


WRAPPED = _wrapped()
VARIANTS = PRESETS | WRAPPED
