"""Paper variants of Adam against the NumPy float64 transcriptions in reference_adam_variants.py."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference_adam_variants as ref
from problems import gradient_sequence, run_updates

import jadam

TOL = {"rtol": 1e-10, "atol": 1e-14}


@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("eps_form", ["algorithm1", "eps_hat", "inside_root"])
def test_eps_forms(x64, kind, eps_form):
    grads = gradient_sequence(kind, 60)
    ours = run_updates(jadam.adam(0.01, eps=1e-3, eps_form=eps_form), grads, jnp.float64)
    chex.assert_trees_all_close(ours, ref.adam(grads, 0.01, eps=1e-3, eps_form=eps_form), **TOL)


def test_eps_forms_differ_from_each_other(x64):
    """The three placements are different algorithms when ε is not negligible."""
    grads = gradient_sequence("dense", 20)
    runs = {
        form: run_updates(jadam.adam(0.01, eps=1.0, eps_form=form), grads, jnp.float64)
        for form in ["algorithm1", "eps_hat", "inside_root"]
    }
    assert np.max(np.abs(runs["algorithm1"] - runs["eps_hat"])) > 1e-4
    assert np.max(np.abs(runs["algorithm1"] - runs["inside_root"])) > 1e-4


def test_default_eps_form_is_unchanged(x64):
    grads = gradient_sequence("dense", 30)
    chex.assert_trees_all_equal(
        run_updates(jadam.adam(0.01), grads, jnp.float64),
        run_updates(jadam.adam(0.01, eps_form="algorithm1"), grads, jnp.float64),
    )


@pytest.mark.parametrize("eps_form", ["algorithm1", "eps_hat"])
@pytest.mark.parametrize("decay", [0.5, 0.9, 1.0 - 1e-8])
def test_decaying_b1(x64, decay, eps_form):
    """Section 4: β1,t = β1·λ^(t−1), m̂_t = m_t/(1 − ∏ β1,τ)."""
    grads = gradient_sequence("dense", 80)
    tx = jadam.adam(0.01, b1_decay=decay, eps_form=eps_form)
    expected = ref.adam(grads, 0.01, b1_decay=decay, eps_form=eps_form)
    chex.assert_trees_all_close(run_updates(tx, grads, jnp.float64), expected, **TOL)


def test_decaying_b1_with_inverse_sqrt_schedule(x64):
    """Theorem 4.1's pair: α_t = α/√t with β1,t = β1·λ^(t−1)."""
    grads = gradient_sequence("dense", 50)
    tx = jadam.adam(jadam.inverse_sqrt_schedule(0.1), b1_decay=0.95)
    steps = ref.adam(grads, 1.0, b1_decay=0.95) * 0.1 / np.sqrt(np.arange(1, 51))[:, None]
    chex.assert_trees_all_close(run_updates(tx, grads, jnp.float64), steps, **TOL)


def test_decaying_b1_constant_gradient_gives_unbiased_first_step_direction(x64):
    """With the product correction m̂_t = g for a constant g; with β1,t^t it would not be."""
    tx = jadam.scale_by_adam(b1=0.9, b1_decay=0.5, eps=0.0)
    state = tx.init(jnp.zeros(1))
    for _ in range(5):
        updates, state = tx.update(jnp.array([2.0]), state)
    chex.assert_trees_all_close(updates, jnp.array([1.0]), rtol=1e-14)
    assert float(jadam.decayed_b1_correction(0.9, 0.5, 5)) == pytest.approx(
        1 - np.prod([0.9 * 0.5**k for k in range(5)]), rel=1e-14
    )


def test_decayed_b1_schedule_values(x64):
    schedule = jadam.decayed_b1_schedule(0.9, 0.99)
    np.testing.assert_allclose([schedule(c) for c in range(4)], 0.9 * 0.99 ** np.arange(4))


@pytest.mark.parametrize("variant", ["max_of_corrected", "max_of_raw", "uncorrected"])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_amsgrad_variants(x64, variant, kind):
    grads = gradient_sequence(kind, 60)
    ours = run_updates(jadam.amsgrad(0.01, variant=variant), grads, jnp.float64)
    chex.assert_trees_all_close(ours, ref.amsgrad(grads, 0.01, variant=variant), **TOL)


def test_amsgrad_keras_form(x64):
    """max of raw v with Section 2's ε̂ ordering is Keras's Adam(amsgrad=True)."""
    grads = gradient_sequence("dense", 60)
    tx = jadam.amsgrad(0.01, eps=1e-3, variant="max_of_raw", eps_form="eps_hat")
    expected = ref.keras_amsgrad(grads, 0.01, eps=1e-3)
    chex.assert_trees_all_close(run_updates(tx, grads, jnp.float64), expected, **TOL)


