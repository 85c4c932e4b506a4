"""Time scales from the data: window and horizon from the identified linear model's step responses.

With ``TwinConfig.time_scales = "auto"`` the twin identifies a linear model on the training split
(:func:`twin.model.linear_init.identify`, with the configured window and horizon), simulates its
unit-step response from every input (MV or DV) to every CV, and takes, over the responses that
matter (a peak of at least 0.05 in normalised units):

- the dead time: samples after the move before a response's rate of change passes 5 % of its
  largest (0: the row the move acts on already shows it; the largest over the responses);
- the settling time: the last sample at which it is more than 5 % of its peak away from its
  final value (the largest; an integrating response settles never, and counts as the cap).

    horizon = clip(settling + dead, 10, 120)     window = clip(settling / 2 + dead, 8, 96)

A window or horizon the user gives (``twin train --window/--horizon``) is kept. What was chosen
and why is stored in ``metrics.json`` (``time_scales``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import polars as pl

from twin.model.dataset import Normalizer
from twin.model.linear_init import identify
from twin.model.network import TwinConfig
from twin.model.state_space import StateSpace
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

WINDOW = (8, 96)
HORIZON = (10, 120)
_LENGTH = 4 * HORIZON[1]  # samples of step response simulated
RULE = "horizon = clip(settling + dead, 10, 120), window = clip(settling / 2 + dead, 8, 96)"
_PEAK = 0.05  # a response smaller than this (normalised units per unit step) does not count


def step_times(ss: StateSpace, length: int = _LENGTH) -> tuple[int, int] | None:
    """``(dead, settling)`` in samples over every input-CV response that matters, or None."""
    n_v = ss.b.shape[1]
    s = np.zeros((ss.order, n_v))
    ys = []
    for _ in range(length):  # unit step on each input at once, columns apart (offsets cancel)
        ys.append(ss.c @ s + ss.d)
        s = ss.a @ s + ss.b
    resp = np.stack(ys)  # [length, n_cv, n_v]
    y = np.abs(resp)
    peak = y.max(axis=0)
    keep = peak >= _PEAK
    if not keep.any():
        return None
    rate = np.abs(np.diff(resp, axis=0, prepend=0.0))  # settles even where y ramps (a level)
    passed = rate >= 0.05 * rate.max(axis=0)
    dead = int(np.where(keep, passed.argmax(axis=0), 0).max())
    away = np.abs(resp - resp[-1]) > 0.05 * peak
    last = length - np.argmax(away[::-1], axis=0)  # samples up to the last one away
    last = np.where(away.any(axis=0), last, 1)
    last = np.where(rate[-1] > 0.01 * rate.max(axis=0), length, last)  # still moving: a ramp
    return dead, int(np.where(keep, last, 0).max())


def choose(
    spec: PlantSpec,
    parts: tuple[pl.DataFrame, ...],
    cfg: TwinConfig,
    norm: Normalizer,
) -> tuple[TwinConfig, dict[str, Any]]:
    """The config with window and horizon from the data (as ``cfg.time_scales`` asks), and why."""
    given = (cfg.time_scales == "auto_horizon", cfg.time_scales == "auto_window")
    ss, _ = identify(spec, parts[0], parts[1], cfg, norm)
    record: dict[str, Any] = {"rule": RULE}
    times = step_times(ss) if ss is not None else None
    if ss is None or times is None:
        record["chosen"] = "kept: no linear model with a response that matters"
        return cfg, record
    dead, settling = times
    window = int(np.clip(round(settling / 2 + dead), *WINDOW))
    horizon = int(np.clip(settling + dead, *HORIZON))
    window = cfg.window if given[0] else window
    horizon = cfg.horizon if given[1] else horizon
    record.update(
        model=ss.name,
        dead_samples=dead,
        settling_samples=settling,
        window=window,
        horizon=horizon,
        given={"window": given[0], "horizon": given[1]},
        chosen=f"{ss.name}: dead time {dead}, settling time {settling} samples; {RULE}"
        + "".join(f"; {k} given" for k, g in zip(("window", "horizon"), given, strict=True) if g),
    )
    log.info("time scales from %s: dead %d, settling %d samples", ss.name, dead, settling)
    return dataclasses.replace(cfg, window=window, horizon=horizon), record
