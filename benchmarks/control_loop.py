"""The control benchmark's closed loop: fixed scenarios, an in-process plant, and the scores.

A :class:`Scenario` is one plant's test, the same for every controller: from the nominal steady
state, setpoint steps on the tracked CVs, an unmeasured disturbance (one of the plant's
``param_names``) that ramps (the drift) and then steps at mid-run and holds to the end (so the
final stretch shows any steady-state offset), measured DVs held at nominal, measurement and
process noise on. The plant runs in-process (``plant.step``); each sample the controller gets
the history frame of the measured samples (``ts`` UTC, one column per tag, ``<tag>__ok``, as
``Historian.frame`` gives) and its answer is applied for the next sample.

The MV columns of the history hold the values applied (what a DCS reports as the MV's
setpoint), not a noisy measurement of them, so a move is judged against the value really held.

:func:`score` evaluates a run on the plant's *noise-free* outputs (the true trajectory, not the
sensors) with the controller's own objective (see :mod:`twin.control.controller`), summed over consecutive
H-sample windows and averaged per window::

    J = 1/N sum_k [ sum_c w_c ((y_kc - sp_kc) / span_c)^2 + lw sum_c over_kc^2 / span_c^2 ]
      + H/N sum_k sum_m mw_m (du_km / span_m)^2

so a PI loop and the MPCs are scored alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import polars as pl
from tqdm import tqdm

from benchmarks.pid import DecentralisedPI
from connectors.sim.base import SimPlant
from connectors.sim.plants import make_plant
from twin.control.controller import Controller
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

#: time of the first closed-loop sample (any fixed UTC time)
START = datetime(2026, 3, 1, tzinfo=UTC)
#: offset tolerance over the final stretch, as a fraction of the CV's span
OFFSET_TOL = 0.005


@dataclass(frozen=True)
class Scenario:
    """One plant's closed-loop test; times are fractions of the run's ``steps`` samples."""

    plant: str
    steps: int
    setpoints: tuple[tuple[float, dict[str, float]], ...]
    """(from, CV setpoints changed then); before the first: the nominal outputs"""
    disturbance: str
    """the unmeasured parameter scripted (a ``param_names`` entry of the plant)"""
    drift: tuple[float, float, float]
    """(start, end, value at end): a ramp from nominal"""
    step: tuple[float, float]
    """(at, value) held from then to the end"""
    track_weights: dict[str, float] = field(default_factory=dict)
    """overrides of the spec's CV weights (the same for every controller)"""
    final: float = 0.2
    """the last fraction of the run over which the steady-state offset is measured"""
    warmup: int = 64
    """samples at the nominal point before the first decision (the history controllers see)"""
    note: str = ""

    def with_steps(self, steps: int) -> Scenario:
        """The same scenario compressed or stretched to ``steps`` samples."""
        return replace(self, steps=int(steps))

    def weights(self, spec: PlantSpec) -> dict[str, float]:
        """Tracking weight of every CV: the spec's weight unless overridden (None: 1)."""
        w = {t.name: 1.0 if t.weight is None else float(t.weight) for t in spec.cvs}
        w.update(self.track_weights)
        return w

    def _at(self, frac: float) -> int:
        return round(frac * self.steps)

    def setpoint_path(self, spec: PlantSpec, nominal: dict[str, float]) -> np.ndarray:
        """``[N, n_cv]`` setpoint in force at each decision."""
        path = np.array([[nominal[t.name] for t in spec.cvs]] * self.steps, dtype=float)
        names = [t.name for t in spec.cvs]
        for frac, values in self.setpoints:
            for name, value in values.items():
                path[self._at(frac) :, names.index(name)] = value
        return path

    def disturbance_path(self, nominal: float) -> np.ndarray:
        """``[N]`` value of the scripted disturbance over each sample."""
        k = np.arange(self.steps)
        a, b, end = self._at(self.drift[0]), self._at(self.drift[1]), self.drift[2]
        ramp = np.clip((k - a) / max(b - a, 1), 0.0, 1.0)
        path = nominal + ramp * (end - nominal)
        path[self._at(self.step[0]) :] = self.step[1]
        return path


