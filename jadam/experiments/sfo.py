"""SFO, the sum-of-functions optimizer (Sohl-Dickstein, Poole & Ganguli, ICML 2014), in JAX.

The baseline of the Adam paper's Figure 2(b). SFO minimises F(θ) = Σᵢ fᵢ(θ), i = 1..N (one
subfunction per mini-batch), by keeping one quadratic model per subfunction,

    gᵢ(θ) = fᵢ(θᵢ) + (θ − θᵢ)ᵀ∇fᵢ(θᵢ) + ½ (θ − θᵢ)ᵀ Hᵢ (θ − θᵢ),

where θᵢ is where fᵢ was last evaluated and Hᵢ = λᵢ I + (BFGS corrections from fᵢ's last L
(Δθ, Δ∇f) pairs). Each step evaluates one subfunction j, refreshes gⱼ, and jumps to the minimum
of the sum of all models: θ ← θ − s (Σ Hᵢ)⁻¹ Σ ∇gᵢ(θ) (paper, eq. 2–8; s is a step scale halved
after a failed step). All of this happens in a shared subspace spanned by the recent positions
and gradients (dimension ≤ K_max = ⌈1.5 (2N + 2)⌉, collapsed to 2N + 2 when full), so a step
costs O(M K) for M parameters, and the active set of subfunctions grows from ``init_active`` as
the gradient noise across subfunctions rises (paper §4.2–4.4).

Why not an ``optax.GradientTransformation``: a step needs the function value (to detect a
failed step) and the identity of the mini-batch (each model belongs to one subfunction), and
SFO itself picks the next mini-batch (the one whose model is most out of date). So the
interface is ``init(params) → state`` and ``step(state, value_and_grad) → (state, f)`` with
``value_and_grad(params, index) → (fᵢ, ∇fᵢ)``; ``step`` is pure and jittable (fixed shapes;
the state is a NamedTuple of arrays). It lives in ``jadam.experiments`` because it is a baseline
for the reproduction, not an Adam-family transform of the public API.

Departures from the authors' NumPy implementation (documented, tested in tests/test_sfo.py):
deterministic choices where it draws at random (the first inactive subfunction is activated;
the next subfunction is the active one farthest from its last evaluation in the metric of the
summed Hessian, never the randomly alternated per-subfunction metric); a failed step halves the
step scale but is not retried by a line search; curvatures below max/1e8 are replaced by λᵢ
(not the median eigenvalue); a subfunction evaluated without history starts from the mean λ of
the others; no re-orthogonalisation beyond the collapse's QR.

Example:
  >>> import jax
  >>> import jax.numpy as jnp
  >>> centres = jnp.arange(6.0).reshape(3, 2)
  >>> def value_and_grad(theta, i):
  ...     d = theta - centres[i]
  ...     return 0.5 * d @ d, d
  >>> sfo = SFO(num_subfunctions=3, hessian_init=1.0)
  >>> step = jax.jit(lambda state: sfo.step(state, value_and_grad))
  >>> state = sfo.init(jnp.zeros(2))
  >>> for _ in range(12):
  ...     state, value = step(state)
  >>> [round(float(x), 3) for x in sfo.params(state)]
  [2.0, 3.0]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

_EPS = 1e-12  # The reference's threshold for "too small to use" (lengths, distances).


class SFOState(NamedTuple):
    """SFO's state; vectors in the subspace have K_max coordinates (N subfunctions, L history)."""

    theta: jax.Array  # (M,) current position (flattened parameters)
    theta_coords: jax.Array  # (K_max,) the same in subspace coordinates
    basis: jax.Array  # (M, K_max) orthonormal columns [0, dim), zeros after
    dim: jax.Array  # () int32, columns of ``basis`` in use
    last_theta: jax.Array  # (N, K_max) θᵢ in subspace coordinates
    last_grad: jax.Array  # (N, K_max) ∇fᵢ(θᵢ)
    last_value: jax.Array  # (N,) fᵢ(θᵢ)
    hist_dtheta: jax.Array  # (N, L, K_max) Δθ pairs, newest first (zeros: unused)
    hist_dgrad: jax.Array  # (N, L, K_max) Δ∇f pairs
    hessian: jax.Array  # (N, K_max, K_max) Hᵢ (zero until fᵢ is modelled)
    curvature: jax.Array  # (N,) λᵢ, the curvature outside the history directions
    eval_count: jax.Array  # (N,) int32
    active: jax.Array  # (N,) bool
    step_scale: jax.Array  # () s ∈ [1e-5, 1]
    total_distance: jax.Array  # () summed step lengths
    num_evals: jax.Array  # () int32
    since_growth: jax.Array  # () int32, steps since the active set last grew
    predicted_improvement: jax.Array  # () ½ Δᵀ(ΣHᵢ)Δ of the last step


