"""Fused Adam(W), AdaMax and NAdam(W): the whole tree in one pass per step (``fused=True``).

XLA's CPU code for Adam makes about three passes over memory per leaf and one set of kernels
per leaf. With ``fused=True`` a C++ kernel (:mod:`jadam._kernel`) updates the leaves in one
custom call per group: it reads g, the stored m and v (and θ) once, decodes, updates and
encodes the moments and writes θ (or the update, over the gradient's buffer) in the same pass,
for float32, stochastically rounded bfloat16/float16 and block-wise 8-bit moments. ``update``
with float32 moments (or, with XLA's region-analysis copy insertion, 16-bit ones)
writes m and v alone and leaves the update to XLA, with the pure path's own code, so that it
fuses into ``optax.apply_updates`` (see :class:`KernelExecutor`). Results
are the pure path's (state bit for bit, see tests/test_fused.py).

Three separate decisions meet here: *what* the step computes (:class:`jadam._spec.StepSpec`),
*how* the moments are stored (:class:`jadam._storage.Moments`), and *how* it executes: the
:class:`KernelExecutor` runs the kernel where it can and otherwise the pure transformation.
Options the kernel does not implement raise ``ValueError`` when the transformation is built;
an environment it cannot run in (no compiled kernel, a non-CPU backend, arrays sharded over
several devices, non-float32 parameters, ``jax.vmap``/differentiation) falls back to the pure
arithmetic with one :class:`FusedFallbackWarning` per reason and process.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jadam import _kernel, _packed, _primitives, _storage, _validation
from jadam import _kernel_reference as reference
from jadam._family import MomentStep
from jadam._packed import PackedAdamState
from jadam._precision import StochasticRounding
from jadam._quantization import Blockwise8bit
from jadam._spec import StepSpec

_is_none = lambda x: x is None  # noqa: E731


# update's moments-only mode reads every leaf's update out of the packed moment vectors; XLA's
# compile time of that grows faster than the leaf count (the update step on 2 cores: 131 leaves
# 2.2 s, 256 leaves 4.1 s, 1000 leaves 29 s; optax.adam's: 0.6 s, 1.6 s), so larger packed
# trees write the updates over the gradients instead (0.3 s at 300 leaves).
MOMENTS_ONLY_MAX_PACKED_LEAVES = 256


REGION_ANALYSIS_FLAG = "--xla_cpu_copy_insertion_use_region_analysis"


def xla_orders_in_place_writes() -> bool:
    """Whether ``XLA_FLAGS`` turns on XLA's CPU copy insertion with region analysis.

    With it XLA proves that its reads of a buffer come before the kernel's in-place write of
    it and copies nothing, so ``update`` can compute the updates from the old 16-bit moments
    (see :class:`KernelExecutor`). The last occurrence of the flag wins, as in XLA.

    >>> isinstance(xla_orders_in_place_writes(), bool)
    True
    """
    value = "false"
    for flag in os.environ.get("XLA_FLAGS", "").split():
        name, equals, setting = flag.partition("=")
        if name == REGION_ANALYSIS_FLAG:
            value = setting.lower() if equals else "true"  # a bare boolean flag is true
    return value in ("true", "1")


class FusedFallbackWarning(UserWarning):
    """``fused=True`` ran the pure-JAX arithmetic instead of the kernel (the message says why)."""


_WARNED: set[str] = set()


def warn_fallback(reason: str) -> None:
    """Warns once per process and reason that the kernel did not run."""
    if reason in _WARNED:
        return
    _WARNED.add(reason)
    warnings.warn(
        f"jadam fused=True runs the pure-JAX path: {reason}.", FusedFallbackWarning, stacklevel=4
    )


# --------------------------------------------------------------------------------------------
# Construction: options the kernel does not implement.


def check_supported(spec: StepSpec, moments: _storage.Moments) -> None:
    """Raises ``ValueError`` naming the first option of ``spec``/``moments`` the kernel lacks."""

    def refuse(option: str, value: Any, allowed: str) -> None:
        raise ValueError(
            f"fused=True does not support {option}={value!r} (the kernel runs {allowed}); "
            "use fused=False for this option."
        )

    if spec.algorithm not in ("adam", "adamax"):
        refuse("algorithm", spec.algorithm, "Adam, AdamW, AdaMax, NAdam and NAdamW")
    if spec.eps_form != "algorithm1":
        refuse("eps_form", spec.eps_form, "eps_form='algorithm1'")
    if spec.b1_decay is not None:
        refuse("b1_decay", spec.b1_decay, "a constant β1")
    if callable(spec.weight_decay):
        refuse("weight_decay", spec.weight_decay, "a constant weight decay")
    if moments.storage is None:
        for name in ("mu_dtype", "nu_dtype"):
            dtype = getattr(moments, name)
            if dtype is not None and jnp.dtype(dtype) != jnp.float32:
                refuse(
                    name, dtype, "float32 moments or state_precision='bfloat16'/'float16'/'8bit'"
                )


def _kernel_algorithm(spec: StepSpec) -> int:
    """The kernel's algorithm code: AdaMax, Adam, or Adam with Dozat's Nesterov step (NAdam)."""
    if spec.algorithm == "adamax":
        return _kernel.ADAMAX
    return _kernel.NADAM if spec.nesterov else _kernel.ADAM


# --------------------------------------------------------------------------------------------
# Run time: the environment, and the state the kernel is handed.


def _on_one_cpu_device(x: Any) -> str | None:
    """None, or why ``x`` cannot be handed to the CPU kernel."""
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        devices = x.sharding.device_set
        if len(devices) > 1:
            return "arrays sharded over several devices"
        return None if next(iter(devices)).platform == "cpu" else "a non-CPU backend"
    spec = getattr(getattr(jax.typeof(x), "sharding", None), "spec", None)
    if spec is not None and any(axis is not None for axis in spec):
        return "arrays sharded over several devices"  # jax.sharding.AxisType.Explicit
    return None if jax.default_backend() == "cpu" else "a non-CPU backend"


def _is_f32_scalar(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    return isinstance(value, jax.Array) and value.dtype == jnp.float32 and value.ndim == 0


def environment_reason(
    arrays: list[Any], hyperparameters: list[Any], others: list[Any] = ()
) -> str | None:
    """None if the kernel can run on these float32 ``arrays`` (and ``others``), else why not."""
    if not _kernel.available():
        return "the kernel was not built (no C++ compiler or jaxlib headers at install time)"
    if any(getattr(x, "dtype", None) != jnp.float32 for x in arrays):
        return "parameters or gradients that are not float32"
    if not all(_is_f32_scalar(h) for h in hyperparameters):
        return "hyperparameters that are not float32 scalars"
    for x in [*arrays, *others]:
        reason = _on_one_cpu_device(x)
        if reason:
            return reason
    return None


def _expected_moment(storage: Any, shape: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
    """(shape, dtype) the pure path stores a moment in, for a float32 leaf of ``shape``."""
    if storage is None:
        return shape, jnp.dtype(jnp.float32)
    return storage.stored_form(shape)


def _kind(storage: Any, dtype: Any) -> int:
    """The kernel's code for a stored moment of ``dtype``, as ``storage`` names it."""
    codes = {
        "float32": _kernel.FLOAT32,
        "bfloat16": _kernel.BFLOAT16,
        "float16": _kernel.FLOAT16,
        "blockwise8": _kernel.BLOCKWISE8,
        "blockwise8_nearest": _kernel.BLOCKWISE8_NEAREST,
    }
    return codes["float32" if storage is None else storage.kernel_kind(dtype)]


