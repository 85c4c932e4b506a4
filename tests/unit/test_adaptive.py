"""Bands per tag that hold under change: per-tag calibration, and adaptive bands that regain
their coverage when the errors grow, remember it across a restart, and change nothing until an
outcome arrives."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from control_helpers import MODEL, steady_history

from twin.model.adaptive import AdaptiveBands
from twin.model.forecast import Calibration, Forecast
from twin.model.health import band_coverage, observe
from twin.model.twin import Twin

H, SPREADS = 10, np.array([1.0, 0.05, 20.0])  # three tags of very different scales
TAGS = ("a", "b", "c")


def calibration(seed: int = 0, n: int = 600) -> Calibration:
    """A calibration fitted on Gaussian errors of each tag's spread (absolute score)."""
    rng = np.random.default_rng(seed)
    actual = rng.standard_normal((n, H, 3)) * SPREADS
    zeros = np.zeros_like(actual)
    return Calibration.fit(zeros, zeros, actual, 0.9, "absolute")


def shifted_stream(bands: AdaptiveBands | None, half: np.ndarray, shift_at: int, n: int, seed: int):
    """Feed forecasts from origins 0..n-1 (mean 0, calibrated ``half`` [H, 3]) whose errors'
    spread doubles for outcomes at or after ``shift_at``; hits ``[n, H, 3]`` of the band as
    issued (adaptive when ``bands`` is given, else the calibrated one) and the target times."""
    rng = np.random.default_rng(seed)
    hits = np.zeros((n, H, 3), bool)
    target = np.arange(n)[:, None] + np.arange(1, H + 1)[None, :]  # sample index of each step
    for t in range(n):
        spread = SPREADS * np.where(target[t] >= shift_at, 2.0, 1.0)[:, None]
        err = rng.standard_normal((H, 3)) * spread
        scale = bands.scale() if bands is not None else 1.0
        hits[t] = np.abs(err) <= half * scale
        if bands is not None:
            ts = (target[t] * 1_000_000)[None]
            bands.update_arrays(ts, np.zeros((1, H, 3)), half[None], err[None])
    return hits, target


def test_adaptive_bands_regain_coverage_after_the_errors_double() -> None:
    cal = calibration()
    half = cal.halfwidth(np.zeros((H, 3)))
    shift_at, n = 1000, 2000
    static, target = shifted_stream(None, half, shift_at, n, seed=1)
    bands = AdaptiveBands.start(TAGS, cal)
    adaptive, _ = shifted_stream(bands, half, shift_at, n, seed=1)  # the same errors
    before = target < shift_at
    later = target >= shift_at + H  # from one horizon of outcomes after the change on
    cover = {
        name: (hits[before].mean(axis=0), hits[later].mean(axis=0))
        for name, hits in (("static", static), ("adaptive", adaptive))
    }
    print(  # the figure the report quotes
        "coverage per tag before / after the change: "
        + "; ".join(f"{k} {np.round(b, 3)} / {np.round(a, 3)}" for k, (b, a) in cover.items())
    )
    assert np.all(np.abs(cover["static"][0] - 0.9) < 0.03), cover  # calibrated: right before
    assert np.all(cover["static"][1] < 0.7), cover  # and far too narrow after
    assert np.all((cover["adaptive"][0] > 0.85) & (cover["adaptive"][0] < 0.95)), cover
    assert np.all((cover["adaptive"][1] > 0.85) & (cover["adaptive"][1] < 0.95)), cover
    assert all(bands.tag_scale()[t] > 1.6 for t in TAGS), bands.tag_scale()  # about 2x now
    # every step of every tag on its own, not just their average
    steps = np.array([[adaptive[:, h, j][later[:, h]].mean() for j in range(3)] for h in range(H)])
    assert steps.min() > 0.82, steps


def test_state_round_trips_through_save_and_load(tmp_path) -> None:
    cal = calibration()
    bands = AdaptiveBands.start(TAGS, cal)
    half = cal.halfwidth(np.zeros((H, 3)))
    shifted_stream(bands, half, shift_at=0, n=150, seed=2)
    path = bands.save(tmp_path / "bands.json")
    loaded = AdaptiveBands.load(path)
    for name in ("log_scale", "updates", "recent", "recent_static", "last_ts"):
        np.testing.assert_allclose(getattr(loaded, name), getattr(bands, name), atol=1e-6)
    assert loaded.tag_coverage() == pytest.approx(bands.tag_coverage(), abs=1e-6)
    # a restarted loop resumes what it learned; a retrained twin's calibration starts afresh
    resumed = AdaptiveBands.resume(path, TAGS, cal)
    assert resumed.tag_scale() == pytest.approx(bands.tag_scale(), rel=1e-5)
    other = AdaptiveBands.resume(path, TAGS, calibration(seed=9))
    assert not other.updates.any() and np.all(other.scale() == 1.0)
    (tmp_path / "torn.json").write_text('{"tags": ["a"', encoding="utf-8")
    assert not AdaptiveBands.resume(tmp_path / "torn.json", TAGS, cal).updates.any()
    # an outcome is counted once: the same forecasts offered again change nothing
    before = loaded.updates.copy()
    ts = np.arange(1, H + 1)[None] * 1_000_000
    assert loaded.update_arrays(ts, np.zeros((1, H, 3)), half[None], np.zeros((1, H, 3))) == 0
    np.testing.assert_array_equal(loaded.updates, before)


