"""A training run killed with SIGKILL and restarted ends exactly like an uninterrupted one.

The training script (written to a temporary directory) is self-contained: jadam's Adam wrapped
in ``skip_nonfinite``, an orbax ``CheckpointManager`` saving every other step, batches that are a
function of the step number (one of them poisoned with NaN), and metrics kept in the checkpoint.
The test kills it with a real ``SIGKILL`` at seeded moments of its run, restarts it each time,
and compares final parameters and metrics bit for bit with an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from multidevice import REPO

STEPS = 20

TRAIN = textwrap.dedent(
    f"""
    import json, pathlib, sys, time
    import jax, jax.numpy as jnp, numpy as np, optax
    import orbax.checkpoint as ocp
    import jadam

    workdir = pathlib.Path(sys.argv[1])
    steps = {STEPS}
    tx = jadam.skip_nonfinite(jadam.adam(0.05))

    def batch(step):
        rng = np.random.default_rng(step)
        x = rng.standard_normal((32, 8)).astype(np.float32)
        y = np.tanh(x[:, :2] - x[:, 2:4]).astype(np.float32)
        if step == 11:
            x[0, 0] = np.nan  # a poisoned batch: the step is skipped, training goes on
        return x, y

    def loss_fn(params, x, y):
        hidden = jnp.tanh(x @ params["w1"] + params["b1"])
        return jnp.mean((hidden @ params["w2"] - y) ** 2)

    @jax.jit
    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    key = jax.random.key(0)
    k1, k2 = jax.random.split(key)
    params = {{
        "w1": jax.random.normal(k1, (8, 16)) * 0.3,
        "b1": jnp.zeros(16),
        "w2": jax.random.normal(k2, (16, 2)) * 0.3,
    }}
    state = {{
        "params": params,
        "opt_state": tx.init(params),
        "losses": jnp.zeros(steps),
        "step": jnp.array(0, jnp.int32),
    }}
    options = ocp.CheckpointManagerOptions(max_to_keep=2, save_interval_steps=2)
    manager = ocp.CheckpointManager(workdir / "checkpoints", options=options)
    if manager.latest_step() is not None:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(abstract))
        print("resumed from step", int(state["step"]), flush=True)
    for step in range(int(state["step"]), steps):
        x, y = batch(step)
        params, opt_state, loss = train_step(state["params"], state["opt_state"], x, y)
        state = {{
            "params": params,
            "opt_state": opt_state,
            "losses": state["losses"].at[step].set(loss),
            "step": jnp.array(step + 1, jnp.int32),
        }}
        manager.save(step + 1, args=ocp.args.StandardSave(state))
        print("step", step + 1, flush=True)
        time.sleep(0.05)  # a little work per step, so a kill can land anywhere
    manager.wait_until_finished()
    consecutive, total = jadam.skip_counts(state["opt_state"])
    result = {{
        "params": {{k: np.asarray(v).tobytes().hex() for k, v in state["params"].items()}},
        "losses": np.asarray(state["losses"]).tobytes().hex(),
        "skips": [consecutive, total],
    }}
    (workdir / "final.json").write_text(json.dumps(result))
    """
)


def _env():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(REPO)
    return env


def _start(script, workdir):
    return subprocess.Popen(
        [sys.executable, str(script), str(workdir)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run_to_end(script, workdir):
    proc = _start(script, workdir)
    try:
        output = proc.communicate(timeout=400)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output[-4000:]
    return json.loads((workdir / "final.json").read_text()), output


def _kill_after(script, workdir, first_step, delay):
    """Starts the script, waits until it reports ``first_step``, SIGKILLs it ``delay`` s later."""
    proc = _start(script, workdir)
    lines = []
    try:
        deadline = time.monotonic() + 240
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("step ") and int(line.split()[1]) >= first_step:
                break
            assert time.monotonic() < deadline, "".join(lines)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(lines)[-3000:]
    return "".join(lines)


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "train.py"
    path.write_text(TRAIN)
    return path


def test_sigkill_and_restart_gives_identical_parameters_and_metrics(script, tmp_path):
    reference, _ = _run_to_end(script, tmp_path / "uninterrupted")
    assert reference["skips"] == [0, 1]  # the poisoned step 11 was skipped, and only it

    workdir = tmp_path / "killed"
    rng = np.random.default_rng(1234)  # seeded: the same kill moments on every run
    logs = []
    for first_step in (3, 9, 15):
        logs.append(_kill_after(script, workdir, first_step, delay=float(rng.uniform(0, 0.1))))
    assert not (workdir / "final.json").exists()  # every run so far died before the end
    result, output = _run_to_end(script, workdir)
    assert "resumed from step" in output
    assert sum("resumed from step" in log for log in logs) == 2  # runs 2 and 3 resumed too
    assert result == reference
