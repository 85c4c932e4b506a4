"""The historian's row schema and quality codes, and the row-level checks every store module shares.

Rows are long format, one sample a row, with the columns of :data:`SCHEMA`; ``status`` is the
raw OPC-UA StatusCode and ``quality`` its class (:data:`QUALITIES`, from the severity bits).

*Bad input* (what :func:`normalise` does before anything is written): NaN and ±inf values are
stored as null with quality ``bad`` (and a warning); rows without a tag name or a timestamp are
dropped (with a warning); naive timestamps, unknown columns and wrong types raise
:class:`DataQualityError`, and nothing of the batch is written.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import polars as pl

from twin.errors import DataQualityError

log = logging.getLogger(__name__)

QUALITIES = ("good", "uncertain", "bad")
SCHEMA: dict[str, pl.DataType] = {
    "tag": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "value": pl.Float64(),
    "quality": pl.Enum(QUALITIES),
    "status": pl.UInt32(),  # the raw OPC-UA StatusCode value
}
#: a status code of each quality class, used when a row gives its quality but not its status
STATUS_OF = {"good": 0x0000_0000, "uncertain": 0x4000_0000, "bad": 0x8000_0000}
#: the columns that identify a sample: a (tag, ts) pair is stored once
KEY = ["tag", "ts"]


def quality_of(status: int) -> str:
    """Quality class of an OPC-UA StatusCode from its severity bits (31-30)."""
    severity = (int(status) >> 30) & 0b11
    return "good" if severity == 0 else "uncertain" if severity == 1 else "bad"


def quality_expr(status: pl.Expr) -> pl.Expr:
    """Polars expression: the quality class (Enum) of a column of OPC-UA status codes."""
    severity = status.cast(pl.UInt32) // (1 << 30)
    return (
        pl.when(severity == 0)
        .then(pl.lit("good"))
        .when(severity == 1)
        .then(pl.lit("uncertain"))
        .otherwise(pl.lit("bad"))
        .cast(SCHEMA["quality"])
    )


def utc(value: datetime | None, name: str) -> datetime | None:
    """``value`` converted to UTC; DataQualityError naming ``name`` if it is naive."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise DataQualityError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise DataQualityError(f"{name} must be time-zone aware (UTC), got naive {value}")
    return value.astimezone(UTC)


