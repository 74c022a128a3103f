"""What a figure's runs need before they train: data on the devices, the mesh, the step counts,
and each run's model, parameters and label.

:func:`prepare_figure` checks the config against the data (sizes, int32 step numbers) and the
workdir against the config, loads the data once for all runs and lays it out on the devices
(``config.mesh="data"``: mini-batches split over all local devices, parameters and state
replicated). :func:`prepare_run` builds one run's model from the same seed, so every run starts
from the same parameters. :mod:`jadam.experiments.train` does the training.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

import jadam
from jadam.experiments import checkpoints, config_check, models, optimizers
from jadam.experiments import data as data_lib


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure config made ready to train (shared by all its runs).

    ``test_batches``/``train_batches`` are (x, y, mask) evaluation batches (``train_batches`` is
    ``None`` unless ``config.eval_train_set``); ``key`` seeds mini-batch order and noise.
    """

    config: ml_collections.ConfigDict
    workdir: Path
    dataset: data_lib.Dataset
    x_train: jax.Array
    y_train: jax.Array
    batch_sharding: Any
    replicated: Any
    test_batches: list[tuple[jax.Array, ...]]
    train_batches: list[tuple[jax.Array, ...]] | None
    steps_per_epoch: int
    steps_per_call: int
    num_steps: int
    key: jax.Array

    @property
    def bad_limit(self) -> int:
        """``config.max_consecutive_bad_steps`` (0: non-finite steps are not skipped)."""
        return self.config.get("max_consecutive_bad_steps", 0)

    @property
    def timed(self) -> bool:
        """Whether training time is logged (the plot is against wall-clock time)."""
        return self.config.plot.kind == "curves_time"


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a figure: its optimizer config, model (split) and where its config lives."""

    run_id: str
    optimizer: ml_collections.ConfigDict
    graphdef: nnx.GraphDef
    params: Any
    where: str  # The optimizer's config path, for error messages.


def prepare_figure(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> Figure:
    """Checks ``config`` and ``workdir``, loads the data and lays it out on the devices."""
    config_check.check_figure_config(config)
    workdir = Path(workdir)
    checkpoints.check_workdir(config, workdir)
    dataset = _prepare_data(config)
    x_train, y_train = jnp.asarray(dataset.train_x), jnp.asarray(dataset.train_y)
    batch_sharding = replicated = None
    if config.get("mesh", ""):  # Data parallel: batches split, parameters and state replicated.
        mesh = jax.make_mesh(
            (jax.local_device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,)
        )
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        x_train, y_train = jax.device_put((x_train, y_train), replicated)
    eval_batch = min(config.get("eval_batch_size", 1000), len(dataset.test_y))
    steps_per_epoch = len(dataset.train_y) // config.batch_size
    num_steps = -(-config.num_epochs * steps_per_epoch // config.log_every) * config.log_every
    config_check.check_step_count(config, num_steps, steps_per_epoch)
    return Figure(
        config=config,
        workdir=workdir,
        dataset=dataset,
        x_train=x_train,
        y_train=y_train,
        batch_sharding=batch_sharding,
        replicated=replicated,
        test_batches=eval_batches(dataset.test_x, dataset.test_y, eval_batch),
        train_batches=(
            eval_batches(dataset.train_x, dataset.train_y, eval_batch)
            if config.get("eval_train_set", False)
            else None
        ),
        steps_per_epoch=steps_per_epoch,
        steps_per_call=config.get("steps_per_call", 0) or config.log_every,
        num_steps=num_steps,
        key=jax.random.key(config.seed),
    )


def _prepare_data(config: ml_collections.ConfigDict) -> data_lib.Dataset:
    dataset = data_lib.load_dataset(
        config.dataset, config.get("data_dir") or None, seed=config.seed
    )
    if config.num_train:
        config_check.check_fits_training_set("num_train", config.num_train, len(dataset.train_y))
        dataset = _subset(dataset, config.num_train, config.get("num_test", 0))
    config_check.check_fits_training_set("batch_size", config.batch_size, len(dataset.train_y))
    return dataset


def _subset(dataset: data_lib.Dataset, num_train: int, num_test: int) -> data_lib.Dataset:
    num_test = num_test or len(dataset.test_y)
    return dataclasses.replace(
        dataset,
        train_x=dataset.train_x[:num_train],
        train_y=dataset.train_y[:num_train],
        test_x=dataset.test_x[:num_test],
        test_y=dataset.test_y[:num_test],
    )


def eval_batches(x: np.ndarray, y: np.ndarray, size: int) -> list[tuple[jax.Array, ...]]:
    """(x, y, mask) batches of ``size`` examples; the last is zero-padded and masked.

    >>> [tuple(b.shape) for b in eval_batches(np.zeros((5, 2)), np.zeros(5), 3)[1]]
    [(3, 2), (3,), (3,)]
    """
    pad = -len(y) % size
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    mask = np.concatenate([np.ones(len(y), np.float32), np.zeros(pad, np.float32)])
    y = np.concatenate([y, np.zeros(pad, y.dtype)])
    return [
        (
            jnp.asarray(x[i : i + size]),
            jnp.asarray(y[i : i + size]),
            jnp.asarray(mask[i : i + size]),
        )
        for i in range(0, len(y), size)
    ]


def prepare_run(figure: Figure, run_id: str) -> Run:
    """Run ``run_id``: the figure's model with the run's settings, from the figure's seed."""
    config = figure.config
    run = config.runs[run_id]
    model_config = {
        **config.model.to_dict(),
        **run.get("model", ml_collections.ConfigDict()).to_dict(),
    }
    where = f"config.runs.{run_id}.optimizer"
    if optimizers.is_sfo(run.optimizer):
        config_check.check_sfo_run(config, where, model_config)
    model = models.build_model(model_config, figure.dataset, config.seed)
    graphdef, params = nnx.split(model)
    return Run(run_id, run.optimizer, graphdef, params, where)


def record_base(figure: Figure, run: Run, opt_state: Any) -> dict:
    """The fields every record and the summary row of a run start with."""
    config = figure.config
    num_params = sum(p.size for p in jax.tree.leaves(run.params))
    return {
        "figure": config.figure,
        "run": run.run_id,
        "optimizer": optimizers.label(run.optimizer),
        "setting": config.runs[run.run_id].get("setting", ""),
        "data": figure.dataset.label,
        "state_bytes_per_param": round(jadam.state_nbytes(opt_state) / num_params, 4),
    }


def selected_figures(config: ml_collections.ConfigDict) -> list[str]:
    """A paper config's figures to run: ``config.only``'s names, or all of them."""
    selected = [n.strip() for n in config.only.split(",") if n.strip()]
    return selected or list(config.figures)
