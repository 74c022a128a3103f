"""Training for the paper's experiments: jitted steps and ``train_and_evaluate(config, workdir)``.

A *figure* config (``configs/fig*.py``) names a data set, a model and a set of *runs* (one
optimizer each, plus per-run model settings such as dropout). Every run starts from the same
initial parameters and sees the same mini-batches, so the curves differ only by optimizer. A
*paper* config (``configs/paper.py``) holds several figure configs under ``figures`` and runs
each into ``workdir/<figure>``.

Per step: a mini-batch is gathered on the device from a per-epoch permutation, the loss and its
gradient are computed, and the jadam optimizer is applied. ``log_every`` steps are fused into one
jitted ``lax.scan`` whose train state is donated. After each chunk a point is logged (mean
training loss over the chunk, and test metrics; with ``eval_train_set`` also the loss on the
whole training set in evaluation mode); every ``checkpoint_every`` steps the train state
and the log so far are saved with orbax, so a restarted run continues where it stopped and
writes the same ``metrics.jsonl``.

Here: the steps (:func:`make_train_chunk`, :func:`make_sfo_chunk`, :func:`make_evaluate`) and the
loops over figures, runs and logged chunks. Preparing a figure and its runs is
:mod:`~jadam.experiments.runner`'s; checkpoints and resuming :mod:`~jadam.experiments.checkpoints`';
the metrics file, summary and PNG :mod:`~jadam.experiments.report`'s.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.flatten_util
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import jadam
from jadam.experiments import checkpoints, optimizers, report, runner
from jadam.experiments.config_check import check_config


# ----------------------------------------------------------------------------- entry points
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> list[dict]:
    """Runs a figure config, or every figure of a paper config (``config.figures``).

    Writes ``workdir/metrics.jsonl``, ``workdir/summary.json`` and one PNG per figure (for a
    paper config each figure also gets its own ``workdir/<figure>/`` with checkpoints), prints a
    summary table, and returns the summary rows.
    """
    check_config(config)  # Every figure's config, before any of them trains.
    workdir = Path(workdir)
    if "figures" not in config:
        rows = run_figure(config, workdir)
    else:
        names = runner.selected_figures(config)
        rows = []
        workdir.mkdir(parents=True, exist_ok=True)
        for name in names:
            rows += run_figure(config.figures[name], workdir / name)
        figures = [(name, config.figures[name].figure) for name in names]
        report.write_paper(workdir, figures, rows)
    print(report.format_summary(rows), flush=True)
    return rows


def run_figure(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> list[dict]:
    """Trains every run of one figure config; writes metrics.jsonl, summary.json and the PNG.

    Returns:
      The summary rows, one per run.
    """
    figure = runner.prepare_figure(config, workdir)
    report.start_metrics(figure.workdir)
    progress = tqdm(
        total=figure.num_steps * len(config.runs),
        desc=config.figure,
        disable=not config.get("progress", True),
        dynamic_ncols=True,
        leave=True,
    )
    summary = [_train_run(figure, run_id, progress) for run_id in config.runs]
    progress.close()
    report.write_figure(config, figure.workdir, summary)
    return summary


def _train_run(figure: runner.Figure, run_id: str, progress: Any) -> dict:
    """Trains (or resumes, or reads back) one run; returns its summary row."""
    run = runner.prepare_run(figure, run_id)
    state, train_chunk, evaluate = _compiled_steps(figure, run)
    base = runner.record_base(figure, run, state[1])
    manager, state, log = checkpoints.resume(figure.workdir, run_id, state)
    if figure.replicated is not None:
        state = jax.device_put(state, figure.replicated)
    report.append_metrics(figure.workdir, log["records"])
    progress.update(log["step"] if not log.get("finished") else figure.num_steps)
    resumed_from = log["step"]
    _train_logged_chunks(
        figure, run_id, base, (state, train_chunk, evaluate), log, manager, progress
    )
    manager.close()
    checkpoints.mark_finished(figure.workdir, run_id, log)
    return report.summarise(base, log, resumed_from)


def _train_logged_chunks(
    figure: runner.Figure,
    run_id: str,
    base: dict,
    steps: tuple[Any, Callable, Callable],
    log: dict,
    manager: Any,
    progress: Any,
) -> None:
    """Trains from ``log["step"]`` to the end (or divergence): a record per ``log_every`` steps,
    evaluated every ``eval_every``, checkpointed every ``checkpoint_every``. Updates ``log``.

    ``steps`` is (train state, train chunk, evaluate).

    ``log["wall_time_s"]`` counts the time between checkpoints, so a resumed run adds to it.
    """
    config = figure.config
    state, train_chunk, evaluate = steps
    if figure.timed and not log.get("finished"):  # Compile first: timed steps exclude compilation.
        train_chunk = train_chunk.lower(
            state, jnp.asarray(log["step"], jnp.int32), figure.x_train, figure.y_train, figure.key
        ).compile()
    start_time = time.perf_counter()
    while not log.get("finished"):
        step = log["step"]
        if step >= figure.num_steps or log["diverged"]:
            log["finished"] = True
            start_time = _checkpoint(manager, step, state, log, start_time)
            break
        chunk_start = time.perf_counter()
        state, loss = _train_interval(figure, run_id, train_chunk, state, step)
        step += config.log_every
        record = {
            **base,
            "step": step,
            "epoch": round(step / figure.steps_per_epoch, 6),
            "train_loss": report.finite(loss),
        }
        if figure.timed:  # Seconds spent in training steps so far (no compilation, no evaluation).
            log["train_time_s"] = log.get("train_time_s", 0.0) + (time.perf_counter() - chunk_start)
            record["train_time_s"] = round(log["train_time_s"], 4)
        if step % config.eval_every == 0 or step >= figure.num_steps:
            record.update(_evaluate(figure, evaluate, state[0]))
        log["records"].append(record)
        log["step"] = step
        # With skip_nonfinite (bad_limit > 0) a NaN chunk was skipped, not trained on.
        log["diverged"] = record["train_loss"] is None and not figure.bad_limit
        report.append_metrics(figure.workdir, [record])
        progress.update(config.log_every)
        progress.set_postfix_str(f"{run_id} loss={loss:.4g}")
        if step % config.checkpoint_every == 0 and step < figure.num_steps and not log["diverged"]:
            start_time = _checkpoint(manager, step, state, log, start_time)


def _checkpoint(manager: Any, step: int, state: Any, log: dict, start_time: float) -> float:
    """Adds the time since ``start_time`` to the log, saves, and returns the new start time."""
    log["wall_time_s"] += time.perf_counter() - start_time
    start_time = time.perf_counter()
    checkpoints.save(manager, step, state, log)
    return start_time


def _train_interval(
    figure: runner.Figure, run_id: str, train_chunk: Callable, state: Any, step: int
) -> tuple[Any, float]:
    """``log_every`` steps from ``step``, ``steps_per_call`` per call: (state, mean loss).

    With ``max_consecutive_bad_steps`` the mean leaves out the calls that were skipped as
    non-finite, and too many skipped steps in a row stop the run.
    """
    losses = []
    for offset in range(0, figure.config.log_every, figure.steps_per_call):
        state, loss = train_chunk(
            state, jnp.asarray(step + offset, jnp.int32), figure.x_train, figure.y_train, figure.key
        )
        losses.append(loss)
        if figure.bad_limit:
            _stop_if_stuck(
                state[1], figure.bad_limit, run_id, step + offset + figure.steps_per_call
            )
    loss = float(np.mean(np.asarray(losses, np.float64))) if len(losses) > 1 else float(losses[0])
    if figure.bad_limit and not math.isfinite(loss):  # Leave out the skipped chunks.
        finite = [float(v) for v in losses if math.isfinite(float(v))]
        loss = float(np.mean(finite)) if finite else loss
    return state, loss


def _evaluate(figure: runner.Figure, evaluate: Callable, params: Any) -> dict:
    """Test loss (and accuracy for a classifier); the whole training set's loss if asked for."""
    dataset = figure.dataset
    totals = [evaluate(params, bx, by, bm) for bx, by, bm in figure.test_batches]
    metrics = {"test_loss": report.finite(sum(float(t[0]) for t in totals) / len(dataset.test_y))}
    if figure.config.model.kind != "vae":
        correct = sum(float(t[1]) for t in totals)
        metrics["test_accuracy"] = round(correct / len(dataset.test_y), 6)
    if figure.train_batches is not None:
        totals = [evaluate(params, bx, by, bm) for bx, by, bm in figure.train_batches]
        loss = sum(float(t[0]) for t in totals) / len(dataset.train_y)
        metrics["train_set_loss"] = report.finite(loss)
    return metrics