def sort_unique(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` sorted by (tag, ts), keeping the first row of each (tag, ts)."""
    if rows.height < 2:
        return rows
    # sorting small integer codes (an Enum of the sorted tag names) in two stable passes is
    # several times faster than one sort on (string, datetime)
    names = rows.get_column("tag").unique().sort().to_list()
    return (
        rows.with_columns(_key=pl.col("tag").cast(pl.Enum(names)).to_physical())
        .sort("ts", maintain_order=True)
        .sort("_key", maintain_order=True)
        .filter(
            ((pl.col("_key").diff() != 0) | (pl.col("ts").diff() != timedelta(0))).fill_null(True)
        )
        .drop("_key")
    )


def normalise(rows: pl.DataFrame) -> pl.DataFrame:
    """Check ``rows`` against :data:`SCHEMA`, bring them to it, sorted and deduplicated."""
    if isinstance(rows, pl.LazyFrame):
        rows = rows.collect()
    if not isinstance(rows, pl.DataFrame):
        raise DataQualityError(f"append takes a polars DataFrame, got {type(rows).__name__}")
    unknown = [c for c in rows.columns if c not in SCHEMA]
    missing = [c for c in ("tag", "ts", "value") if c not in rows.columns]
    if unknown or missing:
        what = [f"unknown columns {unknown}"] * bool(unknown) + [f"missing {missing}"] * bool(
            missing
        )
        raise DataQualityError(
            f"historian rows: {' and '.join(what)} (columns are {list(SCHEMA)}; "
            "quality and status are optional)"
        )
    dtypes = rows.schema
    ts_type = dtypes["ts"]
    if not isinstance(ts_type, pl.Datetime):
        raise DataQualityError(f"column 'ts' must be a Datetime, got {ts_type}")
    if ts_type.time_zone is None:
        raise DataQualityError(
            "column 'ts' holds naive datetimes: give them a time zone (UTC), e.g. "
            "pl.col('ts').dt.replace_time_zone('UTC')"
        )
    if not (dtypes["value"].is_numeric() or dtypes["value"] in (pl.Boolean, pl.Null)):
        raise DataQualityError(f"column 'value' must be numeric, got {dtypes['value']}")
    if not (dtypes["tag"] in (pl.String, pl.Categorical, pl.Null) or dtypes["tag"] == pl.Enum):
        raise DataQualityError(f"column 'tag' must be a string, got {dtypes['tag']}")
    status = dtypes.get("status")
    if status is not None and not (status.is_integer() or status == pl.Null):
        raise DataQualityError(f"column 'status' must be an integer, got {status}")

    df = rows.with_columns(
        pl.col("tag").cast(pl.String),
        pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
        pl.col("value").cast(pl.Float64),
    )
    usable = pl.col("tag").is_not_null() & (pl.col("tag") != "") & pl.col("ts").is_not_null()
    kept = df.filter(usable)
    if kept.height < df.height:
        log.warning("dropping %d rows without a tag name or a timestamp", df.height - kept.height)
        df = kept
    if status is not None:
        wrong = df.filter((pl.col("status") < 0) | (pl.col("status") > 0xFFFF_FFFF))
        if not wrong.is_empty():
            raise DataQualityError(
                f"column 'status' must be a 32-bit OPC-UA status code; {wrong.height} rows are "
                f"outside 0..2^32-1, e.g. {wrong['status'][0]} for tag {wrong['tag'][0]!r}"
            )
    if "quality" in df.columns:
        given = df.get_column("quality").cast(pl.String)
        wrong_q = given.filter(given.is_not_null() & ~given.is_in(QUALITIES)).unique()
        if len(wrong_q):
            raise DataQualityError(
                f"column 'quality' must be one of {QUALITIES}, got {wrong_q.to_list()[:5]}"
            )
        df = df.with_columns(given.cast(SCHEMA["quality"]).alias("quality"))
        from_quality = pl.col("quality").replace_strict(
            STATUS_OF, default=0, return_dtype=pl.UInt32
        )
        if status is None:
            df = df.with_columns(status=from_quality)
        else:  # the worse of the two
            df = df.with_columns(pl.col("status").cast(pl.UInt32).fill_null(from_quality))
            worse = pl.max_horizontal(
                pl.col("quality").to_physical().fill_null(0),
                quality_expr(pl.col("status")).to_physical(),
            )
            df = df.with_columns(
                quality=worse.replace_strict(
                    dict(enumerate(QUALITIES)), return_dtype=SCHEMA["quality"]
                )
            )
    else:
        if status is None:
            df = df.with_columns(status=pl.lit(0, dtype=pl.UInt32))
        df = df.with_columns(
            pl.col("status").cast(pl.UInt32).fill_null(0),
            quality=quality_expr(pl.col("status").fill_null(0)),
        )
    value = df.get_column("value")
    not_finite = value.is_null() | value.is_nan() | value.is_infinite()
    if not_finite.any():
        nan_inf = int((value.is_nan() | value.is_infinite()).sum())
        if nan_inf:
            log.warning("%d NaN or infinite values stored as null with quality 'bad'", nan_inf)
        df = df.with_columns(
            value=pl.when(not_finite).then(None).otherwise(pl.col("value")),
            quality=pl.when(not_finite)
            .then(pl.lit("bad", dtype=SCHEMA["quality"]))
            .otherwise(pl.col("quality")),
        )
    return sort_unique(df.select(list(SCHEMA)))
