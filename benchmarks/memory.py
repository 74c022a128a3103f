"""Peak memory of one candidate, in a process of its own (``python -m benchmarks.memory``).

Prints one JSON object: resident memory after imports, after building parameters, gradients and
optimizer state, and the peak while stepping (on Linux the peak is reset after the first,
compiling, step through /proc/self/clear_refs). On a GPU the device's peak bytes are reported.
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import resource
import sys


def _status_kib(field: str) -> int | None:
    status = pathlib.Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _rss() -> int:
    kib = _status_kib("VmRSS")
    if kib is None:  # not Linux: the high-water mark is the best available
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return kib * 1024


def _reset_peak() -> bool:
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak() -> int:
    kib = _status_kib("VmHWM")
    if kib is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return kib * 1024


def measure(candidate: str, algorithm: str, sizes: list[int], steps: int = 3) -> dict:
    """Memory of ``candidate`` (see the module docstring), in bytes."""
    from benchmarks import candidates

    if candidate.startswith("torch"):
        import torch

        torch.zeros(1).add_(1)
        gpu = torch.cuda.is_available()
    else:
        import jax
        import jax.numpy as jnp

        jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.zeros(4)))
        gpu = jax.default_backend() != "cpu"
    gc.collect()
    after_imports = _rss()
    cand = candidates.make(candidate, algorithm, sizes)
    cand.step()  # compiles (JAX) and allocates the state lazily (torch)
    gc.collect()
    live = _rss()
    reset = _reset_peak()
    for _ in range(steps):
        cand.step()
    peak = _peak() if reset else None
    result = {
        "candidate": candidate,
        "params": sum(sizes),
        "after_imports": after_imports,
        "live": live,
        "peak_while_stepping": peak,
    }
    if gpu:
        result |= _device_peak(candidate)
    return result


def _device_peak(candidate: str) -> dict:
    if candidate.startswith("torch"):
        import torch

        return {"device_peak": int(torch.cuda.max_memory_allocated())}
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return {"device_peak": int(stats.get("peak_bytes_in_use", 0))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--algorithm", default="adam")
    parser.add_argument("--sizes", required=True, help="comma-separated leaf sizes")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    json.dump(measure(args.candidate, args.algorithm, sizes, args.steps), sys.stdout)
    print()


if __name__ == "__main__":
    main()
