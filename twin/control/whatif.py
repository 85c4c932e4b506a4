"""What-if: predicted trajectories, with bands, of the same plant under several scenarios.

    result = whatif(twin, spec, history, [HOLD, Scenario("hotter", setpoints=(("T", 330.0, 0.0),))])
    result.to_frame()          # long: scenario, step, ts, tag, unit, mean, lower, upper, setpoint
    result.compare("T")        # wide: step, ts, then mean / lower / upper per scenario

A scenario either changes CV setpoints at given times (closed loop: the controller recommends at
every step on the simulated history and the twin plays the plant, its one-step mean forecast
becoming the next "measured" row; a later setpoint change reaches the controller when its time
comes, without preview) or fixes an MV schedule (open loop). Either way the MV trajectory that
results is then forecast once, open loop, from the real history: that forecast's mean and
calibrated band are what the scenario returns. Bands are calibrated up to the model's
horizon H only, so a what-if runs at most H steps. Every scenario starts from the same history
with a reset controller, so scenarios are independent and comparable side by side.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

from twin.control.setpoints import Setpoints, check_setpoint
from twin.errors import TwinError
from twin.model.dataset import frame_ts, mv_columns
from twin.model.forecast import Forecast
from twin.spec import PlantSpec

if TYPE_CHECKING:
    from twin.control.controller import Controller, Predictor

log = logging.getLogger(__name__)

#: rows of history kept for the simulated plant (the twin reads its last window of them)
KEEP_ROWS = 512


@dataclass(frozen=True)
class Scenario:
    """One what-if case: setpoint changes (closed loop) or an MV schedule (open loop), not both."""

    name: str
    setpoints: tuple[tuple[str, float, float], ...] = ()
    """``(cv tag, value, minutes from now)``; the value holds from then on"""
    mv_schedule: dict[str, tuple[float, ...]] | None = None
    """open loop: MV tag -> value per step (the last one held); MVs not named hold their value"""

    @property
    def open_loop(self) -> bool:
        """True when the MVs follow a fixed schedule instead of the controller."""
        return self.mv_schedule is not None


#: the baseline: setpoints unchanged, the controller acting as it would now
HOLD = Scenario("hold")


@dataclass(frozen=True)
class WhatIf:
    """The predicted trajectories of every scenario, side by side."""

    scenarios: tuple[Scenario, ...]
    forecasts: tuple[Forecast, ...]
    """one per scenario: every tag, mean / lower / upper ``[steps, n_tags]``, eng. units"""
    setpoint_paths: tuple[dict[str, np.ndarray], ...]
    """one per scenario: CV tag -> setpoint ``[steps]`` in force at each step"""
    failed_solves: tuple[int, ...] = ()
    """one per scenario: closed-loop steps where the controller failed and held the MVs"""

    def forecast(self, name: str) -> Forecast:
        """The forecast of the scenario called ``name``."""
        names = [s.name for s in self.scenarios]
        if name not in names:
            raise KeyError(f"no scenario {name!r} (scenarios: {names})")
        return self.forecasts[names.index(name)]

    def to_json_dict(self) -> dict[str, object]:
        """The JSON document of ``twin whatif --out FILE.json`` (schema_version 1): the
        scenarios as given, their failed solves, and :meth:`to_frame`'s columns and rows."""
        frame = self.to_frame().with_columns(
            pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
            pl.col(pl.Float64).fill_nan(None),
        )
        scenarios = [
            {
                "name": s.name,
                "setpoints": [list(x) for x in s.setpoints],
                "mv_schedule": None
                if s.mv_schedule is None
                else {k: list(v) for k, v in s.mv_schedule.items()},
                "failed_solves": n,
            }
            for s, n in zip(self.scenarios, self.failed_solves, strict=True)
        ]
        return {
            "schema_version": 1,
            "scenarios": scenarios,
            "columns": frame.columns,
            "rows": frame.rows(),
        }

    def to_frame(self) -> pl.DataFrame:
        """Long frame of all scenarios: ``scenario, step, ts, tag, unit, mean, lower, upper, setpoint``.

        ``setpoint`` is the CV setpoint in force at that step (null for MVs and DVs).
        """
        parts = []
        for sc, fc, sps in zip(self.scenarios, self.forecasts, self.setpoint_paths, strict=True):
            part = fc.to_frame()
            sp = np.full(part.height, np.nan)
            steps = part.get_column("step").to_numpy() - 1
            tags = part.get_column("tag").to_numpy()
            for tag, path in sps.items():
                rows = tags == tag
                sp[rows] = path[steps[rows]]
            parts.append(
                part.with_columns(
                    scenario=pl.lit(sc.name), setpoint=pl.Series(sp).fill_nan(None)
                ).select("scenario", *part.columns, "setpoint")
            )
        return pl.concat(parts)

    def compare(self, tag: str) -> pl.DataFrame:
        """One tag side by side: ``step, ts``, then ``<scenario>``, ``<scenario>.lower``,
        ``<scenario>.upper`` and, for a CV, ``<scenario>.setpoint`` per scenario."""
        first = self.forecasts[0]
        if tag not in first.tags:
            raise KeyError(f"no tag {tag!r} (tags: {list(first.tags)})")
        out = first.to_frame().filter(pl.col("tag") == tag).select("step", "ts")
        for sc, fc, sps in zip(self.scenarios, self.forecasts, self.setpoint_paths, strict=True):
            mean, lower, upper = fc.tag(tag)
            cols = {sc.name: mean, f"{sc.name}.lower": lower, f"{sc.name}.upper": upper}
            if tag in sps:
                cols[f"{sc.name}.setpoint"] = sps[tag]
            out = out.with_columns(pl.Series(k, v) for k, v in cols.items())
        return out


