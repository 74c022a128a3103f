"""Experiment configs in smoke mode: loss goes down, outputs, determinism, resume, bad configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

pytest.importorskip("flax")
from problems import figure_config

import jadam
from jadam.experiments import checkpoints, config_check, models, optimizers, plots, train

ROOT = Path(__file__).resolve().parents[1]
FIGURES = tuple(sorted(p.stem for p in (ROOT / "configs").glob("*.py") if p.stem != "paper"))
RECORD_KEYS = {"figure", "run", "optimizer", "setting", "data", "step", "epoch", "train_loss"}
SUMMARY_KEYS = {
    "figure",
    "run",
    "optimizer",
    "setting",
    "data",
    "final_train_loss",
    "best_train_loss",
    "test_loss",
    "test_accuracy",
    "train_set_loss",
    "state_bytes_per_param",
    "steps",
    "resumed_from_step",
    "steps_per_second",
    "wall_time_s",
    "diverged",
}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def small_config(seed: int = 0):
    """Figure 2's smoke variant with two of its optimizers (dropout, so the noise keys matter)."""
    config = figure_config("fig2_mlp")
    for run_id in list(config.runs):
        if run_id not in ("adam", "sgd_nesterov"):
            del config.runs[run_id]
    config.seed = seed
    return config


@pytest.mark.parametrize("name", FIGURES)
def test_smoke_config_runs_and_loss_goes_down(name, tmp_path):
    config = figure_config(name)
    rows = train.train_and_evaluate(config, tmp_path)
    records = lines(tmp_path / "metrics.jsonl")
    assert {r["run"] for r in records} == set(config.runs)
    steps_per_epoch = config.num_train // config.batch_size
    for run_id in config.runs:
        losses = [r["train_loss"] for r in records if r["run"] == run_id]
        assert len(losses) == -(-config.num_epochs * steps_per_epoch // config.log_every)
        assert losses[-1] < losses[0], (run_id, losses)
    for record in records:
        assert RECORD_KEYS <= set(record)
        if record["step"] % config.eval_every == 0:
            assert "test_loss" in record
            assert ("test_accuracy" in record) == (config.model.kind != "vae")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == rows and len(rows) == len(config.runs)
    for row in rows:
        assert set(row) == SUMMARY_KEYS
        assert row["final_train_loss"] >= row["best_train_loss"]
        assert row["data"].startswith("STAND-IN") == (name in ("fig1_logreg_imdb", "fig3_cnn"))
    png = tmp_path / f"{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plots.plot_figure(
        config, plots.read_metrics(tmp_path / "metrics.jsonl"), tmp_path / "again.png"
    )
    assert (tmp_path / "again.png").stat().st_size > 1000


def test_same_seed_gives_identical_metrics(tmp_path):
    train.train_and_evaluate(small_config(), tmp_path / "a")
    train.train_and_evaluate(small_config(), tmp_path / "b")
    train.train_and_evaluate(small_config(seed=1), tmp_path / "c")
    first = (tmp_path / "a" / "metrics.jsonl").read_bytes()
    assert (tmp_path / "b" / "metrics.jsonl").read_bytes() == first
    assert (tmp_path / "c" / "metrics.jsonl").read_bytes() != first


def test_resume_after_interruption_gives_same_metrics(tmp_path, monkeypatch):
    """A crash instead of the 5th checkpoint (mid-way through the 2nd run); then a restart."""
    reference = train.train_and_evaluate(small_config(), tmp_path / "reference")
    real_save = checkpoints.save
    calls = []

    def crashing_save(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 5:
            raise KeyboardInterrupt("simulated crash")
        real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "save", crashing_save)
    workdir = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(small_config(), workdir)
    assert calls == [8, 16, 24, 8, 16]  # Run 1 finished; run 2 crashed saving step 16.
    partial = lines(workdir / "metrics.jsonl")
    assert len(partial) == 6 + 4  # Run 2 had logged steps 4..16 before the crash.
    monkeypatch.setattr(checkpoints, "save", real_save)

    rows = train.train_and_evaluate(small_config(), workdir)
    assert [row["resumed_from_step"] for row in rows] == [24, 8]
    reference_metrics = (tmp_path / "reference" / "metrics.jsonl").read_bytes()
    assert (workdir / "metrics.jsonl").read_bytes() == reference_metrics
    final = [(r["run"], r["final_train_loss"], r["test_loss"]) for r in rows]
    assert final == [(r["run"], r["final_train_loss"], r["test_loss"]) for r in reference]


