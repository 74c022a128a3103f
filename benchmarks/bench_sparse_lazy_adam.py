"""Lazy sparse-row Adam vs dense Adam on an embedding table (issue 6).

A 1,000,000 × 64 float32 table, 1% of rows (10,000, drawn with replacement) touched per step.
Every candidate receives the same (indices, rows) gradient; the dense candidates first scatter
it into a dense gradient, as autodiff of a gather does. All steps are jitted with the table and
optimizer state donated. Candidates are interleaved (A B C … A B C …) after a warm-up, each
timed step followed by the same short settle pause; medians and quartiles are reported, plus a
triad kernel measured in the same run for the machine's memory bandwidth.

Run: python benchmarks/bench_sparse_lazy_adam.py [--rows 1000000] [--dim 64] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jadam


def dense_step(tx):
    def step(table, state, indices, rows):
        grads = jnp.zeros_like(table).at[indices].add(rows)
        updates, state = tx.update(grads, state, table)
        return optax.apply_updates(table, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


def triad():
    @jax.jit
    def kernel(a, b):
        return a + 1.5 * b  # reads two arrays, writes one: 12 bytes per float32 element

    return kernel


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--pause", type=float, default=0.05)
    args = parser.parse_args(argv)
    touched = int(args.rows * args.fraction)
    rng = np.random.default_rng(0)
    batches = [
        (
            jnp.asarray(rng.integers(0, args.rows, touched), jnp.int32),
            jnp.asarray(rng.standard_normal((touched, args.dim)), jnp.float32),
        )
        for _ in range(4)
    ]
    sparse = jadam.sparse_lazy_adam(1e-3)
    sparse_unique = jadam.sparse_lazy_adam(1e-3, unique_indices=True)
    candidates = {
        "optax.adam (dense)": (optax.adam(1e-3), dense_step(optax.adam(1e-3))),
        "jadam.adam (dense)": (jadam.adam(1e-3), dense_step(jadam.adam(1e-3))),
        "jadam.lazy_adam (dense grads)": (jadam.lazy_adam(1e-3), dense_step(jadam.lazy_adam(1e-3))),
        "jadam.sparse_lazy_adam": (sparse, jax.jit(sparse.step, donate_argnums=(0, 1))),
        "jadam.sparse_lazy_adam, unique_indices": (
            sparse_unique,
            jax.jit(sparse_unique.step, donate_argnums=(0, 1)),
        ),
    }
    carries = {}
    for name, (opt, _) in candidates.items():
        table = jnp.asarray(rng.standard_normal((args.rows, args.dim)), jnp.float32) * 0.01
        carries[name] = (table, opt.init(table))
    # Unique indices for the unique_indices candidate.
    unique_batches = [
        (jnp.asarray(rng.choice(args.rows, touched, replace=False), jnp.int32), rows)
        for _, rows in batches
    ]
    times = {name: [] for name in candidates}
    triad_fn = triad()
    a = jnp.ones(args.rows * args.dim, jnp.float32)
    b = jnp.ones_like(a)
    triad_times = []
    for repeat in range(args.repeats + 2):  # two warm-up rounds
        for name, (_, step) in candidates.items():
            source = unique_batches if "unique" in name else batches
            indices, rows = source[repeat % len(source)]
            table, state = carries[name]
            start = time.perf_counter()
            table, state = step(table, state, indices, rows)
            jax.block_until_ready((table, state))
            if repeat >= 2:
                times[name].append(time.perf_counter() - start)
            carries[name] = (table, state)
            time.sleep(args.pause)
        start = time.perf_counter()
        jax.block_until_ready(triad_fn(a, b))
        if repeat >= 2:
            triad_times.append(time.perf_counter() - start)
        time.sleep(args.pause)
    bandwidth = 3 * a.nbytes / np.median(triad_times)
    reference = np.median(times["jadam.adam (dense)"])
    print(
        f"table {args.rows}×{args.dim} float32, {touched} rows/step, {args.repeats} interleaved "
        f"repeats, {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"{platform.processor() or platform.machine()}; triad bandwidth {bandwidth / 1e9:.1f} GB/s"
    )
    print("| candidate | median ms | quartiles ms | speed-up vs jadam.adam |")
    print("|---|---:|---:|---:|")
    results = {}
    for name, samples in times.items():
        q1, med, q3 = np.percentile(np.asarray(samples) * 1e3, [25, 50, 75])
        results[name] = {"median_ms": med, "q1_ms": q1, "q3_ms": q3}
        print(f"| {name} | {med:.2f} | {q1:.2f}–{q3:.2f} | {reference / (med / 1e3):.1f}× |")
    summary = {"bandwidth_GBps": bandwidth / 1e9, "results": results}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
