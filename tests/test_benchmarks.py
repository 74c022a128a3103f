"""The benchmark harness's own logic on tiny trees (no assertion on any time)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import candidates, layouts, report, run


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
        np.testing.assert_allclose(final, finals["optax"], atol=1e-3 * moved, err_msg=name)


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
