"""Per-tag trend panels and the overview's sparklines: the figures drawn often, built cheaply.

- :func:`tag_panels`: measured value, setpoint, instrument and operating limits and a forecast
  with its band, one panel of fixed height per tag with its own axis and title; built from plain
  dicts (several times cheaper than ``add_trace``), so a refresh of many panels stays fast.
- :func:`sparkline_svg`: a small inline SVG of the last hour (no script: the fastest to draw).

Grey palette of :mod:`dashboards.style`; :mod:`dashboards.charts` re-exports these names.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl

from dashboards import style
from twin.model.forecast import Forecast
from twin.spec import Tag

PANEL_HEIGHT = 170
"""height of one :func:`tag_panels` panel [px], whatever the number of panels"""
PANEL_GAP = 30
"""space above each panel for its title [px]"""
MAX_PANELS = 8
"""most panels a page draws at once (more: paging or a selection)"""
MAX_POINTS = 800
"""points drawn per tag at most (a longer range is thinned evenly)"""
SHOW = ("setpoint", "limits", "forecast")
"""what :func:`tag_panels` can draw beside the measured value"""
_TEMPLATE = style.TEMPLATE.to_plotly_json()


def utc(ts: np.datetime64) -> datetime:
    """A numpy UTC time as an aware datetime."""
    return datetime.fromtimestamp(ts.astype("datetime64[us]").astype(np.int64) / 1e6, UTC)


def _ts(forecast: Forecast) -> np.ndarray:
    return forecast.ts.astype("datetime64[us]")  # UTC, naive: plotly draws it as it is


# --- per-tag panels -----------------------------------------------------------------------


def _naive(ts: datetime) -> datetime:
    """A time as naive UTC (what the figures plot)."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _padded(values: Sequence[Any], tag: Tag) -> list[float] | None:
    finite = [v[np.isfinite(v)] for v in (np.asarray(a, dtype=float).ravel() for a in values)]
    data = np.concatenate(finite) if finite else np.empty(0)
    if not data.size:
        return None
    lo, hi = float(data.min()), float(data.max())
    pad = max(0.15 * (hi - lo), 0.02 * tag.span, 1e-9)
    return [lo - pad, hi + pad]


def panel_title(tag: Tag) -> str:
    """A panel's title: role, name, description, unit."""
    text = f"{tag.role.upper()} <b>{html.escape(tag.name)}</b>"
    if tag.description:
        text += f" · {html.escape(tag.description)}"
    return text + (f" [{html.escape(tag.unit)}]" if tag.unit else "")


