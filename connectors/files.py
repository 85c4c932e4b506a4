"""Import CSV/Parquet exports into the historian, reporting every row it cannot use.

:func:`import_file` reads an export in wide form (``ts`` plus one column per tag) or long form
(``ts, tag, value[, quality | status]``), parses timestamps (ISO 8601 with an offset or ``Z``;
naive ones in a given IANA zone; epoch seconds when the column is numeric) and appends the
samples in chunks. Rows it cannot use are reported by line and reason, never guessed at.

:class:`ReplaySource` (re-exported from :mod:`connectors.replay`) streams a stored history back
at a chosen speed through the same interface as the live OPC-UA collector: import, then replay.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from connectors.files_parse import (
    EXTRA,
    LINE,
    TS,
    WHY,
    Times,
    drop_repeats,
    is_readable,
    long_rows,
    wide_rows,
)
from connectors.replay import ReplaySource
from twin.errors import DataQualityError
from twin.spec import PlantSpec
from twin.store.historian import Historian

__all__ = ["ImportFileError", "ImportReport", "ReplaySource", "import_file"]

log = logging.getLogger(__name__)

CHUNK_ROWS = 250_000
"""rows read and appended at a time: a large file is never in memory twice"""
MAX_REPORTED = 1000
"""bad rows kept with their reason in a report (all of them are counted)"""

_LONG_COLUMNS = ("tag", "value", "quality", "status")
_ROW = "__row"  # 0-based record index from the reader

Format = Literal["csv", "parquet"]


class ImportFileError(DataQualityError):
    """An export cannot be imported at all; names the file, and carries the report if any."""

    def __init__(self, file: str | Path, message: str, report: ImportReport | None = None) -> None:
        self.file = str(file)
        self.report = report
        super().__init__(f"{file}: {message}")


@dataclass(frozen=True)
class ImportReport:
    """What one import read, stored and rejected (``bad_rows`` holds the first problems)."""

    file: str
    format: Format
    layout: Literal["wide", "long"]
    timestamps: str
    """how the time column was read, e.g. 'ISO 8601 times, naive ones read as Europe/Berlin'"""
    rows_read: int
    """data rows (records) in the file"""
    samples_parsed: int
    """samples (tag, ts, value) that parsed and were handed to the historian"""
    rows_stored: int
    """samples newly stored. A sample repeated in the file (same tag and ts) or already stored
    is stored once, the first one kept; a repeat with another value is reported when it falls
    in the same chunk of :data:`CHUNK_ROWS` rows as the first, else only counted here"""
    bad_rows: tuple[tuple[int, str], ...]
    """(line, reason) of the first :data:`MAX_REPORTED` rows with a problem; CSV lines count
    the header as line 1, Parquet rows count from 1"""
    bad_count: int
    skipped_columns: tuple[str, ...]
    """columns that are not tags of the spec (wide) or not import columns (long)"""
    tags: tuple[str, ...]
    start: datetime | None
    end: datetime | None
    seconds: float

    def summary(self, max_lines: int = 20) -> str:
        """A few lines for a person: what was stored, what was skipped, the first bad rows."""
        where = "line" if self.format == "csv" else "row"
        repeated = self.samples_parsed - self.rows_stored
        out = [
            f"{self.file} ({self.format}, {self.layout}, {self.timestamps}): "
            f"{self.rows_read} rows read, {self.samples_parsed} samples parsed, "
            f"{self.rows_stored} stored ({repeated} already stored or repeated in the file) "
            f"in {self.seconds:.2f} s"
        ]
        if self.tags:
            out.append(f"tags: {', '.join(self.tags)}; time range {self.start} .. {self.end}")
        if self.skipped_columns:
            out.append(f"skipped columns: {', '.join(self.skipped_columns)}")
        if self.bad_count:
            shown = self.bad_rows[:max_lines]
            out.append(f"{self.bad_count} {where}s with problems (first {len(shown)}):")
            out.extend(f"  {where} {n}: {why}" for n, why in shown)
        return "\n".join(out)


@dataclass
class _Tally:
    """Running counts of one import (internal)."""

    bad: list[tuple[int, str]] = field(default_factory=list)
    bad_count: int = 0
    rows: int = 0
    parsed: int = 0
    stored: int = 0
    tags: set[str] = field(default_factory=set)
    start: datetime | None = None
    end: datetime | None = None

    def add_bad(self, frame: pl.DataFrame) -> None:
        self.bad_count += frame.height
        room = MAX_REPORTED - len(self.bad)
        if room > 0:
            self.bad.extend(frame.head(room).rows())

    def add_good(self, rows: pl.DataFrame, parsed: int, stored: int) -> None:
        self.parsed += parsed
        self.stored += stored
        if rows.height:
            self.tags.update(rows["tag"].unique().to_list())
            lo, hi = rows["ts"].min(), rows["ts"].max()
            assert isinstance(lo, datetime) and isinstance(hi, datetime)
            self.start = lo if self.start is None else min(self.start, lo)
            self.end = hi if self.end is None else max(self.end, hi)


def import_file(
    path: str | Path,
    spec: PlantSpec,
    historian: Historian,
    *,
    tz: str = "UTC",
    ts_column: str = "ts",
    fmt: Format | None = None,
) -> ImportReport:
    """Append the samples of a CSV or Parquet export to ``historian``; report what was not used.

    The layout is long when the file has ``tag`` and ``value`` columns (quality from a
    ``status`` column if there is one, else from ``quality``: good / uncertain / bad in any
    case, or a numeric OPC-UA status code), else wide (one column per tag). ``fmt`` overrides
    the format the extension gives (.csv, .txt, .parquet, .pq).

    Raises :class:`ImportFileError` (the historian untouched) for a missing, empty or unreadable
    file, a file without ``ts_column`` or without any tag column, and a file where no row parses
    (then ``.report`` lists why). Rows are appended in chunks of :data:`CHUNK_ROWS`; an import
    that fails midway (e.g. a file truncated while it is read) keeps what it stored, and running
    it again stores only what is missing.
    """
    t0 = time.perf_counter()
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(path, "no such file")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImportFileError(
            path, f"unknown time zone {tz!r}: use an IANA name such as Europe/Berlin"
        ) from None
    fmt = fmt or _format_of(path)
    columns, schema, batches = _open_csv(path) if fmt == "csv" else _open_parquet(path)
    if ts_column not in columns:
        raise ImportFileError(
            path,
            f"no {ts_column!r} column (columns: {columns}); name the time column with --ts-column",
        )
    long = "tag" in columns and "value" in columns
    if long:
        used = [ts_column, *(c for c in _LONG_COLUMNS if c in columns)]
    else:
        used = [ts_column, *(c for c in columns if c in spec.tag_names)]
        if len(used) == 1:
            raise ImportFileError(
                path,
                f"no column is a tag of plant {spec.name!r} (columns: {columns}; tags: "
                f"{spec.tag_names}); a long export needs 'tag' and 'value' columns",
            )
    skipped = tuple(c for c in columns if c not in used)
    if skipped:
        log.warning("%s: skipping columns %s", path, list(skipped))
    if not Times.accepts(schema[ts_column]):
        raise ImportFileError(path, f"time column {ts_column!r} holds {schema[ts_column]}")
    for col in used[1:]:
        if not is_readable(schema[col]) and col != "tag":
            raise ImportFileError(path, f"column {col!r} holds {schema[col]}, not numbers or text")
    tally = _Tally()
    times = Times(ts_column, schema[ts_column], tz)
    split = long_rows if long else wide_rows
    newlines = 0 if fmt == "csv" and _has_quotes(path) else None
    for raw in _guarded(path, batches, tally):
        if fmt == "csv":
            chunk, newlines = _number_lines(raw, newlines)
        else:
            chunk = raw.with_columns(
                (pl.col(_ROW).cast(pl.Int64) + 1).alias(LINE), pl.lit(None, pl.String).alias(EXTRA)
            )
        tally.rows += chunk.height
        good, bad = split(times.add(chunk), spec, schema, times)
        parsed = good.height
        good, clashes = drop_repeats(good, "line" if fmt == "csv" else "row")
        bad = pl.concat([bad, clashes]).group_by(LINE).agg(pl.col(WHY).str.join("; "))
        tally.add_bad(bad.sort(LINE))
        rows = good.select("tag", pl.col(TS).alias("ts"), "value", "status")
        tally.add_good(rows, parsed - clashes.height, historian.append(rows) if rows.height else 0)
    report = ImportReport(
        file=str(path),
        format=fmt,
        layout="long" if long else "wide",
        timestamps=times.describe(),
        rows_read=tally.rows,
        samples_parsed=tally.parsed,
        rows_stored=tally.stored,
        bad_rows=tuple(tally.bad),
        bad_count=tally.bad_count,
        skipped_columns=skipped,
        tags=tuple(t for t in spec.tag_names if t in tally.tags),
        start=tally.start,
        end=tally.end,
        seconds=time.perf_counter() - t0,
    )
    if tally.rows == 0:
        raise ImportFileError(path, "the file has a header but no data rows", report)
    if tally.parsed == 0:
        raise ImportFileError(
            path, f"none of its {tally.rows} rows could be used:\n{report.summary()}", report
        )
    log.info("imported %s: %d samples stored, %d bad rows", path, tally.stored, tally.bad_count)
    return report


# --- reading ----------------------------------------------------------------------------------


def _format_of(path: Path) -> Format:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise ImportFileError(
        path, f"cannot tell the format from {suffix!r}: pass --format csv or parquet"
    )


def _open_csv(path: Path) -> tuple[list[str], dict[str, pl.DataType], Iterator[pl.DataFrame]]:
    """Header, all-text schema and chunks of a CSV; a field past the header's lands in __extra."""
    try:
        header = pl.read_csv(path, n_rows=0, infer_schema=False, encoding="utf8-lossy").columns
    except pl.exceptions.NoDataError:
        raise ImportFileError(path, "the file is empty") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ImportFileError(path, f"not a readable CSV file: {exc}") from exc
    columns = [c.strip() for c in header]
    for c in columns:
        m = re.fullmatch(r"(.*)_duplicated_\d+", c)
        if m and m.group(1) in columns:
            raise ImportFileError(
                path, f"column {m.group(1)!r} appears more than once in the header"
            )
    names = [*columns, EXTRA]
    lf = pl.scan_csv(
        path,
        has_header=False,
        skip_rows=1,
        new_columns=names,
        schema=dict.fromkeys(names, pl.String),
        truncate_ragged_lines=True,
        missing_columns="insert",
        row_index_name=_ROW,
        encoding="utf8-lossy",
    )
    schema: dict[str, pl.DataType] = {c: pl.String() for c in columns}
    return columns, schema, iter(lf.collect_batches(chunk_size=CHUNK_ROWS))


