"""The fused kernel (``fused=True``) against the pure-JAX path it replaces.

On a single leaf XLA compiles the pure path to the same operations as the kernel, so results
are compared bit for bit. On trees with several leaves XLA's algebraic simplifier rewrites the
pure path differently depending on the tree (for example m̂/(√v̂ + ε) with shared bias
corrections becomes m/((1−β1^t)·(√v̂ + ε))), so there the moments are still compared bit for
bit and the step to within a few float32 ulps of the update.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from registry import FUSED, FUSED_WITH_PRECISION, PRECISIONS

import jadam
from jadam import _fused, _kernel

pytestmark = pytest.mark.skipif(
    not jadam.fused_kernel_available(),
    reason="jadam's fused kernel is not built (no C++ compiler at install time)",
)


@pytest.fixture(autouse=True)
def _fresh_fallback_warnings():
    """Each test sees the first fallback warning of each reason (they warn once per process)."""
    _fused._WARNED.clear()
    yield
    _fused._WARNED.clear()


def _gradients(shapes, steps, seed=0):
    """Dense, sparse and all-zero gradient coordinates, fixed seed."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        grads = []
        for shape in shapes:
            g = rng.standard_normal(shape).astype(np.float32) * 10.0 ** rng.integers(-3, 3)
            g *= rng.random(shape) < (0.9 if t % 2 else 0.3)
            g.reshape(-1)[:1] = 0.0  # a coordinate whose gradient is always 0
            grads.append(jnp.asarray(g))
        out.append(grads)
    return out


def _pure_step(tx):
    def step(params, grads, state):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step)


