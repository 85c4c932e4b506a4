"""Live or history: whether a collector is writing to the historian, and times in human units.

A historian that no collector is writing (an imported history, a plant that was stopped long
ago) opens in *history* mode; one that a collector writes opens *live*. The decision
(:func:`decide`) compares the newest row of the plant's tags, samples or the collector's liveness
marks (``__alive__`` rows, :mod:`twin.store.liveness`; a report-by-exception server may send no
sample for minutes while its session is alive), with the wall clock:

- live when the newest row is at most :func:`threshold_s` old: ``max(LIVE_PERIODS`` sample
  periods, ``LIVE_MIN_S)``;
- history when it is older, with ``why`` saying how old (``newest sample 2.9 years ago``);
- live when the historian holds no row yet: a collector that is starting (the alarms then say
  that no data arrives).

A session that opened live stays live when the data stops (:func:`session_mode`): a collector
that dies is an alarm ("no data from the collector for 12 min"), not a quiet switch to history.
A history session turns live as soon as a collector writes again.

In history mode the Plant page shows the data as of a chosen instant and stores it in
``st.session_state[AS_OF]`` (a UTC datetime; absent or None in live mode): the pages that
forecast or run what-ifs start from :func:`as_of` instead of the newest sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import streamlit as st

from dashboards import data
from twin.spec import PlantSpec
from twin.store.historian import Historian

LIVE_PERIODS = 10
"""a historian is live while its newest row is at most this many sample periods old ..."""
LIVE_MIN_S = 300.0
"""... or at most this many seconds old, whichever is longer"""
AS_OF = "as_of"
"""``st.session_state`` key of the instant the pages show in history mode (UTC datetime)"""
_LIVE_SEEN = "mode_live_seen"  # session_state: historian roots this session has seen live

_YEAR_S = 365.25 * 86400


def human_duration(seconds: float) -> str:
    """``seconds`` in the units a person reads: 12 s, 4 min, 3 h 20 min, 5 d 4 h, 2.9 years."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 0:
        return "-" + human_duration(-seconds)
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    hours = round(seconds / 3600)
    if hours < 10 * 24:
        days, rest = divmod(hours, 24)
        return f"{days} d {rest} h" if rest else f"{days} d"
    if seconds < _YEAR_S:
        return f"{round(seconds / 86400)} d"
    years = seconds / _YEAR_S
    return "1 year" if years < 1.05 else f"{years:.1f} years"


@dataclass(frozen=True)
class Mode:
    """Whether the historian is written live, and the time range it holds."""

    kind: Literal["live", "history"]
    start: datetime | None
    """the oldest sample (None: the historian is empty)"""
    end: datetime | None
    """the newest sample or liveness mark (None: the historian is empty)"""
    why: str
    """one line for the operator: why this mode"""

    @property
    def live(self) -> bool:
        return self.kind == "live"


def threshold_s(spec: PlantSpec) -> float:
    """How old the newest row may be for the historian to count as live, in seconds."""
    return max(LIVE_PERIODS * spec.sample_period, LIVE_MIN_S)


def decide(spec: PlantSpec, start: datetime | None, end: datetime | None, now: datetime) -> Mode:
    """The mode of a historian whose rows span ``[start, end]``, seen at ``now`` (all UTC)."""
    if end is None:
        return Mode("live", None, None, "the historian holds no sample yet")
    age = (now - end).total_seconds()
    if age <= threshold_s(spec):
        return Mode(
            "live", start, end, f"a collector is writing (newest row {human_duration(age)} ago)"
        )
    why = f"no collector is writing to this historian (newest sample {human_duration(age)} ago)"
    return Mode("history", start, end, why)


def mode(source: data.AppConfig | Historian | str | Path, spec: PlantSpec) -> Mode:
    """The mode of a historian (an app config, a :class:`Historian` or its folder) now.

    Two cached reads of the newest day folder (the newest row) and the oldest (the first
    sample), shared with the Plant page's own reads.
    """
    if isinstance(source, data.AppConfig):
        if source.historian is None:
            raise ValueError("the app has no historian to decide live or history from")
        root = source.historian
    else:
        root = source.root if isinstance(source, Historian) else Path(source)
    tags = data.plant_tags(spec)
    end = data.newest_sample(str(root), tags, data.stamp(root))
    start = data.oldest_sample(str(root), tuple(spec.tag_names)) if end is not None else None
    return decide(spec, start, end, datetime.now(UTC))


def session_mode(cfg: data.AppConfig, spec: PlantSpec) -> Mode:
    """:func:`mode` for this browser session: once live, it stays live when the data stops.

    What every page asks, so that they agree: the Plant page, the overview, the forecast.
    """
    assert cfg.historian is not None
    found = mode(cfg, spec)
    root = str(cfg.historian)
    seen: set[str] = st.session_state.setdefault(_LIVE_SEEN, set())
    if found.live:
        seen.add(root)
        st.session_state.pop(AS_OF, None)
        return found
    if root in seen:  # the collector stopped while this session watched: an alarm, not history
        age = human_duration((datetime.now(UTC) - found.end).total_seconds()) if found.end else ""
        return Mode("live", found.start, found.end, f"no new data for {age}")
    return found


def as_of() -> datetime | None:
    """The instant the pages show: the Plant page's time cursor in history mode, else None (now)."""
    value = st.session_state.get(AS_OF)
    return value if isinstance(value, datetime) else None
