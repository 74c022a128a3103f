"""Fused Adam, AdamW and AdaMax: the whole tree in one pass per step, in place (``fused=True``).

XLA's CPU code for Adam makes about three passes over memory per leaf and one set of kernels
per leaf. Here a C++ kernel (``jadam/csrc/fused_adam.cc``, registered through ``jax.ffi`` and
built at install time) updates every leaf in one custom call: it reads g, m, v (and θ) once
and writes m, v and θ (or the update) once, 28 bytes per float32 parameter, on XLA's intra-op
thread pool, with outputs aliased to the (donated) inputs. The arithmetic is operation for
operation that of :func:`jadam.scale_by_adam` / :func:`jadam.scale_by_adamax` followed by
``optax.add_decayed_weights`` and ``optax.scale_by_learning_rate``, so results are identical
bit for bit. On CPU ``init`` packs the moments of all leaves into one vector each
(:class:`PackedAdamState`): the jitted step then has two moment buffers instead of two per leaf,
and XLA's compile time grows with the number of buffers. ``update`` also accepts the unfused
alias's state, and ``unpack_state`` converts a packed one to it.

Where the kernel does not apply the unfused alias runs instead: non-CPU backends, arrays
sharded over several devices, dtypes other than float32, ``mu_dtype``, Nesterov momentum,
weight-decay schedules, or a package built without a C++ compiler. Under ``jax.vmap`` and
differentiation the kernel is replaced by a pure-JAX transcription of the same arithmetic.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jadam import _primitives as P
from jadam import _validation as V

_TARGET = "jadam_fused_adam"
_LIBRARY_STEM = "_fused_adam_kernel"
# Leaves per custom call. XLA's alias analysis grows faster than linearly with the operands
# of one instruction (300 leaves in one call: 2 s to compile, 1000: ~60 s); groups of 32
# keep compile time linear in the number of leaves at no measurable run-time cost.
_LEAVES_PER_CALL = 32
# With packed moments a call has two operands per leaf instead of four.
_PACKED_LEAVES_PER_CALL = 64

# Layout of the scalar operand; keep in sync with `enum Scalar` in csrc/fused_adam.cc.
_SCALARS = (
    "b1",
    "one_minus_b1",
    "b2",
    "one_minus_b2",
    "inverse_bias_correction1",
    "inverse_bias_correction2",
    "eps",
    "eps_root",
    "neg_learning_rate",
    "weight_decay",
)
_S = {name: i for i, name in enumerate(_SCALARS)}
_ADAM, _ADAMAX = 0, 1


def _library_path() -> pathlib.Path | None:
    package = pathlib.Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = package / f"{_LIBRARY_STEM}{suffix}"
        if path.exists():
            return path
    return None


@functools.cache
def kernel_available() -> bool:
    """Whether the fused CPU kernel was built and registered with XLA (loaded on first call).

    >>> isinstance(kernel_available(), bool)
    True
    """
    path = _library_path()
    if path is None:
        return False
    try:
        library = ctypes.cdll.LoadLibrary(str(path))
        handler = jax.ffi.pycapsule(library.JadamFusedAdam)
        jax.ffi.register_ffi_target(_TARGET, handler, platform="cpu")
    except (OSError, AttributeError, ValueError, RuntimeError):
        return False
    return True


# --------------------------------------------------------------------------------------------
# The step on flat lists of leaves: kernel, and its pure-JAX transcription.


def _reference_leaf(s, p, g, m, v, *, algorithm, apply, decay, safe):
    """One leaf of the fused step in jnp, in the kernel's (= the unfused path's) order."""
    m = s[_S["b1"]] * m + s[_S["one_minus_b1"]] * g
    if algorithm == _ADAM:
        v = s[_S["b2"]] * v + s[_S["one_minus_b2"]] * (g * g)
        v_hat = v * s[_S["inverse_bias_correction2"]]
        denominator = jnp.sqrt(v_hat + s[_S["eps_root"]]) + s[_S["eps"]]
    else:
        v = jnp.maximum(s[_S["b2"]] * v, jnp.abs(g))
        denominator = v + s[_S["eps"]]
    m_hat = m * s[_S["inverse_bias_correction1"]]
    direction = P.safe_divide(m_hat, denominator) if safe else m_hat / denominator
    if decay:
        direction = direction + s[_S["weight_decay"]] * p
    update = direction * s[_S["neg_learning_rate"]]
    return (p + update if apply else update), m, v


def _reference_step(scalars, params, grads, mu, nu, *, algorithm, apply, decay, safe):
    outs = [[], [], []]
    for i, (g, m, v) in enumerate(zip(grads, mu, nu, strict=True)):
        p = params[i] if params else None
        for out, x in zip(
            outs,
            _reference_leaf(
                scalars, p, g, m, v, algorithm=algorithm, apply=apply, decay=decay[i], safe=safe
            ),
            strict=True,
        ):
            out.append(x)
    return tuple(outs)


def _attributes(algorithm, apply, decay, safe, packed=False, offset=0) -> dict[str, Any]:
    """The custom call's attributes (see the handler's binding in csrc/fused_adam.cc)."""
    return dict(
        algorithm=np.int32(algorithm),
        apply=np.int32(apply),
        decay=np.int32(decay),
        safe_divide=np.int32(safe),
        packed=np.int32(packed),
        offset=np.int64(offset),
    )


def _kernel_call(scalars, params, grads, mu, nu, *, algorithm, apply, decay, safe):
    """One custom call; outputs alias params (apply mode), mu and nu."""
    n = len(grads)
    flags = _attributes(algorithm, apply, decay, safe)
    shapes = [jax.ShapeDtypeStruct(g.shape, g.dtype) for g in grads]
    result_shapes = shapes * 3
    if apply:  # operands: scalars, p, g, m, v; results: p, m, v
        operands = (scalars, *params, *grads, *mu, *nu)
        aliases = {1 + i: i for i in range(n)}
        aliases |= {1 + 2 * n + i: n + i for i in range(n)}
        aliases |= {1 + 3 * n + i: 2 * n + i for i in range(n)}
    else:  # operands: scalars, g, m, v[, p]; results: u, m, v
        operands = (scalars, *grads, *mu, *nu, *(params if decay else ()))
        aliases = {1 + n + i: n + i for i in range(n)}
        aliases |= {1 + 2 * n + i: 2 * n + i for i in range(n)}
    call = jax.ffi.ffi_call(_TARGET, result_shapes, input_output_aliases=aliases)
    results = call(*operands, **flags)
    return results[:n], results[n : 2 * n], results[2 * n :]


def _kernel_step(scalars, params, grads, mu, nu, *, algorithm, apply, decay, safe):
    """All leaves, in groups of leaves that share the weight-decay flag."""
    n = len(grads)
    out = [[None] * n, [None] * n, [None] * n]
    for flag in (False, True):
        index = [i for i in range(n) if decay[i] == flag]
        for start in range(0, len(index), _LEAVES_PER_CALL):
            group = index[start : start + _LEAVES_PER_CALL]
            pick = lambda xs, group=group: [xs[i] for i in group]  # noqa: E731
            results = _kernel_call(
                scalars,
                pick(params) if params else [],
                pick(grads),
                pick(mu),
                pick(nu),
                algorithm=algorithm,
                apply=apply,
                decay=flag,
                safe=safe,
            )
            for k, xs in enumerate(results):
                for i, x in zip(group, xs, strict=True):
                    out[k][i] = x
    return tuple(out)


def _packed_kernel_call(scalars, params, grads, mu, nu, offset, *, algorithm, apply, decay, safe):
    """One custom call over consecutive leaves whose moments start at ``offset`` of the packed
    ``mu``/``nu``; outputs alias params (apply mode) and the whole of mu and nu."""
    n = len(grads)
    flags = _attributes(algorithm, apply, decay, safe, packed=True, offset=offset)
    shapes = [jax.ShapeDtypeStruct(g.shape, g.dtype) for g in grads]
    moments = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in (mu, nu)]
    result_shapes = [*shapes, *moments]
    if apply:  # operands: scalars, p, g, m, v; results: p, m, v
        operands = (scalars, *params, *grads, mu, nu)
        aliases = {1 + i: i for i in range(n)} | {1 + 2 * n: n, 2 + 2 * n: n + 1}
    else:  # operands: scalars, g, m, v[, p]; results: u, m, v
        operands = (scalars, *grads, mu, nu, *(params if decay else ()))
        aliases = {1 + n: n, 2 + n: n + 1}
    call = jax.ffi.ffi_call(_TARGET, result_shapes, input_output_aliases=aliases)
    results = call(*operands, **flags)
    return results[:n], results[n], results[n + 1]


def _runs(decay: Sequence[bool]) -> list[tuple[int, int]]:
    """[start, stop) runs of consecutive leaves with one weight-decay flag, ≤ a call's worth."""
    runs, start = [], 0
    for i in range(1, len(decay) + 1):
        if i == len(decay) or decay[i] != decay[start] or i - start == _PACKED_LEAVES_PER_CALL:
            runs.append((start, i))
            start = i
    return runs


