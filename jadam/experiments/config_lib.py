"""Building blocks for the figure configs in configs/: the shared fields and one run entry."""

import math

import ml_collections


def base_config(figure: str, dataset: str, model: dict, title: str) -> ml_collections.ConfigDict:
    """Fields every figure config has; the figure file sets runs and sizes."""
    config = ml_collections.ConfigDict()
    config.figure = figure
    config.dataset = dataset
    config.data_dir = ""  # "" = embedded default data (or its documented stand-in).
    config.num_train = 0  # 0 = the whole training set; else its first num_train examples.
    config.num_test = 0  # With num_train: test examples to keep (0 = all).
    config.model = ml_collections.ConfigDict(model)
    config.batch_size = 128
    config.num_epochs = 10
    config.log_every = 10  # Steps fused into one jitted scan; one logged point each.
    config.eval_every = 10  # Steps between test-set evaluations (multiple of log_every).
    config.checkpoint_every = 100  # Steps between orbax checkpoints (multiple of log_every).
    config.eval_batch_size = 1000
    config.seed = 0
    config.progress = True
    config.mesh = ""  # "data": data parallel over all local devices (batch_size divisible).
    config.max_consecutive_bad_steps = 0  # >0: skip non-finite steps, stop after this many.
    # At each evaluation also the loss on the whole training set (evaluation mode: no dropout,
    # the VAE's posterior mean), logged as train_set_loss.
    config.eval_train_set = False
    config.runs = ml_collections.ConfigDict()
    config.plot = ml_collections.ConfigDict(
        {"kind": "curves", "title": title, "ylabel": "training cost", "yscale": "linear", "dpi": 80}
    )
    return config


def run(
    name: str,
    learning_rate: float,
    schedule: str = "constant",
    setting: str = "",
    model=None,
    state_precision: str = "float32",
    **hparams,
) -> ml_collections.ConfigDict:
    """One run: an optimizer (``name``, α, schedule, hyperparameters) and per-run model settings.

    ``state_precision`` ("float32", "bfloat16" or "8bit") is how the optimizer stores its moments
    (jadam's ``state_precision=``; Adam and AdaMax only).
    """
    return ml_collections.ConfigDict(
        {
            "setting": setting,
            "optimizer": {
                "name": name,
                "learning_rate": learning_rate,
                "schedule": schedule,
                "state_precision": state_precision,
                "hparams": hparams,
            },
            "model": model or {},
        }
    )


def ladder(low: float, high: float) -> tuple[float, ...]:
    """The learning rates 1·10^k and 3·10^k from ``low`` to ``high`` (a half-decade grid).

    >>> ladder(1e-3, 0.1)
    (0.001, 0.003, 0.01, 0.03, 0.1)
    """
    values, exponent = [], math.floor(math.log10(low))
    while 10.0**exponent <= high * 1.0001:
        values += [float(f"{m * 10.0**exponent:.1g}") for m in (1, 3)]
        exponent += 1
    return tuple(v for v in values if low * 0.9999 <= v <= high * 1.0001)


def search(
    alphas: tuple[float, ...],
    momenta: tuple[float, ...] = (),
    runs: str = "",
    max_extensions: int = 4,
    span: int = 0,
) -> ml_collections.ConfigDict:
    """The ``search`` group read by ``python -m jadam.experiments.lr_search`` (nothing else).

    ``alphas``: the starting grid of α, extended past an edge that holds the best α (at most
    ``max_extensions`` times per run); ``momenta``: searched with α for optimizers that have a
    momentum (``()``: keep the run's own); ``runs``: comma-separated run or optimizer names
    (``""``: every run but AdaDelta); ``span``: start each run from the grid points within
    ``span`` half-decades of the run's own α (``0``: the whole grid).
    """
    return ml_collections.ConfigDict(
        {
            "alphas": tuple(alphas),
            "momenta": tuple(momenta),
            "runs": runs,
            "max_extensions": max_extensions,
            "span": span,
        }
    )
