"""Where a historian's files lie under its root, and the time range each data file records.

Readable as is by any Hive-aware Parquet reader, e.g.
``pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True)`` or DuckDB's
``read_parquet('<root>/**/*.parquet', hive_partitioning=true)`` (the ``day`` column is the key)::

    day=2026-01-01/part-20260101T120000123456Z-<uuid>.parquet   rows of that UTC day, zstd,
                                                                sorted by (tag, ts)
    day=2026-01-01/*.parquet.tmp, compact-*.journal              a write or a compaction under
                                                                way (or cut short by a crash)
    gaps.jsonl          recorded communication outages, one JSON object a line
    quarantine/         unreadable files moved out of the way (``*.corrupt``), never deleted

Each data file written here records its ts range (:data:`Range`) in its Parquet key-value
metadata under :data:`RANGE_KEYS`, so that reads open only the files that meet their range.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from twin.store.schema import SCHEMA

log = logging.getLogger(__name__)

DAY_DIR = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")
RANGE_KEYS = ("twin.ts_min_us", "twin.ts_max_us")  # Parquet key-value metadata of each file
Range = tuple[int, int]  # first and last ts of a file, µs since the epoch
#: the unit of a :data:`Range` and its zero
US = timedelta(microseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def day_folder(root: Path, day: date) -> Path:
    """The folder of ``day``'s files (it may not exist yet)."""
    return root / f"day={day.isoformat()}"


def days(root: Path) -> list[tuple[date, Path]]:
    """The day folders under ``root`` with their dates, oldest first."""
    out = []
    for entry in os.scandir(root):
        m = DAY_DIR.match(entry.name)
        if m and entry.is_dir():
            try:
                out.append((date.fromisoformat(m.group(1)), Path(entry.path)))
            except ValueError:
                log.warning("ignoring folder with an impossible date: %s", entry.path)
    return sorted(out)


def files(root: Path, start: datetime | None, end: datetime | None) -> list[Path]:
    """The data files of the days that meet ``[start, end)`` (UTC; None: unbounded)."""
    first = start.date() if start is not None else date.min
    last = (end - US).date() if end is not None else date.max
    return [p for d, folder in days(root) if first <= d <= last for p in folder.glob("*.parquet")]


def small_files(root: Path, day: date, below: int) -> list[tuple[Path, int]]:
    """The data files of ``day`` under ``below`` bytes with their sizes, by name (write time)."""
    folder = day_folder(root, day)
    if not folder.is_dir():
        return []
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.endswith(".parquet") and entry.is_file():
            size = entry.stat().st_size
            if size < below:
                out.append((Path(entry.path), size))
    return out


def read_file(path: Path) -> pl.DataFrame:
    """All rows of one data file."""
    return pl.read_parquet(path, hive_partitioning=False, schema=SCHEMA)
