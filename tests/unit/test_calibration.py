"""Calibrated bands per tag and step: what they cover on fresh data, down to a handful of windows,
and that folders saved before still load with the same band."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from twin.errors import DataQualityError
from twin.model.forecast import Calibration

H, TAGS = 30, 12


def overlapping(rng: np.random.Generator, n: int, sigma: np.ndarray, c: np.ndarray):
    """``(mean, std, actual)`` ``[n, H, tags]`` of forecasts from n consecutive origins whose
    errors are a random walk (errors at step k of neighbouring windows share k - 1 innovations,
    as a real twin's do); the ensemble std has the right shape in k but a scale off by ``c``."""
    walk = np.cumsum(rng.standard_normal((n + H + 1, len(sigma))), axis=0)
    idx = np.arange(n)[:, None] + np.arange(1, H + 1)[None, :]
    err = (walk[idx] - walk[:n, None, :]) * sigma
    std = np.broadcast_to(np.sqrt(np.arange(1, H + 1))[None, :, None] * c, err.shape).copy()
    return np.zeros_like(err), std, err


def per_tag_coverage(cal: Calibration, fresh) -> np.ndarray:
    return cal.evaluate(*fresh)[0].mean(axis=(0, 1))


def test_bands_cover_fresh_data_per_tag_with_overlapping_windows() -> None:
    """3000 heavily overlapping windows (100 stretches of the horizon): every tag's band covers
    85-95 % of fresh data, the scaled score making one band fit tags whose ensemble spread is
    off by a factor of up to 3 either way."""
    rng = np.random.default_rng(0)
    sigma, c = np.exp(rng.normal(0, 0.5, TAGS)), np.exp(rng.normal(0, 0.5, TAGS))
    cal = Calibration.fit(*overlapping(rng, 3000, sigma, c), 0.9)
    cover = per_tag_coverage(cal, overlapping(rng, 20_000, sigma, c))
    assert ((cover >= 0.85) & (cover <= 0.95)).all(), cover.round(3)
    assert cal.held_out is not None and abs(cal.held_out.mean() - 0.9) < 0.03


def per_cell(mean, std, actual, eps: float, p: float = 0.9) -> Calibration:
    """The calibration before: a finite-sample quantile per (step, tag), whatever the data."""
    s = np.abs(actual - mean) / (std + eps)
    level = min(1.0, np.ceil((len(s) + 1) * p) / len(s))
    return Calibration("scaled", np.quantile(s, level, axis=0, method="higher"), eps, p)


def test_few_independent_stretches_give_a_band_that_no_tag_falls_far_below() -> None:
    """100 windows span about 4 stretches of the horizon: a quantile per step and tag is a guess
    (before: 4 of 48 tags below 75 % on fresh data); pooled over the steps with the Student-t
    factor for 4 independent errors no tag falls below 80 %, at the cost of a wider band."""
    new, old = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        sigma, c = np.exp(rng.normal(0, 0.5, TAGS)), np.exp(rng.normal(0, 0.5, TAGS))
        data = overlapping(rng, 100, sigma, c)
        cal = Calibration.fit(*data, 0.9)
        fresh = overlapping(rng, 20_000, sigma, c)
        new += list(per_tag_coverage(cal, fresh))
        old += list(per_tag_coverage(per_cell(*data, cal.eps), fresh))
    new_a, old_a = np.array(new), np.array(old)
    assert (old_a < 0.75).sum() >= 2 and old_a.min() < 0.75, old_a.round(3)
    assert new_a.min() >= 0.8 and np.median(new_a) >= 0.9, new_a.round(3)


@pytest.mark.parametrize("n", [1, 2, 9])
def test_a_handful_of_windows_gives_a_wider_band_and_a_warning_not_a_refusal(
    n: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A 6 h history of a 60-s plant leaves two held-out windows (before: refused, the twin
    could not be trained at all): the band is pooled over the steps and widened, so it
    over-covers rather than under."""
    rng = np.random.default_rng(n)
    sigma, c = np.exp(rng.normal(0, 0.5, TAGS)), np.ones(TAGS)
    mean, std, actual = overlapping(rng, n, sigma, c)
    actual[..., 0] = mean[..., 0]  # an MV column: the plan itself, no error, no band
    with caplog.at_level(logging.WARNING, logger="twin.model.calibration"):
        cal = Calibration.fit(mean, std, actual, 0.9)
    assert "too few for a 90 % quantile per step and tag" in caplog.text
    assert cal.windows == n and cal.held_out is None
    assert np.isfinite(cal.quantile).all() and (cal.quantile[:, 0] == 0).all()
    assert cal.grid is not None and (np.diff(cal.grid, axis=0) >= 0).all()  # levels in order
    fresh = overlapping(rng, 20_000, sigma, c)
    fresh[2][..., 0] = 0.0
    cover = per_tag_coverage(cal, fresh)[1:]
    assert np.median(cover) >= 0.95 and cover.min() >= 0.85, cover.round(3)


def test_no_window_at_all_is_refused_with_the_reason() -> None:
    empty = np.zeros((0, H, 2))
    with pytest.raises(DataQualityError, match="held-out windows, got none"):
        Calibration.fit(empty, empty, empty)


def test_auto_score_with_few_windows_falls_back_to_scaled() -> None:
    rng = np.random.default_rng(1)
    cal = Calibration.fit(*overlapping(rng, 5, np.ones(2), np.ones(2)), 0.9, "auto")
    assert cal.score == "scaled"


def test_saved_calibrations_round_trip_and_old_files_keep_their_band() -> None:
    rng = np.random.default_rng(2)
    cal = Calibration.fit(*overlapping(rng, 400, np.ones(3), np.ones(3)), 0.9)
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert np.array_equal(again.quantile, cal.quantile) and again.windows == 400
    old = {"score": "scaled", "quantile": [[1.5, 2.0]], "eps": 0.01, "coverage": 0.9}
    legacy = Calibration.from_dict(old)  # a folder saved before the grid and the checks
    assert legacy.grid is None and legacy.levels == ()
    assert np.allclose(legacy.halfwidth(np.array([[1.0, 1.0]])), [[1.515, 2.02]])


def test_a_twin_trains_on_a_history_that_leaves_a_few_held_out_windows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """150 samples leave 7 validation + calibration windows of window + horizon = 20
    (before: "calibration needs at least 10 held-out windows", no twin): the twin trains, says
    why its band is wide, and forecasts with a finite band around the mean."""
    import polars as pl

    from twin.model.network import TwinConfig
    from twin.model.twin import Twin
    from twin.spec import parse_spec

    spec = parse_spec(
        """
[plant]
name = "tiny"
sample_period_s = 60.0

[[tags]]
name = "y"
node = "ns=2;s=y"
unit = "m"
role = "cv"
lo = -5.0
hi = 5.0

[[tags]]
name = "u"
node = "ns=2;s=u"
unit = "%"
role = "mv"
lo = -2.0
hi = 2.0
rate_limit = 1.0
""",
        source="tiny.toml",
    )
    rng = np.random.default_rng(0)
    n = 150
    u = np.repeat(rng.uniform(-1.5, 1.5, n // 10 + 1), 10)[:n]
    y = np.zeros(n)
    for k in range(1, n):
        y[k] = 0.9 * y[k - 1] + 0.2 * u[k] + 0.02 * rng.standard_normal()
    start = pl.datetime(2026, 1, 1, time_zone="UTC")
    ts = pl.datetime_range(start, start + pl.duration(minutes=n - 1), "1m", eager=True)
    frame = pl.DataFrame({"ts": ts.dt.cast_time_unit("us"), "y": y, "u": u})
    cfg = TwinConfig(window=8, horizon=12, latent=4, hidden=16, ensemble=2, max_epochs=2, seed=0)
    with caplog.at_level(logging.WARNING, logger="twin.model.calibration"):
        twin = Twin.fit(spec, frame, cfg, progress=False)
    assert "too few for a 90 % quantile per step and tag" in caplog.text
    # validation 23 and calibration 22 rows, each forecast from the window before it: a few
    assert twin.calibration.windows == (23 - 12 + 1) + (22 - 12 + 1)
    fc = twin.forecast(frame, np.zeros((12, 1)))
    mean, lower, upper = fc.tag("y")
    assert np.isfinite(lower).all() and (lower < mean).all() and (mean < upper).all()
