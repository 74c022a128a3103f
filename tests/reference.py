"""Plain NumPy float64 transcriptions of the paper's algorithms (Kingma & Ba, 2015).

Independent of jadam on purpose: this module never imports it. Each function takes a gradient
sequence ``grads`` of shape (T, ...) and returns the T updates Δ_t (so that θ_t = θ_{t−1} + Δ_t).
Where the literal algorithm computes 0/0 (a coordinate whose gradients were all zero, with ε = 0)
these return 0, which is jadam's documented convention; ``literal=True`` keeps the NaN.
"""

from __future__ import annotations

import numpy as np


def _divide(numerator, denominator, literal):
    if literal:
        with np.errstate(invalid="ignore", divide="ignore"):
            return numerator / denominator
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def adam_moments(grads, beta1, beta2):
    """Lines 7-8 of Algorithm 1 over ``grads`` (float64): yields (t, g_t, m_t, v_t), m_0 = v_0 = 0.

    Shared by every transcription that keeps Adam's two moment estimates.
    """
    grads = np.asarray(grads, np.float64)
    m = np.zeros(grads.shape[1:])
    v = np.zeros(grads.shape[1:])
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g  # line 7
        v = beta2 * v + (1 - beta2) * g * g  # line 8
        yield t, g, m, v


def adam(
    grads, alpha=0.001, beta1=0.9, beta2=0.999, eps=1e-8, *, bias_correction=True, literal=False
):
    """Algorithm 1; ``bias_correction=False`` drops lines 9-10 (Figure 4's ablation)."""
    steps = []
    for t, _, m, v in adam_moments(grads, beta1, beta2):
        m_hat = m / (1 - beta1**t) if bias_correction else m  # line 9
        v_hat = v / (1 - beta2**t) if bias_correction else v  # line 10
        steps.append(-alpha * _divide(m_hat, np.sqrt(v_hat) + eps, literal))  # line 11
    return np.stack(steps)


def adamax(grads, alpha=0.002, beta1=0.9, beta2=0.999, eps=0.0, *, literal=False):
    """Algorithm 2; ε (absent in the paper) is added to u_t in the divisor only."""
    grads = np.asarray(grads, np.float64)
    m = np.zeros(grads.shape[1:])
    u = np.zeros(grads.shape[1:])
    steps = []
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g  # line 7
        u = np.maximum(beta2 * u, np.abs(g))  # line 8
        steps.append(-(alpha / (1 - beta1**t)) * _divide(m, u + eps, literal))  # line 9
    return np.stack(steps)


def adam_step_bound(t, beta1, beta2):
    """A rigorous bound on |m̂_t/√v̂_t| (ε = 0) for any gradient sequence, by Cauchy-Schwarz.

    m̂_t = Σ w_k g_{t−k}, v̂_t = Σ u_k g²_{t−k} with w_k = (1−β1)β1^k/(1−β1^t),
    u_k = (1−β2)β2^k/(1−β2^t); so |m̂_t| ≤ √(Σ w_k²/u_k)·√v̂_t.
    """
    k = np.arange(t)
    w = (1 - beta1) * beta1**k / (1 - beta1**t)
    u = (1 - beta2) * beta2**k / (1 - beta2**t)
    return float(np.sqrt(np.sum(w * w / u)))


def adam_sparse_step(t, beta1, beta2):
    """|m̂_t/√v̂_t| when g is zero at every step but t (Section 2.1's sparse case)."""
    return (1 - beta1) / (1 - beta1**t) * np.sqrt((1 - beta2**t) / (1 - beta2))
