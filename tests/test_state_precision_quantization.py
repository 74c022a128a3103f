"""8-bit block-wise codes: the code's values, its stated error bounds, and state sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jadam
from jadam import _precision, _quantization

E, BLOCK = 4, 64


def independent_code(signed: bool) -> np.ndarray:
    """The code's values relative to the absmax, written out from the format's definition."""
    m_bits = 3 if signed else 4
    levels = 2**m_bits
    subnormal = np.arange(levels) / levels * 2.0 ** (1 - 2**E)
    normal = [(1 + m / levels) * 2.0 ** (f - 2**E) for f in range(1, 2**E) for m in range(levels)]
    magnitudes = np.concatenate([subnormal, normal]) / (1 - 2.0 ** -(m_bits + 1))
    return np.unique(np.concatenate([magnitudes, -magnitudes]) if signed else magnitudes)


def bound(x: np.ndarray, absmax: np.ndarray, signed: bool, stochastic: bool) -> np.ndarray:
    """The module docstring's bound: 2^−(M+1)|x| + 2^−(M+2^E)·a/t (twice that if stochastic)."""
    m_bits = 3 if signed else 4
    top = 1 - 2.0 ** -(m_bits + 1)
    nearest = 2.0 ** -(m_bits + 1) * np.abs(x) + 2.0 ** -(m_bits + 2**E) * absmax / top
    return (2 if stochastic else 1) * nearest


