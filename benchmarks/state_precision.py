"""Optimizer-state memory: bytes per parameter, step time and training quality by state precision.

Compares float32, bfloat16 (stochastic rounding) and 8-bit block-wise moments in jadam:

1. state bytes per parameter (``jadam.state_nbytes``) for Adam, AdamW and AdaMax;
2. the jitted, donated Adam step time (update + apply) of each precision relative to float32,
   interleaved in one process (medians and quartiles of ratios);
3. final training loss of Adam with each precision on a Figure 2-like MLP (two hidden layers of
   1000 ReLU units, minibatches of 128) and a Figure 4-like VAE (one hidden layer of 500 units,
   50 latent dimensions), both on scikit-learn's bundled 8×8 digits, or on MNIST with --mnist.

Usage:
  python benchmarks/state_precision.py [--quick] [--mnist DIR] [--out PATH]

Writes a Markdown report (default: benchmarks/RESULTS_state_precision.md) and prints it.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jadam
from jadam.experiments import data, models

PRECISIONS = {"float32": None, "bfloat16": "bfloat16", "8bit": "8bit"}
# The report's tail from BEGIN on is written by state_precision_training.py; kept on rewrite.
BEGIN = "<!-- state_precision_training.py: begin -->"
END = "<!-- state_precision_training.py: end -->"


# --------------------------------------------------------------------------- bytes per param
def bytes_table(params) -> list[str]:
    n = sum(p.size for p in jax.tree.leaves(params))
    rows = ["| optimizer | float32 | bfloat16 | 8bit |", "|---|---:|---:|---:|"]
    for name, make in [
        ("adam", lambda sp: jadam.adam(1e-3, state_precision=sp)),
        ("adamw", lambda sp: jadam.adamw(1e-3, state_precision=sp)),
        ("adamax", lambda sp: jadam.adamax(1e-3, state_precision=sp)),
    ]:
        cells = []
        for sp in PRECISIONS.values():
            state = jax.eval_shape(make(sp).init, params)
            cells.append(f"{jadam.state_nbytes(state) / n:.3f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


# --------------------------------------------------------------------------- step time
def time_steps(params, repeats: int) -> dict[str, tuple[float, float, float, float]]:
    """Median step time (ms) and quartiles of the time ratio to float32, interleaved."""
    grads = jax.tree.map(lambda p: jnp.sin(p * 7.0 + 1.0) * 1e-2, params)
    candidates = {}
    for name, sp in PRECISIONS.items():
        tx = jadam.adam(1e-3, state_precision=sp)

        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def step(p, s, g, tx=tx):
            updates, s = tx.update(g, s, p)
            return optax.apply_updates(p, updates), s

        p = jax.tree.map(jnp.copy, params)
        s = tx.init(p)
        for _ in range(2):  # compile and warm up
            p, s = step(p, s, grads)
        jax.block_until_ready(p)
        candidates[name] = [step, p, s, []]
    for _ in range(repeats):
        for candidate in candidates.values():
            step, p, s, times = candidate
            start = time.perf_counter()
            p, s = step(p, s, grads)
            jax.block_until_ready((p, s))
            times.append(time.perf_counter() - start)
            candidate[1], candidate[2] = p, s
    base = np.asarray(candidates["float32"][3])
    out = {}
    for name, (_, _, _, times) in candidates.items():
        ratios = np.asarray(times) / base
        q1, med, q3 = np.percentile(ratios, [25, 50, 75])
        out[name] = (1e3 * float(np.median(times)), float(med), float(q1), float(q3))
    return out


def bandwidth_gbs(n: int = 2**24, repeats: int = 7) -> float:
    """Triad a + 3·b over float32 arrays (12 bytes per element), the machine's own yardstick."""
    a, b = jnp.ones(n), jnp.ones(n)
    triad = jax.jit(lambda a, b: a + 3.0 * b, donate_argnums=0)
    a = jax.block_until_ready(triad(a, b))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a = jax.block_until_ready(triad(a, b))
        times.append(time.perf_counter() - start)
    return 12 * n / float(np.median(times)) / 1e9


# --------------------------------------------------------------------------- data
def load_digits() -> np.ndarray:
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int32)