def _assert_bitwise(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _assert_moments_bitwise_step_within_ulps(a, b):
    """Moments bit for bit; the step to float32 rounding (relative 1e-6, a few ulps): XLA
    rewrites the pure step's arithmetic (reciprocals, FMA contraction) differently as the
    surrounding graph changes; atol = one ulp of 1.0, the scale of these parameters."""
    (step_a, state_a), (step_b, state_b) = a, b
    _assert_bitwise(state_a, state_b)
    for x, y in zip(jax.tree.leaves(step_a), jax.tree.leaves(step_b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1.2e-7)


@pytest.mark.parametrize("name", sorted(FUSED))
def test_single_leaf_apply_and_update_match_pure(name):
    fused, pure = FUSED[name](True), FUSED[name](False)
    params = [jnp.asarray(np.linspace(-1, 1, 1000, dtype=np.float32))]
    state = pure.init(params)
    apply_fused = jax.jit(fused.apply_gradients)
    update_fused, update_pure = jax.jit(fused.update), jax.jit(pure.update)
    step_pure = _pure_step(pure)
    for grads in _gradients([(1000,)], steps=6):
        u_f, s_f = update_fused(grads, state, params)
        u_p, s_p = update_pure(grads, state, params)
        _assert_moments_bitwise_step_within_ulps((u_f, s_f), (u_p, s_p))
        p_f, s_f = apply_fused(params, grads, state)
        params, state = step_pure(params, grads, state)
        _assert_moments_bitwise_step_within_ulps((p_f, s_f), (params, state))
        chex.assert_trees_all_equal_structs(s_f, state)


def _transformer_tree():
    shapes = {
        "embed": (64, 16),
        "layers": [
            {"w": (16, 48), "b": (48,), "scale": (16,), "empty": (0,)},
            {"w": (48, 16), "b": (16,), "scale": (16,), "scalar": ()},
        ],
        "head": (16, 3),
    }
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    return leaves, treedef


def _transformer_params(seed):
    shapes, treedef = _transformer_tree()
    rng = np.random.default_rng(seed)
    leaves = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in shapes]
    return shapes, treedef, treedef.unflatten(leaves)


@pytest.mark.parametrize("name", sorted(FUSED))
def test_tree_state_is_bitwise_and_step_within_ulps(name):
    fused, pure = FUSED[name](True), FUSED[name](False)
    shapes, treedef, params = _transformer_params(1)
    state = pure.init(params)
    apply_fused = jax.jit(fused.apply_gradients)
    update_pure = jax.jit(pure.update)
    step_pure = _pure_step(pure)
    for grads in _gradients(shapes, steps=5):
        grads = treedef.unflatten(grads)
        p_f, s_f = apply_fused(params, grads, state)
        u_p, _ = update_pure(grads, state, params)
        params, state = step_pure(params, grads, state)
        _assert_bitwise(s_f, state)
        for x, y, u in zip(*(jax.tree.leaves(t) for t in (p_f, params, u_p)), strict=True):
            x, y, u = (np.asarray(a, np.float64) for a in (x, y, u))
            bound = np.spacing(np.abs(y).astype(np.float32)) + 4 * np.spacing(
                np.abs(u).astype(np.float32)
            )
            assert np.all(np.abs(x - y) <= bound), (name, np.max(np.abs(x - y) / bound))


def test_many_leaves_with_mask_span_several_kernel_calls():
    n = 3 * _kernel.LEAVES_PER_CALL + 5
    params = {f"w{i:03d}": jnp.full((7,), 0.1 * i, jnp.float32) for i in range(n)}
    mask = {k: i % 3 != 0 for i, k in enumerate(sorted(params))}
    fused = jadam.adamw(1e-2, weight_decay=0.5, mask=mask, fused=True)
    pure = jadam.adamw(1e-2, weight_decay=0.5, mask=mask)
    grads = jax.tree.map(lambda p: jnp.sin(p * 3 + 1), params)
    state = pure.init(params)
    p_f, s_f = jax.jit(fused.apply_gradients)(params, grads, state)
    p_p, s_p = _pure_step(pure)(params, grads, state)
    _assert_bitwise(s_f, s_p)
    chex.assert_trees_all_close(p_f, p_p, rtol=1e-6)
    decayed = [k for k, m in mask.items() if m][1]
    kept = [k for k, m in mask.items() if not m][1]
    # the same gradient direction, different decay: the mask was honoured per leaf
    assert not np.allclose(p_f[decayed] - params[decayed], p_f[kept] - params[kept])


def test_in_place_on_donated_buffers():
    fused = jadam.adam(1e-3, fused=True)
    params = [jnp.ones(4096), jnp.ones((3, 5))]
    grads = [jnp.full(4096, 0.5), jnp.full((3, 5), -0.5)]
    state = fused.init(params)
    step = jax.jit(fused.apply_gradients, donate_argnums=(0, 2))
    hlo = step.lower(params, grads, state).compile().as_text()
    assert "jadam_fused_adam" in hlo
    assert " copy(" not in hlo  # outputs written into the donated inputs
    new_params, new_state = step(params, grads, state)
    assert isinstance(state[0], jadam.PackedAdamState)
    assert params[0].is_deleted() and state[0].mu.is_deleted() and state[0].nu.is_deleted()
    assert int(new_state[0].count) == 1 and float(new_params[0][0]) < 1.0


def test_chain_with_optax_and_no_retrace():
    traces = []
    fused = optax.chain(optax.clip_by_global_norm(1.0), jadam.adam(1e-2, fused=True))
    pure = optax.chain(optax.clip_by_global_norm(1.0), jadam.adam(1e-2))
    params = {"a": jnp.linspace(0, 1, 10), "b": None, "c": jnp.ones((2, 2))}
    grads = {"a": jnp.linspace(-3, 3, 10), "b": None, "c": jnp.full((2, 2), 2.0)}

    @jax.jit
    def update(grads, state, params):
        traces.append(1)
        return fused.update(grads, state, params)

    state_f, state_p = fused.init(params), pure.init(params)
    for _ in range(3):
        u_f, state_f = update(grads, state_f, params)
        u_p, state_p = jax.jit(pure.update)(grads, state_p, params)
        chex.assert_trees_all_close(u_f, u_p, rtol=1e-6)
    packed, unfused = state_f[1][0], state_p[1][0]  # (clip state, (adam state, lr state))
    for name in ("mu", "nu"):
        flat = jnp.concatenate([x.reshape(-1) for x in jax.tree.leaves(getattr(unfused, name))])
        np.testing.assert_array_equal(np.asarray(getattr(packed, name)), np.asarray(flat))
    assert len(traces) == 1 and u_f["b"] is None


@pytest.mark.parametrize(
    ("make", "option"),
    [
        (lambda: jadam.adam(1e-2, mu_dtype=jnp.bfloat16, fused=True), "mu_dtype"),
        (lambda: jadam.adam(1e-2, nu_dtype=jnp.float16, fused=True), "nu_dtype"),
        (lambda: jadam.nadam(1e-2, momentum_decay=0.004, fused=True), "momentum_decay"),
        (lambda: jadam.adam(1e-2, eps_form="eps_hat", fused=True), "eps_form"),
        (lambda: jadam.adam(1e-2, b1_decay=0.9, fused=True), "b1_decay"),
        (lambda: jadam.adamw(1e-2, weight_decay=lambda count: 0.1, fused=True), "weight_decay"),
    ],
    ids=["mu_dtype", "nu_dtype", "momentum_decay", "eps_form", "b1_decay", "weight_decay_schedule"],
)
def test_options_outside_the_kernel_are_refused_at_construction(make, option):
    with pytest.raises(ValueError, match=rf"fused=True does not support {option}="):
        make()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_other_dtypes_fall_back_to_pure(dtype):
    params = jnp.linspace(-1, 1, 8, dtype=dtype)
    grads = jnp.linspace(2, -2, 8, dtype=dtype)
    fused, pure = jadam.adam(1e-2, fused=True), jadam.adam(1e-2)
    state = pure.init(params)
    with pytest.warns(jadam.FusedFallbackWarning, match="not float32"):
        hlo = jax.jit(fused.apply_gradients).lower(params, grads, state).as_text()
    assert "jadam_fused_adam" not in hlo
    _assert_bitwise(
        jax.jit(fused.apply_gradients)(params, grads, state), _pure_step(pure)(params, grads, state)
    )


def test_vmap_and_grad_use_the_pure_rules():
    fused, pure = jadam.adam(1e-2, fused=True), jadam.adam(1e-2)
    params = jnp.stack([jnp.linspace(-1, 1, 6), jnp.linspace(1, 2, 6)])
    grads = jnp.stack([jnp.linspace(2, -2, 6), jnp.linspace(-1, 0.5, 6)])
    state = jax.vmap(pure.init)(params)
    with pytest.warns(jadam.FusedFallbackWarning, match="vmap"):
        out_f = jax.vmap(fused.apply_gradients)(params, grads, state)
    out_p = jax.vmap(_pure_step(pure))(params, grads, state)
    chex.assert_trees_all_close(out_f, out_p, rtol=1e-6)

    # d(Σθ_new²)/dg through a second optimizer step (after the first, m and v are non-zero)
    _, state1 = pure.update(grads[1], pure.init(params[0]), params[0])

    def loss(step, grads):
        new, _ = step(params[0], grads, state1)
        return jnp.sum(new**2)

    with pytest.warns(jadam.FusedFallbackWarning, match="differentiation"):
        d_f = jax.grad(loss, argnums=1)(fused.apply_gradients, grads[0])
    d_p = jax.grad(loss, argnums=1)(_pure_step(pure), grads[0])
    chex.assert_trees_all_close(d_f, d_p, rtol=1e-5)
    assert np.max(np.abs(d_p)) > 1e-4  # a meaningful derivative, not rounding noise
    assert np.all(np.isfinite(d_f))


def test_non_finite_gradients_propagate_like_pure():
    params = jnp.linspace(-1, 1, 6)
    grads = jnp.array([1.0, jnp.nan, jnp.inf, -jnp.inf, 0.0, 2.0])
    for make in (lambda f: jadam.adam(1e-2, fused=f), lambda f: jadam.adamax(1e-2, fused=f)):
        fused, pure = make(True), make(False)
        state = pure.init(params)
        out_f = jax.jit(fused.apply_gradients)(params, grads, state)
        out_p = _pure_step(pure)(params, grads, state)
        for x, y in zip(jax.tree.leaves(out_f), jax.tree.leaves(out_p), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_fused_train_step_trains():
    tx = jadam.adam(0.1, fused=True)
    step = jadam.fused_train_step(tx, lambda p, x: jnp.sum((p["w"] - x) ** 2))
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)
    target = jnp.array([1.0, -2.0, 0.5])
    for _ in range(200):
        params, state, loss = step(params, state, target)
    assert float(loss) < 1e-3


def test_sharded_arrays_fall_back_in_a_multi_device_process():
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, optax, jadam
        from jax.sharding import NamedSharding, PartitionSpec
        sharding = NamedSharding(jax.make_mesh((8,), ("d",)), PartitionSpec("d"))
        params = jax.device_put(jnp.linspace(-1, 1, 64), sharding)
        grads = jax.device_put(jnp.linspace(3, -3, 64), sharding)
        fused, pure = jadam.adam(1e-2, fused=True), jadam.adam(1e-2)
        state = fused.init(params)
        assert not isinstance(state[0], jadam.PackedAdamState)  # sharded: per-leaf moments
        abstract = jax.eval_shape(fused.init, params)
        assert not isinstance(abstract[0], jadam.PackedAdamState)
        placed = jadam.init_sharded(fused, params)
        assert placed[0].mu.sharding.is_equivalent_to(sharding, 1)
        step = jax.jit(fused.apply_gradients)
        assert "jadam_fused_adam" not in step.lower(params, grads, state).as_text()
        new, _ = step(params, grads, state)
        def pure_step(params, grads, state):
            updates, state = pure.update(grads, state, params)
            return optax.apply_updates(params, updates), state
        expected, _ = jax.jit(pure_step)(params, grads, state)
        np.testing.assert_array_equal(new, expected)
        assert new.sharding.is_equivalent_to(sharding, 1)
        print("ok")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# --------------------------------------------------------------------------------------------
# Packed state: what fused.init returns on CPU (every leaf's moments in one vector each).


@pytest.mark.parametrize("name", sorted(FUSED))
def test_packed_state_equals_the_unfused_state_bit_for_bit(name):
    fused, pure = FUSED[name](True), FUSED[name](False)
    shapes, treedef, params = _transformer_params(2)
    packed, state = fused.init(params), pure.init(params)
    assert isinstance(packed[0], jadam.PackedAdamState)
    assert packed[0].mu.shape == (sum(int(np.prod(s)) for s in shapes),)
    chex.assert_trees_all_equal_structs(fused.unpack_state(packed, params), state)
    apply_fused, update_fused = jax.jit(fused.apply_gradients), jax.jit(fused.update)
    step_pure = _pure_step(pure)
    for grads in _gradients(shapes, steps=4):
        grads = treedef.unflatten(grads)
        u_f, _ = update_fused(grads, packed, params)
        p_f, packed = apply_fused(params, grads, packed)
        p_p, state = step_pure(params, grads, state)
        _assert_bitwise(fused.unpack_state(packed, params), state)
        chex.assert_trees_all_close(p_f, p_p, rtol=1e-6, atol=1.2e-7)
        chex.assert_trees_all_close(jax.tree.map(jnp.add, params, u_f), p_p, rtol=1e-6, atol=1.2e-7)
        params = p_p


def test_packed_state_jnp_transcription_equals_the_kernel(monkeypatch):
    """Where the kernel cannot run on a packed state, the same arithmetic runs in jnp."""
    fused = jadam.adamw(1e-2, weight_decay=0.1, fused=True)
    params = {"a": jnp.linspace(-1, 1, 40), "b": jnp.ones((3, 4))}
    grads = {"a": jnp.linspace(2, -3, 40), "b": jnp.full((3, 4), 0.25)}
    state = fused.init(params)
    kernel = jax.jit(fused.apply_gradients)(params, grads, state)
    monkeypatch.setattr(_fused, "environment_reason", lambda *args: "a test's say-so")
    with pytest.warns(jadam.FusedFallbackWarning, match="a test's say-so"):
        hlo = jax.jit(fused.apply_gradients).lower(params, grads, state).as_text()
    assert "jadam_fused_adam" not in hlo
    reference = jax.jit(fused.apply_gradients)(params, grads, state)
    chex.assert_trees_all_close(kernel, reference, rtol=1e-6, atol=1e-7)


def test_packed_state_under_vmap_matches_the_unfused_step():
    fused, pure = jadam.adam(1e-2, fused=True), jadam.adam(1e-2)
    params = {"w": jnp.linspace(-1, 1, 6), "b": jnp.ones(2)}
    grads = {"w": jnp.stack([jnp.linspace(2, -2, 6), jnp.linspace(-1, 0.5, 6)]),
             "b": jnp.array([[0.5, -0.5], [1.0, 2.0]])}  # fmt: skip
    packed, state = fused.init(params), pure.init(params)
    with pytest.warns(jadam.FusedFallbackWarning, match="vmap"):
        u_f = jax.vmap(lambda g: fused.update(g, packed, params)[0])(grads)
    u_p = jax.vmap(lambda g: pure.update(g, state, params)[0])(grads)
    chex.assert_trees_all_close(u_f, u_p, rtol=1e-6)


@pytest.mark.parametrize("precision", ["float32", "8bit"])
def test_nadamw_under_vmap_runs_the_transcription_and_matches_the_pure_path(precision):
    """NAdam's direction in the jnp transcription (what replaces the kernel under vmap)."""
    sp = PRECISIONS[precision]
    fused, pure = (
        jadam.nadamw(1e-2, weight_decay=0.1, fused=f, state_precision=sp) for f in (True, False)
    )
    shapes = [(25, 16), (7,)]
    params = [jnp.linspace(-1, 1, 400).reshape(shapes[0]), jnp.ones(shapes[1])]
    first, *batch = _gradients(shapes, steps=3, seed=9)  # one step, then a batch of two
    grads = [jnp.stack(g) for g in zip(*batch, strict=True)]
    state_f = fused.update(first, fused.init(params), params)[1]
    state_p = pure.update(first, pure.init(params), params)[1]
    with pytest.warns(jadam.FusedFallbackWarning, match="vmap"):
        u_f, s_f = jax.vmap(lambda g: fused.update(g, state_f, params))(grads)
    u_p, s_p = jax.vmap(lambda g: pure.update(g, state_p, params))(grads)
    for i in range(2):
        state = jax.tree.map(lambda x, i=i: x[i], s_f)
        _assert_bitwise(fused.unpack_state(state, params), jax.tree.map(lambda x, i=i: x[i], s_p))
    chex.assert_trees_all_close(u_f, u_p, rtol=1e-6, atol=1e-9)


def test_packed_state_rejects_a_different_gradient_tree():
    fused = jadam.adam(1e-2, fused=True)
    state = fused.init({"w": jnp.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"gradient tree does not match the packed .* 7 values"):
        fused.update({"w": jnp.zeros((2, 3)), "b": jnp.zeros(1)}, state)
    with pytest.raises(TypeError, match=r"float32 gradients, got .*bfloat16"):
        fused.update({"w": jnp.zeros((2, 3), jnp.bfloat16)}, state)


def test_packed_jit_has_two_moment_buffers_whatever_the_leaf_count():
    fused = jadam.adam(1e-3, fused=True)
    params = [jnp.ones(5) for _ in range(100)]
    state = fused.init(params)
    assert len(jax.tree.leaves(state)) == 3  # the step count, m and v
    hlo = jax.jit(fused.apply_gradients, donate_argnums=(0, 2)).lower(params, params, state)
    assert hlo.compile().as_text().count("jadam_fused_adam") >= 2  # 100 leaves: several calls


# --------------------------------------------------------------------------------------------
# Every state precision through the kernel, against the pure path (issue 12).

SHAPES = [(40, 16), (7,), (300,), (3, 5)]


def _donated_pure_step(tx):
    def step(params, grads, state):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 2))


