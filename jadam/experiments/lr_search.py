"""The paper's tuning protocol: each optimizer's α from a grid that brackets the best setting.

Section 6 of the paper: "The hyper-parameters, such as learning rate and momentum, are searched
over a dense grid and the results are reported using the best hyper-parameter setting."
``python -m jadam.experiments.lr_search --config=configs/fig2_mlp.py --workdir=runs/lr/fig2``
does this for one figure config, driven by its ``search`` group:

* ``search.alphas``: the starting grid of α. Each searched run is trained at every α for the
  figure's own ``num_epochs`` (the budget the figure plots), on the config's data, with the
  runner's training code (:func:`jadam.experiments.train.run_figure`).
* The score of a setting is the mean training loss over the final epoch (the end of the plotted
  curve, averaged over one epoch against mini-batch noise); a diverged run scores +∞.
* ``search.span``: with ``span > 0`` each run starts from the grid points within ``span``
  half-decades (factors of √10) of the α the config gives it, so that a dense grid costs a
  few trials per run; ``0`` starts every run from the whole grid.
* When the best α sits at an edge of the grid, the grid grows by one half-decade step in that
  direction (the 1-3-10 ladder: 0.03 → 0.1 → 0.3) and the search goes on, at most
  ``search.max_extensions`` times per run; ``bracketed`` in the results says whether the best α
  ended with a worse neighbour on both sides.
* ``search.momenta``: for optimizers with a momentum (SGD with Nesterov momentum) the α search
  is repeated at each momentum and the best pair wins; ``()`` keeps the config's momentum.
* ``search.runs``: comma-separated run names (``adam``: that run) or optimizer names
  (``adagrad`` where no run has that name: all of its runs) to search; ``""`` searches
  every run except AdaDelta, whose α is the fixed scale 1 of Zeiler (2012), and SFO, which has
  no α (naming an SFO run is an error). Runs that differ
  only in α (Figure 4's grid) are searched once, as one family.

Writes ``lr_search.json`` (every trial and the chosen values), ``lr_search.md`` (the same as
markdown tables) and ``<figure>_lr_search.png`` (score against α, log-x) in the workdir; each
trial's own run directory sits under ``trials/`` so that an interrupted search resumes. Bad
input (an empty grid, α ≤ 0, an unknown run or optimizer name) ends the program with a one-line
``error: ...`` and exit status 1, before anything trains.

Example:
  >>> extend_alpha(0.03, up=True), extend_alpha(1e-3, up=False), extend_alpha(0.2, up=True)
  (0.1, 0.0003, 0.63)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import ml_collections

from jadam.experiments import config_check, data, optimizers, train
from jadam.experiments.config_check import ConfigError

MOMENTUM = "momentum"  # The hyperparameter searched with α where the optimizer has it.


@dataclasses.dataclass
class Family:
    """Runs of a figure config that differ only in α: searched once, chosen α for all."""

    name: str
    run_ids: list[str]
    label: str
    setting: str


def extend_alpha(alpha: float, *, up: bool) -> float:
    """The next α past a grid edge: a half-decade step on the 1-3-10 ladder.

    α on the ladder (1·10^k or 3·10^k) steps to its neighbour (0.03 → 0.1 → 0.3); any other α
    is multiplied (divided) by √10 and rounded to two significant digits.
    """
    exponent = math.floor(math.log10(alpha))
    mantissa = alpha / 10.0**exponent
    if math.isclose(mantissa, 1.0, rel_tol=1e-6) or math.isclose(mantissa, 10.0, rel_tol=1e-6):
        mantissa, exponent = (1.0, exponent) if mantissa < 5 else (1.0, exponent + 1)
        stepped = 3.0 * 10.0**exponent if up else 0.3 * 10.0**exponent
    elif math.isclose(mantissa, 3.0, rel_tol=1e-6):
        stepped = 10.0 ** (exponent + 1) if up else 10.0**exponent
    else:
        stepped = alpha * 10.0**0.5 if up else alpha / 10.0**0.5
    return float(f"{stepped:.2g}")


# ----------------------------------------------------------------------------- what to search
def families(config: ml_collections.ConfigDict) -> list[Family]:
    """The run families selected by ``config.search.runs`` (checked by config_check)."""
    grouped: dict[str, list[str]] = {}
    for run_id in config.runs:
        run = config.runs[run_id].to_dict()
        run["optimizer"].pop("learning_rate")
        grouped.setdefault(json.dumps(run, sort_keys=True), []).append(run_id)
    wanted = [name.strip() for name in config.search.runs.split(",") if name.strip()]
    # A run name picks that run; any other name is an optimizer's and picks all its runs.
    by_optimizer = {name for name in wanted if name not in config.runs}
    selected = []
    for run_ids in grouped.values():
        optimizer = config.runs[run_ids[0]].optimizer
        if wanted:
            if not (set(run_ids) & set(wanted) or optimizer.name in by_optimizer):
                continue
        elif optimizer.name in ("adadelta", "sfo"):  # Fixed scale 1; SFO: no α to search.
            continue
        selected.append(
            Family(
                _family_name(run_ids),
                run_ids,
                optimizers.label(optimizer),
                config.runs[run_ids[0]].get("setting", ""),
            )
        )
    return selected


def _family_name(run_ids: Sequence[str]) -> str:
    if len(run_ids) == 1:
        return run_ids[0]
    prefix = run_ids[0]
    for run_id in run_ids[1:]:
        while not run_id.startswith(prefix):
            prefix = prefix[:-1]
    for suffix in ("_lr_m", "_lr_", "_lr", "_"):
        prefix = prefix.removesuffix(suffix)
    return prefix or run_ids[0]


def momenta(config: ml_collections.ConfigDict, family: Family) -> list[float | None]:
    """The momenta to search with α for this family ([None]: the config's own, not searched)."""
    spec = optimizers.OPTIMIZERS[config.runs[family.run_ids[0]].optimizer.name]
    if MOMENTUM in spec.numeric and len(config.search.momenta):
        return [float(m) for m in config.search.momenta]
    return [None]


def starting_grid(config: ml_collections.ConfigDict, family: Family) -> list[float]:
    """``search.alphas``, or with ``search.span`` its points near the family's configured α.

    The window is ``span`` half-decades each side of the α of the family's first run; when no
    grid point falls inside, the grid point nearest to that α (on a log scale) is the start.
    """
    alphas = sorted(float(a) for a in config.search.alphas)
    span = config.search.get("span", 0)
    if not span:
        return alphas
    own = math.log10(config.runs[family.run_ids[0]].optimizer.learning_rate)
    near = [a for a in alphas if abs(math.log10(a) - own) <= span / 2 + 0.03]  # 3 ≈ √10
    return near or [min(alphas, key=lambda a: abs(math.log10(a) - own))]


# ----------------------------------------------------------------------------- one trial
def trial_config(
    config: ml_collections.ConfigDict, run_id: str, alpha: float, momentum: float | None
) -> ml_collections.ConfigDict:
    """The figure config reduced to one run at (α, momentum), with no checkpoints or plots."""
    trial = ml_collections.ConfigDict(config.to_dict())  # Unlocked, a copy.
    del trial["search"]
    for other in list(trial.runs):
        if other != run_id:
            del trial.runs[other]
    optimizer = trial.runs[run_id].optimizer
    optimizer.learning_rate = float(alpha)
    if momentum is not None:
        hparams = optimizer.get("hparams", ml_collections.ConfigDict()).to_dict()
        optimizer.hparams = {**hparams, MOMENTUM: float(momentum)}
    trial.progress = False
    trial.eval_train_set = False
    rare = trial.log_every * max(1, (2**31 - 1) // trial.log_every // 2)
    trial.eval_every = trial.checkpoint_every = rare  # Only the final evaluation and save.
    trial.plot = ml_collections.ConfigDict(
        {"kind": "curves", "title": "", "ylabel": "", "yscale": "linear", "dpi": 10}
    )
    return trial


def score(records: Sequence[dict], num_epochs: int) -> float:
    """Mean training loss over the final epoch; +∞ for a diverged run."""
    if not records or any(r["train_loss"] is None for r in records):
        return math.inf
    last_epoch = [r["train_loss"] for r in records if r["epoch"] > num_epochs - 1 + 1e-9]
    losses = last_epoch or [records[-1]["train_loss"]]
    return float(sum(losses) / len(losses))


def run_trial(
    config: ml_collections.ConfigDict,
    run_id: str,
    alpha: float,
    momentum: float | None,
    workdir: Path,
) -> float:
    """Trains one run at (α, momentum) in its own directory (resumable); returns its score."""
    name = run_id if momentum is None else f"{run_id}_momentum_{momentum:g}"
    directory = workdir / "trials" / name / f"alpha_{alpha:g}"
    trial = trial_config(config, run_id, alpha, momentum)
    done = directory / "runs" / f"{run_id}.json"
    if not (done.exists() and _same_config(directory, trial)):  # Else: trained before.
        train.run_figure(trial, directory)
    log = json.loads(done.read_text())
    return score(log["records"], config.num_epochs)


def _same_config(directory: Path, trial: ml_collections.ConfigDict) -> bool:
    """Whether ``directory`` holds a finished run of exactly this trial config."""
    stamp = directory / "config.json"
    if not stamp.exists():
        return False
    return json.loads(stamp.read_text())["config"] == json.loads(trial.to_json())


# ----------------------------------------------------------------------------- the search
def search_family(
    config: ml_collections.ConfigDict,
    family: Family,
    momentum: float | None,
    workdir: Path,
    progress,
) -> dict:
    """Searches α for one family at one momentum, growing the grid past a best edge."""
    grid = {a: None for a in starting_grid(config, family)}
    extensions = 0
    while True:
        for alpha in sorted(grid):
            if grid[alpha] is None:
                grid[alpha] = run_trial(config, family.run_ids[0], alpha, momentum, workdir)
                progress.update(1)
                progress.set_postfix_str(f"{family.name} α={alpha:g} loss={grid[alpha]:.4g}")
        alphas = sorted(grid)
        best = min(alphas, key=lambda a: (grid[a], a))
        # All diverged: smaller steps. Best at an edge: one more step past it.
        if math.isinf(grid[best]):
            direction = False
        elif len(alphas) == 1:
            direction = None  # Both sides below.
        elif best == alphas[0] or best == alphas[-1]:
            direction = best == alphas[-1]
        else:
            break
        if extensions >= config.search.max_extensions:
            break
        extensions += 1
        sides = (False, True) if direction is None else (direction,)
        for up in sides:
            grid[extend_alpha(alphas[-1] if up else alphas[0], up=up)] = None
            progress.total += 1
        progress.refresh()
    alphas = sorted(grid)
    return {
        "momentum": momentum,
        "grid": [{"alpha": a, "loss": None if math.isinf(grid[a]) else grid[a]} for a in alphas],
        "best_alpha": best,
        "best_loss": None if math.isinf(grid[best]) else grid[best],
        "bracketed": alphas[0] < best < alphas[-1] and not math.isinf(grid[best]),
        "extensions": extensions,
    }


def search(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, progress: bool = True
) -> dict:
    """Runs the search of one figure config; writes and returns the results.

    Raises:
      ConfigError: the config is not a figure config with a valid ``search`` group.
    """
    from tqdm.auto import tqdm

    check_search_config(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    selected = families(config)
    if not selected:
        raise ConfigError(
            f"config.search.runs: expected at least one run to search, found none in "
            f"{sorted(config.runs)} (AdaDelta is searched only when named)"
        )
    total = sum(len(momenta(config, f)) * len(starting_grid(config, f)) for f in selected)
    data_label = data.load_dataset(config.dataset, config.get("data_dir") or None).label
    bar = tqdm(total=total, desc=f"lr_search {config.figure}", disable=not progress)
    results = []
    for family in selected:
        searches = [search_family(config, family, m, workdir, bar) for m in momenta(config, family)]
        best = min(searches, key=lambda s: math.inf if s["best_loss"] is None else s["best_loss"])
        results.append(
            {
                "family": family.name,
                "runs": family.run_ids,
                "optimizer": family.label,
                "setting": family.setting,
                "chosen": {"learning_rate": best["best_alpha"], MOMENTUM: best["momentum"]},
                "searches": searches,
            }
        )
        report = {
            "figure": config.figure,
            "num_epochs": config.num_epochs,
            "data": data_label,
            "score": "mean training loss over the final epoch (diverged: none)",
            "complete": len(results) == len(selected),
            "families": results,
        }
        _write(report, workdir)  # After each family, so a long search shows its progress.
    bar.close()
    return report


def _write(report: dict, workdir: Path) -> None:
    (workdir / "lr_search.json").write_text(json.dumps(report, indent=1))
    (workdir / "lr_search.md").write_text(markdown(report))
    plot(report, workdir / f"{report['figure']}_lr_search.png")


def check_search_config(config: ml_collections.ConfigDict) -> None:
    """A figure config (not configs/paper.py) that passes config_check and has ``search``."""
    if isinstance(config, ml_collections.ConfigDict) and "figures" in config:
        raise ConfigError(
            "config: expected one figure config (configs/fig*.py), found a paper config with "
            f"figures {sorted(config.figures)}; search one figure at a time, e.g. "
            "--config=configs/fig2_mlp.py"
        )
    config_check.check_config(config)
    if "search" not in config:
        raise ConfigError(
            f"config.search: missing; {config.figure} has no search grid (add a search group: "
            "alphas, momenta, runs, max_extensions, span)"
        )


# ----------------------------------------------------------------------------- outputs
def _alpha(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


def markdown(report: dict) -> str:
    """The chosen values and the full grid as markdown tables (one row per searched setting)."""
    heading = (
        f"Search of {report['figure']}: {report['num_epochs']} epochs on {report['data']}; "
        f"score: {report['score']}. Bold: best per row; — not tried; div.: diverged; "
        "* after α: best at the grid's edge (not bracketed)."
        + ("" if report.get("complete", True) else " PARTIAL: the search is still running.")
    )
    return heading + "\n\n" + tables(report)


def tables(report: dict) -> str:
    """The chosen values, then every score (rows: searched settings; columns: α)."""
    lines = [
        "| run | chosen α | momentum | loss |",
        "|---|---|---|---|",
    ]
    for family in report["families"]:
        chosen = family["chosen"]
        best = min(
            (s["best_loss"] for s in family["searches"] if s["best_loss"] is not None),
            default=None,
        )
        momentum = "—" if chosen[MOMENTUM] is None else f"{chosen[MOMENTUM]:g}"
        edge = "" if all(s["bracketed"] for s in family["searches"]) else "*"
        loss = "div." if best is None else f"{best:.4g}"
        lines.append(
            f"| {family['family']} | {chosen['learning_rate']:g}{edge} | {momentum} | {loss} |"
        )
    alphas = sorted(
        {p["alpha"] for f in report["families"] for s in f["searches"] for p in s["grid"]}
    )
    lines += ["", "| run / α | " + " | ".join(_alpha(a) for a in alphas) + " |"]
    lines.append("|---" * (len(alphas) + 1) + "|")
    for family in report["families"]:
        for search_result in family["searches"]:
            name = family["family"]
            if search_result["momentum"] is not None:
                name += f" m={search_result['momentum']:g}"
            losses = {p["alpha"]: p["loss"] for p in search_result["grid"]}
            cells = []
            for alpha in alphas:
                if alpha not in losses:
                    cells.append("—")
                elif losses[alpha] is None:
                    cells.append("div.")
                elif alpha == search_result["best_alpha"]:
                    cells.append(f"**{losses[alpha]:.3g}**")
                else:
                    cells.append(f"{losses[alpha]:.3g}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str | os.PathLike) -> None:
    """Score against α (log-x, log-y), one line per searched setting, the best circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for family in report["families"]:
        for result in family["searches"]:
            label = family["family"]
            if result["momentum"] is not None:
                label += f" (momentum {result['momentum']:g})"
            points = [(p["alpha"], p["loss"]) for p in result["grid"] if p["loss"] is not None]
            if not points:
                continue
            (line,) = ax.plot(*zip(*points, strict=True), marker=".", label=label)
            if result["best_loss"] is not None:
                ax.plot(
                    result["best_alpha"],
                    result["best_loss"],
                    "o",
                    markerfacecolor="none",
                    markersize=10,
                    color=line.get_color(),
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("α (learning rate)")
    ax.set_ylabel("training loss, final epoch")
    ax.set_title(
        f"{report['figure']}: {report['num_epochs']} epochs (circled: chosen)", fontsize=10
    )
    ax.legend(fontsize=6, ncol=2 if len(report["families"]) > 6 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------- command line
def _main(argv: list[str]) -> None:
    from absl import app, flags, logging

    del flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint at INFO level.
    config = _FLAGS["config"].value
    if not isinstance(config, ml_collections.ConfigDict):  # The file did not load.
        try:
            config.keys()
        except OSError as error:
            _exit(f"--config: {error}")
    try:
        report = search(config, _FLAGS["workdir"].value)
    except (ConfigError, FileNotFoundError, data.DataFormatError) as error:
        _exit(error)
    print(markdown(report), flush=True)


def _exit(message: object) -> None:
    sys.exit("error: " + " ".join(str(message).split()))  # One line on stderr, exit status 1.


_FLAGS: dict = {}


def _define_flags() -> None:
    """The flags of ``python -m jadam.experiments.lr_search`` (defined only when run)."""
    from absl import flags
    from ml_collections import config_flags

    _FLAGS["config"] = config_flags.DEFINE_config_file(
        "config",
        None,
        "Figure config file with a search group (configs/fig*.py[:arg]).",
        lock_config=True,
    )
    _FLAGS["workdir"] = flags.DEFINE_string(
        "workdir", None, "Directory for the trials, lr_search.json/.md and the plot."
    )
    flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv: list[str]) -> list[str]:
    from absl import flags

    try:
        return config_check.parse_flags(argv, flags.FLAGS)
    except ConfigError as error:
        _exit(error)


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(_main, flags_parser=_parse_flags)
