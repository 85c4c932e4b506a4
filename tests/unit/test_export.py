"""Exports and the recommendation log: the documented columns, round trips, torn writes."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from twin.control.export import (
    EXPORT_COLUMNS,
    V1_COLUMNS,
    read_export,
    recommendation_rows,
    write_export,
)
from twin.control.recommendation import ActiveConstraint, MoveRec, Recommendation
from twin.control.recommendation_log import TAIL_BYTES, RecommendationLog
from twin.errors import TwinError
from twin.model.forecast import Forecast

T0 = datetime(2026, 3, 1, 23, 59, 54, tzinfo=UTC)


def make_rec(ts: datetime = T0, *, success: bool = True, tc: float = 300.5) -> Recommendation:
    """A CSTR-like recommendation: two MVs (one without a write node), a 3-step forecast."""
    moves = (
        MoveRec(
            tag="Tc",
            node="nsu=urn:x;s=cstr.Tc",
            write_node="nsu=urn:x;s=cstr.Tc.SP",
            unit="K",
            current=300.0,
            recommended=tc,
            change=tc - 300.0,
            lo=285.0,
            hi=302.0,
            rate_limit=0.5,
            plan=(tc, tc + 0.5, tc + 1.0),
            limits_held=True,
        ),
        MoveRec(
            tag="F",
            node="ns=2;s=F",
            write_node=None,
            unit='L/min, "std"',
            current=1.0,
            recommended=1.0,
            change=0.0,
            lo=0.0,
            hi=2.0,
            rate_limit=0.1,
            plan=(1.0, 1.0, 1.0),
            limits_held=True,
        ),
    )
    ts64 = np.datetime64(ts.replace(tzinfo=None), "us") + np.arange(1, 4) * np.timedelta64(6, "s")
    mean = np.array([[324.5, tc, 1.0], [325.0, tc + 0.5, 1.0], [325.5, tc + 1.0, 1.0]])
    band = np.array([[0.2, 0.0, 0.0], [0.3, 0.0, 0.0], [math.nan, 0.0, 0.0]])
    fc = Forecast(("T", "Tc", "F"), ("K", "K", "L/min"), ts64, mean, mean - band, mean + band)
    return Recommendation(
        ts=ts,
        plant="cstr",
        success=success,
        message="1 Gauss-Newton iteration(s) (least squares), with a comma",
        moves=moves,
        setpoints={"T": 326.0},
        forecast=fc if success else None,
        objective=0.0125 if success else math.nan,
        solve_time_s=0.011,
        iterations=1 if success else 0,
        limits_held=True,
    )


def make_v2_rec() -> Recommendation:
    """The CSTR-like recommendation with the target optimiser's answer: F frozen, Ca given up."""
    rec = make_rec()
    tc, f = rec.moves
    return dataclasses.replace(
        rec,
        moves=(dataclasses.replace(tc, target=301.5), dataclasses.replace(f, frozen=True)),
        targets={"Tc": 301.5, "F": 1.0, "T": 326.0},
        constraints=(
            ActiveConstraint("Tc", "mv_hi", 302.0, "binding"),
            ActiveConstraint("Ca", "op_lo", 0.8, "given up", by=-0.0213, priority=2),
        ),
        cost_rate=-12.5,
        cost_rate_now=-10.25,
        frozen=("F",),
    )


def v1_dict(rec: Recommendation) -> dict:
    """``rec`` as schema version 1 wrote it: none of version 2's keys."""
    d = rec.to_dict()
    for key in ("targets", "constraints", "cost_rate", "cost_rate_now", "frozen"):
        del d[key]
    for m in d["moves"]:
        del m["target"], m["frozen"]
    return {**d, "schema_version": 1}


def test_rows_have_exactly_the_documented_columns_one_per_mv() -> None:
    rows = recommendation_rows(make_rec())
    assert tuple(rows.columns) == EXPORT_COLUMNS
    assert rows["tag"].to_list() == ["Tc", "F"]
    assert rows["change"].to_list() == pytest.approx([0.5, 0.0])
    assert rows["write_node"].to_list() == ["nsu=urn:x;s=cstr.Tc.SP", None]
    assert rows["ts"].dtype == pl.Datetime("us", "UTC")
    assert rows["ts"][0] == T0


@pytest.mark.parametrize("suffix", [".csv", ".json", ".JSON"])
def test_export_round_trips_through_the_file(tmp_path: Path, suffix: str) -> None:
    rec = make_rec()
    out = write_export(rec, tmp_path / "sub" / f"moves{suffix}")
    back = read_export(out)
    assert back.equals(recommendation_rows(rec))
    assert not list(out.parent.glob(".*tmp"))  # the temporary file is gone


