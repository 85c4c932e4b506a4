"""Where a twin's training data came from, kept in its folder so it can be evaluated fairly.

``Twin.fit`` records the time range of the frame it was given (and of its train / validation /
calibration splits) under ``metrics.json["training_data"]``; ``twin train`` adds the historian it
read. ``twin evaluate`` then fits its baselines on that same range and keeps the test range out
of it. Folders saved before this record existed simply have none (:func:`read_training_data`
returns ``None``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from twin.times import as_utc

log = logging.getLogger(__name__)

KEY = "training_data"
"""the key in ``metrics.json`` under which the record is kept"""
SPLITS = ("train", "validation", "calibration")


@dataclass(frozen=True)
class TrainingData:
    """The range of history a twin was trained on (times timezone-aware, UTC)."""

    start: datetime
    """first sample of the training frame"""
    end: datetime
    """end of the range, exclusive: the last sample plus one sample period"""
    samples: int
    """rows of the training frame (on the spec's sample period)"""
    historian: str | None
    """absolute path of the historian it was read from, when ``twin train`` fitted it"""


def training_record(
    frame: pl.DataFrame, parts: Sequence[pl.DataFrame], sample_period: float
) -> dict[str, Any]:
    """The JSON record of ``frame`` and its ``parts`` (train, validation, calibration splits).

    Empty (``{}``) for a frame without a ``ts`` column or without rows.
    """
    if "ts" not in frame.columns or frame.height == 0:
        return {}
    period = timedelta(seconds=sample_period)

    def span(f: pl.DataFrame) -> list[str] | None:
        if f.height == 0:
            return None
        lo, hi = f.get_column("ts").min(), f.get_column("ts").max()
        assert isinstance(lo, datetime) and isinstance(hi, datetime)
        return [as_utc(lo).isoformat(), as_utc(hi + period).isoformat()]

    whole = span(frame)
    assert whole is not None
    return {
        "start": whole[0],
        "end": whole[1],
        "samples": frame.height,
        "historian": None,
        "splits": {name: span(p) for name, p in zip(SPLITS, parts, strict=False)},
    }


def read_training_data(metrics: dict[str, Any]) -> TrainingData | None:
    """The record in a loaded ``metrics.json``; ``None`` if absent (older folders) or unreadable."""
    rec = metrics.get(KEY)
    if not isinstance(rec, dict) or not rec:
        return None
    try:
        start, end = datetime.fromisoformat(rec["start"]), datetime.fromisoformat(rec["end"])
        historian = rec.get("historian")
        return TrainingData(
            start=start,
            end=end,
            samples=int(rec.get("samples", 0)),
            historian=str(historian) if historian else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("metrics.json holds an unreadable %r record (%s): ignored", KEY, exc)
        return None
