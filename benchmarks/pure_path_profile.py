"""Profile of the pure (XLA) path by state precision: HLO fusions, copies, bytes and step time.

For each candidate (optax.adam, jadam.adam with float32, bfloat16 and 8-bit moments) the step is
the standard call path ``u, s = tx.update(g, s, p); p = optax.apply_updates(p, u)`` under one
``jax.jit`` with params and state donated, with the fused kernel off (what runs on GPU/TPU and
under ``vmap``). The script reports, per candidate:

- from the optimized HLO (``lower(...).compile().as_text()``): fusions and other kernels in the
  entry computation per leaf, ``copy`` instructions (a copy of a moment buffer means donation
  failed) and the bytes the entry computation's kernels read and write per parameter (operand
  and result sizes; a lower bound on traffic for loop fusions, exact for one-pass ones);
- the median step time over interleaved repetitions (A B C D A B C D ...) and its ratio to the
  float32 jadam step, with an in-place triad (a ← a + s·b, 12 bytes per element) in the same
  rotation as the bandwidth reference;
- the process CPU time per step (user + system, both cores) and its ratio to the float32
  step's: on a shared machine wall time swings with the other processes, CPU time much less;
- the minor page faults per step: XLA's CPU runtime allocates the temporaries of every run
  afresh, so each 4 KiB page of a full-size temporary (a copy, a float32 intermediate written
  out) costs a page fault, a few µs: on one 10M-parameter leaf, 40 MB of temporaries cost more
  than the whole float32 step. glibc serves blocks over its mmap threshold (at most 32 MB
  unless set) with fresh pages; running the script with ``MALLOC_MMAP_THRESHOLD_=4294967296``
  keeps them in the heap and shows what the temporaries cost in faults alone.

Usage:
  python benchmarks/pure_path_profile.py [--params 10000000] [--leaves 1 100] [--repeats 15]
      [--only bf16 8bit] [--show-hlo 8bit]
"""

from __future__ import annotations

import argparse
import functools
import re
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jadam

CANDIDATES = {
    "optax.adam": lambda: optax.adam(1e-3),
    "jadam fp32": lambda: jadam.adam(1e-3),
    "jadam bf16": lambda: jadam.adam(1e-3, state_precision="bfloat16"),
    "jadam 8bit": lambda: jadam.adam(1e-3, state_precision="8bit"),
}
TRIAD_BYTES = 12


