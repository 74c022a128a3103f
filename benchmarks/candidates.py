"""Optimizer steps to time: torch.optim, optax, jadam (pure and fused), and bandwidth probes.

Every candidate owns its own copy of the same parameters and gradients (one tree layout, fp32)
and exposes ``step()``, which runs one optimizer step (update and apply) and waits for it, and
``params()``, the current parameters as one flat NumPy array (to check that all candidates
compute the same thing). JAX steps are jitted with parameters and state donated.

JAX candidates take one of two call paths. The *standard path* is what ``nnx.Optimizer.update``
and Linen's ``TrainState.apply_gradients`` run: ``u, s = tx.update(g, s, θ)`` then
``θ = optax.apply_updates(θ, u)`` (names without a suffix, and "... (update)" for fused
transformations). The *one pass* is ``θ, s = tx.apply_gradients(θ, g, s)`` (fused names
without "(update)"; what ``jadam.flax.Optimizer``/``TrainState`` call). "bf16" and "8bit" are
``state_precision="bfloat16"`` / ``"8bit"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-2

JAX_CANDIDATES = (
    "optax",
    "jadam",
    "jadam bf16",
    "jadam 8bit",
    "jadam fused (update)",
    "jadam fused bf16 (update)",
    "jadam fused 8bit (update)",
    "jadam fused",
    "jadam fused bf16",
    "jadam fused 8bit",
)
TORCH_CANDIDATES = ("torch default", "torch foreach", "torch fused")
PROBES = ("triad (jax)", "triad (torch)", "fresh output (jax)", "jit dispatch (identity)")


@dataclasses.dataclass
class Candidate:
    """One timed thing: ``step()`` runs and blocks; ``params()`` returns the flat params."""

    name: str
    step: Callable[[], None]
    params: Callable[[], np.ndarray | None]


def make_arrays(sizes: Sequence[int], seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Deterministic fp32 parameters (N(0, 0.02²)) and gradients (N(0, 1)) of these sizes."""
    rng = np.random.default_rng(seed)
    params = [(0.02 * rng.standard_normal(n)).astype(np.float32) for n in sizes]
    grads = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    return params, grads


def available(name: str) -> bool:
    """Whether a candidate can run here (torch installed; the fused kernel built; ...)."""
    if name.startswith("torch") or name == "triad (torch)":
        try:
            import torch  # noqa: F401
        except ImportError:
            return False
    return True


def make(name: str, algorithm: str, sizes: Sequence[int], seed: int = 0) -> Candidate:
    """Builds candidate ``name`` for ``algorithm`` ("adam", "adamw" or "adamax")."""
    params, grads = make_arrays(sizes, seed)
    if name in JAX_CANDIDATES:
        return _jax_candidate(name, algorithm, params, grads)
    if name in TORCH_CANDIDATES:
        return _torch_candidate(name, algorithm, params, grads)
    if name in ("triad (jax)", "triad (torch)"):  # bandwidth: one array of the same total size
        params, grads = make_arrays([sum(sizes)], seed)
        return (_jax_triad if name == "triad (jax)" else _torch_triad)(params, grads)
    if name == "fresh output (jax)":
        params, grads = make_arrays([sum(sizes)], seed)
        return _jax_fresh_output(params)
    if name == "jit dispatch (identity)":
        return _jax_identity(params, grads)
    known = JAX_CANDIDATES + TORCH_CANDIDATES + PROBES
    raise ValueError(f"unknown candidate {name!r}; known: {known}")


# ---------------------------------------------------------------------------------------------
# JAX


def _jax_device():
    import jax

    return jax.devices()[0]  # the default backend: GPU/TPU when present, else CPU


def optax_tx(algorithm: str):
    import optax

    if algorithm == "adam":
        return optax.adam(LEARNING_RATE)
    if algorithm == "adamw":
        return optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    if algorithm == "adamax":
        return optax.adamax(LEARNING_RATE)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def state_precision(name: str) -> str | None:
    """The ``state_precision`` a candidate's name asks for ("bf16", "8bit" in the name)."""
    if "bf16" in name:
        return "bfloat16"
    return "8bit" if "8bit" in name else None


def one_pass(name: str) -> bool:
    """Whether a JAX candidate calls ``tx.apply_gradients`` (else update + apply_updates)."""
    return name.startswith("jadam fused") and not name.endswith("(update)")


def bytes_per_param(name: str) -> int:
    """Bytes per parameter the step must move at least, as this harness calls it.

    One pass reads θ, g, m, v and writes θ, m, v. A fused ``tx.update`` with float32 moments
    runs the kernel's moments-only mode (g, m, v read, m, v written: 20 B) and then XLA's
    fusion of the update into ``optax.apply_updates`` (θ, m, v read, θ written: 16 B), one pass
    + 8 B. With 16-bit or 8-bit moments the kernel writes u over the gradient's buffer and a
    separate apply reads θ, u and writes θ (+8 B); here the gradients are a jit argument that
    is not donated, so XLA first copies them (+8 B more, and the copy is a fresh buffer: see
    the page faults per step in the report). With bf16 moments under XLA's region-analysis copy
    insertion the kernel runs the moments-only mode too, and XLA reads g and the old moments
    once more for the update (+4 B + 2 moments). Moments take 4 B (fp32), 2 B (bf16) or ~1 B
    (8-bit, plus a scale per block).
    """
    from jadam._fused import xla_orders_in_place_writes

    precision = state_precision(name)
    moment = {None: 4, "bfloat16": 2, "8bit": 1}[precision]
    one_pass_bytes = 3 * 4 + 4 * moment  # θ twice, g once; m and v each read and written
    if not name.startswith("jadam fused") or one_pass(name):
        return one_pass_bytes
    if precision is None:
        return one_pass_bytes + 2 * moment
    if precision == "bfloat16" and xla_orders_in_place_writes():
        return one_pass_bytes + 4 + 2 * moment
    return one_pass_bytes + 16


