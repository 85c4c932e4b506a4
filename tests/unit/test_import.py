"""Importing CSV/Parquet exports: what parses is stored once, what does not is reported by line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import connectors.files as files
import connectors.files_read as files_read
import twin.cli
from connectors.files import ImportFileError, import_file
from twin.spec import PlantSpec, builtin_spec
from twin.store.historian import Historian

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def spec() -> PlantSpec:
    return builtin_spec("cstr")  # tags T, Ca, Tc, Tf


@pytest.fixture
def store(tmp_path: Path) -> Historian:
    return Historian(tmp_path / "store")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def wide_csv(n: int = 10, start: datetime = T0) -> str:
    lines = ["ts,T,Ca,Tc,Tf"]
    for i in range(n):
        ts = (start + timedelta(seconds=6 * i)).isoformat().replace("+00:00", "Z")
        lines.append(f"{ts},{320 + i},{0.8 + i / 100},{300 - i / 10},{350 + i}")
    return "\n".join(lines) + "\n"


def values(store: Historian, tag: str) -> list[tuple[datetime, float | None]]:
    return [(r["ts"], r["value"]) for r in store.read([tag]).iter_rows(named=True)]


# --- layouts and formats -----------------------------------------------------------------------


def test_wide_csv_round_trip_keeps_values_and_times(tmp_path, spec, store) -> None:
    report = import_file(write(tmp_path, "w.csv", wide_csv(10)), spec, store)
    assert (report.layout, report.format, report.rows_read) == ("wide", "csv", 10)
    assert report.rows_stored == 40 and report.bad_count == 0
    assert report.tags == ("T", "Ca", "Tc", "Tf")
    assert (report.start, report.end) == (T0, T0 + timedelta(seconds=54))
    times = [T0 + timedelta(seconds=6 * i) for i in range(10)]
    assert values(store, "T") == [(t, 320.0 + i) for i, t in enumerate(times)]
    assert values(store, "Ca") == [(t, 0.8 + i / 100) for i, t in enumerate(times)]
    assert store.read().get_column("quality").unique().to_list() == ["good"]


def test_long_csv_quality_words_and_status_codes(tmp_path, spec, store) -> None:
    text = (
        "ts,tag,value,quality\n"
        "2026-01-01T00:00:00Z,T,320.5,good\n"
        "2026-01-01T00:00:06Z,T,321.0, Uncertain \n"
        "2026-01-01T00:00:12Z,T,,BAD\n"  # a bad sample without a value is kept as such
        "2026-01-01T00:00:18Z,T,322.0,0x80340000\n"
        "2026-01-01T00:00:24Z,T,323.0,1073741824\n"
        "2026-01-01T00:00:30Z,T,324.0,excellent\n"
    )
    report = import_file(write(tmp_path, "l.csv", text), spec, store)
    assert report.layout == "long" and report.rows_stored == 5
    assert report.bad_rows == (
        (7, "unknown quality 'excellent' (expected good, uncertain, bad or an OPC-UA status code)"),
    )
    got = store.read(["T"]).select("value", "quality", "status").rows()
    assert got == [
        (320.5, "good", 0),
        (321.0, "uncertain", 0x4000_0000),
        (None, "bad", 0x8000_0000),
        (322.0, "bad", 0x8034_0000),
        (323.0, "uncertain", 0x4000_0000),
    ]


def test_parquet_wide_with_zone_aware_times(tmp_path, spec, store) -> None:
    berlin = [datetime(2026, 1, 1, 1, 0, 6 * i) for i in range(5)]  # 01:00 CET = 00:00 UTC
    frame = pl.DataFrame({"ts": berlin, "T": [1.0, 2, 3, 4, 5], "Tc": [290, 291, 292, 293, 294]})
    frame = frame.with_columns(pl.col("ts").dt.replace_time_zone("Europe/Berlin"))
    frame.write_parquet(tmp_path / "w.parquet")
    report = import_file(tmp_path / "w.parquet", spec, store)
    assert (report.format, report.layout, report.rows_stored) == ("parquet", "wide", 10)
    assert values(store, "Tc")[0] == (T0, 290.0)
    assert values(store, "T")[-1] == (T0 + timedelta(seconds=24), 5.0)


def test_parquet_long_with_naive_times_and_status_codes(tmp_path, spec, store) -> None:
    frame = pl.DataFrame(
        {
            "ts": [datetime(2025, 12, 31, 19, 0), datetime(2025, 12, 31, 19, 0, 6)],  # New York
            "tag": ["Ca", "Ca"],
            "value": [0.9, float("nan")],
            "status": pl.Series([0, 0x4000_0000], dtype=pl.Int64),
        }
    )
    frame.write_parquet(tmp_path / "l.pq")
    report = import_file(tmp_path / "l.pq", spec, store, tz="America/New_York")
    assert (report.format, report.layout, report.rows_stored) == ("parquet", "long", 2)
    assert "America/New_York" in report.timestamps
    got = store.read(["Ca"]).select("ts", "value", "quality").rows()
    # NaN is stored masked: null with quality bad
    assert got == [(T0, 0.9, "good"), (T0 + timedelta(seconds=6), None, "bad")]


# --- time zones ----------------------------------------------------------------------------------


def test_offsets_and_z_convert_to_utc(tmp_path, spec, store) -> None:
    text = (
        "ts,T\n"
        "2026-01-01T01:00:00+01:00,1\n"
        "2025-12-31T19:00:06-05:00,2\n"
        "2026-01-01 00:00:12Z,3\n"
        "2026-01-01T00:00:18.250000+00:00,4\n"
    )
    import_file(write(tmp_path, "tz.csv", text), spec, store, tz="Asia/Tokyo")
    expected = [0, 6, 12, 18.25]
    assert values(store, "T") == [
        (T0 + timedelta(seconds=s), float(i + 1)) for i, s in enumerate(expected)
    ]


def test_naive_times_in_berlin_across_daylight_saving_changes(tmp_path, spec, store) -> None:
    text = (
        "ts,T\n"
        "2026-03-29 01:30:00,1\n"  # CET: 00:30 UTC
        "2026-03-29 02:30:00,2\n"  # does not exist: clocks jump from 02:00 to 03:00
        "2026-03-29 03:30:00,3\n"  # CEST: 01:30 UTC
        "2026-10-25 02:30:00,4\n"  # happens twice: ambiguous
        "2026-10-25 03:30:00,5\n"  # CET again: 02:30 UTC
    )
    report = import_file(write(tmp_path, "dst.csv", text), spec, store, tz="Europe/Berlin")
    assert [line for line, _ in report.bad_rows] == [3, 5]
    assert all("Europe/Berlin (daylight-saving change)" in why for _, why in report.bad_rows)
    assert [ts for ts, _ in values(store, "T")] == [
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 2, 30, tzinfo=UTC),
    ]


def test_epoch_seconds_and_milliseconds_are_not_confused(tmp_path, spec, store) -> None:
    epoch = T0.timestamp()
    text = f"ts,T\n{epoch:.0f},1\n{epoch + 6.5},2\n{epoch * 1000:.0f},3\n"
    report = import_file(write(tmp_path, "e.csv", text), spec, store)
    assert report.timestamps == "epoch seconds (UTC)"
    assert values(store, "T") == [(T0, 1.0), (T0 + timedelta(seconds=6.5), 2.0)]
    assert report.bad_rows[0][0] == 4 and "milliseconds?" in report.bad_rows[0][1]


def test_unknown_time_zone_is_an_error(tmp_path, spec, store) -> None:
    with pytest.raises(ImportFileError, match="unknown time zone 'Mars/Olympus'"):
        import_file(write(tmp_path, "w.csv", wide_csv(2)), spec, store, tz="Mars/Olympus")


# --- bad rows --------------------------------------------------------------------------------


def test_malformed_rows_are_reported_by_line_while_good_rows_are_stored(
    tmp_path, spec, store
) -> None:
    text = (
        "ts,T,Ca\n"
        "2026-01-01T00:00:00Z,320,0.8\n"
        "2026-01-01T00:00:06Z,321,0.8,99\n"  # line 3: too many fields
        "2026-01-01T00:00:12Z,hot,0.8\n"  # line 4: text in a number column
        "yesterday,323,0.8\n"  # line 5: bad timestamp
        "\n"  # line 6: empty
        "2026-01-01T00:00:30Z,,0.9\n"  # line 7: missing value for T, Ca is fine
        "2026-01-01T00:00:36Z,326,0.9\n"
    )
    report = import_file(write(tmp_path, "bad.csv", text), spec, store)
    assert report.bad_rows == (
        (3, "too many fields (the header has 3)"),
        (4, "unparseable number 'hot' for T"),
        (5, "unparseable timestamp 'yesterday'"),
        (6, "empty row"),
        (7, "missing value for T"),
    )
    assert report.bad_count == 5 and report.rows_read == 7
    assert [v for _, v in values(store, "T")] == [320.0, 326.0]
    assert [v for _, v in values(store, "Ca")] == [0.8, 0.8, 0.9, 0.9]
    summary = report.summary()
    assert "5 lines with problems" in summary and "line 4: unparseable number 'hot'" in summary


def test_line_numbers_count_quoted_fields_that_span_lines(tmp_path, spec, store) -> None:
    text = 'ts,T,note\n2026-01-01T00:00:00Z,1,"two\nlines"\n2026-01-01T00:00:06Z,oops,x\n'
    report = import_file(write(tmp_path, "q.csv", text), spec, store)
    assert report.bad_rows == ((4, "unparseable number 'oops' for T"),)
    assert report.skipped_columns == ("note",)


def test_nan_and_inf_are_stored_masked_not_rejected(tmp_path, spec, store) -> None:
    text = (
        "ts,T\n2026-01-01T00:00:00Z,nan\n2026-01-01T00:00:06Z,inf\n2026-01-01T00:00:12Z,-Infinity\n"
    )
    report = import_file(write(tmp_path, "n.csv", text), spec, store)
    assert report.bad_count == 0 and report.rows_stored == 3
    assert store.read(["T"]).select("value", "quality").rows() == [(None, "bad")] * 3


def test_unknown_tags_are_skipped_and_named(tmp_path, spec, store) -> None:
    wide = "ts,T,Pressure,Level\n2026-01-01T00:00:00Z,320,5.0,1\n"
    report = import_file(write(tmp_path, "w.csv", wide), spec, store)
    assert report.skipped_columns == ("Pressure", "Level")
    assert report.tags == ("T",) and report.rows_stored == 1
    long = "ts,tag,value\n2026-01-01T00:00:06Z,Ca,0.8\n2026-01-01T00:00:06Z,Pressure,5\n"
    report = import_file(write(tmp_path, "l.csv", long), spec, store)
    assert report.bad_rows == ((3, "unknown tag 'Pressure' (not in plant 'cstr')"),)
    assert set(store.read().get_column("tag")) == {"T", "Ca"}


def test_duplicate_and_out_of_order_rows(tmp_path, spec, store) -> None:
    text = (
        "ts,tag,value\n"
        "2026-01-01T00:00:12Z,T,3\n"
        "2026-01-01T00:00:00Z,T,1\n"
        "2026-01-01T00:00:06Z,T,2\n"
        "2026-01-01T00:00:06Z,T,2\n"  # same sample again: stored once, nothing to report
        "2026-01-01T00:00:00Z,T,9\n"  # same time, another value: the first is kept, reported
    )
    report = import_file(write(tmp_path, "d.csv", text), spec, store)
    assert values(store, "T") == [
        (T0, 1.0),
        (T0 + timedelta(seconds=6), 2.0),
        (T0 + timedelta(seconds=12), 3.0),
    ]
    assert report.rows_stored == 3 and report.samples_parsed == 4
    assert len(report.bad_rows) == 1 and report.bad_rows[0][0] == 6
    assert "repeats line 3" in report.bad_rows[0][1]


def test_chunked_import_keeps_line_numbers_and_first_values(
    tmp_path, spec, store, monkeypatch
) -> None:
    monkeypatch.setattr(files_read, "CHUNK_ROWS", 3)
    lines = ["ts,T,note"]
    lines += [f"2026-01-01T00:00:{2 * i:02d}Z,{i},x" for i in range(6)]
    lines.insert(4, '2026-01-01T00:00:30Z,bad,"a\nb"')  # line 5, spans two lines
    lines.append("2026-01-01T00:00:00Z,99,x")  # line 10 repeats line 2, an earlier chunk
    lines.append("2026-01-01T00:00:40Z,x,y")  # line 11
    report = import_file(write(tmp_path, "c.csv", "\n".join(lines) + "\n"), spec, store)
    assert report.bad_rows == (
        (5, "unparseable number 'bad' for T"),
        (11, "unparseable number 'x' for T"),
    )
    assert (report.rows_read, report.samples_parsed, report.rows_stored) == (9, 7, 6)
    assert values(store, "T")[0] == (T0, 0.0)  # the first value is kept


# --- imports that fail as a whole leave the store as it was --------------------------------------


def _junk_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "the file is empty"),
        ("header.csv", "ts,T\n", "header but no data rows"),
        ("nots.csv", "when,T\n2026-01-01T00:00:00Z,1\n", "no time column"),
        ("notags.csv", "ts,Pressure\n2026-01-01T00:00:00Z,1\n", "no column is a tag"),
        ("allbad.csv", "ts,T\nnever,1\n2026-01-01T00:00:00Z,warm\n", "none of its 2 rows"),
        ("junk.parquet", None, "not a readable Parquet file"),
        ("data.xlsx", "x", "cannot tell the format"),
    ],
)
def test_failed_import_names_the_file_and_leaves_the_store_unchanged(
    tmp_path, spec, store, name, content, message
) -> None:
    import_file(write(tmp_path, "good.csv", wide_csv(5)), spec, store)
    before = store.read()
    path = _junk_parquet(tmp_path) if content is None else write(tmp_path, name, content)
    with pytest.raises(ImportFileError, match=message) as err:
        import_file(path, spec, store)
    assert str(path) in str(err.value)
    assert store.read().equals(before)
    if name == "allbad.csv":
        assert err.value.report is not None and err.value.report.bad_count == 2


def test_parquet_damaged_inside_is_an_error_not_a_crash(tmp_path, spec, store) -> None:
    ts = [T0 + timedelta(seconds=6 * i) for i in range(2000)]
    pl.DataFrame({"ts": ts, "T": range(2000)}).write_parquet(
        tmp_path / "ok.parquet", compression="uncompressed"
    )
    data = bytearray((tmp_path / "ok.parquet").read_bytes())
    data[100 : len(data) // 2] = b"\xff" * (len(data) // 2 - 100)  # pages damaged, footer fine
    (tmp_path / "damaged.parquet").write_bytes(bytes(data))
    with pytest.raises(ImportFileError, match=r"damaged\.parquet: reading stopped after 0 rows"):
        import_file(tmp_path / "damaged.parquet", spec, store)
    assert store.read().is_empty()


def test_format_option_overrides_the_extension(tmp_path, spec, store) -> None:
    report = import_file(write(tmp_path, "export.dat", wide_csv(2)), spec, store, fmt="csv")
    assert report.rows_stored == 8


def test_importing_the_same_file_twice_stores_nothing_new(tmp_path, spec, store) -> None:
    path = write(tmp_path, "w.csv", wide_csv(20))
    first = import_file(path, spec, store)
    before = store.read()
    again = import_file(path, spec, store)
    assert (first.rows_stored, again.rows_stored, again.samples_parsed) == (80, 0, 80)
    assert store.read().equals(before)


# --- command line ----------------------------------------------------------------------------


def test_cli_import_exit_codes(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(twin.cli, "COMMAND_MODULES", ["twin.cli.files"])  # skip slow imports
    main = twin.cli.main
    out = str(tmp_path / "store")
    good = write(tmp_path, "w.csv", wide_csv(3) + "garbage,1,2,3,4\n")
    assert main(["import", "--spec", "cstr", "--input", str(good), "--historian", out]) == 0
    printed = capsys.readouterr().out
    assert "12 stored" in printed and "line 5: unparseable timestamp 'garbage'" in printed
    bad = write(tmp_path, "b.csv", "ts,T\nnope,1\n")
    assert main(["import", "--spec", "cstr", "--input", str(bad), "--historian", out]) == 1
    assert "line 2: unparseable timestamp 'nope'" in capsys.readouterr().out
    empty = write(tmp_path, "e.csv", "")
    assert main(["import", "--spec", "cstr", "--input", str(empty), "--historian", out]) == 2
    berlin = write(tmp_path, "n.csv", "ts,T\n2026-01-01 02:00:00,7\n")
    argv = ["import", "--spec", "cstr", "--input", str(berlin), "--historian", out]
    assert main([*argv, "--tz", "Europe/Berlin"]) == 0
    one = T0 + timedelta(hours=1)
    stored = Historian(out).read(["T"], one, one + timedelta(seconds=1))
    assert stored.select("ts", "value").rows() == [(one, 7.0)]
    assert Historian(out).read().height == 13


# --- real exports: delimiters, decimal commas, local time formats, column mapping -----------------

TEP_SPEC = """
[plant]
name = "tep"
sample_period_s = 180.0

