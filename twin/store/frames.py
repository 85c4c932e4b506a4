"""Regular frames: historian rows resampled onto a plant's sample period, gaps marked, never filled.

A frame is a wide polars DataFrame over ``[start, end)`` on the grid ``start, start + period, ...``
(``period`` = the spec's sample period). Its columns, tags in spec order:

- ``ts``: the grid time (UTC, µs).
- ``<tag>`` (Float64): the latest sample at or before ``ts``, carried forward while the
  collector's session monitoring the tag was alive (:mod:`twin.store.liveness`: a
  report-by-exception server sends nothing while a value holds still), and otherwise at most
  ``max_gap`` seconds; null unless the ``__ok`` column is True. An MV's value at ``ts`` is thus the one held
  over the interval that ends at ``ts`` (:data:`twin.spec.MV_TIMING`). For a spec with
  ``mv_timing = "from_row"`` (its data stamps an MV when it starts to act) an MV takes the
  latest sample strictly *before* ``ts`` instead: a sample stamped on a row counts from the next
  row on, one stamped between rows lands where it would anyway (:func:`retime_mvs`).
- ``<tag>__ok`` (Boolean): True where the value is usable (quality good or uncertain). This is
  the mask :func:`twin.model.dataset.frame_to_array` reads.
- ``<tag>__state`` (Enum :data:`FRAME_STATES`): why, per grid point:
  ``good``; ``uncertain`` (value kept, flagged); ``bad`` (the latest sample is bad: masked until
  the next good one); ``gap`` (inside a recorded communication outage, whatever was carried);
  ``missing`` (no sample within ``max_gap`` and no live session since it, the tag is absent
  from the data, or the latest sample predates an outage that ended since and no session
  confirmed it after: values are never carried across an outage on their own).

Liveness marks among the input rows (``__alive__`` tags, written by the collector) give the
sessions; a store without them gets the frames it always got. :func:`read_frame` reads a frame
from a store: the spec's rows, the marks, and for a tag a live session covers the last sample
before the window however old it is.

:func:`frame_report` sums a frame up per tag (fraction missing, longest missing run).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

import polars as pl

from twin.errors import DataQualityError
from twin.spec import MV_TIMING, MvTiming, PlantSpec
from twin.store.liveness import alive_intervals, is_liveness, liveness_tags
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
    it should reach back ``max_gap`` before ``start`` so the first grid points have a value, and
    may hold liveness marks (:mod:`twin.store.liveness`) with, for the tags they cover, the last
    sample before that (:func:`read_frame` reads both).
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

    marks = _marks(data, end_utc)
    alive = alive_intervals(marks, tags)
    tolerance = timedelta(seconds=gap_s) if math.isfinite(gap_s) else None
    # with liveness marks a sample older than max_gap may still be carried: keep one per tag
    lo = start_utc - tolerance if tolerance is not None and alive.is_empty() else None
    samples = _samples(data, tags, lo, end_utc)
    samples = retime_mvs(samples, spec).with_columns(carried_from=pl.col("ts"))
    long = (
        pl.DataFrame({"tag": tags}, schema={"tag": pl.String})
        .join(grid, how="cross")
        .sort("ts", maintain_order=True)
        .join_asof(samples, on="ts", by="tag", strategy="backward", check_sortedness=False)
        .join_asof(
            _merged_gaps(gaps, tags), on="ts", by="tag", strategy="backward", check_sortedness=False
        )
        .join_asof(alive, on="ts", by="tag", strategy="backward", check_sortedness=False)
    )
    slack = pl.duration(microseconds=round(gap_s * 1e6)) if tolerance is not None else None
    has_gap = pl.col("gap_end").is_not_null()
    # carried as long as the session monitoring the tag was alive (plus max_gap for the time
    # between its marks and for clock offsets), or within max_gap of the sample as before
    live = pl.col("alive_end").is_not_null()
    fresh = ~(has_gap & (pl.col("sample_ts") < pl.col("gap_end")))
    if slack is not None:
        live = live & (pl.col("ts") <= pl.col("alive_end") + slack)
        fresh = fresh & (pl.col("ts") <= pl.col("carried_from") + slack)
    state = (
        pl.when(has_gap & (pl.col("ts") < pl.col("gap_end")))
        .then(pl.lit("gap"))
        .when(pl.col("sample_ts").is_null() | ~(live | fresh))
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


class FrameStore(Protocol):
    """What :func:`read_frame` needs of a store (a :class:`~twin.store.historian.Historian`)."""

    def read(
        self,
        tags: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pl.DataFrame:
        """The rows of ``tags`` over ``[start, end)``, sorted by tag and ts."""
        ...

    def gaps(self, start: datetime | None = None, end: datetime | None = None) -> pl.DataFrame:
        """Recorded outages overlapping ``[start, end)`` (tag, start, end, reason)."""
        ...


#: how far back :func:`read_frame` looks, window by window, for a live tag's last sample
LOOKBACK = (timedelta(days=1), timedelta(days=8), timedelta(days=64), None)


def read_frame(
    store: FrameStore, spec: PlantSpec, start: datetime, end: datetime, max_gap: float | None = None
) -> pl.DataFrame:
    """The frame of ``spec``'s tags over ``[start, end)`` from ``store`` (see :func:`make_frame`).

    Reads the rows from ``max_gap`` before ``start``, the liveness marks with them, and where a
    mark exists, the last sample before that of each tag without one (a value a still tag held
    since long before the window), day windows first, further back only for what is missing.
    """
    start_utc, end_utc = utc(start, "start"), utc(end, "end")
    assert start_utc is not None and end_utc is not None
    gap_s = default_max_gap(spec) if max_gap is None else max_gap
    lo = start_utc - timedelta(seconds=gap_s) if math.isfinite(gap_s) and gap_s > 0 else None
    tags = spec.tag_names
    rows = store.read([*tags, *liveness_tags(tags)], lo, end_utc)
    if lo is not None and not rows.is_empty() and rows.filter(is_liveness(pl.col("tag"))).height:
        seen = rows.filter(pl.col("ts") <= start_utc).get_column("tag").unique().to_list()
        need = [t for t in tags if t not in seen]
        parts, top = [rows], lo
        for back in LOOKBACK if need else ():
            bottom = None if back is None else lo - back
            found = store.read(need, bottom, top).unique("tag", keep="last", maintain_order=True)
            parts.append(found.select(rows.columns))
            need = [t for t in need if t not in set(found.get_column("tag").to_list())]
            if not need or bottom is None:
                break
            top = bottom
        rows = pl.concat(parts, how="vertical_relaxed")
    return make_frame(rows, spec, start_utc, end_utc, max_gap=gap_s, gaps=store.gaps(lo, end_utc))


def _frame_schema(tags: list[str]) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {"ts": SCHEMA["ts"]}
    schema.update({t: pl.Float64() for t in tags})
    schema.update({t + "__ok": pl.Boolean() for t in tags})
    schema.update({t + "__state": STATE for t in tags})
    return schema


def _marks(data: pl.DataFrame | pl.LazyFrame, end: datetime) -> pl.DataFrame:
    """The liveness marks among ``data``'s rows before ``end`` (``tag, ts, value``)."""
    lf = data.lazy()
    if not {"tag", "ts", "value"} <= set(lf.collect_schema().names()):
        return pl.DataFrame(schema={"tag": pl.String(), "ts": SCHEMA["ts"], "value": pl.Float64()})
    return (
        lf.filter(is_liveness(pl.col("tag").cast(pl.String)), pl.col("ts") < end)
        .select(
            pl.col("tag").cast(pl.String),
            pl.col("ts").dt.cast_time_unit("us"),
            pl.col("value").cast(pl.Float64),
        )
        .collect()
    )


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
