"""What the Overview page shows, without drawing it: the rows of one redraw, a tile per CV, the
forecast line, and the loop's state from the write-back audit.

Pure functions of the spec, the historian's rows and the audit (:mod:`dashboards.views.overview`
draws them): each can be tested without Streamlit running a page.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from dashboards import data, style
from dashboards.modes import human_duration
from twin.loop.audit import AUDIT_FILE
from twin.model.forecast import Forecast
from twin.spec import PlantSpec, Tag

# minutes of history in each sparkline (and in the one read of all tags)
SPARK_MIN = 60.0
# a forecast is steady when it moves less than this fraction of its band's half-width ...
STEADY = 0.25
# ... or less than this fraction of the tag's span
STEADY_SPAN = 0.005
# bytes read from the end of the write-back audit (its newest entries)
AUDIT_TAIL = 64 * 1024
# an audit entry this many sample periods older than the newest recommendation is a past one
LOOP_LAG_PERIODS = 5
RED, AMBER = style.ALARM_COLOURS["limit"], style.ALARM_COLOURS["quality"]


def _optional(module: str, name: str) -> Any:
    """``module.name``, or None where it does not exist (yet): the page shows nothing for it."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


# --- the spec, the mode, the rows ---------------------------------------------------------


@dataclass(frozen=True)
class View:
    """What one redraw shows: rows of every tag up to ``end``, and whether the plant is live."""

    rows: pl.DataFrame
    """samples (tag, ts, value, quality), by ts"""
    marks: pl.DataFrame
    """the collector's liveness marks read with them (empty where none)"""
    end: datetime
    """the instant shown: now, or the time cursor in history mode"""
    live: bool
    mode: Any
    """``dashboards.modes.Mode`` (None where that module does not exist)"""


def read_view(cfg: data.AppConfig, spec: PlantSpec) -> View:
    """One read of every tag's last :data:`SPARK_MIN` minutes (as of the cursor in history)."""
    assert cfg.historian is not None
    root, version = str(cfg.historian), data.stamp(cfg.historian)
    session_mode = _optional("dashboards.modes", "session_mode")
    mode = session_mode(cfg, spec) if session_mode is not None else None
    live = mode is None or bool(mode.live)
    plant_tags = getattr(data, "plant_tags", None)
    tags = plant_tags(spec) if plant_tags is not None else tuple(spec.tag_names)
    as_of = _optional("dashboards.modes", "as_of")
    cursor = None if live or as_of is None else as_of()
    rows_until = getattr(data, "rows_until", None)
    if cursor is not None and rows_until is not None:
        rows, end = rows_until(root, tags, cursor, SPARK_MIN, version), cursor
    else:
        rows = data.recent_rows(root, tags, SPARK_MIN, version)
        newest = rows.get_column("ts").max() if rows.height else None
        end = datetime.now(UTC) if live or not isinstance(newest, datetime) else newest
    split = getattr(data, "split_marks", None)
    samples, marks = split(rows) if split is not None else (rows, rows.clear())
    return View(samples, marks, end, live, mode)


# --- tiles --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One CV as the overview shows it."""

    tag: Tag
    value: float | None
    ts: datetime | None
    quality: str
    setpoint: float | None
    deviation: str | None
    """from the setpoint, or from the operating zone ("in zone" inside it); None: neither"""
    abnormal: str | None
    """why the value is abnormal (outside a limit, bad quality, no data); None: normal"""
    colour: str | None
    """markdown colour of ``abnormal``"""


def _num(x: float, unit: str) -> str:
    return f"{x:.4g} {unit}".rstrip()


def tile(tag: Tag, row: dict[str, Any] | None, setpoint: float | None) -> Tile:
    """What the tile of ``tag`` says, from its newest row (None: none in the window)."""
    if row is None:
        return Tile(tag, None, None, "none", setpoint, None, "no data in the last hour", AMBER)
    value = row.get("value")
    if value is None or not math.isfinite(value):
        return Tile(tag, None, None, "none", setpoint, None, "no valid value", AMBER)
    ts, quality = row.get("ts"), str(row.get("quality", "good"))
    deviation, abnormal, colour = None, None, None
    zone = tag.op_lo is not None or tag.op_hi is not None
    if setpoint is not None:  # the unit is the label's
        deviation = f"{value - setpoint:+.3g} from SP {setpoint:.4g}"
    elif zone and value > tag.op_high:
        deviation = f"{value - tag.op_high:+.3g} above zone"
    elif zone and value < tag.op_low:
        deviation = f"{value - tag.op_low:+.3g} below zone"
    elif zone:
        deviation = f"in zone {tag.op_low:.4g} to {tag.op_high:.4g}"
    if value > tag.hi or value < tag.lo:
        side, bound = ("hi", tag.hi) if value > tag.hi else ("lo", tag.lo)
        abnormal, colour = (
            f"{'above' if side == 'hi' else 'below'} {side} {_num(bound, tag.unit)}",
            RED,
        )
    elif zone and (value > tag.op_high or value < tag.op_low):
        side, bound = ("op hi", tag.op_high) if value > tag.op_high else ("op lo", tag.op_low)
        abnormal = f"{'above' if side == 'op hi' else 'below'} {side} {_num(bound, tag.unit)}"
        colour = AMBER
    elif quality != "good":
        abnormal, colour = f"quality {quality}", AMBER
    return Tile(tag, float(value), ts, quality, setpoint, deviation, abnormal, colour)