[[tags]]
name = "Level"
column = "XMEAS(01)"
unit = "%"
role = "cv"
lo = 0.0
hi = 100.0
setpoint = 50.0
weight = 1.0

[[tags]]
name = "Feed"
column = "XMV(10)"
unit = "kg/h"
role = "mv"
lo = 0.0
hi = 100.0
rate_limit = 5.0

[[tags]]
name = "Pressure"
role = "dv"
lo = 2000.0
hi = 3000.0

[[tags]]
name = "Temp"
role = "dv"
lo = 100.0
hi = 150.0
"""


def tep_export(n: int = 600, outside: int = 117) -> str:
    """A ';'-separated export with dd.mm.yyyy times and decimal commas, as a historian writes
    it; the first ``outside`` levels are above 100 %, the feed never moves, there is no Temp."""
    lines = ["Timestamp;XMEAS(01);XMEAS(02);XMV(10)"]
    start = datetime(2024, 1, 1, 1, 0)
    for i in range(n):
        t = (start + timedelta(minutes=3 * (i + 1))).strftime("%d.%m.%Y %H:%M:%S")
        level = 101.5 + i / 1000 if i < outside else 40.0 + (i % 20) / 4
        cells = [f"{level:.3f}", f"{2700 + i % 7}.25", "42.5"]
        lines.append(";".join([t, *(c.replace(".", ",") for c in cells)]))
    return "\n".join(lines) + "\n"


def test_semicolon_export_with_decimal_commas_local_times_and_mapped_columns(tmp_path) -> None:
    from twin.spec import load_spec

    spec = load_spec(write(tmp_path, "tep.toml", TEP_SPEC))
    store = Historian(tmp_path / "store")
    path = write(tmp_path, "export.csv", tep_export())
    report = import_file(path, spec, store, columns={"XMEAS(02)": "Pressure"}, tz="Europe/Berlin")
    assert (report.rows_read, report.bad_count, report.rows_stored) == (600, 0, 1800)
    assert report.columns == {"XMEAS(01)": "Level", "XMEAS(02)": "Pressure", "XMV(10)": "Feed"}
    assert report.missing_tags == ("Temp",)
    assert report.out_of_range == {"Level": 117}
    assert report.still_mvs == ("Feed",)
    assert "';'-separated, decimal comma" in report.timestamps
    # 01.01.2024 01:03:00 in Berlin (CET) is 00:03 UTC
    first = store.read(["Pressure"]).row(0, named=True)
    assert (first["ts"], first["value"]) == (datetime(2024, 1, 1, 0, 3, tzinfo=UTC), 2700.25)
    level = store.read(["Level"])
    uncertain = level.filter(pl.col("quality") == "uncertain")
    assert uncertain.height == 117 and (uncertain["value"] > 100).all()
    assert set(uncertain["status"].to_list()) == {files.OUT_OF_RANGE_STATUS}
    assert level.filter(pl.col("quality") == "good").height == 600 - 117
    assert store.read(["Feed"])["value"].unique().to_list() == [42.5]


def test_cli_import_of_a_real_export_names_what_the_engineer_must_know(
    tmp_path, capsys, caplog, monkeypatch
) -> None:
    monkeypatch.setattr(twin.cli, "COMMAND_MODULES", ["twin.cli.files"])
    spec = write(tmp_path, "tep.toml", TEP_SPEC)
    path = write(tmp_path, "export.csv", tep_export())
    argv = ["import", "--spec", str(spec), "--input", str(path), "--historian", str(tmp_path / "h")]
    assert twin.cli.main([*argv, "--map", "XMEAS(02)=Pressure", "--tz", "Europe/Berlin"]) == 0
    out = capsys.readouterr().out
    assert "tags not in the file: Temp" in out
    assert "samples outside [lo, hi], stored as uncertain: Level: 117" in out
    assert "MVs that never move in the file: Feed" in out
    assert "1800 stored" in out
    assert twin.cli.main([*argv, "--map", "XMEAS(02)=Pressur"]) == 2  # a typo in the tag
    assert "has no tag 'Pressur'" in caplog.text


def test_export_without_any_tag_column_names_the_columns_and_the_tags(tmp_path) -> None:
    from twin.spec import load_spec

    spec = load_spec(write(tmp_path, "tep.toml", TEP_SPEC))
    path = write(tmp_path, "x.csv", "Timestamp;A(1);B(2)\n01.01.2024 01:03:00;1,0;2,0\n")
    with pytest.raises(ImportFileError) as err:
        import_file(path, spec, Historian(tmp_path / "store"))
    msg = str(err.value)
    assert "columns found ['Timestamp', 'A(1)', 'B(2)']" in msg
    assert "Level (column 'XMEAS(01)')" in msg and "'Temp'" in msg and "--map" in msg


@pytest.mark.parametrize(
    ("times", "options", "first"),
    [
        (["03/04/2024 10:00:00", "03/04/2024 10:01:00"], {}, datetime(2024, 3, 4, 10, 0)),
        (["03/04/2024 10:00", "03/04/2024 10:01"], {"dayfirst": True}, datetime(2024, 4, 3, 10, 0)),
        (["2024|04|03 10h00", "2024|04|03 10h01"], {"time_format": "%Y|%m|%d %Hh%M"}, None),
        (["03-04-2024 10:00:00", "03-04-2024 10:01:00"], {"dayfirst": True}, None),
    ],
    ids=["month-first", "dayfirst", "time-format", "dashes-dayfirst"],
)
def test_time_formats(tmp_path, spec, store, times, options, first) -> None:
    path = write(tmp_path, "t.csv", "ts,T\n" + "".join(f"{t},1.5\n" for t in times))
    report = import_file(path, spec, store, files.ReadOptions(**options))
    assert report.bad_count == 0 and report.rows_stored == 2
    first = first or datetime(2024, 4, 3, 10, 0)
    assert values(store, "T")[0] == (first.replace(tzinfo=UTC), 1.5)


def test_unparseable_times_get_a_hint_to_give_the_format(tmp_path, spec, store) -> None:
    path = write(tmp_path, "t.csv", "ts,T\n2024-01-01T00:00:00Z,1\n1 Jan 2024 00:01,2\n")
    report = import_file(path, spec, store)
    assert report.bad_rows == ((3, "unparseable timestamp '1 Jan 2024 00:01'"),)
    assert "--time-format" in report.summary()


def test_tab_delimiter_is_sniffed_and_a_given_one_is_used(tmp_path, spec, store) -> None:
    tab = write(tmp_path, "tab.txt", "ts\tT\tCa\n2026-01-01T00:00:00Z\t1.5\t0.5\n")
    assert import_file(tab, spec, store).rows_stored == 2
    pipe = write(tmp_path, "p.csv", "ts|T\n2026-01-01T00:00:06Z|2,5\n")
    opts = files.ReadOptions(delimiter="|", decimal_comma=True)
    assert import_file(pipe, spec, store, opts).rows_stored == 1
    assert values(store, "T")[-1] == (T0 + timedelta(seconds=6), 2.5)


def test_long_export_reads_tag_names_through_the_spec_columns(tmp_path) -> None:
    from twin.spec import load_spec

    spec = load_spec(write(tmp_path, "tep.toml", TEP_SPEC))
    store = Historian(tmp_path / "store")
    text = "ts,tag,value\n2024-01-01T00:00:00Z,XMEAS(01),150\n2024-01-01T00:00:00Z,XMV(10),7\n"
    report = import_file(write(tmp_path, "l.csv", text), spec, store)
    assert report.tags == ("Level", "Feed") and report.missing_tags == ("Pressure", "Temp")
    assert report.out_of_range == {"Level": 1}
    assert store.read(["Level"]).select("value", "quality").rows() == [(150.0, "uncertain")]


def test_a_tag_with_no_data_is_named_at_training_time_too() -> None:
    import numpy as np

    from twin.errors import DataQualityError
    from twin.model.dataset import Normalizer

    values = np.array([[1.0, np.nan, 2.0], [2.0, np.nan, 3.0]])
    with pytest.raises(DataQualityError, match=r"tags \['Temp'\] have no valid sample"):
        Normalizer.fit(values, names=["Level", "Temp", "Feed"])
