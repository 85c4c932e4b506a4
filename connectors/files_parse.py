"""Parsing of export rows for :mod:`connectors.files`: times, numbers, quality, both layouts.

Every function works on one chunk of a file whose columns are still as read (text for CSV) plus
``__line`` (the 1-based line or row) and ``__extra`` (a field past the header's, CSV only). They
split the chunk into good samples ``[__line, tag, __ts, value, status]`` and bad rows
``[__line, __why]``; reasons are only built for the bad rows, so a clean file pays little.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from twin.spec import PlantSpec
from twin.store.schema import STATUS_OF

_GOOD, _BAD = STATUS_OF["good"], STATUS_OF["bad"]
_EPOCH_MAX_S = 7.3e9  # about the year 2200: larger numbers are more likely milliseconds
_AWARE_FORMATS = tuple(
    f"%Y-%m-%d{sep}%H:%M{sec}{zone}"
    for zone in ("Z", "%z")
    for sep in "T "
    for sec in (":%S%.f", "")
)
_NAIVE_FORMATS = (
    *(f"%Y-%m-%d{sep}%H:%M{sec}" for sep in "T " for sec in (":%S%.f", "")),
    "%Y-%m-%d",
    *(f"%d.%m.%Y %H:%M{sec}" for sec in (":%S%.f", "")),  # dotted dates are day first
    "%d.%m.%Y",
)
_MONTH_FIRST = (*(f"%m/%d/%Y %H:%M{sec}" for sec in (":%S%.f", "")), "%m/%d/%Y")
_DAY_FIRST = tuple(
    f"%d{sep}%m{sep}%Y{time}" for sep in "/-" for time in (" %H:%M:%S%.f", " %H:%M", "")
)
EXTRA, LINE, TS, WHY = "__extra", "__line", "__ts", "__why"
"""column names of the chunks: a field past the header's, file line, parsed time, reason"""
_UTC_US = pl.Datetime("us", "UTC")
_OK, _MISSING, _UNPARSEABLE, _OUT_OF_RANGE = 0, 1, 2, 3  # per-field states