def _open_parquet(path: Path) -> tuple[list[str], dict[str, pl.DataType], Iterator[pl.DataFrame]]:
    try:
        lf = pl.scan_parquet(path)
        schema = dict(lf.collect_schema())
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ImportFileError(path, f"not a readable Parquet file: {exc}") from exc
    if not schema:
        raise ImportFileError(path, "the file is empty (no columns)")
    return (
        list(schema),
        schema,
        iter(lf.with_row_index(_ROW).collect_batches(chunk_size=CHUNK_ROWS)),
    )


def _guarded(path: Path, batches: Iterator[pl.DataFrame], tally: _Tally) -> Iterator[pl.DataFrame]:
    """``batches``, with a read that fails midway (file truncated meanwhile) as ImportFileError."""
    try:
        yield from batches
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ImportFileError(
            path, f"reading stopped after {tally.rows} rows ({tally.stored} samples stored): {exc}"
        ) from exc


def _has_quotes(path: Path) -> bool:
    """Whether a CSV has any quoted field: only those can span lines."""
    with path.open("rb") as f:
        while block := f.read(1 << 23):
            if b'"' in block:
                return True
    return False


def _number_lines(chunk: pl.DataFrame, newlines: int | None) -> tuple[pl.DataFrame, int | None]:
    """Add the 1-based file line of each CSV record (the header is line 1).

    ``newlines`` counts line breaks inside quoted fields of earlier chunks; None when the file has
    no quotes at all, so one record is one line.
    """
    row = pl.col(_ROW).cast(pl.Int64)
    if newlines is None:
        return chunk.with_columns((row + 2).alias(LINE)), None
    text = [c for c in chunk.columns if c != _ROW]
    nl = pl.sum_horizontal(
        pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in text
    ).cast(pl.Int64)
    chunk = chunk.with_columns(nl.alias("__nl"))
    line = row + 2 + newlines + pl.col("__nl").cum_sum() - pl.col("__nl")
    total = int(chunk["__nl"].sum())
    return chunk.with_columns(line.alias(LINE)).drop("__nl"), newlines + total
