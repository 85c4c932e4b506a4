"""Import CSV/Parquet exports into the historian, reporting every row it cannot use.

:func:`import_file` reads an export in wide form (a time column plus one column per tag) or
long form (``ts, tag, value[, quality | status]``), as :class:`ReadOptions` say (delimiter,
decimal comma, time format and zone: see :mod:`connectors.files_read`), and appends the samples
in chunks. A tag is read from its spec ``column`` when it has one, else from the column of its
name; ``columns`` (``--map COL=TAG``) overrides both. Rows it cannot use are reported by line
and reason, never guessed at; a spec tag the file lacks is named, a value outside its tag's
``[lo, hi]`` is stored with quality uncertain and counted, and an MV that never moves is named.

:class:`ReplaySource` (re-exported from :mod:`connectors.replay`) streams a stored history back
at a chosen speed through the same interface as the live OPC-UA collector: import, then replay.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import polars as pl

from connectors.files_parse import LINE, TS, WHY, drop_repeats, is_readable, long_rows, wide_rows
from connectors.files_read import CHUNK_ROWS, ExportError, Format, ReadOptions, open_export
from connectors.replay import ReplaySource
from twin.spec import PlantSpec
from twin.store.historian import Historian
from twin.store.schema import STATUS_OF

__all__ = [
    "CHUNK_ROWS",
    "ImportFileError",
    "ImportReport",
    "ReadOptions",
    "ReplaySource",
    "import_file",
]

log = logging.getLogger(__name__)

MAX_REPORTED = 1000
"""bad rows kept with their reason in a report (all of them are counted)"""
OUT_OF_RANGE_STATUS = 0x4094_0000
"""status stored for a sample outside its tag's [lo, hi]: OPC-UA UncertainEngineeringUnitsExceeded"""

_LONG_COLUMNS = ("tag", "value", "quality", "status")


class ImportFileError(ExportError):
    """An export cannot be imported at all; names the file, and carries the report if any."""

    def __init__(self, file: str | Path, message: str, report: ImportReport | None = None) -> None:
        super().__init__(file, message)
        self.report = report


@dataclass(frozen=True)
class ImportReport:
    """What one import read, stored and rejected (``bad_rows`` holds the first problems)."""

    file: str
    format: Format
    layout: Literal["wide", "long"]
    timestamps: str
    """how the time column was read, e.g. "times as '%d.%m.%Y %H:%M:%S', read as local time
    in Europe/Berlin" (with the delimiter and decimal comma when not the plain CSV ones)"""
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
    columns: Mapping[str, str] = field(default_factory=dict)
    """file column -> tag, where the two differ (wide)"""
    missing_tags: tuple[str, ...] = ()
    """spec tags without a column in the file (wide) or without a row (long)"""
    out_of_range: Mapping[str, int] = field(default_factory=dict)
    """per tag, samples outside its [lo, hi] (stored with quality uncertain)"""
    still_mvs: tuple[str, ...] = ()
    """MVs whose value never changes in the file: a model learns nothing of their effect"""

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
        if self.columns:
            out.append(
                "columns read as: " + ", ".join(f"{c} -> {t}" for c, t in self.columns.items())
            )
        if self.skipped_columns:
            out.append(f"skipped columns: {', '.join(self.skipped_columns)}")
        out.extend(_warnings(self))
        if self.bad_count:
            shown = self.bad_rows[:max_lines]
            out.append(f"{self.bad_count} {where}s with problems (first {len(shown)}):")
            out.extend(f"  {where} {n}: {why}" for n, why in shown)
            if any(why.startswith("unparseable timestamp") for _, why in shown):
                out.append("  (give the time format with --time-format, e.g. '%d.%m.%Y %H:%M:%S')")
        return "\n".join(out)


