"""Experiment configs in smoke mode: loss goes down, outputs, determinism, resume, bad configs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flax")
from jadam.experiments import optimizers, plots, train

ROOT = Path(__file__).resolve().parents[1]
FIGURES = (
    "fig1_logreg_mnist",
    "fig1_logreg_imdb",
    "fig2_mlp",
    "fig3_cnn",
    "fig4_vae_bias_correction",
)
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
    "steps",
    "steps_per_second",
    "wall_time_s",
    "diverged",
}


def get_config(name: str, arg: str = "smoke"):
    spec = importlib.util.spec_from_file_location(f"config_{name}", ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg)
    if "progress" in config:
        config.progress = False
    return config


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Each figure's smoke variant, run once for the module."""
    base = tmp_path_factory.mktemp("smoke")
    return {
        name: (base / name, train.train_and_evaluate(get_config(name), base / name))
        for name in FIGURES
    }


@pytest.mark.parametrize("name", FIGURES)
def test_smoke_config_runs_and_loss_goes_down(smoke_runs, name):
    workdir, rows = smoke_runs[name]
    config = get_config(name)
    records = lines(workdir / "metrics.jsonl")
    assert {r["run"] for r in records} == set(config.runs)
    for run_id in config.runs:
        losses = [r["train_loss"] for r in records if r["run"] == run_id]
        assert len(losses) == -(
            -config.num_epochs * (config.num_train // config.batch_size) // config.log_every
        )
        assert losses[-1] < losses[0], (run_id, losses)
    for record in records:
        assert RECORD_KEYS <= set(record)
        if record["step"] % config.eval_every == 0:
            assert "test_loss" in record
            assert ("test_accuracy" in record) == (config.model.kind != "vae")
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary == rows and len(rows) == len(config.runs)
    for row in rows:
        assert set(row) == SUMMARY_KEYS
        assert row["final_train_loss"] >= row["best_train_loss"]
    png = workdir / f"{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stand_ins_are_labelled(smoke_runs):
    for name in ("fig1_logreg_imdb", "fig3_cnn"):
        assert all(row["data"].startswith("STAND-IN") for row in smoke_runs[name][1])
    assert not any("STAND-IN" in row["data"] for row in smoke_runs["fig2_mlp"][1])


def test_same_seed_gives_identical_metrics(smoke_runs, tmp_path):
    train.train_and_evaluate(get_config("fig2_mlp"), tmp_path)
    first = (smoke_runs["fig2_mlp"][0] / "metrics.jsonl").read_bytes()
    assert (tmp_path / "metrics.jsonl").read_bytes() == first


def test_other_seed_gives_other_metrics(smoke_runs, tmp_path):
    config = get_config("fig2_mlp")
    config.seed = 1
    train.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "metrics.jsonl").read_bytes() != (
        smoke_runs["fig2_mlp"][0] / "metrics.jsonl"
    ).read_bytes()


