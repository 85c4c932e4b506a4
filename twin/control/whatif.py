"""What-if: predicted trajectories, with bands, of the same plant under several scenarios.

    result = whatif(twin, spec, history, [HOLD, Scenario("hotter", setpoints=(("T", 330.0, 0.0),))],
                    setpoints=now)  # the setpoints in force now: what "hold" holds
    result.to_frame()          # long: scenario, step, ts, tag, unit, mean, lower, upper, setpoint
    result.compare("T")        # wide: step, ts, then mean / lower / upper per scenario
    result.summary()           # per scenario: cost rate before / after, the new targets

Here: :func:`whatif` and the run of each scenario (closed loop on the twin, or an MV
schedule). Its result, :class:`~twin.control.whatif_result.WhatIf`, lives in
:mod:`twin.control.whatif_result` and the scenarios in :mod:`twin.control.whatif_scenario`;
both are re-exported here.

A scenario (:class:`~twin.control.whatif_scenario.Scenario`) either changes CV setpoints at
given times and / or the controller's economics (prices, operating limits, priorities): closed
loop, the controller recommends at every step on the simulated history and the twin plays the
plant, its one-step mean forecast becoming the next "measured" row (a later setpoint change
reaches the controller when its time comes, without preview); or it fixes an MV schedule (open
loop). A scenario that changes the economics runs a controller of its own, with the same
settings, on the spec with its changes (:func:`~twin.control.whatif_scenario.scenario_spec`).
Either way the MV trajectory that results is then forecast once, open loop, from the real
history: that forecast's mean and calibrated band are what the scenario returns. Bands are
calibrated up to the model's horizon H only, so a what-if runs at most H steps. Every scenario
starts from the same history with a reset controller, so scenarios are independent and
comparable side by side.

Where a closed-loop scenario ends up: the steady-state targets of its controller at the last
step (the new optimum), the limits that bind or were given up there, and the cost rate under
the scenario's prices now (``cost_before``: at the current measurements) and at the new
targets (``cost_after``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

from twin.control.recommendation import ActiveConstraint, Recommendation
from twin.control.setpoints import Setpoints
from twin.control.whatif_result import WhatIf
from twin.control.whatif_scenario import (
    HOLD,
    Scenario,
    check_scenario,
    scenario_controller,
    scenario_spec,
    setpoint_path,
)
from twin.errors import TwinError
from twin.model.dataset import frame_ts, mv_columns
from twin.model.forecast import Forecast
from twin.spec import PlantSpec

if TYPE_CHECKING:
    from twin.control.controller import Controller, Predictor

__all__ = [
    "HOLD",
    "Scenario",
    "WhatIf",
    "check_scenario",
    "current_mvs",
    "scenario_controller",
    "scenario_spec",
    "setpoint_path",
    "whatif",
]

log = logging.getLogger(__name__)

#: rows of history kept for the simulated plant (the twin reads its last window of them)
KEEP_ROWS = 512


def whatif(
    model: Predictor,
    spec: PlantSpec,
    history: pl.DataFrame,
    scenarios: Sequence[Scenario],
    *,
    steps: int | None = None,
    controller: Controller | None = None,
    setpoints: Mapping[str, float] | None = None,
) -> WhatIf:
    """Predict every scenario from ``history`` (a frame on the spec's period; last row is now).

    ``steps`` defaults to the model's horizon H and may not exceed it. ``controller`` (reset
    before each scenario) runs the closed-loop ones; by default a ``Controller(model, spec)``.
    A scenario that changes prices, limits or priorities runs a new controller with the same
    settings on its own spec. ``setpoints``: the setpoints in force now, which "hold" holds and
    the scenarios change (default: the spec's; a :class:`~twin.control.setpoints.Setpoints` is
    used as is).
    """
    if not scenarios:
        raise TwinError("what-if needs at least one scenario")
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise TwinError(f"scenario names must differ, got {names}")
    for sc in scenarios:
        check_scenario(spec, sc)
    now = Setpoints.resolve(spec, setpoints)
    horizon = model.horizon
    steps = horizon if steps is None else int(steps)
    if not 1 <= steps <= horizon:
        raise TwinError(
            f"a what-if runs 1 to {horizon} steps (the model's horizon, as far as its bands are "
            f"calibrated), got {steps}"
        )
    history = history.sort("ts").tail(KEEP_ROWS)
    past = model.past_tensor(history)  # checks the history once: DataQualityError if unusable
    current = current_mvs(history, spec)
    if controller is None and not all(sc.open_loop or sc.changes_economics for sc in scenarios):
        from twin.control.controller import Controller

        controller = Controller(model, spec)
    forecasts, paths, runs = [], [], []
    for sc in scenarios:
        path = setpoint_path(spec, sc, steps, now)
        if sc.mv_schedule is not None:
            run = _Run(schedule_plan(spec, sc, current, steps))
        else:
            ctl = controller
            if sc.changes_economics:
                ctl = scenario_controller(model, scenario_spec(spec, sc), controller)
            assert ctl is not None
            run = _closed_loop(model, spec, ctl, history, path, steps)
        forecasts.append(_forecast(model, spec, past, run.plan, frame_ts(history)[-1]))
        paths.append({tag: p[1:] for tag, p in path.items()})
        runs.append(run)
        log.info(
            "what-if %r: %d steps %s%s; cost rate %.6g -> %.6g",
            sc.name,
            steps,
            "open loop" if sc.open_loop else "closed loop",
            f", {run.failed} failed solves (MVs held)" if run.failed else "",
            run.cost_before,
            run.cost_after,
        )
    return WhatIf(
        tuple(scenarios),
        tuple(forecasts),
        tuple(paths),
        failed_solves=tuple(r.failed for r in runs),
        targets=tuple(r.targets for r in runs),
        cost_before=tuple(r.cost_before for r in runs),
        cost_after=tuple(r.cost_after for r in runs),
        constraints=tuple(r.constraints for r in runs),
    )


def current_mvs(history: pl.DataFrame, spec: PlantSpec) -> np.ndarray:
    """The last finite value of each MV ``[n_mv]``; TwinError naming an MV that has none."""
    out = []
    for t in spec.mvs:
        ok = f"{t.name}__ok"
        rows = history.filter(pl.col(ok).fill_null(False)) if ok in history.columns else history
        values = rows.get_column(t.name).drop_nulls().drop_nans()
        if values.is_empty():
            raise TwinError(f"history has no valid value of MV {t.name!r}")
        out.append(float(values[-1]))
    return np.array(out)


def schedule_plan(
    spec: PlantSpec, scenario: Scenario, current: np.ndarray, steps: int
) -> np.ndarray:
    """The MV plan ``[steps, n_mv]`` of an open-loop scenario: its schedule, last value held."""
    plan = np.tile(current, (steps, 1)).astype(np.float64)
    for i, t in enumerate(spec.mvs):
        values = (scenario.mv_schedule or {}).get(t.name)
        if values is None:
            continue
        if len(values) > steps:
            raise TwinError(
                f"scenario {scenario.name!r}: schedule for {t.name!r} has {len(values)} values; "
                f"this what-if runs {steps} steps"
            )
        plan[: len(values), i] = values
        plan[len(values) :, i] = values[-1]
    return plan


@dataclass(frozen=True)
class _Run:
    """One scenario's MV plan and, closed loop, where its controller ended up."""

    plan: np.ndarray
    """``[steps, n_mv]``"""
    failed: int = 0
    targets: dict[str, float] = field(default_factory=dict)
    cost_before: float = math.nan
    cost_after: float = math.nan
    constraints: tuple[ActiveConstraint, ...] = ()


