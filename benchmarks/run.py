"""Benchmarks jadam against optax and torch.optim: ``python -m benchmarks.run [--quick]``.

Per case (algorithm × tree layout × parameter count) all candidates run in this one process,
interleaved (A B C … then the next repetition, the order rotated each time), after warm-up
steps; each timed step is preceded by the same short settle pause (torch's OpenMP workers keep
spinning after a step and would slow whatever runs next). Reported: median and quartiles per
candidate, the median over repetitions of each candidate's time divided by the reference's time
*in the same repetition* (robust to the machine's drift), and the bandwidth floor: 28 bytes per
parameter at the best triad bandwidth measured in the same case. Then compile time versus leaf
count, and peak memory per candidate (one subprocess each). Writes benchmarks/RESULTS.md,
results.json and results.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import pathlib
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np

from benchmarks import candidates, layouts, report

HERE = pathlib.Path(__file__).parent
BYTES_PER_PARAM = 28  # fp32 Adam: read θ, g, m, v; write θ, m, v
TRIAD_BYTES = 12  # c = a + s·b: read a, b; write c


@dataclasses.dataclass(frozen=True)
class Case:
    algorithm: str
    layout: str
    params: int
    leaves: int | None = None

    @property
    def sizes(self) -> list[int]:
        return layouts.LAYOUTS[self.layout](self.params, self.leaves)

    @property
    def label(self) -> str:
        return f"{self.algorithm}: {layouts.describe(self.layout, self.sizes)}"


M = 1_000_000
# The issue-12 targets are read at 10M parameters, 1 leaf and 100 leaves (Adam); the other cases
# check AdamW's decay, AdaMax, a transformer-like mix of sizes and many small leaves
# (dispatch). Larger trees (50M) added little and need ~1 GB per candidate.
FULL_CASES = (
    Case("adam", "1 leaf", 10 * M),
    Case("adam", "leaves", 10 * M, 100),
    Case("adam", "transformer", 10 * M),
    Case("adam", "leaves", 1 * M, 1000),
    Case("adamw", "leaves", 10 * M, 100),
    Case("adamax", "1 leaf", 10 * M),
)
QUICK_CASES = (
    Case("adam", "1 leaf", 10 * M),
    Case("adam", "leaves", 10 * M, 100),
)
FULL_COMPILE_LEAVES = (10, 100, 1000, 3000)
QUICK_COMPILE_LEAVES = (10, 100, 300)
COMPILE_CANDIDATES = ("optax", "jadam", "jadam fused (update)", "jadam fused")
# Above this many leaves only the fused steps are compiled (optax's and the pure path's take
# ~20 s at 3000 leaves, and their growth is known from the smaller trees).
ALL_COMPILE_CANDIDATES_UP_TO = 1000
RATIO_BASES = ("optax", "torch fused", "jadam")
MIN_REPS = 5


def candidate_names(case: Case) -> list[str]:
    """Candidates for a case: all optimizers, triads, and the dispatch probe for many leaves."""
    names = list(candidates.JAX_CANDIDATES) + list(candidates.TORCH_CANDIDATES)
    if case.algorithm == "adamax":
        names.remove("torch fused")  # torch has no fused Adamax
    names += ["triad (jax)", "triad (torch)", "fresh output (jax)"]
    if len(case.sizes) >= 100 and case.params <= 10 * M:  # where dispatch can matter
        names.append("jit dispatch (identity)")
    return [n for n in names if candidates.available(n)]


def reference_name(case: Case, names: Sequence[str]) -> str:
    """What ratios are taken against: torch fused, else torch foreach, else optax."""
    for name in ("torch fused", "torch foreach", "optax"):
        if name in names:
            return name
    return names[0]


def time_case(
    case: Case, reps: int, warmup: int, settle: float, budget_s: float = float("inf")
) -> dict:
    """Times every candidate of ``case``, interleaved; returns per-candidate statistics.

    Stops early, after at least ``MIN_REPS`` timed repetitions, once the case has run for
    ``budget_s`` seconds (a loaded machine makes the slowest candidates very slow).
    """
    names = candidate_names(case)
    built = [candidates.make(name, case.algorithm, case.sizes) for name in names]
    times = {name: [] for name in names}
    faults = {name: [] for name in names}
    started = time.perf_counter()
    for rep in range(warmup + reps):
        timed = rep - warmup
        if timed >= MIN_REPS and time.perf_counter() - started > budget_s:
            break
        shift = rep % len(built)
        for cand in built[shift:] + built[:shift]:
            time.sleep(settle)
            faulted = _minor_faults()
            start = time.perf_counter()
            cand.step()
            elapsed = time.perf_counter() - start
            if rep >= warmup:
                times[cand.name].append(elapsed)
                faults[cand.name].append(_minor_faults() - faulted)
    # Every optimizer ran warmup + reps steps from the same start: their parameters must agree.
    finals = {c.name: c.params() for c in built}
    baseline = finals.get("optax")  # low-precision state deviates by its rounding
    deviation = {}
    for name, final in finals.items():
        if final is not None and baseline is not None:
            deviation[name] = float(np.max(np.abs(final - baseline)))
    del built, finals
    gc.collect()
    return summarize(case, times, deviation, faults)


def _minor_faults() -> int:
    """This process's minor page faults so far (first touches of freshly mapped pages)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_case_in_subprocess(
    case: Case, reps: int, warmup: int, settle: float, budget_s: float
) -> dict:
    """``time_case`` in a fresh process, so that each case's memory goes back to the OS."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--one-case",
        json.dumps(dataclasses.asdict(case)),
    ]
    cmd += ["--reps", str(reps), "--warmup", str(warmup), "--settle", str(settle)]
    cmd += ["--budget", str(budget_s)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"timing {case.label} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(
    case: Case,
    times: dict[str, list[float]],
    deviation: dict[str, float],
    faults: dict[str, list[int]] | None = None,
) -> dict:
    """Medians, quartiles, same-repetition ratios and the bandwidth floor for one case.

    ``faults``: minor page faults of the process during each timed step (median reported).
    """
    names = list(times)
    ref = reference_name(case, [n for n in names if not n.startswith(("triad", "jit", "fresh"))])
    n = case.params
    stats = {}
    for name, ts in times.items():
        arr = np.asarray(ts)
        q1, med, q3 = np.percentile(arr, [25, 50, 75])
        stats[name] = {"median_ms": 1e3 * med, "q1_ms": 1e3 * q1, "q3_ms": 1e3 * q3}
        stats[name]["ratio_to_reference"] = float(np.median(arr / np.asarray(times[ref])))
        # Same-repetition ratios to each baseline a target is stated against.
        stats[name]["ratio_to"] = {
            base: float(np.median(arr / np.asarray(times[base])))
            for base in RATIO_BASES
            if base in times
        }
        if "optax" in times:
            stats[name]["ratio_to_optax"] = stats[name]["ratio_to"]["optax"]
        if name in deviation:
            stats[name]["max_abs_param_difference_to_optax"] = deviation[name]
        if faults and faults.get(name):
            stats[name]["page_faults_per_step"] = float(np.median(faults[name]))
    triads = [stats[t]["median_ms"] for t in ("triad (jax)", "triad (torch)") if t in stats]
    floor_ms = None
    if triads:
        bandwidth = TRIAD_BYTES * n / (1e-3 * min(triads))  # bytes per second
        floor_ms = 1e3 * BYTES_PER_PARAM * n / bandwidth
        for name in names:
            if not name.startswith(("triad", "jit", "fresh")):
                moved = candidates.bytes_per_param(name)
                stats[name]["bytes_per_param"] = moved
                stats[name]["floor_ms"] = 1e3 * moved * n / bandwidth
                stats[name]["floor_fraction"] = stats[name]["floor_ms"] / stats[name]["median_ms"]
    return {
        "case": dataclasses.asdict(case),
        "label": case.label,
        "leaves": len(case.sizes),
        "reference": ref,
        "floor_ms": floor_ms,
        "triad_bandwidth_gbs": (TRIAD_BYTES * n / (1e-3 * min(triads)) / 1e9) if triads else None,
        "reps": len(next(iter(times.values()))),
        "candidates": stats,
    }


def compile_times(leaf_counts: Sequence[int], params: int, algorithm: str = "adam") -> list[dict]:
    """Seconds to trace, lower and compile the jitted step, per candidate and leaf count.

    ``seconds`` holds the total per candidate, ``phases`` the trace / lower / XLA-compile split.
    """
    import jax
    import optax

    # One-time costs (first use of a primitive's lowering, caches) are not per-step compile
    # time: compile each candidate once on a 2-leaf tree before timing.
    warm = [jax.ShapeDtypeStruct((8,), np.float32)] * 2
    for name in COMPILE_CANDIDATES:
        step, tx = candidates.jax_step_function(name, algorithm)
        step.lower(warm, warm, jax.eval_shape(tx.init, warm)).compile()
    rows = []
    for leaves in leaf_counts:
        sizes = layouts.equal_leaves(params, leaves)
        tree = [jax.ShapeDtypeStruct((s,), np.float32) for s in sizes]
        row = {"leaves": leaves, "params": params, "seconds": {}, "phases": {}}
        names = COMPILE_CANDIDATES
        if leaves > ALL_COMPILE_CANDIDATES_UP_TO:
            names = [n for n in names if n.startswith("jadam fused")]
        for name in names:
            step, tx = candidates.jax_step_function(name, algorithm)
            state = jax.eval_shape(tx.init, tree)
            phases = _timed_phases(step, tree, tree, state)
            row["seconds"][name] = sum(phases.values())
            row["phases"][name] = phases
        # The floors: a jitted function that only passes the same donated arrays through, with
        # moments per leaf (optax, jadam) or packed in one vector each (jadam fused on CPU);
        # and the standard path's own share, `optax.apply_updates` alone (one add per leaf).
        packed = jax.ShapeDtypeStruct((sum(sizes),), np.float32)
        for label, moments in (("jit identity (floor)", tree), ("jit identity, packed", packed)):
            identity = jax.jit(lambda p, g, m, v: (p, m, v), donate_argnums=(0, 2, 3))
            phases = _timed_phases(identity, tree, tree, moments, moments)
            row["seconds"][label] = sum(phases.values())
            row["phases"][label] = phases
        apply_only = jax.jit(optax.apply_updates, donate_argnums=(0,))
        phases = _timed_phases(apply_only, tree, tree)
        row["seconds"]["jit optax.apply_updates (floor)"] = sum(phases.values())
        row["phases"]["jit optax.apply_updates (floor)"] = phases
        rows.append(row)
        print(f"  compile, {leaves} leaves: {row['seconds']}", flush=True)
    return rows


def _timed_phases(jitted, *args) -> dict[str, float]:
    """Seconds of ``jitted``'s trace, lowering and XLA compile for these abstract ``args``."""
    start = time.perf_counter()
    traced = jitted.trace(*args)
    traced_at = time.perf_counter()
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    lowered.compile()
    done = time.perf_counter()
    phases = {"trace": traced_at - start, "lower": lowered_at - traced_at}
    return phases | {"compile": done - lowered_at}


