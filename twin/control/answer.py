"""The controller's answer: a solved (or held) MV plan turned into a :class:`Recommendation`.

:func:`recommendation` gives every MV its :class:`MoveRec` (current and next value, the planned
trajectory, whether every limit holds) and the whole its message and timing;
:func:`plan_forecast` is the forecast under the plan, the MVs exactly the plan.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from twin.control.problem import Problem, limits_held
from twin.control.recommendation import ActiveConstraint, MoveRec, Recommendation
from twin.control.targets import Targets
from twin.model.forecast import Forecast
from twin.spec import PlantSpec, Tag


@dataclass(frozen=True)
class Economics:
    """Where a recommendation is heading and why: the steady-state targets (MV and CV tag ->
    value), the limits that bind or were given up, the cost rates, the frozen MVs."""

    frozen: tuple[str, ...] = ()
    cost_rate_now: float = math.nan
    """the spec's cost rate at the current measurements (nan: no tag has a cost)"""
    targets: dict[str, float] = field(default_factory=dict)
    constraints: tuple[ActiveConstraint, ...] = ()
    cost_rate: float = math.nan
    """the predicted cost rate at the targets"""

    @classmethod
    def of(
        cls, spec: PlantSpec, cv_now: np.ndarray, u0: np.ndarray, frozen: tuple[str, ...]
    ) -> Economics:
        """Before the solve: the frozen MVs and the cost rate now (CVs ``cv_now``, MVs ``u0``)."""
        costs = [t.cost for t in (*spec.cvs, *spec.mvs)]
        now = math.nan
        if any(c is not None for c in costs):
            values = np.concatenate([cv_now, u0])
            now = float(sum((c or 0.0) * v for c, v in zip(costs, values, strict=True)))
        return cls(frozen=frozen, cost_rate_now=now)

    def with_targets(self, tg: Targets | None) -> Economics:
        """With the steady-state optimiser's answer (None: the solve set no targets)."""
        if tg is None:
            return self
        names = [*tg.cv_names, *tg.mv_names]
        values = [*tg.y.tolist(), *tg.u.tolist()]
        return replace(
            self,
            targets=dict(zip(names, values, strict=True)),
            constraints=tuple(tg.constraints),
            cost_rate=float(tg.cost_rate),
        )


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
    economics: Economics | None = None,
) -> Recommendation:
    """The recommendation of the per-sample ``plan`` ``[H, n_mv]`` (already projected).

    ``sp`` ``[n_cv]`` the setpoints (NaN: none); ``t0`` ``time.perf_counter()`` when the call
    began; ``notes`` are appended to ``message``; ``economics`` the targets and costs.
    """
    econ = economics or Economics()
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
            lo=t.op_low,
            hi=t.op_high,
            rate_limit=float(t.rate_limit or t.span),
            plan=tuple(float(v) for v in plan[:, i]),
            limits_held=bool(held[i]),
            target=float(econ.targets.get(t.name, math.nan)),
            frozen=t.name in econ.frozen,
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
        targets=dict(econ.targets),
        constraints=econ.constraints,
        cost_rate=econ.cost_rate,
        cost_rate_now=econ.cost_rate_now,
        frozen=econ.frozen,
    )


def outside_notes(mvs: tuple[Tag, ...], u0: np.ndarray) -> list[str]:
    """A note for each MV whose current value ``u0`` lies outside its (operating) range."""
    return [
        f"{t.name} = {u:g} is outside [{t.op_low:g}, {t.op_high:g}]: moving toward the range "
        "at the rate limit"
        for t, u in zip(mvs, u0, strict=True)
        if not t.op_low <= u <= t.op_high
    ]


def frozen_notes(mvs: tuple[Tag, ...], frozen: tuple[str, ...], u0: np.ndarray) -> list[str]:
    """A note for each frozen MV: held, why, and how to release it."""
    return [
        f"{t.name} frozen at {u:g}: the twin never saw it move in its training data "
        f"(release it with --release {t.name} once it has been step-tested)"
        for t, u in zip(mvs, u0, strict=True)
        if t.name in frozen
    ]