class Times:
    """Reads one file's time column into UTC, chunk by chunk (internal).

    Text goes through ``time_format`` if given, else through ISO 8601, ``dd.mm.yyyy`` and
    ``mm/dd/yyyy`` (``dd/mm/yyyy`` and ``dd-mm-yyyy`` with ``dayfirst``) formats, most successful
    first, each tried only on the rows the previous ones left; naive times are local times in
    ``tz``, and those a daylight-saving change makes ambiguous or nonexistent are reported, not
    guessed. A format with ``%z`` or ending in ``Z`` reads aware times.
    """

    def __init__(
        self,
        column: str,
        dtype: pl.DataType,
        tz: str,
        time_format: str | None = None,
        dayfirst: bool = False,
    ) -> None:
        self.column, self.dtype, self.tz = column, dtype, tz
        self.mode: str | None = None
        if time_format:
            aware = "%z" in time_format or time_format.endswith("Z")
            self.formats = [(time_format, aware)]
        else:
            naive = (*_NAIVE_FORMATS, *(_DAY_FIRST if dayfirst else _MONTH_FIRST))
            self.formats = [(f, True) for f in _AWARE_FORMATS] + [(f, False) for f in naive]
        self.hits = dict.fromkeys(self.formats, 0)

    @staticmethod
    def accepts(dtype: pl.DataType) -> bool:
        """Whether a time column of this type can be read (times, dates, numbers or text)."""
        return isinstance(dtype, pl.Datetime | pl.Date) or dtype.is_numeric() or dtype == pl.String

    def describe(self) -> str:
        """How the time column was read, for the report."""
        used = [f for f in self.formats if self.hits[f]]
        naive = f", naive ones read as {self.tz}" if any(not a for _, a in used) else ""
        return {
            "text": f"times as {', '.join(repr(f) for f, _ in used) or '(none parsed)'}{naive}",
            "epoch": "epoch seconds (UTC)",
            "aware": "time-zone-aware datetimes",
            "naive": f"naive datetimes read as {self.tz}",
            "date": f"dates read as midnight {self.tz}",
        }.get(self.mode or "", "no rows")

    def add(self, chunk: pl.DataFrame) -> pl.DataFrame:
        """``chunk`` with ``__ts`` (UTC, µs; null when unusable) and ``__ts_state``."""
        raw = chunk[self.column]
        self.mode = self.mode or self._mode_of(raw)
        if self.mode == "text":
            ts, state = self._parse_text(raw)
        elif self.mode == "epoch":
            ts, state = self._parse_epoch(raw)
        else:
            if self.mode == "aware":
                ts = raw.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
            else:
                naive = pl.lit(raw.cast(pl.Datetime("us")))
                ts = pl.select(_local_to_utc(naive, self.tz)).to_series()
            state = _states(raw.is_null(), pl.repeat(False, len(raw), eager=True), ts.is_null())
        return chunk.with_columns(ts.alias(TS), state.alias("__ts_state"))

    def why(self) -> pl.Expr:
        """Reason a row's time is unusable (null when it is fine)."""
        raw = pl.col(self.column).cast(pl.String)
        if self.mode == "epoch":
            out = "' is not epoch seconds between 1970 and 2200 (milliseconds?)"
        else:
            out = f"' does not exist or is ambiguous in {self.tz} (daylight-saving change)"
        state = pl.col("__ts_state")
        return (
            pl.when(state == _MISSING)
            .then(pl.lit("missing timestamp"))
            .when(state == _UNPARSEABLE)
            .then(pl.concat_str(pl.lit("unparseable timestamp '"), raw, pl.lit("'")))
            .when(state == _OUT_OF_RANGE)
            .then(pl.concat_str(pl.lit("time '"), raw, pl.lit(out)))
        )

    def _mode_of(self, raw: pl.Series) -> str:
        dtype = self.dtype
        if isinstance(dtype, pl.Datetime):
            return "aware" if dtype.time_zone else "naive"
        if isinstance(dtype, pl.Date):
            return "date"
        if dtype.is_numeric():
            return "epoch"
        text = raw.drop_nulls().head(10_000).str.strip_chars()
        text = text.filter(text != "")
        numeric = text.cast(pl.Float64, strict=False).is_not_null().sum()
        return "epoch" if text.len() and numeric > text.len() / 2 else "text"

    def _parse_text(self, raw: pl.Series) -> tuple[pl.Series, pl.Series]:
        missing = raw.is_null() | (raw.str.len_bytes() == 0)
        ts = pl.repeat(None, len(raw), dtype=_UTC_US, eager=True)
        no_local = pl.repeat(False, len(raw), eager=True)
        hits = self.hits
        for strip in (False, True):  # padded times are rare: strip only what is left
            for fmt, aware in self.formats:
                todo = (ts.is_null() & ~no_local & ~missing).arg_true()
                if todo.is_empty():
                    break
                text = raw.gather(todo)
                text = text.str.strip_chars() if strip else text
                if aware:
                    got = text.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")
                else:
                    naive = text.str.to_datetime(fmt, strict=False, time_unit="us")
                    got = pl.select(_local_to_utc(pl.lit(naive), self.tz)).to_series()
                    no_local = no_local.scatter(todo, naive.is_not_null() & got.is_null())
                ts = ts.scatter(todo, got)
                hits[fmt, aware] += got.count()
        self.formats.sort(key=lambda f: -hits[f])
        left = (ts.is_null() & ~no_local & ~missing).arg_true()
        if not left.is_empty():  # blanks are missing, not unparseable
            blank = raw.gather(left).str.strip_chars() == ""
            missing = missing.scatter(left.filter(blank), True)
        return ts, _states(missing, ts.is_null() & ~no_local, no_local)

    def _parse_epoch(self, raw: pl.Series) -> tuple[pl.Series, pl.Series]:
        text = raw.str.strip_chars() if raw.dtype == pl.String else raw
        seconds = text.cast(pl.Float64, strict=False)
        ok = seconds.is_finite() & (seconds >= 0) & (seconds < _EPOCH_MAX_S)
        # mask before scaling: a huge number out of range must not reach the Int64 cast
        micros = (pl.when(pl.lit(ok)).then(pl.lit(seconds)) * 1e6).round().cast(pl.Int64)
        ts = pl.select(pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC"))
        missing = text.is_null() | (text.cast(pl.String) == "")
        return ts.to_series(), _states(missing, seconds.is_null(), ~ok.fill_null(False))


def _states(missing: pl.Series, unparseable: pl.Series, out_of_range: pl.Series) -> pl.Series:
    """One UInt8 state per row: the first problem of missing / unparseable / out of range."""
    return pl.select(
        pl.when(pl.lit(missing))
        .then(_MISSING)
        .when(pl.lit(unparseable))
        .then(_UNPARSEABLE)
        .when(pl.lit(out_of_range))
        .then(_OUT_OF_RANGE)
        .otherwise(_OK)
        .cast(pl.UInt8)
    ).to_series()


def _local_to_utc(naive: pl.Expr, tz: str) -> pl.Expr:
    """Local wall time in ``tz`` to UTC; ambiguous or nonexistent (DST) times become null."""
    local = naive.dt.replace_time_zone(tz, ambiguous="null", non_existent="null")
    return local.dt.convert_time_zone("UTC")


def is_readable(dtype: pl.DataType) -> bool:
    return dtype == pl.String or dtype.is_numeric() or dtype == pl.Boolean


def numbers(col: str, dtype: pl.DataType, decimal_comma: bool) -> tuple[pl.Expr, pl.Expr]:
    """(value as Float64, state: ok / missing / unparseable) of a text or numeric column.

    Text is read here rather than by the CSV reader so that a bad cell is reported by line; a
    decimal comma is a comma in place of the point (``1.234,5`` is unparseable, not guessed).
    """
    raw = pl.col(col)
    if dtype != pl.String:
        value = raw.cast(pl.Float64)
        return value, pl.when(raw.is_null()).then(_MISSING).otherwise(_OK).cast(pl.UInt8)
    text = raw.str.strip_chars()
    if decimal_comma:
        text = text.str.replace(",", ".", literal=True)
    value = text.cast(pl.Float64, strict=False)
    state = pl.when(text.is_null() | (text == "")).then(_MISSING).when(value.is_null())
    return value, state.then(_UNPARSEABLE).otherwise(_OK).cast(pl.UInt8)


def _status(raw: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(OPC-UA status code, state) from good / uncertain / bad (any case) or a numeric code."""
    if raw.dtype == pl.String:  # few distinct values: parse each once
        distinct = raw.drop_nulls().unique()
        q = distinct.str.strip_chars().str.to_lowercase()
        parsed = pl.select(
            pl.coalesce(
                pl.lit(q).replace_strict(STATUS_OF, default=None, return_dtype=pl.Int64),
                pl.when(pl.lit(q).str.starts_with("0x"))
                .then(pl.lit(q).str.slice(2).str.to_integer(base=16, strict=False))
                .otherwise(pl.lit(q).str.to_integer(base=10, strict=False)),
            )
        ).to_series()
        code = raw.replace_strict(distinct, parsed, default=None, return_dtype=pl.Int64)
        blank = raw.replace_strict(distinct, q == "", default=True, return_dtype=pl.Boolean)
        missing = raw.is_null() | blank
    else:
        code, missing = raw.cast(pl.Int64, strict=False), raw.is_null()
    valid = code.is_between(0, 2**32 - 1).fill_null(False)
    state = _states(missing, ~valid, pl.repeat(False, len(raw), eager=True))
    return code.zip_with(valid, code.clear(len(code))).cast(pl.UInt32), state


def _row_why(raw_columns: list[str], times: Times, *checks: pl.Expr) -> pl.Expr:
    """Reasons a row cannot be used, joined by '; ' (for rows known to be bad)."""
    extra = pl.when(pl.col(EXTRA).is_not_null()).then(
        pl.lit(f"too many fields (the header has {len(raw_columns)})")
    )
    joined = pl.concat_str([extra, times.why(), *checks], separator="; ", ignore_nulls=True)
    empty = pl.all_horizontal(pl.col(c).is_null() for c in raw_columns)
    return pl.when(empty).then(pl.lit("empty row")).otherwise(joined)


def wide_rows(
    chunk: pl.DataFrame,
    columns: Mapping[str, str],
    schema: dict[str, pl.DataType],
    times: Times,
    decimal_comma: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Good samples ``[__line, tag, __ts, value, status]`` and bad ``[__line, __why]``.

    ``columns`` maps each file column read to its tag.
    """
    raw_columns = list(schema)
    row_ok = (pl.col("__ts_state") == _OK) & pl.col(EXTRA).is_null()
    bad = [chunk.filter(~row_ok).select(LINE, _row_why(raw_columns, times).alias(WHY))]
    rows = chunk.filter(row_ok)
    good = []
    for col, tag in columns.items():
        value, state = numbers(col, schema[col], decimal_comma)
        cells = rows.select(
            LINE, TS, pl.col(col).alias("__raw"), value.alias("__value"), state.alias("__state")
        )
        good.append(
            cells.filter(pl.col("__state") == _OK).select(
                LINE, pl.lit(tag).alias("tag"), TS, pl.col("__value").alias("value")
            )
        )
        why = (
            pl.when(pl.col("__state") == _MISSING)
            .then(pl.lit(f"missing value for {tag}"))
            .otherwise(
                pl.concat_str(pl.lit("unparseable number '"), "__raw", pl.lit(f"' for {tag}"))
            )
        )
        bad.append(cells.filter(pl.col("__state") != _OK).select(LINE, why.alias(WHY)))
    samples = pl.concat(good).with_columns(status=pl.lit(_GOOD, pl.UInt32))
    return samples, pl.concat(bad)


def long_rows(
    chunk: pl.DataFrame,
    spec: PlantSpec,
    schema: dict[str, pl.DataType],
    times: Times,
    decimal_comma: bool = False,
    rename: Mapping[str, str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Good samples ``[__line, tag, __ts, value, status]`` and bad ``[__line, __why]``.

    ``rename`` maps names in the ``tag`` column to the spec's tags (others are kept as they are).
    """
    value, value_state = numbers("value", schema["value"], decimal_comma)
    quality = "status" if "status" in schema else "quality" if "quality" in schema else None
    if quality:
        status, status_state = _status(chunk[quality])
    else:
        status = pl.repeat(_GOOD, chunk.height, dtype=pl.UInt32, eager=True)
        status_state = pl.repeat(_OK, chunk.height, dtype=pl.UInt8, eager=True)
    name = pl.col("tag").cast(pl.String).str.strip_chars()
    if rename:
        name = name.replace(dict(rename))
    chunk = chunk.with_columns(
        name.alias("__tag"),
        value.alias("__value"),
        value_state.alias("__value_state"),
        status.alias("__status"),
        status_state.alias("__status_state"),
    )
    tag, vstate, sstate = pl.col("__tag"), pl.col("__value_state"), pl.col("__status_state")
    masked = (vstate == _MISSING) & (pl.col("__status") >= _BAD)  # a bad sample without value
    ok = (
        (pl.col("__ts_state") == _OK)
        & pl.col(EXTRA).is_null()
        & tag.is_in(spec.tag_names)
        & ((vstate == _OK) | masked)
        & (sstate == _OK)
    )
    good = chunk.filter(ok).select(
        LINE,
        tag.alias("tag"),
        TS,
        pl.col("__value").alias("value"),
        pl.col("__status").alias("status"),
    )
    no_tag = tag.is_null() | (tag == "")
    unknown = pl.concat_str(pl.lit("unknown tag '"), tag, pl.lit(f"' (not in plant {spec.name!r})"))
    number = pl.concat_str(pl.lit("unparseable number '"), pl.col("value"), pl.lit("'"))
    code = pl.concat_str(
        pl.lit(f"unknown {quality} '"),
        pl.col(quality or "tag").cast(pl.String),
        pl.lit("' (expected good, uncertain, bad or an OPC-UA status code)"),
    )
    why = _row_why(
        list(schema),
        times,
        pl.when(no_tag).then(pl.lit("missing tag")),
        pl.when(~no_tag & ~tag.is_in(spec.tag_names)).then(unknown),
        pl.when((vstate == _MISSING) & ~masked.fill_null(False)).then(pl.lit("missing value")),
        pl.when(vstate == _UNPARSEABLE).then(number),
        pl.when(sstate == _MISSING).then(pl.lit(f"missing {quality}")),
        pl.when(sstate == _UNPARSEABLE).then(code),
    )
    return good, chunk.filter(~ok).select(LINE, why.alias(WHY))


def drop_repeats(good: pl.DataFrame, where: str = "line") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first of samples repeated in the file; report repeats that disagree with it."""
    none = pl.DataFrame(schema={LINE: pl.Int64, WHY: pl.String})
    keys = good.select("tag", TS)
    if keys.hash_rows().n_unique() == good.height:  # distinct hashes: no repeats (the usual case)
        return good, none
    repeated = keys.is_duplicated()
    repeats = good.filter(repeated)
    first = [
        pl.col(c).first().over("tag", TS).name.prefix("__first") for c in (LINE, "value", "status")
    ]
    repeats = repeats.sort(LINE).with_columns(first)
    clash = repeats.filter(
        (pl.col(LINE) != pl.col("__first" + LINE))
        & (
            ~pl.col("value").eq_missing(pl.col("__firstvalue"))
            | (pl.col("status") != pl.col("__firststatus"))
        )
    )
    why = pl.concat_str(
        pl.lit("tag "),
        pl.col("tag"),
        pl.lit(" at "),
        pl.col(TS).dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"),
        pl.lit(f" repeats {where} "),
        pl.col("__first" + LINE).cast(pl.String),
        pl.lit(" with another value or quality; kept the first"),
    )
    firsts = repeats.filter(pl.col(LINE) == pl.col("__first" + LINE)).select(good.columns)
    return pl.concat([good.filter(~repeated), firsts]), clash.select(LINE, why.alias(WHY))