def make_tree(params: int, leaves: int, seed: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    sizes = [params // leaves] * leaves
    sizes[-1] += params - sum(sizes)
    p = [jnp.asarray(rng.standard_normal(n, np.float32)) for n in sizes]
    g = [jnp.asarray(rng.standard_normal(n, np.float32) * 1e-2) for n in sizes]
    return p, g


def jitted_step(tx):
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(p, s, g):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    return step


_SHAPE = re.compile(r"\b(f32|bf16|f16|u8|s8|u32|s32|pred|u16)\[([\d,]*)\]")
_BYTES = {"f32": 4, "u32": 4, "s32": 4, "bf16": 2, "f16": 2, "u16": 2, "u8": 1, "s8": 1, "pred": 1}


def _nbytes(text: str) -> int:
    total = 0
    for dtype, dims in _SHAPE.findall(text):
        total += _BYTES[dtype] * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
    return total


def hlo_summary(hlo: str, params: int, leaves: int = 1) -> dict:
    """Array kernels of the entry computation by opcode, and the bytes they move per parameter.

    Bytes are each kernel's result plus its operands (read once each); kernels moving less
    than 1/16 byte per parameter of a leaf (scalars, per-block scales) are counted apart as
    small.
    """
    entry = hlo[hlo.index("\nENTRY ") :]
    entry = entry[: entry.index("\n}\n")]
    sizes: dict[str, int] = {}
    kernels: dict[str, int] = {}
    moved = 0
    for line in entry.splitlines()[1:]:
        match = re.match(r"\s*(?:ROOT )?(%[\w.\-]+) = (.*?) ([a-z][\w\-]*)\((.*)", line)
        if not match:
            continue
        name, result, opcode, rest = match.groups()
        sizes[name] = _nbytes(result)
        if opcode in ("parameter", "tuple", "get-tuple-element", "constant", "bitcast"):
            continue
        operands = re.findall(r"%[\w.\-]+", rest.split("kind=")[0].split("calls=")[0])
        traffic = sizes[name] + sum(sizes.get(o, 0) for o in operands)
        kind = opcode
        if opcode == "fusion":
            kind = "fusion(" + re.search(r"kind=(\w+)", rest).group(1) + ")"
        if traffic < params / leaves / 16:
            kind = "small"
        kernels[kind] = kernels.get(kind, 0) + 1
        moved += traffic
    return {"kernels": kernels, "bytes_per_param": moved / params}


def triad_step():
    @functools.partial(jax.jit, donate_argnums=(0,))
    def triad(a, b):
        return a + jnp.float32(1e-3) * b

    return triad


def profile(
    params: int, leaves: int, repeats: int, show_hlo: str | None, only: list[str] | None = None
) -> None:
    p0, g = make_tree(params, leaves)
    runs = {}
    print(f"\n## {params:,} parameters in {leaves} leaves")
    print("| candidate | kernels in the entry computation | copies | HLO bytes/param |")
    print("|---|---|---:|---:|")
    for name, make in CANDIDATES.items():
        if only and name != "jadam fp32" and not any(word in name for word in only):
            continue
        tx = make()
        step = jitted_step(tx)
        p = jax.tree.map(jnp.copy, p0)
        s = tx.init(p)
        hlo = step.lower(p, s, g).compile().as_text()
        summary = hlo_summary(hlo, params, leaves)
        kernels = ", ".join(f"{k} {v / leaves:g}" for k, v in sorted(summary["kernels"].items()))
        copies = summary["kernels"].get("copy", 0)
        print(f"| {name} | {kernels} (per leaf) | {copies} | {summary['bytes_per_param']:.1f} |")
        if show_hlo and show_hlo in name:
            print(hlo)
        for _ in range(2):
            p, s = step(p, s, g)
        jax.block_until_ready(p)
        runs[name] = [step, p, s, [], [], []]
    triad = triad_step()
    a, b = jnp.zeros(params, jnp.float32), jnp.ones(params, jnp.float32)
    a = jax.block_until_ready(triad(a, b))
    triad_times = []
    for _ in range(repeats):
        for run in runs.values():
            step, p, s, times, faults, cpu = run
            time.sleep(0.02)
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            p, s = step(p, s, g)
            jax.block_until_ready(p)
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_SELF)
            faults.append(after.ru_minflt - before.ru_minflt)
            cpu.append(_cpu_seconds(after) - _cpu_seconds(before))
            run[1], run[2] = p, s
        time.sleep(0.02)
        start = time.perf_counter()
        a = jax.block_until_ready(triad(a, b))
        triad_times.append(time.perf_counter() - start)
    bandwidth = TRIAD_BYTES * params / np.median(triad_times)
    reference = np.array(runs["jadam fp32"][3])
    cpu_reference = np.array(runs["jadam fp32"][5])
    print(f"\ntriad: {bandwidth / 1e9:.1f} GB/s (median of {repeats}, in place, 12 B/element)")
    print(
        "| candidate | median ms | ratio to jadam fp32 (median, quartiles) "
        "| CPU ms | CPU-time ratio | B/param at triad BW | page faults/step |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (_, _, _, times, faults, cpu) in runs.items():
        ratios = np.array(times) / reference
        q1, med, q3 = np.percentile(ratios, [25, 50, 75])
        cpu_ratio = np.median(np.array(cpu) / np.maximum(cpu_reference, 1e-6))
        effective = np.median(times) * bandwidth / params
        print(
            f"| {name} | {1e3 * np.median(times):.2f} | {med:.2f} ({q1:.2f}–{q3:.2f}) "
            f"| {1e3 * np.median(cpu):.1f} | {cpu_ratio:.2f} "
            f"| {effective:.1f} | {np.median(faults):.0f} |"
        )


def _cpu_seconds(usage) -> float:
    """User plus system CPU time of the process (both cores) in a ``getrusage`` result."""
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=10_000_000)
    parser.add_argument("--leaves", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--show-hlo", default=None, help="print the HLO of candidates matching")
    parser.add_argument(
        "--only", nargs="+", default=None, help="candidates matching (jadam fp32 always runs)"
    )
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; fused kernel off")
    for leaves in args.leaves:
        profile(args.params, leaves, args.repeats, args.show_hlo, args.only)


if __name__ == "__main__":
    main()
