"""Training windows line up with the data, skip bad samples, and normalise reversibly."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from twin.errors import DataQualityError
from twin.model.dataset import (
    Normalizer,
    cv_columns,
    dv_columns,
    evenly,
    frame_to_array,
    frame_ts,
    make_windows,
    mv_columns,
    spans,
    split_by_time,
    split_with_context,
)
from twin.spec import builtin_spec

SPEC = builtin_spec("cstr")  # tags T (cv), Ca (cv), Tc (mv), Tf (dv)


def frame(n: int) -> pl.DataFrame:
    """Each tag's value encodes its row and column: ``row + 1000 * column``."""
    rows = np.arange(n, dtype=float)
    ts = pl.datetime_range(
        pl.datetime(2026, 1, 1, time_zone="UTC"),
        pl.datetime(2026, 1, 1, time_zone="UTC") + pl.duration(seconds=6 * (n - 1)),
        "6s",
        eager=True,
    ).dt.cast_time_unit("us")
    return pl.DataFrame({"ts": ts, **{t: rows + 1000 * j for j, t in enumerate(SPEC.tag_names)}})


def test_role_columns_follow_spec_order() -> None:
    assert (cv_columns(SPEC), mv_columns(SPEC), dv_columns(SPEC)) == ([0, 1], [2], [3])
    np.testing.assert_allclose(spans(SPEC), [45.0, 0.5, 17.0, 40.0])


def test_windows_align_past_and_future_on_sample_t() -> None:
    f = frame(50)
    values, ok = frame_to_array(f, SPEC)
    unit = Normalizer(mean=np.zeros(4), scale=np.ones(4))
    w = make_windows(values, ok, SPEC, window=5, horizon=3, normalizer=unit, ts=frame_ts(f))
    assert w.past.shape == (50 - 8 + 1, 5, 4) and w.future.shape == (43, 3, 4)
    # window i: past rows i..i+4, future rows i+5..i+7; ts is that of the last past row
    np.testing.assert_array_equal(w.past[10, :, 0], np.arange(10, 15))
    np.testing.assert_array_equal(w.future[10, :, 2], 2000 + np.arange(15, 18))
    assert w.ts[10] == frame_ts(f)[14]
    assert w.dropped == 0


def test_windows_touching_a_bad_sample_are_dropped() -> None:
    f = frame(40).with_columns(
        pl.when(pl.int_range(40) == 20).then(None).otherwise(pl.col("Ca")).alias("Ca"),
        (pl.int_range(40) != 30).alias("Tf__ok"),  # a masked sample: bad quality
    )
    values, ok = frame_to_array(f, SPEC)
    assert not ok[20, 1] and np.isnan(values[20, 1])
    assert not ok[30, 3] and np.isnan(values[30, 3])
    unit = Normalizer(mean=np.zeros(4), scale=np.ones(4))
    w = make_windows(values, ok, SPEC, window=4, horizon=2, normalizer=unit)
    assert np.isfinite(w.past).all() and np.isfinite(w.future).all()
    spans_rows = [set(range(int(t) - 3, int(t) + 3)) for t in w.ts]
    assert all(20 not in r and 30 not in r for r in spans_rows)
    assert len(w) + w.dropped == 40 - 6 + 1 and w.dropped == 12


def test_frame_without_a_tag_is_refused_naming_it() -> None:
    with pytest.raises(DataQualityError, match="Tf"):
        frame_to_array(frame(10).drop("Tf"), SPEC)


def test_normalizer_round_trip_and_flat_tags() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal([300.0, 0.9, 290.0, 350.0], [3.0, 0.02, 2.0, 0.5], size=(500, 4))
    values[:, 3] = 350.0  # a DV that never moved in training
    values[10, 0] = np.nan
    norm = Normalizer.fit(values, fallback=0.1 * spans(SPEC))
    assert np.all(norm.scale > 0) and norm.scale[3] == pytest.approx(4.0)
    assert norm.scale[0] == pytest.approx(3.0, rel=0.1)
    x = values[:5]
    np.testing.assert_allclose(norm.denorm(norm.norm(x)), x)
    t = torch.as_tensor(x, dtype=torch.float64)
    np.testing.assert_allclose(norm.denorm(norm.norm(t)).numpy(), x)
    again = Normalizer.from_dict(norm.to_dict())
    np.testing.assert_array_equal(again.scale, norm.scale)
    with pytest.raises(DataQualityError, match=r"\[1\]"):
        Normalizer.fit(np.column_stack([np.ones(5), np.full(5, np.nan)]))


def test_split_by_time_is_contiguous_and_ordered() -> None:
    f = frame(100).reverse()
    train, val, cal = split_by_time(f)
    assert (train.height, val.height, cal.height) == (70, 15, 15)
    assert train["ts"].max() < val["ts"].min() and val["ts"].max() < cal["ts"].min()
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_time(f, (0.5, 0.2))


def test_validation_windows_take_their_past_from_the_split_before_and_forecast_their_own() -> None:
    """A short history's validation split (15 rows here, fewer than window + horizon) still
    holds windows: their past comes from the end of the training split, their targets are the
    validation rows only, every one of them forecast at some step."""
    window, horizon = 8, 5
    train, val, cal = split_with_context(frame(100), (0.7, 0.15, 0.15), window)
    assert train.height == 70 and val.height == cal.height == 15 + window
    norm = Normalizer(np.zeros(4), np.ones(4))
    w = make_windows(*frame_to_array(val, SPEC), SPEC, window, horizon, norm)
    assert len(w) == 15 - horizon + 1  # without the context: 15 - 8 - 5 + 1 = 2
    rows = w.future[:, :, 0]  # column 0 holds the row number
    assert rows.min() == 70 and rows.max() == 84  # the validation rows, all of them, no others
    np.testing.assert_array_equal(w.past[0, :, 0], np.arange(62, 70))  # training's last 8 rows
    c = make_windows(*frame_to_array(cal, SPEC), SPEC, window, horizon, norm)
    assert c.future[:, :, 0].min() == 85 and c.past[0, 0, 0] == 77  # past from validation


def test_a_long_split_is_thinned_to_evenly_spaced_windows_from_its_first_to_its_last() -> None:
    norm = Normalizer(np.zeros(4), np.ones(4))
    w = make_windows(*frame_to_array(frame(1000), SPEC), SPEC, 8, 5, norm)
    few = evenly(w, 100)
    starts = few.past[:, 0, 0]  # column 0 holds the row number
    assert len(few) == 100 and starts[0] == 0 and starts[-1] == len(w) - 1
    assert np.ptp(np.diff(starts)) <= 1  # evenly spaced
    np.testing.assert_array_equal(few.future[:, 0, 0], starts + 8)  # pasts and futures together
    assert evenly(w, len(w)) is w
