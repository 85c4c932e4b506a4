"""One plant's frame cut into time chunks, each built by :func:`~twin.store.frames.make_frame`.

A :class:`PlantJob` holds what every chunk of one plant needs (spec, range, ``max_gap``, the
recorded outages); :func:`chunk_frame` builds chunk ``k``'s frame from the rows the Spark job
hands it (:mod:`twin.scale.spark_frames` says which rows and why the chunks stitch exactly).
Nothing here imports Spark: it runs in the job's Python workers and in plain tests alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from twin.spec import PlantSpec
from twin.store.frames import default_max_gap, make_frame
from twin.store.liveness import liveness_tags
from twin.store.schema import utc

US = timedelta(microseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(t: datetime) -> int:
    """``t`` (aware) as whole microseconds since the Unix epoch."""
    return (t - EPOCH) // US


@dataclass(frozen=True)
class PlantJob:
    """One plant's frames over ``[start, end)`` in chunks of ``chunk`` (a whole number of periods)."""

    plant: str
    spec: PlantSpec
    start: datetime  # UTC
    end: datetime  # UTC
    max_gap: float
    """carry-forward limit in seconds, as :func:`make_frame` takes it (``math.inf``: none)"""
    chunk: timedelta
    gaps: pl.DataFrame
    """recorded outages (``tag, start, end, reason``) overlapping the rows read, as
    :func:`~twin.store.frames.read_frame` passes them"""

    @classmethod
    def plan(
        cls,
        plant: str,
        spec: PlantSpec,
        start: datetime,
        end: datetime,
        *,
        max_gap: float | None = None,
        chunk_days: float = 1.0,
        gaps: pl.DataFrame | None = None,
    ) -> PlantJob:
        """A job with ``chunk_days`` rounded up to a whole number of sample periods."""
        start_utc, end_utc = utc(start, "start"), utc(end, "end")
        assert start_utc is not None and end_utc is not None
        if end_utc <= start_utc:
            raise ValueError(f"end {end_utc} must be after start {start_utc}")
        gap_s = default_max_gap(spec) if max_gap is None else float(max_gap)
        if not gap_s > 0:
            raise ValueError(f"max_gap must be > 0 seconds (or math.inf), got {max_gap}")
        if not chunk_days > 0:
            raise ValueError(f"chunk_days must be > 0, got {chunk_days}")
        period = round(spec.sample_period * 1e6)
        periods = max(1, math.ceil(round(chunk_days * 86_400e6) / period))
        empty = pl.DataFrame(schema={"tag": pl.String, "start": pl.Datetime("us", "UTC")})
        return cls(
            plant,
            spec,
            start_utc,
            end_utc,
            gap_s,
            periods * period * US,
            empty if gaps is None else gaps,
        )

    @property
    def period(self) -> timedelta:
        """The spec's sample period, in whole microseconds as the frame's grid has it."""
        return round(self.spec.sample_period * 1e6) * US

    @property
    def lo(self) -> datetime | None:
        """Where :func:`read_frame` starts reading rows: ``max_gap`` before start (None: all)."""
        finite = math.isfinite(self.max_gap)
        return self.start - timedelta(seconds=self.max_gap) if finite else None

    @property
    def max_gap_us(self) -> int | None:
        """``max_gap`` in microseconds as :func:`make_frame` rounds it (None: no limit)."""
        return round(self.max_gap * 1e6) if math.isfinite(self.max_gap) else None

    @property
    def chunks(self) -> int:
        """How many chunks cover ``[start, end)``."""
        return -((self.start - self.end) // self.chunk)

    def bounds(self, k: int) -> tuple[datetime, datetime]:
        """Chunk ``k``'s range ``[a, b)``: ``a`` on the frame's grid, the last ``b`` at end."""
        a = self.start + k * self.chunk
        return a, min(a + self.chunk, self.end)

    def tags(self) -> list[tuple[str, bool]]:
        """Every tag the job reads with whether it is a liveness mark."""
        names = self.spec.tag_names
        return [(t, False) for t in names] + [(t, True) for t in liveness_tags(names)]


def chunk_frame(job: PlantJob, k: int, rows: pl.DataFrame) -> pl.DataFrame:
    """Chunk ``k``'s frame: ``make_frame`` over ``[a - period, b)`` less its first row.

    ``rows`` (``tag, ts, value, quality, future``) are the chunk's rows with its carry-ins;
    ``future`` marks a liveness mark stamped at or after ``b``, moved here to ``b - 1 µs``
    with the start of the session it reports kept (``make_frame`` reads no mark after its
    end). The extra leading grid point keeps ``make_frame``'s own ``max_gap`` lookback below
    the carry-in a from-row MV may need at ``a`` exactly; it is dropped.
    """
    a, b = job.bounds(k)
    last = b - US
    began = pl.col("ts") - pl.duration(microseconds=(pl.col("value") * 1e6).round())
    held = (pl.lit(last, pl.Datetime("us", "UTC")) - began).dt.total_microseconds() / 1e6
    rows = rows.with_columns(
        value=pl.when("future").then(held).otherwise("value"),
        ts=pl.when("future").then(pl.lit(last, pl.Datetime("us", "UTC"))).otherwise("ts"),
    ).drop("future")
    frame = make_frame(rows, job.spec, a - job.period, b, job.max_gap, gaps=job.gaps)
    return frame.slice(1)
