"""Frames over report-by-exception data: a still value carried while its session was alive.

A server notifies a value only when it changes; the collector stores liveness marks (rows of
``__alive__``) saying when its session was alive. These tests build such stores by hand, as the
collector writes them, and check what an operator sees in the frame: a still MV valid for as
long as the session lived, ``gap`` only where the collector was cut off, ``missing`` where no
collector ran or a tag never had a value, bad samples still bad, and stores without marks read
exactly as before.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from twin.spec import parse_spec
from twin.store.frames import make_frame, read_frame
from twin.store.historian import Historian
from twin.store.liveness import ALIVE, alive_intervals, alive_tag, mark_rows

SPEC = parse_spec(
    """
[plant]
name = "still"
sample_period_s = 1.0

[[tags]]
name = "T"
node = "ns=2;s=T"
unit = "K"
role = "cv"
lo = 0.0
hi = 500.0
setpoint = 300.0
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


def changing(tag: str, start: float, end: float, every: float = 1.0) -> pl.DataFrame:
    """A tag notified every ``every`` s over ``[start, end)`` (value = seconds)."""
    n = round((end - start) / every)
    ts = [at(start + i * every) for i in range(n)]
    return pl.DataFrame({"tag": [tag] * n, "ts": ts, "value": [float(start + i) for i in range(n)]})


def sample(tag: str, seconds: float, value: float, status: int = 0) -> pl.DataFrame:
    return pl.DataFrame({"tag": [tag], "ts": [at(seconds)], "value": [value], "status": [status]})


def session(
    since: float,
    until: float,
    every: float = 1.0,
    tags: list[str] | None = None,
    first: float | None = None,
) -> pl.DataFrame:
    """The liveness marks a collector writes for a session alive over ``[since, until]``.

    One mark every ``every`` s, from ``first`` (default: ``since``) on.
    """
    begin = since if first is None else first
    n = int((until - begin) / every)
    return pl.concat(mark_rows(at(begin + (i + 1) * every), at(since), tags) for i in range(n))


def rows(*parts: pl.DataFrame) -> pl.DataFrame:
    cols = {"tag": pl.String(), "ts": pl.Datetime("us", "UTC"), "value": pl.Float64()}
    cols["status"] = pl.UInt32()
    return pl.concat(
        [p.with_columns(status=pl.lit(0)) if "status" not in p.columns else p for p in parts],
        how="diagonal_relaxed",
    ).cast(cols)  # type: ignore[arg-type]


def states(frame: pl.DataFrame, tag: str) -> list[str]:
    return frame.get_column(f"{tag}__state").cast(pl.String).to_list()


def test_a_still_mv_is_valid_while_its_session_lives_and_missing_without_marks() -> None:
    data = rows(changing("T", 0, 120), sample("F", 0.2, 4.0), session(0.0, 120.0))
    frame = make_frame(data, SPEC, at(1), at(120))
    assert set(states(frame, "F")) == {"good"}
    assert (frame["F"] == 4.0).all() and frame["F__ok"].all()
    assert set(states(frame, "Never")) == {"missing"}  # a tag with no value stays missing
    # a store without marks (written before, or imported) reads as it always did
    old = make_frame(data.filter(pl.col("tag") != ALIVE), SPEC, at(1), at(120))
    assert states(old, "F")[:3] == ["good"] * 3 and set(states(old, "F")[4:]) == {"missing"}


def test_an_outage_is_a_gap_and_the_next_session_confirms_the_still_value() -> None:
    data = rows(
        changing("T", 0, 50),
        changing("T", 70, 120),
        sample("F", 0.2, 4.0),  # re-notified on reconnect with its old timestamp: stored once
        session(0.0, 50.0),
        session(70.0, 120.0),
    )
    gaps = pl.DataFrame(
        {"tag": ["T", "F", "Never"], "start": [at(50)] * 3, "end": [at(70)] * 3},
        schema={
            "tag": pl.String(),
            "start": pl.Datetime("us", "UTC"),
            "end": pl.Datetime("us", "UTC"),
        },
    )
    frame = make_frame(data, SPEC, at(1), at(120), gaps=gaps)
    f = states(frame, "F")
    assert set(f[:49]) == {"good"}
    assert set(f[49:69]) == {"gap"}  # 50 .. 69: the collector was cut off
    assert set(f[69:]) == {"good"}  # 70 on: the new session reported the value anew
    assert set(states(frame, "T")[49:69]) == {"gap"}


