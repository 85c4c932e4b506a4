"""Replay a stored history as a live source, so the whole product can run on recorded data.

:class:`ReplaySource` is a :class:`~connectors.source.SampleSource` like the OPC-UA collector:
``pump(ReplaySource(store, spec, speed=10), other_historian)`` fills ``other_historian`` as if
the plant were live, ten times faster. Rows come in time order, read one time window at a time
(never the whole history at once), and recorded outages come as :class:`Gap` markers where they
fall in time.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from connectors.source import Gap
from twin.errors import DataQualityError
from twin.spec import PlantSpec
from twin.store.historian import Historian
from twin.store.schema import utc

log = logging.getLogger(__name__)

_US = timedelta(microseconds=1)
_UTC_US = pl.Datetime("us", "UTC")


class ReplaySource:
    """Streams the stored rows of ``spec``'s tags over ``[start, end)`` at ``speed`` × real time.

    ``speed`` 0 or ``inf`` replays as fast as possible. Rows come in batches of ``batch_period``
    seconds of plant time (default: the spec's sample period; as fast as possible: one read
    window). ``shift_to_now`` moves every timestamp by a whole number of sample periods so that
    the replay's last sample falls on the moment the replay ends: at speed 1 the timestamps
    follow the wall clock, as from a live plant.
    """

    def __init__(
        self,
        historian: Historian | str | Path,
        spec: PlantSpec,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        speed: float = 1.0,
        batch_period: float | None = None,
        shift_to_now: bool = False,
        window_rows: int = 200_000,
    ) -> None:
        if math.isnan(speed) or speed < 0:
            raise ValueError(f"speed must be >= 0 (0 or inf: as fast as possible), got {speed}")
        if batch_period is not None and not batch_period > 0:
            raise ValueError(f"batch_period must be > 0 seconds, got {batch_period}")
        if not isinstance(historian, Historian):
            if not Path(historian).is_dir():
                raise DataQualityError(f"no stored history at {historian}")
            historian = Historian(historian)
        self.historian = historian
        self.spec = spec
        self.start, self.end = utc(start, "start"), utc(end, "end")
        self.speed = speed
        self.batch_period = batch_period
        self.shift_to_now = shift_to_now
        self.window_rows = window_rows

    @property
    def fast(self) -> bool:
        """True when the replay does not wait (speed 0 or inf)."""
        return self.speed == 0 or math.isinf(self.speed)

    async def stream(self) -> AsyncIterator[pl.DataFrame | Gap]:
        """Yield row batches (columns of :data:`twin.store.schema.SCHEMA`) and gaps, in time order."""
        first, last = self._bounds()
        gaps = self._gaps()
        if first is None or last is None:
            for gap in gaps:
                yield gap
            return
        period = timedelta(seconds=self.spec.sample_period)
        step = timedelta(seconds=self.batch_period) if self.batch_period else None
        if step is None and not self.fast:
            step = period
        window = max(period, step or period) * max(1, self.window_rows // len(self.spec.tags))
        replay_s = 0.0 if self.fast else (last - first).total_seconds() / self.speed
        shift = timedelta(0)
        if self.shift_to_now:
            target = datetime.now(UTC) + timedelta(seconds=replay_s) - last
            shift = period * round(target / period)
        gaps = [Gap(g.tags, g.start + shift, g.end + shift, g.reason) for g in gaps]
        log.info(
            "replaying %s .. %s of %d tags at speed %g (shift %s)",
            first,
            last,
            len(self.spec.tags),
            self.speed,
            shift,
        )
        loop = asyncio.get_running_loop()
        wall0 = loop.time()
        lo = first
        while lo <= last:
            hi = min(lo + window, last + _US)
            rows = self.historian.read(self.spec.tag_names, lo, hi).sort("ts", "tag")
            for batch in self._split(rows, first, step):
                batch_first, batch_last = batch["ts"].min(), batch["ts"].max()
                assert isinstance(batch_first, datetime) and isinstance(batch_last, datetime)
                while gaps and gaps[0].end <= batch_first + shift:
                    yield gaps.pop(0)
                if self.fast:
                    await asyncio.sleep(0)  # let the consumer's other tasks run
                else:
                    due = wall0 + (batch_last - first).total_seconds() / self.speed
                    await asyncio.sleep(max(0.0, due - loop.time()))
                yield batch.with_columns(pl.col("ts") + shift) if shift else batch
            lo = hi
        for gap in gaps:
            yield gap

    def _split(
        self, rows: pl.DataFrame, first: datetime, step: timedelta | None
    ) -> list[pl.DataFrame]:
        if rows.is_empty():
            return []
        if step is None:
            return [rows]
        key = (pl.col("ts") - first).dt.total_microseconds() // (step // _US)
        return rows.with_columns(key.alias("__batch")).partition_by(
            "__batch", maintain_order=True, include_key=False
        )

    def _bounds(self) -> tuple[datetime | None, datetime | None]:
        """First and last stored ts of the spec's tags in the replay range."""
        tags = self.spec.tag_names
        query = pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
        try:
            found = self.historian.scan(tags, self.start, self.end).select(query).collect()
        except pl.exceptions.PolarsError:  # a damaged file: read() checks and skips it
            found = self.historian.read(tags, self.start, self.end).select(query)
        first, last = found.row(0)
        if first is not None and not isinstance(first, datetime):
            raise DataQualityError(f"{self.historian}: timestamps are not datetimes")
        return first, last

    def _gaps(self) -> list[Gap]:
        """Recorded outages of the spec's tags, clipped to the replay range, ordered by end."""
        rows = self.historian.gaps(self.start, self.end)
        rows = rows.filter(pl.col("tag").is_in(self.spec.tag_names))
        if self.start is not None:
            rows = rows.with_columns(pl.max_horizontal("start", pl.lit(self.start, _UTC_US)))
        if self.end is not None:
            rows = rows.with_columns(pl.min_horizontal("end", pl.lit(self.end, _UTC_US)))
        order = {name: i for i, name in enumerate(self.spec.tag_names)}
        grouped = rows.group_by("start", "end", "reason", maintain_order=True).agg("tag")
        gaps = [
            Gap(tuple(sorted(tags, key=order.__getitem__)), start, end, reason)
            for start, end, reason, tags in grouped.iter_rows()
        ]
        return sorted(gaps, key=lambda g: (g.end, g.start))