def _warnings(report: ImportReport) -> list[str]:
    """The report's warnings, one line each: tags missing, values out of range, still MVs."""
    out = []
    if report.missing_tags:
        out.append(
            f"WARNING: tags not in the file: {', '.join(report.missing_tags)} (map a column "
            "to a tag with --map COL=TAG or the tag's 'column' in the spec)"
        )
    if report.out_of_range:
        counts = ", ".join(f"{t}: {n}" for t, n in report.out_of_range.items())
        out.append(f"WARNING: samples outside [lo, hi], stored as uncertain: {counts}")
    if report.still_mvs:
        out.append(
            f"WARNING: MVs that never move in the file: {', '.join(report.still_mvs)} (a model "
            "learns nothing of their effect from it)"
        )
    return out


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
    outside: dict[str, int] = field(default_factory=dict)
    spread: dict[str, tuple[float, float]] = field(default_factory=dict)
    """(min, max) of each MV's usable values"""

    def add_bad(self, frame: pl.DataFrame) -> None:
        self.bad_count += frame.height
        room = MAX_REPORTED - len(self.bad)
        if room > 0:
            self.bad.extend(frame.head(room).rows())

    def add_good(self, rows: pl.DataFrame, parsed: int, stored: int, mvs: list[str]) -> None:
        self.parsed += parsed
        self.stored += stored
        if rows.height:
            self.tags.update(rows["tag"].unique().to_list())
            lo, hi = rows["ts"].min(), rows["ts"].max()
            assert isinstance(lo, datetime) and isinstance(hi, datetime)
            self.start = lo if self.start is None else min(self.start, lo)
            self.end = hi if self.end is None else max(self.end, hi)
        usable = pl.col("value").is_finite() & (pl.col("status") < STATUS_OF["bad"])
        moves = rows.filter(pl.col("tag").is_in(mvs) & usable).group_by("tag")
        spread = moves.agg(pl.col("value").min().alias("lo"), pl.col("value").max().alias("hi"))
        for tag, lo_v, hi_v in spread.rows():
            old = self.spread.get(tag, (lo_v, hi_v))
            self.spread[tag] = (min(old[0], lo_v), max(old[1], hi_v))


def import_file(
    path: str | Path,
    spec: PlantSpec,
    historian: Historian,
    options: ReadOptions | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    tz: str | None = None,
    ts_column: str | None = None,
    fmt: Format | None = None,
) -> ImportReport:
    """Append the samples of a CSV or Parquet export to ``historian``; report what was not used.

    The layout is long when the file has ``tag`` and ``value`` columns (quality from a
    ``status`` column if there is one, else from ``quality``: good / uncertain / bad in any
    case, or a numeric OPC-UA status code), else wide (one column per tag). ``options`` say how
    the file is written; ``tz``, ``ts_column`` and ``fmt`` override theirs. ``columns`` maps
    file columns to tags (``--map``; in a long file: names in its ``tag`` column).

    Raises :class:`ImportFileError` (the historian untouched) for a missing, empty or unreadable
    file, a file without its time column or without any tag column, and a file where no row
    parses (then ``.report`` lists why). Rows are appended in chunks of :data:`CHUNK_ROWS`; an
    import that fails midway (e.g. a file truncated while it is read) keeps what it stored, and
    running it again stores only what is missing.
    """
    t0 = time.perf_counter()
    path = Path(path)
    opt = options or ReadOptions()
    opt = dataclasses.replace(
        opt,
        tz=opt.tz if tz is None else tz,
        ts_column=ts_column or opt.ts_column,
        fmt=fmt or opt.fmt,
    )
    try:
        export = open_export(path, opt)
    except ExportError as exc:
        raise ImportFileError(path, exc.message) from None
    names = export.columns
    long = "tag" in names and "value" in names
    mapping = _column_map(path, spec, names, columns or {}, long)
    if long:
        used = [export.ts_column, *(c for c in _LONG_COLUMNS if c in names)]
    else:
        used = [export.ts_column, *mapping]
    for col in used[1:]:
        if col != "tag" and not is_readable(export.schema[col]):
            raise ImportFileError(
                path, f"column {col!r} holds {export.schema[col]}, not numbers or text"
            )
    skipped = tuple(c for c in names if c not in used)
    if skipped:
        log.warning("%s: skipping columns %s", path, list(skipped))
    tally = _Tally()
    mvs = [t.name for t in spec.mvs]
    try:
        for raw in export.chunks():
            tally.rows += raw.height
            chunk = export.times.add(raw)
            if long:
                good, bad = long_rows(
                    chunk, spec, export.schema, export.times, export.decimal_comma, mapping
                )
            else:
                good, bad = wide_rows(
                    chunk, mapping, export.schema, export.times, export.decimal_comma
                )
            parsed = good.height
            good, clashes = drop_repeats(good, "line" if export.fmt == "csv" else "row")
            bad = pl.concat([bad, clashes]).group_by(LINE).agg(pl.col(WHY).str.join("; "))
            tally.add_bad(bad.sort(LINE))
            good, outside = mark_out_of_range(good, spec)
            for tag, n in outside.items():
                tally.outside[tag] = tally.outside.get(tag, 0) + n
            rows = good.select("tag", pl.col(TS).alias("ts"), "value", "status")
            stored = historian.append(rows) if rows.height else 0
            tally.add_good(rows, parsed - clashes.height, stored, mvs)
    except ExportError as exc:
        raise ImportFileError(path, f"{exc.message} ({tally.stored} samples stored)") from exc
    read_as = export.describe()
    report = ImportReport(
        file=str(path),
        format=export.fmt,
        layout="long" if long else "wide",
        timestamps=export.times.describe() + (f"; {read_as}" if read_as else ""),
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
        columns={} if long else {c: t for c, t in mapping.items() if c != t},
        missing_tags=tuple(
            t
            for t in spec.tag_names
            if (t not in tally.tags if long else t not in mapping.values())
        ),
        out_of_range={t: tally.outside[t] for t in spec.tag_names if t in tally.outside},
        still_mvs=tuple(t for t in mvs if t in tally.spread and len(set(tally.spread[t])) == 1),
    )
    if tally.rows == 0:
        raise ImportFileError(path, "the file has a header but no data rows", report)
    if tally.parsed == 0:
        raise ImportFileError(
            path, f"none of its {tally.rows} rows could be used:\n{report.summary()}", report
        )
    for line in _warnings(report):
        log.warning("%s: %s", path, line.removeprefix("WARNING: "))
    log.info("imported %s: %d samples stored, %d bad rows", path, tally.stored, tally.bad_count)
    return report