def memory(case: Case, names: Sequence[str]) -> list[dict]:
    """Runs benchmarks.memory for each candidate in a fresh subprocess."""
    rows = []
    sizes = ",".join(str(s) for s in case.sizes)
    for name in names:
        cmd = [sys.executable, "-m", "benchmarks.memory", "--candidate", name]
        cmd += ["--algorithm", case.algorithm, "--sizes", sizes]
        out = subprocess.run(
            cmd, capture_output=True, text=True, cwd=HERE.parent, check=False, timeout=600
        )
        if out.returncode != 0:
            rows.append({"candidate": name, "error": out.stderr.strip().splitlines()[-1:]})
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["label"] = case.label
        rows.append(row)
        print(f"  memory, {name}: {row}", flush=True)
    return rows


def machine() -> dict:
    """What the numbers were measured on."""
    import platform

    import jax

    info = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jax_device": str(jax.devices()[0]),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        info["cpu"] = models[0] if models else platform.processor()
    meminfo = pathlib.Path("/proc/meminfo")
    if meminfo.exists():
        info["memory_gib"] = round(int(meminfo.read_text().split()[1]) / 2**20, 1)
    import optax

    info["optax"] = optax.__version__
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_device"] = candidates.torch_device()
    except ImportError:
        info["torch"] = None
    import jadam

    info["jadam_fused_kernel"] = jadam.fused_kernel_available()
    return info


