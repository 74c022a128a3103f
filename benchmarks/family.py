"""The Adam family side by side: final loss, step time and state bytes (issue 16).

Trains every member of configs/family.py (Figure 2's MLP and Figure 4's VAE, embedded data, same
budget, three learning rates each) with the experiments runner, keeps each member's best α
(lowest final training cost), and reports its final training cost, the state bytes per parameter
(``jadam.state_nbytes``, from the runner's summary) and the optimizer step time (update + apply,
jitted, parameters and state donated) on Figure 2's MLP parameter shapes, interleaved in this
process, as a ratio to Adam's step in the same repetition.

Usage:
  python -m benchmarks.family [--workdir runs/family] [--smoke] [--repeats 15]

Finished runs are reused from ``--workdir``. Writes benchmarks/RESULTS_family.md (``--out``) and
benchmarks/family.png, and prints the table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from flax import nnx

from jadam.experiments import config_lib, models, optimizers, train

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = {"": "Figure 2 MLP (cross-entropy)", "vae": "Figure 4 VAE (negative ELBO, nats)"}


def best_runs(rows: list[dict]) -> dict[str, dict]:
    """{member: the summary row of its best α} (lowest final training cost; NaN never wins)."""
    best: dict[str, dict] = {}
    for row in rows:
        member = row["run"].rsplit("_", 1)[0]
        loss = row["final_train_loss"]
        if loss is None or not np.isfinite(loss):
            continue
        if member not in best or loss < best[member]["final_train_loss"]:
            best[member] = row
    return best


def mlp_shapes() -> list[tuple[int, ...]]:
    """Parameter shapes of Figure 2's network (jadam.experiments.models.MLP, 784-1000-1000-10)."""
    model = nnx.eval_shape(lambda: models.MLP(784, (1000, 1000), 10, rngs=nnx.Rngs(0)))
    return [leaf.shape for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))]


def step_time_ratios(
    configs: dict[str, dict], repeats: int
) -> dict[str, tuple[float, float, float]]:
    """{member: (median, q1, q3) of its step time ÷ Adam's in the same repetition}."""
    rng = np.random.default_rng(0)
    shapes = mlp_shapes()
    params = [jnp.asarray(rng.standard_normal(s) * 0.02, jnp.float32) for s in shapes]
    grads = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in shapes]

    def make(opt):
        tx = optimizers.build(opt)

        def step(p, s, g):
            updates, s = tx.update(g, s, p)
            return optax.apply_updates(p, updates), s

        step = jax.jit(step, donate_argnums=(0, 1))
        state = {"p": [jnp.array(x) for x in params]}
        state["s"] = tx.init(state["p"])

        def run():
            state["p"], state["s"] = step(state["p"], state["s"], grads)
            jax.block_until_ready(state["p"])

        return run

    steps = {member: make(opt) for member, opt in configs.items()}
    for run in steps.values():  # compile and warm up
        run(), run()
    times = {member: [] for member in steps}
    names = list(steps)
    for rep in range(repeats):
        for member in names[rep % len(names) :] + names[: rep % len(names)]:
            start = time.perf_counter()
            steps[member]()
            times[member].append(time.perf_counter() - start)
    base = np.asarray(times["adam"])
    return {
        m: tuple(np.percentile(np.asarray(t) / base, [50, 25, 75]).tolist())
        for m, t in times.items()
    }


def train_problem(arg: str, workdir: Path) -> tuple[dict[str, dict], dict]:
    config = config_lib.load_config_file(f"{ROOT / 'configs' / 'family.py'}:{arg}")
    config.progress = False
    rows = train.run_figure(config, workdir / (arg or "mlp"))
    return best_runs(rows), config


def write_report(results: dict, ratios: dict, out: Path, command: str) -> str:
    members = list(next(iter(results.values()))[0])
    lines = [
        "# The Adam family on Figure 2's MLP and Figure 4's VAE",
        "",
        f"Produced by `{command}` (configs/family.py: embedded MNIST subset, 5 epochs, each member",
        "at its best of three learning rates α0·{1/3, 1, 3}). Step time: update + apply on Figure",
        "2's MLP shapes (1.8M parameters), jitted and donated, medians [quartiles] of the ratio to",
        "Adam's step in the same repetition, interleaved in one process.",
        "",
        "| member | MLP: best α | MLP final cost | VAE: best α | VAE final cost "
        "| state bytes/param | step time ÷ Adam |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for member in members:
        cells = []
        for arg in PROBLEMS:
            row = results[arg][0].get(member)
            if row is None:
                cells += ["—", "diverged"]
                continue
            alpha = results[arg][1].runs[row["run"]].optimizer.learning_rate
            cells += [f"{alpha:.3g}", f"{row['final_train_loss']:.4g}"]
        mlp_row = results[""][0].get(member) or {}
        state_bytes = mlp_row.get("state_bytes_per_param", float("nan"))
        median, q1, q3 = ratios[member]
        cells += [f"{state_bytes:.2f}", f"{median:.2f} [{q1:.2f}, {q3:.2f}]"]
        lines.append(f"| {optimizers.OPTIMIZERS[member].label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n\n![the family](family.png)\n"
    out.write_text(text)
    return text


def plot(results: dict, ratios: dict, path: Path) -> None:
    members = list(ratios)
    labels = [optimizers.OPTIMIZERS[m].label for m in members]
    figure, axes = plt.subplots(1, 3, figsize=(15, 5), layout="constrained")
    for axis, (arg, title) in zip(axes, PROBLEMS.items(), strict=False):
        values = [
            results[arg][0][m]["final_train_loss"] if m in results[arg][0] else np.nan
            for m in members
        ]
        axis.barh(labels, values)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("final training cost (best α)")
    axes[2].barh(labels, [ratios[m][0] for m in members])
    axes[2].axvline(1.0, color="k", lw=0.8)
    axes[2].set_title("optimizer step time ÷ Adam (MLP shapes)", fontsize=10)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/family")
    parser.add_argument("--smoke", action="store_true", help="tiny problems (for the tests)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_family.md"))
    args = parser.parse_args()
    suffix = "smoke" if args.smoke else ""
    results = {
        arg: train_problem(f"{arg}_{suffix}".strip("_") if arg else suffix, Path(args.workdir))
        for arg in PROBLEMS
    }
    configs = {}
    for member, row in results[""][0].items():
        configs[member] = results[""][1].runs[row["run"]].optimizer.to_dict()
    ratios = step_time_ratios(configs, args.repeats)
    out = Path(args.out)
    command = "python -m benchmarks.family" + (" --smoke" if args.smoke else "")
    print(write_report(results, ratios, out, command))
    plot(results, ratios, out.with_name("family.png"))


if __name__ == "__main__":
    main()
