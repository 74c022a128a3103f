"""metrics.jsonl records → PNG figures with the paper's axes (Figures 1–4).

``plot_figure(config, records, path)`` draws one figure config's records:

* ``curves``: training cost against "iterations over entire dataset" (epochs), one line per run
  (Figures 1 and 2); ``plot.legend_state_bytes`` adds each run's optimizer-state bytes per
  parameter to its legend entry.
* ``curves_zoom``: the same in two panels, the first ``zoom_epochs`` epochs and the whole run
  (Figure 3).
* ``curves_time``: two panels, ``plot.metric`` against epochs and against the training
  wall-clock time in units of one epoch of the run ``plot.time_unit_run`` (Figure 2(b):
  the paper compares Adam and SFO per iteration and per second); each legend entry gives the
  run's seconds per epoch relative to that run.
* ``vae_grid``: loss against log10(α) after a short and a long budget (rows), one column per β2,
  lines for β1 with bias correction (red) and without (green) (Figure 4).

Runs whose loss became non-finite (diverged) are drawn as × at the top of the axes. The title
is wrapped to the figure's width (and a very long data label shortened in the middle), so a
long ``data_dir`` path never runs off the figure.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {
    "Adam": "tab:red",
    "AdaMax": "tab:orange",
    "AdaGrad": "tab:blue",
    "RMSProp": "tab:purple",
    "SGDNesterov": "tab:green",
    "AdaDelta": "tab:brown",
    "SFO": "black",
}


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Reads a metrics.jsonl file into a list of records."""
    import json

    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _by_run(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    runs: dict[str, list] = defaultdict(list)
    for record in records:
        runs[record["run"]].append(record)
    return runs


def _label(records: Sequence[Mapping[str, Any]], plot: Mapping[str, Any]) -> str:
    first = records[0]
    text = first["optimizer"] + (f" + {first['setting']}" if first.get("setting") else "")
    if plot.get("legend_state_bytes", False) and first.get("state_bytes_per_param"):
        text += f": {first['state_bytes_per_param']:.2f} state bytes/param"
    return text


def _draw_curves(
    ax,
    runs: Mapping[str, list],
    plot: Mapping[str, Any],
    xmax: float | None = None,
    time_unit: float | None = None,
) -> None:
    """Loss against epochs, or against train_time_s / ``time_unit`` when that is given."""
    metric = plot.get("metric", "train_loss")
    for records in runs.values():
        points = [
            (r["epoch"] if time_unit is None else r["train_time_s"] / time_unit, r.get(metric))
            for r in records
            if (xmax is None or r["epoch"] <= xmax + 1e-9)
            and (metric in r or r["train_loss"] is None)
        ]
        xs = [x for x, y in points if y is not None]
        ys = [y for x, y in points if y is not None]
        label = _label(records, plot)
        if time_unit is not None and records[-1]["epoch"] > 0:
            per_epoch = records[-1]["train_time_s"] / records[-1]["epoch"] / time_unit
            label += f" ({per_epoch:.2g}× time per epoch)"
        (line,) = ax.plot(
            xs,
            ys,
            label=label,
            color=COLORS.get(records[0]["optimizer"]),
            linestyle="--" if "dropout" in (records[0].get("setting") or "") else "-",
        )
        if len(xs) < len(points):  # diverged
            ax.plot([points[len(xs)][0]], [ax.get_ylim()[1]], "x", color=line.get_color())
    if time_unit is None:
        ax.set_xlabel("iterations over entire dataset")
    else:
        unit_run = runs[plot.time_unit_run][0]["optimizer"]
        ax.set_xlabel(f"wall-clock time (in {unit_run} epochs)")
    ax.set_ylabel(plot.get("ylabel", "training cost"))
    ax.set_yscale(plot.get("yscale", "linear"))
    ax.grid(alpha=0.3)


def _draw_vae_grid(fig, records: Sequence[Mapping[str, Any]], config: Any) -> None:
    plot = config.plot
    runs = _by_run(records)
    budgets = list(plot.budgets_epochs)
    b2_values = sorted({float(r.optimizer.hparams.b2) for r in config.runs.values()})
    axes = fig.subplots(len(budgets), len(b2_values), squeeze=False, sharex=True)
    top = plot.get("ymax", None)
    for row, budget in enumerate(budgets):
        for col, b2 in enumerate(b2_values):
            ax = axes[row][col]
            lines: dict[tuple, list] = defaultdict(list)
            for run_id, run in config.runs.items():
                hp = run.optimizer.hparams
                if float(hp.b2) != b2 or run_id not in runs:
                    continue
                reached = [r for r in runs[run_id] if r["epoch"] <= budget + 1e-9]
                loss = reached[-1]["train_loss"] if reached else None
                if (
                    runs[run_id][-1]["train_loss"] is None
                    and runs[run_id][-1]["epoch"] <= budget + 1e-9
                ):
                    loss = None  # diverged before the budget
                key = (float(hp.b1), bool(hp.get("bias_correction", True)))
                lines[key].append((math.log10(run.optimizer.learning_rate), loss))
            for (b1, corrected), points in sorted(lines.items()):
                points.sort()
                color = "tab:red" if corrected else "tab:green"
                style = "-" if b1 > 0 else ":"
                label = f"β1={b1:g}, {'bias correction' if corrected else 'no bias correction'}"
                ok = [(x, y) for x, y in points if y is not None]
                ax.plot(
                    [x for x, _ in ok],
                    [y for _, y in ok],
                    style,
                    marker="o",
                    ms=3,
                    color=color,
                    label=label,
                )
                bad = [x for x, y in points if y is None]
                if bad:
                    ymax = top if top else ax.get_ylim()[1]
                    ax.plot(bad, [ymax] * len(bad), "x", color=color)
            if top:
                ax.set_ylim(top=top)
            ax.set_title(f"β2={b2:g}, after {budget:g} epochs", fontsize=9)
            ax.set_xlabel("log10(α)")
            if col == 0:
                ax.set_ylabel(plot.get("ylabel", "loss"))
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)


