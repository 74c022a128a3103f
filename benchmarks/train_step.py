"""A whole training step as users write it: ``python -m benchmarks.train_step [--quick]``.

Forward, backward and optimizer in one jitted function with the model and optimizer donated
(``nnx.jit(train_step, donate_argnums=(0, 1))``), for two Flax NNX models on random data
(nothing is downloaded): a small transformer (~10M parameters in ~100 leaves, AdamW) and the
784-2048-2048-2048-10 MLP of the issue (10.0M parameters in 8 leaves, batch 128, Adam).

Candidates, all from the same initial parameters and batch:
  - ``optax``: ``nnx.Optimizer(model, optax.adamw(...))`` (the reference of every ratio);
  - ``jadam``, ``jadam bf16``, ``jadam 8bit``: ``nnx.Optimizer`` with jadam's alias, pure path,
    ``state_precision`` None / "bfloat16" / "8bit";
  - ``jadam fused …``: ``fused=True`` through ``nnx.Optimizer`` (the standard path:
    ``tx.update`` + ``optax.apply_updates``);
  - ``jadam fused …, jadam.flax``: ``fused=True`` through ``jadam.flax.Optimizer`` (the one-pass
    ``tx.apply_gradients``, one name changed);
  - ``sgd``: ``optax.sgd`` (a step whose optimizer is one 12-byte-per-parameter pass): each
    candidate's *optimizer share* is its step time minus this one's;
  - ``torch fused`` / ``torch sgd``: the same model in torch, ``torch.optim.AdamW``/``Adam``
    with ``fused=True``, and ``torch.optim.SGD``.

Timing: every candidate in this one process, interleaved (order rotated every repetition), after
warm-up steps, with the same short settle pause before each step; medians, quartiles and the
median of same-repetition ratios to ``optax``. Peak resident memory: one subprocess per
candidate, for the transformer (``--memory-model mlp`` adds the MLP). Writes
benchmarks/RESULTS_train_step.md and results_train_step.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from benchmarks import candidates, memory, report

HERE = pathlib.Path(__file__).parent
PRECISIONS = {"": None, " bf16": "bfloat16", " 8bit": "8bit"}
JAX_CANDIDATES = (
    "optax",
    "sgd",
    *(f"jadam{suffix}" for suffix in PRECISIONS),
    *(f"jadam fused{suffix}" for suffix in PRECISIONS),
    *(f"jadam fused{suffix}, jadam.flax" for suffix in PRECISIONS),
)
TORCH_CANDIDATES = ("torch fused", "torch sgd")
# Issue 12's whole-step targets: candidate -> largest step-time ratio to optax that meets it.
TARGETS = {"jadam fused, jadam.flax": 0.95, "jadam fused 8bit, jadam.flax": 1.0}


@dataclasses.dataclass(frozen=True)
class Size:
    """One model's dimensions and batch."""

    width: int
    layers: int
    batch: int
    vocab: int = 0  # transformer only
    sequence: int = 0  # transformer only


SIZES = {
    "transformer": {
        "full": Size(width=320, layers=6, batch=8, vocab=4096, sequence=16),
        "tiny": Size(width=16, layers=2, batch=2, vocab=32, sequence=4),
    },
    "mlp": {
        "full": Size(width=2048, layers=3, batch=128),
        "tiny": Size(width=32, layers=3, batch=4),
    },
}
ALGORITHMS = {"transformer": "adamw", "mlp": "adam"}
# Peak memory (one subprocess per candidate, ~15 s each) by default for the issue's ~100-leaf
# model only, so that benchmarks.run and this script together finish in about 15 minutes.
MEMORY = ("transformer",)
MLP_INPUTS, MLP_CLASSES = 784, 10


# ---------------------------------------------------------------------------------------------
# Models and data


def _nnx_transformer(size: Size, rngs):
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, rngs):
            width = size.width
            self.attention_norm = nnx.LayerNorm(width, rngs=rngs)
            self.attention = nnx.MultiHeadAttention(
                num_heads=max(1, width // 64), in_features=width, decode=False, rngs=rngs
            )
            self.mlp_norm = nnx.LayerNorm(width, rngs=rngs)
            self.up = nnx.Linear(width, 4 * width, rngs=rngs)
            self.down = nnx.Linear(4 * width, width, rngs=rngs)

        def __call__(self, x):
            x = x + self.attention(self.attention_norm(x))
            return x + self.down(nnx.gelu(self.up(self.mlp_norm(x))))

    class Transformer(nnx.Module):
        """Pre-norm encoder on token ids: 16 parameter leaves per block, 6 more around."""

        def __init__(self, rngs):
            self.embed = nnx.Embed(size.vocab, size.width, rngs=rngs)
            self.position = nnx.Param(0.02 * rngs.params.normal((size.sequence, size.width)))
            self.blocks = nnx.List([Block(rngs) for _ in range(size.layers)])
            self.norm = nnx.LayerNorm(size.width, rngs=rngs)
            self.head = nnx.Linear(size.width, size.vocab, rngs=rngs)

        def __call__(self, tokens):
            x = self.embed(tokens) + self.position[...]
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x))

    return Transformer(rngs)


