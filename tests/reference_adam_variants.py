"""NumPy float64 transcriptions of the paper variants. Never imports jadam.

Each function takes gradients of shape (T, ...) and returns the T updates Δ_t (θ_t = θ_{t−1} + Δ_t).
Written from the papers and the anchors' documented formulas, step by step, without vectorizing
over time.
"""

from __future__ import annotations

import numpy as np
from reference import adam_moments


def adam(grads, alpha=1e-3, b1=0.9, b2=0.999, eps=1e-8, *, eps_form="algorithm1", b1_decay=None):
    """Algorithm 1 with ε placed per ``eps_form`` and Section 4's β1,t = β1·λ^(t−1)."""
    grads = np.asarray(grads, np.float64)
    m = np.zeros(grads.shape[1:])
    v = np.zeros(grads.shape[1:])
    b1_product = 1.0
    out = []
    for t, g in enumerate(grads, start=1):
        b1_t = b1 if b1_decay is None else b1 * b1_decay ** (t - 1)
        b1_product *= b1_t  # ∏_{τ≤t} β1,τ (= β1^t when λ is None)
        m = b1_t * m + (1 - b1_t) * g
        v = b2 * v + (1 - b2) * g * g
        if eps_form == "algorithm1":
            m_hat = m / (1 - b1_product)
            v_hat = v / (1 - b2**t)
            out.append(-alpha * m_hat / (np.sqrt(v_hat) + eps))
        elif eps_form == "eps_hat":  # Section 2, last paragraph: the efficient ordering
            alpha_t = alpha * np.sqrt(1 - b2**t) / (1 - b1_product)
            out.append(-alpha_t * m / (np.sqrt(v) + eps))
        elif eps_form == "inside_root":
            out.append(-alpha * (m / (1 - b1_product)) / np.sqrt(v / (1 - b2**t) + eps))
        else:
            raise ValueError(eps_form)
    return np.stack(out)


def keras_amsgrad(grads, alpha=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """Keras's Adam(amsgrad=True): α_t = α√(1−β2^t)/(1−β1^t), θ −= α_t·m/(√max(v) + ε̂)."""
    grads = np.asarray(grads, np.float64)
    m = np.zeros(grads.shape[1:])
    v = np.zeros(grads.shape[1:])
    v_hat = np.zeros(grads.shape[1:])
    out = []
    for t, g in enumerate(grads, start=1):
        alpha_t = alpha * np.sqrt(1 - b2**t) / (1 - b1**t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        v_hat = np.maximum(v_hat, v)
        out.append(-(m * alpha_t) / (np.sqrt(v_hat) + eps))
    return np.stack(out)


def amsgrad(grads, alpha=1e-3, b1=0.9, b2=0.999, eps=1e-8, *, variant="max_of_corrected"):
    """The three AMSGrads: optax's (max of v̂), torch's (max of v, then correct), Reddi's."""
    v_max = np.zeros(np.shape(grads)[1:])
    out = []
    for t, _, m, v in adam_moments(grads, b1, b2):
        if variant == "max_of_corrected":
            v_max = np.maximum(v_max, v / (1 - b2**t))
            out.append(-alpha * (m / (1 - b1**t)) / (np.sqrt(v_max) + eps))
        elif variant == "max_of_raw":  # torch: denom = √vmax/√(1−β2^t) + ε, step α/(1−β1^t)
            v_max = np.maximum(v_max, v)
            denom = np.sqrt(v_max) / np.sqrt(1 - b2**t) + eps
            out.append(-alpha / (1 - b1**t) * m / denom)
        elif variant == "uncorrected":  # Reddi et al. 2018, Algorithm 2 (+ ε)
            v_max = np.maximum(v_max, v)
            out.append(-alpha * m / (np.sqrt(v_max) + eps))
        else:
            raise ValueError(variant)
    return np.stack(out)


def nadam_scheduled(grads, alpha=2e-3, b1=0.9, b2=0.999, eps=1e-8, momentum_decay=0.004):
    """Dozat's NAdam with μ_t = β1(1 − ½·0.96^(tψ)), as torch's NAdam documents it."""
    mu_product = 1.0
    out = []
    for t, g, m, v in adam_moments(grads, b1, b2):
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        mu_product *= mu_t
        denom = np.sqrt(v / (1 - b2**t)) + eps
        step = (1 - mu_t) / (1 - mu_product) * g + mu_next / (1 - mu_product * mu_next) * m
        out.append(-alpha * step / denom)
    return np.stack(out)


def temporal_average(thetas, b2=0.999):
    """Section 7.2: θ̄_t = β2·θ̄_{t−1} + (1−β2)·θ_t, θ̄_0 = 0, returned as θ̄_t/(1−β2^t)."""
    avg = np.zeros(np.shape(thetas)[1:])
    out = []
    for t, theta in enumerate(np.asarray(thetas, np.float64), start=1):
        avg = b2 * avg + (1 - b2) * theta
        out.append(avg / (1 - b2**t))
    return np.stack(out)


def lazy_adam(grads, alpha=1e-3, b1=0.9, b2=0.999, eps=1e-8, *, per_row_count=False, eps_hat=False):
    """Lazy Adam on a (T, rows, cols) sequence: rows with all-zero gradient are skipped."""
    grads = np.asarray(grads, np.float64)
    rows = grads.shape[1]
    m = np.zeros(grads.shape[1:])
    v = np.zeros(grads.shape[1:])
    counts = np.zeros(rows, np.int64)
    out = []
    for t, g in enumerate(grads, start=1):
        delta = np.zeros(grads.shape[1:])
        for r in range(rows):
            if not np.any(g[r] != 0):
                continue
            counts[r] += 1
            s = counts[r] if per_row_count else t
            m[r] = b1 * m[r] + (1 - b1) * g[r]
            v[r] = b2 * v[r] + (1 - b2) * g[r] ** 2
            if eps_hat:  # TF-Addons LazyAdam / torch SparseAdam
                delta[r] = -alpha * np.sqrt(1 - b2**s) / (1 - b1**s) * m[r] / (np.sqrt(v[r]) + eps)
            else:
                m_hat, v_hat = m[r] / (1 - b1**s), v[r] / (1 - b2**s)
                delta[r] = -alpha * m_hat / (np.sqrt(v_hat) + eps)
        out.append(delta)
    return np.stack(out)
