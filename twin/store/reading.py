"""Reading a store: only the files that meet a time range, overlapping ones deduplicated.

Only the day folders and the files whose recorded ts range meets ``[start, end)`` are opened
(each checked once: an unreadable one is quarantined, see :mod:`twin.store.recovery`), and the
tag and time filters are pushed down to the Parquet row groups. Files whose ranges overlap may
share rows (a second writer, or a crash mid-compaction): they are read deduplicated, as the
final guarantee that no row comes back twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import polars as pl

from twin.store.layout import EPOCH, US, Range, files
from twin.store.recovery import CheckedFiles
from twin.store.schema import KEY, SCHEMA, utc

log = logging.getLogger(__name__)


def scan(
    checked: CheckedFiles,
    tags: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pl.LazyFrame:
    """Lazy rows (columns :data:`SCHEMA`) of ``tags`` over ``[start, end)``, deduplicated.

    Unordered. ``checked`` holds the files of the store already checked (see the module doc).
    """
    start, end = utc(start, "start"), utc(end, "end")
    tags = [tags] if isinstance(tags, str) else tags
    lo = -(2**63) if start is None else (start - EPOCH) // US
    hi = 2**63 - 1 if end is None else (end - EPOCH) // US - 1
    everything: Range = (-(2**63), 2**63 - 1)
    wanted: list[tuple[Range, Path]] = []
    for path in files(checked.root, start, end):
        if checked.check(path):
            first, last = checked.ranges[path] or everything
            if last >= lo and first <= hi:
                wanted.append(((first, last), path))
    groups: list[list[Path]] = []  # files whose ranges overlap, which may share rows
    top = everything[0]
    for (first, last), path in sorted(wanted):
        if groups and first <= top:
            groups[-1].append(path)
        else:
            groups.append([path])
        top = max(top, last)
    if not groups or lo > hi:
        return pl.LazyFrame(schema=SCHEMA)
    singles = [g[0] for g in groups if len(g) == 1]
    parts = [scan_files(f, tags, start, end) for f in [singles] if f]
    parts += [scan_files(g, tags, start, end).unique(KEY) for g in groups if len(g) > 1]
    return pl.concat(parts) if len(parts) > 1 else parts[0]


def scan_files(
    paths: list[Path],
    tags: Sequence[str] | None,
    start: datetime | None,
    end: datetime | None,
) -> pl.LazyFrame:
    """Lazy rows of ``paths`` with the tag and time filters (pushed down to the row groups)."""
    lf = pl.scan_parquet(paths, hive_partitioning=False, schema=SCHEMA, cache=False)
    if tags is not None:
        lf = lf.filter(pl.col("tag").is_in(list(tags)))
    if start is not None:
        lf = lf.filter(pl.col("ts") >= start)
    if end is not None:
        lf = lf.filter(pl.col("ts") < end)
    return lf


def last_timestamps(
    checked: CheckedFiles,
    tags: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, datetime]:
    """The latest stored ts of each of ``tags`` over ``[start, end)``; tags with none are absent."""
    last = scan(checked, tags, start, end).group_by("tag").agg(pl.col("ts").max()).collect()
    return dict(zip(last.get_column("tag").to_list(), last.get_column("ts").to_list(), strict=True))
