"""Plant page: live trends of every tag with setpoints and limits, current values, alarms.

Everything live is in one fragment that reruns on its own every ``refresh_s`` seconds (the
rest of the page does not rerun). Each refresh reads only the selected time range, through the
cache shared by every session (:func:`dashboards.data.recent_rows`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go
import polars as pl
import streamlit as st
from plotly.subplots import make_subplots

from dashboards import data, style
from dashboards.alarms import AlarmBook, detect
from dashboards.style import ALARM_COLOURS
from twin.spec import PlantSpec

RANGES_MIN = (5, 15, 60, 240)
ROW_HEIGHT = 170
MAX_POINTS = 800  # points drawn per tag at most (a longer range is thinned evenly)


def setpoints(cfg: data.AppConfig, spec: PlantSpec) -> dict[str, float]:
    """CV setpoints: those the controller used last (``twin run``), else the spec's."""
    out = {t.name: t.setpoint for t in spec.cvs if t.setpoint is not None}
    if cfg.historian is not None:
        rec = data.latest_recommendation(cfg.historian)
        if rec is not None:
            out.update(rec.setpoints)
    return out


def trends(
    spec: PlantSpec, rows: pl.DataFrame, sp: dict[str, float], now: datetime, minutes: float
) -> go.Figure:
    """One strip per tag (CVs, then MVs, then DVs): value, setpoint, limits; units on axes."""
    tags = [*spec.cvs, *spec.mvs, *spec.dvs]
    fig = make_subplots(rows=len(tags), cols=1, shared_xaxes=True, vertical_spacing=0.03)
    fig.update_layout(
        template=style.TEMPLATE,
        height=ROW_HEIGHT * len(tags),
        showlegend=False,
        uirevision="plant",  # a zoom or pan survives the refreshes
    )
    parts = rows.partition_by("tag", as_dict=True, maintain_order=True)
    newest = rows.get_column("ts").max() if rows.height else None
    window = timedelta(minutes=minutes)
    end = newest if isinstance(newest, datetime) and now - newest > window else now
    edge = [(end - window).replace(tzinfo=None), end.replace(tzinfo=None)]  # UTC, as plotted
    for i, tag in enumerate(tags, start=1):
        part = parts.get((tag.name,))
        if part is not None:
            if part.height > MAX_POINTS:  # SVG stays fast; a pixel holds no more anyway
                part = part.gather_every(math.ceil(part.height / MAX_POINTS))
            fig.add_trace(
                go.Scatter(
                    x=part["ts"].dt.replace_time_zone(None),
                    y=part["value"],
                    mode="lines",
                    name=tag.name,
                    line={"color": style.PV, "width": 1.6},
                ),
                row=i,
                col=1,
            )
        for value, dash, color, label in (
            (tag.hi, "dot", style.LIMIT, "hi"),
            (tag.lo, "dot", style.LIMIT, "lo"),
            (sp.get(tag.name), "dash", style.SETPOINT, "SP"),
        ):
            if value is not None:
                fig.add_trace(
                    go.Scatter(
                        x=edge,
                        y=[value, value],
                        mode="lines",
                        name=f"{tag.name} {label}",
                        line={"color": color, "dash": dash, "width": 1},
                    ),
                    row=i,
                    col=1,
                )
        role = {"cv": "CV", "mv": "MV", "dv": "DV"}[tag.role]
        fig.update_yaxes(title_text=f"{role} {style.axis_title(tag.name, tag.unit)}", row=i, col=1)
    fig.update_xaxes(range=edge)
    return fig


def values_table(
    spec: PlantSpec, latest: pl.DataFrame, sp: dict[str, float], now: datetime
) -> pl.DataFrame:
    """Current value of each tag with unit, limits, setpoint, quality and age."""
    by_tag = {r["tag"]: r for r in latest.iter_rows(named=True)}
    rows = []
    for t in spec.tags:
        r = by_tag.get(t.name, {})
        ts = r.get("ts")
        rows.append(
            {
                "tag": t.name,
                "role": t.role.upper(),
                "description": t.description,
                "value": r.get("value"),
                "unit": t.unit,
                "lo": t.lo,
                "hi": t.hi,
                "setpoint": sp.get(t.name),
                "quality": str(r.get("quality", "none")),
                "age [s]": round((now - ts).total_seconds(), 1) if ts is not None else None,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"value": pl.Float64, "setpoint": pl.Float64})


