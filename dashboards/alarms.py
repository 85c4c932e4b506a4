"""Alarms after ISA-18.2: what is abnormal now, by priority, without floods, with a history.

:func:`evaluate` finds the abnormal states of the newest sample of each tag (:func:`detect`),
then collapses floods (:func:`suppress`). Kinds and priorities:

- ``limit``: outside the instrument limits ``[lo, hi]``: **high** for a CV, medium for an MV or
  DV (a transmitter or a range to check);
- ``operating``: a CV or MV outside its operating limits ``[op_lo, op_hi]`` (when the spec
  gives them): **medium**;
- ``quality``: the newest sample is bad or uncertain: **medium**;
- ``at limit``: an MV within :data:`AT_LIMIT_FRACTION` of its span from an operating (else
  instrument) limit, no room to move: **low**;
- ``stale``: nothing heard of the tag for :data:`STALE_PERIODS` sample periods, neither a sample
  nor a liveness mark of the collector's session that monitors it: **low**.

Flood rule: when at least ``max(FLOOD_MIN, FLOOD_FRACTION * tags)`` tags are stale together,
their stale alarms are replaced by ONE plant alarm (tag :data:`PLANT`, kind ``no data``, high)
"no data from the collector for 12 min (53 of 53 tags)"; below that, when every tag of one
collector session (tags whose per-tag liveness marks share a time, at least
:data:`FLOOD_MIN` of them) is stale, one ``no data`` alarm stands for that collector. A quality
flood (as many bad or uncertain tags) likewise collapses into one ``bad data`` alarm (medium).
In history mode nothing is stale: :func:`evaluate` takes ``stale=False``.

The alarms live in an :class:`~dashboards.alarm_book.AlarmBook` (acknowledge, acknowledge all,
shelve; every change logged), one per historian shared by every session of the app
(:func:`shared_book`), so that an acknowledgement on one screen holds on all. The pages call
:func:`current` (or :func:`refresh` with rows they have read) and show :func:`summary`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import polars as pl
import streamlit as st

from dashboards import data, modes
from dashboards.alarm_book import PRIORITIES, Alarm, AlarmBook, AlarmLog, AlarmSummary, summary
from dashboards.modes import human_duration
from twin.spec import PlantSpec
from twin.store.liveness import ALIVE

__all__ = [
    "PRIORITIES",
    "Alarm",
    "AlarmBook",
    "AlarmSummary",
    "current",
    "detect",
    "evaluate",
    "shared_book",
    "summary",
    "suppress",
]

PRIORITY_COLOURS = {"high": "red", "medium": "orange", "low": "yellow"}
"""Streamlit markdown colour of an unacknowledged alarm, by priority (ISA-101: colour = alarm)"""
KINDS = ("limit", "operating", "quality", "at limit", "stale", "no data", "bad data")
PLANT = "*"
"""the tag of an alarm about the whole plant or a collector (no tag name starts with *)"""
STALE_PERIODS = 3
"""a tag is stale when nothing was heard of it for this many sample periods"""
AT_LIMIT_FRACTION = 0.005
"""an MV this close to a limit (fraction of its span) is at the limit"""
FLOOD_FRACTION = 0.5
FLOOD_MIN = 3
"""this many tags stale (or bad) together, and at least FLOOD_FRACTION of them, are a flood"""
WINDOW_MIN = 15.0
"""minutes of rows :func:`current` reads for the newest sample of each tag"""
RESTORE_DAYS = 2
"""days of the alarm log a restarted app replays to resume acknowledgements and shelves"""


def _limit(tag: str, v: float, unit: str, side: str, bound: float) -> str:
    where = "above" if side.endswith("hi") else "below"
    return f"{tag} {v:.4g}{unit} {where} {side} {bound:g}{unit}"


def detect(
    spec: PlantSpec,
    latest: pl.DataFrame,
    now: datetime,
    *,
    marks: pl.DataFrame | None = None,
    stale: bool = True,
) -> list[Alarm]:
    """The alarms of the newest sample of each tag (``latest``: tag, ts, value, quality), one per
    tag and kind, no flood suppression. ``marks``: liveness rows (tag, ts) that keep a tag whose
    value holds still from going stale; ``stale=False``: no staleness (history mode)."""
    by_tag = {r["tag"]: r for r in latest.iter_rows(named=True)}
    heard = _heard(spec, marks)
    stale_s = STALE_PERIODS * spec.sample_period
    out: list[Alarm] = []
    for tag in spec.tags:
        name, row = tag.name, by_tag.get(tag.name)
        if stale:
            times = [t for t in (row["ts"] if row else None, heard.get(name)) if t is not None]
            seen: datetime | None = max(times) if times else None
            if seen is None:
                out.append(Alarm(name, "stale", "low", f"{name}: no data in the window", now))
            elif (age := (now - seen).total_seconds()) > stale_s:
                msg = f"{name}: no new data for {human_duration(age)}"
                out.append(Alarm(name, "stale", "low", msg, now, seen=seen))
        if row is None:
            continue
        value, quality = row["value"], str(row["quality"])
        if quality != "good" or value is None or not math.isfinite(value):
            out.append(Alarm(name, "quality", "medium", f"{name}: quality {quality}", now))
        if value is None or not math.isfinite(value):
            continue
        unit = f" {tag.unit}" if tag.unit else ""
        cv = tag.role == "cv"
        if value > tag.hi or value < tag.lo:
            side, bound = ("hi", tag.hi) if value > tag.hi else ("lo", tag.lo)
            msg = _limit(name, value, unit, side, bound)
            out.append(Alarm(name, "limit", "high" if cv else "medium", msg, now))
        elif tag.role != "dv" and (
            (tag.op_hi is not None and value > tag.op_hi)
            or (tag.op_lo is not None and value < tag.op_lo)
        ):
            side, bound = ("op hi", tag.op_high) if value > tag.op_high else ("op lo", tag.op_low)
            out.append(
                Alarm(name, "operating", "medium", _limit(name, value, unit, side, bound), now)
            )
        elif tag.role == "mv":
            room = AT_LIMIT_FRACTION * tag.span
            if value >= tag.op_high - room or value <= tag.op_low + room:
                side = "hi" if value >= tag.op_high - room else "lo"
                side = f"op {side}" if getattr(tag, f"op_{side}") is not None else side
                msg = f"{name} {value:.4g}{unit} at its {side} limit"
                out.append(Alarm(name, "at limit", "low", msg, now))
    return out


def _heard(spec: PlantSpec, marks: pl.DataFrame | None) -> dict[str, datetime]:
    """Per tag, the newest liveness mark of a session that monitors it."""
    if marks is None or marks.is_empty():
        return {}
    newest = marks.group_by("tag").agg(pl.col("ts").max())
    last = dict(zip(newest.get_column("tag"), newest.get_column("ts"), strict=True))
    everyone = last.get(ALIVE)
    out = {}
    for name in spec.tag_names:
        times = [t for t in (everyone, last.get(f"{ALIVE}:{name}")) if t is not None]
        if times:
            out[name] = max(times)
    return out


def collectors(spec: PlantSpec, marks: pl.DataFrame | None) -> dict[str, str]:
    """Per tag that a per-tag liveness mark covers, its collector session (the time of the
    session's newest mark: one session marks all its tags at once)."""
    if marks is None or marks.is_empty():
        return {}
    own = marks.filter(pl.col("tag").str.starts_with(ALIVE + ":"))
    newest = own.group_by("tag").agg(pl.col("ts").max())
    wanted = set(spec.tag_names)
    return {
        tag.removeprefix(ALIVE + ":"): ts.isoformat()
        for tag, ts in newest.iter_rows()
        if tag.removeprefix(ALIVE + ":") in wanted
    }


def suppress(
    spec: PlantSpec,
    alarms: list[Alarm],
    now: datetime,
    collector_of: Mapping[str, str] | None = None,
) -> list[Alarm]:
    """``alarms`` with stale and quality floods collapsed (the rule in the module doc);
    ``collector_of``: each tag's collector session (:func:`collectors`)."""
    n = len(spec.tags)
    flood = max(FLOOD_MIN, math.ceil(FLOOD_FRACTION * n))
    stale = [a for a in alarms if a.kind == "stale"]
    bad = [a for a in alarms if a.kind == "quality"]
    out = [a for a in alarms if a.kind not in ("stale", "quality")]
    if len(stale) >= flood:
        out.append(_no_data(PLANT, "the collector", stale, n, now))
    else:
        stale_tags = {a.tag for a in stale}
        groups: dict[str, list[str]] = {}
        for tag, session in (collector_of or {}).items():
            groups.setdefault(session, []).append(tag)
        gone = set()
        for tags in groups.values():
            if len(tags) >= FLOOD_MIN and stale_tags >= set(tags):
                first = ", ".join(sorted(tags)[:3]) + (", ..." if len(tags) > 3 else "")
                mine = [a for a in stale if a.tag in tags]
                out.append(
                    _no_data(f"{PLANT}{first}", f"the collector of {first}", mine, len(tags), now)
                )
                gone |= set(tags)
        out += [a for a in stale if a.tag not in gone]
    if len(bad) >= flood:
        msg = f"bad or uncertain quality on {len(bad)} of {n} tags"
        out.append(Alarm(PLANT, "bad data", "medium", msg, now))
    else:
        out += bad
    return out


def _no_data(tag: str, source: str, stale: list[Alarm], n: int, now: datetime) -> Alarm:
    seen = [a.seen for a in stale if a.seen is not None]
    when = (
        f"for {human_duration((now - max(seen)).total_seconds())}"
        if len(seen) == len(stale)
        else "in the window"
    )
    msg = f"no data from {source} {when} ({len(stale)} of {n} tags)"
    return Alarm(tag, "no data", "high", msg, now, seen=max(seen) if seen else None)


def evaluate(
    spec: PlantSpec,
    latest: pl.DataFrame,
    now: datetime,
    *,
    marks: pl.DataFrame | None = None,
    stale: bool = True,
) -> list[Alarm]:
    """:func:`detect`, then :func:`suppress`: the alarms to raise."""
    found = detect(spec, latest, now, marks=marks, stale=stale)
    return suppress(spec, found, now, collectors(spec, marks) if stale else {})


@st.cache_resource(show_spinner=False)
def shared_book(root: str) -> AlarmBook:
    """The alarm book of the historian in ``root``, shared by every session of the app, resumed
    from the last :data:`RESTORE_DAYS` of its log."""
    log = AlarmLog(root)
    book = AlarmBook(log)
    book.restore(log.read(datetime.now(UTC) - timedelta(days=RESTORE_DAYS)))
    return book


def refresh(
    root: str, spec: PlantSpec, rows: pl.DataFrame, now: datetime, mode: modes.Mode
) -> AlarmBook:
    """The book to show after the rows read up to ``now`` (samples and liveness marks): live,
    the shared book updated; history, a book of the states at ``now``, neither stale nor logged."""
    samples, marks = data.split_marks(rows)
    latest = data.latest_values(samples)
    book = shared_book(root) if mode.live else AlarmBook()
    book.update(evaluate(spec, latest, now, marks=marks, stale=mode.live), now)
    return book


def current(cfg: data.AppConfig, spec: PlantSpec, mode: modes.Mode) -> AlarmBook:
    """The alarm book now (live) or at the time cursor (history): e.g. ``summary(current(...))``
    for the overview. Reads the last :data:`WINDOW_MIN` minutes through the shared cache."""
    assert cfg.historian is not None
    root, version = str(cfg.historian), data.stamp(cfg.historian)
    if mode.live:
        now = datetime.now(UTC)
        rows = data.recent_rows(root, data.plant_tags(spec), WINDOW_MIN, version)
    else:
        now = modes.as_of() or mode.end or datetime.now(UTC)
        rows = data.rows_until(root, tuple(spec.tag_names), now, WINDOW_MIN, version)
    return refresh(root, spec, rows, now, mode)
