"""Regular frames: historian rows resampled onto a plant's sample period, gaps marked, never filled.

A frame is a wide polars DataFrame over ``[start, end)`` on the grid ``start, start + period, ...``
(``period`` = the spec's sample period). Its columns, tags in spec order:

- ``ts``: the grid time (UTC, µs).
- ``<tag>`` (Float64): the latest sample at or before ``ts``, carried forward at most ``max_gap``
  seconds; null unless the ``__ok`` column is True. An MV's value at ``ts`` is thus the one held
  over the interval that ends at ``ts`` (:data:`twin.spec.MV_TIMING`). For a spec with
  ``mv_timing = "from_row"`` (its data stamps an MV when it starts to act) an MV takes the
  latest sample strictly *before* ``ts`` instead: a sample stamped on a row counts from the next
  row on, one stamped between rows lands where it would anyway (:func:`retime_mvs`).
- ``<tag>__ok`` (Boolean): True where the value is usable (quality good or uncertain). This is
  the mask :func:`twin.model.dataset.frame_to_array` reads.
- ``<tag>__state`` (Enum :data:`FRAME_STATES`): why, per grid point:
  ``good``; ``uncertain`` (value kept, flagged); ``bad`` (the latest sample is bad: masked until
  the next good one); ``gap`` (inside a recorded communication outage, whatever was carried);
  ``missing`` (no sample within ``max_gap``, the tag is absent from the data, or the latest
  sample predates an outage that ended since: values are never carried across an outage).

:func:`frame_report` sums a frame up per tag (fraction missing, longest missing run).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

import polars as pl

from twin.errors import DataQualityError
from twin.spec import MV_TIMING, MvTiming, PlantSpec
from twin.store.schema import SCHEMA, quality_expr, sort_unique, utc

log = logging.getLogger(__name__)

FRAME_STATES = ("good", "uncertain", "bad", "gap", "missing")
STATE = pl.Enum(FRAME_STATES)
#: carry a value forward over at most this many sample periods unless told otherwise
DEFAULT_MAX_GAP_PERIODS = 3


def default_max_gap(spec: PlantSpec) -> float:
    """The default carry-forward limit in seconds: :data:`DEFAULT_MAX_GAP_PERIODS` periods."""
    return DEFAULT_MAX_GAP_PERIODS * spec.sample_period


def make_frame(
    data: pl.DataFrame | pl.LazyFrame,
    spec: PlantSpec,
    start: datetime,
    end: datetime,
    max_gap: float | None = None,
    *,
    gaps: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The wide frame of ``spec``'s tags over ``[start, end)`` from long rows (see module doc).

    ``data`` has columns ``tag, ts, value`` and ``quality`` or ``status`` (both optional: good);
    it should reach back ``max_gap`` before ``start`` so the first grid points have a value.
    ``max_gap`` is in seconds (``math.inf``: carry forward without limit; None: the default).
    ``gaps`` are recorded outages (``tag, start, end`` as from :meth:`Historian.gaps`).
    """
    start_utc, end_utc = utc(start, "start"), utc(end, "end")
    assert start_utc is not None and end_utc is not None
    gap_s = default_max_gap(spec) if max_gap is None else float(max_gap)
    if not gap_s > 0:
        raise ValueError(f"max_gap must be > 0 seconds (or math.inf), got {max_gap}")
    tags = spec.tag_names
    period_us = round(spec.sample_period * 1e6)
    grid = pl.DataFrame(
        {
            "ts": pl.datetime_range(
                start_utc,
                end_utc,
                interval=f"{period_us}us",
                closed="left",
                time_unit="us",
                time_zone="UTC",
                eager=True,
            )
        }
    )
    if grid.is_empty():
        return pl.DataFrame(schema=_frame_schema(tags))

    tolerance = timedelta(seconds=gap_s) if math.isfinite(gap_s) else None
    samples = _samples(data, tags, start_utc - tolerance if tolerance else None, end_utc)
    samples = retime_mvs(samples, spec)
    long = (
        pl.DataFrame({"tag": tags}, schema={"tag": pl.String})
        .join(grid, how="cross")
        .sort("ts", maintain_order=True)
        .join_asof(
            samples,
            on="ts",
            by="tag",
            strategy="backward",
            tolerance=tolerance,
            check_sortedness=False,  # both sides sorted by ts just above
        )
        .join_asof(
            _merged_gaps(gaps, tags), on="ts", by="tag", strategy="backward", check_sortedness=False
        )
    )
    has_gap = pl.col("gap_end").is_not_null()
    state = (
        pl.when(has_gap & (pl.col("ts") < pl.col("gap_end")))
        .then(pl.lit("gap"))
        .when(pl.col("sample_ts").is_null() | (has_gap & (pl.col("sample_ts") < pl.col("gap_end"))))
        .then(pl.lit("missing"))
        .otherwise(pl.col("quality").cast(pl.String))
        .cast(STATE)
    )
    long = long.with_columns(state=state).with_columns(
        ok=pl.col("state").is_in(["good", "uncertain"])
    )
    long = long.with_columns(value=pl.when("ok").then("value"))

    wide = [grid]
    for column, suffix in (("value", ""), ("ok", "__ok"), ("state", "__state")):
        part = long.pivot(on="tag", on_columns=tags, index="ts", values=column)
        wide.append(part.select([pl.col(t).alias(t + suffix) for t in tags]))
    frame = pl.concat(wide, how="horizontal")
    if frame.height != grid.height:  # a pivot reorders nothing; this guards the concat
        raise AssertionError("frame grid mismatch")
    return frame.cast(pl.Schema(_frame_schema(tags)))


