"""NumPy float64 transcriptions of the Adam family's later members. Never imports jadam.

Written from the papers' algorithm boxes, one step at a time. ``adopt`` and ``ademamix`` take
gradients of shape (T, ...) and return the T updates; ``schedule_free_adamw`` and ``adafactor``
take a gradient function of the parameters (their updates depend on them) and return the
parameters after each step.
"""

from __future__ import annotations

import numpy as np


def adopt(grads, alpha=1e-3, b1=0.9, b2=0.9999, eps=1e-6, *, clip=True):
    """Taniguchi et al. (2024), Algorithm 1 (with the clipped variant of their Section 4).

    v_0 = g_0²; for t ≥ 1: m_t = β1·m_{t−1} + (1−β1)·clip(g_t/max(√v_{t−1}, ε), t^¼),
    θ_t = θ_{t−1} − α·m_t, v_t = β2·v_{t−1} + (1−β2)·g_t². Step 0 moves nothing.
    """
    grads = np.asarray(grads, np.float64)
    m = np.zeros(grads.shape[1:])
    v = grads[0] ** 2
    out = [np.zeros(grads.shape[1:])]
    for t, g in enumerate(grads[1:], start=1):
        normalized = g / np.maximum(np.sqrt(v), eps)
        if clip:
            normalized = np.clip(normalized, -(t**0.25), t**0.25)
        m = b1 * m + (1 - b1) * normalized
        out.append(-alpha * m)
        v = b2 * v + (1 - b2) * g * g
    return np.stack(out)


def ademamix(grads, alpha_lr=1e-3, b1=0.9, b2=0.999, b3=0.9999, alpha=5.0, eps=1e-8):
    """Pagliardini et al. (2024), Algorithm 1 with constant α and β3 (no weight decay).

    m1 ← β1·m1 + (1−β1)g, m2 ← β3·m2 + (1−β3)g, ν ← β2·ν + (1−β2)g²,
    θ ← θ − η·(m1/(1−β1^t) + α·m2) / (√(ν/(1−β2^t)) + ε).
    """
    grads = np.asarray(grads, np.float64)
    m1 = np.zeros(grads.shape[1:])
    m2 = np.zeros(grads.shape[1:])
    nu = np.zeros(grads.shape[1:])
    out = []
    for t, g in enumerate(grads, start=1):
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b3 * m2 + (1 - b3) * g
        nu = b2 * nu + (1 - b2) * g * g
        m1_hat = m1 / (1 - b1**t)
        nu_hat = nu / (1 - b2**t)
        out.append(-alpha_lr * (m1_hat + alpha * m2) / (np.sqrt(nu_hat) + eps))
    return np.stack(out)


def schedule_free_adamw(
    grad_fn,
    y0,
    steps,
    lr=1e-2,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    warmup=0,
    *,
    optax_warmup=True,
):
    """Defazio et al. (2024), Algorithm 1 (schedule-free AdamW), in optax's form.

    y_t = (1−β1)z_t + β1·x_t,  g_t = ∇f(y_t),  v_t = β2·v_{t−1} + (1−β2)g_t²,
    γ_t = lr·min(1, t/warmup),  z_{t+1} = z_t − γ_t·(g_t/(√(v_t/(1−β2^t)) + ε) + λ·y_t),
    c_{t+1} = γ_t²/Σ_{i≤t} γ_i²,  x_{t+1} = (1−c_{t+1})x_t + c_{t+1}z_{t+1}.
    optax's form (the one tested): bias correction on v (the paper multiplies γ_t by
    √(1−β2^t) instead) and weights from the largest γ so far (equal for warm-up + constant).
    ``optax_warmup``: optax's z-step reads the warm-up schedule one step behind the weights
    (γ_{t−1}, so its first step is 0); False is the paper's γ_t for both.
    Returns (the y_t after each step, the final x).
    """
    x = np.array(y0, np.float64)
    z = x.copy()
    v = np.zeros_like(x)
    weight_sum, max_lr, ys = 0.0, 0.0, []
    for t in range(1, steps + 1):
        y = (1 - b1) * z + b1 * x
        g = grad_fn(y)
        v = b2 * v + (1 - b2) * g * g
        gamma = lr * min(1.0, t / warmup) if warmup else lr
        z_gamma = lr * min(1.0, (t - 1) / warmup) if warmup and optax_warmup else gamma
        max_lr = max(max_lr, gamma)
        z = z - z_gamma * (g / (np.sqrt(v / (1 - b2**t)) + eps) + weight_decay * y)
        weight_sum += max_lr**2
        c = max_lr**2 / weight_sum if weight_sum > 0 else 0.0
        x = (1 - c) * x + c * z
        ys.append((1 - b1) * z + b1 * x)
    return np.stack(ys), x


def adafactor(grad_fn, x0, steps, rho=1e-2, decay_rate=0.8, eps1=1e-30, eps2=1e-3, d=1.0):
    """Shazeer & Stern (2018), Algorithm 4 (a matrix, factored) with update clipping (§6) and
    the relative step α_t = max(ε2, RMS(X_{t−1}))·ρ (§8, constant ρ here).

    β̂2_t = 1 − t^(−0.8),  R_t = β̂2_t R_{t−1} + (1−β̂2_t)(G² + ε1)1_m (row sums),
    C_t = β̂2_t C_{t−1} + (1−β̂2_t)1_nᵀ(G² + ε1) (column sums),  V̂_t = R_t C_t / (1_nᵀR_t),
    U_t = G_t/√V̂_t,  Û_t = U_t / max(1, RMS(U_t)/d),  X_t = X_{t−1} − α_t Û_t.
    """
    x = np.array(x0, np.float64)
    rows = np.zeros(x.shape[0])
    cols = np.zeros(x.shape[1])
    out = []
    for t in range(1, steps + 1):
        g = grad_fn(x)
        beta = 1 - t ** (-decay_rate)
        square = g * g + eps1
        rows = beta * rows + (1 - beta) * square.sum(axis=1)
        cols = beta * cols + (1 - beta) * square.sum(axis=0)
        v_hat = np.outer(rows, cols) / rows.sum()
        u = g / np.sqrt(v_hat)
        u = u / max(1.0, np.sqrt(np.mean(u * u)) / d)
        step = max(eps2, np.sqrt(np.mean(x * x))) * rho
        x = x - step * u
        out.append(x.copy())
    return np.stack(out)
