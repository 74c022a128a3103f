"""The experiments runner, SIGKILLed and restarted, ends exactly like an uninterrupted run.

``python -m jadam.experiments`` runs Figure 1's smoke config (4 optimizers, a checkpoint every
8 steps) in a subprocess. The test waits until a checkpoint exists, SIGKILLs the process at a
seeded random moment after it, restarts the same command, kills it again once it has made new
checkpoints, and restarts it to the end. Final parameters and optimizer states (restored from
each run's last orbax checkpoint) must equal the uninterrupted run's bit for bit, and
metrics.jsonl, summary.json and each run's log must be equal except for wall-clock fields and
``resumed_from_step``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

pytest.importorskip("flax")

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [
    sys.executable,
    "-m",
    "jadam.experiments",
    "--config=configs/fig1_logreg_mnist.py:smoke",
    "--config.num_epochs=6",  # 48 steps and 6 checkpoints per run: kills land anywhere.
    "--config.progress=False",
]
RUNS = ("adagrad", "adam", "adamax", "sgd_nesterov")
NOT_REPRODUCIBLE = {"wall_time_s", "steps_per_second", "resumed_from_step"}


def _env():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _start(workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*COMMAND, f"--workdir={workdir}"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run_to_end(workdir: Path) -> str:
    proc = _start(workdir)
    try:
        output = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output[-4000:]
    return output


def _checkpoints(workdir: Path) -> set[str]:
    """Finished checkpoints ("run/step"); orbax writes each under a temporary name first."""
    return {
        f"{run.name}/{step.name}"
        for run in (workdir / "checkpoints").glob("*")
        for step in run.glob("*")
        if step.name.isdigit()
    }


def _kill_after_new_checkpoint(workdir: Path, delay: float) -> set[str]:
    """Starts the runner; once it has saved a new checkpoint, SIGKILLs it ``delay`` s later."""
    before = _checkpoints(workdir)
    proc = _start(workdir)
    try:
        deadline = time.monotonic() + 240
        while not _checkpoints(workdir) - before:
            assert proc.poll() is None, proc.communicate()[0][-4000:]
            assert time.monotonic() < deadline, "no new checkpoint"
            time.sleep(0.02)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL, output[-4000:]  # It was still running.
    return _checkpoints(workdir)


def _final_state(workdir: Path, run: str) -> dict:
    manager = ocp.CheckpointManager((workdir / "checkpoints" / run).absolute())
    step = manager.latest_step()
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), log=ocp.args.JsonRestore())
    )
    manager.close()
    return {"step": step, "state": restored.state, "log": dict(restored.log)}


def _without(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in NOT_REPRODUCIBLE}


def test_sigkill_and_restart_of_the_runner_gives_identical_results(tmp_path):
    reference = tmp_path / "uninterrupted"
    _run_to_end(reference)

    workdir = tmp_path / "killed"
    rng = np.random.default_rng(2015)  # seeded: the same kill moments on every run
    seen = []
    for _ in range(2):
        seen.append(_kill_after_new_checkpoint(workdir, delay=float(rng.uniform(0.0, 2.5))))
    assert not (workdir / "summary.json").exists()  # Both processes died before the end.
    assert seen[1] != seen[0]  # The second process resumed and made progress before its kill.
    _run_to_end(workdir)

    summary = json.loads((workdir / "summary.json").read_text())
    expected = json.loads((reference / "summary.json").read_text())
    assert [r["run"] for r in summary] == list(RUNS)
    assert any(r["resumed_from_step"] > 0 for r in summary)  # A run resumed mid-way or later.
    assert [_without(r) for r in summary] == [_without(r) for r in expected]
    metrics = (workdir / "metrics.jsonl").read_bytes()
    assert metrics == (reference / "metrics.jsonl").read_bytes()
    assert len(metrics.splitlines()) == len(RUNS) * 48 // 4  # No line lost or repeated.
    for run in RUNS:
        done = json.loads((workdir / "runs" / f"{run}.json").read_text())
        done_expected = json.loads((reference / "runs" / f"{run}.json").read_text())
        assert _without(done) == _without(done_expected)
        final, final_expected = _final_state(workdir, run), _final_state(reference, run)
        assert final["step"] == final_expected["step"] == 48
        assert _without(final["log"]) == _without(final_expected["log"])
        leaves = jax.tree.leaves_with_path(final["state"])
        leaves_expected = jax.tree.leaves_with_path(final_expected["state"])
        assert [p for p, _ in leaves] == [p for p, _ in leaves_expected]
        assert len(leaves) > 2  # parameters and optimizer state
        for (path, value), (_, value_expected) in zip(leaves, leaves_expected, strict=True):
            value, value_expected = np.asarray(value), np.asarray(value_expected)
            assert value.dtype == value_expected.dtype, (run, path)
            assert value.tobytes() == value_expected.tobytes(), (run, path)
