"""Building blocks for the figure configs in configs/: the shared fields, one run entry, the
smoke variant, and the one loader of config files (``path.py[:arg]``)."""

import importlib.util
import math
from pathlib import Path
from types import ModuleType

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
    fused: bool = False,
    **hparams,
) -> ml_collections.ConfigDict:
    """One run: an optimizer (``name``, α, schedule, hyperparameters) and per-run model settings.

    ``state_precision`` ("float32", "bfloat16" or "8bit") is how the optimizer stores its moments
    (jadam's ``state_precision=``; Adam and AdaMax only); ``fused=True`` runs Adam, AdaMax, NAdam
    or NAdamW with jadam's C++ kernel (jadam's ``fused=``). The key is left out when False, so
    that configs written before it existed keep their fingerprint (a workdir still resumes).
    """
    optimizer = {
        "name": name,
        "learning_rate": learning_rate,
        "schedule": schedule,
        "state_precision": state_precision,
        "hparams": hparams,
    }
    if fused:
        optimizer["fused"] = True
    return ml_collections.ConfigDict(
        {"setting": setting, "optimizer": optimizer, "model": model or {}}
    )


def check_arg(figure: str, arg: str, allowed: tuple[str, ...] = ("", "smoke")) -> None:
    """Raises ``ValueError`` unless ``arg`` (after ``path.py:``) is one of ``allowed``.

    >>> check_arg("fig2_mlp", "tiny")
    Traceback (most recent call last):
    ...
    ValueError: fig2_mlp: unknown config argument 'tiny'; expected '' or 'smoke'
    """
    if arg not in allowed:
        expected = " or ".join(map(repr, allowed)) if len(allowed) == 2 else repr(allowed)
        raise ValueError(f"{figure}: unknown config argument {arg!r}; expected {expected}")


def make_smoke(
    config: ml_collections.ConfigDict,
    sizes: tuple[int, int, int] = (512, 200, 64),
    steps: tuple[int, int, int, int] = (3, 4, 8, 8),
    *,
    keep_search: bool = False,
) -> None:
    """Makes ``config`` its tiny test variant: ``sizes`` = (num_train, num_test, batch_size),
    ``steps`` = (num_epochs, log_every, eval_every, checkpoint_every); a search group becomes
    a two-point grid unless ``keep_search``."""
    if "search" in config and not keep_search:
        config.search = search((0.01, 0.1), max_extensions=1)
    config.num_train, config.num_test, config.batch_size = sizes
    config.num_epochs, config.log_every, config.eval_every, config.checkpoint_every = steps


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


def load_config_module(path: str | Path) -> ModuleType:
    """The Python config file at ``path`` as a module (its ``get_config`` and helpers)."""
    path = Path(path)
    module_spec = importlib.util.spec_from_file_location(f"jadam_config_{path.stem}", path)
    if module_spec is None:
        from jadam.experiments.config_check import ConfigError  # config_check imports this module.

        raise ConfigError(f"--config: expected a Python config file, found {str(path)!r}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def load_config_file(spec: str | Path) -> ml_collections.ConfigDict:
    """Loads ``path.py[:arg]`` the way ``--config=`` does: ``get_config(arg)`` of that file."""
    path, _, arg = str(spec).partition(":")
    module = load_config_module(path)
    return module.get_config(arg) if arg else module.get_config()


def sibling_config(config_file: str, name: str, arg: str = "") -> ml_collections.ConfigDict:
    """``get_config(arg)`` of ``configs/<name>.py`` beside ``config_file`` (a config's __file__)."""
    return load_config_file(f"{Path(config_file).with_name(name + '.py')}:{arg}")
