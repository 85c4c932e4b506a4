"""The baseline forecasters' common base class, and the simplest of them: persistence.

Every baseline has the twin's inputs and answers the twin's question::

    b = ARX().fit(spec, train_frame, val_frame, horizon=30, window=24)
    y = b.predict(past, mv_plan)   # past [N, W, n_tags], mv_plan [N, H, n_mv] -> [N, H, n_tags]

Arrays at the API are in engineering units, tags in spec order; ``past`` holds samples
``t-W+1 .. t`` (only the last ``window`` are used) and ``mv_plan[:, k]`` is the MV value at sample
``t+1+k`` (see :mod:`twin.model.dataset`). Like the twin's live forecast, future DVs are unknown and
held at their last value, a clock DV counted on (:func:`~twin.model.dataset.dv_future`); the
result's MV columns are the plan and its DV columns those DVs, so only the CV columns are
forecasts. Internally each baseline works in units normalised with
statistics of its training frame; orders and early stopping are chosen on the validation frame
by the mean NRMSE over CVs and all H steps of open-loop forecasts.

A baseline that cannot be fitted on the data given raises :class:`DataQualityError` naming why;
where it can get by (fewer orders, regularisation, orders chosen on training windows when the
validation frame holds none) it does, and says so in ``notes_``. :func:`try_fit` turns a failure
into a reason to report, so one baseline never stops a report.

The baselines themselves: :class:`Persistence` here, ``ARX`` and ``Subspace`` in
:mod:`twin.evaluate.linear`, ``DirectGRU`` in :mod:`twin.evaluate.gru`.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from typing import ClassVar, Self

import numpy as np
import polars as pl

from twin.errors import DataQualityError
from twin.model.dataset import (
    Normalizer,
    Windows,
    clock_columns,
    cv_columns,
    dv_columns,
    dv_future,
    frame_to_array,
    make_windows,
    mv_columns,
    spans,
)
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

_VAL_WINDOWS = 600  # validation windows used to choose orders (evenly spaced)


class Baseline(ABC):
    """A multi-step open-loop forecaster with the twin's inputs (past window + MV plan)."""

    name: ClassVar[str]
    needs_validation: ClassVar[bool] = True
    """whether fitting chooses orders or stops early on validation windows"""
    learns: ClassVar[bool] = True
    """whether it learns anything from data (persistence does not, and never fails to fit)"""

    def fit(
        self, spec: PlantSpec, train: pl.DataFrame, val: pl.DataFrame, *, horizon: int, window: int
    ) -> Self:
        """Fit on ``train`` (wide frame), choose orders / stop early on ``val``; returns self."""
        self.spec_, self.horizon_, self.window_ = spec, horizon, window
        self.cv_, self.mv_, self.dv_ = cv_columns(spec), mv_columns(spec), dv_columns(spec)
        self.held_ = [c for c in self.dv_ if c not in clock_columns(spec)]  # clocks count on
        values, ok = frame_to_array(train, spec)
        self.notes_: list[str] = []
        if not self.learns:  # identity scaling: its forecasts are exact copies of the data
            self.norm_ = Normalizer(np.zeros(len(spec.tags)), np.ones(len(spec.tags)))
            self.fit_seconds_ = 0.0
            return self
        if not ok.all(axis=1).any():
            raise DataQualityError(
                f"{self.name}: the training frame ({train.height} samples) has no complete sample"
            )
        self.norm_ = Normalizer.fit(values, fallback=0.1 * spans(spec), names=spec.tag_names)
        z = self.norm_.norm(np.where(ok, values, np.nan))
        vv, vok = frame_to_array(val, spec)
        wins = make_windows(vv, vok, spec, window, horizon, self.norm_)
        if self.needs_validation and len(wins) == 0:
            wins = self._training_windows(values, ok, val.height)
        if len(wins) > _VAL_WINDOWS:
            take = np.linspace(0, len(wins) - 1, _VAL_WINDOWS).astype(int)
            wins = Windows(wins.past[take], wins.future[take], wins.ts[take])
        t0 = time.perf_counter()
        self._fit(z, wins)
        self.fit_seconds_ = time.perf_counter() - t0
        log.info("%s fitted in %.1f s", self.describe(), self.fit_seconds_)
        return self

    def _training_windows(self, values: np.ndarray, ok: np.ndarray, val_samples: int) -> Windows:
        """Windows of the training frame, for choosing orders when validation has none."""
        span = self.window_ + self.horizon_
        wins = make_windows(values, ok, self.spec_, self.window_, self.horizon_, self.norm_)
        if len(wins) == 0:
            raise DataQualityError(
                f"{self.name}: neither the validation frame ({val_samples} samples) nor the "
                f"training frame ({len(values)} samples) holds a complete stretch of window + "
                f"horizon = {self.window_} + {self.horizon_} = {span} samples"
            )
        self.notes_.append(
            f"orders / early stopping chosen on training windows (in-sample): the validation "
            f"frame ({val_samples} samples) holds no complete stretch of window + horizon = "
            f"{span} samples"
        )
        return wins

    def predict(self, past: np.ndarray, mv_plan: np.ndarray) -> np.ndarray:
        """Forecast ``[N, H, n_tags]`` (engineering units) from ``past`` and ``mv_plan``."""
        past = np.asarray(past, dtype=np.float64)[:, -self.window_ :]
        mv_plan = np.asarray(mv_plan, dtype=np.float64)
        n_tags = len(self.spec_.tags)
        if past.ndim != 3 or past.shape[1:] != (self.window_, n_tags):
            raise ValueError(f"past must be [N, >={self.window_}, {n_tags}], got {past.shape}")
        if (
            mv_plan.ndim != 3
            or mv_plan.shape[0] != past.shape[0]
            or mv_plan.shape[2] != len(self.mv_)
        ):
            raise ValueError(f"mv_plan must be [N, H, {len(self.mv_)}], got {mv_plan.shape}")
        if not np.isfinite(past).all():
            raise DataQualityError(f"{self.name}: the past window has missing samples")
        pz = self.norm_.norm(past)
        fz = self._future_inputs(pz, mv_plan)
        out = fz.copy()  # MV columns = plan, DVs held
        out[..., self.cv_] = self._predict_z(pz, fz)
        return self.norm_.denorm(out)

    def describe(self) -> str:
        """Name and chosen orders, for reports."""
        return self.name

    def _future_inputs(self, pz: np.ndarray, mv_plan: np.ndarray) -> np.ndarray:
        """``[N, H, n_tags]`` normalised: MV columns = plan, DVs held (clocks counted on:
        :func:`~twin.model.dataset.dv_future`), CVs = last value."""
        h = mv_plan.shape[1]
        fz = np.repeat(pz[:, -1:, :], h, axis=1)
        fz[..., self.mv_] = self.norm_.subset(self.mv_).norm(mv_plan)
        if len(self.held_) < len(self.dv_):
            dvs = self.norm_.subset(self.dv_)
            fz[..., self.dv_] = dvs.norm(dv_future(self.spec_, dvs.denorm(pz[:, -1, self.dv_]), h))
        return fz

    def _val_score(self, wins: Windows) -> float:
        """Mean NRMSE (normalised units) over CVs and steps of open-loop forecasts on ``wins``."""
        if len(wins) == 0:
            return math.nan
        fz = wins.future.astype(np.float64).copy()
        fz[..., self.held_] = wins.past[:, -1:, self.held_]  # the clocks' future is known
        pred = self._predict_z(wins.past.astype(np.float64), fz)
        err = pred - wins.future[..., self.cv_]
        return float(np.sqrt(np.mean(err**2)))

    @abstractmethod
    def _fit(self, z: np.ndarray, val: Windows) -> None:
        """Fit on the normalised training array ``z [T, n_tags]`` (NaN = missing)."""

    @abstractmethod
    def _predict_z(self, pz: np.ndarray, fz: np.ndarray) -> np.ndarray:
        """CV forecasts ``[N, H, n_cv]`` from normalised ``pz [N, W, n]`` and inputs ``fz``."""