def _packed_kernel_step(scalars, params, grads, mu, nu, *, algorithm, apply, decay, safe):
    """All leaves against packed moments; calls chain through the aliased mu and nu."""
    out, offset, sizes = [], 0, [g.size for g in grads]
    for start, stop in _runs(decay):
        results, mu, nu = _packed_kernel_call(
            scalars,
            params[start:stop] if params else [],
            grads[start:stop],
            mu,
            nu,
            offset,
            algorithm=algorithm,
            apply=apply,
            decay=decay[start],
            safe=safe,
        )
        out.extend(results)
        offset += sum(sizes[start:stop])
    return out, mu, nu


def _packed_reference_step(scalars, params, grads, mu, nu, *, algorithm, apply, decay, safe):
    """The packed step in jnp: slice each leaf's moments, update, concatenate."""
    mu_leaves, nu_leaves = _unpack(mu, grads), _unpack(nu, grads)
    out, new_mu, new_nu = _reference_step(
        scalars, params, grads, mu_leaves, nu_leaves,
        algorithm=algorithm, apply=apply, decay=decay, safe=safe,
    )  # fmt: skip
    return out, _pack(new_mu, mu.dtype), _pack(new_nu, nu.dtype)


def _unpack(flat: jax.Array, like: Sequence[Any]) -> list[jax.Array]:
    """Leaves shaped like ``like`` from consecutive elements of ``flat``."""
    out, offset = [], 0
    for x in like:
        size = int(np.prod(x.shape))
        out.append(jax.lax.slice(flat, (offset,), (offset + size,)).reshape(x.shape))
        offset += size
    return out