def sample(signed: bool, seed: int = 0) -> np.ndarray:
    """Values spread over 12 orders of magnitude, with zeros and whole-zero blocks."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(40 * BLOCK) * 10.0 ** rng.uniform(-12, 0, 40 * BLOCK)
    x[:BLOCK] = 0.0
    x[BLOCK : 2 * BLOCK : 3] = 0.0
    return (x if signed else np.abs(x)).astype(np.float32)


def block_absmax(x: np.ndarray) -> np.ndarray:
    absmax = np.max(np.abs(x.reshape(-1, BLOCK)), axis=1)
    return np.repeat(absmax, BLOCK)


@pytest.mark.parametrize("signed", [True, False])
def test_code_matches_its_definition(signed):
    values = np.unique(_quantization.code_values(signed))
    np.testing.assert_allclose(values, independent_code(signed), rtol=1e-7, atol=0)
    assert values.max() == 1.0 and (values.min() == -1.0 if signed else values.min() == 0.0)


@pytest.mark.parametrize("signed", [True, False])
def test_nearest_rounding_picks_the_nearest_code(signed):
    x = sample(signed)
    q = _quantization.quantize(jnp.asarray(x), signed=signed, block_size=BLOCK)
    got = np.asarray(_quantization.dequantize(q, signed=signed, shape=x.shape), np.float64)
    absmax = block_absmax(x).astype(np.float64)
    candidates = independent_code(signed)[None, :] * absmax[:, None]
    best = np.min(np.abs(candidates - x[:, None].astype(np.float64)), axis=1)
    float32_slack = 2.0**-22 * (np.abs(x) + absmax)  # x̂ = code · absmax is rounded to float32
    assert np.all(np.abs(got - x) <= best + float32_slack)
    assert np.all(np.abs(got - x) <= bound(x, absmax, signed, stochastic=False) * (1 + 1e-6))
    _, scales = _quantization.unpack(q)
    np.testing.assert_array_equal(np.asarray(scales), absmax[::BLOCK].astype(np.float32))


@pytest.mark.parametrize("signed", [True, False])
def test_stochastic_rounding_is_within_bound_and_unbiased(signed):
    x = sample(signed, seed=1)
    absmax = block_absmax(x).astype(np.float64)
    shape = (x.size // BLOCK, BLOCK)
    draws = []
    for count in range(64):
        bits = _precision.dither_bits(shape, seed=3, stream=0, count=jnp.int32(count))
        q = _quantization.quantize(jnp.asarray(x), signed=signed, block_size=BLOCK, bits=bits)
        draws.append(np.asarray(_quantization.dequantize(q, signed=signed, shape=x.shape)))
    draws = np.asarray(draws, np.float64)
    assert np.all(np.abs(draws - x) <= bound(x, absmax, signed, stochastic=True) * (1 + 1e-6))
    # Each value is one of its two neighbouring codes, and their mean over 64 dithered draws
    # is x up to 1/64 of the gap (the Weyl dither spreads u evenly over [0, 1)).
    gap = bound(x, absmax, signed, stochastic=True)
    assert np.all(np.abs(draws.mean(axis=0) - x) <= gap / 16 + 1e-30)


def test_pack_round_trip():
    codes = jnp.arange(12, dtype=jnp.uint8).reshape(3, 4)
    scales = jnp.array([1.5, 0.0, -2.25e-30], jnp.float32)
    got_codes, got_scales = _quantization.unpack(_quantization.pack(codes, scales))
    np.testing.assert_array_equal(np.asarray(got_codes), np.asarray(codes))
    np.testing.assert_array_equal(np.asarray(got_scales), np.asarray(scales))


def test_quantized_zeros_and_padding():
    x = jnp.zeros(100)
    q = _quantization.quantize(x, signed=True, block_size=BLOCK)
    assert q.shape == (2, BLOCK + 4) and q.dtype == jnp.uint8  # codes, then absmax bytes
    codes, scales = _quantization.unpack(q)
    assert codes.shape == (2, BLOCK) and scales.shape == (2,) and scales.dtype == jnp.float32
    out = _quantization.dequantize(q, signed=True, shape=(10, 10))
    np.testing.assert_array_equal(np.asarray(out), np.zeros((10, 10)))


def test_state_nbytes_per_parameter():
    params = {"big": jnp.zeros((1024, 1024)), "small": jnp.zeros(100)}
    n = 1024 * 1024 + 100
    per_param = {
        precision: jadam.state_nbytes(jadam.adam(1e-3, state_precision=precision).init(params)) / n
        for precision in (None, "bfloat16", "8bit")
    }
    assert per_param[None] == pytest.approx(8.0, abs=1e-3)
    assert per_param["bfloat16"] == pytest.approx(4.0, abs=1e-3)
    assert per_param["8bit"] <= 2.1
    state = jadam.adam(1e-3, state_precision="8bit").init(params)
    mu = state[0].mu
    assert mu["big"].dtype == jnp.uint8 and mu["big"].shape == (4096, 256 + 4)
    assert mu["small"].dtype == jnp.float32  # below min_size: kept float32
    abstract = jax.eval_shape(jadam.adam(1e-3, state_precision="8bit").init, params)
    assert jadam.state_nbytes(abstract) == jadam.state_nbytes(state)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(state_precision="int4"), ValueError),
        (dict(state_precision="8bit", mu_dtype=jnp.float32), ValueError),
        (dict(nu_dtype=jnp.int8), TypeError),
    ],
)
def test_bad_state_precision_is_rejected(kwargs, error):
    with pytest.raises(error, match=r"state_precision|nu_dtype"):
        jadam.scale_by_adam(**kwargs)


@pytest.mark.parametrize(
    "make", [lambda: jadam.Blockwise8bit(block_size=0), lambda: jadam.Blockwise8bit(min_size=-1)]
)
def test_bad_blockwise_arguments_are_rejected(make):
    with pytest.raises(ValueError, match="Blockwise8bit"):
        make()


def test_bad_stochastic_rounding_arguments_are_rejected():
    with pytest.raises(ValueError, match="bfloat16 or float16"):
        jadam.StochasticRounding(jnp.float32)
    with pytest.raises(ValueError, match="seed"):
        jadam.StochasticRounding(seed=-1)


def test_complex_parameters_are_rejected():
    tx = jadam.scale_by_adam(state_precision="8bit")
    with pytest.raises(TypeError, match="complex64"):
        tx.init(jnp.zeros(3, jnp.complex64))


def test_gradient_tree_mismatch_is_reported():
    tx = jadam.scale_by_adam(state_precision=jadam.Blockwise8bit(block_size=BLOCK, min_size=0))
    state = tx.init({"w": jnp.zeros(100)})
    with pytest.raises(ValueError, match="does not fit"):
        tx.update({"w": jnp.zeros(300)}, state)
    with pytest.raises(ValueError, match="does not match"):
        tx.update({"v": jnp.zeros(100)}, state)