def _copy(tree):
    return jax.tree.map(jnp.array, tree)


@pytest.mark.parametrize("precision", sorted(PRECISIONS))
@pytest.mark.parametrize("algorithm", sorted(FUSED_WITH_PRECISION))
def test_every_precision_matches_the_pure_path_bit_for_bit(algorithm, precision):
    """State bit for bit, params to float32 rounding, through both call paths, donated."""
    make, sp = FUSED_WITH_PRECISION[algorithm], PRECISIONS[precision]
    fused, pure = make(True, sp), make(False, sp)
    rng = np.random.default_rng(4)
    params = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in SHAPES]
    state_f, state_p = fused.init(params), pure.init(params)
    chex.assert_trees_all_equal_structs(fused.unpack_state(state_f, params), state_p)
    one_pass = jax.jit(fused.apply_gradients, donate_argnums=(0, 2))
    standard, reference = _donated_pure_step(fused), _donated_pure_step(pure)
    params_f, params_s, params_p, state_s = _copy(params), _copy(params), params, _copy(state_f)
    hlo = standard.lower(params, _gradients(SHAPES, 1)[0], state_s).compile().as_text()
    assert "jadam_fused_adam" in hlo
    for grads in _gradients(SHAPES, steps=4, seed=5):
        params_f, state_f = one_pass(params_f, grads, state_f)
        params_s, state_s = standard(params_s, grads, state_s)
        params_p, state_p = reference(params_p, grads, state_p)
        for state in (state_f, state_s):
            _assert_bitwise(fused.unpack_state(state, params_p), state_p)
        for got in (params_f, params_s):
            chex.assert_trees_all_close(got, params_p, rtol=1e-6, atol=3e-7)


