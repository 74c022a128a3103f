"""SFO (Sohl-Dickstein, Poole & Ganguli 2014) in NumPy, in the full parameter space.

An independent transcription of the paper's update (never imports jadam): one quadratic model
per subfunction, gᵢ(θ) = fᵢ(θᵢ) + (θ − θᵢ)ᵀ∇fᵢ(θᵢ) + ½(θ − θᵢ)ᵀHᵢ(θ − θᵢ), Hᵢ from BFGS over
the last L (Δθ, Δ∇f) pairs starting at λᵢ I, and the step θ ← θ − s (ΣHᵢ)⁻¹ Σ∇gᵢ(θ). No
low-dimensional subspace: jadam's subspace is exact until it first collapses, so both agree
step for step until then. The deterministic choices are those documented in
jadam/experiments/sfo.py (first inactive subfunction activated, distance in the ΣHᵢ metric,
bad curvatures replaced by λᵢ, a new model starting from the mean λ of the others).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


class ReferenceSFO:
    def __init__(self, theta, n, *, history=10, hessian_init=1e5, init_active=2):
        m = theta.size
        self.n, self.history = n, history
        self.theta = np.array(theta, np.float64)
        self.last_theta = np.tile(self.theta, (n, 1))
        self.last_grad = np.zeros((n, m))
        self.last_value = np.zeros(n)
        self.pairs = [[] for _ in range(n)]  # newest first
        self.active = np.arange(n) < init_active
        self.curvature = np.where(self.active, hessian_init, 0.0)
        self.hessian = self.curvature[:, None, None] * np.eye(m)
        self.count = np.zeros(n, int)
        self.scale, self.distance, self.evals, self.since_growth = 1.0, 0.0, 0, 0
        self.predicted = 0.0

    def choose(self):
        for wanted in (self.active & (self.count == 1), self.active & (self.count < 2)):
            if wanted.any():
                return int(np.flatnonzero(wanted)[0])
        total = self.hessian.sum(0)
        dist = np.array([d @ total @ d for d in self.theta - self.last_theta])
        dist[~self.active] = -np.inf
        best = int(np.argmax(dist))
        if dist[best] < EPS and (~self.active).any():
            best = int(np.flatnonzero(~self.active)[0])
            self.active[best] = True
        return best

    def update(self, i, value, grad):
        delta = self.theta - self.last_theta[i]
        predicted = self.last_value[i] + self.last_grad[i] @ delta
        predicted += 0.5 * delta @ self.hessian[i] @ delta
        others = self.predicted - (self.last_value[i] - predicted)
        failed = self.count[i] > 0 and value > self.last_value[i] and value - predicted > others
        rate = 1 / self.n
        self.scale = max(self.scale / 2 if failed else rate + self.scale * (1 - rate), 1e-5)
        dgrad = grad - self.last_grad[i]
        lt, lg = np.linalg.norm(delta), np.linalg.norm(dgrad)
        if self.count[i] > 0 and lt >= EPS and lg >= EPS and abs(delta @ dgrad) / (lt * lg) >= EPS:
            self.pairs[i] = [(delta, dgrad), *self.pairs[i][: self.history - 1]]
        self.last_theta[i], self.last_grad[i], self.last_value[i] = self.theta, grad, value
        self.count[i] += 1
        self.evals += 1
        self.model(i)
        self.grow(failed)
        self.newton_step()

    def model(self, i):
        pairs = self.pairs[i]
        m = self.theta.size
        if not pairs:
            known = self.curvature > 0
            lam = self.curvature[known].mean() if known.any() else 0.0
        else:
            s_mat = np.stack([s for s, _ in pairs], 1)
            y_mat = np.stack([y for _, y in pairs], 1)
            sing = np.linalg.svd(y_mat @ np.linalg.pinv(s_mat), compute_uv=False)
            small = sing[len(pairs) - 1]
            if not np.isfinite(small) or small <= 0:
                lam = self.curvature[self.active].max()
            else:
                lam = max(small, sing[0] / 1e8)
        h = lam * np.eye(m)
        for s, y in reversed(pairs):  # oldest first
            s, y = s / np.linalg.norm(s), y / np.linalg.norm(s)
            hs = h @ s
            update = np.outer(y, y) / (y @ s) - np.outer(hs, hs) / (s @ hs)
            if np.all(np.isfinite(update)):
                h = h + update
        values, vectors = np.linalg.eigh((h + h.T) / 2)
        values[values < np.abs(values).max() / 1e8] = lam
        self.hessian[i] = (vectors * values) @ vectors.T
        self.curvature[i] = lam

    def grow(self, failed):
        inverse = np.linalg.inv(self.hessian.sum(0))
        grads = self.last_grad[self.active]
        k = len(grads)
        mean = grads.mean(0)
        spread = grads - mean
        noise = np.einsum("ik,kl,il->", spread, inverse, spread) / (k * max(k - 1, 1))
        desirable = noise >= mean @ inverse @ mean or failed or self.since_growth > k
        if desirable and self.count[self.active].min() >= 2 and (~self.active).any():
            self.active[np.flatnonzero(~self.active)[0]] = True
            self.since_growth = 0
        else:
            self.since_growth += 1

    def newton_step(self):
        total = self.hessian.sum(0)
        model_grad = np.einsum("nkl,nl->k", self.hessian, self.theta - self.last_theta)
        step = -np.linalg.solve(total, model_grad + self.last_grad.sum(0)) * self.scale
        length = np.linalg.norm(step)
        if length < 1e-8:
            step, length = step * 1e-8 / max(length, 1e-24), 1e-8
        mean = self.distance / max(self.evals, 1)
        if self.evals > self.n and length > 10 * mean:
            step, length = step * 10 * mean / length, 10 * mean
        self.theta = self.theta + step
        self.distance += length
        self.predicted = 0.5 * step @ total @ step