def check_scenario(spec: PlantSpec, scenario: Scenario) -> None:
    """TwinError naming the scenario and what is wrong with it."""
    where = f"scenario {scenario.name!r}"
    if scenario.setpoints and scenario.mv_schedule is not None:
        raise TwinError(
            f"{where}: give setpoint changes (closed loop) or an MV schedule (open loop), not both"
        )
    for tag, value, minutes in scenario.setpoints:
        try:
            check_setpoint(spec, tag, value)
        except TwinError as exc:
            raise TwinError(f"{where}: {exc}") from None
        if not (math.isfinite(minutes) and minutes >= 0):
            raise TwinError(
                f"{where}: setpoint {tag}={value:g} at {minutes} min: time must be >= 0"
            )
    mvs = [t.name for t in spec.mvs]
    for tag, values in (scenario.mv_schedule or {}).items():
        if tag not in mvs:
            raise TwinError(f"{where}: schedule for {tag!r}, which is not an MV (MVs: {mvs})")
        if len(values) == 0:
            raise TwinError(f"{where}: schedule for {tag!r} has no values")
        t = spec.tag(tag)
        for k, v in enumerate(values):
            if not (math.isfinite(v) and t.lo <= v <= t.hi):
                raise TwinError(
                    f"{where}: {tag} = {v:g} {t.unit} at step {k + 1} is outside its limits "
                    f"[{t.lo:g}, {t.hi:g}] {t.unit}"
                )


def setpoint_path(
    spec: PlantSpec,
    scenario: Scenario,
    steps: int,
    setpoints: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """CV -> setpoint ``[steps + 1]`` in force at ``k`` sample periods from now (k = 0..steps).

    Starts from ``setpoints`` (resolved with :meth:`Setpoints.resolve`: the spec's, with the
    given ones over them; 0 for a CV with neither); a change at ``m`` minutes holds from the
    first step at or after ``m`` minutes on. Changes to one tag apply in time order.
    """
    start = Setpoints.resolve(spec, setpoints)
    offsets_min = np.arange(steps + 1) * spec.sample_period / 60.0
    paths = {t.name: np.full(steps + 1, start.get(t.name, 0.0)) for t in spec.cvs}
    for tag, value, minutes in sorted(scenario.setpoints, key=lambda s: s[2]):
        paths[tag][offsets_min >= minutes - 1e-9] = value
    return paths


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
    ``setpoints``: the setpoints in force now, which the scenarios change (default: the
    spec's; a :class:`~twin.control.setpoints.Setpoints` is used as is).
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
    if controller is None and not all(sc.open_loop for sc in scenarios):
        from twin.control.controller import Controller

        controller = Controller(model, spec)
    forecasts, paths, failures = [], [], []
    for sc in scenarios:
        path = setpoint_path(spec, sc, steps, now)
        if sc.mv_schedule is not None:
            plan, failed = schedule_plan(spec, sc, current, steps), 0
        else:
            assert controller is not None
            plan, failed = _closed_loop(model, spec, controller, history, path, steps)
        forecasts.append(_forecast(model, spec, past, plan, frame_ts(history)[-1]))
        paths.append({tag: p[1:] for tag, p in path.items()})
        failures.append(failed)
        log.info(
            "what-if %r: %d steps %s%s",
            sc.name,
            steps,
            "open loop" if sc.open_loop else "closed loop",
            f", {failed} failed solves (MVs held)" if failed else "",
        )
    return WhatIf(tuple(scenarios), tuple(forecasts), tuple(paths), tuple(failures))


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


def _closed_loop(
    model: Predictor,
    spec: PlantSpec,
    controller: Controller,
    history: pl.DataFrame,
    path: dict[str, np.ndarray],
    steps: int,
) -> tuple[np.ndarray, int]:
    """The controller's MV moves ``[steps, n_mv]`` with the twin as the plant; failed solves."""
    controller.reset()
    mv = mv_columns(spec)
    plan = np.empty((steps, len(mv)))
    sim, failed = history, 0
    previous = current_mvs(history, spec)
    for k in range(steps):
        rec = controller.recommend(sim, {tag: float(p[k]) for tag, p in path.items()})
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
    return plan, failed


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
