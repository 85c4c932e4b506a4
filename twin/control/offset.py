"""The controller's offset-free correction: the model's k-step error at the current sample.

The CV forecast at step k is corrected by ``c_k = y_t - yhat(t | t-k)``: what the model,
started k samples back and given the MVs and DVs actually applied since, would have forecast
for now, subtracted from the measurement. At a steady state that forecast equals the model's
forecast from now with everything held, so the corrected forecast under unchanged MVs equals
the measurement at every step: a constant unmeasured disturbance or a wrong gain leaves no
steady-state offset, whatever the model's structure (a DMC bias ``y_t - yhat(t | t-1)`` alone
does that only for models without output feedback). An exact model gets ``c = 0``.

Cost: ``yhat(t | t-k)`` is measured at a few nodes k (:attr:`OffsetCorrection.steps`,
geometric in k), one extra member of the controller's first batched rollout each, plus one
member ``F``: the forecast from now with everything held. Between nodes ``c`` is interpolated
after taking out its least-squares multiple ``s g`` of ``g_k = y_t - F_k``, which is known at
every k: ``c_k = interp(c - s g)(k) + s g_k``. That keeps both cases above exact however few
the nodes. The past windows of earlier samples come from a cache of earlier calls, so a
controller called every sample builds one past window per call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from torch import Tensor

from twin.control.solve import SolveError
from twin.errors import TwinError


@dataclass(frozen=True)
class Members:
    """The extra rollout members: pasts ``[now, t-k1, t-k2, ...]`` and their inputs."""

    pasts: list[Tensor]
    plans: np.ndarray
    """``[K+1, H, n_mv]`` MVs of the samples t-k+1 .. t, then the current ones held"""
    dvs: np.ndarray | None
    """``[K+1, H, n_dv]`` the same for the DVs (None without DVs)"""


class OffsetCorrection:
    """Builds the step-back members and turns their forecasts into the correction ``[H, n_cv]``."""

    def __init__(
        self,
        horizon: int,
        points: int | None,
        cols: tuple[list[int], list[int], list[int]],
    ) -> None:
        self.horizon = horizon
        count = horizon if points is None else max(1, min(int(points), horizon))
        self.steps = np.unique(np.round(np.geomspace(1, horizon, count)).astype(np.int64))
        """the nodes k at which ``yhat(t | t-k)`` is measured"""
        self.cv_idx, self.mv_idx, self.dv_idx = cols
        self.reset()

    def reset(self) -> None:
        """Forget the cached past windows."""
        self._pasts: dict[tuple[np.datetime64, bytes], Tensor] = {}

    def members(
        self,
        past_tensor: Callable[[pl.DataFrame], Tensor],
        history: pl.DataFrame,
        values: np.ndarray,
        ts: np.ndarray,
        past: Tensor,
        dv_ahead: np.ndarray | None = None,
    ) -> Members | None:
        """Pasts now and at the nodes back with their inputs; None when history is too short.

        ``values [T, n_tags]`` and ``ts [T]``: the last samples of ``history`` (gaps carried
        forward), ``past`` the model's past window of now; ``dv_ahead [H, n_dv]``: the DVs after
        now as the forecast assumes them (default: held).
        """
        n = len(values)
        cache = self._pasts
        cache[(ts[-1], values[-1].tobytes())] = past
        pasts = [past]
        inputs = values[:, self.mv_idx + self.dv_idx]
        for k in self.steps[self.steps < n]:
            if not np.isfinite(inputs[n - int(k) :]).all():
                break  # the MVs / DVs applied since t-k are not all known (a gap): fewer nodes
            key = (ts[n - 1 - k], values[n - 1 - k].tobytes())
            if key not in cache:
                try:
                    cache[key] = past_tensor(history.head(history.height - int(k)))
                except TwinError:  # too short, or a gap that far back: fewer nodes
                    break
            pasts.append(cache[key])
        for key in [key for key in cache if key[0] < ts[0]]:
            del cache[key]
        if len(pasts) == 1:
            return None
        ks = np.concatenate([[0], self.steps[: len(pasts) - 1]])
        ahead = n - 1 - ks[:, None] + np.arange(1, self.horizon + 1)[None]  # rows; >= n: to come
        rows = values[np.minimum(ahead, n - 1)]
        dvs = rows[:, :, self.dv_idx] if self.dv_idx else None
        if dvs is not None and dv_ahead is not None:
            late = ahead >= n
            dvs[late] = dv_ahead[ahead[late] - n]
        return Members(pasts, rows[:, :, self.mv_idx], dvs)

    def correction(self, now: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """``[H, n_cv]`` from the members' mean forecasts ``[K+1, H, n_tags]``.

        ``now [n_cv]``: the measured CVs (a NaN one gets no correction). Raises
        :class:`SolveError` on a non-finite forecast.
        """
        offset = np.zeros((self.horizon, len(self.cv_idx)))
        if len(mean) < 2:
            return offset
        ks = self.steps[: len(mean) - 1]
        free = mean[0][:, self.cv_idx]  # F_k, k = 1..H
        pred = mean[np.arange(1, len(ks) + 1), ks - 1][:, self.cv_idx]  # yhat(t | t-k)
        if not (np.isfinite(free).all() and np.isfinite(pred).all()):
            raise SolveError("non-finite forecast in the offset correction")
        steps = np.arange(1, self.horizon + 1)
        with np.errstate(all="ignore"):
            for c, y in enumerate(now):
                if not math.isfinite(y):
                    continue
                g, err = y - free[:, c], y - pred[:, c]
                gn = g[ks - 1]
                scale = float(gn @ gn)
                s = float(err @ gn) / scale if scale > 1e-24 * (1.0 + y * y) * len(gn) else 0.0
                offset[:, c] = np.interp(steps, ks, err - s * gn) + s * g
        if not np.isfinite(offset).all():
            raise SolveError("non-finite offset correction")
        return offset
