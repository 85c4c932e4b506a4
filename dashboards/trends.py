"""The Plant page's trends: one strip per tag with its setpoint and limits, shared by sessions.

Built from plain dicts in one ``go.Figure`` call (several times cheaper than ``make_subplots``
and ``add_trace`` per trace) and cached per (historian, data stamp, time range, setpoints,
refresh slot): the sessions looking at the plant in the same refresh interval share one figure.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from dashboards import data, style
from twin.spec import PlantSpec

ROW_HEIGHT = 170
MAX_POINTS = 800
"""points drawn per tag at most (a longer range is thinned evenly)"""
SPACING = 0.03
"""vertical gap between strips, as a fraction of the figure"""
_TEMPLATE = style.TEMPLATE.to_plotly_json()


def build(
    spec: PlantSpec, rows: pl.DataFrame, sp: dict[str, float], now: datetime, minutes: float
) -> go.Figure:
    """One strip per tag (CVs, then MVs, then DVs): value, setpoint, limits; units on axes.

    The time axis ends now, or at the newest sample when that is older than the range.
    """
    tags = [*spec.cvs, *spec.mvs, *spec.dvs]
    n = len(tags)
    parts = rows.partition_by("tag", as_dict=True, maintain_order=True)
    newest = rows.get_column("ts").max() if rows.height else None
    window = timedelta(minutes=minutes)
    end = newest if isinstance(newest, datetime) and now - newest > window else now
    edge = [(end - window).replace(tzinfo=None), end.replace(tzinfo=None)]  # UTC, as plotted
    height = (1 - SPACING * (n - 1)) / n
    traces: list[dict[str, Any]] = []
    layout: dict[str, Any] = {
        "template": _TEMPLATE,
        "height": ROW_HEIGHT * n,
        "showlegend": False,
        "uirevision": "plant",  # a zoom or pan survives the refreshes
    }
    for i, tag in enumerate(tags, start=1):
        axis = "" if i == 1 else str(i)
        top = 1 - (i - 1) * (height + SPACING)
        role = tag.role.upper()
        layout[f"yaxis{axis}"] = {
            "domain": [max(0.0, top - height), top],
            "anchor": f"x{axis}",
            "title": {"text": f"{role} {style.axis_title(tag.name, tag.unit)}"},
        }
        layout[f"xaxis{axis}"] = {
            "anchor": f"y{axis}",
            "range": edge,
            "type": "date",
            "showticklabels": i == n,  # the bottom strip carries the time ticks
            **({"matches": "x"} if i > 1 else {}),
        }
        where = {"xaxis": f"x{axis}", "yaxis": f"y{axis}"}
        part = parts.get((tag.name,))
        if part is not None:
            if part.height > MAX_POINTS:  # SVG stays fast; a pixel holds no more anyway
                part = part.gather_every(math.ceil(part.height / MAX_POINTS))
            traces.append({
                "type": "scatter", "mode": "lines", "name": tag.name,
                "x": part["ts"].dt.replace_time_zone(None).to_numpy(),
                "y": part["value"].to_numpy(),
                "line": {"color": style.PV, "width": 1.6}, **where,
            })  # fmt: skip
        for value, dash, color, label in (
            (tag.hi, "dot", style.LIMIT, "hi"),
            (tag.lo, "dot", style.LIMIT, "lo"),
            (sp.get(tag.name), "dash", style.SETPOINT, "SP"),
        ):
            if value is not None:
                traces.append({
                    "type": "scatter", "mode": "lines", "name": f"{tag.name} {label}",
                    "x": edge, "y": [value, value], "hoverinfo": "skip",
                    "line": {"color": color, "dash": dash, "width": 1}, **where,
                })  # fmt: skip
    return go.Figure(data=traces, layout=layout, _validate=False)  # built here, known valid


@st.cache_resource(ttl=60, max_entries=32, show_spinner=False)
def shared(
    root: str,
    version: Any,
    minutes: float,
    setpoints: tuple[tuple[str, float], ...],
    slot: int,
    _spec: PlantSpec,
) -> go.Figure:
    """:func:`build` for the refresh ``slot`` (now // refresh), shared by every session.

    Returned as is (not copied): callers only draw it.
    """
    rows = data.recent_rows(root, tuple(_spec.tag_names), minutes, version)
    return build(_spec, rows, dict(setpoints), datetime.now(UTC), minutes)