def jadam_tx(algorithm: str, fused: bool, precision: str | None = None):
    """The jadam alias for ``algorithm`` with the harness's hyperparameters."""
    import jadam

    options = {"fused": fused, "state_precision": precision}
    if algorithm == "adam":
        return jadam.adam(LEARNING_RATE, **options)
    if algorithm == "adamw":
        return jadam.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY, **options)
    if algorithm == "adamax":
        return jadam.adamax(LEARNING_RATE, **options)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def jax_step_function(name: str, algorithm: str) -> tuple[Callable, Any]:
    """(jitted step(params, grads, state) -> (params, state), transform) for a JAX candidate."""
    import jax
    import optax

    if name == "optax":
        tx = optax_tx(algorithm)
    else:
        tx = jadam_tx(algorithm, name.startswith("jadam fused"), state_precision(name))

    if one_pass(name):

        def step(params, grads, state):
            return tx.apply_gradients(params, grads, state)

    else:

        def step(params, grads, state):
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 2)), tx


def _jax_candidate(name: str, algorithm: str, params, grads) -> Candidate:
    import jax

    device = _jax_device()
    step_fn, tx = jax_step_function(name, algorithm)
    box = {"params": [jax.device_put(p, device) for p in params]}
    g = [jax.device_put(x, device) for x in grads]
    box["state"] = tx.init(box["params"])

    def step() -> None:
        box["params"], box["state"] = step_fn(box["params"], g, box["state"])
        # All outputs of one XLA execution become ready together: waiting on one suffices.
        jax.block_until_ready(box["params"][0])

    return Candidate(name, step, lambda: np.concatenate([np.asarray(p) for p in box["params"]]))


def _jax_triad(params, grads) -> Candidate:
    """a ← a + s·b in place over the same number of elements: 12 bytes per element.

    In place, like an optimizer step: a written line was just read, so no write-allocate
    traffic is added (an out-of-place c = a + s·b also reads c's lines before writing them).
    """
    import jax

    device = _jax_device()
    box = {"a": [jax.device_put(x, device) for x in params]}
    b = [jax.device_put(x, device) for x in grads]
    triad = jax.jit(
        lambda a, b: [x + 1.5 * y for x, y in zip(a, b, strict=True)], donate_argnums=(0,)
    )

    def step() -> None:
        box["a"] = triad(box["a"], b)
        jax.block_until_ready(box["a"][0])

    return Candidate("triad (jax)", step, lambda: None)


def _jax_fresh_output(params) -> Candidate:
    """c = 1.5·a into a new buffer each step (8 bytes per element, plus the fresh buffer).

    XLA's CPU runtime allocates every output or temporary buffer of a step anew; glibc maps a
    buffer above 32 MB fresh from the OS, so each of its 4 KiB pages faults on first write. A
    step that needs such a buffer (the fused ``tx.update`` with the gradients a jit argument)
    pays this probe's time over the in-place triad's.
    """
    import jax

    device = _jax_device()
    a = [jax.device_put(x, device) for x in params]
    scale = jax.jit(lambda a: [1.5 * x for x in a])

    def step() -> None:
        jax.block_until_ready(scale(a)[0])

    return Candidate("fresh output (jax)", step, lambda: None)


def _jax_identity(params, grads) -> Candidate:
    """A jitted step that returns its donated inputs: the per-call cost of passing the tree."""
    import jax

    device = _jax_device()
    box = {"p": [jax.device_put(x, device) for x in params]}
    g = [jax.device_put(x, device) for x in grads]
    box["m"] = [jax.device_put(np.zeros_like(x), device) for x in params]
    box["v"] = [jax.device_put(np.zeros_like(x), device) for x in params]
    identity = jax.jit(lambda p, g, m, v: (p, m, v), donate_argnums=(0, 2, 3))

    def step() -> None:
        box["p"], box["m"], box["v"] = identity(box["p"], g, box["m"], box["v"])
        jax.block_until_ready(box["p"][0])

    return Candidate("jit dispatch (identity)", step, lambda: None)


# ---------------------------------------------------------------------------------------------
# torch


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch_sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _torch_candidate(name: str, algorithm: str, params, grads) -> Candidate:
    import torch

    device = torch_device()
    tensors = [torch.tensor(p, device=device).requires_grad_() for p in params]
    for t, g in zip(tensors, grads, strict=True):
        t.grad = torch.tensor(g, device=device)
    mode = name.removeprefix("torch ")
    modes = {"default": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    kwargs = modes[mode]
    if algorithm == "adam":
        opt = torch.optim.Adam(tensors, lr=LEARNING_RATE, **kwargs)
    elif algorithm == "adamw":
        opt = torch.optim.AdamW(tensors, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY, **kwargs)
    elif algorithm == "adamax":
        if mode == "fused":
            raise ValueError("torch.optim.Adamax has no fused implementation")
        opt = torch.optim.Adamax(tensors, lr=LEARNING_RATE, **kwargs)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")

    def step() -> None:
        opt.step()
        _torch_sync()

    def flat() -> np.ndarray:
        return np.concatenate([t.detach().cpu().numpy() for t in tensors])

    return Candidate(name, step, flat)


def _torch_triad(params, grads) -> Candidate:
    import torch

    device = torch_device()
    a = [torch.tensor(x, device=device) for x in params]
    b = [torch.tensor(x, device=device) for x in grads]

    def step() -> None:  # a ← a + s·b in place, as in the JAX probe
        for x, y in zip(a, b, strict=True):
            x.add_(y, alpha=1.5)
        _torch_sync()

    return Candidate("triad (torch)", step, lambda: None)
