"""Fuzzing where data enters: spec files, CSV/Parquet exports and sample streams.

Every bad input must end in a clear error of the project's own (a :class:`TwinError` subclass
naming what is wrong: the file, and the tag and field of a spec), never in a stray KeyError,
TypeError or a library's traceback; every good one must come out right (a spec whose limits
hold, stored rows that are finite or flagged bad, each (tag, ts) once).
"""

from __future__ import annotations

import io
import json
import math
import re
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.files import ImportFileError, ImportReport, import_file
from twin.errors import DataQualityError, SpecError, TwinError
from twin.spec import PLANTS_DIR, PlantSpec, builtin_spec, parse_spec
from twin.store.historian import Historian
from twin.store.schema import SCHEMA

SOURCE = "fuzzed.toml"
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
SPEC = builtin_spec("cstr")  # tags T, Ca (cv), Tc (mv), Tf (dv)
T0 = datetime(2026, 3, 1, tzinfo=UTC)

# --- spec files --------------------------------------------------------------------------------

SPEC_LINES = (PLANTS_DIR / "cstr.toml").read_text(encoding="utf-8").splitlines()
FIELDS = [
    "name",
    "node",
    "unit",
    "role",
    "lo",
    "hi",
    "setpoint",
    "weight",
    "rate_limit",
    "write_node",
    "description",
    "sample_period_s",
    "colour",
]
toml_values = st.one_of(
    st.sampled_from(["0", "-1.5", "1e400", "inf", "-inf", "nan", "true", "[]", "{}", '""']),
    st.sampled_from(['"cv"', '"mv"', '"dv"', '"xv"', '"ns=2;s=A"', '"nsu=;s=x"', '"i=-1"']),
    st.sampled_from(['"g=not-a-guid"', '"b=***"', '"ns=99999;s=x"', '"ts"', '"1abc"', '"T"']),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=12).map(json.dumps),
)


@st.composite
def mutated_spec(draw: st.DrawFn) -> str:
    """The CSTR spec file with a few lines set, added, dropped, repeated or cut."""
    lines = list(SPEC_LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["set", "add", "drop", "dup", "cut", "noise"]))
        if kind == "set" and "=" in lines[i]:
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}= {draw(toml_values)}"
        elif kind == "add":
            lines.insert(i, f"{draw(st.sampled_from(FIELDS))} = {draw(toml_values)}")
        elif kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        elif kind == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif kind == "noise":
            lines[i] += draw(st.text(max_size=6))
        if not lines:
            lines = [""]
    return "\n".join(lines)


def _check_spec_outcome(text: str) -> None:
    try:
        spec = parse_spec(text, source=SOURCE)
    except SpecError as exc:
        message = str(exc)
        assert message.startswith(SOURCE), message
        assert exc.reason.strip(), message
        if exc.tag is not None:  # a tag is named by its name, or its place when it has none
            assert exc.tag in message
        if exc.field is not None:
            assert f"field {exc.field!r}" in message
        return
    assert isinstance(spec, PlantSpec) and spec.tags and spec.sample_period > 0
    names = spec.tag_names
    assert len(set(names)) == len(names)
    for t in spec.tags:
        assert math.isfinite(t.lo) and math.isfinite(t.hi) and t.lo < t.hi, t
        if t.role == "mv":
            assert t.rate_limit is not None and t.rate_limit > 0 and t.write_node is not None
        assert t.lo <= t.op_low < t.op_high <= t.hi and t.error_scale > 0, t
        if t.role == "cv":
            assert t.setpoint is None or t.op_low <= t.setpoint <= t.op_high
            assert t.weight is None or t.weight >= 0


@FAST
@given(mutated_spec())
def test_mutated_spec_files_parse_or_name_what_is_wrong(text: str) -> None:
    _check_spec_outcome(text)


@FAST
@given(st.text(max_size=300))
def test_arbitrary_text_as_a_spec_is_a_spec_error(text: str) -> None:
    _check_spec_outcome(text)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_spec_file_of_random_bytes_is_a_spec_error_naming_it(data: bytes) -> None:
    from twin.spec import load_spec

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.toml"
        path.write_bytes(data)
        try:
            load_spec(path)
        except SpecError as exc:
            assert str(exc).startswith(str(path)), str(exc)


# --- CSV and Parquet imports -----------------------------------------------------------------

