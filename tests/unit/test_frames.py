"""Regular frames: a fixed grid, bounded carry-forward, and every kind of missing data marked."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from twin.errors import DataQualityError
from twin.model.dataset import frame_to_array
from twin.spec import parse_spec
from twin.store.frames import FRAME_STATES, frame_report, make_frame
from twin.store.historian import Historian
from twin.store.schema import SCHEMA

SPEC = parse_spec(
    """
[plant]
name = "demo"
sample_period_s = 10.0

[[tags]]
name = "T"
node = "ns=2;s=T"
unit = "K"
role = "cv"
lo = 0.0
hi = 100.0
setpoint = 50.0
weight = 1.0

[[tags]]
name = "F"
node = "ns=2;s=F"
unit = "kg/s"
role = "mv"
lo = 0.0
hi = 10.0
rate_limit = 1.0
write_node = "ns=2;s=F.SP"

[[tags]]
name = "Never"
node = "ns=2;s=Never"
unit = "-"
role = "dv"
lo = 0.0
hi = 1.0
"""
)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def long(samples: list[tuple[str, float, float | None, str]]) -> pl.DataFrame:
    """Long rows from (tag, seconds after T0, value, quality)."""
    return pl.DataFrame(
        [(tag, at(s), v, q) for tag, s, v, q in samples],
        schema={"tag": pl.String, "ts": SCHEMA["ts"], "value": pl.Float64, "quality": pl.String},
        orient="row",
    )


def col(frame: pl.DataFrame, name: str) -> list:
    return frame.get_column(name).to_list()


def test_grid_is_regular_on_the_sample_period_with_spec_columns() -> None:
    frame = make_frame(long([("T", 0, 1.0, "good")]), SPEC, T0, at(100))
    assert col(frame, "ts") == [at(10 * k) for k in range(10)]  # [start, end)
    assert frame.columns[:4] == ["ts", "T", "F", "Never"]
    assert {c for c in frame.columns if c.endswith("__ok")} == {"T__ok", "F__ok", "Never__ok"}
    assert frame.schema["T__state"] == pl.Enum(FRAME_STATES)


def test_values_are_carried_forward_up_to_max_gap_then_missing() -> None:
    data = long([("T", -5, 1.0, "good"), ("T", 12, 2.0, "good")])
    frame = make_frame(data, SPEC, T0, at(80), max_gap=30)
    # grid 0..70: 0 (from -5), 10 (from -5), 20..40 (from 12: 8..28 s old), 50 (38 s old: too old)
    assert col(frame, "T") == [1.0, 1.0, 2.0, 2.0, 2.0, None, None, None]
    assert col(frame, "T__ok") == [True] * 5 + [False] * 3
    assert col(frame, "T__state")[5:] == ["missing"] * 3
    unlimited = make_frame(data, SPEC, T0, at(80), max_gap=math.inf)
    assert col(unlimited, "T")[5:] == [2.0] * 3


def test_default_max_gap_is_three_sample_periods() -> None:
    frame = make_frame(long([("T", 0, 5.0, "good")]), SPEC, T0, at(60))
    assert col(frame, "T__ok") == [True, True, True, True, False, False]


def test_a_bad_sample_masks_until_the_next_good_one() -> None:
    data = long(
        [("T", 0, 1.0, "good"), ("T", 15, 99.0, "bad"), ("T", 35, 3.0, "good"), ("F", 0, 7, "good")]
    )
    frame = make_frame(data, SPEC, T0, at(50), max_gap=100)
    assert col(frame, "T") == [1.0, 1.0, None, None, 3.0]
    assert col(frame, "T__state") == ["good", "good", "bad", "bad", "good"]
    assert col(frame, "F") == [7.0] * 5  # other tags unaffected


def test_nan_and_status_only_input_are_masked_too() -> None:
    data = pl.DataFrame(
        {
            "tag": ["T", "T", "T"],
            "ts": [at(0), at(10), at(20)],
            "value": [1.0, math.nan, 3.0],
            "status": [0, 0, 0x8031_0000],  # BadNoCommunication
        },
        schema_overrides={"ts": SCHEMA["ts"]},
    )
    frame = make_frame(data, SPEC, T0, at(30))
    assert col(frame, "T") == [1.0, None, None]
    assert col(frame, "T__state") == ["good", "bad", "bad"]


def test_uncertain_values_are_kept_and_flagged() -> None:
    frame = make_frame(long([("T", 0, 4.0, "uncertain")]), SPEC, T0, at(20))
    assert col(frame, "T") == [4.0, 4.0]
    assert col(frame, "T__ok") == [True, True]
    assert col(frame, "T__state") == ["uncertain", "uncertain"]


def test_recorded_gap_shows_missing_and_nothing_is_carried_across_it() -> None:
    data = long([("T", 0, 1.0, "good"), ("T", 25, 5.0, "good"), ("F", 0, 2.0, "good")])
    gaps = pl.DataFrame(
        {"tag": ["T", "T"], "start": [at(8), at(18)], "end": [at(22), at(31)], "reason": ["", ""]},
        schema_overrides={"start": SCHEMA["ts"], "end": SCHEMA["ts"]},
    )
    frame = make_frame(data, SPEC, T0, at(60), max_gap=60, gaps=gaps)
    # overlapping outages merge to [8, 31): grid 10, 20, 30 are gap, although 1.0 and 5.0 would
    # carry; at 40 the latest sample (25) was taken during the outage: missing, not carried
    assert col(frame, "T__state") == ["good", "gap", "gap", "gap", "missing", "missing"]
    assert col(frame, "T") == [1.0, None, None, None, None, None]
    assert col(frame, "F") == [2.0] * 6  # the outage was T's only


def test_spec_tag_absent_from_the_data_is_an_all_null_column() -> None:
    frame = make_frame(long([("T", 0, 1.0, "good"), ("Other", 0, 3.0, "good")]), SPEC, T0, at(30))
    assert col(frame, "Never") == [None] * 3
    assert col(frame, "Never__ok") == [False] * 3
    assert col(frame, "Never__state") == ["missing"] * 3
    assert "Other" not in frame.columns


def test_bad_arguments_give_clear_errors() -> None:
    data = long([("T", 0, 1.0, "good")])
    with pytest.raises(ValueError, match="max_gap must be > 0"):
        make_frame(data, SPEC, T0, at(30), max_gap=0)
    with pytest.raises(DataQualityError, match="start must be time-zone aware"):
        make_frame(data, SPEC, datetime(2026, 3, 1), at(30))
    with pytest.raises(DataQualityError, match=r"lacks columns \['value'\]"):
        make_frame(data.drop("value"), SPEC, T0, at(30))
    empty = make_frame(data, SPEC, at(30), at(30))
    assert empty.is_empty() and empty.columns[:2] == ["ts", "T"]


def test_report_gives_fraction_and_longest_run_missing() -> None:
    data = long([("T", 0, 1.0, "good"), ("T", 20, 2.0, "bad"), ("T", 50, 3.0, "uncertain")])
    frame = make_frame(data, SPEC, T0, at(100), max_gap=25)
    # T: good good bad bad bad uncertain uncertain uncertain missing missing
    report = frame_report(frame).row(0, named=True)
    assert report["tag"] == "T"
    assert report["missing"] == 5 and report["missing_fraction"] == pytest.approx(0.5)
    assert report["longest_missing"] == 3 and report["longest_missing_s"] == pytest.approx(30.0)
    assert (report["bad"], report["uncertain"], report["gap"]) == (3, 3, 0)
    never = frame_report(frame).filter(pl.col("tag") == "Never").row(0, named=True)
    assert never["missing_fraction"] == 1.0 and never["longest_missing"] == 10


def test_historian_frame_reaches_back_for_the_first_value(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    h.append(long([("T", -20, 1.0, "good"), ("T", 30, 2.0, "good"), ("F", -5, 3.0, "good")]))
    h.record_gap(["F"], at(10), at(20), "server restart")
    frame = h.frame(SPEC, T0, at(50))
    assert col(frame, "T") == [1.0, 1.0, None, 2.0, 2.0]  # 3-period default: -20 reaches 10
    assert col(frame, "F__state") == ["good", "gap", "missing", "missing", "missing"]
    # the frame feeds the model's data pipeline as is
    values, ok = frame_to_array(frame, SPEC)
    assert ok[:, 0].tolist() == [True, True, False, True, True]
    assert np.isnan(values[2, 0]) and values[3, 0] == 2.0
    assert not ok[:, 2].any()
