"""NumPy float64 transcriptions of the Adam family's later members. Never imports jadam.

Written from each paper's algorithm box, one step at a time. The stateless-in-θ members take
gradients of shape (T, ...) and return the T updates Δ_t (θ_t = θ_{t−1} + Δ_t); the members whose
step reads θ (weight decay, LAMB) take θ_0 and return the T parameters θ_1..θ_T;
``schedule_free_adamw`` and ``adafactor`` take a gradient function of the parameters and return
the parameters after each step.
"""

from __future__ import annotations

import numpy as np
from reference import adam_moments


def radam(grads, alpha=1e-3, b1=0.9, b2=0.999, eps=0.0, *, threshold=4.0, eps_hat=False):
    """Liu et al. 2020, Algorithm 2 ("if ρ_t > 4"), with an optional ε.

    eps_hat=False: l_t = 1/(√v̂_t + ε); True: l_t = √(1−β2^t)/(√v_t + ε) (the authors' code).
    """
    rho_inf = 2 / (1 - b2) - 1
    out = []
    for t, _, m, v in adam_moments(grads, b1, b2):
        m_hat = m / (1 - b1**t)
        rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho_t > threshold:
            if eps_hat:
                l_t = np.sqrt(1 - b2**t) / (np.sqrt(v) + eps)
            else:
                l_t = 1 / (np.sqrt(v / (1 - b2**t)) + eps)
            r_t = np.sqrt(
                (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            )
            out.append(-alpha * r_t * m_hat * l_t)
        else:
            out.append(-alpha * m_hat)
    return np.stack(out)


def adabelief(grads, alpha=1e-3, b1=0.9, b2=0.999, eps=1e-16, eps_root=None):
    """Zhuang et al. 2020, Algorithm 2: s_t = β2·s + (1−β2)(g − m_t)² + ε, step m̂/(√ŝ + ε).

    The paper has one ε; ``eps_root`` (default: ``eps``) is the one added to s_t.
    """
    eps_root = eps if eps_root is None else eps_root
    grads = np.asarray(grads, np.float64)
    m = np.zeros(grads.shape[1:])
    s = np.zeros(grads.shape[1:])
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps_root
        m_hat = m / (1 - b1**t)
        s_hat = s / (1 - b2**t)
        out.append(-alpha * m_hat / (np.sqrt(s_hat) + eps))
    return np.stack(out)


def yogi(grads, alpha=1e-2, b1=0.9, b2=0.999, eps=1e-3, *, initial=0.0, bias_correction=False):
    """Zaheer et al. 2018, Algorithm 2: v_t = v − (1−β2)·sign(v − g²)·g², x −= η·m/(√v + ε).

    ``initial`` = m_0 = v_0 (0 in the paper); ``bias_correction`` divides by 1−β^t (optax).
    """
    grads = np.asarray(grads, np.float64)
    m = np.full(grads.shape[1:], float(initial))
    v = np.full(grads.shape[1:], float(initial))
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = v - (1 - b2) * np.sign(v - g**2) * g**2
        if bias_correction:
            m_step, v_step = m / (1 - b1**t), v / (1 - b2**t)
        else:
            m_step, v_step = m, v
        denominator = np.sqrt(v_step) + eps
        safe = np.where(denominator == 0, 1.0, denominator)
        out.append(np.where(denominator == 0, 0.0, -alpha * m_step / safe))
    return np.stack(out)


def lamb(grads, theta0, alpha=1e-3, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.0):
    """You et al. 2020, Algorithm 2 with φ(z) = z; each row of θ (axis 0 of theta0) is a layer.

    r_t = m̂/(√v̂ + ε); x^(i) −= η·‖x^(i)‖/‖r^(i) + λx^(i)‖·(r^(i) + λx^(i)); ratio 1 where a
    norm is 0. Returns θ_1..θ_T.
    """
    theta = np.array(theta0, np.float64)
    out = []
    for t, _, m, v in adam_moments(grads, b1, b2):
        r = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        step = r + weight_decay * theta
        new = theta.copy()
        for layer in range(theta.shape[0]):
            x_norm = np.linalg.norm(theta[layer])
            s_norm = np.linalg.norm(step[layer])
            ratio = 1.0 if x_norm == 0 or s_norm == 0 else x_norm / s_norm
            new[layer] = theta[layer] - alpha * ratio * step[layer]
        theta = new
        out.append(theta)
    return np.stack(out)


def nadamw(grads, theta0, alpha=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4):
    """optax's NAdamW: m̄_t = β1·m_t/(1−β1^{t+1}) + (1−β1)·g_t/(1−β1^t),
    θ_t = θ_{t−1} − α·(m̄_t/(√v̂_t + ε) + λ·θ_{t−1}) (Dozat 2016 + Loshchilov & Hutter 2019)."""
    theta = np.array(theta0, np.float64)
    out = []
    for t, g, m, v in adam_moments(grads, b1, b2):
        m_bar = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        theta = theta - alpha * (m_bar / (np.sqrt(v / (1 - b2**t)) + eps) + weight_decay * theta)
        out.append(theta)
    return np.stack(out)


def adamaxw(grads, theta0, alpha=2e-3, b1=0.9, b2=0.999, eps=0.0, weight_decay=1e-4):
    """Kingma & Ba 2015, Algorithm 2 (u_t = max(β2·u, |g|), ε added to u_t) + decoupled λ·θ."""
    grads = np.asarray(grads, np.float64)
    theta = np.array(theta0, np.float64)
    m = np.zeros_like(theta)
    u = np.zeros_like(theta)
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g))
        theta = theta - alpha * (m / ((1 - b1**t) * (u + eps)) + weight_decay * theta)
        out.append(theta)
    return np.stack(out)


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
    m2 = np.zeros(np.shape(grads)[1:])
    out = []
    for t, g, m1, nu in adam_moments(grads, b1, b2):
        m2 = b3 * m2 + (1 - b3) * g
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
