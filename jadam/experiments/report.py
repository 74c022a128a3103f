"""What a figure leaves behind: ``metrics.jsonl``, one summary row per run, ``summary.json``, the
PNG and the printed table.

``metrics.jsonl`` holds one JSON record per logged point; it is rewritten from the runs' saved
logs when a figure (re)starts, so a resumed run repeats no line. A summary row gives a run's last
and best training loss, its test metrics, step count and speed.

Example:
  >>> row = {"figure": "fig", "run": "adam", "final_train_loss": 0.5, "best_train_loss": 0.25}
  >>> row |= {"test_accuracy": None, "steps": 10, "steps_per_second": 2.0}
  >>> print(format_summary([row]).splitlines()[-1].split())
  ['fig', 'adam', '0.5000', '0.2500', '—', '10', '2.0']
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ml_collections

from jadam.experiments import checkpoints, plots


def finite(value: Any) -> float | None:
    """``float(value)``, or ``None`` for NaN and ±inf (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def start_metrics(workdir: Path) -> None:
    """Empties ``metrics.jsonl``: it is rewritten from the restored logs, so a resume repeats
    nothing."""
    (workdir / "metrics.jsonl").write_text("")


def append_metrics(workdir: Path, records: Iterable[dict]) -> None:
    """Appends records to ``metrics.jsonl``, one JSON object per line."""
    with (workdir / "metrics.jsonl").open("a") as out:
        out.writelines(json.dumps(record) + "\n" for record in records)


def summarise(base: dict, log: dict, resumed_from: int) -> dict:
    """A run's summary row: ``base`` (figure, run, optimizer, ...) and what its log shows."""
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


def write_figure(config: ml_collections.ConfigDict, workdir: Path, summary: list[dict]) -> None:
    """``summary.json`` and the figure's PNG, from the finished runs' records."""
    checkpoints.write_atomic(workdir / "summary.json", json.dumps(summary, indent=1))
    records = [r for row in summary for r in checkpoints.finished_records(workdir, row["run"])]
    plots.plot_figure(config, records, workdir / f"{config.figure}.png")


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


def write_paper(workdir: Path, figures: list[tuple[str, str]], rows: list[dict]) -> None:
    """A paper config's combined outputs from its figure directories ``workdir/<name>``:
    ``metrics.jsonl`` (concatenated), each figure's PNG copied up, and ``summary.json``.

    ``figures`` lists (directory name, figure name) in the order they ran.
    """
    with (workdir / "metrics.jsonl").open("w") as combined:
        for name, figure in figures:
            combined.write((workdir / name / "metrics.jsonl").read_text())
            shutil.copy(workdir / name / f"{figure}.png", workdir / f"{figure}.png")
    checkpoints.write_atomic(workdir / "summary.json", json.dumps(rows, indent=1))
