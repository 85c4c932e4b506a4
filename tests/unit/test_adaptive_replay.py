"""Adaptive bands replayed over a test history (``twin evaluate``'s adapted coverage): they regain
coverage after the errors double, and at each origin they know only the outcomes measured by then."""

from __future__ import annotations

import numpy as np

from twin.evaluate.adaptive_replay import after_one_horizon, replay
from twin.model.forecast import Calibration

H, PERIOD, N, SHIFT = 10, 60.0, 1500, 500
TAGS = ("a", "b")
SPREADS = np.array([1.0, 0.02])


def stream(seed: int, gain: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Origins every sample; the outcome errors' spread is ``gain`` times larger from SHIFT on."""
    rng = np.random.default_rng(seed)
    origins = np.datetime64("2026-01-01T00:00") + np.arange(N) * np.timedelta64(60, "s")
    target = np.arange(N)[:, None] + np.arange(1, H + 1)[None, :]
    spread = SPREADS * np.where(target >= SHIFT, gain, 1.0)[..., None]
    actual = rng.standard_normal((N, H, 2)) * spread
    centre = np.zeros_like(actual)
    return origins, centre, actual, target


def calibration() -> Calibration:
    rng = np.random.default_rng(99)
    actual = rng.standard_normal((800, H, 2)) * SPREADS
    zeros = np.zeros_like(actual)
    return Calibration.fit(zeros, zeros, actual, 0.9, "absolute")


def test_replayed_bands_regain_coverage_within_one_horizon_of_a_doubling() -> None:
    cal = calibration()
    half = np.broadcast_to(cal.quantile, (N, H, 2))
    origins, centre, actual, _ = stream(0, 2.0)
    inside, _ = replay(TAGS, cal, origins, PERIOD, centre, half, actual)
    static = np.abs(actual - centre) <= half
    after = np.arange(N) >= SHIFT + H  # one horizon after the change
    per_tag_static = static[after].mean(axis=(0, 1))
    per_tag = inside[after].mean(axis=(0, 1))
    assert (per_tag_static < 0.7).all(), per_tag_static  # the calibrated band no longer holds
    assert ((per_tag > 0.85) & (per_tag < 0.95)).all(), per_tag
    before = (np.arange(N) >= 2 * H) & (np.arange(N) < SHIFT)
    assert (inside[before].mean(axis=(0, 1)) > 0.85).all()  # and held before the change


def test_replay_uses_no_outcome_measured_after_the_forecast_was_made() -> None:
    cal = calibration()
    half = np.broadcast_to(cal.quantile, (N, H, 2))
    origins, centre, calm, _ = stream(1, 1.0)
    _, _, storm, _ = stream(1, 5.0)  # the same draws, five times larger from sample SHIFT on
    _, calm_scale = replay(TAGS, cal, origins, PERIOD, centre, half, calm)
    _, storm_scale = replay(TAGS, cal, origins, PERIOD, centre, half, storm)
    # up to origin SHIFT - 1 every measured outcome is the same in both streams: so is the band
    # (forecasts made at SHIFT - H .. SHIFT - 1 already reach into the storm, unmeasured then)
    np.testing.assert_array_equal(calm_scale[:SHIFT], storm_scale[:SHIFT])
    # once the storm's outcomes are measured the bands widen, within a few horizons
    assert (storm_scale[SHIFT + 3 * H] > 1.5 * calm_scale[SHIFT + 3 * H]).all()


def test_after_one_horizon_counts_from_the_first_origin() -> None:
    origins = np.datetime64("2026-01-01T00:00") + np.arange(20) * np.timedelta64(60, "s")
    mask = after_one_horizon(origins, PERIOD, 5)
    assert mask.tolist() == [False] * 5 + [True] * 15
