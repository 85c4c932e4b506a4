"""The controller's answer: a solved (or held) MV plan turned into a :class:`Recommendation`.

:func:`recommendation` gives every MV its :class:`MoveRec` (current and next value, the planned
trajectory, whether every limit holds) and the whole its message and timing;
:func:`plan_forecast` is the forecast under the plan, the MVs exactly the plan.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import numpy as np

from twin.control.problem import Problem, limits_held
from twin.control.recommendation import MoveRec, Recommendation
from twin.model.forecast import Forecast
from twin.spec import PlantSpec, Tag


def plan_forecast(
    spec: PlantSpec,
    mv_idx: list[int],
    plan: np.ndarray,
    mean: np.ndarray,
    half: np.ndarray,
    ts_now: np.datetime64,
) -> Forecast:
    """The forecast ``mean`` / ``half`` ``[H, n_tags]`` of the MV ``plan`` ``[H, n_mv]`` from
    ``ts_now`` on, its MV columns exactly the plan (no band)."""
    mean = mean.copy()
    half = np.abs(half).copy()
    mean[:, mv_idx] = plan
    half[:, mv_idx] = 0.0
    period = np.timedelta64(round(spec.sample_period * 1e6), "us")
    return Forecast(
        tags=tuple(spec.tag_names),
        units=tuple(t.unit for t in spec.tags),
        ts=ts_now + period * np.arange(1, len(plan) + 1),
        mean=mean,
        lower=mean - half,
        upper=mean + half,
    )


def recommendation(
    spec: PlantSpec,
    p: Problem,
    plan: np.ndarray,
    sp: np.ndarray,
    ts_now: np.datetime64,
    t0: float,
    *,
    success: bool,
    message: str,
    notes: list[str],
    forecast: Forecast | None = None,
    objective: float = math.nan,
    iterations: int = 0,
) -> Recommendation:
    """The recommendation of the per-sample ``plan`` ``[H, n_mv]`` (already projected).

    ``sp`` ``[n_cv]`` the setpoints (NaN: none); ``t0`` ``time.perf_counter()`` when the call
    began; ``notes`` are appended to ``message``.
    """
    held = limits_held(plan, p)
    moves = tuple(
        MoveRec(
            tag=t.name,
            node=None if t.node is None else str(t.node),
            write_node=None if t.write_node is None else str(t.write_node),
            unit=t.unit,
            current=float(p.u0[i]),
            recommended=float(plan[0, i]),
            change=float(plan[0, i] - p.u0[i]),
            lo=t.lo,
            hi=t.hi,
            rate_limit=float(p.rate[i]),
            plan=tuple(float(v) for v in plan[:, i]),
            limits_held=bool(held[i]),
        )
        for i, t in enumerate(spec.mvs)
    )
    ts = ts_now.astype("datetime64[us]").astype(datetime).replace(tzinfo=UTC)
    return Recommendation(
        ts=ts,
        plant=spec.name,
        success=success,
        message="; ".join([message, *notes]),
        moves=moves,
        setpoints={t.name: float(v) for t, v in zip(spec.cvs, sp, strict=True) if math.isfinite(v)},
        forecast=forecast,
        objective=float(objective),
        solve_time_s=time.perf_counter() - t0,
        iterations=iterations,
        limits_held=bool(held.all()),
    )


def outside_notes(mvs: tuple[Tag, ...], u0: np.ndarray) -> list[str]:
    """A note for each MV whose current value ``u0`` lies outside its range."""
    return [
        f"{t.name} = {u:g} is outside [{t.lo:g}, {t.hi:g}]: moving toward the range at the "
        "rate limit"
        for t, u in zip(mvs, u0, strict=True)
        if not t.lo <= u <= t.hi
    ]
