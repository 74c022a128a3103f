"""Runs a test module again in a subprocess that sees 8 host CPU devices.

JAX fixes the device count when its backend starts, so tests that need a mesh of 8 devices run
in a fresh interpreter with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``. Inside it,
``ON_8_DEVICES`` is true and the module's 8-device tests run; outside they are skipped and one
driver test per module runs the subprocess and fails with its output if any of them fails.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ON_8_DEVICES = os.environ.get("JADAM_TEST_ON_8_DEVICES") == "1"
REPO = pathlib.Path(__file__).resolve().parents[1]

needs_8_devices = pytest.mark.skipif(
    not ON_8_DEVICES, reason="runs in the 8-device subprocess started by test_on_8_host_devices"
)
driver = pytest.mark.skipif(ON_8_DEVICES, reason="already inside the 8-device subprocess")


def run_module_on_8_devices(module_file: str, timeout: float = 400) -> None:
    """Runs ``pytest module_file`` with 8 host devices; fails with its output unless all pass."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JADAM_TEST_ON_8_DEVICES"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PYTEST_XDIST_WORKER", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    result = subprocess.run(
        [*command, "--rootdir", str(REPO), module_file],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"8-device run of {module_file} failed:\n{output[-6000:]}"
    assert " passed" in output, output[-2000:]
