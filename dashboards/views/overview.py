"""Overview page (ISA-101 level 1): is the plant well, in seconds.

At the top one line says whether every CV is where it should be, beside the alarms summary, the
loop's state (advisory, writing, refusing and why: the newest logged recommendation and the
write-back audit), the twin's health and how fresh the data is. Below, per unit or area (the
spec's ``group``; ungrouped tags last) a tile per CV: value and unit, deviation from its
setpoint or operating zone, a sparkline of the last hour, and the twin's forecast at its horizon
(direction, value, band). Grey throughout; colour only where something is abnormal.

Speed: the spec is read from the model folder's ``spec.toml`` (the twin is not loaded for it),
all tags come from one cached read, the sparklines are inline SVG (no chart library). The tiles
are drawn before the twin is loaded or asked for anything: its forecast and health fill in
afterwards. Live, the page redraws every ``refresh_s`` (a fragment); in history mode it shows
the plant as of the Plant page's time cursor, without refreshing.

The page draws; what it shows is computed in :mod:`dashboards.overview_data`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import streamlit as st

from dashboards import charts, data, page, style, trends
from dashboards.modes import human_duration
from dashboards.overview_data import (
    AMBER,
    RED,
    SPARK_MIN,
    Tile,
    View,
    _optional,
    audit_tail,
    forecast_line,
    groups,
    loop_state,
    read_view,
    tile,
)
from twin.errors import TwinError
from twin.model.forecast import Forecast
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

TILES_PER_ROW = 4
# the heading of the CVs without a group, when others have one
OTHER = "Other tags"
# model health ratio above which the twin is flagged (the write-back guard refuses there)
WARN_RATIO = 3.0
# session-state key of the twin's last answer
TWIN_KEY = "overview_twin"


# --- tiles --------------------------------------------------------------------------------


def spark(t: Tile, rows: pl.DataFrame | None, fc: Forecast | None, end: datetime) -> str:
    """The tile's sparkline SVG (seconds before ``end`` on x)."""
    if rows is None or not rows.height:
        return ""
    x = (rows.get_column("ts") - end).dt.total_microseconds().to_numpy() / 1e6
    zone = None
    if t.tag.op_lo is not None or t.tag.op_hi is not None:
        zone = (t.tag.op_low, t.tag.op_high)
    future = None
    if fc is not None and t.tag.name in fc.tags:
        xf = (fc.ts.astype("datetime64[us]") - np.datetime64(end.replace(tzinfo=None), "us")) / (
            np.timedelta64(1, "s")
        )
        mean, lower, upper = fc.tag(t.tag.name)
        future = (xf.astype(float), mean, lower, upper)
    values = rows.get_column("value").to_numpy()
    label = f"{t.tag.name}, last {SPARK_MIN:g} min"
    return charts.sparkline_svg(
        x, values, zone=zone, setpoint=t.setpoint, forecast=future, label=label
    )


@dataclass
class Slots:
    """The parts of a tile filled once the twin has answered."""

    tile: Tile
    rows: pl.DataFrame | None
    spark: Any
    forecast: Any


def draw_tile(box: Any, t: Tile, rows: pl.DataFrame | None, end: datetime) -> Slots:
    """A tile in ``box``: metric, state, sparkline; forecast slot left empty."""
    tag = t.tag
    card = box.container(border=True)
    card.metric(
        style.axis_title(tag.name, tag.unit),
        "—" if t.value is None else f"{t.value:.4g}",
        t.deviation,
        delta_color="off",
        delta_arrow="off" if t.deviation is None or t.deviation.startswith("in zone") else "auto",
        help=tag.description or None,
    )
    slot = card.empty()
    svg = spark(t, rows, None, end)
    if svg:
        slot.markdown(svg, unsafe_allow_html=True)
    if t.abnormal is not None:
        card.markdown(f":{t.colour}-background[{t.abnormal}]")
    if t.ts is not None and (end - t.ts).total_seconds() > 60:
        ago = human_duration((end - t.ts).total_seconds())
        card.caption(f"value of {t.ts:%Y-%m-%d %H:%M:%S} UTC ({ago} before)")
    return Slots(t, rows, slot, card.empty())


# --- the status line ----------------------------------------------------------------------


def status_line(tiles: list[Tile]) -> None:
    """One line: every CV well, or which are not (in colour)."""
    bad = [t for t in tiles if t.abnormal is not None]
    if not bad:
        st.markdown(f"**All {len(tiles)} CVs within their limits**")
        return
    worst = RED if any(t.colour == RED for t in bad) else AMBER
    names = ", ".join(f"{t.tag.name} ({t.abnormal})" for t in bad[:6])
    more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
    st.markdown(f":{worst}-background[**{len(bad)} of {len(tiles)} CVs abnormal:** {names}{more}]")


