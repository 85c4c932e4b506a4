"""Model computations of the app, cached under the historian's change stamp.

Each is a function of (model folder, historian folder, stamp): sessions looking at the same
data share one result, and a new historian file makes the next call recompute.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import streamlit as st

from dashboards import data
from dashboards.skill import LiveSkill, live_skill
from twin.errors import TwinError
from twin.model.adaptive import BANDS_FILE, AdaptiveBands
from twin.model.forecast import Forecast

SKILL_MINUTES = 60.0
"""recent history scored for the live forecast error"""


def frame_for(model: str, root: str, samples: int, version: Any) -> pl.DataFrame:
    """The last ``samples`` grid points of the historian, for the model's spec."""
    twin = data.load_twin(model)
    return data.history_frame(root, model, samples, version, twin.spec)


@st.cache_data(ttl=300, max_entries=16, show_spinner=False)
def forecast_hold(model: str, root: str, samples: int, version: Any) -> Forecast:
    """The twin's forecast from now to its horizon with every MV held at its current value."""
    twin = data.load_twin(model)
    frame = frame_for(model, root, samples, version)
    return twin.forecast(frame, _held(twin, frame))


@st.cache_data(ttl=300, max_entries=16, show_spinner=False)
def forecast_hold_at(model: str, root: str, samples: int, end: datetime, version: Any) -> Forecast:
    """:func:`forecast_hold` from the instant ``end`` of the past (history mode's time cursor),
    in the calibrated band (the adaptive one belongs to the live loop's present)."""
    twin = data.load_twin(model)
    frame = data.history_frame_at(root, model, samples, end, version, twin.spec)
    return twin.forecast(frame, _held(twin, frame))


def _held(twin: Any, frame: pl.DataFrame) -> np.ndarray:
    """Every MV held at its last value in ``frame`` over the twin's horizon ``[H, n_mv]``."""
    mv = [t.name for t in twin.spec.mvs]
    current = [float(frame.get_column(name).drop_nulls().drop_nans().tail(1).item()) for name in mv]
    return np.tile(np.asarray(current, dtype=np.float64), (twin.horizon, 1))


@st.cache_data(ttl=300, max_entries=8, show_spinner="scoring recent forecasts ...")
def skill(model: str, root: str, version: Any) -> LiveSkill:
    """Live forecast error over the last :data:`SKILL_MINUTES` (see :mod:`dashboards.skill`)."""
    twin = data.load_twin(model)
    samples = int(SKILL_MINUTES * 60 / twin.spec.sample_period)
    frame = frame_for(model, root, samples, version)
    return live_skill(twin, frame)


@st.cache_data(ttl=300, max_entries=8, show_spinner=False)
def health(model: str, root: str, version: Any) -> float | None:
    """The write-back guard's health ratio (:func:`twin.model.health.model_health`) on recent data."""
    from twin.model.health import health_rows, model_health

    twin = data.load_twin(model)
    frame = frame_for(model, root, health_rows(twin), version)
    return model_health(twin, frame)


@st.cache_data(ttl=300, max_entries=8, show_spinner="scoring recent bands ...")
def bands(model: str, root: str, version: Any) -> AdaptiveBands:
    """The adaptive bands (:mod:`twin.model.adaptive`): those the live loop keeps in
    ``<historian>/bands.json`` when they belong to this twin, brought up to date with the last
    :data:`SKILL_MINUTES` of outcomes (in memory: the loop owns the file); else bands learned
    here from those outcomes alone."""
    from twin.model.health import observe

    twin = data.load_twin(model)
    state = AdaptiveBands.resume(Path(root) / BANDS_FILE, twin.spec.tag_names, twin.calibration)
    samples = int(SKILL_MINUTES * 60 / twin.spec.sample_period)
    with contextlib.suppress(TwinError):  # no usable recent data: the bands as they stand
        observe(state, twin, frame_for(model, root, samples, version))
    return state
