"""Opening an export for :mod:`connectors.files` (import) and :mod:`connectors.infer` (spec drafts).

:class:`ReadOptions` says how a file is written (format, delimiter, decimal comma, time column,
time format, time zone); :func:`open_export` checks what can be checked before a row is read
(the file, the zone, the header, the time column) and returns an :class:`Export` whose
:meth:`Export.chunks` yields the rows still as read (text for CSV), each with its file line.
What the options leave open is found out from the file: the delimiter from the header (``,``
unless another one splits it into more fields), a decimal comma in a ``;``-separated file, the
time column among the usual names.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from connectors.files_parse import EXTRA, LINE, Times
from twin.errors import DataQualityError

CHUNK_ROWS = 250_000
"""rows read at a time: a large file is never in memory twice"""
ROW = "__row"  # 0-based record index from the reader
#: names a time column goes by (any case), tried in this order when none is given
TIME_COLUMNS = ("ts", "timestamp", "time", "datetime", "date_time", "date", "zeitstempel", "zeit")
_DELIMITERS = (",", ";", "\t", "|")

Format = Literal["csv", "parquet"]


class ExportError(DataQualityError):
    """An export cannot be read at all; the message names the file."""

    def __init__(self, file: str | Path, message: str) -> None:
        self.file = str(file)
        self.message = message
        super().__init__(f"{file}: {message}")


@dataclass(frozen=True)
class ReadOptions:
    """How an export is written; None: found out from the file."""

    fmt: Format | None = None
    """csv or parquet (default: from the extension: .csv, .txt, .parquet, .pq)"""
    ts_column: str | None = None
    """the time column (default: the first column called ts, timestamp, time, ... in any case)"""
    delimiter: str | None = None
    """CSV field separator (default: ``,`` unless ``;``, tab or ``|`` splits the header more)"""
    decimal_comma: bool | None = None
    """numbers written ``1,5`` (default: in a ``;``-separated file)"""
    time_format: str | None = None
    """strftime/chrono format of text times, e.g. ``%d.%m.%Y %H:%M:%S`` (default: ISO 8601,
    ``dd.mm.yyyy HH:MM[:SS]`` and ``mm/dd/yyyy HH:MM[:SS]``, or epoch seconds)"""
    dayfirst: bool = False
    """read ``01/02/2024`` as 1 February (default: 2 January)"""
    tz: str = "UTC"
    """IANA zone of naive times"""


@dataclass
class Export:
    """An opened export: its header, schema and how its rows are read (see :func:`open_export`)."""

    path: Path
    fmt: Format
    columns: list[str]
    schema: dict[str, pl.DataType]
    """each column's type as read: String for every CSV column"""
    ts_column: str
    separator: str | None
    """the CSV field separator (None for Parquet)"""
    decimal_comma: bool
    times: Times
    _frame: pl.LazyFrame

    def describe(self) -> str:
        """How the file is read, e.g. "';'-separated, decimal comma" (empty for plain CSV)."""
        out = []
        if self.separator not in (None, ","):
            out.append(f"{self.separator!r}-separated")
        if self.decimal_comma:
            out.append("decimal comma")
        return ", ".join(out)

    def chunks(self) -> Iterator[pl.DataFrame]:
        """Chunks of :data:`CHUNK_ROWS` rows with ``__line`` (the 1-based CSV line, the header
        being line 1, or Parquet row) and ``__extra`` (a CSV field past the header's). A read
        that fails midway (a file truncated meanwhile) raises :class:`ExportError` saying how
        many rows were read."""
        newlines = 0 if self.fmt == "csv" and _has_quotes(self.path) else None
        rows = 0
        try:
            for raw in self._frame.collect_batches(chunk_size=CHUNK_ROWS):
                if self.fmt == "csv":
                    chunk, newlines = _number_lines(raw, newlines)
                else:
                    chunk = raw.with_columns(
                        (pl.col(ROW).cast(pl.Int64) + 1).alias(LINE),
                        pl.lit(None, pl.String).alias(EXTRA),
                    )
                rows += chunk.height
                yield chunk
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise ExportError(self.path, f"reading stopped after {rows} rows: {exc}") from exc