def fit_title(text: str, width_inches: float, fontsize: float, max_lines: int = 4) -> str:
    """``text`` wrapped to a figure ``width_inches`` wide at ``fontsize`` points, each of its
    lines at most ``max_lines // 2`` wrapped lines (the middle replaced by "…")."""
    columns = max(20, int(width_inches * 72 / (0.62 * fontsize)))  # ≈ character widths
    per_line = max(1, max_lines // 2)
    out = []
    for line in text.split("\n"):
        if len(line) > columns * per_line:
            keep = columns * per_line - 1
            line = line[: keep // 2] + "…" + line[len(line) - (keep - keep // 2) :]
        out += textwrap.wrap(line, columns, break_long_words=True, break_on_hyphens=False) or [""]
    return "\n".join(out)


def plot_figure(config: Any, records: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Draws the records of one figure config (``config.plot.kind``) and saves a PNG at ``path``."""
    plot = config.plot
    data_label = records[0]["data"] if records else ""
    if plot.kind == "vae_grid":
        fig = plt.figure(figsize=(10, 6.5))
        _draw_vae_grid(fig, records, config)
    elif plot.kind == "curves_zoom":
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
        runs = _by_run(records)
        _draw_curves(left, runs, plot, xmax=plot.zoom_epochs)
        _draw_curves(right, runs, plot)
        left.set_title(f"first {plot.zoom_epochs} epochs", fontsize=9)
        right.legend(fontsize=7)
    elif plot.kind == "curves_time":
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
        runs = _by_run(records)
        unit = runs.get(plot.time_unit_run, [{}])[-1]
        time_unit = unit.get("train_time_s", 0) / unit["epoch"] if unit.get("epoch") else 1.0
        _draw_curves(left, runs, plot)
        _draw_curves(right, runs, plot, time_unit=time_unit or 1.0)
        right.legend(fontsize=7)
    else:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        _draw_curves(ax, _by_run(records), plot)
        ax.legend(fontsize=7)
    fontsize = 10
    fig.suptitle(
        fit_title(f"{plot.title}\n{data_label}", fig.get_figwidth(), fontsize),
        fontsize=fontsize,
        color="darkred" if "STAND-IN" in data_label else "black",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=plot.get("dpi", 80))
    plt.close(fig)
