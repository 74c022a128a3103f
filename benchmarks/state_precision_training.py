"""Training quality by optimizer-state precision, measured with the experiments runner (issue 7).

Trains configs/fig2_state_precision.py (Figure 2's MLP, Adam with float32, bfloat16 and 8-bit
moments) and its ``:vae`` variant (Figure 4's VAE) for several seeds (the seed changes the
initial parameters, the minibatch order, the dropout masks and the VAE noise; the runs of one
seed share all of them) and reports the final loss on the whole training set in evaluation mode
(``train_set_loss``: no dropout, the VAE's posterior mean). Δ is each run's relative difference
to float32 of the same seed; the spread of float32 over seeds is the noise to compare it with.
``--fused`` also trains every run with ``fused=True`` (jadam's C++ kernel, same seeds) and adds
a table of pure-path vs kernel losses per seed and precision: the kernel stores the same state as
the pure path bit for bit, so the two should be equal.

Usage:
  python -m benchmarks.state_precision_training [--seeds 0,1,2,3,4] [--workdir DIR] [--smoke]
      [--fused]

Finished runs are kept in ``--workdir`` (default runs/state_precision) and reused. The tables go
into a marked section of benchmarks/RESULTS_state_precision.md (``--out``) and are printed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks import state_precision
from jadam.experiments import config_lib, train

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = state_precision.BEGIN, state_precision.END
MLP, VAE = "Figure 2 MLP (cross-entropy)", "Figure 4 VAE (negative ELBO, nats)"
PROBLEMS = {"": MLP, "vae": VAE, "smoke": MLP, "vae_smoke": VAE}
PRECISIONS = ("float32", "bfloat16", "8bit")


def load_config(arg: str):
    return config_lib.load_config_file(f"{ROOT / 'configs' / 'fig2_state_precision.py'}:{arg}")


def final_losses(arg: str, seed: int, workdir: Path, fused: bool = False) -> dict[str, dict]:
    """{precision: summary row} of one seed (reused from ``workdir`` when already trained);
    ``fused``: every run with ``fused=True``."""
    config = load_config(arg)
    config.seed, config.progress = seed, False
    if fused:
        with config.unlocked():
            for run in config.runs.values():
                run.optimizer.fused = True
    name = f"{config.figure}{'_fused' if fused else ''}_seed{seed}"
    rows = train.run_figure(config, workdir / name)
    return {row["run"].removeprefix("adam_"): row for row in rows}


def relative(value: float, base: float) -> float:
    return 100.0 * (value - base) / base


METRICS = {
    "train_set_loss": "loss on the whole training set after the last step, evaluation mode",
    "final_train_loss": "training cost of the last logged epoch chunk (mean minibatch loss, "
    "with dropout / VAE noise: the curve the figure plots)",
}


def metric_rows(results: dict[int, dict], seeds: list[int], metric: str) -> list[str]:
    """Per-seed values and Δ to float32, their means, and the paired Δ's standard error."""
    first = results[seeds[0]]
    header = " | ".join(
        f"{p} ({first[p]['state_bytes_per_param']:.2f} B/param)" for p in PRECISIONS
    )
    lines = [f"| seed | {header} |", "|---|---:|---:|---:|"]
    losses = {p: np.array([results[s][p][metric] for s in seeds]) for p in PRECISIONS}
    deltas = {p: 100.0 * (losses[p] - losses["float32"]) / losses["float32"] for p in PRECISIONS}
    for i, seed in enumerate(seeds):
        cells = [f"{losses['float32'][i]:.5g}"] + [
            f"{losses[p][i]:.5g} ({deltas[p][i]:+.2f} %)" for p in PRECISIONS[1:]
        ]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    n = len(seeds)
    mean = {p: losses[p].mean() for p in PRECISIONS}
    std = {p: losses[p].std(ddof=1) if n > 1 else float("nan") for p in PRECISIONS}
    cells = [f"{mean['float32']:.5g} ± {std['float32']:.2g}"] + [
        f"{mean[p]:.5g} ± {std[p]:.2g} ({relative(mean[p], mean['float32']):+.2f} %)"
        for p in PRECISIONS[1:]
    ]
    lines.append("| mean ± std over seeds | " + " | ".join(cells) + " |")
    cells = ["—"] + [
        f"{deltas[p].mean():+.2f} % ± {deltas[p].std(ddof=1) / np.sqrt(n) if n > 1 else 0:.2f} %"
        for p in PRECISIONS[1:]
    ]
    lines.append("| paired Δ: mean ± standard error | " + " | ".join(cells) + " |")
    noise = 100.0 * std["float32"] / mean["float32"]
    return [
        f"{METRICS[metric]}:",
        "",
        *lines,
        "",
        f"float32's own seed-to-seed spread: {noise:.1f} % of its mean (std/mean).",
        "",
    ]