def run(
    cases: Sequence[Case],
    compile_leaves: Sequence[int],
    memory_case: Case | None,
    reps: int,
    warmup: int,
    settle: float,
    compile_params: int = M,
    budget_s: float = float("inf"),
    out: pathlib.Path = HERE / "RESULTS.md",
    command: str = "python -m benchmarks.run",
    isolate: bool = True,
) -> dict:
    """Runs everything and writes the report next to ``out``; returns the results."""
    results = {"machine": machine(), "command": command, "settle_s": settle, "cases": []}
    for case in cases:
        print(f"timing {case.label} ...", flush=True)
        timer = time_case_in_subprocess if isolate else time_case
        results["cases"].append(timer(case, reps, warmup, settle, budget_s))
        print(report.case_line(results["cases"][-1]), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)  # partial results survive an abort
        out.with_name("results.json").write_text(json.dumps(results, indent=1))
    print("compile times ...", flush=True)
    results["compile"] = compile_times(compile_leaves, compile_params) if compile_leaves else []
    results["memory"] = []
    if memory_case is not None:
        print(f"memory ({memory_case.label}) ...", flush=True)
        probes = ("triad", "jit", "fresh")
        names = [n for n in candidate_names(memory_case) if not n.startswith(probes)]
        results["memory"] = memory(memory_case, names)
    results["machine"]["load_average_at_end"] = (
        os.getloadavg() if hasattr(os, "getloadavg") else None
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name("results.json").write_text(json.dumps(results, indent=1))
    report.write_markdown(results, out, plot_path=out.with_name("results.png"))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10M-param cases, fewer reps")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per candidate")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--settle", type=float, default=0.005, help="pause before each step, s")
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds per case before stopping early"
    )
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--match", action="append", help="only cases whose label contains this (repeatable)"
    )
    parser.add_argument("--compile-leaves", help="comma-separated leaf counts for compile times")
    parser.add_argument("--one-case", help=argparse.SUPPRESS)  # internal: JSON of one Case
    args = parser.parse_args(argv)
    if args.one_case:
        case = Case(**json.loads(args.one_case))
        result = time_case(case, args.reps or 15, args.warmup, args.settle, args.budget)
        print(json.dumps(result))
        return
    cases = QUICK_CASES if args.quick else FULL_CASES
    reps = args.reps or (7 if args.quick else 15)
    leaves = QUICK_COMPILE_LEAVES if args.quick else FULL_COMPILE_LEAVES
    if args.compile_leaves:
        leaves = tuple(int(n) for n in args.compile_leaves.split(","))
    leaves = () if args.no_compile else leaves
    if args.match:
        cases = [c for c in cases if any(m in c.label for m in args.match)]
    memory_case = None if args.no_memory else Case("adam", "1 leaf", 10 * M)
    command = report.command_line("benchmarks.run", sys.argv[1:] if argv is None else argv)
    run(
        cases,
        leaves,
        memory_case,
        reps,
        args.warmup,
        args.settle,
        out=args.out,
        command=command,
        budget_s=args.budget,
    )


if __name__ == "__main__":
    main()