def _check_moment(name: str, path: str, stored: Any, grad: Any, storage: Any) -> None:
    shape, dtype = _expected_moment(storage, tuple(grad.shape))
    if tuple(np.shape(stored)) != shape or getattr(stored, "dtype", None) != dtype:
        raise ValueError(
            f"optimizer state leaf {name}{path} has shape {tuple(np.shape(stored))} and dtype "
            f"{getattr(stored, 'dtype', type(stored).__name__)}; state_precision="
            f"{storage!r} stores a gradient of shape {tuple(grad.shape)} as shape {shape}, "
            f"dtype {dtype}."
        )


# --------------------------------------------------------------------------------------------
# The executor.


class UpdateFromMoments(NamedTuple):
    """The pure path's update from new moments: ``direction(spec, updates, moment_step)`` (the
    scaling's lines after the moments) and ``tail``, chain([decayed weights,] −learning rate)
    with the state of the pure chain's elements after the scaling."""

    direction: Callable[[StepSpec, Any, MomentStep], Any]
    tail: optax.GradientTransformation


class KernelExecutor:
    """Runs a :class:`StepSpec` with ``moments`` through the kernel, or ``pure`` where it cannot.

    ``pure`` is the unfused alias (chain of the scaling, [weight decay,] learning rate) built
    from the same spec; its state layout is the executor's, except that ``init`` packs float32
    and 16-bit moments into one vector each (:class:`jadam.PackedAdamState`) on one CPU device.

    Kernel modes: ``apply_gradients`` writes θ, m and v in one pass. ``update`` with float32
    moments (and ``from_moments`` given; not NAdam) runs the moments-only mode: the kernel
    writes m and v in place, and XLA computes the updates from them with ``from_moments`` (the
    pure path's own code, so the same bits), which fuses into ``optax.apply_updates``; no
    buffer is written for the updates, so a gradient that is a non-donated argument of the
    jitted step is not copied. ``update`` with 16-bit or 8-bit moments (or NAdam) writes the
    updates over the gradients' buffers (free when the gradients are computed inside the
    jitted step; a copy when they are a non-donated argument); with 16-bit moments (bfloat16
    only when packed) and :func:`xla_orders_in_place_writes` it runs the moments-only mode
    too (the kernel decodes, updates and encodes m and v in place), and XLA computes
    the updates with ``pure`` itself from the OLD stored moments (the pure path's direction
    needs the unrounded new moments, which are not stored), reading them before the kernel
    overwrites them; without that flag XLA would copy the old moments first.
    """

    def __init__(
        self,
        spec: StepSpec,
        moments: _storage.Moments,
        pure: optax.GradientTransformation,
        from_moments: UpdateFromMoments | None = None,
    ):
        check_supported(spec, moments)
        self.spec, self.moments, self.pure = spec, moments, pure
        self.from_moments = from_moments
        self.storage = moments.storage
        self.algorithm = _kernel_algorithm(spec)
        self.has_decay = spec.weight_decay is not None and not (
            isinstance(spec.weight_decay, (int, float)) and spec.weight_decay == 0
        )
        self.safe = _primitives.needs_safe_divide(spec.eps)

    # -- init -------------------------------------------------------------------------------
    def init(self, params: Any) -> Any:
        leaves = jax.tree.leaves(params)
        if (
            isinstance(self.storage, Blockwise8bit)
            or not _packed.packable(leaves)
            or not _kernel.available()
        ):
            return self.pure.init(params)
        shapes = jax.eval_shape(self.pure.init, params)  # also validates params
        rest = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes[1:])
        dtype = self.storage.dtype if isinstance(self.storage, StochasticRounding) else jnp.float32
        return (_packed.zeros(leaves, dtype), *rest)

    # -- update / apply_gradients -------------------------------------------------------------
    def update(self, updates: Any, state: Any, params: Any = None, **extra_args: Any) -> Any:
        del extra_args
        return self.run(updates, state, params, apply=False)

    def apply_gradients(self, params: Any, grads: Any, state: Any) -> tuple[Any, Any]:
        return self.run(grads, state, params, apply=True)

    def _hyperparameters(self) -> list[Any]:
        spec = self.spec
        values = [spec.b1, spec.b2, spec.eps, spec.eps_root]
        values += [spec.weight_decay] if self.has_decay else []
        return values + ([] if callable(spec.learning_rate) else [spec.learning_rate])

    def _decay_flags(self, params: Any, n: int) -> tuple[bool, ...]:
        if not self.has_decay:
            return (False,) * n
        mask = self.spec.mask
        if mask is None:
            return (True,) * n
        flags = jax.tree.leaves(mask(params) if callable(mask) else mask)
        if len(flags) != n or not all(isinstance(f, (bool, np.bool_)) for f in flags):
            raise ValueError(
                "fused=True needs a weight-decay mask with one Python bool per parameter leaf "
                f"({n}), got {len(flags)} leaves: {flags[:4]}; use fused=False for this mask."
            )
        return tuple(bool(f) for f in flags)

    def _moment_lists(self, grads_all, scale_state, treedef, packed):
        """([m per leaf] or [packed m], same for v), after checking them against the grads."""
        present = [g for g in grads_all if g is not None]
        if packed:
            _packed.check_size(present, scale_state, "gradient")
            dtype = self.storage.dtype if isinstance(self.storage, StochasticRounding) else None
            want = jnp.dtype(dtype or jnp.float32)
            for name in ("mu", "nu"):
                got = getattr(scale_state, name).dtype
                if got != want:
                    raise ValueError(
                        f"packed optimizer state {name} has dtype {got}, state_precision="
                        f"{self.moments.state_precision!r} stores {want}."
                    )
            return [scale_state.mu], [scale_state.nu]
        if jax.tree.structure(scale_state.mu, is_leaf=_is_none) != treedef:
            _validation.check_tree_matches(treedef.unflatten(grads_all), scale_state.mu)  # raises
        paths = [
            jax.tree_util.keystr(p)
            for p, _ in jax.tree_util.tree_flatten_with_path(scale_state.mu, is_leaf=_is_none)[0]
        ]
        lists = []
        for name in ("mu", "nu"):
            stored = treedef.flatten_up_to(getattr(scale_state, name))
            for path, s, g in zip(paths, stored, grads_all, strict=True):
                if g is not None:
                    _check_moment(name, path, s, g, self.storage)
            lists.append([s for s, g in zip(stored, grads_all, strict=True) if g is not None])
        return lists[0], lists[1]

    def _scalars(self, count: jax.Array, lr_state: Any) -> jax.Array:
        spec = self.spec
        schedule = spec.learning_rate if callable(spec.learning_rate) else None
        return _kernel.scalars(
            self.algorithm, spec.b1, spec.b2, spec.eps, spec.eps_root,
            bias_correction=spec.bias_correction, count=count,
            learning_rate=schedule(lr_state.count) if schedule else spec.learning_rate,
            weight_decay=spec.weight_decay if self.has_decay else 0.0,
        )  # fmt: skip

    def run(self, grads: Any, state: Any, params: Any, *, apply: bool) -> tuple[Any, Any]:
        """(updates or new params, new state): the kernel, or the pure path with a warning."""
        scale_state, lr_state = state[0], state[-1]
        packed = isinstance(scale_state, PackedAdamState)
        grads_all, treedef = jax.tree.flatten(grads, is_leaf=_is_none)
        index = [i for i, g in enumerate(grads_all) if g is not None]
        g_leaves = [grads_all[i] for i in index]
        if packed and any(getattr(g, "dtype", None) != jnp.float32 for g in g_leaves):
            dtypes = sorted({str(getattr(g, "dtype", type(g).__name__)) for g in g_leaves})
            raise TypeError(f"packed fused state needs float32 gradients, got {dtypes}.")
        needs_params = apply or self.has_decay
        if needs_params and params is None:
            raise ValueError("this optimizer needs params: call update(grads, state, params).")
        p_all = treedef.flatten_up_to(params) if needs_params else []
        p_leaves = [p_all[i] for i in index] if needs_params else []
        others = [scale_state.mu] if packed else []
        reason = (
            environment_reason(g_leaves + p_leaves, self._hyperparameters(), others)
            if g_leaves
            else "no leaves"
        )
        if reason and not packed:
            if g_leaves:
                warn_fallback(reason)
            return self._pure(grads, state, params, apply)
        mu, nu = self._moment_lists(grads_all, scale_state, treedef, packed)
        moments_only, from_old = self._update_mode(apply, packed, len(g_leaves))
        flags = self._decay_flags(params, len(g_leaves))
        if moments_only:  # the decay is XLA's, after the kernel
            flags, p_leaves = (False,) * len(g_leaves), []
        kinds = [_kind(self.storage, jnp.dtype(m.dtype)) for m in mu]
        plan = _kernel.StepPlan(
            algorithm=self.algorithm,
            apply=apply,
            moments_only=moments_only,
            safe=self.safe,
            packed=packed,
            leaves=tuple(
                _kernel.LeafPlan(
                    kind=kinds[0 if packed else k],
                    block=int(mu[0 if packed else k].shape[-1]) - 4
                    if kinds[0 if packed else k] >= _kernel.BLOCKWISE8
                    else 1,
                    decay=flags[k],
                    index=i,
                )
                for k, i in enumerate(index)
            ),
            storage=self.storage,
        )
        count = _primitives.increment(scale_state.count)
        scalars = self._scalars(count, lr_state)
        if reason:  # a packed state the kernel cannot take: its jnp transcription
            warn_fallback(reason)
            out, mu, nu = reference.step(plan, scalars, p_leaves, g_leaves, mu, nu)
        else:
            out, mu, nu = _kernel.step_function(plan, warn_fallback)(
                scalars, p_leaves, g_leaves, mu, nu
            )

        def tree(values):
            full = list(grads_all)  # None where the gradient is None
            for i, x in zip(index, values, strict=True):
                full[i] = x
            return treedef.unflatten(full)

        if packed:
            scale_state = PackedAdamState(count=count, mu=mu[0], nu=nu[0])
        else:
            scale_state = state[0]._replace(count=count, mu=tree(mu), nu=tree(nu))
        if from_old:  # the pure path's updates from the old moments; the kernel's state
            updates, pure_state = self.pure.update(grads, self.unpack_state(state, grads), params)
            return updates, (scale_state, *pure_state[1:])
        if moments_only:
            if packed:
                mu, nu = _packed.unpack(mu[0], g_leaves), _packed.unpack(nu[0], g_leaves)
            return self._updates_from_moments(grads, state, params, scale_state, tree(mu), tree(nu))
        lr_state = state[-1]
        if callable(self.spec.learning_rate):
            lr_state = lr_state._replace(count=optax.safe_increment(lr_state.count))
        return tree(out), (scale_state, *state[1:-1], lr_state)

    def _update_mode(self, apply: bool, packed: bool, leaves: int) -> tuple[bool, bool]:
        """(moments-only kernel mode, updates from the OLD moments) for this call.

        8-bit moments keep transform mode: XLA's decoding of the codes for the updates made the
        step slower (10M values: 38 ms against 35 ms). Packed float16 too: XLA rounds the pure
        step on views of the packed vectors one ulp away from the per-leaf step in a few
        elements (no kernel involved). NAdam with float32 moments: XLA's rounding of its
        direction differs when packed.
        """
        if apply or (packed and leaves > MOMENTS_ONLY_MAX_PACKED_LEAVES):
            return False, False
        if isinstance(self.storage, StochasticRounding):
            from_old = not packed or self.storage.dtype == jnp.bfloat16
            from_old = from_old and xla_orders_in_place_writes()
            return from_old, from_old
        float32 = self.storage is None and self.from_moments is not None
        return float32 and not self.spec.nesterov, False

    def _updates_from_moments(self, grads, state, params, scale_state, mu, nu):
        """The updates from the kernel's new float32 moments, by the pure path's own code."""
        step = MomentStep(scale_state.count, mu, nu, stored_mu=mu, stored_nu=nu)
        direction = self.from_moments.direction(self.spec, grads, step)
        updates, tail_state = self.from_moments.tail.update(direction, tuple(state[1:]), params)
        return updates, (scale_state, *tail_state)

    def _pure(self, grads: Any, state: Any, params: Any, apply: bool) -> tuple[Any, Any]:
        updates, state = self.pure.update(grads, state, params)
        return (optax.apply_updates(params, updates) if apply else updates), state

    # -- layout -----------------------------------------------------------------------------
    def unpack_state(self, state: Any, params: Any) -> Any:
        first = state[0]
        if not isinstance(first, PackedAdamState):
            return state
        leaves, treedef = jax.tree.flatten(params)
        _packed.check_size(leaves, first, "params")
        mu = treedef.unflatten(_packed.unpack(first.mu, leaves))
        nu = treedef.unflatten(_packed.unpack(first.nu, leaves))
        unfused = jax.eval_shape(self.pure.init, params)[0]
        return (unfused._replace(count=first.count, mu=mu, nu=nu), *state[1:])


