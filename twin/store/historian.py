"""The embedded historian: plant samples in long format, as Hive-partitioned Parquet files.

:class:`Historian` is the public face of a store; the work is done by the modules beside it:

- :mod:`twin.store.schema`: the rows (:data:`~twin.store.schema.SCHEMA`, quality codes) and
  what happens to bad input (NaN and ±inf stored as null with quality ``bad``; naive
  timestamps, unknown columns and wrong types refused with :class:`DataQualityError`).
- :mod:`twin.store.layout`: the files under ``root`` (``day=YYYY-MM-DD/*.parquet``,
  ``gaps.jsonl``, ``quarantine/``), readable as is by any Hive-aware Parquet reader.
- :mod:`twin.store.writing`: atomic appends (``*.tmp``, fsync, rename), duplicates stored once,
  compaction of a day's small files under a journal.
- :mod:`twin.store.recovery`: on open, stale ``*.tmp`` files removed and interrupted
  compactions finished (after a crash no reader meets a row twice); unreadable files moved to
  ``quarantine/`` with a warning while the rest reads fine.
- :mod:`twin.store.reading`: reads open only the days and files whose ts range meets the
  request, and deduplicate files whose ranges overlap.
- :mod:`twin.store.outages`: recorded communication outages; :mod:`twin.store.frames`: rows on
  a plant's sample period, gaps marked.

One process writes a store at a time; any number may read it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from twin.errors import DataQualityError
from twin.store.frames import read_frame
from twin.store.layout import Range, days, small_files
from twin.store.liveness import is_liveness
from twin.store.outages import GAPS_FILE, read_gaps, record_gap
from twin.store.reading import last_timestamps, scan
from twin.store.recovery import CheckedFiles, recover
from twin.store.schema import normalise, sort_unique, utc
from twin.store.writing import StoredMarks, compact_day, publish, write_tmp

if TYPE_CHECKING:
    from twin.spec import PlantSpec

log = logging.getLogger(__name__)


class Historian:
    """A folder of Hive-partitioned Parquet files holding plant samples (see the module doc)."""

    def __init__(
        self,
        root: str | Path,
        *,
        small_file_bytes: int = 4 << 20,
        target_file_bytes: int = 16 << 20,
        auto_compact_files: int = 32,
    ) -> None:
        """Open (and create if missing) the store at ``root``.

        An append that leaves ``auto_compact_files`` files under ``small_file_bytes`` in a day
        merges them (0 turns this off); :meth:`compact` merges all files under
        ``target_file_bytes`` into files of about that size (e.g. nightly, for past days).
        """
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.small_file_bytes = small_file_bytes
        self.target_file_bytes = target_file_bytes
        self.auto_compact_files = auto_compact_files
        self._lock = threading.RLock()
        self._files = CheckedFiles(self.root)  # each file's ts range, once checked readable
        self._marks = StoredMarks()  # per tag, what is known stored
        recover(self.root)

    def __repr__(self) -> str:
        return f"Historian({str(self.root)!r})"

    # --- writing ------------------------------------------------------------------------------

    def append(self, rows: pl.DataFrame) -> int:
        """Store long-format ``rows``; returns how many samples were new (duplicates are dropped;
        the collector's liveness marks, :mod:`twin.store.liveness`, are stored but not counted).

        ``rows`` has columns ``tag, ts, value`` and optionally ``status`` (raw OPC-UA code,
        default Good) and ``quality`` (derived from ``status`` if absent; the worse of the two if
        both are given). See :mod:`twin.store.schema` for what happens to bad input.
        """
        batch = normalise(rows)
        if batch.is_empty():
            return 0
        with self._lock:
            batch = self._marks.drop_stored(batch, self.scan)
            days_of = batch.get_column("ts").dt.date()
            for day in days_of.unique().sort().to_list():
                part = batch if days_of.n_unique() == 1 else batch.filter(days_of == day)
                publish(self._files, *self._write_tmp(day, part))
                self._marks.note_stored(part)
            for day in days_of.unique().to_list() if self.auto_compact_files else []:
                small = small_files(self.root, day, self.small_file_bytes)
                if len(small) < self.auto_compact_files:
                    continue
                try:  # the rows are stored: a failed compaction must not fail the append
                    self._compact_day(day, self.small_file_bytes)
                except (OSError, pl.exceptions.PolarsError) as exc:
                    log.error("compaction of %s failed, will try again later: %s", day, exc)
        return batch.filter(~is_liveness(pl.col("tag"))).height

    def _write_tmp(self, day: date, rows: pl.DataFrame) -> tuple[Path, Path, Range]:
        """Write ``rows`` of ``day`` to a fsynced temporary file (every file write goes here).

        A method, not a plain call, so that appends and compactions share one seam: the fault
        tests slow it down in a subclass (``tests/faults/test_fault_slow_disk.py``).
        """
        return write_tmp(self.root, day, rows)

    def compact(self, day: date | None = None) -> None:
        """Merge the files of ``day`` (every day if None) into sorted files of ``target_file_bytes``."""
        with self._lock:
            for d in [day] if day is not None else [d for d, _ in days(self.root)]:
                self._compact_day(d, self.target_file_bytes)

    def _compact_day(self, day: date, below: int) -> None:
        """Merge the files under ``below`` bytes into files of at most ``target_file_bytes``."""
        # tests/faults/crashpoint.py finds compactions by this method's name on the stack
        compact_day(self._files, day, below, self.target_file_bytes, self._write_tmp)

    # --- reading ------------------------------------------------------------------------------

    def scan(
        self,
        tags: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pl.LazyFrame:
        """Lazy rows (columns :data:`SCHEMA`) of ``tags`` over ``[start, end)``, deduplicated.

        Only the day folders and files whose time range meets ``[start, end)`` are opened (each
        file checked once: an unreadable one is quarantined), and the tag and time filters are
        pushed down to the Parquet row groups. Unordered; :meth:`read` sorts.
        """
        return scan(self._files, tags, start, end)

    def read(
        self,
        tags: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pl.DataFrame:
        """The rows of :meth:`scan`, collected and sorted by tag and ts.

        A failed read is retried: first as is (a concurrent compaction may have removed a file),
        then after reading every file in range on its own, quarantining those that fail.
        """
        for attempt in range(3):
            try:
                return sort_unique(self.scan(tags, start, end).collect())
            except (pl.exceptions.PolarsError, OSError) as exc:
                if attempt == 2:
                    raise DataQualityError(f"cannot read {self.root}: {exc}") from exc
                log.warning("read of %s failed (%s); retrying", self, exc)
                self._files.refresh(utc(start, "start"), utc(end, "end"), deep=attempt == 1)
        raise AssertionError("unreachable")

    def last_timestamps(
        self, tags: Sequence[str], start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, datetime]:
        """The latest stored ts (UTC) of each of ``tags`` over ``[start, end)``; absent if none.

        What a resumable reader (e.g. a history backfill) starts after.
        """
        return last_timestamps(self._files, tags, start, end)

    def frame(
        self, spec: PlantSpec, start: datetime, end: datetime, max_gap: float | None = None
    ) -> pl.DataFrame:
        """Wide frame of ``spec``'s tags on its sample period over ``[start, end)``.

        See :func:`twin.store.frames.make_frame` for the columns and the masking rules; a tag
        carries its value while the collector's session for it was alive (:func:`read_frame`).
        """
        return read_frame(self, spec, start, end, max_gap)

    # --- communication gaps -------------------------------------------------------------------

    @property
    def gaps_path(self) -> Path:
        """The JSON-lines file of recorded outages."""
        return self.root / GAPS_FILE

    def record_gap(self, tags: Sequence[str], start: datetime, end: datetime, reason: str) -> None:
        """Record that ``tags`` had no data over ``[start, end)`` (e.g. the server was down)."""
        record_gap(self.gaps_path, tags, start, end, reason)

    def gaps(self, start: datetime | None = None, end: datetime | None = None) -> pl.DataFrame:
        """Recorded outages overlapping ``[start, end)``: one row per tag (tag, start, end, reason)."""
        return read_gaps(self.gaps_path, start, end)