def _standard_step(tx):
    """The standard path as Flax calls it: update + apply_updates, params and state donated."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


@pytest.mark.parametrize("layout", ["per_leaf", "packed"])
@pytest.mark.parametrize("algorithm", ["adam", "adamw_masked", "adamax"])
def test_float32_update_writes_only_the_moments_and_equals_the_pure_path(algorithm, layout):
    """update's moments-only mode: updates, params and state bit for bit, in optax.chain."""
    make = FUSED_WITH_PRECISION[algorithm]

    def chained(fused):
        return optax.chain(optax.clip_by_global_norm(1.0), make(fused, None))

    fused, pure, inner = chained(True), chained(False), make(True, None)
    rng = np.random.default_rng(6)
    params = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in SHAPES]
    state_p = pure.init(params)
    state_f = fused.init(params) if layout == "packed" else _copy(state_p)
    assert isinstance(state_f[1][0], jadam.PackedAdamState) == (layout == "packed")
    grads = _gradients(SHAPES, steps=3, seed=7)
    step_f, step_p = _standard_step(fused), _standard_step(pure)
    update_f = jax.jit(fused.update, donate_argnums=(1,))
    update_p = jax.jit(pure.update)
    hlo = step_f.lower(params, state_f, grads[0]).compile().as_text()
    entry = hlo[hlo.index("\nENTRY") :]
    assert "moments_only = 1" in entry and "moments_only = 0" not in entry
    copies = re.findall(r"= f32\[(\S*)\]\S* copy\(", entry)
    assert copies == []  # the non-donated gradients are read, never copied
    params_f = _copy(params)
    for g in grads:
        updates_f, _ = update_f(g, _copy(state_f), params_f)
        updates_p, _ = update_p(g, state_p, params)
        _assert_bitwise(updates_f, updates_p)
        params_f, state_f = step_f(params_f, state_f, g)
        params, state_p = step_p(params, state_p, g)
        _assert_bitwise(params_f, params)
        _assert_bitwise((state_f[0], inner.unpack_state(state_f[1], params)), state_p)


