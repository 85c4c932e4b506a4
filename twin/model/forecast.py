"""Forecasts with calibrated bands, and the history window a forecast starts from.

- :class:`Forecast`: what ``Twin.forecast`` returns: mean and 90 % band of every tag at every
  step, in engineering units, with timestamps; ``to_frame()`` gives a long polars frame.
- :class:`Calibration` (:mod:`twin.model.calibration`, re-exported here): split-conformal band
  half-widths per step and tag, fitted on held-out windows.
- :func:`history_window`: the last W samples of a history frame, short gaps carried forward
  (at most ``max_gap`` samples), anything longer refused with a :class:`DataQualityError` that
  names the tags and times. A forecast never starts from NaN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from twin.errors import DataQualityError
from twin.model.calibration import GRID_LEVELS, Calibration, Score
from twin.model.dataset import frame_to_array, frame_ts
from twin.spec import PlantSpec

__all__ = ["GRID_LEVELS", "Calibration", "Forecast", "Score", "history_window"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Forecast:
    """Mean and band of every tag over the next H samples; arrays ``[H, n_tags]``, eng. units.

    MV columns are the plan (band of zero width); DV columns the given DV plan or the last
    measured value held, with a band for how far a DV drifts in that time.
    """

    tags: tuple[str, ...]
    units: tuple[str, ...]
    ts: np.ndarray
    """``[H]`` datetime64[us] (UTC) of each forecast sample"""
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    coverage: float = 0.9
    """nominal coverage of ``[lower, upper]``"""

    def __post_init__(self) -> None:
        shape = (len(self.ts), len(self.tags))
        for name in ("mean", "lower", "upper"):
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"Forecast.{name} must be {shape}, got {getattr(self, name).shape}"
                )

    @property
    def horizon(self) -> int:
        return len(self.ts)

    def tag(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, lower, upper)`` ``[H]`` of one tag."""
        j = self.tags.index(name)
        return self.mean[:, j], self.lower[:, j], self.upper[:, j]

    def to_frame(self) -> pl.DataFrame:
        """Long frame: ``step`` (1..H), ``ts`` (UTC), ``tag``, ``unit``, ``mean``, ``lower``, ``upper``."""
        h, n = self.mean.shape
        return pl.DataFrame(
            {
                "step": np.repeat(np.arange(1, h + 1), n),
                "ts": np.repeat(self.ts.astype("datetime64[us]"), n),
                "tag": np.tile(np.array(self.tags, dtype=object), h).astype(str),
                "unit": np.tile(np.array(self.units, dtype=object), h).astype(str),
                "mean": self.mean.reshape(-1),
                "lower": self.lower.reshape(-1),
                "upper": self.upper.reshape(-1),
            }
        ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))


def history_window(
    history: pl.DataFrame, spec: PlantSpec, window: int, max_gap: int
) -> tuple[np.ndarray, np.datetime64]:
    """The last ``window`` samples ``[W, n_tags]`` (eng. units, no NaN) and the last timestamp.

    Missing or bad samples are carried forward from the last good one if the gap is at most
    ``max_gap`` samples; otherwise :class:`DataQualityError` names the tags and times.
    """
    if history.height < window:
        raise DataQualityError(
            f"history has {history.height} samples; the twin needs the last {window} "
            f"(every {spec.sample_period:g} s)"
        )
    history = history.sort("ts").tail(window + max_gap)
    ts = frame_ts(history)
    step = np.diff(ts).astype("timedelta64[us]").astype(np.int64) / 1e6
    if len(step) and not np.allclose(step, spec.sample_period, rtol=1e-3):
        raise DataQualityError(
            f"history is not on the spec's sample period ({spec.sample_period:g} s): "
            f"spacing from {step.min():g} to {step.max():g} s; resample it (Historian.frame)"
        )
    values, ok = frame_to_array(history, spec)
    filled = values.copy()
    run = np.where(ok[0], 0, max_gap + 1)  # samples since the last good one, per tag
    for i in range(1, len(filled)):
        run = np.where(ok[i], 0, run + 1)
        filled[i] = np.where(~ok[i] & (run <= max_gap), filled[i - 1], filled[i])
    out, out_ts = filled[-window:], ts[-window:]
    bad = ~np.isfinite(out)
    if bad.any():
        names = [spec.tags[j].name for j in np.flatnonzero(bad.any(axis=0))]
        when = sorted({str(out_ts[i]) for i in np.flatnonzero(bad.any(axis=1))})
        raise DataQualityError(
            f"history has gaps longer than {max_gap} samples in the last {window} samples: "
            f"tags {names} at {when[:5]}{' ...' if len(when) > 5 else ''}"
        )
    imputed = int((~ok[-window:]).sum())
    if imputed:
        log.info("history: carried forward %d missing or bad samples", imputed)
    return out, out_ts[-1]