def test_resume_after_interruption_gives_same_metrics(smoke_runs, tmp_path, monkeypatch):
    """A crash instead of the 5th checkpoint (mid-way through the 2nd run); then a restart."""
    real_save = train._save
    calls = []

    def crashing_save(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 5:
            raise KeyboardInterrupt("simulated crash")
        real_save(*args, **kwargs)

    monkeypatch.setattr(train, "_save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(get_config("fig2_mlp"), tmp_path)
    partial = lines(tmp_path / "metrics.jsonl")
    assert 0 < len(partial) < len(lines(smoke_runs["fig2_mlp"][0] / "metrics.jsonl"))
    monkeypatch.setattr(train, "_save", real_save)

    resumed_steps = []
    real_chunk = train.make_train_chunk

    def spy(*args, **kwargs):
        chunk = real_chunk(*args, **kwargs)

        def wrapped(state, start, *rest):
            resumed_steps.append(int(start))
            return chunk(state, start, *rest)

        return wrapped

    monkeypatch.setattr(train, "make_train_chunk", spy)
    train.train_and_evaluate(get_config("fig2_mlp"), tmp_path)
    assert (tmp_path / "metrics.jsonl").read_bytes() == (
        smoke_runs["fig2_mlp"][0] / "metrics.jsonl"
    ).read_bytes()
    config = get_config("fig2_mlp")
    total = (
        -(-config.num_epochs * (config.num_train // config.batch_size) // config.log_every)
        * config.log_every
    )
    # Run 1 was finished (not retrained); run 2 restarted from its checkpoint at step 8.
    assert len(resumed_steps) * config.log_every == (len(config.runs) - 2) * total + (total - 8)


def test_workdir_of_other_config_is_refused(smoke_runs):
    config = get_config("fig1_logreg_mnist")
    config.num_epochs = 4
    with pytest.raises(ValueError, match="holds results of a different config"):
        train.train_and_evaluate(config, smoke_runs["fig1_logreg_mnist"][0])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch_size", 0, "config.batch_size: expected a positive integer, found 0"),
        (
            "batch_size",
            100_000,
            r"config.batch_size: expected at most 512 \(the training set size\), found 100000",
        ),
        ("log_every", 3, "config.checkpoint_every: expected a multiple of log_every=3, found 8"),
        ("dataset", "svhn", "config.dataset: expected 'mnist', 'imdb' or 'cifar10', found 'svhn'"),
        ("num_train", 10**7, "config.num_train: expected at most 4000"),
        ("data_dir", "/nonexistent/dir", "data_dir '/nonexistent/dir' is not a directory"),
    ],
)
def test_invalid_config_values(tmp_path, field, value, message):
    config = get_config("fig1_logreg_mnist")
    config[field] = value
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        train.train_and_evaluate(config, tmp_path)


def test_unknown_optimizer_and_hyperparameter(tmp_path):
    config = get_config("fig1_logreg_mnist")
    config.runs.adam.optimizer.name = "adamm"
    with pytest.raises(
        ValueError,
        match=r"config.runs.adam.optimizer.name: unknown optimizer 'adamm'; "
        r"expected one of \['adadelta'",
    ):
        train.train_and_evaluate(config, tmp_path)
    config = get_config("fig1_logreg_mnist")
    config.runs.adam.optimizer.hparams.b2 = 1.0
    with pytest.raises(
        ValueError, match=r"config.runs.adam.optimizer.hparams: b2 must be in \[0.0, 1.0\), got 1.0"
    ):
        train.train_and_evaluate(config, tmp_path)
    with pytest.raises(ValueError, match=r"hparams: \['momentum'\] not accepted by 'adam'"):
        optimizers.build({"name": "adam", "learning_rate": 0.1, "hparams": {"momentum": 0.9}})
    with pytest.raises(ValueError, match="learning_rate: expected a positive number, found -1"):
        optimizers.build({"name": "sgd_nesterov", "learning_rate": -1})
    with pytest.raises(ValueError, match="schedule: unknown schedule 'cosine'"):
        optimizers.build({"name": "adam", "learning_rate": 0.1, "schedule": "cosine"})


def test_unknown_figure_name(tmp_path):
    config = get_config("paper")
    config.only = "fig1_logreg_mnist,fig9"
    with pytest.raises(
        ValueError,
        match=r"config.only: expected comma-separated names from \[.*fig2_mlp.*\], "
        r"found 'fig1_logreg_mnist,fig9'",
    ):
        train.train_and_evaluate(config, tmp_path)
    with pytest.raises(ValueError, match="unknown config argument 'tiny'"):
        get_config("fig2_mlp", "tiny")


def test_no_bias_correction_is_jadams_ablation():
    spec = optimizers.OPTIMIZERS["adam"]
    assert spec.factory.__module__ == "jadam._adam"
    label = optimizers.label({"name": "adam", "hparams": {"bias_correction": False}})
    assert label == "Adam (no bias correction)"


def test_plot_from_metrics_file(smoke_runs, tmp_path):
    workdir = smoke_runs["fig4_vae_bias_correction"][0]
    records = plots.read_metrics(workdir / "metrics.jsonl")
    plots.plot_figure(get_config("fig4_vae_bias_correction"), records, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


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
