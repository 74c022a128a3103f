"""Two known limits of Adam, computed for notebooks/07_limitations.ipynb and its tests.

* :func:`constant_step_noise`: non-convergence for a learning rate that does not vanish
  (Dereich, Graeber & Jentzen, 2024). On the strongly convex, smooth stochastic problem
  f(θ) = E[½(θ − X)²], X ~ N(μ, 1) (minimiser θ* = μ; the assumptions of the Adam paper's §4
  hold on any bounded region), Adam with a constant α keeps a root-mean-square distance to θ*
  of order α however long it runs; with α_t = α/√t (the schedule of the paper's Theorem 4.1,
  ``jadam.inverse_sqrt_schedule``) the distance keeps shrinking.
* :func:`limit_cycle`: a 2-limit cycle on f(x) = ½x² with exact gradients (Bock & Weiß,
  "Non-convergence and limit cycles in the Adam optimizer"): with g alternating ±c the moments
  settle at m̂ = ±c(1 − β1)/(1 + β1), v̂ = c², so the step is ∓α(1 − β1)/(1 + β1) and the
  iterates alternate between ±c with c = α(1 − β1) / (2(1 + β1)) (ε → 0). For β1 = 0 and
  β2 = 0.9 (or 0.5) the cycle attracts the iterates from x₀ = 1; with the paper's defaults
  (β1 = 0.9, β2 = 0.999) they reach 0 instead: the cycle exists but is not attracting.

Example:
  >>> result = limit_cycle(alpha=0.1, b1=0.0, b2=0.9)
  >>> result["period"], round(result["amplitude"], 4), round(result["predicted_amplitude"], 4)
  (2, 0.05, 0.05)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jadam


def _iterate(tx: optax.GradientTransformation, gradient, x0: jax.Array, keys: jax.Array):
    """x_t for t = 1..len(keys): x ← x + tx.update(gradient(x, key)); returns the stacked x_t."""

    def step(carry, key):
        x, state = carry
        updates, state = tx.update(gradient(x, key), state, x)
        x = optax.apply_updates(x, updates)
        return (x, state), x

    return jax.lax.scan(step, (x0, tx.init(x0)), keys)[1]


def constant_step_noise(
    alpha: float = 0.05, mean: float = 1.0, steps: int = 4096, chains: int = 256, seed: int = 0
) -> dict[str, Any]:
    """Adam on f(θ) = E[½(θ − X)²], X ~ N(mean, 1), from θ₀ = 0 in ``chains`` independent runs.

    Each step uses one sample X_t (the gradient θ − X_t). Returns the steps at which the
    root-mean-square distance to θ* = mean is reported (powers of 4 up to ``steps``) and that
    distance, averaged over the chains and over the last quarter of the steps up to each one,
    for a constant α ("constant") and for α/√t ("inverse_sqrt").
    """
    keys = jax.random.split(jax.random.key(seed), steps)

    def gradient(theta, key):
        return theta - (mean + jax.random.normal(key, theta.shape))

    theta0 = jnp.zeros(chains)
    checkpoints = [4**k for k in range(2, 20) if 4**k <= steps]
    result: dict[str, Any] = {"steps": checkpoints, "alpha": alpha}
    for name, rate in (("constant", alpha), ("inverse_sqrt", jadam.inverse_sqrt_schedule(alpha))):
        path = jax.jit(lambda k, rate=rate: _iterate(jadam.adam(rate), gradient, theta0, k))(keys)
        squared = np.asarray((path - mean) ** 2, np.float64).mean(axis=1)
        result[name] = [float(np.sqrt(squared[t - t // 4 : t].mean())) for t in checkpoints]
    return result


def orbit_period(xs: np.ndarray, max_period: int = 16, rtol: float = 1e-6) -> int:
    """The smallest p ≤ ``max_period`` with x_{t+p} = x_t (to ``rtol`` of max |x|) over ``xs``
    (which must hold at least two periods); 0 if there is none (no periodic orbit seen)."""
    xs = np.asarray(xs, np.float64)
    scale = max(np.abs(xs).max(), np.finfo(np.float64).tiny)
    for period in range(1, min(max_period, len(xs) // 2) + 1):
        if np.all(np.abs(xs[period:] - xs[:-period]) <= rtol * scale):
            return period
    return 0


def limit_cycle(
    alpha: float = 0.1, b1: float = 0.0, b2: float = 0.9, steps: int = 2000, x0: float = 1.0
) -> dict[str, Any]:
    """Adam (ε = 1e-8, bias correction) on f(x) = ½x² with exact gradients, from ``x0``.

    Returns the iterates, the period and amplitude (max |x|) of the orbit over the last quarter
    of the steps, and the amplitude the 2-cycle analysis predicts, α(1 − β1) / (2(1 + β1)).
    """
    tx = jadam.adam(alpha, b1=b1, b2=b2)
    keys = jnp.zeros((steps,))  # exact gradients: nothing random
    xs = np.asarray(
        jax.jit(lambda k: _iterate(tx, lambda x, _: x, jnp.asarray(x0, jnp.float32), k))(keys),
        np.float64,
    )
    tail = xs[-(steps // 4) :]
    return {
        "iterates": xs,
        "period": orbit_period(tail),
        "amplitude": float(np.abs(tail).max()),
        "predicted_amplitude": alpha * (1 - b1) / (2 * (1 + b1)),
    }