def alarm_summary(cfg: data.AppConfig, spec: PlantSpec, view: View) -> Any:
    """``dashboards.alarms.summary`` of the alarms as of the view (None: no such API yet)."""
    summary = _optional("dashboards.alarms", "summary")
    refresh = _optional("dashboards.alarms", "refresh")
    if summary is None or refresh is None or view.mode is None:
        return None
    rows = pl.concat([view.rows, view.marks]) if view.marks.height else view.rows
    book = refresh(str(cfg.historian), spec, rows, view.end, view.mode)
    return summary(book, view.end)


def draw_alarms(box: Any, found: Any) -> None:
    """Alarm counts by priority and the worst one, in its priority's colour."""
    counts: dict[str, int] = dict(getattr(found, "counts", {}) or {})
    total = sum(counts.values())
    box.metric(
        "alarms",
        str(total),
        delta_color="off",
        help="active alarms (not shelved); Plant page: the list",
    )
    colours = _optional("dashboards.alarms", "PRIORITY_COLOURS") or {}
    box.caption(
        " · ".join(f"{p} {n}" for p, n in counts.items())
        + f" · {getattr(found, 'unacknowledged', 0)} unacknowledged"
    )
    worst = getattr(found, "worst", None)
    if worst:
        colour = colours.get(getattr(found, "worst_priority", None), AMBER)
        box.markdown(f":{colour}-background[{worst}]")


def draw_loop(box: Any, cfg: data.AppConfig, spec: PlantSpec) -> None:
    assert cfg.historian is not None
    rec = data.latest_recommendation(cfg.historian)
    state, why, colour = loop_state(
        rec.ts if rec else None, audit_tail(cfg.historian), spec.sample_period, cfg.approve
    )
    box.metric(
        "loop", state, delta_color="off", help="Recommendations page: the moves and the audit"
    )
    box.markdown(f":{colour}-background[{why}]" if colour else why)
    if rec is not None:
        box.caption(f"newest recommendation {rec.ts:%Y-%m-%d %H:%M:%S} UTC")


def draw_data(box: Any, view: View) -> None:
    """Live or history, and how old the newest sample shown is."""
    newest = view.rows.get_column("ts").max() if view.rows.height else None
    if not isinstance(newest, datetime):
        box.metric("data", "none", delta_color="off")
        box.caption(f"no sample in the {SPARK_MIN:g} min up to {view.end:%Y-%m-%d %H:%M} UTC")
        return
    box.metric("data", "live" if view.live else "history", delta_color="off")
    age = human_duration(max(0.0, (datetime.now(UTC) - newest).total_seconds()))
    if view.live:
        box.caption(f"newest sample {age} ago ({newest:%H:%M:%S} UTC)")
    else:
        why = getattr(view.mode, "why", "")
        box.caption(
            f"as of {view.end:%Y-%m-%d %H:%M:%S} UTC" + (f"; {why}" if why else f", {age} ago")
        )


# --- the twin -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TwinSays:
    """What the twin said at the last redraw (kept in the session: a refresh shows it at once
    and replaces it when the new answer is ready, so nothing blinks while the twin works)."""

    model: str
    forecast: Forecast | None
    why_none: str
    """why there is no forecast"""
    health: float | None


def show_twin(says: TwinSays, view: View, slots: list[Slots], health_slot: Any) -> None:
    """The forecast in each tile and the health in its box."""
    fc = says.forecast
    for s in slots:
        if fc is None:
            s.forecast.caption(f"no forecast: {says.why_none}")
            continue
        if s.tile.value is None or s.tile.tag.name not in fc.tags:
            continue
        svg = spark(s.tile, s.rows, fc, view.end)
        if svg:
            s.spark.markdown(svg, unsafe_allow_html=True)
        period = float((fc.ts[1] - fc.ts[0]) / np.timedelta64(1, "s")) if fc.horizon > 1 else 0.0
        text, warn = forecast_line(s.tile.tag, s.tile.value, fc, period)
        box = s.forecast.container()
        box.caption(text, help=f"the twin's forecast with every MV held, {fc.coverage:.0%} band")
        if warn:
            box.markdown(f":{AMBER}-background[{warn}]")
    box = health_slot.container()
    ratio = says.health
    box.metric(
        "model health",
        "n/a" if ratio is None else f"{ratio:.2f}",
        delta_color="off",
        help="live / validation forecast error of the twin on the last samples (about 1: as "
        f"validated; the write-back guard refuses above {WARN_RATIO:g}); Model page: details",
    )
    if ratio is not None and ratio > WARN_RATIO:
        box.markdown(f":{AMBER}-background[forecasts {ratio:.1f}x the validation error]")
    else:
        box.caption("forecasting as validated" if ratio is not None else "not enough recent data")


