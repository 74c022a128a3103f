"""The benchmark harness's own logic on tiny trees (no assertion on any time)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from benchmarks import candidates, layouts, report, run, train_step


@pytest.mark.parametrize("n", [1000, 10**6, 5 * 10**7])
def test_layouts_add_up(n):
    assert sum(layouts.one_leaf(n)) == n
    assert sum(layouts.equal_leaves(n, 200)) == n and len(layouts.equal_leaves(n, 200)) == 200
    sizes = layouts.transformer(n)
    assert sum(sizes) >= n and len(sizes) == 8 * 16 + 3
    assert max(sizes) > 10 * min(sizes)  # big matrices and small vectors


def test_summary_ratios_and_floor():
    case = run.Case("adam", "1 leaf", 1000)
    times = {
        "optax": [2.0, 4.0, 2.0],
        "torch fused": [1.0, 2.0, 1.0],
        "triad (jax)": [0.6, 0.6, 0.6],
        "triad (torch)": [0.3, 0.9, 0.3],
    }
    s = run.summarize(case, times, {"optax": 0.0})
    assert s["reference"] == "torch fused"
    assert s["candidates"]["optax"]["ratio_to_reference"] == pytest.approx(2.0)
    assert s["candidates"]["torch fused"]["ratio_to_optax"] == pytest.approx(0.5)
    # floor = 28/12 of the best triad median (0.3 s of torch's triad)
    assert s["floor_ms"] == pytest.approx(1e3 * 0.3 * 28 / 12)
    assert s["candidates"]["optax"]["floor_fraction"] == pytest.approx(0.7 / 2.0)


def test_bytes_per_param_of_each_call_path(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    moved = {name: candidates.bytes_per_param(name) for name in candidates.JAX_CANDIDATES}
    assert moved["optax"] == moved["jadam"] == moved["jadam fused"] == 28
    assert (moved["jadam fused bf16"], moved["jadam fused 8bit"]) == (20, 16)
    # fp32: the kernel writes m and v alone, XLA's apply reads them again (+8); 16-bit and
    # 8-bit: + θ read and written by the apply, + XLA's copy of the non-donated gradient
    assert moved["jadam fused (update)"] == 36 and moved["jadam fused bf16 (update)"] == 36
    assert moved["jadam fused 8bit (update)"] == 32
    assert candidates.one_pass("jadam fused bf16")
    assert not candidates.one_pass("jadam fused bf16 (update)")
    # bf16 under region analysis: kernel g, m, v → m, v (12 B); XLA θ, g, m, v → θ (16 B)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_copy_insertion_use_region_analysis=true")
    assert candidates.bytes_per_param("jadam fused bf16 (update)") == 28
    assert candidates.bytes_per_param("jadam fused 8bit (update)") == 32


def test_targets_table_reads_the_ratios():
    case = run.Case("adam", "leaves", 10**7, 100)
    times = {"optax": [2.0, 2.0], "jadam fused (update)": [1.0, 3.0], "torch fused": [1.0, 1.0]}
    times |= {"jadam fused 8bit": [0.5, 0.5], "triad (jax)": [1.0, 1.0]}
    results = {"cases": [run.summarize(case, times, {})], "compile": []}
    results["compile"] = [{"leaves": 1000, "seconds": {"jadam fused": 0.7}}]
    rows = {line.split("|")[1].strip(): line for line in report.targets_table(results)[2:]}
    assert "| 1.00 | ≤ 0.85 | no |" in rows["standard path, fused fp32 (÷ optax)"]
    assert "| 0.50 | ≤ 0.7 | yes |" in rows["one pass, 8-bit (÷ torch fused)"]
    assert "| 0.70 s | ≤ 0.5 s | no |" in rows["compile, fused step"]
    # 16 B/param at 12 B per triad millisecond... floor 16/12 ms against torch's 1 ms
    assert "| 1.33 | 16 |" in rows["one pass, 8-bit (÷ torch fused)"]


def test_reference_falls_back_without_torch_fused():
    case = run.Case("adamax", "1 leaf", 1000)
    names = run.candidate_names(case)
    assert "torch fused" not in names
    assert run.reference_name(case, names) in ("torch foreach", "optax")


def test_all_candidates_compute_the_same_step():
    sizes = layouts.transformer(3000)
    finals = {}
    for name in candidates.JAX_CANDIDATES + candidates.TORCH_CANDIDATES:
        if not candidates.available(name):
            continue
        cand = candidates.make(name, "adamw", sizes)
        for _ in range(3):
            cand.step()
        finals[name] = cand.params()
    start = np.concatenate(candidates.make_arrays(sizes)[0])
    moved = np.max(np.abs(finals["optax"] - start))
    assert moved > 1e-3
    for name, final in finals.items():
        # Low-precision moments change each update by their rounding (8-bit: ~1% of a block's
        # largest value), fp32 ones only by float32 rounding.
        tolerance = 1e-3 if candidates.state_precision(name) is None else 5e-2
        np.testing.assert_allclose(final, finals["optax"], atol=tolerance * moved, err_msg=name)


def test_end_to_end_writes_report(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text(f"old table\n{report.KEPT_MARKER}\n## GPU notes\nkept\n")
    results = run.run(
        [run.Case("adam", "leaves", 2000, 100), run.Case("adamax", "transformer", 3000)],
        compile_leaves=[2, 5],
        memory_case=None,
        reps=2,
        warmup=1,
        settle=0.0,
        compile_params=100,
        out=out,
        command="test",
        isolate=False,  # in this process; test_one_case_in_a_subprocess covers the other way
    )
    text = out.read_text()
    assert "## Summary" in text and "jadam fused" in text and "| 5 |" in text
    assert "## Issue 12 targets" in text
    assert "old table" not in text and text.endswith(f"{report.KEPT_MARKER}\n## GPU notes\nkept\n")
    assert (tmp_path / "results.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["cases"][0]["label"] == results["cases"][0]["label"]
    for case in results["cases"]:
        assert case["candidates"][case["reference"]]["ratio_to_reference"] == 1.0
        for stats in case["candidates"].values():
            assert stats["q1_ms"] <= stats["median_ms"] <= stats["q3_ms"]
        assert "jit dispatch (identity)" in case["candidates"]  # ≥ 100 leaves


def test_memory_subprocess_reports_bytes():
    rows = run.memory(run.Case("adam", "1 leaf", 100_000), ["jadam fused"])
    (row,) = rows
    assert "error" not in row, row
    assert row["live"] > row["after_imports"] > 0
    lines = report._memory_table(rows)
    assert any(line.startswith("| jadam fused |") for line in lines)


def test_one_case_in_a_subprocess():
    case = run.Case("adam", "1 leaf", 1000)
    result = run.time_case_in_subprocess(case, reps=1, warmup=0, settle=0.0, budget_s=1.0)
    assert result["label"] == case.label
    assert result["reps"] == 1 and "jadam fused" in result["candidates"]


@pytest.mark.parametrize("model", ["transformer", "mlp"])
def test_train_step_full_models_have_the_issue_sizes(model):
    from flax import nnx

    size = train_step.SIZES[model]["full"]
    build = train_step._nnx_transformer if model == "transformer" else train_step._nnx_mlp
    shapes = nnx.eval_shape(lambda: build(size, nnx.Rngs(0)))
    leaves = [x.size for x in jax.tree.leaves(nnx.state(shapes, nnx.Param))]
    assert 9.5e6 < sum(leaves) < 10.5e6
    assert (90 <= len(leaves) <= 110) if model == "transformer" else len(leaves) == 8


def test_train_step_smoke(tmp_path):
    size = train_step.SIZES["transformer"]["tiny"]
    names = ["optax", "sgd", "jadam fused 8bit, jadam.flax", "torch fused", "torch sgd"]
    names = [n for n in names if candidates.available(n)]
    result = train_step.time_model("transformer", size, 1, 1, 0.0, 1.0, names=names)
    assert set(result["candidates"]) == set(names)
    assert result["candidates"]["optax"]["ratio_to_optax"] == 1.0
    jax_params = result["candidates"]["optax"]["params"]
    if "torch fused" in names:  # the same model in torch
        assert result["candidates"]["torch fused"]["params"] == jax_params
    out = tmp_path / "RESULTS_train_step.md"
    results = {"command": "test", "date_utc": "now", "load_average": [0.0], "models": [result]}
    train_step.write_markdown(results, out)
    text = out.read_text()
    assert "| jadam fused 8bit, jadam.flax | transformer |" in text and "### transformer" in text


def test_family_keeps_each_members_best_alpha_and_skips_diverged_runs():
    from benchmarks import family

    rows = [
        {"run": "adam_0", "final_train_loss": 0.5},
        {"run": "adam_1", "final_train_loss": 0.3},
        {"run": "adam_2", "final_train_loss": float("nan")},
        {"run": "schedule_free_adamw_0", "final_train_loss": None},
        {"run": "schedule_free_adamw_1", "final_train_loss": 0.7},
    ]
    best = family.best_runs(rows)
    assert best["adam"]["run"] == "adam_1"
    assert best["schedule_free_adamw"]["run"] == "schedule_free_adamw_1"


def test_command_line_records_the_xla_flags(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert report.command_line("benchmarks.run", ["--quick"]) == "python -m benchmarks.run --quick"
    monkeypatch.setenv("XLA_FLAGS", "--xla_a=true --xla_b=1")
    assert report.command_line("benchmarks.train_step", []) == (
        "XLA_FLAGS='--xla_a=true --xla_b=1' python -m benchmarks.train_step"
    )