def open_export(path: str | Path, options: ReadOptions | None = None) -> Export:
    """Open ``path`` as ``options`` say; :class:`ExportError` for a file that cannot be read."""
    opt = options or ReadOptions()
    path = Path(path)
    if not path.is_file():
        raise ExportError(path, "no such file")
    try:
        ZoneInfo(opt.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExportError(
            path, f"unknown time zone {opt.tz!r}: use an IANA name such as Europe/Berlin"
        ) from None
    fmt = opt.fmt or _format_of(path)
    separator: str | None = None
    if fmt == "csv":
        separator = opt.delimiter or _sniff_delimiter(path)
        columns, schema, frame = _open_csv(path, separator)
    else:
        columns, schema, frame = _open_parquet(path)
    ts_column = _time_column(path, columns, opt.ts_column)
    if not Times.accepts(schema[ts_column]):
        raise ExportError(path, f"time column {ts_column!r} holds {schema[ts_column]}")
    decimal_comma = opt.decimal_comma if opt.decimal_comma is not None else separator == ";"
    times = Times(ts_column, schema[ts_column], opt.tz, opt.time_format, opt.dayfirst)
    return Export(path, fmt, columns, schema, ts_column, separator, decimal_comma, times, frame)


def _format_of(path: Path) -> Format:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise ExportError(path, f"cannot tell the format from {suffix!r}: pass --format csv or parquet")


def _time_column(path: Path, columns: list[str], given: str | None) -> str:
    if given is not None:
        if given not in columns:
            raise ExportError(
                path,
                f"no {given!r} column (columns: {columns}); name the time column with --ts-column",
            )
        return given
    lower = {c.lower(): c for c in reversed(columns)}
    for name in TIME_COLUMNS:
        if name in lower:
            return lower[name]
    raise ExportError(
        path,
        f"no time column: none is called {', '.join(TIME_COLUMNS)} (columns: {columns}); "
        "name it with --ts-column",
    )


def _sniff_delimiter(path: Path) -> str:
    """``,`` unless ``;``, tab or ``|`` splits the header line into more fields."""
    with path.open("rb") as f:
        head = f.read(1 << 16).decode("utf-8", errors="replace").lstrip("\ufeff")
    line = head.splitlines()[0] if head else ""
    fields = {d: len(next(csv.reader([line], delimiter=d), [])) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: fields[d])  # the first of equals: ',' on a tie
    return best if fields[best] > fields[","] else ","


def _open_csv(path: Path, separator: str) -> tuple[list[str], dict[str, pl.DataType], pl.LazyFrame]:
    """Header, all-text schema and rows of a CSV; a field past the header's lands in __extra."""
    if len(separator.encode()) != 1:
        raise ExportError(path, f"the delimiter must be one character, got {separator!r}")
    try:
        header = pl.read_csv(
            path, n_rows=0, infer_schema=False, encoding="utf8-lossy", separator=separator
        ).columns
    except pl.exceptions.NoDataError:
        raise ExportError(path, "the file is empty") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ExportError(path, f"not a readable CSV file: {exc}") from exc
    columns = [c.strip() for c in header]
    for c in columns:
        m = re.fullmatch(r"(.*)_duplicated_\d+", c)
        if m and m.group(1) in columns:
            raise ExportError(path, f"column {m.group(1)!r} appears more than once in the header")
    names = [*columns, EXTRA]
    lf = pl.scan_csv(
        path,
        has_header=False,
        skip_rows=1,
        separator=separator,
        new_columns=names,
        schema=dict.fromkeys(names, pl.String),
        truncate_ragged_lines=True,
        missing_columns="insert",
        row_index_name=ROW,
        encoding="utf8-lossy",
    )
    return columns, {c: pl.String() for c in columns}, lf


def _open_parquet(path: Path) -> tuple[list[str], dict[str, pl.DataType], pl.LazyFrame]:
    try:
        lf = pl.scan_parquet(path)
        schema = dict(lf.collect_schema())
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ExportError(path, f"not a readable Parquet file: {exc}") from exc
    if not schema:
        raise ExportError(path, "the file is empty (no columns)")
    return list(schema), schema, lf.with_row_index(ROW)


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
    row = pl.col(ROW).cast(pl.Int64)
    if newlines is None:
        return chunk.with_columns((row + 2).alias(LINE)), None
    text = [c for c in chunk.columns if c != ROW]
    nl = pl.sum_horizontal(
        pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in text
    ).cast(pl.Int64)
    chunk = chunk.with_columns(nl.alias("__nl"))
    line = row + 2 + newlines + pl.col("__nl").cum_sum() - pl.col("__nl")
    total = int(chunk["__nl"].sum())
    return chunk.with_columns(line.alias(LINE)).drop("__nl"), newlines + total