# --------------------------------------------------------------------------------------------
# The public transformation.


class FusedTransformation(optax.GradientTransformationExtraArgs):
    """An optax transformation with a one-pass, in-place ``apply_gradients``.

    ``init`` and ``update`` behave as the unfused alias (same numbers; ``init`` may pack the
    moments, see :class:`jadam.PackedAdamState`). ``update`` with float32 moments updates m
    and v in place in one kernel pass and computes the updates from them with the pure path's
    code (XLA fuses that into ``optax.apply_updates``; the updates are the pure path's bit for
    bit); with 16-bit or 8-bit moments it computes the updates and both moments in one kernel
    pass and writes the updates over the gradients' buffers (16-bit moments under XLA's
    region-analysis copy insertion: see :class:`KernelExecutor`).
    ``apply_gradients(params, grads, state) -> (new_params, new_state)`` equals ``update``
    followed by ``optax.apply_updates`` and writes θ, m and v in place: inside ``jax.jit``
    with params and state donated it moves 28 bytes per float32 parameter (float32 moments).

    Example:
      >>> import jax, jax.numpy as jnp, jadam
      >>> tx = jadam.adam(0.1, fused=True)
      >>> step = jax.jit(tx.apply_gradients, donate_argnums=(0, 2))
      >>> params = {"w": jnp.zeros(3)}
      >>> params, state = step(params, {"w": jnp.array([1.0, -2.0, 0.0])}, tx.init(params))
      >>> params["w"]
      Array([-0.1,  0.1,  0. ], dtype=float32)
    """

    @property
    def executor(self) -> KernelExecutor:
        """The :class:`KernelExecutor` whose ``init``/``update`` this transformation holds."""
        return self.update.__self__  # type: ignore[attr-defined]

    def apply_gradients(self, params: Any, grads: Any, state: Any) -> tuple[Any, Any]:
        """θ ← θ + update(g), with the moments, in one pass (see the class docstring).

        The arguments come in the order of the results (params first, state last) so that
        ``jax.jit(tx.apply_gradients, donate_argnums=(0, 2))`` pairs each donated buffer with
        the output that replaces it (JAX matches donations to outputs in order).
        """
        return self.executor.apply_gradients(params, grads, state)

    def unpack_state(self, state: Any, params: Any) -> Any:
        """``state`` in the unfused alias's layout (one m_t and v_t per leaf of ``params``).

        The identity on a state that is not packed. With it a run can switch between
        ``fused=True`` and ``fused=False``, or read one leaf's moments.

        >>> import jax.numpy as jnp, jadam
        >>> tx = jadam.adam(0.1, fused=True)
        >>> params = {"b": jnp.zeros(2), "w": jnp.zeros((2, 3))}
        >>> _, state = tx.update({"b": jnp.ones(2), "w": jnp.ones((2, 3))}, tx.init(params))
        >>> tx.unpack_state(state, params)[0].mu["w"].shape
        (2, 3)
        """
        return self.executor.unpack_state(state, params)


