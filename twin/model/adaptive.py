"""Adaptive bands: each tag's band follows its live errors, so coverage holds when the plant moves.

    bands = AdaptiveBands.start(twin.spec.tag_names, twin.calibration)
    bands.update(fc, actual)   # fc: a calibrated Forecast made earlier; actual [H', n] at fc.ts
    fc_now = bands.adjust(twin.forecast(history, plan))
    bands.save(Path(historian) / BANDS_FILE); AdaptiveBands.load(...)

Split conformal bands (:class:`~twin.model.forecast.Calibration`) cover 90 % of outcomes only
while the outcomes look like the calibration windows. Adaptive conformal inference (Gibbs and
Candès 2021, "Adaptive conformal inference under distribution shift", NeurIPS 34) restores the
long-run coverage online: as each outcome arrives, the band of its tag and horizon step moves,
wider after a miss and narrower after a hit, at a rate that makes misses come at the nominal
rate over time, whatever the errors do.

Per horizon step ``h`` and tag ``j`` the state is a multiplier ``s`` of the calibrated
half-width; an outcome outside ``mean ± s * half`` is a miss (``err = 1``), inside a hit::

    log s[h, j] <- log s[h, j] + gamma * (err - alpha)        alpha = 1 - nominal coverage

This is Gibbs and Candès' ``alpha_{t+1} = alpha_t + gamma (alpha - err_t)`` taken on the log of
the band's scale instead of on its quantile level (the scale form of quantile tracking,
Angelopoulos, Candès and Tibshirani 2023, "Conformal PID control for time series prediction").
Their guarantee carries over by the same telescoping sum: over T outcomes,
``mean(err) - alpha = (log s_T+1 - log s_1) / (gamma T)``, so while ``s`` stays inside
``[S_MIN, S_MAX]`` the miss rate of every tag and step tends to ``alpha``. On the level a band
for errors twice the calibrated ones needs the calibration's ~99.9 % quantile, which a few
hundred windows do not resolve, and ``alpha_t <= 0`` (an infinite band) is one miss away; on the
scale each miss widens by the same factor however far out the band sits. What level of the
calibration's own scores a band now stands at is :meth:`AdaptiveBands.levels` (from the
calibration's grid of quantile levels).

``GAMMA = 0.1`` (log units per outcome): a miss widens by 9 %, a hit narrows by 1 %. Near the
nominal level of a Gaussian score that is Gibbs and Candès' gamma ~ 0.03 (they use 0.005 to
0.05). Measured on a synthetic stream whose error spread doubles (tests/unit/test_adaptive.py,
20 seeds): the calibrated band covers 59 % afterwards; the adaptive one covers 65 % of the first
10 outcomes per step and tag, 84 % of outcomes 30-39, 86 % of 40-49, 89-90 % from about 80 on;
over the 990 outcomes from one horizon (10) after the change on, 0.895 per tag. While nothing
changes its width wanders by about 11 % (one standard deviation; independent errors) to 24 %
(errors correlated over ten samples) around the right one. GAMMA = 0.05 wanders about a third
less and recovers more slowly (87 % against 89 % over the 300 outcomes after one horizon of 30).

The state also keeps, per step and tag, the recent coverage (exponentially weighted over
``MEMORY`` outcomes) of the adaptive band and of the calibrated band, and the time of the last
outcome scored per step (an outcome is counted once, so the same forecasts may be offered
again). It is saved as JSON (the live loop keeps it in ``<historian>/bands.json``), tied to the
twin's tags and calibration by a fingerprint: a retrained twin starts afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twin.model.forecast import Calibration, Forecast
from twin.store.jsonl import replace_text

log = logging.getLogger(__name__)

#: step size of the log-scale update per outcome (see the module docstring)
GAMMA = 0.1
#: bounds of the band's scale (x the calibrated band)
S_MIN, S_MAX = 0.1, 10.0
#: outcomes over which the recent coverage is weighted (per step and tag)
MEMORY = 200
#: the state's file in the historian folder of a live loop
BANDS_FILE = "bands.json"


def fingerprint(tags: tuple[str, ...], calibration: Calibration) -> str:
    """What ties a state to one twin: its tags and its calibrated quantiles."""
    digest = hashlib.sha256(json.dumps(list(tags)).encode())
    digest.update(np.ascontiguousarray(calibration.quantile, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


@dataclass
class AdaptiveBands:
    """Per horizon step and tag: the band's scale, adapted from live outcomes; arrays ``[H, n]``."""

    tags: tuple[str, ...]
    key: str
    """:func:`fingerprint` of the twin it belongs to"""
    coverage: float
    """nominal coverage of the band"""
    log_scale: np.ndarray
    """log of the multiplier of the calibrated half-width"""
    updates: np.ndarray
    """outcomes scored"""
    recent: np.ndarray
    """recent coverage of the adaptive band (NaN before the first outcome)"""
    recent_static: np.ndarray
    """recent coverage of the calibrated band, for comparison"""
    last_ts: np.ndarray
    """``[H]`` int64 µs since the epoch (UTC) of the last outcome scored at each step; -1: none"""
    gamma: float = GAMMA

    @classmethod
    def start(
        cls, tags: tuple[str, ...] | list[str], calibration: Calibration, gamma: float = GAMMA
    ) -> AdaptiveBands:
        """A fresh state: every band as calibrated (scale 1)."""
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        shape = calibration.quantile.shape
        if len(tags) != shape[1]:
            raise ValueError(f"{len(tags)} tags for a calibration of {shape[1]} columns")
        tags = tuple(tags)
        return cls(
            tags=tags,
            key=fingerprint(tags, calibration),
            coverage=float(calibration.coverage),
            log_scale=np.zeros(shape),
            updates=np.zeros(shape, dtype=np.int64),
            recent=np.full(shape, np.nan),
            recent_static=np.full(shape, np.nan),
            last_ts=np.full(shape[0], -1, dtype=np.int64),
            gamma=float(gamma),
        )

    @property
    def horizon(self) -> int:
        return self.log_scale.shape[0]

    def scale(self, steps: int | None = None) -> np.ndarray:
        """The band's multiplier ``[H', n]`` of the calibrated half-width."""
        return np.exp(self.log_scale[: steps or self.horizon])

    # --- learning from outcomes ------------------------------------------------------------

    def update(self, forecast: Forecast, actual: np.ndarray) -> int:
        """Score one forecast (with its *calibrated* band) against ``actual`` ``[H', n]`` (eng.
        units at ``forecast.ts``; NaN where not yet measured or bad); returns outcomes scored."""
        self._check_tags(forecast.tags)
        centre = (forecast.upper + forecast.lower) / 2
        half = (forecast.upper - forecast.lower) / 2
        ts = forecast.ts.astype("datetime64[us]").astype(np.int64)
        return self.update_arrays(ts[None], centre[None], half[None], np.asarray(actual)[None])

    def update_arrays(
        self, ts: np.ndarray, centre: np.ndarray, half: np.ndarray, actual: np.ndarray
    ) -> int:
        """Score ``N`` forecasts, oldest origin first: target times ``ts`` ``[N, H']`` (int64 µs
        UTC), band centre and calibrated half-width and outcome ``[N, H', n]`` (eng. units).

        Each step's outcomes are scored in time order, once: an outcome at or before the last
        one scored at its step is skipped. Columns whose band has zero width (MVs) never adapt.
        """
        steps = min(ts.shape[1], self.horizon)
        done = 0
        a = 1.0 - self.coverage
        for i in range(len(ts)):
            new = ts[i, :steps] > self.last_ts[:steps]
            if not new.any():
                continue
            h = np.flatnonzero(new)
            err = np.abs(actual[i, h] - centre[i, h])
            width = half[i, h]
            seen = np.isfinite(err) & np.isfinite(width) & (width > 0)
            if not seen.any():
                continue
            miss = err > width * np.exp(self.log_scale[h])
            miss_static = err > width
            self._learn(h, seen, miss, miss_static, a)
            self.last_ts[h[seen.any(axis=1)]] = ts[i, h[seen.any(axis=1)]]
            done += int(seen.sum())
        return done

    def _learn(
        self, h: np.ndarray, seen: np.ndarray, miss: np.ndarray, static: np.ndarray, a: float
    ) -> None:
        n = self.updates[h] + seen
        w = np.where(seen, 1.0 / np.minimum(np.maximum(n, 1), MEMORY), 0.0)
        for name, flags in (("recent", miss), ("recent_static", static)):
            old = getattr(self, name)[h]
            hit = (~flags).astype(float)
            getattr(self, name)[h] = np.where(
                seen, np.where(np.isnan(old), hit, (1 - w) * old + w * hit), old
            )
        step = np.where(seen, self.gamma * (miss.astype(float) - a), 0.0)
        self.log_scale[h] = np.clip(self.log_scale[h] + step, np.log(S_MIN), np.log(S_MAX))
        self.updates[h] = n

    # --- using what was learned ------------------------------------------------------------

    def adjust(self, forecast: Forecast) -> Forecast:
        """The same forecast with each step's and tag's band scaled by what was learned."""
        self._check_tags(forecast.tags)
        steps = min(forecast.horizon, self.horizon)
        centre = (forecast.upper + forecast.lower) / 2
        half = (forecast.upper - forecast.lower) / 2
        half[:steps] *= self.scale(steps)
        return dataclasses.replace(forecast, lower=centre - half, upper=centre + half)

    def tag_coverage(self, static: bool = False) -> dict[str, float]:
        """Recent coverage per tag (mean over the steps that saw outcomes) of the adaptive band,
        or with ``static`` of the calibrated one; tags without outcomes left out."""
        values = self.recent_static if static else self.recent
        out = {}
        for j, tag in enumerate(self.tags):
            col = values[:, j]
            if np.isfinite(col).any():
                out[tag] = float(np.nanmean(col))
        return out

    def tag_scale(self) -> dict[str, float]:
        """The band's scale per tag (geometric mean over steps), for tags that saw outcomes."""
        return {
            tag: float(np.exp(self.log_scale[:, j].mean()))
            for j, tag in enumerate(self.tags)
            if self.updates[:, j].any()
        }

    def levels(self, calibration: Calibration) -> np.ndarray:
        """``[H, n]`` the calibration's quantile level that each band now stands at (NaN where
        the calibration keeps no grid of levels, as folders saved before it did)."""
        return calibration.level_at(self.scale())

    def table(
        self, calibration: Calibration, tags: tuple[str, ...] | list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Per tag (of ``tags``, default all): nominal, calibration (fitted, held-out check),
        recent coverage of the calibrated and of the adaptive band, scale, level and outcomes
        (None: not known)."""
        level = self.levels(calibration)
        live, static, scale = self.tag_coverage(), self.tag_coverage(True), self.tag_scale()
        rows = []
        for j, tag in enumerate(self.tags):
            if tags is not None and tag not in tags:
                continue
            rows.append(
                {
                    "tag": tag,
                    "nominal": self.coverage,
                    "calibration": _mean(calibration.fitted, j),
                    "held-out check": _mean(calibration.held_out, j),
                    "live, calibrated band": static.get(tag),
                    "live, adaptive band": live.get(tag),
                    "band scale": scale.get(tag, 1.0),
                    "adaptive level": _mean(level, j),
                    "outcomes": int(self.updates[:, j].sum()),
                }
            )
        return rows

    def _check_tags(self, tags: tuple[str, ...]) -> None:
        if tuple(tags) != self.tags:
            raise ValueError(f"forecast of tags {list(tags)}, bands of {list(self.tags)}")

    # --- saving ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""

        def rows(a: np.ndarray) -> list[Any]:
            return [[None if np.isnan(v) else round(float(v), 6) for v in r] for r in a]

        return {
            "tags": list(self.tags),
            "key": self.key,
            "coverage": self.coverage,
            "gamma": self.gamma,
            "log_scale": rows(self.log_scale),
            "updates": self.updates.tolist(),
            "recent": rows(self.recent),
            "recent_static": rows(self.recent_static),
            "last_ts": self.last_ts.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdaptiveBands:
        """Inverse of :meth:`to_dict`."""

        def arr(name: str, dtype: Any = float) -> np.ndarray:
            return np.array([[np.nan if v is None else v for v in r] for r in d[name]], dtype)

        out = cls(
            tags=tuple(d["tags"]),
            key=str(d["key"]),
            coverage=float(d["coverage"]),
            log_scale=arr("log_scale"),
            updates=arr("updates", np.int64),
            recent=arr("recent"),
            recent_static=arr("recent_static"),
            last_ts=np.asarray(d["last_ts"], dtype=np.int64),
            gamma=float(d["gamma"]),
        )
        shape = (len(out.last_ts), len(out.tags))
        for name in ("log_scale", "updates", "recent", "recent_static"):
            if getattr(out, name).shape != shape:
                raise ValueError(f"{name} must be {list(shape)}")
        return out

    def save(self, path: str | Path) -> Path:
        """Write the state as JSON, atomically (a crash leaves the old file or the new one)."""
        path = Path(path)
        replace_text(path, json.dumps(self.to_dict()) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> AdaptiveBands:
        """Read a state :meth:`save` wrote (ValueError / OSError when it cannot)."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def resume(
        cls,
        path: str | Path,
        tags: tuple[str, ...] | list[str],
        calibration: Calibration,
        gamma: float = GAMMA,
    ) -> AdaptiveBands:
        """The state saved at ``path`` if it belongs to this twin, else a fresh one (logged)."""
        path = Path(path)
        fresh = cls.start(tags, calibration, gamma)
        if not path.is_file():
            return fresh
        try:
            saved = cls.load(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "adaptive bands: %s unreadable (%s); starting from the calibration", path, exc
            )
            return fresh
        if saved.key != fresh.key:
            log.info("adaptive bands: %s belongs to another twin; starting afresh", path)
            return fresh
        saved.gamma = fresh.gamma
        log.info(
            "adaptive bands: resumed from %s (%d outcomes scored)", path, int(saved.updates.sum())
        )
        return saved


def _mean(values: np.ndarray | None, j: int) -> float | None:
    if values is None or not np.isfinite(values[:, j]).any():
        return None
    return float(np.nanmean(values[:, j]))