def tag_panels(
    tags: Sequence[Tag],
    rows: pl.DataFrame,
    edge: tuple[datetime, datetime],
    *,
    setpoints: Mapping[str, float] | None = None,
    forecast: Forecast | None = None,
    show: Collection[str] = SHOW,
    legend: bool = True,
    uirevision: str = "trend",
    height: int = PANEL_HEIGHT,
) -> go.Figure:
    """One panel per tag (in order), each with its own y axis in the tag's unit and a title.

    ``rows``: long rows (tag, ts, value) of the measured values; ``edge``: the time range of
    the history (UTC), extended to the forecast's end when one is drawn. ``show`` (of
    :data:`SHOW`): the setpoint (``setpoints``, else the spec's), the instrument limits (dotted)
    and operating limits (dash-dot), the forecast mean (dashed) and its band. Each y axis spans
    what is drawn of the tag's own data: a limit far from it is off the panel. Every panel has
    the same height in pixels, whatever their number.
    """
    sp = dict(setpoints or {})
    n = max(1, len(tags))
    parts = rows.partition_by("tag", as_dict=True, maintain_order=True) if rows.height else {}
    x0, x1 = _naive(edge[0]), _naive(edge[1])
    fc_tags = set(forecast.tags) if forecast is not None and "forecast" in show else set()
    if fc_tags:
        assert forecast is not None
        x1 = max(x1, utc(forecast.ts[-1]).replace(tzinfo=None))
    plot_h = n * (height + PANEL_GAP)
    traces: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    layout: dict[str, Any] = {
        "template": _TEMPLATE,
        "height": plot_h + 8 + 34,
        "margin": {"l": 60, "r": 20, "t": 8, "b": 34},
        "showlegend": legend,
        "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1, "xanchor": "right"},
        "uirevision": uirevision,  # a zoom or pan survives the refreshes
    }
    seen: set[str] = set()  # legend entries drawn once, on the first panel that has them

    def add(kind: str, x: Any, y: Any, where: dict[str, str], **style_: Any) -> None:
        traces.append({
            "type": "scatter", "mode": "lines", "name": kind, "legendgroup": kind,
            "showlegend": kind not in seen, "x": x, "y": y, **where, **style_,
        })  # fmt: skip
        seen.add(kind)

    for i, tag in enumerate(tags):
        axis = "" if i == 0 else str(i + 1)
        where = {"xaxis": f"x{axis}", "yaxis": f"y{axis}"}
        top = 1 - (i * (height + PANEL_GAP) + PANEL_GAP) / plot_h
        drawn: list[Any] = []
        if tag.name in fc_tags:
            assert forecast is not None
            xf = _ts(forecast)
            mean, lower, upper = forecast.tag(tag.name)
            if tag.role != "mv" and np.any(upper > lower):
                traces.append({
                    "type": "scatter", "mode": "lines", "name": "band", "x": xf, "y": upper, "showlegend": False,
                    "line": {"width": 0}, "hoverinfo": "skip", "legendgroup": "band", **where,
                })  # fmt: skip
                add(
                    "band", xf, lower, where, fill="tonexty", fillcolor=style.BAND,
                    line={"width": 0}, hoverinfo="skip",
                )  # fmt: skip
                drawn += [lower, upper]
            add(
                "forecast", xf, mean, where, line={"color": style.FORECAST, "dash": "dash", "width": 1.6},
                line_shape="hv" if tag.role == "mv" else "linear",
            )  # fmt: skip
            drawn.append(mean)
        part = parts.get((tag.name,))
        if part is not None and part.height:
            if part.height > MAX_POINTS:  # SVG stays fast; a pixel holds no more anyway
                part = part.gather_every(math.ceil(part.height / MAX_POINTS))
            y = part["value"].to_numpy()
            drawn.append(y)
            add(
                "measured", part["ts"].dt.replace_time_zone(None).to_numpy(), y, where,
                line={"color": style.PV, "width": 1.6},
            )  # fmt: skip
        value = sp.get(tag.name, tag.setpoint)
        if "setpoint" in show and value is not None:
            drawn.append([value])
            add(
                "setpoint", [x0, x1], [value, value], where, hoverinfo="skip",
                line={"color": style.SETPOINT, "dash": "dash", "width": 1},
            )  # fmt: skip
        if "limits" in show:
            for kind, limit, dash in (
                ("limit", tag.hi, "dot"),
                ("limit", tag.lo, "dot"),
                ("op limit", tag.op_hi, "dashdot"),
                ("op limit", tag.op_lo, "dashdot"),
            ):
                if limit is not None:
                    add(
                        kind, [x0, x1], [limit, limit], where, hoverinfo="skip",
                        line={"color": style.LIMIT, "dash": dash, "width": 1},
                    )  # fmt: skip
        y_range = _padded(drawn, tag)
        layout[f"yaxis{axis}"] = {
            "domain": [max(0.0, top - height / plot_h), top],
            "anchor": f"x{axis}",
            "title": {"text": tag.unit},
            **({"range": y_range} if y_range else {}),
        }
        layout[f"xaxis{axis}"] = {
            "anchor": f"y{axis}",
            "range": [x0, x1],
            "type": "date",
            "showticklabels": i == n - 1,  # the bottom panel carries the time ticks
            **({"matches": "x"} if i else {}),
        }
        annotations.append({
            "text": panel_title(tag), "xref": "paper", "yref": "paper", "x": 0, "y": top,
            "xanchor": "left", "yanchor": "bottom", "showarrow": False, "font": {"size": 12, "color": style.TEXT},
        })  # fmt: skip
    layout["annotations"] = annotations
    return go.Figure(data=traces, layout=layout, _validate=False)  # built here, known valid


# --- sparklines ---------------------------------------------------------------------------

SPARK_W, SPARK_H = 200, 44
"""the sparkline's drawing box (the SVG stretches to the tile's width)"""
SPARK_POINTS = 120
"""points drawn at most (a longer history keeps each bucket's minimum and maximum)"""