cells = st.one_of(
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "1e309", "0x10", "1,5", '"', '""']),
    st.sampled_from(["good", "BAD", "uncertain", "0", "2147483648", "-1", "0x80000000", "T"]),
    st.sampled_from(["Ca", "Tc", "Tf", "nope", "2026-03-01T00:00:00Z", "2026-03-01 00:00"]),
    st.sampled_from(["2026-03-29T02:30:00", "1772323200", "1772323200000", "2026-02-30", "\x00"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**12), 10**12).map(str),
    st.text(max_size=8),
)
headers = st.lists(
    st.sampled_from(["ts", "T", "Ca", "Tc", "Tf", "tag", "value", "quality", "status", "x", ""]),
    min_size=1,
    max_size=6,
)


@st.composite
def csv_export(draw: st.DrawFn) -> bytes:
    """A CSV export: a header of known and unknown columns, rows of good and bad cells."""
    header = draw(headers)
    rows = []
    for i in range(draw(st.integers(0, 12))):
        n = len(header) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        row = []
        for j in range(max(0, n)):
            good = (T0 + timedelta(seconds=6 * i)).isoformat() if j == 0 else f"{300 + i}.5"
            row.append(draw(st.one_of(st.just(good), cells)))
        rows.append(",".join(row))
    text = "\n".join([",".join(header), *rows]) + draw(st.sampled_from(["", "\n", "\r\n"]))
    data = text.encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):  # damage: bytes replaced or the file cut short
        raw = bytearray(data)
        for _ in range(draw(st.integers(0, 4))):
            if raw:
                raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        data = bytes(raw[: draw(st.integers(0, len(raw)))])
    return data


def _check_import(path: Path, store: Historian) -> ImportReport | None:
    """Import ``path``: a report, or an ImportFileError naming the file; the store stays sound."""
    try:
        report = import_file(path, SPEC, store)
    except ImportFileError as exc:
        assert str(path) in str(exc), str(exc)
        report = None
    except DataQualityError as exc:  # from the historian: still ours, still says what is wrong
        assert str(exc).strip(), repr(exc)
        report = None
    rows = store.read()
    assert rows.group_by("tag", "ts").len()["len"].max() in (None, 1)
    assert set(rows["tag"].unique().to_list()) <= set(SPEC.tag_names)
    finite = rows["value"].is_finite().fill_null(False)
    assert (finite | (rows["quality"] == "bad")).all(), rows.filter(~finite)
    if report is not None:
        assert report.rows_stored == rows.height and report.bad_count >= len(report.bad_rows)
        assert all(isinstance(n, int) and why for n, why in report.bad_rows)
    return report


@FAST
@given(csv_export())
def test_mutated_csv_imports_store_what_parses_or_name_the_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.csv"
        path.write_bytes(data)
        _check_import(path, Historian(Path(tmp) / "store"))


column_values = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4),
    st.lists(st.integers(-(2**62), 2**62), min_size=4, max_size=4),
    st.lists(st.one_of(st.none(), st.text(max_size=6)), min_size=4, max_size=4),
    st.lists(st.booleans(), min_size=4, max_size=4),
    st.lists(
        st.datetimes(
            min_value=datetime(1900, 1, 1),
            max_value=datetime(2200, 1, 1),
            timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-5))]),
        ),
        min_size=4,
        max_size=4,
    ),
)


@st.composite
def parquet_export(draw: st.DrawFn) -> bytes:
    """A Parquet export with columns of any common type under known and unknown names."""
    names = draw(
        st.lists(
            st.sampled_from(["ts", "T", "Ca", "tag", "value", "status", "x"]),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    columns = {}
    for name in names:
        values = draw(column_values)
        try:
            columns[name] = pl.Series(name, values, strict=False)
        except (TypeError, OverflowError, pl.exceptions.PolarsError):
            columns[name] = pl.Series(name, [str(v) for v in values])
    buf = io.BytesIO()
    pl.DataFrame(columns).write_parquet(buf)
    data = buf.getvalue()
    cut = draw(st.sampled_from([None, None, 0.5, 0.9, 0.99]))
    return data if cut is None else data[: int(len(data) * cut)]


@FAST
@given(parquet_export())
def test_parquet_imports_of_any_types_store_or_name_the_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.parquet"
        path.write_bytes(data)
        _check_import(path, Historian(Path(tmp) / "store"))


# --- sample streams into the historian ---------------------------------------------------------

stream_values = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**9), 10**9)
)
statuses = st.one_of(
    st.none(),
    st.sampled_from([0, 0x4000_0000, 0x8000_0000, 0x80AB_0000, 0x0000_0400]),
    st.integers(-5, 2**33),
)