def fused_transformation(
    spec: StepSpec,
    moments: _storage.Moments,
    pure: optax.GradientTransformation,
    from_moments: UpdateFromMoments | None = None,
) -> FusedTransformation:
    """The fused twin of ``pure`` (the unfused alias built from ``spec`` and ``moments``).

    ``from_moments``: how ``pure`` turns new moments into updates, for ``update``'s
    moments-only kernel mode (see :class:`KernelExecutor`); None: ``update`` writes the
    updates over the gradients.
    """
    executor = KernelExecutor(spec, moments, pure, from_moments)
    return FusedTransformation(executor.init, executor.update)


def fused_train_step(
    tx: FusedTransformation, loss_fn: Callable[..., jax.Array]
) -> Callable[..., tuple[Any, Any, jax.Array]]:
    """A jitted ``step(params, state, *batch) -> (params, state, loss)`` that donates.

    ``loss_fn(params, *batch)`` returns a scalar; params and optimizer state are donated so
    the fused kernel updates them in place.

    >>> import jax.numpy as jnp, jadam
    >>> tx = jadam.adam(0.1, fused=True)
    >>> step = jadam.fused_train_step(tx, lambda p, x: jnp.sum((p - x) ** 2))
    >>> params = jnp.zeros(2)
    >>> params, state, loss = step(params, tx.init(params), jnp.ones(2))
    >>> params
    Array([0.1, 0.1], dtype=float32)
    """

    def step(params, state, *batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        params, state = tx.apply_gradients(params, grads, state)
        return params, state, loss

    return jax.jit(step, donate_argnums=(0, 1))