def test_csv_is_plain_text_a_spreadsheet_reads(tmp_path: Path) -> None:
    out = write_export(make_rec(), tmp_path / "moves.csv")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(EXPORT_COLUMNS)
    assert lines[1].startswith("2026-03-01T23:59:54.000000+00:00,cstr,Tc,")
    frame = pl.read_csv(out)
    assert frame.columns == list(EXPORT_COLUMNS) and frame.height == 2
    assert frame["recommended"].to_list() == pytest.approx([300.5, 1.0])
    assert frame["unit"][1] == 'L/min, "std"'  # quoted, not split


def test_json_holds_rows_and_the_full_recommendation(tmp_path: Path) -> None:
    rec = make_rec(success=False)
    out = write_export(rec, tmp_path / "moves.json")
    doc = json.loads(out.read_text(encoding="utf-8"))  # strict JSON: no NaN tokens
    assert doc["schema_version"] == 2
    assert doc["columns"] == list(EXPORT_COLUMNS)
    assert [list(r) for r in doc["rows"]] == [list(EXPORT_COLUMNS)] * 2
    assert doc["rows"][0]["ts"] == "2026-03-01T23:59:54+00:00"
    assert doc["recommendation"]["objective"] is None
    again = Recommendation.from_dict(doc["recommendation"])
    assert again.to_dict() == rec.to_dict()
    assert math.isnan(again.objective) and not again.success


def test_recommendation_dict_round_trip_keeps_forecast_and_plan() -> None:
    rec = make_rec()
    again = Recommendation.from_dict(json.loads(json.dumps(rec.to_dict(), allow_nan=False)))
    assert again.ts == rec.ts and again.moves == rec.moves
    assert again.forecast is not None and rec.forecast is not None
    np.testing.assert_array_equal(again.forecast.ts, rec.forecast.ts)
    np.testing.assert_array_equal(again.forecast.mean, rec.forecast.mean)
    np.testing.assert_array_equal(again.forecast.upper, rec.forecast.upper)  # NaN kept
    assert again.move("Tc").plan == (300.5, 301.0, 301.5)
    with pytest.raises(ValueError, match="schema_version"):
        Recommendation.from_dict({**rec.to_dict(), "schema_version": 3})


def test_unknown_suffix_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(TwinError, match=r"\.csv or \.json"):
        write_export(make_rec(), tmp_path / "moves.xlsx")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TwinError, match=r"moves\.txt"):
        read_export(tmp_path / "moves.txt")


def test_log_appends_reads_by_time_and_finds_the_latest(tmp_path: Path) -> None:
    log = RecommendationLog(tmp_path)
    assert log.latest() is None and log.read() == []
    times = [T0 + timedelta(seconds=6 * i) for i in range(4)]  # crosses midnight UTC
    for i, ts in enumerate(times):
        log.append(make_rec(ts, tc=300.0 + 0.1 * i))
    assert [p.name for p in log.files()] == ["2026-03-01.jsonl", "2026-03-02.jsonl"]
    recs = log.read()
    assert [r.ts for r in recs] == times
    assert [r.ts for r in log.read(start=times[1], end=times[3])] == times[1:3]
    latest = log.latest()
    assert latest is not None and latest.ts == times[-1]
    assert latest.move("Tc").recommended == pytest.approx(300.3)
    # the one in force at an instant of the past: the last made at or before it, across days
    assert [log.latest(t).ts for t in times] == times  # type: ignore[union-attr]
    between = log.latest(times[2] + timedelta(seconds=3))
    assert between is not None and between.move("Tc").recommended == pytest.approx(300.2)
    assert log.latest(times[0] - timedelta(seconds=1)) is None


