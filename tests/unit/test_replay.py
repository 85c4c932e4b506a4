"""Replaying a stored history: every row once, in time order, at the chosen speed, gaps included."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import twin.cli
from connectors.files import ReplaySource
from connectors.source import Gap, pump
from twin.errors import DataQualityError
from twin.spec import PlantSpec, builtin_spec
from twin.store.historian import Historian

T0 = datetime(2026, 1, 1, 23, 0, tzinfo=UTC)  # the history runs over midnight: two day folders


@pytest.fixture
def spec() -> PlantSpec:
    return builtin_spec("cstr")  # tags T, Ca, Tc, Tf; sample period 6 s


def history(root: Path, spec: PlantSpec, n: int = 1200, period_s: float = 6.0) -> Historian:
    """``n`` samples of each spec tag plus an extra tag, every third T sample of bad quality."""
    tags = [*spec.tag_names, "Other"]
    h = Historian(root)
    h.append(
        pl.DataFrame(
            {
                "tag": [t for _ in range(n) for t in tags],
                "ts": [T0 + timedelta(seconds=i * period_s) for i in range(n) for _ in tags],
                "value": [i + j / 10 for i in range(n) for j in range(len(tags))],
                "status": [
                    0x8000_0000 if (t == "T" and i % 3 == 0) else 0 for i in range(n) for t in tags
                ],
            },
            schema={
                "tag": pl.String,
                "ts": pl.Datetime("us", "UTC"),
                "value": pl.Float64,
                "status": pl.UInt32,
            },
        )
    )
    return h


def collect(source: ReplaySource) -> list[pl.DataFrame | Gap]:
    async def run() -> list[pl.DataFrame | Gap]:
        return [item async for item in source.stream()]

    return asyncio.run(run())


def rows_of(items: list[pl.DataFrame | Gap]) -> pl.DataFrame:
    return pl.concat([i for i in items if isinstance(i, pl.DataFrame)])


@pytest.mark.parametrize("window_rows", [200_000, 50])
def test_fast_replay_yields_every_row_once_in_time_order(tmp_path, spec, window_rows) -> None:
    stored = history(tmp_path / "src", spec)
    items = collect(ReplaySource(stored, spec, speed=float("inf"), window_rows=window_rows))
    got = rows_of(items)
    assert got.get_column("ts").is_sorted()
    expected = stored.read(spec.tag_names)  # the extra tag is not the spec's: not replayed
    assert got.sort("tag", "ts").equals(expected)
    assert got.height == 1200 * 4
    if window_rows == 50:  # read in windows, never all at once
        assert len(items) > 10


def test_replay_at_speed_ten_takes_a_tenth_of_the_time(tmp_path, spec) -> None:
    stored = history(tmp_path / "src", spec, n=11, period_s=1.0)  # 10 s of data
    source = ReplaySource(stored, spec, speed=10, batch_period=1.0)
    t = time.perf_counter()
    items = collect(source)
    elapsed = time.perf_counter() - t
    assert 0.5 < elapsed < 3.0
    assert len(items) == 11 and all(b.get_column("ts").n_unique() == 1 for b in items)


def test_recorded_gaps_come_as_markers_where_they_fall(tmp_path, spec) -> None:
    stored = history(tmp_path / "src", spec, n=100)
    g0, g1 = T0 + timedelta(seconds=120), T0 + timedelta(seconds=300)
    stored.record_gap(["T", "Ca"], g0, g1, "server down")
    stored.record_gap(["Other"], g0, g1, "not a tag of the spec")
    items = collect(ReplaySource(stored, spec, speed=0, batch_period=6.0))
    gaps = [(k, i) for k, i in enumerate(items) if isinstance(i, Gap)]
    assert [g for _, g in gaps] == [Gap(("T", "Ca"), g0, g1, "server down")]
    k = gaps[0][0]
    before, after = rows_of(items[:k]), rows_of(items[k + 1 :])
    assert before.get_column("ts").max() < g1 <= after.get_column("ts").min()


def test_pumping_a_replay_gives_the_same_history_and_gaps(tmp_path, spec) -> None:
    stored = history(tmp_path / "src", spec, n=300)
    stored.record_gap(["Tc"], T0 + timedelta(minutes=5), T0 + timedelta(minutes=6), "outage")
    copy = Historian(tmp_path / "copy")
    stats = asyncio.run(pump(ReplaySource(tmp_path / "src", spec, speed=0), copy))
    assert (stats.received, stats.stored, stats.gaps) == (1200, 1200, 1)
    assert copy.read().equals(stored.read(spec.tag_names))  # values, quality and status
    assert copy.gaps().equals(stored.gaps().filter(pl.col("tag") == "Tc"))


def test_shift_to_now_ends_the_replay_now_and_keeps_the_spacing(tmp_path, spec) -> None:
    stored = history(tmp_path / "src", spec, n=50)
    got = rows_of(collect(ReplaySource(stored, spec, speed=0, shift_to_now=True)))
    original = stored.read(spec.tag_names).sort("ts", "tag")
    shift = got.get_column("ts")[0] - original.get_column("ts")[0]
    assert (got.get_column("ts") - original.get_column("ts")).unique().to_list() == [shift]
    assert shift % timedelta(seconds=6) == timedelta(0)  # stays on the sample grid
    assert abs(got.get_column("ts").max() - datetime.now(UTC)) <= timedelta(seconds=6)


def test_start_and_end_select_a_window(tmp_path, spec) -> None:
    stored = history(tmp_path / "src", spec, n=100)
    start, end = T0 + timedelta(seconds=60), T0 + timedelta(seconds=120)
    got = rows_of(collect(ReplaySource(stored, spec, start=start, end=end, speed=0)))
    assert got.get_column("ts").unique().sort().to_list() == [
        start + timedelta(seconds=6 * i) for i in range(10)
    ]
    with pytest.raises(DataQualityError, match="naive"):
        ReplaySource(stored, spec, start=datetime(2026, 1, 1))


def test_an_unreadable_file_in_the_store_is_skipped_and_kept(tmp_path, spec) -> None:
    history(tmp_path / "src", spec, n=20)
    day = next((tmp_path / "src").glob("day=*"))
    (day / "part-broken.parquet").write_bytes(b"PAR1 torn write")
    got = rows_of(collect(ReplaySource(tmp_path / "src", spec, speed=0)))
    assert got.height == 20 * 4
    assert list((tmp_path / "src" / "quarantine").rglob("part-broken.parquet*"))


def test_empty_store_replays_nothing_and_a_missing_one_is_an_error(tmp_path, spec) -> None:
    (tmp_path / "empty").mkdir()
    assert collect(ReplaySource(tmp_path / "empty", spec, speed=0)) == []
    with pytest.raises(DataQualityError, match="no stored history at"):
        ReplaySource(tmp_path / "typo", spec)


def test_cli_replay(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(twin.cli, "COMMAND_MODULES", ["twin.cli.files"])
    history(tmp_path / "src", spec=builtin_spec("cstr"), n=30)
    argv = ["replay", "--spec", "cstr", "--from", str(tmp_path / "src"), "--speed", "0"]
    assert twin.cli.main([*argv, "--historian", str(tmp_path / "out")]) == 0
    assert "120 stored" in capsys.readouterr().out
    assert Historian(tmp_path / "out").read().height == 120
    assert twin.cli.main([*argv, "--historian", str(tmp_path / "src")]) == 2  # into itself
    missing = ["replay", "--spec", "cstr", "--from", str(tmp_path / "nope"), "--speed", "0"]
    assert twin.cli.main([*missing, "--historian", str(tmp_path / "o1")]) == 2
    with pytest.raises(SystemExit):  # a naive --start would be a guess
        twin.cli.main([*argv, "--historian", str(tmp_path / "o2"), "--start", "2026-01-01T00:00"])