@st.composite
def sample_batches(draw: st.DrawFn) -> list[pl.DataFrame]:
    """Batches as a collector hands them over: out of order, repeated, NaN/inf, odd statuses."""
    batches = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, 15))
        tags = draw(st.lists(st.sampled_from(["T", "Ca", "Tc", "", "x y"]), min_size=n, max_size=n))
        offsets = draw(st.lists(st.integers(-5, 40), min_size=n, max_size=n))
        ts = [T0 + timedelta(seconds=k) for k in offsets]
        values = draw(st.lists(stream_values, min_size=n, max_size=n))
        frame = {"tag": tags, "ts": ts, "value": [None if v is None else float(v) for v in values]}
        if draw(st.booleans()):
            frame["status"] = draw(st.lists(statuses, min_size=n, max_size=n))
        if draw(st.booleans()):
            frame["quality"] = draw(
                st.lists(
                    st.sampled_from(["good", "bad", "uncertain", "GOOD", None]),
                    min_size=n,
                    max_size=n,
                )
            )
        schema = {"tag": pl.String, "ts": pl.Datetime("us", "UTC"), "value": pl.Float64}
        schema |= {"status": pl.Int64} if "status" in frame else {}
        schema |= {"quality": pl.String} if "quality" in frame else {}
        batches.append(pl.DataFrame(frame, schema=schema))
    return batches


@FAST
@given(sample_batches())
def test_sample_streams_are_stored_finite_or_flagged_and_once(
    batches: list[pl.DataFrame],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Historian(tmp)
        accepted = []
        for batch in batches:
            try:
                store.append(batch)
            except DataQualityError as exc:  # only for what cannot be stored: it says what
                assert re.search(r"status|quality", str(exc)), str(exc)
                continue
            accepted.append(batch)
        rows = Historian(tmp).read()  # a fresh open reads the same
        assert dict(rows.schema) == SCHEMA
        assert rows.group_by("tag", "ts").len()["len"].max() in (None, 1)
        finite = rows["value"].is_finite().fill_null(False)
        assert (finite | (rows["quality"] == "bad")).all()
        usable = [
            b.filter((pl.col("tag") != "") & pl.col("tag").is_not_null()).select("tag", "ts")
            for b in accepted
        ]
        keys = pl.concat(usable).unique() if usable else pl.DataFrame()
        assert rows.height == keys.height  # every usable (tag, ts) stored, once
        # the first value given for a (tag, ts) is the one kept; NaN and inf come back as null
        first: dict[tuple[str, datetime], float | None] = {}
        for batch in accepted:
            for tag, ts, value in batch.select("tag", "ts", "value").rows():
                if tag and (tag, ts) not in first:
                    first[tag, ts] = value if value is not None and math.isfinite(value) else None
        stored = {(tag, ts): value for tag, ts, value in rows.select("tag", "ts", "value").rows()}
        assert stored == first


def test_naive_timestamps_in_a_stream_are_refused_naming_the_column(tmp_path: Path) -> None:
    batch = pl.DataFrame({"tag": ["T"], "ts": [datetime(2026, 3, 1)], "value": [1.0]})
    try:
        Historian(tmp_path).append(batch)
    except TwinError as exc:
        assert "'ts'" in str(exc) and "naive" in str(exc)
    else:
        raise AssertionError("naive timestamps were stored")


def test_epoch_times_out_of_range_are_bad_rows_not_a_crash(tmp_path: Path) -> None:
    """Found by the fuzzing above: a huge epoch number overflowed the µs cast of the whole
    column (polars InvalidOperationError) instead of being reported as that row's problem."""
    path = tmp_path / "epoch.parquet"
    pl.DataFrame({"ts": [1e300, 1772323200.0, -1.0], "T": [1.0, 2.0, 3.0]}).write_parquet(path)
    report = import_file(path, SPEC, Historian(tmp_path / "store"))
    assert report.rows_stored == 1
    assert [n for n, _ in report.bad_rows] == [1, 3]
    assert "is not epoch seconds" in report.bad_rows[0][1]