def _closed_loop(
    model: Predictor,
    spec: PlantSpec,
    controller: Controller,
    history: pl.DataFrame,
    path: dict[str, np.ndarray],
    steps: int,
) -> _Run:
    """The controller's MV moves ``[steps, n_mv]`` with the twin as the plant, failed solves,
    and the targets, constraints and cost rates of its recommendations."""
    controller.reset()
    mv = mv_columns(spec)
    plan = np.empty((steps, len(mv)))
    sim, failed = history, 0
    previous = current_mvs(history, spec)
    recs: list[Recommendation] = []
    for k in range(steps):
        sp = {tag: float(p[k]) for tag, p in path.items() if math.isfinite(p[k])}
        rec = controller.recommend(sim, sp)
        recs.append(rec)
        move = np.array([m.recommended for m in rec.moves], dtype=np.float64)
        if not rec.success or move.shape != previous.shape or not np.isfinite(move).all():
            failed += 1
            log.debug("what-if step %d: %s; MVs held", k, rec.message)
            if move.shape != previous.shape or not np.isfinite(move).all():
                move = previous
        plan[k] = previous = move
        if k + 1 < steps:
            with torch.no_grad():
                mean, _ = model.torch_rollout(
                    model.past_tensor(sim), torch.as_tensor(move[None, :], dtype=torch.float32)
                )
            row = mean[0].double().numpy()
            row[mv] = move
            sim = _append_row(sim, spec, row)
    # the new optimum: the last step's targets (of the last step that set any)
    last = next((r for r in reversed(recs) if r.targets), recs[-1])
    return _Run(
        plan,
        failed,
        targets=dict(last.targets),
        cost_before=recs[0].cost_rate_now,
        cost_after=last.cost_rate,
        constraints=last.constraints,
    )


def _append_row(frame: pl.DataFrame, spec: PlantSpec, values: np.ndarray) -> pl.DataFrame:
    """``frame`` with one more good row, one sample period after its last, of ``values``."""
    last: datetime = frame.get_column("ts")[-1]
    row: dict[str, object] = dict.fromkeys(frame.columns)
    row["ts"] = last + timedelta(seconds=spec.sample_period)
    for name, value in zip(spec.tag_names, values.tolist(), strict=True):
        row[name] = value
        if f"{name}__ok" in row:
            row[f"{name}__ok"] = True
        if f"{name}__state" in row:
            row[f"{name}__state"] = "good"
    return pl.concat([frame, pl.DataFrame([row], schema=frame.schema)]).tail(KEEP_ROWS)


def _forecast(
    model: Predictor, spec: PlantSpec, past: torch.Tensor, plan: np.ndarray, last_ts: np.datetime64
) -> Forecast:
    """One open-loop forecast of the MV ``plan`` ``[steps, n_mv]`` from the real history."""
    with torch.no_grad():
        mean_t, half_t = model.torch_rollout(past, torch.as_tensor(plan, dtype=torch.float32))
    mean, half = mean_t.double().numpy().copy(), half_t.double().numpy()
    mean[:, mv_columns(spec)] = plan  # exactly the plan, not a float32 round trip
    period = np.timedelta64(round(spec.sample_period * 1e6), "us")
    calibration = getattr(model, "calibration", None)
    return Forecast(
        tags=tuple(spec.tag_names),
        units=tuple(t.unit for t in spec.tags),
        ts=last_ts + period * np.arange(1, len(plan) + 1),
        mean=mean,
        lower=mean - half,
        upper=mean + half,
        coverage=float(getattr(calibration, "coverage", 0.9)),
    )