def _thin(x: np.ndarray, y: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``points`` points, keeping each bucket's extremes (a spike stays)."""
    if len(y) <= points:
        return x, y
    edges = np.linspace(0, len(y), points // 2 + 1).astype(int)
    keep: list[int] = []
    for a, b in itertools.pairwise(edges):
        if b > a:
            seg = y[a:b]
            lo, hi = a + int(np.nanargmin(seg)), a + int(np.nanargmax(seg))
            keep += sorted({lo, hi})
    idx = np.asarray(keep)
    return x[idx], y[idx]


def sparkline_svg(
    x: np.ndarray,
    y: np.ndarray,
    *,
    zone: tuple[float, float] | None = None,
    setpoint: float | None = None,
    forecast: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    label: str = "trend",
) -> str:
    """A one-line SVG: ``y`` over ``x`` (seconds, any origin), the operating zone shaded, the
    setpoint dashed, and a forecast ``(x, mean, lower, upper)`` as a dashed line in its band
    after a dotted "now" line. Greys only; empty string without finite values."""
    ok = np.isfinite(y)
    x, y = np.asarray(x, dtype=float)[ok], np.asarray(y, dtype=float)[ok]
    if not len(y):
        return ""
    x, y = _thin(x, y, SPARK_POINTS)
    ys = [y, [setpoint] if setpoint is not None else []]
    xs = [x]
    if forecast is not None:
        xs.append(forecast[0])
        ys += [forecast[2], forecast[3]]
    y_all = np.concatenate([np.asarray(v, dtype=float) for v in ys])
    x_all = np.concatenate([np.asarray(v, dtype=float) for v in xs])
    lo, hi = float(np.nanmin(y_all)), float(np.nanmax(y_all))
    pad = max(0.12 * (hi - lo), 1e-6 * max(1.0, abs(hi)))
    lo, hi = lo - pad, hi + pad
    x0, x1 = float(x_all.min()), float(x_all.max())
    sx = SPARK_W / (x1 - x0) if x1 > x0 else 0.0

    def px(v: Any) -> np.ndarray:
        return (np.asarray(v, dtype=float) - x0) * sx

    def py(v: Any) -> np.ndarray:
        return SPARK_H - (np.clip(np.asarray(v, dtype=float), lo, hi) - lo) / (hi - lo) * SPARK_H

    def pts(a: np.ndarray, b: np.ndarray) -> str:
        return " ".join(f"{p:.1f},{q:.1f}" for p, q in zip(a, b, strict=True))

    thin = 'vector-effect="non-scaling-stroke"'
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {SPARK_W} {SPARK_H}" '
        f'preserveAspectRatio="none" width="100%" height="{SPARK_H}" role="img" '
        f'aria-label="{html.escape(label)}" style="display:block">'
    ]
    if zone is not None:
        top, bottom = py(zone[1]), py(zone[0])
        if bottom > top:
            parts.append(
                f'<rect x="0" y="{top:.1f}" width="{SPARK_W}" height="{bottom - top:.1f}" '
                'fill="rgba(0,0,0,0.07)"/>'
            )
    if setpoint is not None:
        v = float(py(setpoint))
        parts.append(
            f'<line x1="0" x2="{SPARK_W}" y1="{v:.1f}" y2="{v:.1f}" stroke="{style.SETPOINT}" '
            f'stroke-width="1" stroke-dasharray="4 3" {thin}/>'
        )
    if forecast is not None:
        xf, mean, lower, upper = (np.asarray(a, dtype=float) for a in forecast)
        band = pts(np.r_[px(xf), px(xf)[::-1]], np.r_[py(upper), py(lower)[::-1]])
        now = float(px(x[-1]))
        parts += [
            f'<polygon points="{band}" fill="{style.BAND}"/>',
            f'<line x1="{now:.1f}" x2="{now:.1f}" y1="0" y2="{SPARK_H}" stroke="{style.LIMIT}" '
            f'stroke-width="1" stroke-dasharray="1 2" {thin}/>',
            f'<polyline points="{pts(px(xf), py(mean))}" fill="none" stroke="{style.FORECAST}" '
            f'stroke-width="1.5" stroke-dasharray="4 2" {thin}/>',
        ]
    parts.append(
        f'<polyline points="{pts(px(x), py(y))}" fill="none" stroke="{style.PV}" '
        f'stroke-width="1.5" {thin}/>'
    )
    return "".join(parts) + "</svg>"
