"""Figures shared by the pages: forecasts with bands drawn on the recent history, per-tag trend
panels, and the overview's sparklines.

One strip per tag, stacked on a shared time axis, engineering units on each y axis, in the grey
palette of :mod:`dashboards.style`. A forecast is its mean line and its band; several forecasts
(what-if scenarios) are told apart by shade and dash pattern, not by colour.

- :func:`forecast_figure`, :func:`skill_figure`: forecasts (``make_subplots``), one strip per tag.
- :func:`tag_panels`, :func:`sparkline_svg` and their constants live in :mod:`dashboards.panels`
  and are re-exported here, so the pages import every figure from this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from dashboards import style
from dashboards.panels import (
    MAX_PANELS,
    MAX_POINTS,
    PANEL_GAP,
    PANEL_HEIGHT,
    SHOW,
    SPARK_H,
    SPARK_POINTS,
    SPARK_W,
    _naive,
    _padded,
    _thin,
    _ts,
    panel_title,
    sparkline_svg,
    tag_panels,
    utc,
)
from twin.model.forecast import Forecast
from twin.spec import PlantSpec, Tag

__all__ = [
    "MAX_PANELS",
    "MAX_POINTS",
    "PANEL_GAP",
    "PANEL_HEIGHT",
    "ROW_HEIGHT",
    "SHOW",
    "SPARK_H",
    "SPARK_POINTS",
    "SPARK_W",
    "_naive",
    "_padded",
    "_thin",
    "forecast_figure",
    "panel_title",
    "skill_figure",
    "sparkline_svg",
    "tag_panels",
    "utc",
]

ROW_HEIGHT = 190


def _x(frame: pl.DataFrame) -> pl.Series:
    """The frame's times as naive UTC (every figure's x axis is UTC)."""
    return frame.get_column("ts").dt.replace_time_zone(None)


def _hline(fig: go.Figure, x: Sequence[Any], value: float, row: int, label: str) -> None:
    fig.add_trace(
        go.Scatter(
            x=[x[0], x[-1]],
            y=[value, value],
            mode="lines",
            name=label,
            showlegend=False,
            line={"color": style.LIMIT, "dash": "dot", "width": 1},
            hoverinfo="skip",
        ),
        row=row,
        col=1,
    )


def _y_range(values: list[Any], tag: Tag) -> list[float] | None:
    """A y range around the drawn values (padded), so that moves of a few units show."""
    finite = [v[np.isfinite(v)] for v in (np.asarray(a, dtype=float) for a in values) if v.size]
    data = np.concatenate(finite) if finite else np.empty(0)
    if not data.size:
        return None
    lo, hi = float(data.min()), float(data.max())
    pad = max(0.15 * (hi - lo), 0.02 * tag.span)
    return [lo - pad, hi + pad]


def forecast_figure(
    spec: PlantSpec,
    tags: Sequence[Tag],
    history: pl.DataFrame | None,
    forecasts: Sequence[tuple[str, Forecast]],
    setpoints: Sequence[Mapping[str, Any]] = (),
) -> go.Figure:
    """History (PV line) and each named forecast (mean, band) of ``tags``, one strip per tag.

    ``setpoints``: per forecast, CV -> setpoint (a number, or an array over the forecast steps),
    drawn dashed over the forecast span.
    """
    fig = make_subplots(rows=len(tags), cols=1, shared_xaxes=True, vertical_spacing=0.04)
    fig.update_layout(template=style.TEMPLATE, height=ROW_HEIGHT * len(tags) + 40)
    x_all: list[Any] = []  # first and last times drawn (naive UTC)
    for i, tag in enumerate(tags, start=1):
        y_all: list[Any] = []  # every value drawn in this strip
        if history is not None and tag.name in history.columns and history.height:
            x = _x(history)
            x_all += [np.datetime64(x[0], "us"), np.datetime64(x[-1], "us")]
            y_all.append(history.get_column(tag.name).drop_nulls().to_numpy())
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=history.get_column(tag.name).to_list(),
                    mode="lines",
                    name="measured",
                    legendgroup="measured",
                    showlegend=i == 1,
                    line={"color": style.HISTORY, "width": 1.4},
                ),
                row=i,
                col=1,
            )
        for k, (name, fc) in enumerate(forecasts):
            colour, dash, fill = style.SCENARIO_STYLES[k % len(style.SCENARIO_STYLES)]
            xf = _ts(fc)
            x_all += [xf[0], xf[-1]]
            mean, lower, upper = fc.tag(tag.name)
            y_all += [lower, upper]
            if tag.role != "mv" and np.any(upper > lower):
                style.band(
                    fig,
                    xf,
                    lower,
                    upper,
                    fill=fill,
                    name=f"{name} band",
                    row=i,
                    col=1,
                    legend=False,
                )
            fig.add_trace(
                go.Scatter(
                    x=xf,
                    y=mean,
                    mode="lines",
                    name=name,
                    legendgroup=name,
                    showlegend=i == 1,
                    line={"color": colour, "dash": dash, "width": 2},
                    line_shape="hv" if tag.role == "mv" else "linear",
                ),
                row=i,
                col=1,
            )
            sp = setpoints[k].get(tag.name) if k < len(setpoints) else None
            if sp is not None:
                y = np.broadcast_to(np.asarray(sp, dtype=float), (len(xf),))
                y_all.append(y)
                fig.add_trace(
                    go.Scatter(
                        x=xf,
                        y=y,
                        mode="lines",
                        name=f"{name} SP",
                        showlegend=False,
                        line={"color": colour, "dash": "longdash", "width": 1},
                        line_shape="hv",
                    ),
                    row=i,
                    col=1,
                )
        y_range = _y_range(y_all, tag)
        if x_all:  # a limit line where the data comes near it
            span = [min(x_all), max(x_all)]
            for limit, label in ((tag.lo, "lo"), (tag.hi, "hi")):
                if y_range is None or y_range[0] <= limit <= y_range[1]:
                    _hline(fig, span, limit, i, label)
        role = tag.role.upper()
        fig.update_yaxes(
            title_text=f"{role} {style.axis_title(tag.name, tag.unit)}", range=y_range, row=i, col=1
        )
    return fig


def skill_figure(
    spec: PlantSpec,
    history: pl.DataFrame,
    examples: Sequence[Mapping[str, Any]],
    tags: Sequence[Tag] | None = None,
) -> go.Figure:
    """Past forecasts (dashed, with band) over what really happened, one strip per CV (of
    ``tags`` when given)."""
    cvs = [t for t in (spec.cvs if tags is None else tags) if t.role == "cv"]
    fig = make_subplots(rows=len(cvs), cols=1, shared_xaxes=True, vertical_spacing=0.05)
    fig.update_layout(template=style.TEMPLATE, height=ROW_HEIGHT * len(cvs) + 40)
    x = _x(history)
    for i, tag in enumerate(cvs, start=1):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=history.get_column(tag.name).to_list(),
                mode="lines",
                name="measured",
                legendgroup="measured",
                showlegend=i == 1,
                line={"color": style.PV, "width": 1.5},
            ),
            row=i,
            col=1,
        )
        for k, ex in enumerate(examples):
            xs = np.asarray(ex["ts"]).astype("datetime64[us]")
            one = ex[tag.name]
            style.band(fig, xs, one["lower"], one["upper"], name="band", row=i, col=1, legend=False)
            origin = np.datetime_as_string(np.asarray(ex["origin"]), unit="s")
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=one["mean"],
                    mode="lines",
                    name=f"forecast from {origin}",
                    legendgroup=f"ex{k}",
                    showlegend=i == 1,
                    line={"color": style.FORECAST, "dash": "dash", "width": 1.5},
                ),
                row=i,
                col=1,
            )
        fig.update_yaxes(title_text=f"CV {style.axis_title(tag.name, tag.unit)}", row=i, col=1)
    return fig