def test_no_collector_running_is_missing_not_gap() -> None:
    data = rows(changing("T", 0, 40), sample("F", 0.2, 4.0), session(0.0, 40.0))
    frame = make_frame(data, SPEC, at(1), at(100))
    f = states(frame, "F")
    max_gap = 3  # periods: the last mark plus max_gap still counts (marks come every second)
    assert set(f[: 39 + max_gap]) == {"good"}
    assert set(f[39 + max_gap + 1 :]) == {"missing"}
    assert "gap" not in f


def test_a_bad_sample_stays_bad_while_the_session_lives() -> None:
    data = rows(
        changing("T", 0, 60),
        sample("F", 0.2, 4.0),
        sample("F", 10.5, float("nan"), status=0x808C0000),  # BadSensorFailure, sent once
        sample("F", 40.5, 5.0),
        session(0.0, 60.0),
    )
    frame = make_frame(data, SPEC, at(1), at(60))
    f = states(frame, "F")
    assert set(f[:10]) == {"good"} and set(f[10:40]) == {"bad"} and set(f[40:]) == {"good"}
    assert frame["F"][10:40].is_null().all() and frame["F"][-1] == 5.0


def test_marks_of_some_tags_cover_only_those() -> None:
    data = rows(changing("T", 0, 60), sample("F", 0.2, 4.0), sample("Never", 0.2, 0.5))
    data = rows(data, session(0.0, 60.0, tags=["T", "F"]))  # the server refused Never
    frame = make_frame(data, SPEC, at(1), at(60))
    assert set(states(frame, "F")) == {"good"}
    assert states(frame, "Never")[:3] == ["good"] * 3
    assert set(states(frame, "Never")[4:]) == {"missing"}


def test_intervals_merge_the_marks_of_one_session() -> None:
    marks = rows(session(0.0, 30.0), session(40.0, 50.0, tags=["F"]))
    got = alive_intervals(marks, ["T", "F"]).sort("tag", "ts")
    assert got.rows() == [
        ("F", at(0), at(30)),
        ("F", at(40), at(50)),
        ("T", at(0), at(30)),
    ]
    assert alive_tag("F") == "__alive__:F"


def test_a_store_carries_a_value_set_days_before_the_window(tmp_path: Path) -> None:
    hist = Historian(tmp_path / "hist")
    since = -3 * 86400.0  # the session (and the MV's only notification) three days back
    hist.append(rows(sample("F", since, 4.0), session(since, since + 1)))
    hist.append(rows(changing("T", 0, 60), session(since, 60.0, first=-1.0)))
    frame = read_frame(hist, SPEC, at(10), at(60))
    assert set(states(frame, "F")) == {"good"} and (frame["F"] == 4.0).all()
    assert set(states(frame, "T")) == {"good"}
    # liveness marks are no tags: a read of the spec's tags never returns them
    assert set(hist.read(SPEC.tag_names)["tag"].unique()) == {"T", "F"}


@pytest.mark.parametrize("max_gap", [None, 5.0])
def test_a_store_without_marks_reads_as_before(tmp_path: Path, max_gap: float | None) -> None:
    hist = Historian(tmp_path / "hist")
    hist.append(rows(changing("T", 0, 30), changing("T", 45, 60), sample("F", 0.2, 4.0)))
    hist.record_gap(["T", "F"], at(30), at(40), "server lost")
    frame = read_frame(hist, SPEC, at(10), at(60), max_gap)
    lo = at(10) - timedelta(seconds=max_gap or 3.0)
    expected = make_frame(
        hist.read(SPEC.tag_names, lo, at(60)), SPEC, at(10), at(60), max_gap, gaps=hist.gaps()
    )
    assert frame.equals(expected)
    assert frame.equals(hist.frame(SPEC, at(10), at(60), max_gap))
    assert set(states(frame, "F")) == {"missing", "gap"}  # carried max_gap at most, as before
    assert set(states(frame, "T")[20:30]) == {"gap"}