def _pack(leaves: Sequence[jax.Array], dtype: Any) -> jax.Array:
    """Every leaf flattened and concatenated in order (one float32 vector)."""
    if not leaves:
        return jnp.zeros([0], dtype)
    return jnp.concatenate([x.reshape(-1) for x in leaves])


@functools.cache
def _step_function(algorithm: int, apply: bool, decay: tuple[bool, ...], safe: bool, packed: bool):
    """The kernel step with pure-JAX rules for ``jax.vmap`` and differentiation."""
    config = dict(algorithm=algorithm, apply=apply, decay=decay, safe=safe)
    kernel = functools.partial(_packed_kernel_step if packed else _kernel_step, **config)
    reference = functools.partial(_packed_reference_step if packed else _reference_step, **config)

    batched = jax.custom_batching.custom_vmap(kernel)

    @batched.def_vmap
    def _vmap_rule(axis_size, in_batched, *args):
        del axis_size
        in_axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
        out = jax.vmap(reference, in_axes=in_axes)(*args)
        return out, jax.tree.map(lambda _: True, out)

    step = jax.custom_jvp(batched)

    @step.defjvp
    def _jvp_rule(primals, tangents):
        return jax.jvp(reference, primals, tangents)

    return step


# --------------------------------------------------------------------------------------------
# When the kernel applies.


def _on_one_cpu_device(x: Any) -> bool:
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        devices = x.sharding.device_set
        return len(devices) == 1 and next(iter(devices)).platform == "cpu"
    sharding = getattr(jax.typeof(x), "sharding", None)
    spec = getattr(sharding, "spec", None)
    if spec is not None and any(axis is not None for axis in spec):
        return False  # explicitly sharded (jax.sharding.AxisType.Explicit)
    return jax.default_backend() == "cpu"


