"""Training loop for the paper's experiments: ``train_and_evaluate(config, workdir)``.

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
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.flatten_util
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

import jadam
from jadam.experiments import data as data_lib
from jadam.experiments import models, optimizers, plots
from jadam.experiments.config_check import ConfigError, check_config, check_figure_config


# ----------------------------------------------------------------------------- data and models
def _prepare_data(config: ml_collections.ConfigDict) -> data_lib.Dataset:
    dataset = data_lib.load_dataset(
        config.dataset, config.get("data_dir") or None, seed=config.seed
    )
    if config.num_train:
        if config.num_train > len(dataset.train_y):
            raise ConfigError(
                f"config.num_train: expected at most {len(dataset.train_y)} (the training set "
                f"size), found {config.num_train}"
            )
        dataset = _subset(dataset, config.num_train, config.get("num_test", 0))
    if config.batch_size > len(dataset.train_y):
        raise ConfigError(
            f"config.batch_size: expected at most {len(dataset.train_y)} (the training set "
            f"size), found {config.batch_size}"
        )
    return dataset


def _subset(dataset: data_lib.Dataset, num_train: int, num_test: int) -> data_lib.Dataset:
    import dataclasses

    num_test = num_test or len(dataset.test_y)
    return dataclasses.replace(
        dataset,
        train_x=dataset.train_x[:num_train],
        train_y=dataset.train_y[:num_train],
        test_x=dataset.test_x[:num_test],
        test_y=dataset.test_y[:num_test],
    )


def build_model(
    model_config: Mapping[str, Any], dataset: data_lib.Dataset, seed: int
) -> nnx.Module:
    """The model named by ``model_config.kind``, sized for ``dataset``, initialised by ``seed``."""
    rngs = nnx.Rngs(params=seed)
    in_features = int(np.prod(dataset.train_x.shape[1:]))
    kind = model_config["kind"]
    if kind == "logreg":
        return models.LogisticRegression(
            in_features, dataset.num_classes, input_dropout=model_config["input_dropout"], rngs=rngs
        )
    if kind == "mlp":
        return models.MLP(
            in_features,
            tuple(model_config["hidden"]),
            dataset.num_classes,
            input_dropout=model_config["input_dropout"],
            hidden_dropout=model_config["hidden_dropout"],
            rngs=rngs,
        )
    if kind == "cnn":
        return models.CNN(
            dataset.train_x.shape[-1],
            tuple(model_config["channels"]),
            model_config["hidden"],
            dataset.num_classes,
            input_dropout=model_config["input_dropout"],
            hidden_dropout=model_config["hidden_dropout"],
            image_size=dataset.train_x.shape[1],
            rngs=rngs,
        )
    return models.VAE(in_features, model_config["hidden"], model_config["latent"], rngs=rngs)


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


# ----------------------------------------------------------------------------- compiled steps
# Jitted functions by (graphdef, optimizer signature, model kind, batch, examples, steps per call):
# runs that differ only in injected hyperparameters (Figure 4's grid) share one compilation.
_COMPILED: dict[tuple, tuple[Callable, Callable]] = {}


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


def _optax_run(config, opt, graphdef, params, shape, where) -> tuple[Any, Callable, Callable]:
    """(state, train_chunk, evaluate) for a jadam optimizer (an optax transformation);
    ``shape`` is (number of training examples, steps per call, batch sharding)."""
    num_examples, steps_per_call, batch_sharding = shape
    bad_limit = config.get("max_consecutive_bad_steps", 0)
    tx = optimizers.build(opt, where=where)
    if bad_limit:
        tx = jadam.skip_nonfinite(tx)
    cache_key = (
        graphdef,
        optimizers.signature(opt),
        bool(bad_limit),  # skip_nonfinite wraps the optimizer state
        config.model.kind,
        config.batch_size,
        num_examples,
        steps_per_call,
        batch_sharding,
    )
    if cache_key not in _COMPILED:
        _COMPILED[cache_key] = (
            make_train_chunk(
                graphdef,
                tx,
                config.model.kind,
                batch_size=config.batch_size,
                num_examples=num_examples,
                chunk=steps_per_call,
                batch_sharding=batch_sharding,
                ignore_nan_losses=bool(bad_limit),
            ),
            make_evaluate(graphdef, config.model.kind),
        )
    return ((params, tx.init(params)), *_COMPILED[cache_key])


def _sfo_run(config, opt, model_config, graphdef, params, num_examples, where):
    """(state, train_chunk, evaluate) for SFO: one subfunction per mini-batch of a fixed
    partition of the training set, so the model must be deterministic (no dropout)."""
    noisy = [k for k in ("input_dropout", "hidden_dropout") if model_config.get(k, 0)]
    if noisy or config.model.kind == "vae":
        raise ConfigError(
            f"{where}.name: 'sfo' needs a deterministic cost (the same fᵢ at every "
            f"evaluation), found {config.model.kind!r} with {noisy or 'a sampled latent'}; "
            "set the dropout rates to 0 for this run"
        )
    sfo = optimizers.build_sfo(opt, num_examples // config.batch_size, where=where)
    steps_per_call = config.get("steps_per_call", 0) or config.log_every
    cache_key = ("sfo", graphdef, sfo, config.model.kind, config.batch_size, num_examples)
    if cache_key not in _COMPILED:
        _COMPILED[cache_key] = (
            make_sfo_chunk(
                graphdef,
                sfo,
                config.model.kind,
                batch_size=config.batch_size,
                num_examples=num_examples,
                chunk=steps_per_call,
            ),
            make_evaluate(graphdef, config.model.kind),
        )
    return ((params, sfo.init(params)), *_COMPILED[cache_key])


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


# ----------------------------------------------------------------------------- checkpoints
def _save(manager: ocp.CheckpointManager, step: int, state: Any, log: dict) -> None:
    """Saves the train state and the run's log so far (blocking, so a crash right after is safe)."""
    manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), log=ocp.args.JsonSave(log)),
        force=True,
    )
    manager.wait_until_finished()