def load_mnist(directory: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test-set IDX files (t10k-*) from ``directory``, gzipped or not."""
    arrays = []
    for key in ("test_images", "test_labels"):
        stem = data.MNIST_FILES[key]
        path = data.find_data_file(Path(directory), stem)
        if path is None:
            raise FileNotFoundError(f"{stem}[.gz] not found in {directory}")
        arrays.append(data.read_idx(path))
    x, y = arrays
    return (x.reshape(len(x), -1) / 255.0).astype(np.float32), y.astype(np.int32)


# --------------------------------------------------------------------------- models
def mlp_problem(x, y, hidden: int):
    """Figure 2's network (jadam.experiments.models.MLP, two hidden layers), no dropout."""
    model = models.MLP(x.shape[1], (hidden, hidden), 10, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)

    def loss(params, xb, yb):
        logits = nnx.merge(graphdef, params)(xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    return params, loss


def vae_problem(x, hidden: int, latent: int):
    """Figure 4's VAE (jadam.experiments.models.VAE): mean negative ELBO, one noise sample."""
    graphdef, params = nnx.split(models.VAE(x.shape[1], hidden, latent, rngs=nnx.Rngs(1)))

    def loss(params, xb, key):
        return nnx.merge(graphdef, params)(xb, nnx.Rngs(noise=key)).mean()

    return params, loss


def train(params, loss, batches, tx, full_loss):
    """Adam on a fixed sequence of minibatches; returns (final full-data loss, curve)."""

    @jax.jit
    def run(params, batches):
        def step(carry, batch):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params, *batch)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        (params, _), values = jax.lax.scan(step, (params, tx.init(params)), batches)
        return params, values

    params, values = run(params, batches)
    return float(full_loss(params)), np.asarray(values)


def quality_rows(x, y, steps: int, hidden: int, vae_hidden: int, latent: int, lr: float):
    """Final full-data loss per precision, and float32 with another minibatch order for scale."""

    def batches(seed: int):
        rng = np.random.default_rng(seed)
        index = np.stack([rng.choice(len(x), 128, replace=False) for _ in range(steps)])
        noise = jax.random.split(jax.random.key(100 + seed), steps)
        return jnp.asarray(x[index]), jnp.asarray(y[index]), noise

    mlp_params, mlp_loss = mlp_problem(x, y, hidden)
    vae_params, vae_loss = vae_problem(x, vae_hidden, latent)
    eval_key = jax.random.key(3)
    problems = {
        f"MLP {x.shape[1]}-{hidden}-{hidden}-10": (
            mlp_params,
            mlp_loss,
            lambda b: (b[0], b[1]),
            lambda p: mlp_loss(p, jnp.asarray(x), jnp.asarray(y)),
        ),
        f"VAE {x.shape[1]}-{vae_hidden}-{latent}": (
            vae_params,
            vae_loss,
            lambda b: (b[0], b[2]),
            lambda p: vae_loss(p, jnp.asarray(x), eval_key),
        ),
    }
    runs = [(label, sp, 0) for label, sp in PRECISIONS.items()] + [("reshuffled", None, 1)]
    data = {0: batches(0), 1: batches(1)}
    rows = [
        "| problem | steps | float32 | float32, other minibatch order (Δ) | bfloat16 (Δ) "
        "| 8bit (Δ) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, (params, loss, pick, full_loss) in problems.items():
        results = {}
        for label, sp, seed in runs:
            tx = jadam.adam(lr, state_precision=sp)
            results[label], _ = train(params, loss, pick(data[seed]), tx, full_loss)
        base = results["float32"]
        cells = [
            f"{results[k]:.4g} ({100 * (results[k] / base - 1):+.2f} %)"
            for k in ("reshuffled", "bfloat16", "8bit")
        ]
        rows.append(f"| {name} | {steps} | {base:.4g} | " + " | ".join(cells) + " |")
    return rows


# --------------------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--mnist", default=None, help="directory with MNIST t10k IDX files")
    parser.add_argument("--repeats", type=int, default=21)
    default_out = Path(__file__).with_name("RESULTS_state_precision.md")
    parser.add_argument("--out", default=str(default_out))
    args = parser.parse_args()

    big = 2**16 if args.quick else 2**23
    hidden = 64 if args.quick else 1000
    steps = 30 if args.quick else 200
    repeats = 3 if args.quick else args.repeats
    vae_hidden, latent = (64, 8) if args.quick else (500, 50)
    lines = [
        "# Optimizer-state precision: measurements",
        "",
        f"Command: `python benchmarks/state_precision.py{' --quick' if args.quick else ''}"
        f"{' --mnist ' + args.mnist if args.mnist else ''}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__}, "
        f"backend {jax.default_backend()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        'float32: moments in float32. bfloat16: `state_precision="bfloat16"` (stochastic '
        'rounding with a low-discrepancy dither). 8bit: `state_precision="8bit"` (block size '
        "256, leaves below 4096 values kept float32). Arithmetic is float32 in all three.",
        "",
        "## State bytes per parameter",
        "",
    ]
    mlp_like = [{"w": jnp.zeros((784, 1000))}, {"w": jnp.zeros((1000, 1000)), "b": jnp.zeros(1000)}]
    trees = [(f"one leaf of {big:,} values", jnp.zeros(big)), ("MLP 784-1000-1000", mlp_like)]
    for label, tree in trees:
        lines += [f"{label} (step count included):", "", *bytes_table(tree), ""]

    lines += [
        "## Adam step time relative to float32 (same process, interleaved)",
        "",
        "Jitted update + apply_updates with donated parameters and state; "
        f"{repeats} interleaved repetitions after warm-up; ratio = time / float32 time of the same "
        "round (median [quartiles]).",
        "",
        "| parameters | float32 ms | bfloat16 ratio | 8bit ratio | float32 GB/s (28 B/param) |",
        "|---|---:|---:|---:|---:|",
    ]
    bandwidth = bandwidth_gbs()
    tree_params = {f"w{i}": jnp.ones((big // 8,)) for i in range(8)}
    cases = [(f"1 leaf × {big:,}", {"w": jnp.ones(big)}), (f"8 leaves × {big // 8:,}", tree_params)]
    for label, params in cases:
        t = time_steps(params, repeats)
        n = sum(p.size for p in jax.tree.leaves(params))
        gbs = 28 * n / (t["float32"][0] / 1e3) / 1e9
        cells = [f"{t[k][1]:.2f} [{t[k][2]:.2f}, {t[k][3]:.2f}]" for k in ("bfloat16", "8bit")]
        lines.append(f"| {label} | {t['float32'][0]:.2f} | {' | '.join(cells)} | {gbs:.1f} |")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines += [
        "",
        f"Triad bandwidth of this machine in the same run: {bandwidth:.1f} GB/s. "
        f"Load average after timing (1, 5, 15 min): {load} on {os.cpu_count()} cores.",
        "",
    ]

    datasets = [("scikit-learn digits", *load_digits())]
    if args.mnist:
        datasets.append((f"MNIST test set from {args.mnist}", *load_mnist(args.mnist)))
    lines += [
        "## Training quality: final training loss of Adam by state precision",
        "",
        f"The same {steps} minibatches of 128 (and the same VAE noise) for every precision; Adam "
        "α = 1e-3, β = (0.9, 0.999), ε = 1e-8; no dropout; loss on the whole training set after "
        "the last step (MLP: cross-entropy; VAE: negative ELBO per image, one sample, Bernoulli "
        "likelihood on pixel intensities in [0, 1]). Δ is relative to float32; the "
        "other-minibatch-order column shows how much the final loss moves for reasons that "
        "have nothing to do with state precision.",
        "",
    ]
    for source, x, y in datasets:
        lines += [
            f"{source} ({len(x)} images of {x.shape[1]} pixels):",
            "",
            *quality_rows(x, y, steps, hidden, vae_hidden, latent, lr=1e-3),
            "",
        ]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    previous = out.read_text() if out.exists() else ""
    if BEGIN in previous:  # Keep the experiments-runner section (and notes after it).
        text = text.rstrip("\n") + "\n\n" + previous[previous.index(BEGIN) :]
    out.write_text(text)


if __name__ == "__main__":
    main()
