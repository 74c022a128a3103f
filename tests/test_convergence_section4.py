"""Section 4's convergence setting and its known limitation (Reddi, Kale & Kumar, 2018)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jadam


def run_projected(tx, grad_fn, inputs, x0):
    """Online projected updates on the box [−1, 1]^d: x_{t+1} = Π(x_t + u_t), via lax.scan.

    Returns (losses f_t(x_t), final x); ``grad_fn(x, input) → (loss, gradient)``.
    """

    @jax.jit
    def scan(inputs):
        def step(carry, inp):
            x, state = carry
            loss, g = grad_fn(x, inp)
            updates, state = tx.update(g, state, x)
            return (jnp.clip(x + updates, -1.0, 1.0), state), loss

        (x, _), losses = jax.lax.scan(step, (x0, tx.init(x0)), inputs)
        return losses, x

    losses, x = scan(inputs)
    return np.asarray(losses), np.asarray(x)


def average_regret_slope(tx, horizons):
    """Fitted slope of log(R(T)/T) against log T for online absolute losses f_t(θ) = ‖θ − z_t‖₁.

    z_t ~ N(μ, 1) per coordinate (fixed seed), θ in [−1, 1]^d: convex, gradients in [−1, 1]
    (Theorem 4.1's bounded-gradient, bounded-domain setting); the best fixed θ in hindsight is
    the coordinate-wise median of z_1 … z_T.
    """
    rng = np.random.default_rng(0)
    dim, steps = 200, max(horizons)
    z = rng.uniform(-0.3, 0.3, dim) + rng.standard_normal((steps, dim))

    def grad_fn(x, zt):
        return jnp.sum(jnp.abs(x - zt)), jnp.sign(x - zt)

    losses, _ = run_projected(tx, grad_fn, jnp.asarray(z), jnp.zeros(dim))
    cumulative = np.cumsum(losses)
    regrets = []
    for horizon in horizons:
        best = np.clip(np.median(z[:horizon], axis=0), -1, 1)
        regrets.append(cumulative[horizon - 1] - np.abs(best - z[:horizon]).sum())
    regrets = np.asarray(regrets)
    assert np.all(regrets > 0)
    return np.polyfit(np.log(horizons), np.log(regrets / horizons), 1)[0]


HORIZONS = 2 ** np.arange(9, 15)


def test_section4_adam_average_regret_falls_like_inverse_sqrt(x64):
    """Theorem 4.1: α_t = α/√t and β1,t = β1·λ^(t−1) give R(T) = O(√T), so R(T)/T ~ T^(−½).

    Measured slope on this problem: −0.67 (faster than the bound's −0.5; the control is −0.17).
    """
    tx = jadam.adam(jadam.inverse_sqrt_schedule(0.1), b1=0.9, b2=0.999, b1_decay=0.99)
    slope = average_regret_slope(tx, HORIZONS)
    assert -0.85 < slope < -0.4, slope


def test_constant_step_adam_average_regret_does_not_vanish(x64):
    """Control: with a constant α the iterates keep jittering and R(T)/T levels off."""
    slope = average_regret_slope(jadam.adam(0.01), HORIZONS)
    assert slope > -0.25, slope


def reddi_theorem1(tx, steps=3000, c=3.0):
    """f_t(x) = C·x if t mod 3 = 1 else −x on [−1, 1] (C > 2): the optimum is x = −1."""
    t = jnp.arange(1, steps + 1)
    gradients = jnp.where(t % 3 == 1, c, -1.0)[:, None]

    def grad_fn(x, g):
        return jnp.sum(g * x), g

    _, x = run_projected(tx, grad_fn, gradients, jnp.zeros(1))
    return float(x[0])


REDDI_C = 3.0
REDDI_B2 = 1 / (1 + REDDI_C**2)


@pytest.mark.parametrize("bias_correction", [True, False])
def test_reddi_theorem1_adam_ends_at_the_wrong_end(x64, bias_correction):
    """Reddi et al. (2018), Theorem 1: β1 = 0, β2 = 1/(1+C²), α/√t; Adam drifts to x = +1."""
    tx = jadam.adam(
        jadam.inverse_sqrt_schedule(0.5), b1=0.0, b2=REDDI_B2, bias_correction=bias_correction
    )
    assert reddi_theorem1(tx, c=REDDI_C) > 0.99


@pytest.mark.parametrize("variant", ["max_of_corrected", "max_of_raw", "uncorrected"])
def test_reddi_theorem1_amsgrad_ends_at_the_optimum(x64, variant):
    tx = jadam.amsgrad(jadam.inverse_sqrt_schedule(0.5), b1=0.0, b2=REDDI_B2, variant=variant)
    assert reddi_theorem1(tx, c=REDDI_C) < -0.98