def test_large_packed_trees_update_over_the_gradients(monkeypatch):
    """Above MOMENTS_ONLY_MAX_PACKED_LEAVES packed leaves, update writes over the gradients."""
    monkeypatch.setattr(_fused, "MOMENTS_ONLY_MAX_PACKED_LEAVES", len(SHAPES) - 1)
    fused, pure = jadam.adam(1e-2, fused=True), jadam.adam(1e-2)
    rng = np.random.default_rng(8)
    params = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in SHAPES]
    state_f, state_p = fused.init(params), pure.init(params)
    assert isinstance(state_f[0], jadam.PackedAdamState)
    step_f = _standard_step(fused)
    entry = step_f.lower(params, state_f, params).compile().as_text()
    assert "moments_only = 0" in entry and "moments_only = 1" not in entry
    for g in _gradients(SHAPES, steps=2, seed=9):
        updates_f, state_f = jax.jit(fused.update)(g, state_f, params)
        updates_p, state_p = jax.jit(pure.update)(g, state_p, params)
        _assert_bitwise(fused.unpack_state(state_f, params), state_p)
        chex.assert_trees_all_close(updates_f, updates_p, rtol=1e-6, atol=1e-9)


REGION_ANALYSIS = {"xla_cpu_copy_insertion_use_region_analysis": True}
OLD_MOMENTS_CASES = [
    (algorithm, precision, layout)
    for algorithm in ["adam", "adamw_masked", "adamax", "nadamw_masked"]
    for precision in ["bfloat16", "float16"]
    for layout in ["per_leaf", "packed"]
    if layout == "per_leaf" or precision == "bfloat16"  # see KernelExecutor.run
]