class Persistence(Baseline):
    """Every CV stays at its last measured value."""

    name = "persistence"
    needs_validation = False
    learns = False

    def _fit(self, z: np.ndarray, val: Windows) -> None:
        pass

    def _predict_z(self, pz: np.ndarray, fz: np.ndarray) -> np.ndarray:
        return np.repeat(pz[:, -1:, self.cv_], fz.shape[1], axis=1)


def try_fit(
    baseline: Baseline,
    spec: PlantSpec,
    train: pl.DataFrame,
    val: pl.DataFrame,
    *,
    horizon: int,
    window: int,
) -> str | None:
    """Fit ``baseline``; ``None`` if it fitted, else why not (the reason a report shows).

    Data it cannot be fitted on (too few rows for its smallest orders, no complete stretch) is an
    expected outcome; any other failure is logged with its traceback and reported the same way,
    so that one baseline never stops an evaluation.
    """
    try:
        baseline.fit(spec, train, val, horizon=horizon, window=window)
    except (DataQualityError, np.linalg.LinAlgError) as exc:
        reason = str(exc).removeprefix(f"{baseline.name}: ")
    except Exception as exc:  # a bug or a numerical failure: report it, do not abort
        log.warning("%s failed to fit", baseline.name, exc_info=True)
        reason = f"fitting failed ({type(exc).__name__}: {exc})"
    else:
        return None
    log.warning("%s skipped: %s", baseline.name, reason)
    return reason