def groups(tags: list[Tag]) -> list[tuple[str, list[Tag]]]:
    """Tags by group in the order the spec first names each; those without one last."""
    out: dict[str, list[Tag]] = {}
    for t in tags:
        out.setdefault(t.group, []).append(t)
    named = [(g, ts) for g, ts in out.items() if g]
    return named + ([("", out[""])] if "" in out else [])


def forecast_line(tag: Tag, value: float, fc: Forecast, period: float) -> tuple[str, str | None]:
    """The tile's forecast: direction, value and band at the horizon; and, in colour, when the
    forecast leaves the operating zone."""
    mean, lower, upper = (float(a[-1]) for a in fc.tag(tag.name))
    move = mean - value
    steady = max(STEADY * (upper - lower) / 2, STEADY_SPAN * tag.span)
    arrow = "→ steady" if abs(move) <= steady else ("↗ rising" if move > 0 else "↘ falling")
    within = human_duration(fc.horizon * period)
    text = f"{arrow} to {mean:.4g} in {within} · band {lower:.4g} to {upper:.4g}"
    warn = None  # a predicted excursion: only while the value is still inside the zone
    if not tag.op_low <= value <= tag.op_high:
        pass
    elif tag.op_hi is not None and mean > tag.op_high:
        warn = f"forecast above op hi {_num(tag.op_high, tag.unit)} in {within}"
    elif tag.op_lo is not None and mean < tag.op_low:
        warn = f"forecast below op lo {_num(tag.op_low, tag.unit)} in {within}"
    return text, warn


# --- the status line ----------------------------------------------------------------------


def audit_tail(root: Path) -> list[dict[str, Any]]:
    """The newest entries of the write-back audit (its last :data:`AUDIT_TAIL` bytes)."""
    path = root / AUDIT_FILE
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - AUDIT_TAIL))
            raw = f.read()
    except FileNotFoundError:
        return []
    lines = raw.decode("utf-8", "replace").splitlines()[1 if size > AUDIT_TAIL else 0 :]
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn line
        if isinstance(entry, dict):
            out.append(entry)
    return out


def _ts(value: Any) -> datetime | None:
    try:
        ts = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def loop_state(
    rec_ts: datetime | None, audit: list[dict[str, Any]], period: float, approve: bool
) -> tuple[str, str, str | None]:
    """(state, why, colour) of the loop from its newest recommendation and audit entries.

    ``writing`` / ``refusing`` / ``write failed``: what the write-back did with the newest
    recommendation (or one a few periods before it); ``approval`` (writes wait for an operator)
    in approval mode; ``advisory`` when nothing is written; ``none`` before ``twin run`` logged a
    recommendation.
    """
    if rec_ts is None:
        return "none", "no recommendation logged: `twin run` writes them here", None
    last = audit[-1] if audit else None
    last_ts = _ts(last.get("rec_ts")) if last else None
    recent = rec_ts - timedelta(seconds=LOOP_LAG_PERIODS * period)
    if last is not None and last_ts is not None and last_ts >= recent:
        same = [e for e in audit if e.get("rec_ts") == last.get("rec_ts")]
        refused = [e for e in same if e.get("action") == "refuse"]
        failed = [e for e in same if e.get("action") in ("write", "readback") and not e.get("ok")]
        wrote = [e for e in same if e.get("action") == "write" and e.get("ok")]
        if refused:
            return "refusing", str(refused[-1].get("why", "")), AMBER
        if failed:
            return "write failed", str(failed[-1].get("why", "")), RED
        if wrote:
            moves = ", ".join(f"{e.get('tag')} = {e.get('value')}" for e in wrote)
            by = wrote[-1].get("approved_by")
            return "writing", f"wrote {moves}" + (f", approved by {by}" if by else ""), None
    if approve:
        return "approval", "writes wait for an operator's approval (Recommendations page)", None
    return "advisory", "recommendations only: nothing is written to the plant", None