@pytest.mark.parametrize("algorithm, precision, layout", OLD_MOMENTS_CASES)
def test_low_precision_update_from_the_old_moments_equals_the_pure_path(
    monkeypatch, algorithm, precision, layout
):
    """update's moments-only mode for 16-bit moments (XLA's updates from the old moments, the
    kernel's state): updates, params and state bit for bit, donated, no copies."""
    monkeypatch.setattr(_fused, "xla_orders_in_place_writes", lambda: True)
    make, sp = FUSED_WITH_PRECISION[algorithm], PRECISIONS[precision]
    fused, pure = make(True, sp), make(False, sp)
    rng = np.random.default_rng(10)
    params = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in SHAPES]
    state_p = pure.init(params)
    state_f = fused.init(params) if layout == "packed" else _copy(state_p)
    assert isinstance(state_f[0], jadam.PackedAdamState) == (layout == "packed")

    def step(params, state, grads):
        updates, state = fused.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step_f = jax.jit(step, donate_argnums=(0, 1), compiler_options=REGION_ANALYSIS)
    update_f = jax.jit(fused.update, donate_argnums=(1,), compiler_options=REGION_ANALYSIS)
    step_p = _standard_step(pure)
    update_p = jax.jit(lambda g, state, params: pure.update(g, state, params)[0])
    grads = _gradients(SHAPES, steps=4, seed=11)
    hlo = step_f.lower(params, state_f, grads[0]).compile().as_text()
    entry = hlo[hlo.index("\nENTRY") :]
    assert "moments_only = 1" in entry and "moments_only = 0" not in entry
    assert re.findall(r"\S+ = \S+ copy\(", entry) == []  # old moments read before the kernel
    params_f = _copy(params)
    for g in grads:
        updates_f, _ = update_f(g, _copy(state_f), params_f)
        _assert_bitwise(updates_f, update_p(g, state_p, params))  # both without state outputs
        params_f, state_f = step_f(params_f, state_f, g)
        params, state_p = step_p(params, state_p, g)
        _assert_bitwise(params_f, params)
        _assert_bitwise(fused.unpack_state(state_f, params), state_p)


@pytest.mark.parametrize(
    "flag, precision, moments_only",
    [
        ("true", "bfloat16", 1),
        ("false", "bfloat16", 0),
        ("false", "float16", 0),
        ("true", "float16", 0),  # packed float16
        ("true", "8bit", 0),
    ],
)
def test_low_precision_update_mode_follows_xla_flags(monkeypatch, flag, precision, moments_only):
    """Moments-only (from the old moments) for 16-bit moments with the flag, else transform."""
    monkeypatch.setenv("XLA_FLAGS", f"--xla_cpu_copy_insertion_use_region_analysis={flag}")
    fused = jadam.adam(1e-2, fused=True, state_precision=PRECISIONS[precision])
    params = [jnp.ones(s) for s in SHAPES]  # 16-bit: packed
    entry = _standard_step(fused).lower(params, fused.init(params), params).as_text()
    assert f"moments_only = {moments_only}" in entry
    assert f"moments_only = {1 - moments_only}" not in entry


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("", False),
        ("--xla_cpu_copy_insertion_use_region_analysis=true", True),
        (
            "--xla_force_host_platform_device_count=8 "
            "--xla_cpu_copy_insertion_use_region_analysis=1",
            True,
        ),
        ("--xla_cpu_copy_insertion_use_region_analysis", True),
        ("--xla_cpu_copy_insertion_use_region_analysis=TRUE", True),
        ("--xla_cpu_copy_insertion_use_region_analysis=false", False),
        (
            "--xla_cpu_copy_insertion_use_region_analysis=true "
            "--xla_cpu_copy_insertion_use_region_analysis=0",
            False,
        ),
        ("--xla_cpu_copy_insertion_use_region_analysis_other=true", False),
    ],
)
def test_region_analysis_flag_is_read_from_xla_flags(monkeypatch, flags, expected):
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert _fused.xla_orders_in_place_writes() is expected


def test_dither_keys_are_the_pure_path_s():
    from jadam import _precision

    for seed, stream in [(0, 0), (3, 1), (7, 3 * 41 + 2)]:
        bits = _precision.dither_bits((1,), seed, stream, jnp.uint32(0))
        assert _kernel.dither_key(seed, stream) == int(bits[0])


def test_8bit_update_writes_over_the_gradients_without_copies():
    tx = jadam.adam(1e-3, fused=True, state_precision=jadam.Blockwise8bit(min_size=0))
    params = {"w": jnp.ones((64, 64)), "b": jnp.ones(64)}
    state = tx.init(params)

    def step(params, state):
        grads = jax.tree.map(lambda p: jnp.sin(p), params)  # an intermediate: aliasable
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    hlo = jax.jit(step, donate_argnums=(0, 1)).lower(params, state).compile().as_text()
    entry = hlo[hlo.index("\nENTRY") :]
    entry = entry[: entry.index("\n}")]
    assert "jadam_fused_adam" in entry
    assert " copy(" not in entry  # no pass of its own copies a buffer (fusions may root in one)