def test_workdir_of_other_config_is_refused(tmp_path):
    config = figure_config("fig1_logreg_mnist")
    checkpoints.check_workdir(config, tmp_path)
    checkpoints.check_workdir(config, tmp_path)  # Same config: resuming is fine.
    config.num_epochs = 4
    with pytest.raises(ValueError, match="holds results of a different config"):
        checkpoints.check_workdir(config, tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "batch_size",
            0,
            r"config.batch_size: expected a positive integer below 2\*\*31, found 0",
        ),
        (
            "batch_size",
            100_000,
            r"config.batch_size: expected at most 512 \(the training set size\), found 100000",
        ),
        (
            "checkpoint_every",
            6,
            "config.checkpoint_every: expected a multiple of config.log_every=4, found 6",
        ),
        ("dataset", "svhn", "config.dataset: expected 'mnist', 'imdb' or 'cifar10', found 'svhn'"),
        ("num_train", 10**7, "config.num_train: expected at most 4000"),
        ("data_dir", "/nonexistent/dir", "data_dir '/nonexistent/dir' is not a directory"),
    ],
)
def test_invalid_config_values(tmp_path, field, value, message):
    config = figure_config("fig1_logreg_mnist")
    config[field] = value
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        train.train_and_evaluate(config, tmp_path)


def test_unknown_optimizer_and_hyperparameter(tmp_path):
    config = figure_config("fig1_logreg_mnist")
    config.runs.adam.optimizer.name = "adamm"
    with pytest.raises(
        ValueError,
        match=r"config.runs.adam.optimizer.name: expected one of \['adabelief', 'adadelta', .*\], "
        r"found 'adamm'",
    ):
        train.train_and_evaluate(config, tmp_path)
    config = figure_config("fig1_logreg_mnist")
    config.runs.adam.optimizer.hparams.b2 = 1.0
    with pytest.raises(
        ValueError,
        match=r"config.runs.adam.optimizer.hparams.b2: b2 must be in \[0.0, 1.0\), got 1.0",
    ):
        train.train_and_evaluate(config, tmp_path)
    with pytest.raises(ValueError, match=r"hparams: \['momentum'\] not accepted by 'adam'"):
        optimizers.build({"name": "adam", "learning_rate": 0.1, "hparams": {"momentum": 0.9}})
    with pytest.raises(ValueError, match="learning_rate: expected a positive number, found -1"):
        optimizers.build({"name": "sgd_nesterov", "learning_rate": -1})
    with pytest.raises(ValueError, match="schedule: unknown schedule 'cosine'"):
        optimizers.build({"name": "adam", "learning_rate": 0.1, "schedule": "cosine"})


def test_unknown_figure_name(tmp_path):
    config = figure_config("paper")
    config.only = "fig1_logreg_mnist,fig9"
    with pytest.raises(
        ValueError,
        match=r"config.only: expected comma-separated names from \[.*fig2_mlp.*\], "
        r"found 'fig1_logreg_mnist,fig9'",
    ):
        train.train_and_evaluate(config, tmp_path)
    with pytest.raises(ValueError, match="unknown config argument 'tiny'"):
        figure_config("fig2_mlp", "tiny")


def test_unknown_model_kind_is_a_clear_error():
    """The registry names the allowed kinds instead of building some other model."""
    with pytest.raises(
        ValueError,
        match=r"model.kind: expected one of \['cnn', 'logreg', 'mlp', 'vae'\], found 'rnn'",
    ):
        models.build_model({"kind": "rnn", "hidden": 8, "latent": 2}, None, 0)
    assert sorted(models.MODELS) == sorted(config_check.MODEL_KEYS)


def test_no_bias_correction_is_jadams_ablation():
    spec = optimizers.OPTIMIZERS["adam"]
    assert spec.factory.__module__ == "jadam._adam"
    label = optimizers.label({"name": "adam", "hparams": {"bias_correction": False}})
    assert label == "Adam (no bias correction)"


def test_command_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jadam.experiments",
            "--config=configs/paper.py:smoke",
            "--config.only=fig1_logreg_mnist",
            "--config.figures.fig1_logreg_mnist.num_epochs=1",
            f"--workdir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final loss" in result.stdout and "sgd_nesterov" in result.stdout
    assert {"metrics.jsonl", "summary.json", "fig1_logreg_mnist.png", "fig1_logreg_mnist"} <= {
        p.name for p in tmp_path.iterdir()
    }
    assert "loss=" in result.stderr  # the progress bar shows the current loss


def test_state_precision_config_trains_float32_bfloat16_and_8bit_state(tmp_path):
    """The smoke run of fig2_state_precision: labels, bytes per parameter, whole-set losses."""
    config = figure_config("fig2_state_precision")
    rows = {
        row["run"].removeprefix("adam_"): row
        for row in train.train_and_evaluate(config, tmp_path / "run")
    }
    assert {run: row["optimizer"] for run, row in rows.items()} == {
        "float32": "Adam",
        "bfloat16": "Adam (bfloat16 state)",
        "8bit": "Adam (8-bit state)",
    }
    bytes_per_param = {run: row["state_bytes_per_param"] for run, row in rows.items()}
    assert bytes_per_param["float32"] == pytest.approx(8.0, abs=0.01)
    assert bytes_per_param["bfloat16"] == pytest.approx(4.0, abs=0.01)
    assert 2.0 < bytes_per_param["8bit"] < 2.2  # (64, 64) MLP: its biases stay float32
    losses = {run: row["train_set_loss"] for run, row in rows.items()}
    for run in ("bfloat16", "8bit"):  # Low-precision state trains like float32 (24 steps).
        assert losses[run] == pytest.approx(losses["float32"], rel=0.05), losses
    assert rows["float32"]["train_set_loss"] < 2.3  # below chance level, ln(10)