def alarm_list(book: AlarmBook) -> None:
    """The alarm list, unacknowledged alarms in colour, each with an Acknowledge button."""
    listing = book.listing()
    st.markdown(f"**Alarms** ({book.unacknowledged} unacknowledged, {len(listing)} listed)")
    if not listing:
        st.caption("no alarms")
        return
    for alarm in listing:
        since = alarm.since.strftime("%H:%M:%S")
        state = "active" if alarm.active else "cleared"
        text = f"**{alarm.kind.upper()}** {alarm.message} — {state}, since {since} UTC"
        left, right = st.columns([6, 1], vertical_alignment="center")
        if alarm.acked:
            left.markdown(f"{text}, acknowledged")
        else:
            colour = ALARM_COLOURS[alarm.kind]
            left.markdown(f":{colour}-background[{text}]" if alarm.active else f":{colour}[{text}]")
            right.button(
                "Acknowledge", key=f"ack:{alarm.key}", on_click=book.acknowledge, args=(alarm.key,)
            )


def metrics(spec: PlantSpec, rows: pl.DataFrame, latest: pl.DataFrame) -> None:
    """A metric per CV and MV: the current value and its change over the last minute."""
    values = {r["tag"]: r for r in latest.iter_rows(named=True)}
    shown = [*spec.cvs, *spec.mvs]
    for col, tag in zip(st.columns(len(shown)), shown, strict=True):
        row = values.get(tag.name)
        if row is None or row["value"] is None:
            col.metric(style.axis_title(tag.name, tag.unit), "—")
            continue
        past = rows.filter(
            (pl.col("tag") == tag.name) & (pl.col("ts") <= row["ts"] - timedelta(minutes=1))
        )
        delta = None
        if past.height and past["value"][-1] is not None:
            delta = f"{row['value'] - past['value'][-1]:+.3g} {tag.unit} /min"
        col.metric(
            style.axis_title(tag.name, tag.unit),
            f"{row['value']:.4g}",
            delta,
            delta_color="off",
            help=tag.description or None,
        )


def live(cfg: data.AppConfig, spec: PlantSpec, minutes: float) -> None:
    """One refresh: read the range, update alarms, draw everything."""
    assert cfg.historian is not None
    now = datetime.now(UTC)
    rows = data.recent_rows(
        str(cfg.historian), tuple(spec.tag_names), float(minutes), data.stamp(cfg.historian)
    )
    latest = data.latest_values(rows)
    book: AlarmBook = st.session_state.setdefault("alarm_book", AlarmBook())
    book.update(detect(spec, latest, now))
    sp = setpoints(cfg, spec)
    alarm_list(book)
    metrics(spec, rows, latest)
    newest = latest.get_column("ts").max() if latest.height else None
    stamp = newest.strftime("%H:%M:%S") if isinstance(newest, datetime) else "none"
    st.caption(
        f"newest sample {stamp} UTC · updated {now:%H:%M:%S} UTC · every {cfg.refresh_s:g} s"
    )
    st.plotly_chart(
        trends(spec, rows, sp, now, minutes), key="plant_trends", config={"displaylogo": False}
    )
    st.dataframe(values_table(spec, latest, sp, now), hide_index=True)


def main() -> None:
    cfg = data.app_config()
    spec = data.plant_spec(cfg)
    if spec is None:
        st.info("No plant spec: start the app with --model MODEL or --spec SPEC.")
        return
    st.subheader(f"Plant {spec.name}")
    if cfg.historian is None:
        st.info("No historian: start the app with --historian DIR.")
        return
    if not cfg.historian.is_dir():
        st.error(f"historian folder {cfg.historian} does not exist")
        return
    minutes = (
        st.segmented_control(
            "Time range",
            RANGES_MIN,
            default=15,
            key="plant_minutes",
            format_func=lambda m: f"{m} min",
        )
        or 15
    )
    st.fragment(run_every=cfg.refresh_s)(live)(cfg, spec, minutes)


main()
