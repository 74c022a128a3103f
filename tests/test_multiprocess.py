"""Two processes on loopback train data-parallel and get the single-process result.

Each process is a separate Python interpreter with one CPU device, joined by
``jax.distributed.initialize`` and gloo CPU collectives: the same code path as a multi-host GPU
cluster or a TPU pod slice, where each host feeds its own slice of the global batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from multidevice import REPO

import jadam

STEPS = 8
GLOBAL_BATCH = 16

WORKER = textwrap.dedent(
    """
    import json, sys
    import jax

    port, process_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        f"127.0.0.1:{port}", num_processes=2, process_id=process_id, initialization_timeout=90
    )
    import numpy as np
    import optax
    from jax.sharding import NamedSharding, PartitionSpec as P

    import jadam
    from test_multiprocess import batches, init_params, loss_fn

    assert jax.process_count() == 2 and jax.device_count() == 2, jax.devices()
    mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    results = {}
    for zero1_axis in (None, "data"):
        tx = jadam.adam(0.05)
        params = jax.device_put(init_params(), replicated)
        state = jadam.init_sharded(tx, params, zero1_axis=zero1_axis)
        state_shardings = jadam.state_shardings(tx, params, zero1_axis=zero1_axis)

        def step(params, state, x, y):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state, loss

        step = jax.jit(step, out_shardings=(replicated, state_shardings, replicated))
        losses = []
        for x, y in zip(*batches(), strict=True):
            half = slice(process_id * len(x) // 2, (process_id + 1) * len(x) // 2)
            x = jax.make_array_from_process_local_data(split, x[half])
            y = jax.make_array_from_process_local_data(split, y[half])
            params, state, loss = step(params, state, x, y)
            losses.append(float(loss.addressable_data(0)))
        mu = state[0].mu["w"]
        results[str(zero1_axis)] = {
            "params": {k: np.asarray(v.addressable_data(0)).tolist() for k, v in params.items()},
            "losses": losses,
            "local_mu_shape": list(mu.addressable_shards[0].data.shape),
        }
    with open(out, "w") as f:
        json.dump(results, f)
    jax.distributed.shutdown()
    """
)


def init_params():
    rng = np.random.default_rng(0)
    return {
        "w": (rng.standard_normal((6, 4)) / 2).astype(np.float32),
        "b": np.zeros(4, np.float32),
    }


def batches():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((STEPS, GLOBAL_BATCH, 6)).astype(np.float32)
    return x, np.tanh(x[..., :4] * 2.0).astype(np.float32)


def loss_fn(params, x, y):
    return jnp.mean((jnp.tanh(x @ params["w"] + params["b"]) - y) ** 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process_run():
    tx = jadam.adam(0.05)
    params = jax.tree.map(jnp.asarray, init_params())
    state, losses = tx.init(params), []
    for x, y in zip(*batches(), strict=True):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        losses.append(float(loss))
    return jax.device_get(params), losses


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multiprocess")
    script = tmp / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests")])
    port = _free_port()
    outs = [tmp / f"out{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(port), str(i), str(outs[i])],
            env=env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=240)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in zip(procs, logs, strict=False):
        assert proc.returncode == 0, f"worker failed:\n{log[-4000:]}"
    return [json.loads(out.read_text()) for out in outs]


@pytest.mark.parametrize("zero1_axis", ["None", "data"])
def test_two_processes_match_single_process(two_process_results, zero1_axis):
    params, losses = _single_process_run()
    for result in two_process_results:  # both processes hold the same replicated result
        run = result[zero1_axis]
        got = {k: np.asarray(v, np.float32) for k, v in run["params"].items()}
        chex.assert_trees_all_close(got, params, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(run["losses"], losses, rtol=2e-5)
        assert run["losses"][-1] < 0.8 * run["losses"][0]  # it did train


def test_zero1_splits_moments_across_the_two_processes(two_process_results):
    for result in two_process_results:
        assert result["None"]["local_mu_shape"] == [6, 4]
        assert result["data"]["local_mu_shape"] == [3, 4]