def _nnx_mlp(size: Size, rngs):
    from jadam.experiments.models import MLP

    return MLP(MLP_INPUTS, (size.width,) * size.layers, MLP_CLASSES, rngs=rngs)


def _torch_transformer(size: Size):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            width = size.width
            self.heads = max(1, width // 64)
            self.attention_norm = nn.LayerNorm(width)
            self.query, self.key, self.value, self.out = (nn.Linear(width, width) for _ in "qkvo")
            self.mlp_norm = nn.LayerNorm(width)
            self.up = nn.Linear(width, 4 * width)
            self.down = nn.Linear(4 * width, width)

        def forward(self, x):
            h = self.attention_norm(x)
            batch, sequence, width = h.shape

            def split(t):
                return t.view(batch, sequence, self.heads, -1).transpose(1, 2)

            q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
            attended = nn.functional.scaled_dot_product_attention(q, k, v)
            x = x + self.out(attended.transpose(1, 2).reshape(batch, sequence, width))
            return x + self.down(nn.functional.gelu(self.up(self.mlp_norm(x))))

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(size.vocab, size.width)
            self.position = nn.Parameter(0.02 * torch.randn(size.sequence, size.width))
            self.blocks = nn.ModuleList([Block() for _ in range(size.layers)])
            self.norm = nn.LayerNorm(size.width)
            self.head = nn.Linear(size.width, size.vocab)

        def forward(self, tokens):
            x = self.embed(tokens) + self.position
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x))

    return Transformer()


def _torch_mlp(size: Size):
    from torch import nn

    widths = (MLP_INPUTS, *(size.width,) * size.layers)
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(size.width, MLP_CLASSES))


