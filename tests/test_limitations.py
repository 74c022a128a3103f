"""The claims of notebooks/07_limitations.ipynb, on the numbers the notebook prints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from jadam.experiments import limitations


@pytest.fixture(scope="module")
def noise():
    return limitations.constant_step_noise(alpha=0.05, steps=4096, chains=256)


def test_constant_alpha_stays_away_from_the_minimiser(noise):
    """Dereich, Graeber & Jentzen (2024): a non-vanishing α does not converge."""
    assert noise["steps"] == [16, 64, 256, 1024, 4096]
    constant = noise["constant"]
    # A plateau of about 3α from t = 256 on: 16 times more steps do not reduce the distance.
    assert all(2 * noise["alpha"] < d < 4 * noise["alpha"] for d in constant[2:]), constant
    assert constant[-1] > 0.9 * constant[2], constant


def test_inverse_sqrt_alpha_converges_on_the_same_problem(noise):
    decaying = noise["inverse_sqrt"]
    assert all(b < a for a, b in itertools.pairwise(decaying[1:])), decaying  # keeps falling
    assert decaying[-1] < 0.3 * decaying[-2], decaying
    assert decaying[-1] < noise["constant"][-1] / 5, (decaying, noise["constant"])


def test_period_two_limit_cycle_with_the_predicted_amplitude():
    """Bock & Weiß: x_t = ±α(1 − β1)/(2(1 + β1)) on ½x² (here β1 = 0: ±α/2)."""
    cycle = limitations.limit_cycle(alpha=0.1, b1=0.0, b2=0.9, steps=2000)
    assert cycle["period"] == 2
    assert cycle["predicted_amplitude"] == pytest.approx(0.05)
    assert cycle["amplitude"] == pytest.approx(cycle["predicted_amplitude"], rel=1e-4)
    tail = cycle["iterates"][-500:]
    np.testing.assert_allclose(tail[1:], -tail[:-1], rtol=1e-4)  # alternates ±c, never 0


def test_paper_defaults_do_not_settle_on_the_cycle():
    defaults = limitations.limit_cycle(alpha=0.1, b1=0.9, b2=0.999, steps=2000)
    assert defaults["period"] == 0
    assert defaults["amplitude"] < 1e-6 * defaults["predicted_amplitude"]


@pytest.mark.parametrize(
    "xs, period",
    [([1.0, -1.0] * 8, 2), ([1.0, 2.0, 3.0] * 5, 3), ([0.5] * 6, 1), ([1.0, 2.0, 4.0, 8.0], 0)],
)
def test_orbit_period(xs, period):
    assert limitations.orbit_period(np.array(xs)) == period