def test_a_torn_last_line_is_skipped_and_sealed_off(tmp_path: Path) -> None:
    log = RecommendationLog(tmp_path)
    path = log.append(make_rec(T0 - timedelta(seconds=6)))
    # a crash half-way through the next write
    line = json.dumps(make_rec(T0).to_dict())
    with path.open("a", encoding="utf-8") as f:
        f.write(line[: len(line) // 2])
    latest = log.latest()
    assert latest is not None and latest.ts == T0 - timedelta(seconds=6)
    assert len(log.read()) == 1
    log.append(make_rec(T0 + timedelta(seconds=0.5)))  # same day file, after the torn bytes
    assert [r.ts for r in log.read()] == [T0 - timedelta(seconds=6), T0 + timedelta(seconds=0.5)]
    assert path.read_bytes().endswith(b"\n")


def test_latest_reads_the_end_of_a_long_day_and_prefers_the_last_of_equal_times(
    tmp_path: Path,
) -> None:
    log = RecommendationLog(tmp_path)
    start = T0 - timedelta(hours=1)
    path = log.append(make_rec(start, tc=299.0))
    while path.stat().st_size <= 2 * TAIL_BYTES:  # longer than the tail latest() reads
        log.append(make_rec(start, tc=299.0))
    log.append(make_rec(start + timedelta(seconds=6), tc=300.1))
    log.append(make_rec(start + timedelta(seconds=6), tc=300.2))  # same time, appended later
    latest = log.latest()
    assert latest is not None and latest.move("Tc").recommended == pytest.approx(300.2)


def test_v2_rows_carry_targets_frozen_costs_and_constraints() -> None:
    rows = recommendation_rows(make_v2_rec())
    assert tuple(rows.columns) == EXPORT_COLUMNS and EXPORT_COLUMNS[: len(V1_COLUMNS)] == V1_COLUMNS
    assert rows["target"].to_list() == [301.5, None]  # no target for F: an empty cell
    assert rows["frozen"].to_list() == [False, True]
    assert rows["cost_rate"].to_list() == [-12.5, -12.5]
    assert rows["cost_rate_now"].to_list() == [-10.25, -10.25]
    # Ca's unit comes from the forecast, Tc's from its move
    assert rows["constraints"][0] == (
        "Tc mv_hi 302 K binding; Ca op_lo 0.8 given up by 0.0213 (priority 2)"
    )
    plain = recommendation_rows(make_rec())  # no target optimiser: empty, not NaN
    assert plain["target"].null_count() == 2 and plain["cost_rate"].null_count() == 2
    assert plain["constraints"].to_list() == ["", ""]


@pytest.mark.parametrize("rec", [make_v2_rec(), make_rec()], ids=["v2", "no-targets"])
@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_v2_export_round_trips_with_targets_constraints_and_frozen(
    tmp_path: Path, suffix: str, rec: Recommendation
) -> None:
    out = write_export(rec, tmp_path / f"moves{suffix}")
    back = read_export(out)
    assert back.equals(recommendation_rows(rec)), back
    if suffix == ".json":
        again = Recommendation.from_dict(json.loads(out.read_text())["recommendation"])
        assert again.to_dict() == rec.to_dict()
        if rec.frozen:  # the version-2 one: each new field back as it was
            assert again.targets == rec.targets and again.constraints == rec.constraints
            assert again.frozen == ("F",) and (again.cost_rate, again.cost_rate_now) == (
                -12.5,
                -10.25,
            )
            assert again.move("F").frozen and again.move("Tc").target == 301.5


def test_version_1_exports_and_records_still_read(tmp_path: Path) -> None:
    rec = make_rec()
    # a version-1 CSV: its 15 columns only
    v1_rows = recommendation_rows(rec).select(V1_COLUMNS)
    v1_rows.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00")).write_csv(
        tmp_path / "old.csv"
    )
    # a version-1 JSON: schema_version 1, rows without the new keys, a version-1 record
    rows = [{**r, "ts": r["ts"].isoformat()} for r in v1_rows.iter_rows(named=True)]
    doc = {
        "schema_version": 1,
        "columns": list(V1_COLUMNS),
        "rows": rows,
        "recommendation": v1_dict(rec),
    }
    (tmp_path / "old.json").write_text(json.dumps(doc), encoding="utf-8")
    for name in ("old.csv", "old.json"):
        back = read_export(tmp_path / name)
        assert tuple(back.columns) == EXPORT_COLUMNS, name
        assert back.select(V1_COLUMNS).equals(v1_rows), name
        assert back["frozen"].to_list() == [False, False], name
        for col in ("target", "cost_rate", "cost_rate_now", "constraints"):
            assert back[col].null_count() == 2, (name, col)
    old = Recommendation.from_dict(v1_dict(make_v2_rec()))
    assert old.targets == {} and old.constraints == () and old.frozen == ()
    assert math.isnan(old.cost_rate) and math.isnan(old.cost_rate_now)
    assert not old.move("F").frozen and math.isnan(old.move("Tc").target)
    assert old.move("Tc").recommended == rec.move("Tc").recommended


def test_an_export_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "moves.csv"
    recommendation_rows(make_rec()).drop("message").write_csv(path)
    with pytest.raises(TwinError, match="not those of an export"):
        read_export(path)
