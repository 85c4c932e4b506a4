"""Recorded communication outages: a store's ``gaps.jsonl``, one JSON object a line.

Each line is ``{"tags": [...], "start": iso, "end": iso, "reason": text}`` over ``[start, end)``,
appended with :func:`twin.store.jsonl.append_line` (fsynced; a torn last line is skipped on
reading, with a warning, as is any other unreadable line).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import polars as pl

from twin.errors import DataQualityError
from twin.store.jsonl import append_line
from twin.store.schema import SCHEMA, utc

log = logging.getLogger(__name__)

#: the outages' file name under a store's root
GAPS_FILE = "gaps.jsonl"


def record_gap(
    path: Path, tags: Sequence[str], start: datetime, end: datetime, reason: str
) -> None:
    """Record in ``path`` that ``tags`` had no data over ``[start, end)``."""
    start_utc, end_utc = utc(start, "start"), utc(end, "end")
    assert start_utc is not None and end_utc is not None
    if end_utc < start_utc:
        raise DataQualityError(f"gap end {end_utc} is before its start {start_utc}")
    tag_list = [tags] if isinstance(tags, str) else [str(t) for t in tags]
    if end_utc == start_utc or not tag_list:
        log.debug("empty gap (%s, %d tags) not recorded", start_utc, len(tag_list))
        return
    doc = {"tags": tag_list, "start": start_utc.isoformat(), "end": end_utc.isoformat()}
    append_line(path, json.dumps({**doc, "reason": str(reason)}))


def read_gaps(path: Path, start: datetime | None, end: datetime | None) -> pl.DataFrame:
    """Outages in ``path`` overlapping ``[start, end)``: one row per tag (tag, start, end, reason)."""
    start, end = utc(start, "start"), utc(end, "end")
    rows: list[tuple[str, datetime, datetime, str]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    for number, text in enumerate(lines, 1):
        try:
            doc = json.loads(text)
            g0, g1 = datetime.fromisoformat(doc["start"]), datetime.fromisoformat(doc["end"])
            tags, reason = list(doc["tags"]), str(doc.get("reason", ""))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("skipping unreadable line %d of %s: %s", number, path, exc)
            continue
        if (end is None or g0 < end) and (start is None or g1 > start):
            rows += [(str(tag), g0, g1, reason) for tag in tags]
    schema = {"tag": pl.String(), "start": SCHEMA["ts"], "end": SCHEMA["ts"]}
    return pl.DataFrame(rows, schema={**schema, "reason": pl.String()}, orient="row")