SCENARIOS: dict[str, Scenario] = {
    "cstr": Scenario(
        plant="cstr",
        steps=400,
        setpoints=((0.08, {"T": 327.0}), (0.22, {"T": 316.0}), (0.60, {"T": 326.0})),
        disturbance="Caf",
        drift=(0.08, 0.45, 1.02),
        step=(0.45, 0.97),
        track_weights={"Ca": 0.0},
        note="one MV holds one CV: T is tracked, Ca is watched within its limits (weight 0)",
    ),
    "quadtank": Scenario(
        plant="quadtank",
        steps=600,
        setpoints=((0.08, {"h1": 13.5}), (0.22, {"h2": 14.0}), (0.60, {"h1": 12.0, "h2": 12.5})),
        disturbance="a1_scale",
        drift=(0.08, 0.45, 0.97),
        step=(0.45, 0.93),
        note="tank 1's outlet clogs slowly by 3 %, then suddenly to 7 %",
    ),
    "woodberry": Scenario(
        plant="woodberry",
        steps=600,
        setpoints=(
            (0.08, {"XD": 96.55, "XB": 0.70}),
            (0.22, {"XD": 96.45}),
            (0.60, {"XD": 96.35, "XB": 0.60}),
        ),
        disturbance="zF",
        drift=(0.08, 0.45, 0.5),
        step=(0.45, -1.0),
        note="feed composition drifts up 0.5 mol%, then drops to -1 mol%",
    ),
}


def nominal_outputs(plant_name: str) -> dict[str, float]:
    """Noise-free tag values at the plant's nominal steady state."""
    p = make_plant(plant_name, noise=False)
    return p.outputs(p.x, p.u, p.d)


# --- controllers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """A controller's answer for one sample."""

    mv: np.ndarray
    """``[n_mv]`` values to apply"""
    seconds: float
    """time the controller took (solve time)"""
    success: bool = True
    message: str = ""


class Policy(Protocol):
    """A controller in the loop: one answer per sample."""

    name: str

    def act(
        self, frame: pl.DataFrame, measured: dict[str, float], u: np.ndarray, sp: dict[str, float]
    ) -> Action:
        """Next MVs from the history frame, the latest measurement, current MVs, setpoints."""
        ...

    def observe(self, ts: datetime) -> None:
        """Called after each plant step with the new sample's time (the oracle's truth)."""
        ...


class MPCPolicy:
    """A :class:`twin.control.controller.Controller` in the loop."""

    def __init__(self, name: str, controller: Controller) -> None:
        self.name, self.controller = name, controller

    def act(
        self, frame: pl.DataFrame, measured: dict[str, float], u: np.ndarray, sp: dict[str, float]
    ) -> Action:
        rec = self.controller.recommend(frame, sp)
        mv = np.array([m.recommended for m in rec.moves])
        return Action(mv, rec.solve_time_s, rec.success, rec.message)

    def observe(self, ts: datetime) -> None:
        observe = getattr(self.controller.model, "observe", None)
        if observe is not None:
            observe(ts)


class PIPolicy:
    """Decentralised PI loops in the loop (they read the latest measurement only)."""

    def __init__(self, name: str, pid: DecentralisedPI) -> None:
        self.name, self.pid = name, pid

    def act(
        self, frame: pl.DataFrame, measured: dict[str, float], u: np.ndarray, sp: dict[str, float]
    ) -> Action:
        t0 = time.perf_counter()
        names = [t.name for t in self.pid.spec.mvs]
        out = self.pid.act(measured, dict(zip(names, u.tolist(), strict=True)), sp)
        return Action(np.array([out[n] for n in names]), time.perf_counter() - t0)

    def observe(self, ts: datetime) -> None:
        pass


# --- the loop ----------------------------------------------------------------------------