def test_forecast_pairs_adapt_and_adjust_the_band() -> None:
    cal = calibration()
    half = cal.halfwidth(np.zeros((H, 3)))
    ts0 = np.datetime64("2026-01-01T00:00:00", "us")
    bands = AdaptiveBands.start(TAGS, cal)
    rng = np.random.default_rng(4)
    for t in range(300):  # errors three times the calibrated ones
        ts = ts0 + np.timedelta64(1, "s") * np.arange(t + 1, t + H + 1)
        fc = Forecast(TAGS, ("m",) * 3, ts, np.zeros((H, 3)), -half, half)
        assert bands.update(fc, 3 * rng.standard_normal((H, 3)) * SPREADS) > 0
    wider = bands.adjust(fc)
    assert np.all(wider.upper - wider.lower > 2.0 * (fc.upper - fc.lower))
    np.testing.assert_array_equal(wider.mean, fc.mean)  # the mean is never touched
    assert bands.tag_coverage()["a"] > 0.8 and bands.tag_coverage(static=True)["a"] < 0.5
    with pytest.raises(ValueError, match="tags"):
        bands.adjust(Forecast(("x", "y", "z"), ("m",) * 3, ts, fc.mean, fc.lower, fc.upper))


def test_per_tag_calibration_hits_nominal_coverage_on_its_own_windows() -> None:
    rng = np.random.default_rng(5)
    n = 500
    std = rng.uniform(0.5, 2.0, (n, H, 3)) * SPREADS  # members disagree more on some windows
    actual = rng.standard_normal((n, H, 3)) * std * np.array([1.0, 3.0, 0.3])  # and per tag
    mean = np.zeros_like(actual)
    cal = Calibration.fit(mean, std, actual, 0.9)
    covered, _ = cal.evaluate(mean, std, actual)
    per = covered.mean(axis=0)  # [H, tags]: every step of every tag on its own
    assert np.all(per >= 0.9) and np.all(per <= 0.9 + 3 / n), per
    np.testing.assert_allclose(cal.fitted, per)
    assert cal.held_out is not None and np.all(np.abs(cal.held_out.mean(axis=0) - 0.9) < 0.04)
    assert cal.windows == n and cal.levels and cal.grid is not None
    np.testing.assert_allclose(cal.level_at(np.ones((H, 3))), 0.9, atol=0.01)
    assert np.all(cal.level_at(np.full((H, 3), 1.5)) > 0.95)
    # the saved form reads back whole
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_array_equal(again.quantile, cal.quantile)
    np.testing.assert_allclose(again.grid, cal.grid)
    assert again.levels == cal.levels and again.windows == n


def test_shipped_calibration_loads_and_gives_the_same_bands_without_adaptation() -> None:
    saved = json.loads((MODEL / "calibration.json").read_text(encoding="utf-8"))
    cal = Calibration.from_dict(saved)
    assert cal.grid is None and cal.levels == () and cal.held_out is None
    assert set(cal.to_dict()) == set(saved)  # written back as it was: no new keys invented
    std = np.random.default_rng(6).uniform(0, 1, cal.quantile.shape)
    np.testing.assert_array_equal(
        cal.halfwidth(std), np.asarray(saved["quantile"]) * (std + saved["eps"])
    )
    twin = Twin.load(MODEL)
    history = steady_history(twin.window + 5)
    plan = np.full((twin.horizon, 1), float(history.get_column("Tc")[-1]))
    fc = twin.forecast(history, plan)
    fresh = AdaptiveBands.start(twin.spec.tag_names, twin.calibration)
    same = fresh.adjust(fc)
    np.testing.assert_allclose(same.lower, fc.lower, rtol=0, atol=1e-9)
    np.testing.assert_allclose(same.upper, fc.upper, rtol=0, atol=1e-9)
    assert np.isnan(fresh.levels(twin.calibration)).all()  # no grid: the level is not known
    rows = {r["tag"]: r for r in fresh.table(twin.calibration, ["T", "Ca"])}
    assert rows["T"]["calibration"] is None and rows["T"]["band scale"] == 1.0


def test_live_outcomes_widen_the_band_of_the_tag_that_got_noisier() -> None:
    twin = Twin.load(MODEL)
    frame = steady_history(twin.window + twin.horizon + 60)
    noisy = frame.with_columns(
        pl.col("T") + pl.Series(np.random.default_rng(7).normal(0, 2.0, frame.height))
    )
    bands = AdaptiveBands.start(twin.spec.tag_names, twin.calibration)
    assert observe(bands, twin, noisy) > 0
    assert observe(bands, twin, noisy) == 0  # nothing new: nothing counted twice
    scale = bands.tag_scale()
    assert scale["T"] > 3.0 and scale["T"] > 2 * scale["Ca"], scale
    assert "Tc" not in scale  # an MV's band is the plan: it never adapts
    cover = band_coverage(twin, noisy)
    assert cover is not None and cover["T"] < 0.5 and "Tc" not in cover, cover
    adapted = band_coverage(twin, noisy, bands)
    assert adapted is not None and adapted["T"] > cover["T"], (adapted, cover)
