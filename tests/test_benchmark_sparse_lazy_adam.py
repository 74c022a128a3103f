"""The sparse lazy Adam benchmark script runs end to end on a tiny table (no timing asserted)."""

from __future__ import annotations

from benchmarks import bench_sparse_lazy_adam


def test_benchmark_runs_on_a_tiny_table(capsys):
    summary = bench_sparse_lazy_adam.main(
        ["--rows", "200", "--dim", "4", "--repeats", "1", "--pause", "0"]
    )
    assert set(summary["results"]) == {
        "optax.adam (dense)",
        "jadam.adam (dense)",
        "jadam.lazy_adam (dense grads)",
        "jadam.sparse_lazy_adam",
        "jadam.sparse_lazy_adam, unique_indices",
    }
    assert "| candidate | median ms |" in capsys.readouterr().out
