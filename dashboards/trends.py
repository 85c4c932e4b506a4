"""Trends the pages share: the Plant page's strips (one per tag with its setpoint and limits,
shared by sessions) and the twin's hold-MV forecast that the Forecast, Overview and Trends
pages draw.

The strips are :func:`dashboards.charts.tag_panels` (plain dicts, one ``go.Figure`` call),
cached per (historian, data stamp, time range, setpoints, refresh slot): the sessions looking at
the plant in the same refresh interval share one figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from dashboards import charts, compute, data
from twin.spec import PlantSpec, Tag

if TYPE_CHECKING:
    from twin.model.forecast import Forecast
    from twin.model.twin import Twin

ROW_HEIGHT = 170
MAX_POINTS = charts.MAX_POINTS
"""points drawn per tag at most (a longer range is thinned evenly)"""


def edge(rows: pl.DataFrame, now: datetime, minutes: float) -> tuple[datetime, datetime]:
    """The time range drawn: ``minutes`` up to now, or up to the newest sample when that is
    older than the range (replayed, imported or stopped data)."""
    newest = rows.get_column("ts").max() if rows.height else None
    window = timedelta(minutes=minutes)
    end = newest if isinstance(newest, datetime) and now - newest > window else now
    return end - window, end


def build(
    spec: PlantSpec,
    rows: pl.DataFrame,
    sp: dict[str, float],
    now: datetime,
    minutes: float,
    tags: Sequence[Tag] | None = None,
) -> go.Figure:
    """One strip per tag (default: CVs, then MVs, then DVs): value, setpoint, limits, units.

    The time axis ends now, or at the newest sample when that is older than the range.
    """
    shown = [*spec.cvs, *spec.mvs, *spec.dvs] if tags is None else list(tags)
    return charts.tag_panels(
        shown,
        rows,
        edge(rows, now, minutes),
        setpoints=sp,
        show=("setpoint", "limits"),
        legend=False,
        uirevision="plant",
        height=ROW_HEIGHT,
    )


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


# --- the plant spec and the twin's forecast ------------------------------------------------------------------


def forecast_samples(twin: Twin) -> int:
    """History rows a forecast reads: the twin's window and the gap it may carry over."""
    return int(twin.window + twin.config.max_gap)


def hold_forecast(model: str, root: str, version: Any) -> Forecast:
    """The twin's forecast from the newest sample with every MV held at its current value, in
    the adaptive band (:func:`dashboards.compute.bands`): what the Forecast page draws under
    "hold MVs", cached under the historian's stamp and shared by every page and session.

    Raises :class:`~twin.errors.TwinError` when the recent data cannot start a forecast.
    """
    twin = data.load_twin(model)
    fc = compute.forecast_hold(model, root, forecast_samples(twin), version)
    return compute.bands(model, root, version).adjust(fc)
