"""The tuning protocol (python -m jadam.experiments.lr_search): grid growth, outputs, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest

pytest.importorskip("flax")
from jadam.experiments import config_check, config_lib, lr_search

ROOT = Path(__file__).resolve().parents[1]


def smoke_config(name: str = "fig1_logreg_mnist") -> ml_collections.ConfigDict:
    config = config_lib.load_config_file(str(ROOT / "configs" / f"{name}.py:smoke"))
    config.progress = False
    return config


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jadam.experiments.lr_search", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


@pytest.mark.parametrize(
    ("alpha", "up", "expected"),
    [(0.03, True, 0.1), (0.1, True, 0.3), (0.1, False, 0.03), (1.0, False, 0.3), (3.0, True, 10.0)],
)
def test_grid_grows_on_the_half_decade_ladder(alpha, up, expected):
    assert lr_search.extend_alpha(alpha, up=up) == pytest.approx(expected)
    assert lr_search.extend_alpha(0.2, up=True) == pytest.approx(0.63)  # off the ladder: ×√10


def test_cli_grows_the_grid_past_an_edge_holding_the_best_alpha(tmp_path):
    # Logistic regression for one epoch at tiny α: the loss falls as α grows, so the best α sits
    # at the top of the grid, and the search must add larger α (two steps, as allowed).
    result = cli(
        "--config=configs/fig1_logreg_mnist.py:smoke",
        "--config.num_epochs=1",
        "--config.search.alphas=(1e-4,3e-4)",
        "--config.search.runs=adam",
        "--config.search.max_extensions=2",
        f"--workdir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "lr_search.json").read_text())
    (family,) = report["families"]
    (searched,) = family["searches"]
    alphas = [point["alpha"] for point in searched["grid"]]
    assert alphas == pytest.approx([1e-4, 3e-4, 1e-3, 3e-3])
    losses = [point["loss"] for point in searched["grid"]]
    assert losses == sorted(losses, reverse=True)
    assert searched["extensions"] == 2 and not searched["bracketed"]
    assert family["chosen"]["learning_rate"] == pytest.approx(3e-3)
    assert family["chosen"]["momentum"] is None
    assert report["num_epochs"] == 1  # the budget of the (overridden) figure, not another one
    assert (tmp_path / "fig1_logreg_mnist_lr_search.png").stat().st_size > 0
    table = (tmp_path / "lr_search.md").read_text()
    assert "| adam | 0.003* |" in table and table in result.stdout
    assert "lr_search fig1_logreg_mnist" in result.stderr  # the tqdm progress bar


def test_bracketed_best_stops_the_search_and_momentum_is_searched(tmp_path, monkeypatch):
    config = smoke_config()
    config.num_epochs = 1
    config.search.alphas = (1e-4, 0.3, 3000.0)
    config.search.momenta = (0.5, 0.9)
    config.search.runs = "sgd_nesterov"
    report = lr_search.search(config, tmp_path, progress=False)
    (family,) = report["families"]
    assert [s["momentum"] for s in family["searches"]] == [0.5, 0.9]
    for searched in family["searches"]:
        assert [p["alpha"] for p in searched["grid"]] == [1e-4, 0.3, 3000.0]  # no growth
        assert searched["bracketed"] and searched["best_alpha"] == 0.3
        assert searched["extensions"] == 0
    best = min(family["searches"], key=lambda s: s["best_loss"])
    assert family["chosen"] == {"learning_rate": 0.3, "momentum": best["momentum"]}
    trial = lr_search.trial_config(config, "sgd_nesterov", 0.3, 0.5)
    assert trial.runs.sgd_nesterov.optimizer.hparams.momentum == 0.5
    assert "search" not in trial and list(trial.runs) == ["sgd_nesterov"]

    def train_again(*args, **kwargs):
        raise AssertionError("a finished trial was trained again")

    monkeypatch.setattr(lr_search.train, "run_figure", train_again)
    assert lr_search.search(config, tmp_path, progress=False)["families"] == report["families"]


def test_figure4_runs_that_differ_only_in_alpha_are_one_family():
    config = smoke_config("fig4_vae_bias_correction")
    families = lr_search.families(config)
    assert len(families) == 4  # (bias correction or not) × β1 ∈ {0, 0.9}; one β2 in smoke
    assert all(len(f.run_ids) == 2 for f in families)  # α ∈ {1e-3, 1e-2}
    assert {f.name for f in families} == {
        f"{bc}_b1_{b1}_b2_0999" for bc in ("bc", "nobc") for b1 in ("00", "09")
    }


def test_run_names_pick_runs_and_optimizer_names_pick_all_their_runs():
    config = config_lib.load_config_file(str(ROOT / "configs" / "fig3_cnn.py"))
    config.search.runs = "adam,adagrad_dropout"
    assert [f.name for f in lr_search.families(config)] == ["adagrad_dropout", "adam"]
    config.search.runs = ""  # all but AdaDelta (Figure 3 has none)
    assert len(lr_search.families(config)) == 6
    fig4 = smoke_config("fig4_vae_bias_correction")
    fig4.search.runs = "adam"  # no run is named adam: the optimizer's runs
    assert len(lr_search.families(fig4)) == 4


def test_score_is_the_final_epoch_mean_and_divergence_is_infinite():
    records = [{"epoch": e, "train_loss": loss} for e, loss in ((1, 5.0), (1.5, 2.0), (2, 1.0))]
    assert lr_search.score(records, num_epochs=2) == pytest.approx(1.5)
    assert math.isinf(lr_search.score([*records, {"epoch": 2.5, "train_loss": None}], 3))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"alphas": ()},
            r"config.search.alphas: expected a non-empty tuple of learning rates α > 0 .* "
            r"found \(\)",
        ),
        ({"alphas": (0.1, 0.0)}, r"config.search.alphas: expected .*α > 0.* found \(0.1, 0.0\)"),
        ({"alphas": (-1e-3,)}, r"config.search.alphas: expected .*α > 0.* found \(-0.001,\)"),
        (
            {"runs": "adam,adamm"},
            r"config.search.runs: unknown run or optimizer 'adamm' in 'adam,adamm'; expected "
            r".*\(did you mean 'adam'\?\)",
        ),
        (
            {"momenta": (0.9, 1.0)},
            r"config.search.momenta: expected a tuple of momenta in \[0, 1\)",
        ),
        ({"max_extensions": -1}, r"config.search.max_extensions: expected an integer in \[0, 20\]"),
        ({"alpha": (0.1,)}, r"config.search.alpha: unknown key; .*did you mean 'alphas'"),
    ],
)
def test_bad_search_input_is_a_clear_error(edit, message, tmp_path):
    config = smoke_config()
    config.search.unlock().update(edit)
    with pytest.raises(config_check.ConfigError, match=message):
        lr_search.search(config, tmp_path, progress=False)
    assert not (tmp_path / "trials").exists()  # refused before anything trained


@pytest.mark.parametrize("runs", ["sfo", "adam,sfo"])
def test_searching_sfo_is_a_clear_error(runs, tmp_path):
    config = config_lib.load_config_file(str(ROOT / "configs" / "fig2b_mlp_sfo.py:smoke"))
    config.search.runs = runs
    with pytest.raises(config_check.ConfigError, match=r"'sfo' runs SFO, which has no learning"):
        lr_search.search(config, tmp_path, progress=False)


def test_config_without_search_or_paper_config_is_refused(tmp_path):
    config = smoke_config()
    del config["search"]
    with pytest.raises(config_check.ConfigError, match=r"config.search: missing"):
        lr_search.search(config, tmp_path, progress=False)
    paper = config_lib.load_config_file(str(ROOT / "configs" / "paper.py:smoke"))
    with pytest.raises(config_check.ConfigError, match=r"one figure config .*fig2_mlp"):
        lr_search.search(paper, tmp_path, progress=False)


def test_cli_bad_input_is_one_line_and_exit_status_1(tmp_path):
    result = cli(
        "--config=configs/fig2_mlp.py:smoke",
        "--config.search.runs=adamm",
        f"--workdir={tmp_path}",
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: config.search.runs: unknown run or optimizer 'adamm'")
    )
    assert not (tmp_path / "trials").exists()


def test_span_starts_each_run_near_its_own_alpha():
    config = config_lib.load_config_file(str(ROOT / "configs" / "fig2_mlp.py"))
    config.runs.adam.optimizer.learning_rate = 3e-3
    config.runs.sgd_nesterov.optimizer.learning_rate = 0.1
    grids = {f.name: lr_search.starting_grid(config, f) for f in lr_search.families(config)}
    assert grids["adam"] == pytest.approx([1e-3, 3e-3, 1e-2])
    assert grids["sgd_nesterov"] == pytest.approx([0.03, 0.1, 0.3])
    config.search.span = 0
    assert lr_search.starting_grid(config, lr_search.families(config)[0]) == list(
        config.search.alphas
    )
    config.search.span, config.search.alphas = 1, (1e-6,)
    assert lr_search.starting_grid(config, lr_search.families(config)[0]) == [1e-6]  # nearest


def test_every_figure_config_of_the_paper_has_a_search_grid():
    for name in ("fig1_logreg_mnist", "fig1_logreg_imdb", "fig2_mlp", "fig3_cnn"):
        config = config_lib.load_config_file(str(ROOT / "configs" / f"{name}.py"))
        assert len(config.search.alphas) >= 8 and config.search.span == 1
        assert config.search.momenta[0] == 0.9  # SGD's momentum is searched from 0.9 up
    fig4 = config_lib.load_config_file(str(ROOT / "configs" / "fig4_vae_bias_correction.py"))
    assert fig4.search.alphas == pytest.approx((1e-5, 1e-4, 1e-3, 1e-2, 1e-1))