@pytest.mark.parametrize("variant", ["max_of_corrected", "max_of_raw"])
def test_amsgrad_eps_hat_equals_scaled_eps(x64, variant):
    """With ε = 0 the ε̂ ordering is Algorithm 1's form; inside_root equals eps_root."""
    grads = gradient_sequence("dense", 30)
    eps_hat = run_updates(
        jadam.amsgrad(0.01, eps=0.0, variant=variant, eps_form="eps_hat"), grads, jnp.float64
    )
    plain = run_updates(jadam.amsgrad(0.01, eps=0.0, variant=variant), grads, jnp.float64)
    chex.assert_trees_all_close(eps_hat, plain, **TOL)  # with ε = 0 the orderings agree
    inside = run_updates(jadam.amsgrad(0.01, eps=0.5, eps_form="inside_root"), grads, jnp.float64)
    chex.assert_trees_all_close(
        inside, run_updates(jadam.amsgrad(0.01, eps=0.0, eps_root=0.5), grads, jnp.float64), **TOL
    )


@pytest.mark.parametrize("momentum_decay", [0.004, 1.0])
def test_scheduled_nadam(x64, momentum_decay):
    grads = gradient_sequence("dense", 60)
    tx = jadam.nadam(2e-3, momentum_decay=momentum_decay)
    expected = ref.nadam_scheduled(grads, 2e-3, momentum_decay=momentum_decay)
    chex.assert_trees_all_close(run_updates(tx, grads, jnp.float64), expected, **TOL)


def test_temporal_averaging(x64):
    """θ̄_t over θ_1 … θ_t, read after each update with the current θ_t (no lag)."""
    grads = gradient_sequence("dense", 40)
    tx = optax.chain(jadam.adam(0.1), jadam.temporal_averaging(0.9))

    @jax.jit
    def run(grads):
        def step(carry, g):
            params, state = carry
            updates, state = tx.update(g, state, params)
            params = optax.apply_updates(params, updates)
            lagged = jadam.averaged_params(state)
            return (params, state), (params, jadam.averaged_params(state, params), lagged)

        params = jnp.zeros(grads.shape[1])
        return jax.lax.scan(step, (params, tx.init(params)), grads)[1]

    thetas, averaged, lagged = (np.asarray(x) for x in run(jnp.asarray(grads)))
    expected = ref.temporal_average(thetas, 0.9)
    chex.assert_trees_all_close(averaged, expected, **TOL)
    chex.assert_trees_all_close(lagged[1:], expected[:-1], **TOL)  # one step behind


def test_temporal_averaging_needs_params():
    tx = jadam.temporal_averaging()
    with pytest.raises(ValueError, match="needs params"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))


def test_averaged_params_finds_state_in_linen_train_state():
    train_state = pytest.importorskip("flax.training.train_state")
    params = {"w": jnp.ones(3)}
    state = train_state.TrainState.create(
        apply_fn=None, params=params, tx=optax.chain(jadam.adam(0.1), jadam.temporal_averaging())
    )
    state = state.apply_gradients(grads={"w": jnp.ones(3)})
    chex.assert_trees_all_close(jadam.averaged_params(state.opt_state, state.params), state.params)
    with pytest.raises(ValueError, match="exactly one temporal_averaging"):
        jadam.averaged_params(jadam.adam(0.1).init(params))


def _row_sparse_grads(steps=25, rows=6, cols=3, seed=1):
    rng = np.random.default_rng(seed)
    grads = rng.standard_normal((steps, rows, cols))
    grads *= (rng.random((steps, rows)) < 0.4)[:, :, None]
    return grads


@pytest.mark.parametrize("per_row_count", [False, True])
@pytest.mark.parametrize("eps_form", ["algorithm1", "eps_hat"])
def test_lazy_adam_dense_entry(x64, per_row_count, eps_form):
    grads = _row_sparse_grads()
    tx = jadam.lazy_adam(0.01, per_row_count=per_row_count, eps_form=eps_form)
    expected = ref.lazy_adam(
        grads, 0.01, per_row_count=per_row_count, eps_hat=eps_form == "eps_hat"
    )
    chex.assert_trees_all_close(run_updates(tx, grads, jnp.float64), expected, **TOL)


