"""Split-conformal bands per horizon step and tag, fitted on held-out windows.

:class:`Calibration` holds the band half-widths for the nonconformity score
``|y - mean| / (ensemble std + eps)`` ("scaled", the default: the band widens where the members
disagree) or ``|y - mean|`` ("absolute"). Beside the nominal quantile it keeps a grid of other
levels (what a wider or narrower band means, for :mod:`twin.model.adaptive`), its coverage per
step and tag on its own windows, and a held-out check per step and tag (the band fitted on the
later windows alone, scored on the earlier ones).

**How much data a quantile per step and tag needs.** Consecutive windows overlap: N windows
of horizon H span about (N + H - 1) / H independent stretches (:func:`stretches_of`). Split
conformal's finite-sample level ceil((m + 1) p) / m over m exchangeable units exceeds 1 below
m = p / (1 - p) (9 at 90 %): with fewer stretches no quantile of the scores themselves covers
a new stretch at p. Then (a 6 h history of a 60-s plant leaves 2 held-out windows; before, it
was refused below 10 windows and the twin could not be trained) :func:`pooled` pools each
tag's scores over the steps and widens them by the Student-t prediction factor for that many
stretches, with a warning. On random-walk errors (tests/unit/test_calibration.py, 48 tags):
from 100 windows the quantile per cell left 4 tags below 75 % on fresh data (lowest 71 %), the
pooled band none below 83 % (median 97 %) at 1.4 times the width a long history gives; from 2
windows none below 91 %.

**What was tried for per-tag coverage on later data, and kept out.** ``benchmarks/bands.py``
scores variants on the development plants' calm test 6 h after the history (one twin per plant,
seed and history; ``benchmarks/results/bands/bands.md``). With the quantile per cell, kept:
24 h histories (21 runs, 77 tag-runs) 87 % in 85-95 %, 5 below 75 % (lowest 27 %), median
89.5 %; 6 h histories with 9 or more stretches (8 runs, 29) 76 %, 1 below (72 %). Tried, per
tag at 24 h: calibration split only 84 % (width +2 %); log q smoothed in log k 87 %; the tail
pooled over the steps 90 % (two tags fewer above 95 %, but 80 % of (tag, step) cells in range
against 83 %, and 18 % lowest from two windows); :func:`pooled` at every N 79 % (+4 %); a band
that covers each split alone 83 % (+4 %); the level raised by one standard error of a tag's
coverage 61 % (+27 %). The band fitted on the test's own first 3 h covers 74 % of tags in range
on its last 3 h: over a few hours coverage itself moves that much. The misses are not noise
in the quantiles (at 24 h a tag's quantile varies by 2-6 % in log over block resamples of its
windows) but later data unlike the calibration windows: zoo-8's level drifts to where the twin
is biased and its errors at H grow 2.3 times. Where the identified linear model is kept, every
ensemble member is that model, the spread is 0 and the scaled score is the absolute one, so
nothing widens the band where the plant goes somewhere new; the adaptive bands
(:mod:`twin.model.adaptive`) recover coverage there.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from twin.errors import DataQualityError

log = logging.getLogger(__name__)

Score = Literal["absolute", "scaled"]


#: quantile levels kept beside the nominal one (``calibration.json`` "levels" and "grid")
GRID_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99)
#: fewer windows than this many horizons: warn that the band per tag rests on little data
FEW_HORIZONS = 20


def stretches_of(windows: int, horizon: int) -> float:
    """Independent stretches of the horizon that ``windows`` consecutive windows span."""
    return (windows + horizon - 1) / horizon


def enough_stretches(windows: int, horizon: int, coverage: float) -> bool:
    """Whether the windows span the p / (1 - p) stretches a split-conformal quantile at
    ``coverage`` p needs (9 at 90 %); fewer: :func:`pooled`."""
    return stretches_of(windows, horizon) >= math.ceil(coverage / (1 - coverage) - 1e-9)


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

        Windows spanning fewer independent stretches of the horizon than a quantile per step
        and tag needs (9 at 90 %, see the module docstring) get a band pooled over the steps and
        widened for so few (:func:`pooled`), with a warning; no window at all is refused with a
        :class:`DataQualityError`.

        ``"auto"`` picks the score by coverage on the second half of the data (fitted on the
        first). It is not the default: on data *unlike* the calibration split (stronger
        disturbances, new operating points) the ensemble spread grows with the error, and only
        the scaled score widens the band with it (CSTR benchmark test set: coverage 0.89 scaled
        against 0.74 absolute, both 0.90 on held-out data like the training data).
        """
        mean, std, actual = (np.asarray(a, dtype=np.float64) for a in (mean, std, actual))
        n = len(mean)
        if n == 0:
            raise DataQualityError("calibration needs held-out windows, got none: record more data")
        stretches = stretches_of(n, mean.shape[1])
        if not enough_stretches(n, mean.shape[1], coverage):
            log.warning(
                "calibration: %d held-out windows span about %.1f independent stretches of the "
                "horizon (%d), too few for a %.0f %% quantile per step and tag: each tag's band is "
                "pooled over the steps and widened for so few (wider than nominal on purpose); "
                "record more data, live use adapts it",
                n,
                stretches,
                mean.shape[1],
                100 * coverage,
            )
        elif n < FEW_HORIZONS * mean.shape[1]:
            log.warning(
                "calibration: %d windows overlap into about %d independent stretches of the "
                "horizon (%d): bands per tag rest on little data; live use adapts them",
                n,
                max(1, n // mean.shape[1]),
                mean.shape[1],
            )
        # the score's floor on the spread, on the scale of the errors: where members barely
        # disagree (a kept linear start) the score is the error itself, not a noisy ratio; with
        # per-member linear starts it put 84 % of development tags in 85-95 % against 67 % with
        # 0.1 x the median spread (benchmarks/results/bands/linear_bootstrap.md, factor 0.5 of
        # 0.5 / 1 / 2 that gave 84 / 82-84 / 82-84 %)
        err = np.abs(actual - mean)
        err = err[..., err.max(axis=(0, 1)) > 0]  # not the MVs' columns (given, no error)
        eps = float(max(0.5 * np.median(err) if err.size else 0.0, 1e-3))
        if score == "auto":  # each half needs windows of its own to choose on
            score = cls._choose(mean, std, actual, eps, coverage) if n >= 20 else "scaled"
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
        if enough_stretches(n, s.shape[1], coverage):
            qs = np.quantile(s, levels, axis=0, method="higher")
        else:
            qs = pooled(s, (coverage, *GRID_LEVELS))
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


def pooled(s: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Quantiles ``[L, H, n]`` at nominal ``levels`` of scores ``s [N, H, n]``, pooled over the
    horizon steps of each tag and widened for the few independent stretches N windows span.

    A tag's scores are divided by a shape over the steps (their RMS over the windows, smoothed by
    a quadratic in log k, so that even one window gives a smooth one) and pooled over windows
    and steps; the quantile of that ratio at level p is multiplied by the Student-t prediction
    factor ``t(df, (1 + p) / 2) * sqrt(1 + 1/df) / z((1 + p) / 2)``, with df = (N + H - 1) / H
    the independent stretches of the horizon the windows span (N windows overlap; a Gaussian
    score's band from df independent errors covers p of a new one). At 90 %: 5.4 for one window,
    2.2 for 29, 1.13 for 326 (a 24 h history of a 60-s plant), 1.01 for 4000.
    """
    from scipy.stats import norm, t

    n, h, m = s.shape
    rms = np.sqrt((s**2).mean(axis=0))  # [H, n]
    x = np.log(np.arange(1, h + 1))
    design = np.stack([np.ones(h), x, x**2][: min(3, h)], axis=1)
    shape = np.ones_like(rms)
    for j in range(m):
        ok = rms[:, j] > 0
        if ok.sum() >= design.shape[1]:
            beta = np.linalg.lstsq(design[ok], np.log(rms[ok, j]), rcond=None)[0]
            shape[:, j] = np.exp(design @ beta)
    ratio = (s / shape).reshape(n * h, m)
    p = np.asarray(levels, dtype=float)
    df = stretches_of(n, h)
    widen = t.ppf((1 + p) / 2, df) * np.sqrt(1 + 1 / df) / norm.ppf((1 + p) / 2)  # [L]
    tail = np.quantile(ratio, p, axis=0, method="higher") * widen[:, None]  # [L, n]
    return shape[None] * tail[:, None, :]
