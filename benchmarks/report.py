"""Turns ``python -m benchmarks.run``'s results into benchmarks/RESULTS.md and a PNG plot."""

from __future__ import annotations

import os
import pathlib
import shlex

from benchmarks import candidates

# Everything from this line on in an existing report survives regeneration.
KEPT_MARKER = "<!-- kept when regenerated: notes and other machines -->"
SUMMARY_COLUMNS = ("optax", "torch fused", "torch default", "jadam", "jadam fused")


def command_line(module: str, argv: list[str]) -> str:
    """The command that reproduces a run, with the XLA_FLAGS it ran under (they change XLA's
    compile: e.g. ``--xla_cpu_copy_insertion_use_region_analysis=true``, see docs/speed.md)."""
    flags = os.environ.get("XLA_FLAGS", "").strip()
    prefix = f"XLA_FLAGS={shlex.quote(flags)} " if flags else ""
    return f"{prefix}python -m {module} {' '.join(argv)}".strip()


def _ms(stats: dict | None) -> str:
    return "—" if stats is None else f"{stats['median_ms']:.2f}"


def case_line(case: dict) -> str:
    """One console line per case: medians and ratios to the reference."""
    parts = [
        f"{name} {s['median_ms']:.2f}ms (×{s['ratio_to_reference']:.2f})"
        for name, s in case["candidates"].items()
    ]
    return f"  [{case['reference']} = ×1] " + ", ".join(parts)


# Rows of the ratio tables: (title, baseline, candidates).
RATIO_TABLES = (
    (
        "Standard path (`tx.update` + `optax.apply_updates`), ratio to optax.adam",
        "optax",
        (
            *(n for n in candidates.JAX_CANDIDATES if n != "optax" and not candidates.one_pass(n)),
            "torch fused",
        ),
    ),
    (
        "One pass (`tx.apply_gradients`), ratio to torch.optim fused",
        "torch fused",
        ("optax", "jadam fused", "jadam fused bf16", "jadam fused 8bit"),
    ),
    ("Pure path (no kernel), ratio to jadam fp32", "jadam", ("jadam bf16", "jadam 8bit")),
)
# Issue 12's step-time targets: (what, candidate, baseline, largest ratio that meets it).
TARGETS = (
    ("standard path, fused fp32", "jadam fused (update)", "optax", 0.85),
    ("standard path, fused bf16", "jadam fused bf16 (update)", "optax", 0.70),
    ("standard path, fused 8-bit", "jadam fused 8bit (update)", "optax", 0.60),
    ("one pass, fp32", "jadam fused", "torch fused", 1.0),
    ("one pass, bf16", "jadam fused bf16", "torch fused", 0.8),
    ("one pass, 8-bit", "jadam fused 8bit", "torch fused", 0.7),
    ("pure path, bf16", "jadam bf16", "jadam", 1.3),
    ("pure path, 8-bit", "jadam 8bit", "jadam", 2.0),
)
COMPILE_TARGETS = ((1000, 0.5), (3000, 1.0))  # fused step, 1M parameters: leaves, seconds