def _is_f32_scalar(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    return isinstance(value, jax.Array) and value.dtype == jnp.float32 and value.ndim == 0


def _kernel_applies(leaves: Sequence[Any], hyperparameters: Sequence[Any]) -> bool:
    return (
        bool(leaves)
        and all(isinstance(x, jax.Array) and x.dtype == jnp.float32 for x in leaves)
        and all(_is_f32_scalar(h) for h in hyperparameters)
        and all(_on_one_cpu_device(x) for x in leaves)
        and kernel_available()
    )


def _packable(x: Any) -> bool:
    """Whether ``init`` may pack this parameter's moments: float32 on one CPU device."""
    if getattr(x, "dtype", None) != jnp.float32:
        return False
    if isinstance(x, jax.ShapeDtypeStruct):
        sharding = x.sharding
        if sharding is None:
            return jax.default_backend() == "cpu"
        devices = sharding.device_set
        return len(devices) == 1 and next(iter(devices)).platform == "cpu"
    if isinstance(x, jax.core.Tracer):  # e.g. jax.eval_shape(tx.init, sharded_params)
        return jax.device_count() == 1 and jax.default_backend() == "cpu"
    return _on_one_cpu_device(x)


# --------------------------------------------------------------------------------------------
# The public transformation.


class PackedAdamState(NamedTuple):
    """State of a fused Adam/AdamW/AdaMax whose moments are packed (what ``init`` returns on CPU).

    Attributes:
      count: the step count t (int32), as in the unfused state.
      mu: every leaf's m_t, flattened and concatenated in tree order (float32, one vector).
      nu: the same for v_t (AdaMax: u_t).

    Two arrays instead of two per leaf: the jitted step then has half as many buffers, which
    is what XLA's compile time grows with. ``tx.unpack_state`` gives the unfused layout.
    """

    count: jax.Array
    mu: jax.Array
    nu: jax.Array


class FusedTransformation(optax.GradientTransformationExtraArgs):
    """An optax transformation with a one-pass, in-place ``apply_gradients``.

    ``init`` and ``update`` behave exactly as the unfused alias (same state, same numbers);
    ``update`` computes the updates and both moments in one kernel call.
    ``apply_gradients(params, grads, state) -> (new_params, new_state)`` equals
    ``update`` followed by ``optax.apply_updates`` and writes θ, m and v in place: inside
    ``jax.jit`` with params and state donated it moves 28 bytes per parameter and allocates
    nothing beyond params, grads and state.

    Example:
      >>> import jax, jax.numpy as jnp, jadam
      >>> tx = jadam.adam(0.1, fused=True)
      >>> step = jax.jit(tx.apply_gradients, donate_argnums=(0, 2))
      >>> params = {"w": jnp.zeros(3)}
      >>> params, state = step(params, {"w": jnp.array([1.0, -2.0, 0.0])}, tx.init(params))
      >>> params["w"]
      Array([-0.1,  0.1,  0. ], dtype=float32)
    """

    def apply_gradients(self, params: Any, grads: Any, state: Any) -> tuple[Any, Any]:
        """θ ← θ + update(g), with the moments, in one pass (see the class docstring).

        The arguments come in the order of the results (params first, state last) so that
        ``jax.jit(tx.apply_gradients, donate_argnums=(0, 2))`` pairs each donated buffer with
        the output that replaces it (JAX matches donations to outputs in order).
        """
        return self._apply_gradients(params, grads, state)  # type: ignore[attr-defined]

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
        first = state[0]
        if not isinstance(first, PackedAdamState):
            return state
        leaves, treedef = jax.tree.flatten(params)
        _check_packed_size(leaves, first, "params")
        mu = treedef.unflatten(_unpack(first.mu, leaves))
        nu = treedef.unflatten(_unpack(first.nu, leaves))
        unfused = jax.eval_shape(self._unfused_init, params)[0]  # type: ignore[attr-defined]
        return (unfused._replace(count=first.count, mu=mu, nu=nu), *state[1:])


def _check_packed_size(leaves: Sequence[Any], state: PackedAdamState, what: str) -> None:
    total = sum(int(np.prod(np.shape(x))) for x in leaves)
    if total != state.mu.size:
        raise ValueError(
            f"{what} tree does not match the packed optimizer state: {len(leaves)} leaves with "
            f"{total} values in all, the state holds {state.mu.size} per moment."
        )


def _fused(
    algorithm: int,
    pure: optax.GradientTransformationExtraArgs,
    learning_rate: Any,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    weight_decay: Any,
    mask: Any,
    bias_correction: bool,
) -> FusedTransformation:
    """Builds the fused twin of ``pure`` (the unfused alias with the same hyperparameters).

    ``pure``'s state is (scale-by state, [decay state,] learning-rate state).
    """
    has_decay = weight_decay is not None and not (
        isinstance(weight_decay, (int, float)) and weight_decay == 0
    )
    schedule = learning_rate if callable(learning_rate) else None
    hyperparameters = [b1, b2, eps, eps_root] + ([weight_decay] if has_decay else [])
    hyperparameters += [] if schedule else [learning_rate]
    safe = not (isinstance(eps, (int, float)) and eps > 0)
    wd = weight_decay if has_decay else 0.0

    def scalars(count, lr_state):
        f32 = jnp.float32
        if bias_correction:
            # XLA turns m / (1 − β^t) into m · (1 / (1 − β^t)); so does the kernel.
            bc1 = 1 / P.one_minus_power(b1, count).astype(f32)
            bc2 = 1 / P.one_minus_power(b2, count).astype(f32)
        else:
            bc1 = bc2 = jnp.ones([], f32)
        neg_lr = -1 * (schedule(lr_state.count) if schedule else learning_rate)
        values = (b1, 1 - b1, b2, 1 - b2, bc1, bc2, eps, eps_root, neg_lr, wd)
        return jnp.stack([jnp.asarray(x, f32) for x in values])

    def decay_flags(params, n):
        if not has_decay:
            return (False,) * n
        if mask is None:
            return (True,) * n
        tree = mask(params) if callable(mask) else mask
        flags = jax.tree.leaves(tree, is_leaf=lambda x: x is None)
        if len(flags) != n or not all(isinstance(f, (bool, np.bool_)) for f in flags):
            return None  # a mask the kernel does not understand: fall back
        return tuple(bool(f) for f in flags)

    def init_fn(params):
        leaves = jax.tree.leaves(params)
        if (
            not leaves
            or not all(_packable(x) for x in leaves)
            or not all(_is_f32_scalar(h) for h in hyperparameters)
            or decay_flags(params, len(leaves)) is None
            or not kernel_available()
        ):
            return pure.init(params)
        # The unfused state's other parts (counters, empty states) without its moments.
        shapes = jax.eval_shape(pure.init, params)
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes[1:])
        total = sum(int(np.prod(x.shape)) for x in leaves)
        moments = [jnp.zeros([total], jnp.float32) for _ in range(2)]
        return (PackedAdamState(jnp.zeros([], jnp.int32), *moments), *zeros)

    def run_packed(grads, state, params, apply):
        """(outputs, new_state) for a packed state: the kernel, or its jnp transcription."""
        scale_state, lr_state = state[0], state[-1]
        g_leaves, treedef = jax.tree.flatten(grads)
        _check_packed_size(g_leaves, scale_state, "gradient")
        if any(getattr(g, "dtype", None) != jnp.float32 for g in g_leaves):
            dtypes = sorted({str(getattr(g, "dtype", type(g).__name__)) for g in g_leaves})
            raise TypeError(f"packed fused state needs float32 gradients, got {dtypes}.")
        n = len(g_leaves)
        needs_params = apply or has_decay
        if needs_params and params is None:
            raise ValueError("this optimizer needs params: call update(grads, state, params).")
        p_leaves = treedef.flatten_up_to(params) if needs_params else []
        flags = decay_flags(params, n)
        if flags is None:
            raise ValueError("a weight-decay mask the packed fused state cannot follow.")
        count = P.increment(scale_state.count)
        step = _step_function(algorithm, apply, flags, safe, True)
        if not _kernel_applies(g_leaves + p_leaves + [scale_state.mu], hyperparameters):
            step = functools.partial(_packed_reference_step, algorithm=algorithm, apply=apply,
                                     decay=flags, safe=safe)  # fmt: skip
        out, mu, nu = step(
            scalars(count, lr_state), p_leaves, g_leaves, scale_state.mu, scale_state.nu
        )
        return treedef.unflatten(out), (
            PackedAdamState(count=count, mu=mu, nu=nu),
            *state[1:-1],
            next_lr_state(lr_state),
        )

    def next_lr_state(lr_state):
        if schedule is None:
            return lr_state
        return lr_state._replace(count=optax.safe_increment(lr_state.count))

    def run(grads, state, params, apply):
        """(outputs, new_state), or None where the kernel does not apply."""
        scale_state, lr_state = state[0], state[-1]
        if isinstance(scale_state, PackedAdamState):
            return run_packed(grads, state, params, apply)
        V.check_tree_matches(grads, scale_state.mu)
        g_leaves, treedef = jax.tree.flatten(grads)
        n = len(g_leaves)
        m_leaves = treedef.flatten_up_to(scale_state.mu)
        v_leaves = treedef.flatten_up_to(scale_state.nu)
        needs_params = apply or has_decay
        if needs_params and params is None:
            return None
        p_leaves = treedef.flatten_up_to(params) if needs_params else []
        flags = decay_flags(params, n)
        if flags is None or not _kernel_applies(
            g_leaves + m_leaves + v_leaves + p_leaves, hyperparameters
        ):
            return None
        shapes = [x.shape for x in g_leaves]
        for xs in (m_leaves, v_leaves, p_leaves or m_leaves):
            if [x.shape for x in xs] != shapes:
                return None
        count = P.increment(scale_state.count)
        step = _step_function(algorithm, apply, flags, safe, False)
        out, mu, nu = step(scalars(count, lr_state), p_leaves, g_leaves, m_leaves, v_leaves)
        new_scale_state = scale_state._replace(
            count=count,
            mu=treedef.unflatten(mu),
            nu=treedef.unflatten(nu),
        )
        new_state = (new_scale_state, *state[1:-1], next_lr_state(lr_state))
        return treedef.unflatten(out), new_state

    def update_fn(updates, state, params=None, **extra_args):
        result = run(updates, state, params, apply=False)
        if result is None:
            return pure.update(updates, state, params, **extra_args)
        return result

    def apply_fn(params, grads, state):
        result = run(grads, state, params, apply=True)
        if result is None:
            updates, state = pure.update(grads, state, params)
            return optax.apply_updates(params, updates), state
        return result

    tx = FusedTransformation(init_fn, update_fn)
    tx._apply_gradients = apply_fn
    tx._unfused_init = pure.init
    return tx