@pytest.mark.parametrize("per_row_count", [False, True])
def test_lazy_adam_sparse_entry_matches_dense_entry(x64, per_row_count):
    """(indices, rows) gradients (duplicated, unsorted, padded) give the dense entry's result."""
    grads = _row_sparse_grads()
    opt = jadam.sparse_lazy_adam(0.01, per_row_count=per_row_count)
    step = jax.jit(opt.step)
    table = jnp.zeros(grads.shape[1:], jnp.float64)
    state = opt.init(table)
    tables = []
    rows_total = grads.shape[1]
    for g in grads:
        touched = np.flatnonzero(np.any(g != 0, axis=1))[::-1]  # unsorted
        # Each touched row split in two halves under a duplicated index (summed back), padded to
        # a fixed length (one compilation) with out-of-range indices, which are ignored.
        pad = 2 * rows_total - 2 * len(touched)
        indices = np.concatenate([touched, touched, np.full(pad, rows_total)])
        values = np.concatenate([g[touched] * 0.25, g[touched] * 0.75, np.ones((pad, 3))])
        table, state = step(table, state, jnp.asarray(indices), jnp.asarray(values))
        tables.append(np.asarray(table))
    expected = np.cumsum(ref.lazy_adam(grads, 0.01, per_row_count=per_row_count), axis=0)
    chex.assert_trees_all_close(np.stack(tables), expected, **TOL)


def test_per_row_count_gives_late_rows_a_full_first_step(x64):
    """A row first touched at step t: the global count's correction shrinks its first step."""
    g = np.zeros((10, 2, 1))
    g[:, 0] = 1.0
    g[9, 1] = 1.0  # row 1 is first touched at step 10
    per_row = run_updates(jadam.lazy_adam(1.0, per_row_count=True), g, jnp.float64)
    global_count = run_updates(jadam.lazy_adam(1.0), g, jnp.float64)
    assert per_row[9, 1, 0] == pytest.approx(-1.0, rel=1e-7)
    expected_global = -(0.1 / (1 - 0.9**10)) / np.sqrt(0.001 / (1 - 0.999**10))
    assert global_count[9, 1, 0] == pytest.approx(expected_global, rel=1e-7)


def test_sparse_entry_rejects_bad_shapes():
    opt = jadam.sparse_lazy_adam(0.1)
    table = jnp.zeros((5, 2))
    with pytest.raises(ValueError, match="rows of shape"):
        opt.step(table, opt.init(table), jnp.array([1]), jnp.ones((1, 3)))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: jadam.adam(0.1, eps_form="outside"), "eps_form"),
        (lambda: jadam.adam(0.1, b1_decay=1.5), "b1_decay"),
        (lambda: jadam.adam(0.1, b1_decay=0.0), "b1_decay"),
        (lambda: jadam.amsgrad(0.1, variant="torch"), "variant"),
        (lambda: jadam.nadam(0.1, momentum_decay=-1.0), "momentum_decay"),
        (lambda: jadam.temporal_averaging(1.0), "decay"),
        (lambda: jadam.lazy_adam(0.1, b2=1.0), "b2"),
        (lambda: jadam.sparse_lazy_adam(-0.1), "learning_rate"),
        (lambda: jadam.scale_by_adam(b1_decay=0.9, nesterov=True), "nesterov"),
    ],
)
def test_bad_hyperparameters_rejected(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_averaged_params_with_flax_nnx_optimizer():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    tx = optax.chain(jadam.sgd(0.1), jadam.temporal_averaging(0.9))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    grads = nnx.grad(lambda m: jnp.sum(m(jnp.ones((1, 2)))))(model)
    bias0 = np.asarray(model.bias[...])
    for _ in range(2):  # the bias gradient is 1: θ_1 = θ_0 − 0.1, θ_2 = θ_0 − 0.2
        optimizer.update(model, grads)
    averaged = jadam.averaged_params(optimizer.opt_state, nnx.state(model, nnx.Param))
    expected = bias0 - (0.9 * 0.1 * 0.1 + 0.1 * 0.2) / (1 - 0.9**2)
    np.testing.assert_allclose(averaged["bias"][...], expected, rtol=1e-6)
    nnx.update(model, averaged)  # the averaged tree plugs straight back into a model
    np.testing.assert_allclose(model.bias[...], expected, rtol=1e-6)


def test_sparse_entry_skips_non_finite_steps():
    opt = jadam.sparse_lazy_adam(0.1, per_row_count=True)
    step = jax.jit(opt.step)
    table = jnp.ones((4, 2))
    table, state = step(table, opt.init(table), jnp.array([1]), jnp.ones((1, 2)))
    for bad in [jnp.nan, jnp.inf]:
        new_table, new_state = step(
            table, state, jnp.array([1, 2]), jnp.array([[1.0, bad], [1, 1]])
        )
        chex.assert_trees_all_equal((new_table, new_state), (table, state))
