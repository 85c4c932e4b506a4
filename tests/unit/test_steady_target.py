"""The steady state the controller's targets aim at, extrapolated from the tail of the horizon."""

from __future__ import annotations

import numpy as np
import pytest

from twin.control.steady_target import TAU_MAX, final_values

H = 30


def first_order(tau: float, gain: float = 2.0) -> np.ndarray:
    """``[H]`` the step response ``gain (1 - exp(-k / tau))``, k = 1..H."""
    k = np.arange(1, H + 1)
    return gain * (1.0 - np.exp(-k / tau))


@pytest.mark.parametrize("tau", [3.0, 10.0, 30.0, 90.0])
def test_a_first_order_response_cut_by_the_horizon_ends_at_its_gain(tau: float) -> None:
    final, own = final_values(first_order(tau))
    assert final == pytest.approx(2.0, rel=1e-6)
    assert own == pytest.approx(1.0 / (np.exp(1.0 / tau) - 1.0), rel=1e-6)


@pytest.mark.parametrize("phase", [0, 1])
def test_a_slow_response_that_wiggles_from_sample_to_sample_still_ends_near_its_gain(
    phase: int,
) -> None:
    """A network's forecast wiggles: sample-to-sample changes say little of the tail's decay.

    Here a mode of one horizon wiggles by +-0.002 (a seventh of its change per sample at the
    horizon); read from one-step changes it ended 30-37 % short of its gain, and seen on a
    held-out plant, a slower mode read as settled (a gain 8x too small) made the controller
    drive two other MVs to their limits chasing the setpoint.
    """
    z = first_order(30.0) + 0.002 * np.where((np.arange(H) + phase) % 2 == 0, 1.0, -1.0)
    final, _ = final_values(z)
    assert final == pytest.approx(2.0, rel=0.25)  # from 1.26 at the horizon


def test_a_response_that_reverses_or_has_settled_ends_where_the_horizon_does() -> None:
    k = np.arange(1, H + 1)
    overshoot = np.sin(np.pi * k / 40.0)  # peaks within the horizon and comes back
    settled = first_order(2.0)
    final, _ = final_values(np.stack([overshoot, settled], axis=1))
    assert final == pytest.approx([overshoot[-1], 2.0], abs=1e-6)
    assert final_values(np.zeros((H, 2)))[0] == pytest.approx(0.0)


def test_a_steady_rise_is_taken_as_a_mode_slower_than_the_horizon() -> None:
    ramp = 0.01 * np.arange(1, H + 1)  # an integrating response: no decay at all
    final, own = final_values(ramp)
    assert own == pytest.approx(TAU_MAX * H)
    assert final == pytest.approx(ramp[-1] + TAU_MAX * H * 0.01, rel=0.05)


def test_given_time_constants_extrapolate_a_curve_alike() -> None:
    """The held-MV forecast is extrapolated with its CV's slowest gain tail."""
    z = first_order(10.0)
    final, _ = final_values(z, np.array(0.0))
    assert final == z[-1]
    tau = 1.0 / (np.exp(1.0 / 10.0) - 1.0)
    assert final_values(z, np.array(tau))[0] == pytest.approx(2.0, rel=1e-6)