class FrameBuffer:
    """The latest measured samples as a history frame (``ts``, tags, ``<tag>__ok``)."""

    def __init__(self, spec: PlantSpec, keep: int) -> None:
        self.spec, self.keep = spec, keep
        self.ts: list[datetime] = []
        self.rows: list[list[float]] = []

    def append(self, ts: datetime, values: dict[str, float]) -> None:
        """Add the sample stamped ``ts``; the oldest beyond ``keep`` is dropped."""
        self.ts.append(ts)
        self.rows.append([values[n] for n in self.spec.tag_names])
        if len(self.rows) > self.keep:
            del self.ts[0], self.rows[0]

    def frame(self) -> pl.DataFrame:
        """The kept samples as a wide frame, oldest first."""
        data = np.array(self.rows)
        cols: dict[str, Any] = {"ts": pl.Series("ts", self.ts, dtype=pl.Datetime("us", "UTC"))}
        for j, name in enumerate(self.spec.tag_names):
            cols[name] = data[:, j]
        for j, name in enumerate(self.spec.tag_names):
            cols[name + "__ok"] = np.isfinite(data[:, j])
        return pl.DataFrame(cols)


@dataclass(frozen=True)
class Trace:
    """One closed-loop run: per decision k, the setpoints, the MVs applied, the outputs after."""

    controller: str
    plant: str
    y: np.ndarray
    """``[N, n_tags]`` noise-free tag values after each step (the truth)"""
    measured: np.ndarray
    """``[N, n_tags]`` what the sensors reported"""
    u: np.ndarray
    """``[N + 1, n_mv]``: ``u[0]`` before the first decision, ``u[k + 1]`` applied at k"""
    sp: np.ndarray
    """``[N, n_cv]`` setpoints at each decision"""
    seconds: np.ndarray
    """``[N]`` the controller's wall time per decision"""
    cpu_seconds: np.ndarray
    """``[N]`` CPU time of this thread per decision (the solves run single-threaded): what the
    decision costs a core, free of the waits for one on a shared machine"""
    failures: int
    first_failure: str
    trips: int
    """samples at which the plant reported leaving its safe envelope"""


def run_closed_loop(
    scenario: Scenario,
    make_policy: Callable[[SimPlant], Policy],
    seed: int,
    *,
    progress: bool = True,
) -> Trace:
    """Run ``scenario`` once with the controller ``make_policy(plant)`` builds; the Trace."""
    plant = make_plant(scenario.plant, seed=seed)
    spec = plant.spec
    policy = make_policy(plant)
    nominal = nominal_outputs(scenario.plant)
    p_nom = float(plant.p[plant.param_names.index(scenario.disturbance)])
    for name, value in zip(plant.dv_names, plant.d0, strict=True):
        plant.set_disturbance(name, float(value))  # measured DVs held at nominal
    plant.set_disturbance(scenario.disturbance, p_nom)
    sp_path = scenario.setpoint_path(spec, nominal)
    dist = scenario.disturbance_path(p_nom)
    cv_names = [t.name for t in spec.cvs]
    mv_names = plant.mv_names
    period = timedelta(seconds=spec.sample_period)
    buf = FrameBuffer(spec, keep=max(scenario.warmup, 128))
    t = START - scenario.warmup * period
    measured: dict[str, float] = {}
    for _ in range(scenario.warmup):
        t += period
        measured = _applied(plant.step(), plant)
        buf.append(t, measured)
        policy.observe(t)
    n = scenario.steps
    tags = spec.tag_names
    y, meas = np.empty((n, len(tags))), np.empty((n, len(tags)))
    u = np.empty((n + 1, len(mv_names)))
    u[0] = plant.u
    secs, cpu = np.empty(n), np.empty(n)
    failures, first_failure, trips = 0, "", 0
    bar = tqdm(range(n), desc=f"{scenario.plant} {policy.name}", leave=False, disable=not progress)
    for k in bar:
        sp = dict(zip(cv_names, sp_path[k].tolist(), strict=True))
        plant.set_disturbance(scenario.disturbance, float(dist[k]))
        c0 = time.thread_time()
        act = policy.act(buf.frame(), measured, u[k].copy(), sp)
        cpu[k] = time.thread_time() - c0
        secs[k] = act.seconds
        if not act.success:
            failures += 1
            first_failure = first_failure or act.message
        u[k + 1] = act.mv
        measured = _applied(plant.step(dict(zip(mv_names, act.mv.tolist(), strict=True))), plant)
        t += period
        buf.append(t, measured)
        policy.observe(t)
        truth = plant.outputs(plant.x, plant.u, plant.d)
        y[k] = [truth[name] for name in tags]
        meas[k] = [measured[name] for name in tags]
        trips += plant.tripped is not None
    bar.close()
    return Trace(
        policy.name, scenario.plant, y, meas, u, sp_path, secs, cpu, failures, first_failure, trips
    )


