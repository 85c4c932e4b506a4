"""Figures shared by the pages: forecasts with bands drawn on the recent history.

One strip per tag, stacked on a shared time axis, engineering units on each y axis, in the grey
palette of :mod:`dashboards.style`. A forecast is its mean line and its band; several forecasts
(what-if scenarios) are told apart by shade and dash pattern, not by colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from dashboards import style
from twin.model.forecast import Forecast
from twin.spec import PlantSpec, Tag

ROW_HEIGHT = 190


def utc(ts: np.datetime64) -> datetime:
    """A numpy UTC time as an aware datetime."""
    return datetime.fromtimestamp(ts.astype("datetime64[us]").astype(np.int64) / 1e6, UTC)


def _ts(forecast: Forecast) -> np.ndarray:
    return forecast.ts.astype("datetime64[us]")  # UTC, naive: plotly draws it as it is


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
    spec: PlantSpec, history: pl.DataFrame, examples: Sequence[Mapping[str, Any]]
) -> go.Figure:
    """Past forecasts (dashed, with band) over what really happened, one strip per CV."""
    cvs = list(spec.cvs)
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
