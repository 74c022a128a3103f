"""Turns benchmark results into benchmarks/RESULTS.md and a PNG plot."""

from __future__ import annotations

import pathlib

# Everything from this line on in an existing report survives regeneration.
KEPT_MARKER = "<!-- kept when regenerated: notes and other machines -->"
SUMMARY_COLUMNS = ("optax", "torch fused", "torch default", "jadam", "jadam fused")


def _ms(stats: dict | None) -> str:
    return "—" if stats is None else f"{stats['median_ms']:.2f}"


def case_line(case: dict) -> str:
    """One console line per case: medians and ratios to the reference."""
    parts = [
        f"{name} {s['median_ms']:.2f}ms (×{s['ratio_to_reference']:.2f})"
        for name, s in case["candidates"].items()
    ]
    return f"  [{case['reference']} = ×1] " + ", ".join(parts)


def _summary_table(cases: list[dict]) -> list[str]:
    lines = [
        "| case | " + " | ".join(SUMMARY_COLUMNS) + " | floor | jadam fused ÷ ref | "
        "jadam fused ÷ optax | jadam ÷ optax |",
        "|---|" + "---:|" * (len(SUMMARY_COLUMNS) + 4),
    ]
    for case in cases:
        c = case["candidates"]
        fused = c.get("jadam fused", {})
        pure = c.get("jadam", {})
        floor = "—" if case["floor_ms"] is None else f"{case['floor_ms']:.2f}"
        ref = case["reference"].removeprefix("torch ")
        cells = [_ms(c.get(name)) for name in SUMMARY_COLUMNS]
        lines.append(
            f"| {case['label']} | " + " | ".join(cells) + f" | {floor} | "
            f"{fused.get('ratio_to_reference', float('nan')):.2f} ({ref}) | "
            f"{fused.get('ratio_to_optax', float('nan')):.2f} | "
            f"{pure.get('ratio_to_optax', float('nan')):.2f} |"
        )
    return lines


def _case_table(case: dict) -> list[str]:
    lines = [
        f"#### {case['label']} ({case['reps']} timed steps each; ratios against "
        f"{case['reference']})",
        "",
        "| candidate | median ms | quartiles ms | × ref | × optax | of floor "
        "| max abs Δθ vs optax |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in case["candidates"].items():
        floor = f"{s['floor_fraction']:.0%}" if "floor_fraction" in s else ""
        dev = s.get("max_abs_param_difference_to_optax")
        lines.append(
            f"| {name} | {s['median_ms']:.2f} | {s['q1_ms']:.2f}–{s['q3_ms']:.2f} | "
            f"{s['ratio_to_reference']:.2f} | {s.get('ratio_to_optax', float('nan')):.2f} | "
            f"{floor} | {'' if dev is None else f'{dev:.1e}'} |"
        )
    if case["triad_bandwidth_gbs"] is not None:
        lines.append("")
        lines.append(
            f"Best triad bandwidth {case['triad_bandwidth_gbs']:.1f} GB/s → floor "
            f"{case['floor_ms']:.2f} ms for 28 bytes/parameter."
        )
    return [*lines, ""]


def _compile_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(not run)"]
    names = list(rows[0]["seconds"])
    lines = [
        "| leaves (1M params) | " + " | ".join(f"{n} s" for n in names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for row in rows:
        cells = [f"{row['seconds'][n]:.2f}" for n in names]
        lines.append(f"| {row['leaves']} | " + " | ".join(cells) + " |")
    return lines


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
    names = ["optax", "jadam", "jadam fused", "torch default", "torch foreach", "torch fused"]
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
    for name in results["compile"][0]["seconds"] if results["compile"] else []:
        leaves = [r["leaves"] for r in results["compile"]]
        right.plot(leaves, [r["seconds"][name] for r in results["compile"]], "o-", label=name)
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
        "One fp32 optimizer step = update + apply, from the same parameters and gradients for "
        "every candidate. JAX steps are `jax.jit`-ed with parameters and state donated "
        "(`jadam fused` calls `tx.apply_gradients`, the one-pass in-place kernel; `jadam fused "
        "(update)` is `tx.update` + `optax.apply_updates`). All candidates of a case run in one "
        "process, interleaved (order rotated every repetition) after warm-up steps, each step "
        f"after the same {1e3 * results['settle_s']:.0f} ms settle pause. *× ref* and "
        "*× optax* are medians over repetitions of the ratio of two candidates' times in the "
        "same repetition. The *floor* is 28 bytes/parameter (read θ, g, m, v; write θ, m, v) "
        "at the best bandwidth of an in-place triad (`a ← a + 1.5·b`, JAX or torch) measured in "
        "the same case. "
        "`jit dispatch (identity)` is a jitted function that only passes the same donated tree "
        "through: JAX's fixed per-call cost for that many leaves. `jadam fused (update)` (the "
        "optax-composable `tx.update` of `fused=True`) writes the updates to a fresh buffer "
        "every step, which XLA's CPU runtime takes from the OS so that every page faults on "
        "first touch, and applies them in a second pass; use `apply_gradients` for speed. "
        "Compile time is trace + lower + compile of a fresh `jax.jit` of the step; `jadam "
        "fused` initialises packed moments (one vector each), and the two `jit identity` rows "
        "are the floors for per-leaf and for packed moments. The "
        "shared machine drifts (see the load averages above), so quote ratios, not absolute "
        "times.",
        "",
        "## Summary (median ms per step)",
        "",
    ]
    lines += _summary_table(results["cases"])
    lines += ["", "## Compile time of the jitted step (Adam)", ""]
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