# wrapper name -> (wrap(make), the adam state inside the wrapper's state); make(inject) builds
# jadam.adam, inject=True through optax.inject_hyperparams.
WRAPPERS = {
    "chain": (
        lambda make: optax.chain(optax.clip_by_global_norm(1.0), make()),
        lambda state: state[1],
    ),
    "multisteps": (
        lambda make: optax.MultiSteps(make(), every_k_schedule=2),
        lambda state: state.inner_opt_state,
    ),
    "inject_hyperparams": (lambda make: make(inject=True), lambda state: state.inner_state),
    # Against plain adam without the NaN step: XLA rounds the pure step inside skip_nonfinite's
    # select in its own way (a few ulps in a few float32 moments), the kernel does not.
    "skip_nonfinite": (lambda make: jadam.skip_nonfinite(make()), lambda state: state.inner_state),
}


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "8bit"])
@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_inside_chain_multisteps_inject_hyperparams_and_skip_nonfinite(wrapper, precision):
    """The kernel runs inside each wrapper (donated jit); the adam state inside equals the
    pure path's bit for bit, the parameters to float32 rounding; skip_nonfinite skips a NaN."""
    wrap, inner = WRAPPERS[wrapper]
    sp, skip = PRECISIONS[precision], wrapper == "skip_nonfinite"

    def make(fused, inject=False):
        if inject:
            return optax.inject_hyperparams(jadam.adam, static_args=("fused", "state_precision"))(
                learning_rate=1e-2, fused=fused, state_precision=sp
            )
        return jadam.adam(1e-2, fused=fused, state_precision=sp)

    fused = wrap(lambda **k: make(True, **k))
    pure = make(False) if skip else wrap(lambda **k: make(False, **k))
    inner_pure = (lambda state: state) if skip else inner
    unpacker = make(True)
    params = [jnp.asarray(np.random.default_rng(9).standard_normal(s), jnp.float32) for s in SHAPES]
    step_f, step_p = _donated_pure_step(fused), _donated_pure_step(pure)
    params_f, state_f, state_p = _copy(params), fused.init(params), pure.init(params)
    all_grads = _gradients(SHAPES, steps=4, seed=6)
    assert "jadam_fused_adam" in step_f.lower(params, all_grads[0], state_f).as_text()
    for t, grads in enumerate(all_grads):
        if skip and t == 2:  # skipped by the fused run, left out of the reference
            params_f, state_f = step_f(
                params_f, [*grads[:-1], grads[-1].at[0].set(jnp.nan)], state_f
            )
            continue
        params_f, state_f = step_f(params_f, grads, state_f)
        params, state_p = step_p(params, grads, state_p)
        _assert_bitwise(unpacker.unpack_state(inner(state_f), params), inner_pure(state_p))
    chex.assert_trees_all_close(params_f, params, rtol=1e-6, atol=3e-7)
    if skip:
        assert jadam.skip_counts(state_f) == (0, 1)


def test_default_8bit_blocks_match_the_pure_path():
    """state_precision="8bit": 256-value blocks, a partial last block, a leaf below 4096 kept
    float32; the kernel's state equals the pure path's bit for bit."""
    fused, pure = (jadam.adam(1e-2, fused=f, state_precision="8bit") for f in (True, False))
    shapes = [(5000,), (17, 300), (4095,)]
    params = [jnp.asarray(np.random.default_rng(2).standard_normal(s), jnp.float32) for s in shapes]
    state_f, state_p = fused.init(params), pure.init(params)
    assert [leaf.dtype for leaf in jax.tree.leaves(state_p[0].mu)] == [
        jnp.uint8,
        jnp.uint8,
        jnp.float32,
    ]
    step_f, step_p = _donated_pure_step(fused), _donated_pure_step(pure)
    params_f = _copy(params)
    for grads in _gradients(shapes, steps=3, seed=3):
        params_f, state_f = step_f(params_f, grads, state_f)
        params, state_p = step_p(params, grads, state_p)
    _assert_bitwise(fused.unpack_state(state_f, params), state_p)
    chex.assert_trees_all_close(params_f, params, rtol=1e-6, atol=3e-7)


def test_skip_nonfinite_keeps_the_fused_state_on_a_nan_step():
    tx = jadam.skip_nonfinite(jadam.adam(1e-2, fused=True, state_precision="8bit"))
    params = jnp.ones(5000)
    state = tx.init(params)
    step = _donated_pure_step(tx)
    params, state = step(params, jnp.full(5000, 0.5), state)
    before = _copy(state)
    params, state = step(params, jnp.full(5000, jnp.nan), state)
    _assert_bitwise(state.inner_state, before.inner_state)
    assert jadam.skip_counts(state) == (1, 1)