@pytest.mark.parametrize("arg", ["", "smoke", "vae", "vae_smoke"])
def test_state_precision_config_variants_are_valid(arg):
    config = figure_config("fig2_state_precision", arg)
    config_check.check_figure_config(config)
    assert sorted(config.runs) == ["adam_8bit", "adam_bfloat16", "adam_float32"]
    size = "smoke" if arg.endswith("smoke") else ""
    reference = figure_config("fig4_vae_bias_correction" if "vae" in arg else "fig2_mlp", size)
    assert config.model == reference.model and config.num_epochs == reference.num_epochs
    assert config.runs.adam_8bit.optimizer.state_precision == "8bit"


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "8bit"])
def test_state_precision_switch_builds_jadam_state(precision):
    opt = {"name": "adam", "learning_rate": 1e-3, "state_precision": precision}
    state = optimizers.build(opt).init({"w": jnp.zeros((64, 128))})
    dtypes = {str(leaf.dtype) for leaf in jax.tree.leaves(state.inner_state)}
    expected = {"float32": "float32", "bfloat16": "bfloat16", "8bit": "uint8"}[precision]
    assert expected in dtypes


@pytest.mark.skipif(not jadam.fused_kernel_available(), reason="fused kernel not built")
def test_fused_switch_runs_jadam_kernel_and_is_checked():
    opt = {"name": "adam", "learning_rate": 1e-3, "state_precision": "8bit", "fused": True}
    assert optimizers.label(opt) == "Adam (8-bit state, fused)"
    tx, params = optimizers.build(opt), {"w": jnp.zeros((64, 128))}
    step = jax.jit(lambda g, s, p: tx.update(g, s, p))
    assert "jadam_fused_adam" in step.lower(params, tx.init(params), params).as_text()
    with pytest.raises(ValueError, match=r"optimizer.fused: 'adagrad' has no fused kernel, found "):
        optimizers.build({"name": "adagrad", "learning_rate": 0.1, "fused": True})
    with pytest.raises(ValueError, match=r"optimizer.fused: expected True or False, found 1"):
        optimizers.build({"name": "adam", "learning_rate": 0.1, "fused": 1})
    config = figure_config("fig2_mlp")
    config.runs.adam.optimizer.fused = "yes"
    with pytest.raises(ValueError, match=r"config.runs.adam.optimizer.fused: expected True or "):
        config_check.check_figure_config(config)


def test_invalid_state_precision_is_a_clear_error(tmp_path):
    config = figure_config("fig2_mlp")
    config.runs.adam.optimizer.state_precision = "int4"
    with pytest.raises(
        ValueError,
        match=r"config.runs.adam.optimizer.state_precision: expected one of "
        r"\['float32', 'bfloat16', '8bit'\], found 'int4'",
    ):
        train.train_and_evaluate(config, tmp_path)
    with pytest.raises(ValueError, match=r"unknown state precision 'fp8'; expected one of"):
        optimizers.build({"name": "adam", "learning_rate": 0.1, "state_precision": "fp8"})
    with pytest.raises(
        ValueError,
        match=r"optimizer.state_precision: 'adagrad' stores its state in float32 only, found "
        r"'8bit'; 'bfloat16' and '8bit' need one of \['adabelief', 'adam', 'adamax', ",
    ):
        optimizers.build({"name": "adagrad", "learning_rate": 0.1, "state_precision": "8bit"})
    with pytest.raises(ValueError, match="unknown config argument 'tiny'"):
        figure_config("fig2_state_precision", "tiny")


def test_plot_title_stays_inside_the_figure_for_a_long_data_path(tmp_path):
    """A 300-character data_dir in the data label is wrapped/shortened, not cut off."""
    import matplotlib.pyplot as plt

    config = figure_config("fig2b_mlp_sfo")
    label = f"mnist (idx files in {'/very/long/path' * 20}; 60000 train / 10000 test)"
    assert len(label) > 300
    records = [
        {
            "run": run_id,
            "optimizer": optimizers.label(config.runs[run_id].optimizer),
            "data": label,
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_set_loss": 1.0 / e,
            "train_time_s": float(e),
        }
        for run_id in config.runs
        for e in (1, 2)
    ]
    for kind in ("curves", "curves_time"):
        config.plot.kind = kind
        captured: dict = {}
        original = plt.Figure.savefig

        def savefig(fig, *args, captured=captured, original=original, **kwargs):
            fig.canvas.draw()
            captured["box"] = fig._suptitle.get_window_extent()
            captured["size"] = (fig.bbox.width, fig.bbox.height)
            return original(fig, *args, **kwargs)

        plt.Figure.savefig = savefig
        try:
            plots.plot_figure(config, records, tmp_path / f"{kind}.png")
        finally:
            plt.Figure.savefig = original
        box, (width, height) = captured["box"], captured["size"]
        assert 0 <= box.x0 and box.x1 <= width and 0 <= box.y0 and box.y1 <= height, (box, kind)