def _restore(manager: ocp.CheckpointManager, state: Any) -> tuple[Any, dict] | None:
    step = manager.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), log=ocp.args.JsonRestore()
        ),
    )
    return restored.state, dict(restored.log)


def _write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to a temporary file and renames it: a kill leaves the old or new file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _config_fingerprint(config: ml_collections.ConfigDict) -> str:
    return hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()[:16]


def _check_workdir(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Refuses to resume in a workdir written by a different config (the results would mix)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stamp = workdir / "config.json"
    fingerprint = _config_fingerprint(config)
    if stamp.exists():
        previous = json.loads(stamp.read_text()).get("fingerprint")
        if previous != fingerprint:
            raise ConfigError(
                f"workdir {str(workdir)!r} holds results of a different config "
                f"(fingerprint {previous}, "
                f"this config {fingerprint}); use a new --workdir or delete the old one"
            )
    else:
        _write_atomic(
            stamp,
            json.dumps(
                {"fingerprint": fingerprint, "config": json.loads(config.to_json())}, indent=1
            ),
        )


# ----------------------------------------------------------------------------- one figure
def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def run_figure(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> list[dict]:
    """Trains every run of one figure config; writes metrics.jsonl, summary.json and the PNG.

    Returns:
      The summary rows, one per run.
    """
    check_figure_config(config)
    workdir = Path(workdir)
    _check_workdir(config, workdir)
    dataset = _prepare_data(config)
    kind = config.model.kind
    x_train, y_train = jnp.asarray(dataset.train_x), jnp.asarray(dataset.train_y)
    batch_sharding = replicated = None
    if config.get("mesh", ""):  # Data parallel: batches split, parameters and state replicated.
        mesh = jax.make_mesh(
            (jax.local_device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,)
        )
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        x_train, y_train = jax.device_put((x_train, y_train), replicated)
    bad_limit = config.get("max_consecutive_bad_steps", 0)
    eval_batch = min(config.get("eval_batch_size", 1000), len(dataset.test_y))
    test_batches = _eval_batches(dataset.test_x, dataset.test_y, eval_batch)
    train_batches = (
        _eval_batches(dataset.train_x, dataset.train_y, eval_batch)
        if config.get("eval_train_set", False)
        else None
    )

    steps_per_epoch = len(dataset.train_y) // config.batch_size
    steps_per_call = config.get("steps_per_call", 0) or config.log_every
    num_steps = -(-config.num_epochs * steps_per_epoch // config.log_every) * config.log_every
    if num_steps + config.log_every >= 2**31:  # Step numbers are int32 on the device.
        most = (2**31 - 2 * config.log_every) // steps_per_epoch
        raise ConfigError(
            f"config.num_epochs: expected at most {most} epochs of {steps_per_epoch} steps "
            f"(step numbers are int32), found {config.num_epochs}"
        )
    key = jax.random.key(config.seed)
    metrics_path = workdir / "metrics.jsonl"
    metrics_path.write_text(
        ""
    )  # Rewritten from the restored logs below, so a resume repeats nothing.
    summary = []
    run_ids = list(config.runs)
    timed = config.plot.kind == "curves_time"
    progress = tqdm(
        total=num_steps * len(run_ids),
        desc=config.figure,
        disable=not config.get("progress", True),
        dynamic_ncols=True,
        leave=True,
    )

    for run_id in run_ids:
        run = config.runs[run_id]
        model_config = {
            **config.model.to_dict(),
            **run.get("model", ml_collections.ConfigDict()).to_dict(),
        }
        model = build_model(model_config, dataset, config.seed)
        graphdef, params = nnx.split(model)
        where = f"config.runs.{run_id}.optimizer"
        if optimizers.is_sfo(run.optimizer):
            if bad_limit or batch_sharding is not None:
                raise ConfigError(
                    f"{where}.name: 'sfo' runs on one device and skips non-finite evaluations "
                    "itself; set config.mesh='' and config.max_consecutive_bad_steps=0"
                )
            state, train_chunk, evaluate = _sfo_run(
                config, run.optimizer, model_config, graphdef, params, len(dataset.train_y), where
            )
        else:
            state, train_chunk, evaluate = _optax_run(
                config,
                run.optimizer,
                graphdef,
                params,
                (len(dataset.train_y), steps_per_call, batch_sharding),
                where,
            )
        state_bytes = jadam.state_nbytes(state[1]) / sum(p.size for p in jax.tree.leaves(params))
        base = {
            "figure": config.figure,
            "run": run_id,
            "optimizer": optimizers.label(run.optimizer),
            "setting": run.get("setting", ""),
            "data": dataset.label,
            "state_bytes_per_param": round(state_bytes, 4),
        }

        done_path = workdir / "runs" / f"{run_id}.json"
        manager = ocp.CheckpointManager(
            (workdir / "checkpoints" / run_id).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
        )
        log = {"records": [], "wall_time_s": 0.0, "diverged": False, "step": 0}
        if done_path.exists():
            log = json.loads(done_path.read_text())
        else:
            restored = _restore(manager, state)
            if restored is not None:
                state, log = restored
        if replicated is not None:
            state = jax.device_put(state, replicated)
        with metrics_path.open("a") as out:
            out.writelines(json.dumps(r) + "\n" for r in log["records"])
        progress.update(log["step"] if not log.get("finished") else num_steps)

        if timed and not log.get("finished"):  # Compile first: timed steps exclude compilation.
            train_chunk = train_chunk.lower(
                state, jnp.asarray(log["step"], jnp.int32), x_train, y_train, key
            ).compile()
        start_time = time.perf_counter()
        resumed_from = log["step"]
        while not log.get("finished"):
            step = log["step"]
            if step >= num_steps or log["diverged"]:
                log["finished"] = True
                log["wall_time_s"] += time.perf_counter() - start_time
                start_time = time.perf_counter()
                _save(manager, step, state, log)
                break
            losses = []
            chunk_start = time.perf_counter()
            for offset in range(0, config.log_every, steps_per_call):
                state, loss = train_chunk(
                    state, jnp.asarray(step + offset, jnp.int32), x_train, y_train, key
                )
                losses.append(loss)
                if bad_limit:
                    _stop_if_stuck(state[1], bad_limit, run_id, step + offset + steps_per_call)
            loss = (
                float(np.mean(np.asarray(losses, np.float64)))
                if len(losses) > 1
                else float(losses[0])
            )
            if bad_limit and not math.isfinite(loss):  # Leave out the skipped chunks.
                finite = [float(v) for v in losses if math.isfinite(float(v))]
                loss = float(np.mean(finite)) if finite else loss
            step += config.log_every
            record = {
                **base,
                "step": step,
                "epoch": round(step / steps_per_epoch, 6),
                "train_loss": _finite(loss),
            }
            if timed:  # Seconds spent in training steps so far (no compilation, no evaluation).
                log["train_time_s"] = log.get("train_time_s", 0.0) + (
                    time.perf_counter() - chunk_start
                )
                record["train_time_s"] = round(log["train_time_s"], 4)
            if step % config.eval_every == 0 or step >= num_steps:
                totals = [evaluate(state[0], bx, by, bm) for bx, by, bm in test_batches]
                record["test_loss"] = _finite(
                    sum(float(t[0]) for t in totals) / len(dataset.test_y)
                )
                if kind != "vae":
                    record["test_accuracy"] = round(
                        sum(float(t[1]) for t in totals) / len(dataset.test_y), 6
                    )
                if train_batches is not None:
                    totals = [evaluate(state[0], bx, by, bm) for bx, by, bm in train_batches]
                    record["train_set_loss"] = _finite(
                        sum(float(t[0]) for t in totals) / len(dataset.train_y)
                    )
            log["records"].append(record)
            log["step"] = step
            # With skip_nonfinite (bad_limit > 0) a NaN chunk was skipped, not trained on.
            log["diverged"] = record["train_loss"] is None and not bad_limit
            with metrics_path.open("a") as out:
                out.write(json.dumps(record) + "\n")
            progress.update(config.log_every)
            progress.set_postfix_str(f"{run_id} loss={loss:.4g}")
            if step % config.checkpoint_every == 0 and step < num_steps and not log["diverged"]:
                log["wall_time_s"] += time.perf_counter() - start_time
                start_time = time.perf_counter()
                _save(manager, step, state, log)
        manager.close()
        if not done_path.exists():  # Written last, atomically: the run's log, marking it complete.
            done_path.parent.mkdir(exist_ok=True)
            _write_atomic(done_path, json.dumps(log))
        summary.append(_summarise(base, log, resumed_from))
    progress.close()

    _write_atomic(workdir / "summary.json", json.dumps(summary, indent=1))
    plots.plot_figure(
        config,
        [r for row in summary for r in _records(workdir / "runs" / f"{row['run']}.json")],
        workdir / f"{config.figure}.png",
    )
    return summary


def _eval_batches(x: np.ndarray, y: np.ndarray, size: int) -> list[tuple[jax.Array, ...]]:
    """(x, y, mask) batches of ``size`` examples; the last is zero-padded and masked."""
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


def _records(path: Path) -> list[dict]:
    return json.loads(path.read_text())["records"]


def _summarise(base: dict, log: dict, resumed_from: int) -> dict:
    losses = [r["train_loss"] for r in log["records"] if r["train_loss"] is not None]
    last = log["records"][-1] if log["records"] else {}
    wall = log["wall_time_s"]
    return {
        **base,
        "final_train_loss": last.get("train_loss"),
        "best_train_loss": min(losses) if losses else None,
        "test_loss": last.get("test_loss"),
        "test_accuracy": last.get("test_accuracy"),
        "train_set_loss": last.get("train_set_loss"),
        "steps": log["step"],
        "resumed_from_step": resumed_from,
        "diverged": log["diverged"],
        "wall_time_s": round(wall, 3),
        "steps_per_second": round(log["step"] / wall, 2) if wall > 0 else None,
    }


def format_summary(rows: list[dict]) -> str:
    """A plain-text table of summary rows (figure, run, final/best train loss, test metric)."""
    header = (
        f"{'figure':<26} {'run':<30} {'final loss':>11} {'best loss':>10} {'test acc':>8} "
        f"{'steps':>6} {'steps/s':>8}"
    )
    lines = [header, "-" * len(header)]

    def fmt(value, spec):
        return "—" if value is None else format(value, spec)

    for r in rows:
        lines.append(
            f"{r['figure']:<26} {r['run']:<30} {fmt(r['final_train_loss'], '11.4f')} "
            f"{fmt(r['best_train_loss'], '10.4f')} {fmt(r['test_accuracy'], '8.3f')} "
            f"{r['steps']:>6} {fmt(r['steps_per_second'], '8.1f')}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point
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
        selected = [n.strip() for n in config.only.split(",") if n.strip()]
        names = selected or list(config.figures)
        rows = []
        workdir.mkdir(parents=True, exist_ok=True)
        with (workdir / "metrics.jsonl").open("w") as combined:
            for name in names:
                rows += run_figure(config.figures[name], workdir / name)
                combined.write((workdir / name / "metrics.jsonl").read_text())
                shutil.copy(
                    workdir / name / f"{config.figures[name].figure}.png",
                    workdir / f"{config.figures[name].figure}.png",
                )
        _write_atomic(workdir / "summary.json", json.dumps(rows, indent=1))
    print(format_summary(rows), flush=True)
    return rows