def batch(model: str, size: Size, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs and integer labels: token ids (next-token labels) or 784-pixel images."""
    rng = np.random.default_rng(seed)
    if model == "transformer":
        tokens = rng.integers(0, size.vocab, (size.batch, size.sequence + 1))
        return tokens[:, :-1].astype(np.int32), tokens[:, 1:].astype(np.int32)
    images = rng.random((size.batch, MLP_INPUTS), dtype=np.float32)
    return images, rng.integers(0, MLP_CLASSES, size.batch).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Candidates


@dataclasses.dataclass
class Candidate:
    """``step()`` runs one training step and waits for it; ``params``: the parameter count."""

    name: str
    step: Callable[[], None]
    params: int
    leaves: int


def _tx(name: str, algorithm: str):
    import optax

    if name == "optax":
        return candidates.optax_tx(algorithm)
    if name == "sgd":
        return optax.sgd(candidates.LEARNING_RATE)
    precision = candidates.state_precision(name)
    return candidates.jadam_tx(algorithm, name.startswith("jadam fused"), precision)


def _jax_candidate(name: str, model_name: str, size: Size) -> Candidate:
    import jax
    import optax
    from flax import nnx

    import jadam.flax

    build = _nnx_transformer if model_name == "transformer" else _nnx_mlp
    model = build(size, nnx.Rngs(0))
    holder = jadam.flax.Optimizer if name.endswith("jadam.flax") else nnx.Optimizer
    optimizer = holder(model, _tx(name, ALGORITHMS[model_name]), wrt=nnx.Param)
    inputs, labels = (jax.device_put(x) for x in batch(model_name, size))

    def train_step(model, optimizer, inputs, labels):
        def loss_fn(model):
            logits = model(inputs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    jitted = nnx.jit(train_step, donate_argnums=(0, 1))

    def step() -> None:
        # All outputs of one XLA execution become ready together: the loss suffices.
        jax.block_until_ready(jitted(model, optimizer, inputs, labels))

    params = nnx.state(model, nnx.Param)
    count = sum(x.size for x in jax.tree.leaves(params))
    return Candidate(name, step, count, len(jax.tree.leaves(params)))


def _torch_candidate(name: str, model_name: str, size: Size) -> Candidate:
    import torch

    torch.manual_seed(0)
    model = (_torch_transformer if model_name == "transformer" else _torch_mlp)(size)
    inputs, labels = (torch.from_numpy(x) for x in batch(model_name, size))
    inputs, labels = (inputs.long() if model_name == "transformer" else inputs), labels.long()
    lr = candidates.LEARNING_RATE
    if name == "torch sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    elif ALGORITHMS[model_name] == "adamw":
        decay = candidates.WEIGHT_DECAY
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=decay, fused=True)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        optimizer.step()

    parameters = list(model.parameters())
    return Candidate(name, step, sum(p.numel() for p in parameters), len(parameters))


def make(name: str, model_name: str, size: Size) -> Candidate:
    """Builds candidate ``name`` for ``model_name`` ("transformer" or "mlp")."""
    if name in JAX_CANDIDATES:
        return _jax_candidate(name, model_name, size)
    if name in TORCH_CANDIDATES:
        return _torch_candidate(name, model_name, size)
    raise ValueError(f"unknown candidate {name!r}; known: {JAX_CANDIDATES + TORCH_CANDIDATES}")


def candidate_names() -> list[str]:
    return [n for n in JAX_CANDIDATES + TORCH_CANDIDATES if candidates.available(n)]


# ---------------------------------------------------------------------------------------------
# Measurements


def time_model(
    model_name: str,
    size: Size,
    reps: int,
    warmup: int,
    settle: float,
    budget_s: float,
    names: list[str] | None = None,
) -> dict:
    """Every candidate's step time, interleaved; ratios to optax in the same repetition.

    ``names`` must include "optax", "sgd" and, with torch candidates, "torch sgd".
    """
    built = []
    for name in names or candidate_names():
        start = time.perf_counter()
        cand = make(name, model_name, size)
        cand.step()  # compiles
        built.append((cand, time.perf_counter() - start))
    times = {cand.name: [] for cand, _ in built}
    started = time.perf_counter()
    for rep in range(warmup + reps):
        if rep - warmup >= 3 and time.perf_counter() - started > budget_s:
            break
        shift = rep % len(built)
        for cand, _ in built[shift:] + built[:shift]:
            time.sleep(settle)
            start = time.perf_counter()
            cand.step()
            if rep >= warmup:
                times[cand.name].append(time.perf_counter() - start)
    return summarize(model_name, size, times, {c.name: (c, s) for c, s in built})


def summarize(model_name: str, size: Size, times: dict[str, list[float]], built: dict) -> dict:
    """Medians, quartiles, ratios to optax and optimizer shares (step minus the SGD step)."""
    stats = {}
    for name, ts in times.items():
        arr = np.asarray(ts)
        q1, med, q3 = np.percentile(arr, [25, 50, 75])
        row = {"median_ms": 1e3 * med, "q1_ms": 1e3 * q1, "q3_ms": 1e3 * q3}
        row["ratio_to_optax"] = float(np.median(arr / np.asarray(times["optax"])))
        sgd = times["torch sgd" if name.startswith("torch") else "sgd"]
        row["optimizer_ms"] = float(1e3 * np.median(arr - np.asarray(sgd)))
        row["optimizer_share"] = float(np.median(1 - np.asarray(sgd) / arr))
        cand, build_s = built[name]
        row |= {"params": cand.params, "leaves": cand.leaves, "build_and_first_step_s": build_s}
        stats[name] = row
    return {
        "model": model_name,
        "size": dataclasses.asdict(size),
        "algorithm": ALGORITHMS[model_name],
        "reps": len(times["optax"]),
        "candidates": stats,
    }


def measure_memory(name: str, model_name: str, size: Size, steps: int = 3) -> dict:
    """Resident memory of one candidate in this (fresh) process, in bytes."""
    after_imports = memory._rss()
    cand = make(name, model_name, size)
    cand.step()
    live = memory._rss()
    peak_with_compile = memory._peak()
    reset = memory._reset_peak()
    for _ in range(steps):
        cand.step()
    return {
        "candidate": name,
        "after_imports": after_imports,
        "live": live,
        "peak_with_compile": peak_with_compile,
        "peak_while_stepping": memory._peak() if reset else None,
    }


def memory_in_subprocesses(model_name: str, size_name: str) -> list[dict]:
    rows = []
    for name in candidate_names():
        cmd = [sys.executable, "-m", "benchmarks.train_step", "--memory-of", name]
        cmd += ["--model", model_name, "--size", size_name]
        out = subprocess.run(
            cmd, capture_output=True, text=True, cwd=HERE.parent, check=False, timeout=900
        )
        if out.returncode != 0:
            rows.append({"candidate": name, "error": out.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  memory, {name}: {rows[-1]}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# Report


def _model_table(result: dict) -> list[str]:
    lines = [
        f"### {result['model']}: {_describe(result)} ({result['reps']} timed steps each)",
        "",
        "| candidate | median ms | quartiles ms | × optax | optimizer ms (− SGD step) "
        "| optimizer share | peak RSS MB (stepping) | peak RSS MB (with compile) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    mem = {row["candidate"]: row for row in result.get("memory", [])}
    for name, s in result["candidates"].items():
        row = mem.get(name, {})
        stepping = row.get("peak_while_stepping")
        compiled = row.get("peak_with_compile")
        lines.append(
            f"| {name} | {s['median_ms']:.1f} | {s['q1_ms']:.1f}–{s['q3_ms']:.1f} "
            f"| {s['ratio_to_optax']:.2f} | {s['optimizer_ms']:.1f} "
            f"| {s['optimizer_share']:.0%} | {_mb(stepping)} | {_mb(compiled)} |"
        )
    return [*lines, ""]


def _mb(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:.0f}"


def _describe(result: dict) -> str:
    any_jax = result["candidates"]["optax"]
    s = result["size"]
    shape = (
        f"width {s['width']}, {s['layers']} blocks, vocab {s['vocab']}, "
        f"batch {s['batch']}×{s['sequence']} tokens"
        if result["model"] == "transformer"
        else f"{MLP_INPUTS}-" + "-".join([str(s["width"])] * s["layers"]) + f"-{MLP_CLASSES}, "
        f"batch {s['batch']}"
    )
    return (
        f"{any_jax['params'] / 1e6:.2f}M parameters in {any_jax['leaves']} leaves, {shape}, "
        f"{result['algorithm']}"
    )


def targets_table(results: dict) -> list[str]:
    lines = [
        "| target (whole step ÷ optax) | model | measured | target | met |",
        "|---|---|---:|---:|:---:|",
    ]
    for result in results["models"]:
        for name, limit in TARGETS.items():
            if name in result["candidates"]:
                ratio = result["candidates"][name]["ratio_to_optax"]
                lines.append(
                    f"| {name} | {result['model']} | {ratio:.2f} | ≤ {limit:g} "
                    f"| {'yes' if ratio <= limit else 'no'} |"
                )
    return lines


def write_markdown(results: dict, path: pathlib.Path) -> None:
    lines = [
        "# Whole training step: forward, backward and optimizer",
        "",
        f"Generated by `{results['command']}` on {results['date_utc']} "
        f"(load average at start {results['load_average']}). Method: see the docstring of "
        "`benchmarks/train_step.py` and docs/speed.md. *× optax*: median over repetitions of "
        "the candidate's step time over optax's in the same repetition. *optimizer ms*: median "
        "of (step − SGD step of the same framework) in the same repetition; *share*: that over "
        "the step. Peak RSS: one process per candidate, the whole process (JAX or torch "
        "runtime included).",
        "",
        "## Targets",
        "",
        *targets_table(results),
        "",
    ]
    for result in results["models"]:
        lines += _model_table(result)
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, no memory")
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--model", action="append", choices=tuple(SIZES), help="repeatable")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--settle", type=float, default=0.005, help="pause before each step, s")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per model")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--memory-model",
        action="append",
        choices=tuple(SIZES),
        help="models whose peak memory is measured (repeatable; default: transformer)",
    )
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "RESULTS_train_step.md")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: one candidate
    args = parser.parse_args(argv)
    models = args.model or list(SIZES)
    if args.memory_of:
        row = measure_memory(args.memory_of, models[0], SIZES[models[0]][args.size])
        print(json.dumps(row))
        return
    reps = args.reps or (5 if args.quick else 15)
    command = report.command_line("benchmarks.train_step", sys.argv[1:] if argv is None else argv)
    results = {
        "command": command,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "models": [],
    }
    for model_name in models:
        size = SIZES[model_name][args.size]
        print(f"timing {model_name} ({args.size}) ...", flush=True)
        result = time_model(model_name, size, reps, args.warmup, args.settle, args.budget)
        if not (args.quick or args.no_memory) and model_name in (args.memory_model or MEMORY):
            result["memory"] = memory_in_subprocesses(model_name, args.size)
        results["models"].append(result)
        for name, s in result["candidates"].items():
            print(f"  {name}: {s['median_ms']:.1f} ms ×{s['ratio_to_optax']:.2f}", flush=True)
    args.out.with_name("results_train_step.json").write_text(json.dumps(results, indent=1))
    write_markdown(results, args.out)


if __name__ == "__main__":
    main()