def fused_rows(pure: dict[int, dict], fused: dict[int, dict], seeds: list[int]) -> list[str]:
    """Per seed and precision: both metrics of the pure path and of the kernel, the kernel's
    relative difference; per precision the paired difference's mean ± standard error."""
    header = " | ".join(f"{metric}: pure | fused (Δ)" for metric in METRICS)
    lines = [f"| seed | state | {header} |", "|---|---|" + "---:|" * 2 * len(METRICS)]
    deltas = {
        (precision, metric): np.array(
            [relative(fused[s][precision][metric], pure[s][precision][metric]) for s in seeds]
        )
        for precision in PRECISIONS
        for metric in METRICS
    }
    for i, seed in enumerate(seeds):
        for precision in PRECISIONS:
            cells = []
            for metric in METRICS:
                delta = deltas[precision, metric][i]
                cells += [f"{pure[seed][precision][metric]:.9g}"]
                cells += [f"{fused[seed][precision][metric]:.9g} ({delta:+.2g} %)"]
            lines.append(f"| {seed} | {precision} | " + " | ".join(cells) + " |")
    n = len(seeds)
    for precision in PRECISIONS:
        cells = []
        for metric in METRICS:
            delta = deltas[precision, metric]
            error = delta.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
            cells += ["—", f"{delta.mean():+.2g} % ± {error:.2g} %"]
        lines.append(
            f"| paired Δ: mean ± standard error | {precision} | " + " | ".join(cells) + " |"
        )
    values = np.concatenate(list(deltas.values()))
    return [
        "Pure path (XLA) against `fused=True` (jadam's C++ kernel), same seeds and configs; "
        "Δ: the kernel's difference relative to the pure path:",
        "",
        *lines,
        "",
        f"{int((values == 0).sum())} of {values.size} values identical; largest |Δ| "
        f"{np.abs(values).max():.2g} %.",
        "",
    ]


def problem_table(arg: str, seeds: list[int], workdir: Path, fused: bool = False) -> list[str]:
    results = {seed: final_losses(arg, seed, workdir) for seed in seeds}
    first = results[seeds[0]]["float32"]
    lines = [
        f"### {PROBLEMS[arg]}, `configs/fig2_state_precision.py{':' + arg if arg else ''}`",
        "",
        f"{first['steps']} steps, {first['data']}.",
        "",
    ]
    for metric in METRICS:
        lines += metric_rows(results, seeds, metric)
    if fused:
        kernel = {seed: final_losses(arg, seed, workdir, fused=True) for seed in seeds}
        lines += fused_rows(results, kernel, seeds)
    return lines


def write_section(path: Path, text: str) -> None:
    """Replaces the marked section of ``path`` (appends it if absent)."""
    old = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{text}\n{END}\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--workdir", default="runs/state_precision")
    parser.add_argument("--smoke", action="store_true", help="the configs' tiny variants")
    parser.add_argument(
        "--fused", action="store_true", help="also train every run with fused=True and compare"
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).with_name("RESULTS_state_precision.md"))
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    workdir = Path(args.workdir)
    problems = ["smoke", "vae_smoke"] if args.smoke else ["", "vae"]
    lines = [
        "## Training quality with the experiments runner (Figure 2 MLP, Figure 4 VAE)",
        "",
        f"Command: `python -m benchmarks.state_precision_training --seeds {args.seeds}"
        f"{' --smoke' if args.smoke else ''}{' --fused' if args.fused else ''}`; "
        f"{os.cpu_count()} CPU cores, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Final loss on the whole training set in evaluation mode (no dropout; VAE: posterior "
        "mean) after the configs' full training; Adam with the figure's hyperparameters, only "
        "`state_precision` differs. Runs of one seed share initial parameters, minibatches, "
        "dropout masks and VAE noise. Δ: relative to float32 of the same seed.",
        "",
    ]
    for arg in problems:
        lines += problem_table(arg, seeds, workdir, fused=args.fused)
    text = "\n".join(lines).rstrip("\n")
    if not args.smoke:
        write_section(Path(args.out), text)
    print(text)


if __name__ == "__main__":
    main()