def _frame_schema(tags: list[str]) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {"ts": SCHEMA["ts"]}
    schema.update({t: pl.Float64() for t in tags})
    schema.update({t + "__ok": pl.Boolean() for t in tags})
    schema.update({t + "__state": STATE for t in tags})
    return schema


def _samples(
    data: pl.DataFrame | pl.LazyFrame, tags: list[str], lo: datetime | None, end: datetime
) -> pl.DataFrame:
    """Long rows of ``tags`` in ``[lo, end)``, one per (tag, ts), sorted by ts, quality set."""
    lf = data.lazy()
    names = lf.collect_schema().names()
    missing = [c for c in ("tag", "ts", "value") if c not in names]
    if missing:
        raise DataQualityError(f"frame input lacks columns {missing} (it has {names})")
    if "quality" in names:
        quality = pl.col("quality").cast(pl.String).cast(SCHEMA["quality"])
    elif "status" in names:
        quality = quality_expr(pl.col("status"))
    else:
        quality = pl.lit("good", dtype=SCHEMA["quality"])
    value = pl.col("value").cast(pl.Float64)
    lf = lf.filter(pl.col("tag").is_in(tags), pl.col("ts") < end)
    if lo is not None:
        lf = lf.filter(pl.col("ts") >= lo)
    return (
        lf.select(
            pl.col("tag").cast(pl.String),
            pl.col("ts").dt.cast_time_unit("us"),
            pl.when(value.is_finite()).then(value).alias("value"),
            pl.when(value.is_finite()).then(quality).otherwise(pl.lit("bad")).alias("quality"),
        )
        .collect()
        .pipe(sort_unique)
        .with_columns(sample_ts=pl.col("ts"))
        .sort("ts")
    )


def retime_mvs(samples: pl.DataFrame, spec: PlantSpec) -> pl.DataFrame:
    """Long samples (``tag, ts, ...``, sorted by ts) with MV times moved into the convention.

    For a ``from_row`` spec each MV sample moves 1 µs later (the historian's resolution), so that
    the frame's "latest at or before the row" becomes "latest strictly before the row": the value
    applied from row ``t`` on is the one held over ``(t, t+1]``, stored at row ``t+1`` as the
    convention has it. ``sample_ts`` keeps the time as recorded. Other specs: unchanged.
    """
    if spec.mv_timing == MV_TIMING:
        return samples
    if spec.mv_timing != MvTiming.FROM_ROW:  # an MvTiming added without a rule here
        raise ValueError(f"no frame rule for MV timing {spec.mv_timing!r}")
    mvs = [t.name for t in spec.mvs]
    later = pl.col("ts") + pl.duration(microseconds=1)
    return samples.with_columns(
        ts=pl.when(pl.col("tag").is_in(mvs)).then(later).otherwise(pl.col("ts"))
    ).sort("ts")


def _merged_gaps(gaps: pl.DataFrame | None, tags: list[str]) -> pl.DataFrame:
    """Outage intervals per tag with overlapping ones merged: ``tag, ts (= start), gap_end``."""
    schema: dict[str, pl.DataType] = {
        "tag": pl.String(),
        "ts": SCHEMA["ts"],
        "gap_end": SCHEMA["ts"],
    }
    if gaps is None or gaps.is_empty():
        return pl.DataFrame(schema=schema)
    g = gaps.filter(pl.col("tag").is_in(tags)).sort("tag", "start")
    run_end = pl.col("end").cum_max().shift(1).over("tag")
    new_run = run_end.is_null() | (pl.col("start") > run_end)
    return (
        g.with_columns(run=new_run.cum_sum().over("tag"))
        .group_by("tag", "run")
        .agg(ts=pl.col("start").min(), gap_end=pl.col("end").max())
        .select(list(schema))
        .cast(pl.Schema(schema))
        .sort("ts")
    )


def frame_report(frame: pl.DataFrame) -> pl.DataFrame:
    """Per tag of a frame: missing samples, their fraction, the longest missing run, state counts.

    Columns: ``tag, samples, missing, missing_fraction, longest_missing, longest_missing_s,
    uncertain, bad, gap`` (``longest_missing_s`` needs two grid points to know the period).
    """
    tags = [c.removesuffix("__ok") for c in frame.columns if c.endswith("__ok")]
    period_s = None
    if frame.height >= 2:
        step = frame.get_column("ts")[1] - frame.get_column("ts")[0]
        period_s = step.total_seconds() if isinstance(step, timedelta) else None
    rows = []
    for tag in tags:
        ok = frame.get_column(tag + "__ok").fill_null(False)
        runs = ok.rle().struct.unnest().filter(~pl.col("value"))
        longest = int(runs.select(pl.col("len").max()).item() or 0)
        missing = int((~ok).sum())
        states = frame.get_column(tag + "__state") if tag + "__state" in frame.columns else None

        def count(s: str, states: pl.Series | None = states) -> int:
            return int((states == s).sum()) if states is not None else 0

        rows.append(
            {
                "tag": tag,
                "samples": frame.height,
                "missing": missing,
                "missing_fraction": missing / frame.height if frame.height else 0.0,
                "longest_missing": longest,
                "longest_missing_s": longest * period_s if period_s is not None else None,
                "uncertain": count("uncertain"),
                "bad": count("bad"),
                "gap": count("gap"),
            }
        )
    schema: dict[str, pl.DataType] = {"tag": pl.String()}
    schema.update({k: pl.Int64() for k in ("samples", "missing", "longest_missing")})
    schema.update({k: pl.Float64() for k in ("missing_fraction", "longest_missing_s")})
    schema.update({k: pl.Int64() for k in ("uncertain", "bad", "gap")})
    return pl.DataFrame(rows, schema=schema)
