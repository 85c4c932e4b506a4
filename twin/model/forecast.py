"""Forecasts with calibrated bands, and the history window a forecast starts from.

- :class:`Forecast`: what ``Twin.forecast`` returns: mean and 90 % band of every tag at every
  step, in engineering units, with timestamps; ``to_frame()`` gives a long polars frame.
- :class:`Calibration`: split-conformal band half-widths per step and tag, fitted on held-out
  windows, for the nonconformity score ``|y - mean| / (ensemble std + eps)`` ("scaled", the
  default: the band widens where the members disagree) or ``|y - mean|`` ("absolute"). Beside
  the nominal quantile it keeps a grid of other levels (what a wider or narrower band means,
  for :mod:`twin.model.adaptive`), its coverage per step and tag on its own windows, and a
  held-out check per step and tag (the band fitted on the later windows alone, scored on the
  earlier ones).
- :func:`history_window`: the last W samples of a history frame, short gaps carried forward
  (at most ``max_gap`` samples), anything longer refused with a :class:`DataQualityError` that
  names the tags and times. A forecast never starts from NaN.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from twin.errors import DataQualityError
from twin.model.dataset import frame_to_array, frame_ts
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

Score = Literal["absolute", "scaled"]


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


#: quantile levels kept beside the nominal one (``calibration.json`` "levels" and "grid")
GRID_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99)
#: fewer windows than this many horizons: warn that the band per tag rests on little data
FEW_HORIZONS = 20


@dataclass(frozen=True)
class Calibration:
    """Conformal band half-widths per step and tag, in normalised units.

    Folders saved before the grid and the checks were kept load with ``levels == ()`` and
    ``grid``, ``fitted``, ``held_out`` None; their bands are unchanged.
    """

    score: Score
    quantile: np.ndarray
    """``[H, n_tags]`` conformal quantile of the nonconformity score at ``coverage``"""
    eps: float
    """added to the ensemble std in the scaled score (normalised units)"""
    coverage: float
    levels: tuple[float, ...] = ()
    """nominal levels of ``grid`` (increasing)"""
    grid: np.ndarray | None = None
    """``[L, H, n_tags]`` conformal quantile of the score at each of ``levels``"""
    fitted: np.ndarray | None = None
    """``[H, n_tags]`` coverage of the band on the windows it was fitted on"""
    held_out: np.ndarray | None = None
    """``[H, n_tags]`` coverage on the earlier windows of the band fitted on the later ones"""
    windows: int = 0
    """windows it was fitted on (0: not recorded)"""

    def halfwidth(self, std: Any) -> Any:
        """Half-width ``[..., H', n_tags]`` (normalised) for ensemble std ``[..., H', n_tags]``."""
        q: Any = self.quantile[: std.shape[-2]]
        if not isinstance(std, np.ndarray):
            import torch

            q = torch.as_tensor(q, dtype=std.dtype, device=std.device)
        return q * (std + self.eps) if self.score == "scaled" else q + 0.0 * std

    def level_at(self, ratio: np.ndarray) -> np.ndarray:
        """The calibration level ``[H', n_tags]`` whose band is ``ratio`` ``[H', n_tags]`` times
        the nominal one (clipped to the grid's range; NaN without a grid or where the band has
        zero width, as for MVs)."""
        ratio = np.asarray(ratio, dtype=float)
        out = np.full(ratio.shape, np.nan)
        if self.grid is None or not self.levels:
            return out
        h = min(ratio.shape[0], self.quantile.shape[0])
        for i in range(h):
            for j in range(ratio.shape[1]):
                q = self.quantile[i, j]
                if q > 0 and np.isfinite(ratio[i, j]):
                    out[i, j] = np.interp(ratio[i, j] * q, self.grid[:, i, j], self.levels)
        return out

    @classmethod
    def fit(
        cls,
        mean: np.ndarray,
        std: np.ndarray,
        actual: np.ndarray,
        coverage: float = 0.9,
        score: Score | Literal["auto"] = "scaled",
        *,
        first: int | None = None,
    ) -> Calibration:
        """Fit the quantiles of ``score`` on ``[N, H, n_tags]`` normalised arrays, in time order.

        ``first``: windows ``[:first]`` are an earlier split than the rest (``Twin.fit``:
        validation, then calibration); the held-out check fits the rest alone and scores it on
        them (default: the first half).

        ``"auto"`` picks the score by coverage on the second half of the data (fitted on the
        first). It is not the default: on data *unlike* the calibration split (stronger
        disturbances, new operating points) the ensemble spread grows with the error, and only
        the scaled score widens the band with it (CSTR benchmark test set: coverage 0.89 scaled
        against 0.74 absolute, both 0.90 on held-out data like the training data).
        """
        mean, std, actual = (np.asarray(a, dtype=np.float64) for a in (mean, std, actual))
        n = len(mean)
        if n < 10:
            raise DataQualityError(
                f"calibration needs at least 10 held-out windows, got {n}: record more data"
            )
        if n < FEW_HORIZONS * mean.shape[1]:
            log.warning(
                "calibration: %d windows overlap into about %d independent stretches of the "
                "horizon (%d): bands per tag rest on little data; live use adapts them",
                n,
                max(1, n // mean.shape[1]),
                mean.shape[1],
            )
        eps = float(max(0.1 * np.median(std[std > 0]) if (std > 0).any() else 0.0, 1e-3))
        if score == "auto":
            score = cls._choose(mean, std, actual, eps, coverage)
        cut = n // 2 if first is None else first
        held_out = None
        if min(cut, n - cut) >= 10:
            later = cls._fit(score, mean[cut:], std[cut:], actual[cut:], eps, coverage)
            held_out = later.evaluate(mean[:cut], std[:cut], actual[:cut])[0].mean(axis=0)
        return cls._fit(score, mean, std, actual, eps, coverage, held_out=held_out)

    @classmethod
    def fit_splits(
        cls,
        splits: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
        coverage: float = 0.9,
        score: Score | Literal["auto"] = "scaled",
    ) -> Calibration:
        """:meth:`fit` on ``(mean, std, actual)`` of held-out splits in time order, together.

        ``Twin.fit`` passes its validation and calibration splits: twice the windows per step
        and tag of the calibration split alone (measured on later test data, one twin each:
        per-CV coverage of the shipped CSTR twin 0.917 / 0.923 -> 0.909 / 0.911, of a 48 h
        Wood-Berry twin 0.855 / 0.877 -> 0.899 / 0.891). Early stopping chose the epoch on the
        validation split, which biases its errors a little low; the held-out check
        (``held_out``: the band fitted on the last split alone, scored on the first) stays an
        honest one.
        """
        mean, std, actual = (np.concatenate(a) for a in zip(*splits, strict=True))
        return cls.fit(mean, std, actual, coverage, score, first=len(splits[0][0]))

    @classmethod
    def _choose(
        cls, mean: np.ndarray, std: np.ndarray, actual: np.ndarray, eps: float, coverage: float
    ) -> Score:
        half = len(mean) // 2
        best: tuple[float, float, Score] | None = None
        scores: tuple[Score, ...] = ("absolute", "scaled")
        for score in scores:
            first = cls._fit(score, mean[:half], std[:half], actual[:half], eps, coverage)
            covered, width = first.evaluate(mean[half:], std[half:], actual[half:])
            moving = covered[..., first.quantile.max(axis=0) > 0]  # ignore MV columns (width 0)
            err = float(np.abs(moving.mean(axis=0) - coverage).mean()) if moving.size else 0.0
            log.debug("calibration %s: coverage error %.4f, mean width %.4f", score, err, width)
            key = (round(err, 2), width, score)
            if best is None or key[:2] < best[:2]:
                best = key
        assert best is not None
        return best[2]

    @classmethod
    def _fit(
        cls,
        score: Score,
        mean: np.ndarray,
        std: np.ndarray,
        actual: np.ndarray,
        eps: float,
        coverage: float,
        held_out: np.ndarray | None = None,
    ) -> Calibration:
        res = np.abs(actual - mean)
        s = res / (std + eps) if score == "scaled" else res
        n = len(s)
        # finite-sample level: the ceil((n + 1) p)-th smallest of n scores covers a new one
        # with probability >= p when the scores are exchangeable
        levels = [min(1.0, math.ceil((n + 1) * p) / n) for p in (coverage, *GRID_LEVELS)]
        qs = np.quantile(s, levels, axis=0, method="higher")
        cal = cls(score, qs[0], eps, coverage, GRID_LEVELS, qs[1:], windows=n, held_out=held_out)
        fitted = cal.evaluate(mean, std, actual)[0].mean(axis=0)
        return dataclasses.replace(cal, fitted=fitted)

    def evaluate(
        self, mean: np.ndarray, std: np.ndarray, actual: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """Covered flags ``[N, H, n_tags]`` and mean half-width of the band on these windows."""
        hw = self.halfwidth(std)
        return np.abs(actual - mean) <= hw, float(hw.mean())

    def coverage_summary(self, columns: list[int], metrics: dict[str, Any]) -> dict[str, Any]:
        """The held-out check as ``metrics`` state coverage: ``coverage`` at the steps they
        name (over ``columns``) and ``coverage_all``; empty without a check."""
        if self.held_out is None:
            return {}
        cov = self.held_out[:, columns]
        return {
            "coverage": {s: round(float(cov[int(s) - 1].mean()), 4) for s in metrics["coverage"]},
            "coverage_all": round(float(cov.mean()), 4),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the keys after ``coverage`` are read only when present)."""
        out: dict[str, Any] = {
            "score": self.score,
            "quantile": self.quantile.tolist(),
            "eps": self.eps,
            "coverage": self.coverage,
        }
        if self.grid is not None:
            out["levels"] = list(self.levels)
            out["grid"] = self.grid.tolist()
        for name in ("fitted", "held_out"):
            value = getattr(self, name)
            if value is not None:
                out[name] = np.round(value, 5).tolist()
        if self.windows:
            out["windows"] = self.windows
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; reads folders saved before the grid and checks too."""
        quantile = np.asarray(d["quantile"], float)

        def array(name: str, shape: tuple[int, ...]) -> np.ndarray | None:
            if name not in d:
                return None
            value = np.asarray(d[name], float)
            if value.shape != shape:
                raise ValueError(f"{name} must be {list(shape)}, got {list(value.shape)}")
            return value

        levels = tuple(float(v) for v in d.get("levels", ()))
        return cls(
            d["score"],
            quantile,
            float(d["eps"]),
            d["coverage"],
            levels,
            array("grid", (len(levels), *quantile.shape)),
            array("fitted", quantile.shape),
            array("held_out", quantile.shape),
            int(d.get("windows", 0)),
        )


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