def _column_map(
    path: Path, spec: PlantSpec, names: list[str], given: Mapping[str, str], long: bool
) -> dict[str, str]:
    """File column -> tag of a wide file: ``given`` (``--map``) first, then each other tag's spec
    ``column`` or, without one or when the file lacks it, its name. For a long file: name in its
    ``tag`` column -> tag, where the two differ."""
    mapped: dict[str, str] = {}
    for col, tag in given.items():
        if tag not in spec.tag_names:
            raise ImportFileError(
                path, f"--map {col}={tag}: plant {spec.name!r} has no tag {tag!r} "
                f"(tags: {spec.tag_names})",
            )  # fmt: skip
        if not long and col not in names:
            raise ImportFileError(path, f"--map {col}={tag}: no column {col!r} (columns: {names})")
        if tag in mapped:
            raise ImportFileError(
                path, f"--map: tag {tag!r} is mapped from {mapped[tag]!r} and {col!r}"
            )
        mapped[tag] = col
    mapping = dict(given)
    for t in spec.tags:
        col = t.column or t.name
        if not long and col not in names and t.name in names:
            col = t.name  # the spec names a column, the file uses tag names
        if t.name in mapped or col in mapping or not (long or col in names):
            continue
        mapping[col] = t.name
    if long:
        return {c: t for c, t in mapping.items() if c != t}
    if not mapping:
        expected = [
            t.name if not t.column else f"{t.name} (column {t.column!r})" for t in spec.tags
        ]
        raise ImportFileError(
            path,
            f"no column is a tag of plant {spec.name!r}: columns found {names}, tags expected "
            f"{expected}; map a column to a tag with --map COL=TAG or a tag's 'column' in the "
            "spec (a long export needs 'tag' and 'value' columns)",
        )
    return mapping


def mark_out_of_range(good: pl.DataFrame, spec: PlantSpec) -> tuple[pl.DataFrame, dict[str, int]]:
    """``good`` with each good sample outside its tag's ``[lo, hi]`` made uncertain
    (:data:`OUT_OF_RANGE_STATUS`), and how many samples (bad ones aside) were outside, per tag."""

    def limit(values: list[float]) -> pl.Expr:
        return pl.col("tag").replace_strict(
            spec.tag_names, values, default=None, return_dtype=pl.Float64
        )

    value, status = pl.col("value"), pl.col("status")
    outside = (value < limit([t.lo for t in spec.tags])) | (
        value > limit([t.hi for t in spec.tags])
    )
    flagged = good.with_columns(
        (outside.fill_null(False) & (status < STATUS_OF["bad"])).alias("__outside")
    )
    counts = flagged.filter("__outside").group_by("tag").len()
    marked = flagged.with_columns(
        pl.when(pl.col("__outside") & (status < STATUS_OF["uncertain"]))
        .then(pl.lit(OUT_OF_RANGE_STATUS, pl.UInt32))
        .otherwise(status)
        .alias("status")
    ).drop("__outside")
    return marked, {str(t): int(n) for t, n in counts.iter_rows()}