def fused_adam(
    pure: optax.GradientTransformationExtraArgs,
    learning_rate: Any,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    *,
    unsupported: bool = False,
    bias_correction: bool = True,
    nesterov: bool = False,
    weight_decay: Any = None,
    mask: Any = None,
) -> FusedTransformation:
    """The fused twin of ``pure`` = ``jadam.adam``/``jadam.adamw`` with these arguments."""
    if unsupported or nesterov or callable(weight_decay):
        return _unfused(pure)  # not covered by the kernel
    return _fused(
        _ADAM, pure, learning_rate, b1, b2, eps, eps_root, weight_decay, mask, bias_correction
    )


def fused_adamax(
    pure: optax.GradientTransformationExtraArgs,
    learning_rate: Any,
    b1: Any,
    b2: Any,
    eps: Any,
    *,
    unsupported: bool = False,
) -> FusedTransformation:
    """The fused twin of ``pure`` = ``jadam.adamax`` with these arguments."""
    if unsupported:
        return _unfused(pure)  # e.g. moments stored in another precision
    return _fused(_ADAMAX, pure, learning_rate, b1, b2, eps, 0.0, None, None, True)


def _unfused(pure: optax.GradientTransformationExtraArgs) -> FusedTransformation:
    """A FusedTransformation that always runs ``pure`` (same interface, no kernel)."""

    def apply_fn(params, grads, state):
        updates, state = pure.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    tx = FusedTransformation(pure.init, pure.update)
    tx._apply_gradients = apply_fn
    return tx


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