def _stop_if_stuck(opt_state: Any, limit: int, run_id: str, step: int) -> None:
    """Raises ``FloatingPointError`` once ``limit`` steps in a row were skipped as non-finite."""
    consecutive, total = jadam.skip_counts(opt_state)
    if consecutive >= limit:
        raise FloatingPointError(
            f"run {run_id!r} stopped at step {step}: the last {consecutive} steps had non-finite "
            f"gradients, updates or optimizer state ({total} skipped in all), reaching "
            f"config.max_consecutive_bad_steps={limit}. Parameters and optimizer state are those "
            "of the last finite step; the latest checkpoint precedes them."
        )


# ----------------------------------------------------------------------------- compiled steps
# (train chunk, evaluate) by (graphdef, optimizer signature, model kind, sizes, ...): runs that
# differ only in injected hyperparameters (Figure 4's grid) share one compilation.
_COMPILED: dict[tuple, tuple[Callable, Callable]] = {}


def _compiled_steps(figure: runner.Figure, run: runner.Run) -> tuple[Any, Callable, Callable]:
    """(initial train state, train chunk, evaluate) of a run, compiled once per signature."""
    config, kind = figure.config, figure.config.model.kind
    num_examples = len(figure.dataset.train_y)
    if optimizers.is_sfo(run.optimizer):
        tx = optimizers.build_sfo(run.optimizer, num_examples // config.batch_size, where=run.where)
        key = ("sfo", run.graphdef, tx, kind, config.batch_size, num_examples)
        chunk = functools.partial(make_sfo_chunk, run.graphdef, tx, kind)
    else:
        skip_bad = figure.bad_limit > 0  # skip_nonfinite wraps the optimizer state.
        tx = optimizers.build(run.optimizer, where=run.where)
        tx = jadam.skip_nonfinite(tx) if skip_bad else tx
        signature = optimizers.signature(run.optimizer)
        key = (run.graphdef, signature, skip_bad, kind, config.batch_size, num_examples)
        key += (figure.steps_per_call, figure.batch_sharding)
        chunk = functools.partial(
            make_train_chunk,
            run.graphdef,
            tx,
            kind,
            batch_sharding=figure.batch_sharding,
            ignore_nan_losses=skip_bad,
        )
    if key not in _COMPILED:
        train_chunk = chunk(
            batch_size=config.batch_size, num_examples=num_examples, chunk=figure.steps_per_call
        )
        _COMPILED[key] = (train_chunk, make_evaluate(run.graphdef, kind))
    return ((run.params, tx.init(run.params)), *_COMPILED[key])


# ----------------------------------------------------------------------------- jitted steps
def _loss_fn(kind: str) -> Callable:
    """(model, x, y, rngs) → (mean loss, per-example aux); ``rngs=None`` means evaluation."""
    if kind == "vae":

        def vae_loss(model, x, y, rngs):
            del y
            per_example = model(x, rngs)
            return per_example.mean(), per_example

        return vae_loss

    def classification_loss(model, x, y, rngs):
        logits = model(x, rngs)
        per_example = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return per_example.mean(), (per_example, jnp.argmax(logits, -1) == y)

    return classification_loss


def make_train_chunk(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    kind: str,
    *,
    batch_size: int,
    num_examples: int,
    chunk: int,
    batch_sharding: Any = None,
    ignore_nan_losses: bool = False,
) -> Callable:
    """Jitted ``(state, start_step, x, y, key) → (state, mean loss)`` running ``chunk`` steps.

    ``state = (params, opt_state)`` is donated. Step t uses the mini-batch at position
    t mod (n // batch) of the permutation for epoch t // (n // batch), and dropout/noise keys
    folded from t, so any chunk of steps is reproducible on its own (which makes resuming exact).
    ``chunk == 1`` compiles a single step without ``lax.scan``: XLA's CPU convolutions ran
    several times slower inside a loop, so the CNN config takes one step per call.
    With ``batch_sharding`` each mini-batch is split over the mesh (data parallel); with
    ``ignore_nan_losses`` the chunk's mean loss leaves out steps ``skip_nonfinite`` skipped.
    """
    steps_per_epoch = num_examples // batch_size
    loss_fn = _loss_fn(kind)

    def train_step(state, step, x, y, key):
        params, opt_state = state
        data_key, noise_key = jax.random.split(key)
        permutation = jax.random.permutation(
            jax.random.fold_in(data_key, step // steps_per_epoch), num_examples
        )
        index = jax.lax.dynamic_slice_in_dim(
            permutation, (step % steps_per_epoch) * batch_size, batch_size
        )
        step_key = jax.random.fold_in(noise_key, step)
        x_batch, y_batch = x[index], y[index]
        if batch_sharding is not None:
            x_batch = jax.lax.with_sharding_constraint(x_batch, batch_sharding)
            y_batch = jax.lax.with_sharding_constraint(y_batch, batch_sharding)

        def loss(p):
            rngs = nnx.Rngs(
                dropout=jax.random.fold_in(step_key, 0), noise=jax.random.fold_in(step_key, 1)
            )
            return loss_fn(nnx.merge(graphdef, p), x_batch, y_batch, rngs)[0]

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    @functools.partial(jax.jit, donate_argnums=0)
    def train_chunk(state, start, x, y, key):
        if chunk == 1:
            return train_step(state, start, x, y, key)

        def body(state, offset):
            return train_step(state, start + offset, x, y, key)

        state, losses = jax.lax.scan(body, state, jnp.arange(chunk))
        return state, (jnp.nanmean(losses) if ignore_nan_losses else losses.mean())

    return train_chunk


def make_sfo_chunk(
    graphdef: nnx.GraphDef, sfo: Any, kind: str, *, batch_size: int, num_examples: int, chunk: int
) -> Callable:
    """Jitted ``((params, sfo_state), start, x, y, key) → (state, mean fᵢ)``: ``chunk`` SFO steps.

    Subfunction i is the mean loss on mini-batch i of epoch 0's permutation (the same
    mini-batches every epoch: SFO models each one), evaluated without dropout. ``start`` is
    unused (SFO picks its own mini-batches), so resuming from a checkpoint is exact.
    """
    loss_fn = _loss_fn(kind)

    @functools.partial(jax.jit, donate_argnums=0)
    def train_chunk(state, start, x, y, key):
        del start
        params, sfo_state = state
        unravel = jax.flatten_util.ravel_pytree(params)[1]
        data_key, _ = jax.random.split(key)
        permutation = jax.random.permutation(jax.random.fold_in(data_key, 0), num_examples)

        def value_and_grad(theta, index):
            batch = jax.lax.dynamic_slice_in_dim(permutation, index * batch_size, batch_size)

            def loss(theta):
                return loss_fn(nnx.merge(graphdef, unravel(theta)), x[batch], y[batch], None)[0]

            return jax.value_and_grad(loss)(theta)

        sfo_state, values = jax.lax.scan(
            lambda s, _: sfo.step(s, value_and_grad), sfo_state, None, length=chunk
        )
        return (unravel(sfo_state.theta), sfo_state), values.mean()

    return train_chunk


def make_evaluate(graphdef: nnx.GraphDef, kind: str) -> Callable:
    """Jitted ``(params, x, y, mask) → (sum of losses, number correct)`` over one padded batch."""
    loss_fn = _loss_fn(kind)

    @jax.jit
    def evaluate(params, x, y, mask):
        _, aux = loss_fn(nnx.merge(graphdef, params), x, y, None)
        if kind == "vae":
            return jnp.sum(aux * mask), jnp.zeros(())
        per_example, correct = aux
        return jnp.sum(per_example * mask), jnp.sum(correct * mask)

    return evaluate