@dataclasses.dataclass(frozen=True)
class SFO:
    """Sum-of-functions optimizer over ``num_subfunctions`` subfunctions (see module docstring).

    Args:
      num_subfunctions: N ≥ 2, the number of subfunctions (mini-batches).
      max_history: L ≥ 1, (Δθ, Δ∇f) pairs kept per subfunction for its BFGS model (keep
        2L well below the subspace's 2N + 2 directions: the reference warns below N = 25).
      hessian_init: λ of the first ``init_active`` models before any history (> 0; large, so
        the first step is a short gradient step).
      init_active: subfunctions active at the start, 1 ≤ init_active ≤ N.
      max_gradient_noise: grow the active set when the gradient's standard error across
        subfunctions exceeds this fraction of the mean gradient (both in the (ΣHᵢ)⁻¹ metric).
      max_step_length_ratio: after one pass, steps are at most this multiple of the mean step.
      min_step_length: shorter steps are lengthened to this.
      hessian_max_dev: curvatures below max/hessian_max_dev are replaced by λᵢ.
      learning_rate: multiplies every step (1 is the paper's method).
    """

    num_subfunctions: int
    max_history: int = 10
    hessian_init: float = 1e5
    init_active: int = 2
    max_gradient_noise: float = 1.0
    max_step_length_ratio: float = 10.0
    min_step_length: float = 1e-8
    hessian_max_dev: float = 1e8
    learning_rate: float = 1.0

    def __post_init__(self):
        checks = {
            "num_subfunctions": (self.num_subfunctions, "an integer ≥ 2", _int_at_least(2)),
            "max_history": (self.max_history, "an integer ≥ 1", _int_at_least(1)),
            "init_active": (
                self.init_active,
                f"an integer in [1, num_subfunctions={self.num_subfunctions}]",
                lambda v: _int_at_least(1)(v) and v <= self.num_subfunctions,
            ),
        }
        for name in (
            "hessian_init",
            "max_gradient_noise",
            "max_step_length_ratio",
            "min_step_length",
            "hessian_max_dev",
            "learning_rate",
        ):
            checks[name] = (getattr(self, name), "a finite number > 0", _positive)
        for name, (value, allowed, valid) in checks.items():
            if not valid(value):
                raise ValueError(f"SFO {name}: expected {allowed}, found {value!r}")

    # ------------------------------------------------------------------ shapes
    def subspace_sizes(self, num_params: int) -> tuple[int, int]:
        """(K_min, K_max): the collapsed and the largest subspace dimension (≤ num_params)."""
        k_min = min(2 * self.num_subfunctions + 2, num_params)
        return k_min, min(math.ceil(1.5 * k_min), num_params)

    def init(self, params: Any) -> SFOState:
        """The state at ``params`` (a pytree); the first subspace direction is θ₀ itself."""
        theta, _ = ravel_pytree(params)
        n, m = self.num_subfunctions, theta.size
        _, k_max = self.subspace_sizes(m)
        dtype = theta.dtype
        if k_max == m:  # The subspace spans the whole space.
            basis, dim = jnp.eye(m, dtype=dtype), m
        else:
            norm = jnp.linalg.norm(theta)
            first = jnp.where(norm > 0, theta / jnp.where(norm > 0, norm, 1), _unit(m, dtype))
            basis, dim = jnp.zeros((m, k_max), dtype).at[:, 0].set(first), 1
        active = jnp.arange(n) < self.init_active
        curvature = jnp.where(active, self.hessian_init, 0.0).astype(dtype)
        zeros = _zeros(dtype)
        return SFOState(
            theta=theta,
            theta_coords=basis.T @ theta,
            basis=basis,
            dim=jnp.asarray(dim, jnp.int32),
            last_theta=jnp.tile(basis.T @ theta, (n, 1)),
            last_grad=zeros((n, k_max)),
            last_value=zeros((n,)),
            hist_dtheta=zeros((n, self.max_history, k_max)),
            hist_dgrad=zeros((n, self.max_history, k_max)),
            hessian=curvature[:, None, None] * jnp.eye(k_max, dtype=dtype),
            curvature=curvature,
            eval_count=jnp.zeros(n, jnp.int32),
            active=active,
            step_scale=jnp.ones((), dtype),
            total_distance=zeros(()),
            num_evals=jnp.zeros((), jnp.int32),
            since_growth=jnp.zeros((), jnp.int32),
            predicted_improvement=zeros(()),
        )

    def params(self, state: SFOState, like: Any = None) -> Any:
        """The current position, as a pytree shaped like ``like`` (default: the flat vector)."""
        if like is None:
            return state.theta
        return ravel_pytree(like)[1](state.theta)

    # ------------------------------------------------------------------ one step
    def choose(self, state: SFOState) -> tuple[jax.Array, SFOState]:
        """The next subfunction: an active one evaluated fewer than twice (once first), else the
        active one farthest from its last evaluation, ‖θ − θᵢ‖ in the ΣHᵢ metric; when all
        are at θ already, a newly activated one."""
        n = self.num_subfunctions
        order = jnp.arange(n)
        once = state.active & (state.eval_count == 1)
        fresh = state.active & (state.eval_count < 2)
        delta = state.theta_coords - state.last_theta
        distance = jnp.einsum("ik,kl,il->i", delta, state.hessian.sum(0), delta)
        distance = jnp.where(state.active, distance, -jnp.inf)
        farthest = jnp.argmax(distance)
        inactive = ~state.active
        grow = (distance[farthest] < _EPS) & inactive.any()
        newcomer = jnp.argmax(inactive)
        index = jnp.where(
            once.any(),
            jnp.argmax(once),
            jnp.where(fresh.any(), jnp.argmax(fresh), jnp.where(grow, newcomer, farthest)),
        )
        grown = (~once.any()) & (~fresh.any()) & grow
        active = state.active | (grown & (order == newcomer))
        return index, state._replace(active=active)

    def step(
        self, state: SFOState, value_and_grad: Callable[[Any, jax.Array], tuple[Any, Any]]
    ) -> tuple[SFOState, jax.Array]:
        """Chooses a subfunction i, evaluates ``value_and_grad(θ, i)`` there and updates.

        ``value_and_grad`` receives the flat parameter vector θ and the index; returns fᵢ(θ)
        and ∇fᵢ(θ) (flat). Returns the new state and fᵢ(θ).
        """
        index, state = self.choose(state)
        value, grad = value_and_grad(state.theta, index)
        return self.update(state, index, value, grad), value

    def update(
        self, state: SFOState, index: jax.Array, value: jax.Array, grad: jax.Array
    ) -> SFOState:
        """Updates the models with fᵢ(θ) = ``value`` and ∇fᵢ(θ) = ``grad`` (flat), then steps.

        A non-finite value or gradient leaves the models as they were and halves the step scale.
        """
        value = jnp.asarray(value, state.theta.dtype)
        grad = jnp.asarray(grad, state.theta.dtype)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))

        def learn(state):
            state = self._expand_subspace(state, grad)
            state = self._record(state, index, value, state.basis.T @ grad)
            return self._newton_step(state)

        def skip(state):
            return state._replace(step_scale=jnp.maximum(state.step_scale / 2, 1e-5))

        return jax.lax.cond(finite, learn, skip, state)

    # ------------------------------------------------------------------ pieces
    def _expand_subspace(self, state: SFOState, grad: jax.Array) -> SFOState:
        """Adds the gradient's new direction to the basis; collapses the basis when full."""
        m, k_max = state.basis.shape
        if k_max == m:
            return state
        norm = jnp.linalg.norm(grad)
        direction = grad / jnp.where(norm > _EPS, norm, 1)

        def orthogonalise(direction):
            return direction - state.basis @ (state.basis.T @ direction)

        direction = orthogonalise(direction)  # Gram–Schmidt, again if it lost digits.
        direction = jax.lax.cond(
            jnp.linalg.norm(direction) < 0.1, orthogonalise, lambda d: d, direction
        )
        length = jnp.linalg.norm(direction)
        usable = (norm > _EPS) & (length > _EPS)
        column = jnp.where(usable, direction / jnp.where(usable, length, 1), 0)
        basis = jax.lax.dynamic_update_slice(
            state.basis, column[:, None], (jnp.zeros_like(state.dim), state.dim)
        )
        state = state._replace(basis=basis, dim=state.dim + usable.astype(state.dim.dtype))
        return jax.lax.cond(
            state.dim >= k_max, lambda s: self._collapse(s, s.basis.T @ grad), lambda s: s, state
        )

    def _collapse(self, state: SFOState, grad_coords: jax.Array) -> SFOState:
        """Shrinks the subspace to K_min directions spanned by the θᵢ, ∇fᵢ, θ and the new ∇f."""
        k_min, _ = self.subspace_sizes(state.theta.size)
        theta_coords = state.theta_coords
        spanning = jnp.concatenate(
            [state.last_grad.T, state.last_theta.T, grad_coords[:, None], theta_coords[:, None]],
            axis=1,
        )[:, :k_min]
        rotation = jnp.linalg.qr(spanning)[0]  # (K_max, K_min), orthonormal columns
        rotation = jnp.pad(rotation, ((0, 0), (0, state.basis.shape[1] - k_min)))
        project = lambda x: x @ rotation  # noqa: E731  (row vectors in old coordinates)
        return state._replace(
            basis=state.basis @ rotation,
            theta_coords=theta_coords @ rotation,
            dim=jnp.asarray(k_min, jnp.int32),
            last_theta=project(state.last_theta),
            last_grad=project(state.last_grad),
            hist_dtheta=project(state.hist_dtheta),
            hist_dgrad=project(state.hist_dgrad),
            hessian=jnp.einsum("ka,nkl,lb->nab", rotation, state.hessian, rotation)
            + state.curvature[:, None, None] * jnp.diag(jnp.arange(rotation.shape[1]) >= k_min),
        )

    def _record(self, state: SFOState, i: jax.Array, value: jax.Array, grad: jax.Array):
        """Stores the evaluation in subfunction i's history and rebuilds its model Hᵢ."""
        theta = state.theta_coords
        delta = theta - state.last_theta[i]
        predicted = (
            state.last_value[i]
            + state.last_grad[i] @ delta
            + 0.5 * delta @ state.hessian[i] @ delta
        )
        others = state.predicted_improvement - (state.last_value[i] - predicted)
        failed = (state.eval_count[i] > 0) & (value > state.last_value[i])
        failed &= value - predicted > others
        rate = 1 / self.num_subfunctions
        scale = jnp.where(failed, state.step_scale / 2, rate + state.step_scale * (1 - rate))
        dgrad = grad - state.last_grad[i]
        len_theta, len_grad = jnp.linalg.norm(delta), jnp.linalg.norm(dgrad)
        corr = (delta @ dgrad) / jnp.maximum(len_theta * len_grad, _EPS * _EPS)
        keep = (state.eval_count[i] > 0) & (len_theta >= _EPS) & (len_grad >= _EPS)
        keep &= jnp.abs(corr) >= _EPS

        def shift(history, new):
            return jnp.where(keep, jnp.concatenate([new[None], history[:-1]]), history)

        hist_dtheta = state.hist_dtheta.at[i].set(shift(state.hist_dtheta[i], delta))
        hist_dgrad = state.hist_dgrad.at[i].set(shift(state.hist_dgrad[i], dgrad))
        state = state._replace(
            last_theta=state.last_theta.at[i].set(theta),
            last_grad=state.last_grad.at[i].set(grad),
            last_value=state.last_value.at[i].set(value),
            hist_dtheta=hist_dtheta,
            hist_dgrad=hist_dgrad,
            eval_count=state.eval_count.at[i].add(1),
            num_evals=state.num_evals + 1,
            step_scale=jnp.maximum(scale, 1e-5),
        )
        hessian, curvature = self._model_hessian(state, i)
        state = state._replace(
            hessian=state.hessian.at[i].set(hessian), curvature=state.curvature.at[i].set(curvature)
        )
        return self._grow_active(state, failed)

    def _model_hessian(self, state: SFOState, i: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Hᵢ from λᵢ I and BFGS updates over the history pairs (oldest first), made positive."""
        dtheta, dgrad = state.hist_dtheta[i].T, state.hist_dgrad[i].T  # (K, L)
        valid = jnp.sum(dtheta**2, axis=0) > 0
        count = valid.sum()
        modelled = state.curvature > 0
        mean_other = jnp.sum(jnp.where(modelled, state.curvature, 0)) / jnp.maximum(
            modelled.sum(), 1
        )
        # λᵢ: the smallest of the `count` largest singular values of ΔG ΔΘ⁺ (the reference's
        # sqrt of the eigenvalues of (ΔG ΔΘ⁺)ᵀ(ΔG ΔΘ⁺)), floored at max/hessian_max_dev.
        singular = jnp.linalg.svd(dgrad @ jnp.linalg.pinv(dtheta), compute_uv=False)
        largest = singular[0]
        smallest = singular[jnp.clip(count - 1, 0, singular.size - 1)]
        bad = ~jnp.isfinite(smallest) | (smallest <= 0)
        fallback = jnp.max(jnp.where(state.active, state.curvature, 0))
        curvature = jnp.where(bad, fallback, jnp.maximum(smallest, largest / self.hessian_max_dev))
        curvature = jnp.where(count > 0, curvature, mean_other)
        eye = jnp.eye(dtheta.shape[0], dtype=dtheta.dtype)

        def bfgs(hessian, pair):
            s, y, use = pair
            scale = jnp.linalg.norm(s)
            s, y = s / jnp.where(use, scale, 1), y / jnp.where(use, scale, 1)
            hs = hessian @ s
            update = jnp.outer(y, y) / (y @ s) - jnp.outer(hs, hs) / (s @ hs)
            return jnp.where(use & jnp.all(jnp.isfinite(update)), hessian + update, hessian), None

        pairs = (dtheta.T[::-1], dgrad.T[::-1], valid[::-1])
        hessian, _ = jax.lax.scan(bfgs, curvature * eye, pairs)
        values, vectors = jnp.linalg.eigh((hessian + hessian.T) / 2)
        top = jnp.max(jnp.abs(values))
        values = jnp.where(values < top / self.hessian_max_dev, curvature, values)
        return (vectors * values) @ vectors.T, curvature

    def _grow_active(self, state: SFOState, failed: jax.Array) -> SFOState:
        """Activates the first inactive subfunction when the gradient noise across the active
        ones is large relative to their mean gradient, after a failed step, or after as many
        steps as there are active subfunctions (once every active one was evaluated twice)."""
        inverse = jnp.linalg.inv(state.hessian.sum(0))
        active = state.active
        num_active = active.sum()
        mean = jnp.sum(jnp.where(active[:, None], state.last_grad, 0), 0) / num_active
        spread = jnp.where(active[:, None], state.last_grad - mean, 0)
        noise = jnp.einsum("ik,kl,il->", spread, inverse, spread) / (
            num_active * jnp.maximum(num_active - 1, 1)
        )
        desirable = (noise >= (mean @ inverse @ mean) * self.max_gradient_noise) | failed
        desirable |= state.since_growth > num_active
        eligible = jnp.min(jnp.where(active, state.eval_count, 2)) >= 2
        grow = desirable & eligible & (~active).any()
        newcomer = jnp.arange(active.size) == jnp.argmax(~active)
        return state._replace(
            active=active | (grow & newcomer),
            since_growth=jnp.where(grow, 0, state.since_growth + 1),
        )

    def _newton_step(self, state: SFOState) -> SFOState:
        """θ ← θ + s Δ with Δ = −(ΣHᵢ)⁻¹ Σ ∇gᵢ(θ), its length bounded as the reference does."""
        delta = state.theta_coords - state.last_theta
        model_grad = jnp.einsum("nkl,nl->k", state.hessian, delta) + state.last_grad.sum(0)
        total = state.hessian.sum(0)
        step = -jnp.linalg.solve(total, model_grad) * state.step_scale * self.learning_rate
        length = jnp.linalg.norm(step)
        step = jnp.where(
            length < self.min_step_length,
            step * self.min_step_length / jnp.maximum(length, _EPS * _EPS),
            step,
        )
        length = jnp.maximum(length, self.min_step_length)
        mean_length = state.total_distance / jnp.maximum(state.num_evals, 1)
        too_long = (state.num_evals > self.num_subfunctions) & (
            length > self.max_step_length_ratio * mean_length
        )
        shrink = jnp.where(too_long, self.max_step_length_ratio * mean_length / length, 1)
        step, length = step * shrink, length * shrink
        return state._replace(
            theta=state.theta + state.basis @ step,
            theta_coords=state.theta_coords + step,
            total_distance=state.total_distance + length,
            predicted_improvement=0.5 * step @ total @ step,
        )


def _zeros(dtype):
    return lambda shape: jnp.zeros(shape, dtype)


def _unit(m: int, dtype) -> jax.Array:
    return jnp.zeros(m, dtype).at[0].set(1)


def _int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _positive(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
