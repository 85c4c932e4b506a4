"""Adaptive bands replayed over a test history, as the live loop would have run them.

The live loop (``twin run``) adapts each tag's band from outcomes as they arrive
(:class:`~twin.model.adaptive.AdaptiveBands`). To score that on stored history, the test's
forecast origins are walked in time order: at origin ``t`` the bands have learnt from every
outcome measured by ``t`` (the steps of earlier forecasts that have come true), and nothing
later; the forecast made at ``t`` is then widened or narrowed by what was learnt, and its
outcomes are scored against the adapted band. The first forecasts carry the calibrated band;
coverage is reported from one horizon after the test starts, the time the adaptation has had.
"""

from __future__ import annotations

import numpy as np

from twin.model.adaptive import GAMMA, AdaptiveBands
from twin.model.forecast import Calibration


def replay(
    tags: tuple[str, ...],
    calibration: Calibration,
    origins: np.ndarray,
    period_s: float,
    centre: np.ndarray,
    half: np.ndarray,
    actual: np.ndarray,
    gamma: float = GAMMA,
) -> tuple[np.ndarray, np.ndarray]:
    """Which outcomes fall inside the adapted band (bool ``[N, H, n]``) and the band's scale
    (x the calibrated half-width, ``[N, H, n]``) each forecast was issued with.

    ``origins [N]`` (datetime64, increasing) are the forecasts' last measured samples, ``centre``,
    ``half`` (the calibrated half-width) and ``actual`` are ``[N, H, n]`` in engineering units.
    """
    n, h = centre.shape[:2]
    t0 = np.asarray(origins, dtype="datetime64[us]").astype(np.int64)
    step_us = np.int64(round(period_s * 1e6))
    target = t0[:, None] + step_us * np.arange(1, h + 1)[None, :]  # [N, H] µs
    bands = AdaptiveBands.start(tags, calibration, gamma=gamma)
    inside = np.zeros(centre.shape, dtype=bool)
    scales = np.ones(centre.shape)
    pending: list[int] = []  # forecasts with outcomes still to come
    for i in range(n):
        still = []
        for j in pending:  # learn from what has been measured by origin i, oldest first
            known = target[j] <= t0[i]
            seen = np.where(known[:, None], actual[j], np.nan)
            bands.update_arrays(target[j : j + 1], centre[j : j + 1], half[j : j + 1], seen[None])
            if not known.all():
                still.append(j)
        pending = [*still, i]
        scales[i] = bands.scale(h)
        inside[i] = np.abs(actual[i] - centre[i]) <= half[i] * scales[i]
    return inside, scales


def after_one_horizon(origins: np.ndarray, period_s: float, horizon: int) -> np.ndarray:
    """Mask ``[N]`` of the origins at least one horizon after the first one."""
    t = np.asarray(origins, dtype="datetime64[us]").astype(np.int64)
    if not len(t):
        return np.zeros(0, dtype=bool)
    return t >= t[0] + np.int64(round(horizon * period_s * 1e6))
