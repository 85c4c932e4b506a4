"""How the twin's forecasts of the recent past compare with what happened: its live health.

Every origin of the recent frame whose window and next H samples are complete is forecast with
the MV moves that really followed (DVs held at their last value), as in validation. The error
is scored the way ``metrics.json`` scores validation (RMSE over origins in normalised units,
i.e. divided by the training standard deviation), so the two can be compared step by step:
:func:`skill_table` puts the two side by side (the write-back guard's single health number is
:func:`twin.model.health.model_health`). :func:`band_table` is the band's health per tag: its
coverage in calibration and live, and how far the adaptive band has moved from the calibrated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from twin.model.dataset import cv_columns, mv_columns

if TYPE_CHECKING:
    from twin.model.adaptive import AdaptiveBands
    from twin.model.twin import Twin

MAX_ORIGINS = 240
"""forecast origins scored at most (evenly thinned)"""
EXAMPLES = 3
"""past forecasts drawn over the recent history"""


@dataclass(frozen=True)
class LiveSkill:
    """Live forecast error of the twin on recent data, per step and CV."""

    steps: tuple[int, ...]
    """horizon steps reported (those of ``metrics.json`` within H)"""
    nrmse: dict[str, dict[str, float]]
    """step (as str) -> CV tag -> NRMSE on the recent data"""
    coverage: dict[str, float]
    """step (as str) -> fraction of CV samples inside the band"""
    origins: int
    examples: list[dict[str, Any]]
    """a few past forecasts: ``origin``, ``ts`` [H], and per CV ``mean/lower/upper/truth`` [H]"""


def live_skill(twin: Twin, frame: pl.DataFrame, steps: tuple[int, ...] | None = None) -> LiveSkill:
    """Score the twin's forecasts from every complete origin of ``frame`` (see module doc).

    Raises :class:`~twin.errors.DataQualityError` when the frame holds no complete window + horizon.
    """
    from twin.evaluate.report import forecast_cases, forecast_windows

    spec, h = twin.spec, twin.horizon
    past, future, origins = forecast_cases(frame, spec, twin.window, h, MAX_ORIGINS)
    mean, lower, upper = forecast_windows(twin, past, future[..., mv_columns(spec)])
    cv = cv_columns(spec)
    names = [spec.tags[j].name for j in cv]
    scale = np.asarray(twin.normalizer.scale)[cv]
    err = np.sqrt(((mean[..., cv] - future[..., cv]) ** 2).mean(axis=0)) / scale  # [H, n_cv]
    inside = (future[..., cv] >= lower[..., cv]) & (future[..., cv] <= upper[..., cv])
    wanted = steps or tuple(sorted({s for s in (1, 5, 10, h) if s <= h}))
    wanted = tuple(s for s in wanted if 1 <= s <= h)
    period = np.timedelta64(round(spec.sample_period * 1e6), "us")
    picks = np.unique(np.linspace(len(past) - 1, max(0, len(past) - 1 - h), EXAMPLES).astype(int))
    examples = [
        {
            "origin": origins[i],
            "ts": origins[i] + period * np.arange(1, h + 1),
            **{
                spec.tags[j].name: {
                    "mean": mean[i, :, j],
                    "lower": lower[i, :, j],
                    "upper": upper[i, :, j],
                    "truth": future[i, :, j],
                }
                for j in cv
            },
        }
        for i in picks
    ]
    return LiveSkill(
        steps=wanted,
        nrmse={str(s): {n: float(err[s - 1, k]) for k, n in enumerate(names)} for s in wanted},
        coverage={str(s): float(inside[:, s - 1].mean()) for s in wanted},
        origins=len(past),
        examples=examples,
    )


def skill_table(live: LiveSkill, metrics: dict[str, Any]) -> pl.DataFrame:
    """Rows per step and CV: live NRMSE, validation NRMSE, persistence NRMSE, their ratio."""
    val = (metrics or {}).get("nrmse", {})
    pers = (metrics or {}).get("persistence_nrmse", {})
    rows = []
    for s in live.nrmse:
        for tag, e in live.nrmse[s].items():
            v = val.get(s, {}).get(tag)
            rows.append(
                {
                    "step": int(s),
                    "tag": tag,
                    "live NRMSE": round(e, 4),
                    "validation NRMSE": v,
                    "persistence NRMSE (validation)": pers.get(s, {}).get(tag),
                    "live / validation": round(e / v, 2) if v else None,
                }
            )
    schema = {
        "validation NRMSE": pl.Float64,
        "persistence NRMSE (validation)": pl.Float64,
        "live / validation": pl.Float64,
    }
    return pl.DataFrame(rows, schema_overrides=schema)


#: :func:`band_table`'s columns: (name, key of :meth:`AdaptiveBands.table`, factor)
BAND_COLUMNS = (
    ("nominal [%]", "nominal", 100.0),
    ("calibration [%]", "calibration", 100.0),
    ("held-out check [%]", "held-out check", 100.0),
    ("live, calibrated band [%]", "live, calibrated band", 100.0),
    ("live, adaptive band [%]", "live, adaptive band", 100.0),
    ("band scale [x]", "band scale", 1.0),
    ("adaptive level [%]", "adaptive level", 100.0),
)


def band_table(twin: Twin, bands: AdaptiveBands) -> pl.DataFrame:
    """Per CV and DV: the band's nominal coverage, its coverage on the calibration windows and
    the held-out check, the recent live coverage of the calibrated and of the adaptive band, the
    adaptive band's scale and the calibration level it stands at (null: not known)."""
    tags = [t.name for t in twin.spec.tags if t.role != "mv"]
    rows = [
        {
            "tag": row["tag"],
            **{
                name: None if row[key] is None else round(float(row[key]) * factor, 2)
                for name, key, factor in BAND_COLUMNS
            },
            "outcomes": row["outcomes"],
        }
        for row in bands.table(twin.calibration, tags)
    ]
    schema: dict[str, Any] = {"tag": pl.String}
    schema |= {name: pl.Float64 for name, _, _ in BAND_COLUMNS}
    schema["outcomes"] = pl.Int64
    return pl.DataFrame(rows, schema=schema)