def ask_twin(cfg: data.AppConfig) -> TwinSays:
    """The twin's hold-MV forecast and health now (the twin loaded once per process)."""
    from dashboards import compute

    assert cfg.historian is not None and cfg.model is not None
    root, model = str(cfg.historian), str(cfg.model)
    version = data.stamp(cfg.historian)
    data.load_twin(model)
    fc, why = None, ""
    try:
        fc = trends.hold_forecast(model, root, version)
    except TwinError as exc:
        why = str(exc)
    try:
        ratio = compute.health(model, root, version)
    except TwinError as exc:
        log.info("no model health: %s", exc)
        ratio = None
    return TwinSays(model, fc, why, ratio)


def with_twin(cfg: data.AppConfig, view: View, slots: list[Slots], health_slot: Any) -> None:
    """Forecast and health from the twin into their slots: the last answer at once, the new one
    when ready."""
    if cfg.model is None:
        box = health_slot.container()
        box.metric("model", "none", delta_color="off")
        box.caption("no twin loaded: start the app with --model MODEL")
        return
    as_of = _optional("dashboards.modes", "as_of")
    if not view.live and as_of is not None and as_of() is not None:
        box = health_slot.container()
        box.metric("model", "—", delta_color="off")
        box.caption("a forecast from the time cursor: Forecast page")
        return
    last = st.session_state.get(TWIN_KEY)
    if isinstance(last, TwinSays) and last.model == str(cfg.model):
        show_twin(last, view, slots, health_slot)
    says = ask_twin(cfg)
    st.session_state[TWIN_KEY] = says
    show_twin(says, view, slots, health_slot)


# --- the page -----------------------------------------------------------------------------


def live(cfg: data.AppConfig, spec: PlantSpec) -> None:
    """One redraw: the status row, the tiles by group, then what the twin says."""
    view = read_view(cfg, spec)
    sp = data.setpoints_in_force(cfg, spec, None if view.live else view.end)
    latest = {r["tag"]: r for r in data.latest_values(view.rows).iter_rows(named=True)}
    cvs = list(spec.cvs)
    tiles = {t.name: tile(t, latest.get(t.name), sp.get(t.name)) for t in cvs}
    status_line(list(tiles.values()))
    found = alarm_summary(cfg, spec, view)
    boxes = st.columns(4 if found is not None else 3)
    draw_data(boxes[0], view)
    draw_loop(boxes[1], cfg, spec)
    health_slot = boxes[2].empty()
    if cfg.model is not None:
        health_slot.metric("model health", "…", delta_color="off", help="the twin is loading")
    if found is not None:
        draw_alarms(boxes[3], found)
    parts = view.rows.filter(pl.col("tag").is_in([t.name for t in cvs])).partition_by(
        "tag", as_dict=True
    )
    slots: list[Slots] = []
    grouped = groups(cvs)
    for name, members in grouped:
        box = (
            st.expander(name or OTHER, expanded=True)
            if len(grouped) > 1 or name
            else st.container()
        )
        for start in range(0, len(members), TILES_PER_ROW):
            columns = box.columns(TILES_PER_ROW)
            for column, tag in zip(columns, members[start : start + TILES_PER_ROW], strict=False):
                slots.append(draw_tile(column, tiles[tag.name], parts.get((tag.name,)), view.end))
    others = len(spec.mvs) + len(spec.dvs)
    st.caption(
        f"{len(cvs)} CVs here; {len(spec.mvs)} MVs and {len(spec.dvs)} DVs on the Trends page"
        if others
        else f"{len(cvs)} CVs"
    )
    with_twin(cfg, view, slots, health_slot)


def main() -> None:
    opened = page.open_plant_page("Overview {plant}")
    if opened is None:
        return
    cfg, spec = opened
    session_mode = _optional("dashboards.modes", "session_mode")
    live_now = session_mode is None or session_mode(cfg, spec).live
    st.fragment(run_every=cfg.refresh_s if live_now else None)(live)(cfg, spec)


main()
