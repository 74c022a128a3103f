"""NumPy float64 transcriptions of the Adam family's later members (issue 16). Never imports jadam.

Written from each paper's algorithm box, one step at a time. The stateless-in-θ members take
gradients of shape (T, ...) and return the T updates Δ_t (θ_t = θ_{t−1} + Δ_t); the members whose
step reads θ (weight decay, LAMB) take θ_0 and return the T parameters θ_1..θ_T.
"""

from __future__ import annotations

import numpy as np


def radam(grads, alpha=1e-3, b1=0.9, b2=0.999, eps=0.0, *, threshold=4.0, eps_hat=False):
    """Liu et al. 2020, Algorithm 2 ("if ρ_t > 4"), with an optional ε.

    eps_hat=False: l_t = 1/(√v̂_t + ε); True: l_t = √(1−β2^t)/(√v_t + ε) (the authors' code).
    """
    grads = np.asarray(grads, np.float64)
    m = np.zeros(grads.shape[1:])
    v = np.zeros(grads.shape[1:])
    rho_inf = 2 / (1 - b2) - 1
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
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
    grads = np.asarray(grads, np.float64)
    theta = np.array(theta0, np.float64)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
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
    grads = np.asarray(grads, np.float64)
    theta = np.array(theta0, np.float64)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
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