def test_flax_nnx_optimizer_and_linen_train_state():
    from flax import nnx
    from flax.training import train_state

    sp = jadam.Blockwise8bit(block_size=32, min_size=64)
    model_f, model_p = nnx.Linear(16, 8, rngs=nnx.Rngs(0)), nnx.Linear(16, 8, rngs=nnx.Rngs(0))
    opt_f = nnx.Optimizer(model_f, jadam.adamw(1e-2, fused=True, state_precision=sp), wrt=nnx.Param)
    opt_p = nnx.Optimizer(model_p, jadam.adamw(1e-2, state_precision=sp), wrt=nnx.Param)
    x = jnp.linspace(-1, 1, 32).reshape(2, 16)

    @nnx.jit
    def nnx_step(model, optimizer):
        grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
        optimizer.update(model, grads)

    for _ in range(3):
        nnx_step(model_f, opt_f)
        nnx_step(model_p, opt_p)
    chex.assert_trees_all_close(
        nnx.state(model_f, nnx.Param), nnx.state(model_p, nnx.Param), rtol=1e-6, atol=3e-7
    )

    params = {"w": jnp.ones((16, 8)), "b": jnp.zeros(8)}
    states = [
        train_state.TrainState.create(
            apply_fn=None, params=_copy(params), tx=jadam.adam(1e-2, fused=f)
        )
        for f in (True, False)
    ]
    grads = {"w": jnp.full((16, 8), 0.5), "b": jnp.linspace(-1, 1, 8)}
    apply = jax.jit(lambda s: s.apply_gradients(grads=grads), donate_argnums=0)
    states = [apply(apply(s)) for s in states]
    chex.assert_trees_all_close(states[0].params, states[1].params, rtol=1e-6, atol=3e-7)


def test_orbax_round_trip_mid_training_equals_the_uninterrupted_run(tmp_path):
    import orbax.checkpoint as ocp

    tx = jadam.adam(
        1e-2, fused=True, state_precision=jadam.Blockwise8bit(block_size=64, min_size=100)
    )
    params = [jnp.linspace(-1, 1, 640).reshape(10, 64), jnp.ones(7)]
    state = tx.init(params)
    step = jax.jit(tx.apply_gradients)
    all_grads = _gradients([(10, 64), (7,)], steps=4, seed=8)
    for grads in all_grads[:2]:
        params, state = step(params, grads, state)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "ckpt", {"params": params, "state": state})
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(
            tmp_path / "ckpt", jax.eval_shape(lambda: {"params": params, "state": state})
        )
    resumed_params, resumed_state = restored["params"], restored["state"]
    for grads in all_grads[2:]:
        params, state = step(params, grads, state)
        resumed_params, resumed_state = step(resumed_params, grads, resumed_state)
    _assert_bitwise((resumed_params, resumed_state), (params, state))


@pytest.mark.parametrize("path", ["update", "apply_gradients"])
@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (lambda s: s._replace(mu=[s.mu[0][:, :-1], s.mu[1]]), r"mu\[0\] has shape \(10, 67\)"),
        (lambda s: s._replace(nu=[s.nu[0][:-1], s.nu[1]]), r"nu\[0\] has shape \(9, 68\)"),
        (
            lambda s: s._replace(mu=[s.mu[0].astype(jnp.int8), s.mu[1]]),
            r"mu\[0\] has shape .* dtype int8",
        ),
        (
            lambda s: s._replace(nu=[s.nu[0], s.nu[1].astype(jnp.bfloat16)]),
            r"nu\[1\] .* dtype bfloat16",
        ),
    ],
    ids=["codes_shape", "codes_rows", "codes_dtype", "float32_leaf_dtype"],
)
def test_corrupt_8bit_state_is_refused_naming_the_leaf(corrupt, match, path):
    """A state leaf of the wrong shape or dtype (e.g. a checkpoint of another model or
    precision): a ValueError naming the leaf, its shape and dtype and the expected ones."""
    tx = jadam.adam(
        1e-2, fused=True, state_precision=jadam.Blockwise8bit(block_size=64, min_size=100)
    )
    params = [jnp.ones((10, 64)), jnp.ones(7)]
    state = tx.init(params)
    bad = (corrupt(state[0]), *state[1:])
    call = {
        "update": lambda: tx.update(params, bad, params),
        "apply_gradients": lambda: tx.apply_gradients(params, params, bad),
    }[path]
    with pytest.raises(ValueError, match=match + r".*stores a gradient of shape"):
        call()


def test_environment_fallback_warns_once_per_reason(monkeypatch):
    monkeypatch.setattr(_kernel, "available", lambda: False)
    tx = jadam.adam(1e-2, fused=True)
    params = jnp.ones(3)
    state = tx.init(params)  # not packed: the kernel is "missing"
    assert not isinstance(state[0], jadam.PackedAdamState)
    with pytest.warns(jadam.FusedFallbackWarning, match="not built"):
        tx.update(params, state, params)
    tx.update(params, state, params)  # the same reason again: no second warning
