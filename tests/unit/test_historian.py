"""The historian: what goes in comes back once, in Hive-partitioned Parquet any reader can open."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.errors import DataQualityError
from twin.store.historian import Historian
from twin.store.recovery import STALE_S
from twin.store.schema import SCHEMA, quality_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def rows(
    tags: list[str], n: int, start: datetime = T0, period_s: float = 1.0, offset: float = 0.0
) -> pl.DataFrame:
    """``n`` samples per tag, value = tag index * 1000 + sample index + offset."""
    return pl.DataFrame(
        {
            "tag": [t for t in tags for _ in range(n)],
            "ts": [start + timedelta(seconds=i * period_s) for _ in tags for i in range(n)],
            "value": [j * 1000.0 + i + offset for j in range(len(tags)) for i in range(n)],
        },
        schema={"tag": pl.String, "ts": SCHEMA["ts"], "value": pl.Float64},
    )


def parquet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("day=*/*.parquet"))


def duck_count(root: Path) -> int:
    sql = f"select count(*) from read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
    ((count,),) = duckdb.sql(sql).fetchall()
    return int(count)


# --- writing and reading back --------------------------------------------------------------


def test_round_trip_keeps_every_row_and_the_schema(tmp_path: Path) -> None:
    h = Historian(tmp_path / "store")
    data = rows(["T", "Ca", "Tc"], 50).with_columns(
        status=pl.Series([0, 0x4000_0000, 0x8034_0000] * 50, dtype=pl.UInt32)
    )
    assert h.append(data) == 150
    back = h.read()
    assert back.schema == pl.Schema(SCHEMA)
    assert back.height == 150
    expected = data.sort("tag", "ts")
    assert back.select("tag", "ts", "value", "status").equals(
        expected.select([*back.columns[:3], "status"])
    )
    # quality follows the status code's severity bits; status is kept raw
    assert back.group_by("quality").len().sort("quality").to_dicts() == [
        {"quality": "good", "len": 50},
        {"quality": "uncertain", "len": 50},
        {"quality": "bad", "len": 50},
    ]


def test_quality_of_reads_opc_ua_severity_bits() -> None:
    assert quality_of(0) == "good"
    assert quality_of(0x4093_0000) == "uncertain"  # UncertainSubNormal
    assert quality_of(0x8031_0000) == "bad"  # BadNoCommunication
    assert quality_of(0xC000_0000) == "bad"


def test_quality_given_without_status_is_kept_and_never_upgraded(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    data = rows(["A"], 3).with_columns(quality=pl.Series(["good", "uncertain", "bad"]))
    h.append(data)
    assert h.read().get_column("quality").to_list() == ["good", "uncertain", "bad"]
    assert h.read().get_column("status").to_list() == [0, 0x4000_0000, 0x8000_0000]
    # a good quality with a bad status code is stored as bad
    worse = rows(["B"], 1).with_columns(quality=pl.lit("good"), status=pl.lit(0x8031_0000))
    h.append(worse)
    assert h.read(["B"]).get_column("quality").to_list() == ["bad"]


def test_days_are_hive_partitions_split_at_utc_midnight(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    # 23:59:58 .. 00:00:02 in UTC, given in UTC+02:00: converted, then split at UTC midnight
    plus2 = timezone(timedelta(hours=2))
    start = datetime(2026, 3, 2, 1, 59, 58, tzinfo=plus2)
    data = rows(["T"], 5, start=start).with_columns(pl.col("ts").dt.convert_time_zone("Etc/GMT-2"))
    assert h.append(data) == 5
    folders = sorted(p.name for p in tmp_path.glob("day=*"))
    assert folders == ["day=2026-03-01", "day=2026-03-02"]
    by_day = duckdb.sql(
        f"select day, count(*) as n, min(ts) as first from read_parquet('{tmp_path}/**/*.parquet', "
        "hive_partitioning=true) group by day order by day"
    ).fetchall()
    assert [(d, n) for d, n, _ in by_day] == [(date(2026, 3, 1), 2), (date(2026, 3, 2), 3)]
    assert by_day[1][2] == datetime(2026, 3, 2, tzinfo=UTC)
    assert h.read().get_column("ts").to_list()[2] == datetime(2026, 3, 2, tzinfo=UTC)


def test_files_are_sorted_zstd_parquet(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    h.append(rows(["b", "a", "c"], 30).sample(fraction=1.0, shuffle=True, seed=3))
    (path,) = parquet_files(tmp_path)
    assert path.name.startswith("part-")
    stored = pl.read_parquet(path)
    assert stored.equals(stored.sort("tag", "ts"))
    codecs = duckdb.sql(f"select distinct compression from parquet_metadata('{path}')").fetchall()
    assert codecs == [("ZSTD",)]


def test_out_of_order_batch_reads_back_in_order(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    h.append(rows(["T"], 20, offset=0.5))
    later = rows(["T"], 20, start=T0 + timedelta(seconds=20))
    h.append(later.reverse())
    back = h.read(["T"])
    assert back.height == 40
    assert back.get_column("ts").is_sorted()
    assert back.get_column("value").to_list()[:3] == [0.5, 1.5, 2.5]
    assert back.get_column("value").to_list()[20:23] == [0.0, 1.0, 2.0]


# --- duplicates ------------------------------------------------------------------------------


def test_duplicates_are_stored_once_within_and_across_appends(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    batch = rows(["T", "Ca"], 10)
    assert h.append(pl.concat([batch, batch.head(5)])) == 20  # repeated within the batch
    assert h.append(batch) == 0  # all stored already
    # a reconnect re-sends the last 3 samples per tag with 3 new ones
    resent = pl.concat([rows(["T", "Ca"], 6, start=T0 + timedelta(seconds=7))])
    assert h.append(resent) == 6
    # a new process knows nothing in memory: the files decide
    again = Historian(tmp_path)
    assert again.append(resent) == 0
    assert again.append(rows(["T"], 2, start=T0 - timedelta(seconds=2))) == 2  # backfill
    assert again.read().height == 2 * 13 + 2
    assert duck_count(tmp_path) == 2 * 13 + 2
    # the first stored value wins
    assert again.read(["T"], T0, T0 + timedelta(seconds=1)).get_column("value").to_list() == [0.0]


def test_duplicates_stay_single_across_compaction(tmp_path: Path) -> None:
    h = Historian(tmp_path, auto_compact_files=0)
    for k in range(6):
        h.append(rows(["T", "Ca"], 10, start=T0 + timedelta(seconds=5 * k)))
    assert len(parquet_files(tmp_path)) == 6
    h.compact()
    assert len(parquet_files(tmp_path)) == 1
    assert Historian(tmp_path).append(rows(["T", "Ca"], 10, start=T0 + timedelta(seconds=20))) == 0
    assert h.read().height == 2 * 35
    assert duck_count(tmp_path) == 2 * 35
    assert pl.read_parquet(parquet_files(tmp_path)[0]).equals(h.read())


def test_small_files_are_compacted_automatically(tmp_path: Path) -> None:
    h = Historian(tmp_path, auto_compact_files=8)
    for k in range(20):  # a collector flushing every few seconds
        h.append(rows(["T", "Ca", "Tc"], 3, start=T0 + timedelta(seconds=3 * k)))
    assert len(parquet_files(tmp_path)) < 8
    assert h.read().height == 3 * 60
    assert h.read().get_column("ts").n_unique() == 60


def test_duplicate_files_are_read_once(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    h.append(rows(["T"], 10))
    (path,) = parquet_files(tmp_path)
    copy = path.with_name("part-copy.parquet")  # e.g. two writers, or a restore gone wrong
    copy.write_bytes(path.read_bytes())
    assert Historian(tmp_path).read().height == 10


def test_crash_mid_compaction_leaves_no_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Historian(tmp_path, auto_compact_files=0)
    for k in range(3):
        h.append(rows(["T"], 10, start=T0 + timedelta(seconds=10 * k)))
    inputs = parquet_files(tmp_path)
    real_unlink = Path.unlink

    def crash_on_input(self: Path, missing_ok: bool = False) -> None:
        if self in inputs:
            raise KeyboardInterrupt("killed while removing compacted inputs")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", crash_on_input)
    with pytest.raises(KeyboardInterrupt):
        h.compact()
    monkeypatch.undo()
    assert len(parquet_files(tmp_path)) == 4  # merged file + all inputs still there
    assert h.read().height == 30  # readers deduplicate meanwhile
    reopened = Historian(tmp_path)  # finishes the compaction from its journal
    assert len(parquet_files(tmp_path)) == 1
    assert not list(tmp_path.glob("day=*/*.journal"))
    assert duck_count(tmp_path) == 30
    assert reopened.read().height == 30


# --- bad input -------------------------------------------------------------------------------


def test_nan_and_inf_are_stored_as_null_with_bad_quality(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Historian(tmp_path)
    data = rows(["T"], 4).with_columns(value=pl.Series([1.0, math.nan, math.inf, -math.inf]))
    with caplog.at_level(logging.WARNING, logger="twin.store.schema"):
        assert h.append(data) == 4
    back = h.read()
    assert back.get_column("value").to_list() == [1.0, None, None, None]
    assert back.get_column("quality").to_list() == ["good", "bad", "bad", "bad"]
    assert "3 NaN or infinite" in caplog.text


def test_naive_timestamps_are_refused_naming_the_column(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    naive = rows(["T"], 3).with_columns(pl.col("ts").dt.replace_time_zone(None))
    with pytest.raises(DataQualityError, match=r"'ts'.*naive"):
        h.append(naive)
    with pytest.raises(DataQualityError, match="start must be time-zone aware"):
        h.read(start=datetime(2026, 3, 1))
    assert h.read().is_empty()


def test_unknown_missing_and_mistyped_columns_are_refused(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    good = rows(["T"], 3)
    with pytest.raises(DataQualityError, match=r"unknown columns \['unit', 'node'\]"):
        h.append(good.with_columns(unit=pl.lit("K"), node=pl.lit("ns=2;s=T")))
    with pytest.raises(DataQualityError, match=r"missing \['value'\]"):
        h.append(good.drop("value"))
    with pytest.raises(DataQualityError, match="'value' must be numeric"):
        h.append(good.with_columns(pl.col("value").cast(pl.String)))
    with pytest.raises(DataQualityError, match="'quality' must be one of"):
        h.append(good.with_columns(quality=pl.lit("great")))
    with pytest.raises(DataQualityError, match="32-bit OPC-UA status"):
        h.append(good.with_columns(status=pl.lit(-1)))
    assert h.read().is_empty()  # nothing half-written


def test_rows_without_tag_or_timestamp_are_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Historian(tmp_path)
    data = pl.DataFrame(
        {"tag": ["T", None, "", "T"], "ts": [T0, T0, T0, None], "value": [1.0, 2.0, 3.0, 4.0]},
        schema={"tag": pl.String, "ts": SCHEMA["ts"], "value": pl.Float64},
    )
    with caplog.at_level(logging.WARNING, logger="twin.store.schema"):
        assert h.append(data) == 1
    assert "dropping 3 rows" in caplog.text


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_unreadable_file_is_quarantined_and_the_rest_reads(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = Historian(tmp_path)
    h.append(rows(["T", "Ca"], 20))
    h.append(rows(["T", "Ca"], 20, start=T0 + timedelta(seconds=20)))
    victim = parquet_files(tmp_path)[0]
    content = victim.read_bytes()
    damaged = {
        "garbage": b"this is not parquet at all" * 10,
        "truncated": content[: len(content) // 2],
        "empty": b"",
    }[damage]
    victim.write_bytes(damaged)
    with caplog.at_level(logging.WARNING, logger="twin.store.recovery"):
        back = Historian(tmp_path).read()
    assert back.height == 40  # the other file's rows
    assert victim.name in caplog.text
    moved = tmp_path / "quarantine" / victim.parent.name / (victim.name + ".corrupt")
    assert moved.read_bytes() == damaged  # kept, byte for byte
    assert not victim.exists()
    assert duck_count(tmp_path) == 40  # DuckDB's glob no longer meets it either


def test_damaged_data_pages_are_quarantined_on_read(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    h.append(rows(["T"], 2000))
    h.append(rows(["T"], 10, start=T0 + timedelta(hours=1)))
    victim = parquet_files(tmp_path)[0]
    content = bytearray(victim.read_bytes())
    for i in range(8, len(content) // 2):  # footer intact, column chunks scrambled
        content[i] = (content[i] * 7 + 13) % 256
    victim.write_bytes(bytes(content))
    back = Historian(tmp_path).read()
    assert back.height == 10
    assert (tmp_path / "quarantine" / victim.parent.name / (victim.name + ".corrupt")).exists()


def test_compaction_quarantines_a_damaged_input_and_keeps_the_rest(tmp_path: Path) -> None:
    h = Historian(tmp_path, auto_compact_files=3)
    h.append(rows(["T"], 2000))
    victim = parquet_files(tmp_path)[0]
    content = bytearray(victim.read_bytes())
    for i in range(8, len(content) // 2):
        content[i] = (content[i] * 7 + 13) % 256
    victim.write_bytes(bytes(content))
    for k in range(1, 4):  # the third file triggers a compaction that meets the damaged one
        assert h.append(rows(["T"], 10, start=T0 + timedelta(hours=k))) == 10
    assert (tmp_path / "quarantine" / victim.parent.name / (victim.name + ".corrupt")).exists()
    assert h.read().height == 30


def test_leftover_tmp_files_are_ignored_and_stale_ones_removed(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    h.append(rows(["T"], 5))
    folder = parquet_files(tmp_path)[0].parent
    fresh = folder / "part-fresh.parquet.tmp"
    stale = folder / "part-stale.parquet.tmp"
    for p in (fresh, stale):
        p.write_bytes(b"PAR1 half a file")
    old = time.time() - STALE_S - 60
    os.utime(stale, (old, old))
    reopened = Historian(tmp_path)
    assert reopened.read().height == 5
    assert duck_count(tmp_path) == 5
    assert fresh.exists()  # may belong to a writer busy right now
    assert not stale.exists()


def test_writer_killed_mid_flush_loses_at_most_its_buffer(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, polars as pl
        from datetime import datetime, timedelta, UTC
        from twin.store.historian import Historian
        h = Historian(sys.argv[1], auto_compact_files=4)
        t0 = datetime(2026, 3, 1, tzinfo=UTC)
        for k in range(100000):
            ts = [t0 + timedelta(seconds=k * 500 + i) for i in range(500)]
            h.append(pl.DataFrame({"tag": ["T"] * 500, "ts": ts, "value": [float(k)] * 500}))
            print(k, flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    done = 0
    for line in proc.stdout:  # let it flush and compact a while, then kill it mid-write
        done = int(line) + 1
        if done >= 30:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    back = Historian(tmp_path).read()
    assert back.height % 500 == 0  # whole batches only: no torn file
    assert back.height >= done * 500  # every acknowledged append is there
    assert back.get_column("ts").n_unique() == back.height
    assert duck_count(tmp_path) == back.height


# --- reading selectively ---------------------------------------------------------------------


def test_tag_and_time_predicates_return_exactly_what_was_asked(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    h.append(rows(["T", "Ca", "Tc"], 48, period_s=3600.0))  # two days, hourly
    got = h.read(["Ca"], T0 + timedelta(hours=13), T0 + timedelta(hours=15))
    assert got.get_column("tag").to_list() == ["Ca", "Ca"]
    assert got.get_column("ts").to_list() == [T0 + timedelta(hours=13), T0 + timedelta(hours=14)]
    assert h.read(["nope"]).is_empty()  # an unknown tag is just absent
    assert h.read(start=T0, end=T0).is_empty()
    assert h.scan(["T"], end=T0 + timedelta(hours=1)).collect().height == 1


def test_reads_open_only_the_days_in_range(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    h.append(rows(["T"], 72, period_s=3600.0))  # 2026-03-01 12:00 .. 03-04 11:00
    other_day = tmp_path / "day=2026-03-03" / "part-broken.parquet"
    other_day.write_bytes(b"garbage")
    got = Historian(tmp_path).read(
        ["T"], datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
    )
    assert got.height == 24
    assert other_day.exists()  # never opened, so never quarantined
    plan = h.scan(["T"], T0, T0 + timedelta(hours=2)).explain()
    assert "day=2026-03-02" not in plan and "day=2026-03-01" in plan


def test_reads_skip_files_whose_time_range_is_outside(tmp_path: Path) -> None:
    h = Historian(tmp_path, auto_compact_files=0)
    h.append(rows(["T"], 2000))
    h.append(rows(["T"], 10, start=T0 + timedelta(hours=5)))
    early = parquet_files(tmp_path)[0]  # names sort by write time
    assert pl.read_parquet(early).height == 2000
    content = bytearray(early.read_bytes())
    for i in range(8, len(content) // 2):  # data pages scrambled, footer (with its range) intact
        content[i] = (content[i] * 7 + 13) % 256
    early.write_bytes(bytes(content))
    late = Historian(tmp_path).read(["T"], T0 + timedelta(hours=4))
    assert late.height == 10
    assert early.exists()  # its range says it holds nothing after 4 h: never opened


def test_duckdb_reads_the_store_as_is(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    h.append(rows(["T", "Ca"], 30, start=datetime(2026, 3, 1, 23, 59, 45, tzinfo=UTC)))
    h.record_gap(["T"], T0, T0 + timedelta(minutes=1), "server restart")
    (tmp_path / "day=2026-03-01" / "part-x.parquet.tmp").write_bytes(b"torn")
    result = duckdb.sql(
        f"select count(*), count(distinct day), min(ts) from read_parquet('{tmp_path}/**/*.parquet', "
        "hive_partitioning=true) where tag = 'Ca'"
    ).fetchall()
    assert result[0] == (30, 2, datetime(2026, 3, 1, 23, 59, 45, tzinfo=UTC))
    by_polars = pl.scan_parquet(f"{tmp_path}/**/*.parquet", hive_partitioning=True)
    days = by_polars.group_by("day").len().sort("day").collect()
    assert days.rows() == [(date(2026, 3, 1), 30), (date(2026, 3, 2), 30)]


# --- communication gaps ----------------------------------------------------------------------


def test_gaps_are_recorded_and_read_back_per_tag(tmp_path: Path) -> None:
    h = Historian(tmp_path)
    h.record_gap(["T", "Ca"], T0, T0 + timedelta(minutes=5), "server restart")
    h.record_gap(["T"], T0 + timedelta(hours=1), T0 + timedelta(hours=2), "network")
    h.record_gap(["T"], T0, T0, "empty: not recorded")
    with h.gaps_path.open("a") as f:
        f.write('{"tags": ["T"], "start": "2026-03')  # torn by a crash
    reopened = Historian(tmp_path)
    assert reopened.gaps().get_column("tag").to_list() == ["T", "Ca", "T"]
    late = reopened.gaps(start=T0 + timedelta(minutes=30))
    assert late.rows() == [("T", T0 + timedelta(hours=1), T0 + timedelta(hours=2), "network")]
    with pytest.raises(DataQualityError, match="before its start"):
        h.record_gap(["T"], T0, T0 - timedelta(seconds=1), "backwards")
    with pytest.raises(DataQualityError, match="end must be time-zone aware"):
        h.record_gap(["T"], T0, datetime(2026, 3, 2), "naive")


# --- property: any sequence of appends reads back as the deduplicated set --------------------

_sample = st.tuples(
    st.sampled_from(["A", "B", "C"]),
    st.integers(0, 40),  # seconds after T0 (crossing no midnight) or days later
    st.one_of(st.floats(-1e6, 1e6), st.just(math.nan), st.just(math.inf)),
    st.booleans(),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(_sample, max_size=25), min_size=1, max_size=6))
def test_any_appends_read_back_as_the_deduplicated_set(
    batches: list[list[tuple[str, int, float, bool]]],
) -> None:
    expected: dict[tuple[str, datetime], float | None] = {}
    with tempfile.TemporaryDirectory() as root:
        h = Historian(root, auto_compact_files=3)
        for k, batch in enumerate(batches):
            if k == 3:
                h = Historian(root, auto_compact_files=3)  # a restart forgets what it knew
            keyed = [
                (tag, T0 + timedelta(seconds=s, days=2 * next_day), v)
                for tag, s, v, next_day in batch
            ]
            df = pl.DataFrame(keyed, schema=["tag", "ts", "value"], orient="row").cast(
                {"ts": SCHEMA["ts"]}
            )
            new = 0
            for tag, ts, v in keyed:
                if (tag, ts) not in expected:
                    expected[tag, ts] = v if math.isfinite(v) else None
                    new += 1
            assert h.append(df) == new
        back = h.read()
    want = sorted((t, ts, v) for (t, ts), v in expected.items())
    assert back.select("tag", "ts", "value").rows() == want
