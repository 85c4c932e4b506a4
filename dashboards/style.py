"""The app's look, after ISA-101 high-performance HMI practice: grey, with colour only for alarms.

- Greys for everything normal: the measured value (PV) nearly black, setpoints dark grey dashed,
  limits mid grey dotted, forecast bands light grey fills.
- Colour is kept for abnormal states: :data:`ALARM_COLOURS` (red for a limit violation, amber for
  bad or stale data), used by the alarm list and nowhere else.
- One Plotly template (:data:`TEMPLATE`) for every figure; axes carry engineering units.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

BACKGROUND = "#D4D4D4"
"""the page background (also in the theme the ``twin dashboard`` command sets)"""
PANEL = "#E4E4E4"
"""plot and secondary background"""
TEXT = "#1F1F1F"
GRID = "#BDBDBD"
PV = "#1A1A1A"
"""measured values"""
SETPOINT = "#4A4A4A"
LIMIT = "#7A7A7A"
FORECAST = "#3A3A3A"
BAND = "rgba(90, 90, 90, 0.22)"
"""forecast band fill"""
HISTORY = "#6E6E6E"
#: lines of compared scenarios: shades of grey and dash patterns that stay apart when printed
SCENARIO_STYLES: tuple[tuple[str, str, str], ...] = (
    ("#1A1A1A", "solid", "rgba(26, 26, 26, 0.18)"),
    ("#5C5C5C", "dash", "rgba(92, 92, 92, 0.18)"),
    ("#8C8C8C", "dot", "rgba(140, 140, 140, 0.22)"),
    ("#3A3A3A", "dashdot", "rgba(58, 58, 58, 0.14)"),
)
ALARM_COLOURS = {"limit": "red", "quality": "orange", "stale": "orange", "at limit": "orange"}
"""Streamlit markdown colour of an unacknowledged alarm, by kind"""

#: theme options passed to ``streamlit run`` by ``twin dashboard`` (``--theme.<key> <value>``)
THEME = {
    "base": "light",
    "backgroundColor": BACKGROUND,
    "secondaryBackgroundColor": PANEL,
    "textColor": TEXT,
    "primaryColor": "#4A4A4A",
}

TEMPLATE = go.layout.Template(
    layout=go.Layout(
        paper_bgcolor=BACKGROUND,
        plot_bgcolor=PANEL,
        font={"color": TEXT, "size": 12},
        colorway=[PV, SETPOINT, LIMIT, HISTORY],
        xaxis={"gridcolor": GRID, "linecolor": LIMIT, "zeroline": False},
        yaxis={"gridcolor": GRID, "linecolor": LIMIT, "zeroline": False},
        margin={"l": 60, "r": 20, "t": 30, "b": 30},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        hovermode="x unified",
    )
)

CSS = f"""
<style>
  .stApp {{ background-color: {BACKGROUND}; }}
  [data-testid="stMetricValue"] {{ font-size: 1.6rem; }}
</style>
"""


def figure(height: int = 260, **layout: Any) -> go.Figure:
    """An empty figure in the app's template."""
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, height=height, **layout)
    return fig


def band(
    fig: go.Figure,
    x: Any,
    lower: Any,
    upper: Any,
    *,
    fill: str = BAND,
    name: str = "band",
    row: int | None = None,
    col: int | None = None,
    legend: bool = True,
) -> None:
    """Draw a shaded band between ``lower`` and ``upper``."""
    where = {"row": row, "col": col} if row is not None else {}
    fig.add_trace(
        go.Scatter(
            x=x,
            y=upper,
            mode="lines",
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
            legendgroup=name,
        ),
        **where,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=lower,
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=fill,
            name=name,
            showlegend=legend,
            legendgroup=name,
            hoverinfo="skip",
        ),
        **where,
    )


def note(text: str) -> None:
    """A plain notice in a grey box (``st.info`` is blue: colour is kept for abnormal states)."""
    import streamlit as st

    st.container(border=True).markdown(text)


def axis_title(name: str, unit: str) -> str:
    """``name [unit]``: every axis carries its engineering unit."""
    return f"{name} [{unit}]" if unit else name