def _ratio_table(cases: list[dict], base: str, names: tuple[str, ...]) -> list[str]:
    """Candidates × cases: median same-repetition ratio to ``base``."""
    lines = [
        "| candidate | " + " | ".join(c["label"] for c in cases) + " |",
        "|---|" + "---:|" * len(cases),
    ]
    for name in names:
        cells = []
        for case in cases:
            ratio = case["candidates"].get(name, {}).get("ratio_to", {}).get(base)
            cells.append("—" if ratio is None else f"{ratio:.2f}")
        if any(cell != "—" for cell in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _summary_table(cases: list[dict]) -> list[str]:
    lines = [
        "| case | optax ms | torch fused ms | jadam fused ms | triad GB/s | floor ms (28 B) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        c = case["candidates"]
        bandwidth = case["triad_bandwidth_gbs"]
        floor = "—" if case["floor_ms"] is None else f"{case['floor_ms']:.2f}"
        lines.append(
            f"| {case['label']} | {_ms(c.get('optax'))} | {_ms(c.get('torch fused'))} | "
            f"{_ms(c.get('jadam fused'))} | {'—' if bandwidth is None else f'{bandwidth:.1f}'} "
            f"| {floor} |"
        )
    for title, base, names in RATIO_TABLES:
        lines += ["", f"**{title}** (median of same-repetition ratios):", ""]
        lines += _ratio_table(cases, base, names)
    return lines


def _is_target_case(case: dict) -> bool:
    spec = case["case"]
    return (
        spec["algorithm"] == "adam"
        and spec["params"] == 10_000_000
        and case["leaves"] in (1, 100)
        and spec["layout"] in ("1 leaf", "leaves")
    )


def targets_table(results: dict) -> list[str]:
    """Each issue-12 target next to its measured ratio, and the ratio the bandwidth allows."""
    lines = [
        "| target | case | measured | target | met | bandwidth floor allows | bytes/param |",
        "|---|---|---:|---:|:---:|---:|---:|",
    ]
    for case in filter(_is_target_case, results["cases"]):
        c = case["candidates"]
        for what, name, base, limit in TARGETS:
            if name not in c or base not in c:
                continue
            ratio = c[name]["ratio_to"][base]
            best = c[name].get("floor_ms")
            best = "—" if best is None else f"{best / c[base]['median_ms']:.2f}"
            met = "yes" if ratio <= limit else "no"
            lines.append(
                f"| {what} (÷ {base}) | {case['label']} | {ratio:.2f} | ≤ {limit:g} | {met} "
                f"| {best} | {c[name].get('bytes_per_param', '—')} |"
            )
    by_leaves = {row["leaves"]: row["seconds"] for row in results.get("compile", [])}
    for leaves, limit in COMPILE_TARGETS:
        seconds = by_leaves.get(leaves, {}).get("jadam fused")
        if seconds is not None:
            met = "yes" if seconds <= limit else "no"
            lines.append(
                f"| compile, fused step | {leaves} leaves, 1M params | {seconds:.2f} s "
                f"| ≤ {limit:g} s | {met} | | |"
            )
    return lines


def _case_table(case: dict) -> list[str]:
    lines = [
        f"#### {case['label']} ({case['reps']} timed steps each; ratios against "
        f"{case['reference']})",
        "",
        "| candidate | median ms | quartiles ms | × ref | × optax | of floor "
        "| page faults per step | max abs Δθ vs optax |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in case["candidates"].items():
        floor = f"{s['floor_fraction']:.0%}" if "floor_fraction" in s else ""
        dev = s.get("max_abs_param_difference_to_optax")
        faults = s.get("page_faults_per_step")
        lines.append(
            f"| {name} | {s['median_ms']:.2f} | {s['q1_ms']:.2f}–{s['q3_ms']:.2f} | "
            f"{s['ratio_to_reference']:.2f} | {s.get('ratio_to_optax', float('nan')):.2f} | "
            f"{floor} | {'' if faults is None else f'{faults:.0f}'} "
            f"| {'' if dev is None else f'{dev:.1e}'} |"
        )
    if case["triad_bandwidth_gbs"] is not None:
        lines.append("")
        lines.append(
            f"Best triad bandwidth {case['triad_bandwidth_gbs']:.1f} GB/s → floor "
            f"{case['floor_ms']:.2f} ms for 28 bytes/parameter."
        )
    return [*lines, ""]


def _compile_table(rows: list[dict]) -> list[str]:
    """Seconds per candidate and leaf count ("—": not compiled at that size), then the fused
    steps' and the floors' split into tracing, lowering and XLA's compile."""
    if not rows:
        return ["(not run)"]
    names = list(dict.fromkeys(n for row in rows for n in row["seconds"]))
    lines = [
        "| leaves (1M params) | " + " | ".join(f"{n} s" for n in names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for row in rows:
        cells = [_seconds(row["seconds"].get(n)) for n in names]
        lines.append(f"| {row['leaves']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| leaves | candidate | trace s | lower s | XLA compile s |",
        "|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        for name, phases in row.get("phases", {}).items():
            if name.startswith(("jadam fused", "jit")):
                cells = [_seconds(phases.get(p)) for p in ("trace", "lower", "compile")]
                lines.append(f"| {row['leaves']} | {name} | " + " | ".join(cells) + " |")
    return lines


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _memory_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(not run)"]
    label = next((r["label"] for r in rows if "label" in r), "")
    lines = [
        f"{label}; bytes per parameter. *live*: resident memory with parameters, gradients and "
        "optimizer state allocated, over the process after imports (16 = θ, g, m, v in fp32); "
        "*transient*: peak while stepping (after the first, compiling, step) over *live*.",
        "",
        "| candidate | live B/param | transient B/param | device peak B/param |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['candidate']} | error: {r['error']} | | |")
            continue
        n = r["params"]
        live = (r["live"] - r["after_imports"]) / n
        peak = r.get("peak_while_stepping")
        transient = "—" if peak is None else f"{max(0, peak - r['live']) / n:.1f}"
        device = f"{r['device_peak'] / n:.1f}" if "device_peak" in r else "—"
        lines.append(f"| {r['candidate']} | {live:.1f} | {transient} | {device} |")
    return lines


def plot(results: dict, path: pathlib.Path) -> None:
    """Left: step time relative to the reference per case. Right: compile time vs leaves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [2, 1]})
    cases = results["cases"]
    names = [
        "optax",
        "jadam",
        "jadam fused (update)",
        "jadam fused",
        "jadam fused bf16",
        "jadam fused 8bit",
        "torch default",
        "torch fused",
    ]
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        xs, ys = [], []
        for i, case in enumerate(cases):
            if name in case["candidates"]:
                xs.append(i + (k - len(names) / 2 + 0.5) * width)
                ys.append(case["candidates"][name]["ratio_to_reference"])
        left.bar(xs, ys, width, label=name)
    left.axhline(1.0, color="black", linewidth=0.8)
    left.set_yscale("log")
    left.set_xticks(range(len(cases)))
    left.set_xticklabels([c["label"] for c in cases], rotation=35, ha="right", fontsize=7)
    left.set_ylabel("step time ÷ torch fused (same repetition, median)")
    left.legend(fontsize=7)
    compiled = results["compile"]
    for name in dict.fromkeys(n for row in compiled for n in row["seconds"]):
        rows = [r for r in compiled if name in r["seconds"]]
        right.plot(
            [r["leaves"] for r in rows], [r["seconds"][name] for r in rows], "o-", label=name
        )
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("leaves (1M parameters in all)")
    right.set_ylabel("jit compile time (s)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(
    results: dict, path: pathlib.Path, plot_path: pathlib.Path | None = None
) -> None:
    """Writes the full report, and the plot to ``plot_path`` when given."""
    m = results["machine"]
    lines = [
        "# jadam benchmarks: Adam steps against optax and torch.optim",
        "",
        f"Generated by `{results['command']}` on {m['date_utc']}. Regenerate with the same "
        "command; `--quick` runs 10M-parameter cases only.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in m.items()]
    lines += [
        "",
        "## Method",
        "",
        "One optimizer step = update + apply on fp32 parameters, from the same parameters and "
        "gradients for every candidate. JAX steps are `jax.jit`-ed with parameters and state "
        "donated. Two call paths: the *standard path* `u, s = tx.update(g, s, θ); θ = "
        "optax.apply_updates(θ, u)` (what `nnx.Optimizer.update` and Linen's "
        "`TrainState.apply_gradients` run: `optax`, `jadam`, `jadam bf16`, `jadam 8bit` and the "
        "`jadam fused … (update)` candidates) and the *one pass* `θ, s = tx.apply_gradients(θ, "
        "g, s)` (`jadam fused`, `jadam fused bf16`, `jadam fused 8bit`: what "
        "`jadam.flax.Optimizer` and `jadam.flax.TrainState` run). `bf16` and `8bit` are "
        '`state_precision="bfloat16"` / `"8bit"`. All candidates of a case run in one '
        "process, interleaved (order rotated every repetition) after warm-up steps, each step "
        f"after the same {1e3 * results['settle_s']:.0f} ms settle pause. *× ref* and "
        "*× optax* are medians over repetitions of the ratio of two candidates' times in the "
        "same repetition. The *floor* is the bytes per parameter a candidate must move at "
        "least (28 for an fp32 one pass: read θ, g, m, v, write θ, m, v; 20 with bf16 and 16 "
        "with 8-bit moments; 8 more for the fused fp32 `tx.update`: the kernel writes m and v "
        "only, and XLA's fusion of the update into the apply reads them again; 16 more for the "
        "fused bf16/8-bit `tx.update` called as here: XLA copies the non-donated gradient "
        "argument before the kernel writes the updates over it, and the apply reads θ and u "
        "and writes θ) at the "
        "best bandwidth of an in-place triad (`a ← a + 1.5·b`, JAX or torch) measured in the "
        "same case; *of floor* is the floor time over the measured time. "
        "`jit dispatch (identity)` is a jitted function that only passes the same donated tree "
        "through: JAX's fixed per-call cost for that many leaves. `jadam fused … (update)` is "
        "the optax-composable `tx.update` of `fused=True`: with fp32 moments the kernel "
        "updates m and v in place and XLA computes the updates from them inside "
        "`optax.apply_updates`' fusion; with bf16/8-bit moments the kernel writes the updates, "
        "and `optax.apply_updates` adds them to θ in a second pass. *page faults per step*: minor "
        "faults of the process during the step (`getrusage`); XLA's CPU runtime allocates every "
        "output and temporary buffer of a step anew, and glibc maps one above 32 MB fresh from "
        "the OS, so a step that needs a 40 MB temporary faults ~9,800 times (4 KiB pages). "
        "`fresh output (jax)` (`c = 1.5·a` into a new buffer each step) shows what that costs "
        "next to the in-place triad. "
        "Compile time is trace + lower + compile of a fresh `jax.jit` of the step; the fused "
        "steps initialise packed moments (one vector each), and the two `jit identity` rows "
        "are the floors for per-leaf and for packed moments (what jit and XLA spend on that "
        "many donated inputs and outputs with no computation); `jit optax.apply_updates "
        "(floor)` compiles the user's own `optax.apply_updates` alone (one XLA kernel per "
        "leaf), which every standard-path step (`tx.update`) contains. The "
        "shared machine drifts (see the load averages above), so quote ratios, not absolute "
        "times.",
        "",
        "## Summary (median ms per step)",
        "",
    ]
    lines += _summary_table(results["cases"])
    lines += ["", "## Issue 12 targets (10M parameters, Adam)", ""]
    lines += targets_table(results)
    lines += [
        "",
        "The whole-training-step targets are in `RESULTS_train_step.md` "
        "(`python -m benchmarks.train_step`).",
    ]
    lines += ["", "## Compile time of the jitted step (Adam, trace + lower + XLA compile)", ""]
    lines += _compile_table(results["compile"])
    lines += ["", "## Peak memory (one process per candidate)", ""]
    lines += _memory_table(results["memory"])
    if plot_path is not None:
        plot(results, plot_path)
        lines += ["", f"![step-time ratios and compile times]({plot_path.name})"]
    lines += ["", "## Every case", ""]
    for case in results["cases"]:
        lines += _case_table(case)
    kept = path.read_text().partition(KEPT_MARKER) if path.exists() else ("", "", "")
    tail = "".join(kept[1:])  # hand-written notes and runs on other machines, if any
    path.write_text("\n".join(lines) + "\n" + ("\n" + tail if tail else ""))