def _applied(values: dict[str, float], plant: SimPlant) -> dict[str, float]:
    """The measured values with the MV columns replaced by the values applied."""
    out = dict(values)
    out.update(zip(plant.mv_names, plant.u.tolist(), strict=True))
    return out


# --- scores ------------------------------------------------------------------------------


def score(
    trace: Trace,
    scenario: Scenario,
    spec: PlantSpec,
    *,
    horizon: int,
    move_weight: float | np.ndarray,
    limit_weight: float,
) -> dict[str, Any]:
    """The closed-loop figures of one run (see the module doc for J)."""
    names = spec.tag_names
    cvs, mvs = spec.cvs, spec.mvs
    cv_idx = [names.index(t.name) for t in cvs]
    weights = scenario.weights(spec)
    w = np.array([weights[t.name] for t in cvs])
    span = np.array([t.span for t in cvs])
    lo, hi = np.array([t.lo for t in cvs]), np.array([t.hi for t in cvs])
    y = trace.y[:, cv_idx]
    e = (y - trace.sp) / span
    n = len(y)
    track = float((w * e**2).sum() / n)
    over = (np.maximum(y - hi, 0.0) ** 2 + np.maximum(lo - y, 0.0) ** 2) / span**2
    limit = float(limit_weight * over.sum() / n)
    du = np.diff(trace.u, axis=0)
    mv_span = np.array([t.span for t in mvs])
    move = float(horizon * (move_weight * (du / mv_span) ** 2).sum() / n)
    period_min = spec.sample_period / 60.0
    tracked = [i for i, t in enumerate(cvs) if weights[t.name] > 0]
    final = slice(n - max(1, round(scenario.final * n)), n)
    offset = {cvs[i].name: float(np.mean(y[final, i] - trace.sp[final, i])) for i in tracked}
    mv_lo, mv_hi = np.array([t.lo for t in mvs]), np.array([t.hi for t in mvs])
    rate = np.array([t.rate_limit if t.rate_limit is not None else np.inf for t in mvs])
    applied = trace.u[1:]
    return {
        "J": track + move + limit,
        "J_track": track,
        "J_move": move,
        "J_limit": limit,
        "iae": {
            cvs[i].name: float(np.abs(y[:, i] - trace.sp[:, i]).sum() * period_min) for i in tracked
        },
        "movement": {t.name: float(np.abs(du[:, j]).sum()) for j, t in enumerate(mvs)},
        "bound_violations": int(((applied < mv_lo - 1e-9) | (applied > mv_hi + 1e-9)).sum()),
        "rate_violations": int((np.abs(du) > rate + 1e-9).sum()),
        "cv_limit_samples": int(((y < lo) | (y > hi)).any(axis=1).sum()),
        "offset": offset,
        "offset_ok": all(abs(offset[cvs[i].name]) <= OFFSET_TOL * span[i] for i in tracked),
        "solve_ms_median": float(np.median(trace.seconds) * 1e3),
        "solve_ms_p95": float(np.percentile(trace.seconds, 95) * 1e3),
        "cpu_ms_median": float(np.median(trace.cpu_seconds) * 1e3),
        "cpu_ms_p95": float(np.percentile(trace.cpu_seconds, 95) * 1e3),
        "failures": trace.failures,
        "first_failure": trace.first_failure,
        "trips": trace.trips,
    }
